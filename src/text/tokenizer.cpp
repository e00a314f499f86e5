#include "text/tokenizer.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "io/regular_file.hpp"
#include "text/bpe.hpp"
#include "text/tokenizer_byte_level.hpp"
#include "text/tokenizer_decoder.hpp"
#include "text/tokenizer_json.hpp"
#include "text/tokenizer_regex.hpp"
#include "text/utf8.hpp"
#include "util/error.hpp"

namespace inferno::text {
namespace {

// GPT-2's split, used by a ByteLevel pre-tokenizer with use_regex.
constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Words longer than this are not cached (the tokenizers library's limit too): they rarely repeat.
constexpr size_t max_cached_word_bytes = 256;
constexpr size_t max_cache_entries = 1 << 20;

// Unicode White_Space (Rust's char::is_whitespace and regex \s).
bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(uint32_t cp) {
  if (cp == 0x200C || cp == 0x200D) return true;
  switch (utf8proc_category(utf8proc_int32_t(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

uint32_t last_code_point(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
  return utf8::decode(s, start);
}

uint32_t first_code_point(std::string_view s) {
  size_t pos = 0;
  return utf8::decode(s, pos);
}

// Finds added tokens in text: at each position the longest token that starts there, leftmost first, matches
// never overlapping (the leftmost-longest Aho-Corasick search of the tokenizers library).
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() { root_.fill(-1); }

  void add(std::string_view pattern, int32_t token_index) {
    int32_t node = root_[uint8_t(pattern[0])];
    if (node < 0) node = root_[uint8_t(pattern[0])] = new_node();
    for (size_t i = 1; i < pattern.size(); ++i) {
      const uint8_t b = uint8_t(pattern[i]);
      int32_t next = child(node, b);
      if (next < 0) {
        next = new_node();
        nodes_[node].children.emplace_back(b, next);
      }
      node = next;
    }
    nodes_[node].token_index = token_index;
  }
  bool empty() const { return nodes_.empty(); }

  struct Segment {
    size_t begin, end;
    int32_t token_index;  // -1: ordinary text
  };

  void split(std::string_view text, const std::vector<AddedTokenSpec>& tokens, std::vector<Segment>& out) const {
    out.clear();
    if (empty()) {
      out.push_back({0, text.size(), -1});
      return;
    }
    size_t segment_start = 0;  // start of the text not yet assigned to a segment
    size_t pos = 0;
    while (pos < text.size()) {
      size_t match_end = 0;
      const int32_t index = longest_at(text, pos, match_end);
      if (index < 0) {
        ++pos;
        continue;
      }
      const AddedTokenSpec& token = tokens[size_t(index)];
      size_t begin = pos, end = match_end;
      pos = match_end;  // a match that is then discarded still consumes its text
      if (token.single_word) {
        const bool word_before = begin > 0 && is_word_char(last_code_point(text.substr(0, begin)));
        const bool word_after = end < text.size() && is_word_char(first_code_point(text.substr(end)));
        if (word_before || word_after) continue;
      }
      if (token.lstrip) {
        size_t b = begin;
        while (b > segment_start) {
          size_t s = b - 1;
          while (s > 0 && (uint8_t(text[s]) & 0xC0) == 0x80) --s;
          size_t tmp = s;
          if (!is_white_space(utf8::decode(text, tmp))) break;
          b = s;
        }
        begin = b;
      }
      if (token.rstrip) {
        while (end < text.size()) {
          size_t next = end;
          if (!is_white_space(utf8::decode(text, next))) break;
          end = next;
        }
        pos = end;
      }
      if (segment_start < begin) out.push_back({segment_start, begin, -1});
      out.push_back({begin, end, index});
      segment_start = end;
    }
    if (segment_start < text.size() || out.empty()) out.push_back({segment_start, text.size(), -1});
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token_index = -1;
  };
  int32_t new_node() {
    nodes_.emplace_back();
    return int32_t(nodes_.size() - 1);
  }
  int32_t child(int32_t node, uint8_t b) const {
    for (const auto& [byte, next] : nodes_[node].children)
      if (byte == b) return next;
    return -1;
  }
  int32_t longest_at(std::string_view text, size_t pos, size_t& match_end) const {
    int32_t node = root_[uint8_t(text[pos])];
    int32_t found = -1;
    size_t i = pos + 1;
    while (node >= 0) {
      if (nodes_[node].token_index >= 0) {
        found = nodes_[node].token_index;
        match_end = i;
      }
      if (i >= text.size()) break;
      node = child(node, uint8_t(text[i++]));
    }
    return found;
  }

  std::array<int32_t, 256> root_;
  std::vector<Node> nodes_;
};

// A part of a split: [begin, end) of the text that was split.
struct Range {
  size_t begin, end;
};

// Working memory of one pre-tokenizer step, reused for every piece that reaches the step.
struct StepScratch {
  std::unique_ptr<Regex::Matcher> matcher;  // the step's regex, if it has one
  std::vector<std::pair<size_t, size_t>> matches;
  std::vector<Range> parts;
  std::string buffer;  // the piece after this step's rewrite (ByteLevel, Metaspace)
  std::string mapped;  // ByteLevel: one part mapped to byte characters
};

// Per-call working memory, so that a const Tokenizer can encode from several threads at once.
struct EncodeScratch {
  std::vector<std::unique_ptr<Regex::Matcher>> normalizer_matchers;
  std::vector<StepScratch> steps;
  std::vector<std::pair<size_t, size_t>> matches;
  std::vector<AddedTokenMatcher::Segment> raw_segments, normalized_segments;
  std::vector<std::string_view> parts;
  StringMap<std::pair<uint32_t, uint32_t>> cache;  // word -> (offset, count) in cached_ids
  std::vector<int32_t> cached_ids;
};

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  BpeModel model;
  std::vector<AddedTokenSpec> added;
  std::vector<std::string> added_decode_text;  // the string decode sees (normalized form when normalized)
  std::vector<int32_t> added_index_by_id;      // id -> index in `added`, -1 if not an added token
  StringMap<int32_t> added_id_by_content;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<NormalizerStep> normalizer;
  std::vector<std::unique_ptr<Regex>> normalizer_regex;  // per step; null unless a regex Replace
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<std::unique_ptr<Regex>> pre_tokenizer_regex;  // per step; Split regex, or ByteLevel's GPT-2 split
  DecoderChain decoder;
  std::vector<int32_t> prefix_ids, suffix_ids;
  int32_t vocab_size = 0;
  std::optional<std::string> bos_token, eos_token, chat_template;
  std::optional<int32_t> bos_id;
  std::vector<int32_t> eos_ids;
  std::array<std::string, 256> byte_chars;  // ByteLevel: each byte's character as UTF-8

  explicit Impl(TokenizerSpec spec);

  void make_matchers(EncodeScratch& s) const {
    for (const auto& r : normalizer_regex) s.normalizer_matchers.push_back(r ? std::make_unique<Regex::Matcher>(*r) : nullptr);
    s.steps.resize(pre_tokenizer.size());
    for (size_t i = 0; i < pre_tokenizer.size(); ++i)
      if (pre_tokenizer_regex[i]) s.steps[i].matcher = std::make_unique<Regex::Matcher>(*pre_tokenizer_regex[i]);
  }
  std::string normalize(std::string text, EncodeScratch& s) const;
  // Runs pre-tokenizer steps `step` onwards over `text` and encodes each resulting word into ids. Pieces go
  // through the steps one at a time (depth first), so no list of all the words of a long text is ever built.
  void pre_tokenize_and_encode(size_t step, std::string_view text, bool at_text_start, EncodeScratch& s,
                               std::vector<int32_t>& ids) const;
  // BPE of one word, through the per-call cache of words already seen.
  void encode_word(std::string_view word, EncodeScratch& s, std::vector<int32_t>& ids) const;
  void remember(std::string_view word, const int32_t* word_ids, size_t count, EncodeScratch& s) const;

  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size)
      fail("token id " + std::to_string(id) + " is out of range: the vocabulary has " + std::to_string(vocab_size) +
           " tokens (" + source + ")");
  }
  // The token string decode works on, or null for an id without a token: a model's embedding is often padded past
  // its tokenizer's vocabulary, and the tokenizers library's decode skips ids it has no token for.
  const std::string* decode_text(int32_t id) const {
    if (id < 0 || id >= vocab_size) return nullptr;
    if (size_t(id) < added_index_by_id.size() && added_index_by_id[id] >= 0) return &added_decode_text[added_index_by_id[id]];
    return model.id_to_token(id);
  }
  bool is_special(int32_t id) const {
    return id >= 0 && size_t(id) < added_index_by_id.size() && added_index_by_id[id] >= 0 &&
           added[added_index_by_id[id]].special;
  }
  std::optional<int32_t> token_to_id(std::string_view token) const {
    if (auto it = added_id_by_content.find(token); it != added_id_by_content.end()) return it->second;
    return model.token_to_id(token);
  }
};

Tokenizer::Impl::Impl(TokenizerSpec spec)
    : source(spec.source),
      model(std::move(spec.vocab), spec.merges, spec.bpe, spec.source),
      added(std::move(spec.added_tokens)),
      normalizer(std::move(spec.normalizer)),
      pre_tokenizer(std::move(spec.pre_tokenizer)),
      decoder(spec.has_decoder, std::move(spec.decoder), spec.source),
      prefix_ids(std::move(spec.prefix_ids)),
      suffix_ids(std::move(spec.suffix_ids)),
      bos_token(std::move(spec.bos_token)),
      eos_token(std::move(spec.eos_token)),
      chat_template(std::move(spec.chat_template)) {
  for (int b = 0; b < 256; ++b) byte_chars[b] = utf8::encode(byte_level::char_of_byte(uint8_t(b)));

  for (const NormalizerStep& step : normalizer) {
    if (step.kind == NormalizerStep::Kind::Replace && step.pattern_is_regex)
      normalizer_regex.push_back(std::make_unique<Regex>(step.pattern, source + ": normalizer Replace"));
    else
      normalizer_regex.push_back(nullptr);
    if (step.kind == NormalizerStep::Kind::Replace && !step.pattern_is_regex && step.pattern.empty())
      fail(source + ": normalizer Replace has an empty pattern");
  }
  for (const PreTokenizerStep& step : pre_tokenizer) {
    if (step.kind == PreTokenizerStep::Kind::Split && step.pattern_is_regex)
      pre_tokenizer_regex.push_back(std::make_unique<Regex>(step.pattern, source + ": pre-tokenizer Split"));
    else if (step.kind == PreTokenizerStep::Kind::ByteLevel && step.use_regex)
      pre_tokenizer_regex.push_back(std::make_unique<Regex>(gpt2_pattern, source + ": pre-tokenizer ByteLevel"));
    else
      pre_tokenizer_regex.push_back(nullptr);
    if (step.kind == PreTokenizerStep::Kind::Split && !step.pattern_is_regex && step.pattern.empty())
      fail(source + ": pre-tokenizer Split has an empty pattern");
  }

  vocab_size = model.size();
  for (const AddedTokenSpec& a : added) vocab_size = std::max(vocab_size, a.id + 1);
  added_index_by_id.assign(size_t(vocab_size), -1);
  EncodeScratch scratch;
  make_matchers(scratch);
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedTokenSpec& a = added[i];
    if (a.id < 0) fail(source + ": added token \"" + a.content + "\" has a negative id");
    if (a.content.empty()) fail(source + ": added token " + std::to_string(a.id) + " has empty content");
    if (!utf8::is_valid(a.content)) fail(source + ": added token " + std::to_string(a.id) + " is not valid UTF-8");
    if (added_index_by_id[a.id] >= 0) fail(source + ": two added tokens have id " + std::to_string(a.id));
    added_index_by_id[a.id] = int32_t(i);
    added_id_by_content.emplace(a.content, a.id);
    // A normalized added token is matched, and decoded, in its normalized form.
    std::string text = a.normalized && !normalizer.empty() ? normalize(a.content, scratch) : a.content;
    if (a.normalized) {
      if (!text.empty()) normalized_matcher.add(text, int32_t(i));
    } else {
      raw_matcher.add(a.content, int32_t(i));
    }
    added_decode_text.push_back(std::move(text));
  }

  for (const std::vector<int32_t>* ids : {&prefix_ids, &suffix_ids})
    for (int32_t id : *ids)
      if (id < 0 || id >= vocab_size)
        fail(source + ": post-processor adds token id " + std::to_string(id) + ", outside the vocabulary of " +
             std::to_string(vocab_size));

  // BOS / EOS, see the header.
  auto special_named = [&](std::initializer_list<std::string_view> names) -> std::optional<int32_t> {
    for (std::string_view name : names)
      if (auto id = token_to_id(name); id && is_special(*id)) return id;
    return std::nullopt;
  };
  if (bos_token) bos_id = token_to_id(*bos_token);
  else if (!prefix_ids.empty()) bos_id = prefix_ids.front();
  else bos_id = special_named({"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"});

  std::optional<int32_t> eos_id;
  if (eos_token) eos_id = token_to_id(*eos_token);
  else if (!suffix_ids.empty()) eos_id = suffix_ids.back();
  else eos_id = special_named({"<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>"});
  if (eos_id) eos_ids.push_back(*eos_id);
  // Chat models end a turn with their own token; Llama 3 ships <|eot_id|> and <|eom_id|> as end-of-sequence ids
  // in generation_config.json. They are stop tokens wherever they exist as special tokens.
  for (std::string_view name : {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<end_of_turn>"})
    if (auto id = token_to_id(name); id && is_special(*id) && eos_id &&
                                     std::find(eos_ids.begin(), eos_ids.end(), *id) == eos_ids.end())
      eos_ids.push_back(*id);
}

std::string Tokenizer::Impl::normalize(std::string text, EncodeScratch& s) const {
  for (size_t i = 0; i < normalizer.size(); ++i) {
    const NormalizerStep& step = normalizer[i];
    switch (step.kind) {
      case NormalizerStep::Kind::Prepend:
        if (!text.empty()) text.insert(0, step.content);
        break;
      case NormalizerStep::Kind::Replace: {
        std::string out;
        out.reserve(text.size());
        size_t pos = 0;
        if (step.pattern_is_regex) {
          s.normalizer_matchers[i]->find_all(text, s.matches);
          for (const auto& [b, e] : s.matches) {
            out.append(text, pos, b - pos);
            out += step.content;
            pos = e;
          }
        } else {
          for (size_t hit = text.find(step.pattern); hit != std::string::npos; hit = text.find(step.pattern, pos)) {
            out.append(text, pos, hit - pos);
            out += step.content;
            pos = hit + step.pattern.size();
          }
        }
        out.append(text, pos);
        text = std::move(out);
        break;
      }
      case NormalizerStep::Kind::Nfc:
      case NormalizerStep::Kind::Nfd:
      case NormalizerStep::Kind::Nfkc:
      case NormalizerStep::Kind::Nfkd: {
        int options = UTF8PROC_STABLE;
        if (step.kind == NormalizerStep::Kind::Nfc || step.kind == NormalizerStep::Kind::Nfkc) options |= UTF8PROC_COMPOSE;
        else options |= UTF8PROC_DECOMPOSE;
        if (step.kind == NormalizerStep::Kind::Nfkc || step.kind == NormalizerStep::Kind::Nfkd) options |= UTF8PROC_COMPAT;
        utf8proc_uint8_t* result = nullptr;
        const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                                utf8proc_ssize_t(text.size()), &result, utf8proc_option_t(options));
        if (n < 0) fail(source + ": Unicode normalization failed: " + utf8proc_errmsg(n));
        text.assign(reinterpret_cast<const char*>(result), size_t(n));
        std::free(result);
        break;
      }
    }
  }
  return text;
}

namespace {

// The parts of text that a split at `matches` keeps, as `behavior` says (NormalizedString::split of the
// tokenizers library); empty parts are dropped.
void split_parts(size_t text_size, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                 bool invert, std::vector<Range>& parts) {
  parts.clear();
  size_t previous = 0;
  bool previous_match = false;
  // Each span of the text, match or not, in order; `keep` adds it to the parts per the behavior.
  auto keep = [&](size_t begin, size_t end, bool is_match) {
    if (invert) is_match = !is_match;
    switch (behavior) {
      case SplitBehavior::Isolated:
        parts.push_back({begin, end});
        break;
      case SplitBehavior::Removed:
        if (!is_match) parts.push_back({begin, end});
        break;
      case SplitBehavior::Contiguous:
        if (is_match == previous_match && !parts.empty()) parts.back().end = end;
        else parts.push_back({begin, end});
        break;
      case SplitBehavior::MergedWithPrevious:
        if (is_match && !previous_match && !parts.empty()) parts.back().end = end;
        else parts.push_back({begin, end});
        break;
      case SplitBehavior::MergedWithNext:
        // A match joins the span after it: decided when that span comes (below, after the loop for the last).
        if (previous_match && !is_match && !parts.empty()) parts.back().end = end;
        else parts.push_back({begin, end});
        break;
    }
    previous_match = is_match;
  };
  for (const auto& [b, e] : matches) {
    if (b > previous) keep(previous, b, false);
    keep(b, e, true);
    previous = e;
  }
  if (previous < text_size) keep(previous, text_size, false);
  std::erase_if(parts, [](const Range& r) { return r.end == r.begin; });
}

void find_literal(std::string_view text, std::string_view pattern, std::vector<std::pair<size_t, size_t>>& matches) {
  matches.clear();
  size_t pos = 0;
  for (size_t hit = text.find(pattern); hit != std::string_view::npos; hit = text.find(pattern, pos)) {
    matches.emplace_back(hit, hit + pattern.size());
    pos = hit + pattern.size();
  }
}

}  // namespace

void Tokenizer::Impl::pre_tokenize_and_encode(size_t step_index, std::string_view text, bool at_text_start,
                                              EncodeScratch& s, std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  if (step_index == pre_tokenizer.size()) {
    encode_word(text, s, ids);
    return;
  }
  const PreTokenizerStep& step = pre_tokenizer[step_index];
  StepScratch& scratch = s.steps[step_index];
  auto for_each_part = [&](std::string_view whole, auto&& visit) {
    for (const Range& r : scratch.parts) visit(whole.substr(r.begin, r.end - r.begin), at_text_start && r.begin == 0);
  };
  switch (step.kind) {
    case PreTokenizerStep::Kind::Split: {
      if (step.pattern_is_regex) scratch.matcher->find_all(text, scratch.matches);
      else find_literal(text, step.pattern, scratch.matches);
      split_parts(text.size(), scratch.matches, step.behavior, step.invert, scratch.parts);
      for_each_part(text, [&](std::string_view part, bool first) {
        pre_tokenize_and_encode(step_index + 1, part, first, s, ids);
      });
      return;
    }
    case PreTokenizerStep::Kind::ByteLevel: {
      std::string_view piece = text;
      if (step.add_prefix_space && text[0] != ' ') {
        scratch.buffer.assign(1, ' ');
        scratch.buffer.append(text);
        piece = scratch.buffer;
      }
      auto map_and_continue = [&](std::string_view part, bool first) {
        std::string& mapped = scratch.mapped;
        mapped.clear();
        for (char c : part) mapped += byte_chars[uint8_t(c)];
        pre_tokenize_and_encode(step_index + 1, mapped, first, s, ids);
      };
      if (step.use_regex) {
        scratch.matcher->find_all(piece, scratch.matches);
        split_parts(piece.size(), scratch.matches, SplitBehavior::Isolated, false, scratch.parts);
        for_each_part(piece, map_and_continue);
      } else {
        map_and_continue(piece, at_text_start);
      }
      return;
    }
    case PreTokenizerStep::Kind::Metaspace: {
      std::string& piece = scratch.buffer;
      piece.clear();
      for (char c : text) {
        if (c == ' ') piece += step.replacement;
        else piece += c;
      }
      const bool starts_with_replacement = piece.compare(0, step.replacement.size(), step.replacement) == 0;
      if (!starts_with_replacement && (step.prepend_scheme == PrependScheme::Always ||
                                       (step.prepend_scheme == PrependScheme::First && at_text_start)))
        piece.insert(0, step.replacement);
      if (step.split) {
        find_literal(piece, step.replacement, scratch.matches);
        split_parts(piece.size(), scratch.matches, SplitBehavior::MergedWithNext, false, scratch.parts);
        for_each_part(piece, [&](std::string_view part, bool first) {
          pre_tokenize_and_encode(step_index + 1, part, first, s, ids);
        });
      } else {
        pre_tokenize_and_encode(step_index + 1, piece, at_text_start, s, ids);
      }
      return;
    }
  }
}

void Tokenizer::Impl::encode_word(std::string_view word, EncodeScratch& s, std::vector<int32_t>& ids) const {
  if (auto it = s.cache.find(word); it != s.cache.end()) {
    const auto [offset, count] = it->second;
    ids.insert(ids.end(), s.cached_ids.begin() + offset, s.cached_ids.begin() + offset + count);
    return;
  }
  const size_t first = ids.size();
  if (auto id = model.options().ignore_merges ? model.token_to_id(word) : std::nullopt) {
    ids.push_back(*id);
  } else {
    s.parts.clear();
    model.split_independent(word, s.parts);
    for (std::string_view part : s.parts) {
      if (s.parts.size() > 1) {
        if (auto it = s.cache.find(part); it != s.cache.end()) {
          const auto [offset, count] = it->second;
          ids.insert(ids.end(), s.cached_ids.begin() + offset, s.cached_ids.begin() + offset + count);
          continue;
        }
      }
      const size_t part_first = ids.size();
      model.merge_word(part, ids);
      if (s.parts.size() > 1) remember(part, ids.data() + part_first, ids.size() - part_first, s);
    }
  }
  remember(word, ids.data() + first, ids.size() - first, s);
}

void Tokenizer::Impl::remember(std::string_view word, const int32_t* word_ids, size_t count, EncodeScratch& s) const {
  if (word.size() > max_cached_word_bytes || s.cache.size() >= max_cache_entries) return;
  s.cache.emplace(std::string(word), std::pair{uint32_t(s.cached_ids.size()), uint32_t(count)});
  s.cached_ids.insert(s.cached_ids.end(), word_ids, word_ids + count);
}

Tokenizer Tokenizer::from_spec(TokenizerSpec spec) {
  return Tokenizer(std::make_shared<const Impl>(std::move(spec)));
}

Tokenizer Tokenizer::from_files(const std::filesystem::path& tokenizer_json,
                                const std::filesystem::path& tokenizer_config_json) {
  return from_spec(read_tokenizer_json(tokenizer_json, tokenizer_config_json));
}

Tokenizer Tokenizer::from_dir(const std::filesystem::path& dir) {
  const auto json = dir / "tokenizer.json";
  std::error_code ec;
  // Anything there is read (a FIFO or a directory is refused by io::RegularFile as "not a regular file").
  if (!std::filesystem::exists(json, ec)) fail(dir.string() + ": no tokenizer.json in this directory");
  TokenizerSpec spec = read_tokenizer_json(json, dir / "tokenizer_config.json");
  // Newer transformers save the chat template in its own file.
  const auto jinja = dir / "chat_template.jinja";
  if (!spec.chat_template && std::filesystem::exists(jinja, ec)) spec.chat_template = io::read_regular_file(jinja);
  return from_spec(std::move(spec));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& impl = *impl_;
  if (const size_t bad = utf8::find_invalid(text); bad != utf8::npos)
    fail("input text is not valid UTF-8 at byte " + std::to_string(bad));

  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = impl.prefix_ids;

  EncodeScratch s;
  impl.make_matchers(s);
  s.cache.reserve(std::min<size_t>(text.size() / 16, max_cache_entries));
  // Added tokens in the raw text first; the text between them is normalized piece by piece.
  impl.raw_matcher.split(text, impl.added, s.raw_segments);
  for (const auto& raw : s.raw_segments) {
    if (raw.token_index >= 0) {
      ids.push_back(impl.added[raw.token_index].id);
      continue;
    }
    const std::string normalized = impl.normalize(std::string(text.substr(raw.begin, raw.end - raw.begin)), s);
    impl.normalized_matcher.split(normalized, impl.added, s.normalized_segments);
    for (const auto& seg : s.normalized_segments) {
      if (seg.token_index >= 0) {
        ids.push_back(impl.added[seg.token_index].id);
        continue;
      }
      impl.pre_tokenize_and_encode(0, std::string_view(normalized).substr(seg.begin, seg.end - seg.begin),
                                   raw.begin == 0 && seg.begin == 0, s, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), impl.suffix_ids.begin(), impl.suffix_ids.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* text = impl.decode_text(id);
    if (!text || (skip_special_tokens && impl.is_special(id))) continue;
    tokens.push_back(*text);
  }
  return impl.decoder.decode(std::move(tokens));
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const { return impl_->token_to_id(token); }

std::string Tokenizer::token_bytes(int32_t id) const {
  const std::string* text = impl_->decode_text(id);
  return text ? impl_->decoder.token_bytes(*text) : std::string();
}

std::string Tokenizer::id_to_token(int32_t id) const {
  const Impl& impl = *impl_;
  impl.check_id(id);
  if (size_t(id) < impl.added_index_by_id.size() && impl.added_index_by_id[id] >= 0)
    return impl.added[impl.added_index_by_id[id]].content;
  if (const std::string* text = impl.decode_text(id)) return *text;
  fail("token id " + std::to_string(id) + " has no token in the vocabulary of " + std::to_string(impl.vocab_size) +
       " tokens (" + impl.source + ")");
}

bool Tokenizer::is_special(int32_t id) const { return impl_->is_special(id); }

std::vector<std::string> Tokenizer::token_bytes() const {
  const Impl& impl = *impl_;
  std::vector<std::string> out(size_t(impl.vocab_size));
  for (int32_t id = 0; id < impl.vocab_size; ++id) {
    const std::string* text = impl.decode_text(id);
    if (text && !impl.is_special(id)) out[size_t(id)] = impl.decoder.token_bytes(*text);
  }
  return out;
}
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos_ids; }

std::string Tokenizer::bos_token() const {
  if (impl_->bos_token) return *impl_->bos_token;
  return impl_->bos_id ? id_to_token(*impl_->bos_id) : std::string();
}

std::string Tokenizer::eos_token() const {
  if (impl_->eos_token) return *impl_->eos_token;
  return impl_->eos_ids.empty() ? std::string() : id_to_token(impl_->eos_ids.front());
}

std::optional<std::string> Tokenizer::chat_template() const { return impl_->chat_template; }

struct StreamingDecoder::State {
  std::shared_ptr<const Tokenizer::Impl> impl;
  bool skip_special_tokens;
  DecoderChain::Stream stream;
};

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : state_(std::make_unique<State>(State{tokenizer.impl_, skip_special_tokens, DecoderChain::Stream(tokenizer.impl_->decoder)})) {}
StreamingDecoder::~StreamingDecoder() = default;
StreamingDecoder::StreamingDecoder(StreamingDecoder&&) noexcept = default;
StreamingDecoder& StreamingDecoder::operator=(StreamingDecoder&&) noexcept = default;

std::string StreamingDecoder::push(int32_t id) {
  const std::string* text = state_->impl->decode_text(id);
  if (!text || (state_->skip_special_tokens && state_->impl->is_special(id))) return {};
  return state_->stream.push(*text);
}

std::string StreamingDecoder::finish() { return state_->stream.finish(); }

}  // namespace inferno::text

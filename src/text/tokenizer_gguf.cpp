#include "text/tokenizer_gguf.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "text/bpe.hpp"
#include "util/error.hpp"

namespace inferno::text {
namespace {

constexpr std::string_view metaspace = "\xE2\x96\x81";  // U+2581 "▁": SentencePiece's space

// Llama 3's split (its tokenizer.json; llama.cpp spells the case-insensitive group out, to the same effect).
constexpr std::string_view llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// llama.cpp's "default" BPE pre-tokenizer: four regexes, each splitting the pieces of the one before, text between
// matches kept as pieces of its own.
constexpr std::string_view default_patterns[] = {
    R"([\p{P}\$\+<=>\^~\|]+)",
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))",
    R"(\p{N}+)",
    R"([0-9][0-9][0-9])",
};

std::string key_where(const io::GgufFile& file, std::string_view key) {
  return file.path().string() + ": metadata key '" + std::string(key) + "'";
}

PreTokenizerStep split_step(std::string_view pattern) {
  PreTokenizerStep step{PreTokenizerStep::Kind::Split};
  step.pattern = std::string(pattern);
  step.pattern_is_regex = true;
  step.behavior = SplitBehavior::Isolated;
  return step;
}

PreTokenizerStep byte_level_step(bool use_gpt2_regex) {
  PreTokenizerStep step{PreTokenizerStep::Kind::ByteLevel};
  step.add_prefix_space = false;
  step.use_regex = use_gpt2_regex;
  return step;
}

// SentencePiece merges from scores: every cut of a token into two tokens, ranked by the made token's score
// (highest first). Among equal scores the order is by the made token's id, then the left part's: SentencePiece
// BPE vocabularies list a piece after its parts, and this is the order Hugging Face's converter gives them too.
std::vector<BpeModel::Merge> merges_from_scores(const std::vector<std::string>& tokens,
                                                const std::vector<float>& scores) {
  StringMap<int32_t> id_of;
  id_of.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id)
    if (!tokens[id].empty()) id_of.emplace(tokens[id], int32_t(id));

  struct Candidate {
    float score;
    int32_t merged, left, right;
  };
  std::vector<Candidate> candidates;
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string_view token = tokens[id];
    // Cut only between characters: symbols start out as whole UTF-8 characters.
    for (size_t cut = 1; cut < token.size(); ++cut) {
      if ((uint8_t(token[cut]) & 0xC0) == 0x80) continue;
      const auto left = id_of.find(token.substr(0, cut));
      if (left == id_of.end()) continue;
      const auto right = id_of.find(token.substr(cut));
      if (right == id_of.end()) continue;
      candidates.push_back({scores[id], int32_t(id), left->second, right->second});
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.merged != b.merged) return a.merged < b.merged;
    if (a.left != b.left) return a.left < b.left;
    return a.right < b.right;
  });
  std::vector<BpeModel::Merge> merges;
  merges.reserve(candidates.size());
  for (const Candidate& c : candidates) merges.emplace_back(tokens[size_t(c.left)], tokens[size_t(c.right)]);
  return merges;
}

std::vector<BpeModel::Merge> merges_from_text(const io::GgufFile& file, const std::vector<std::string>& lines) {
  std::vector<BpeModel::Merge> merges;
  merges.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    // "left right"; the left part may itself start with a space, as llama.cpp's reader allows.
    const size_t space = lines[i].find(' ', 1);
    if (space == std::string::npos)
      fail(key_where(file, "tokenizer.ggml.merges") + ", element " + std::to_string(i) + ": \"" + lines[i] +
           "\" is not two tokens separated by a space");
    merges.emplace_back(lines[i].substr(0, space), lines[i].substr(space + 1));
  }
  return merges;
}

// A token id from `key`, or `fallback` when the key is absent; either must lie inside the vocabulary.
std::optional<int32_t> special_id(const io::GgufFile& file, std::string_view key, std::optional<int32_t> fallback,
                                  size_t vocab_size) {
  const std::optional<uint32_t> id = file.optional_u32(key);
  if (!id) return fallback && size_t(*fallback) < vocab_size ? fallback : std::nullopt;
  if (*id >= vocab_size)
    fail(key_where(file, key) + ": token id " + std::to_string(*id) + " is outside the vocabulary of " +
         std::to_string(vocab_size) + " tokens");
  return int32_t(*id);
}

}  // namespace

GgufTokenizer read_gguf_tokenizer(const io::GgufFile& file) {
  GgufTokenizer out;
  TokenizerSpec& spec = out.spec;
  spec.source = file.path().string() + " (GGUF vocabulary)";

  if (!file.find("tokenizer.ggml.model"))
    fail(file.path().string() + ": no tokenizer in this file (no metadata key 'tokenizer.ggml.model')");
  out.model = file.get_string("tokenizer.ggml.model");
  out.pre = file.optional_string("tokenizer.ggml.pre").value_or("");
  const bool spm = out.model == "llama";
  if (!spm && out.model != "gpt2")
    fail(key_where(file, "tokenizer.ggml.model") + ": tokenizer model '" + out.model +
         "' is not supported (only 'llama', SentencePiece, and 'gpt2', byte-level BPE)");

  std::vector<std::string> tokens = file.get_array<std::string>("tokenizer.ggml.tokens");
  if (tokens.empty() || tokens.size() > size_t(INT32_MAX))
    fail(key_where(file, "tokenizer.ggml.tokens") + ": " + std::to_string(tokens.size()) +
         " tokens (must be 1 to 2^31 - 1)");
  const size_t n = tokens.size();

  std::vector<int32_t> types(n, int32_t(GgufTokenType::Normal));
  if (auto listed = file.optional_array<int32_t>("tokenizer.ggml.token_type")) {
    if (listed->size() < n)
      fail(key_where(file, "tokenizer.ggml.token_type") + ": " + std::to_string(listed->size()) +
           " token types for " + std::to_string(n) + " tokens");
    std::copy_n(listed->begin(), n, types.begin());
  }
  std::vector<float> scores(n, 0.0f);
  if (auto listed = file.optional_array<float>("tokenizer.ggml.scores")) {
    if (listed->size() < n)
      fail(key_where(file, "tokenizer.ggml.scores") + ": " + std::to_string(listed->size()) + " scores for " +
           std::to_string(n) + " tokens");
    std::copy_n(listed->begin(), n, scores.begin());
    for (size_t id = 0; id < n; ++id)
      if (std::isnan(scores[id]))
        fail(key_where(file, "tokenizer.ggml.scores") + ": the score of token " + std::to_string(id) + " is NaN");
  }

  // Special ids, with llama.cpp's defaults for SentencePiece vocabularies (Llama's <unk> <s> </s>).
  out.bos_id = special_id(file, "tokenizer.ggml.bos_token_id", spm ? std::optional<int32_t>(1) : std::nullopt, n);
  out.eos_id = special_id(file, "tokenizer.ggml.eos_token_id", spm ? std::optional<int32_t>(2) : std::nullopt, n);
  out.unk_id = special_id(file, "tokenizer.ggml.unknown_token_id", spm ? std::optional<int32_t>(0) : std::nullopt, n);
  out.pad_id = special_id(file, "tokenizer.ggml.padding_token_id", std::nullopt, n);
  out.eot_id = special_id(file, "tokenizer.ggml.eot_token_id", std::nullopt, n);
  out.eom_id = special_id(file, "tokenizer.ggml.eom_token_id", std::nullopt, n);

  bool llama3_pre = false;
  if (spm) {
    out.add_space_prefix = file.optional_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    spec.merges = merges_from_scores(tokens, scores);
    spec.bpe.byte_fallback = true;
    spec.bpe.fuse_unk = true;
    if (out.unk_id) spec.bpe.unk_token = tokens[size_t(*out.unk_id)];
    if (out.add_space_prefix)
      spec.normalizer.push_back({NormalizerStep::Kind::Prepend, "", false, std::string(metaspace)});
    spec.normalizer.push_back({NormalizerStep::Kind::Replace, " ", false, std::string(metaspace)});
    spec.has_decoder = true;
    spec.decoder.push_back({DecoderStep::Kind::Replace, std::string(metaspace), " "});
    spec.decoder.push_back({DecoderStep::Kind::ByteFallback});
    spec.decoder.push_back({DecoderStep::Kind::Fuse});
    if (out.add_space_prefix) {
      DecoderStep strip{DecoderStep::Kind::Strip};
      strip.content = " ";
      strip.start = 1;
      spec.decoder.push_back(strip);
    }
  } else {
    if (!file.find("tokenizer.ggml.merges"))
      fail(file.path().string() + ": a gpt2 vocabulary needs its merges (no metadata key 'tokenizer.ggml.merges')");
    spec.merges = merges_from_text(file, file.get_array<std::string>("tokenizer.ggml.merges"));
    const std::string& pre = out.pre;
    if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe") {
      llama3_pre = true;
      spec.bpe.ignore_merges = true;
      spec.pre_tokenizer.push_back(split_step(llama3_pattern));
      spec.pre_tokenizer.push_back(byte_level_step(false));
    } else if (pre == "gpt-2" || pre == "gpt2") {
      spec.pre_tokenizer.push_back(byte_level_step(true));
    } else if (pre == "default" || pre.empty()) {
      for (std::string_view pattern : default_patterns) spec.pre_tokenizer.push_back(split_step(pattern));
      spec.pre_tokenizer.push_back(byte_level_step(false));
    } else {
      fail(key_where(file, "tokenizer.ggml.pre") + ": pre-tokenizer '" + pre +
           "' is not supported (supported: llama-bpe, llama3, llama-v3, gpt-2, gpt2, default)");
    }
    spec.has_decoder = true;
    spec.decoder.push_back({DecoderStep::Kind::ByteLevel});
  }

  // BOS by default for SentencePiece and Llama 3, as llama.cpp does; the file's own flags win.
  out.add_bos = file.optional_bool("tokenizer.ggml.add_bos_token").value_or(spm || llama3_pre);
  out.add_eos = file.optional_bool("tokenizer.ggml.add_eos_token").value_or(false);
  if (out.add_bos && !out.bos_id)
    fail(key_where(file, "tokenizer.ggml.add_bos_token") + ": BOS is to be added but the file names no BOS token "
         "(tokenizer.ggml.bos_token_id)");
  if (out.add_eos && !out.eos_id)
    fail(key_where(file, "tokenizer.ggml.add_eos_token") + ": EOS is to be added but the file names no EOS token "
         "(tokenizer.ggml.eos_token_id)");
  if (out.add_bos) spec.prefix_ids.push_back(*out.bos_id);
  if (out.add_eos) spec.suffix_ids.push_back(*out.eos_id);
  if (out.bos_id) spec.bos_token = tokens[size_t(*out.bos_id)];
  if (out.eos_id) spec.eos_token = tokens[size_t(*out.eos_id)];
  spec.chat_template = file.optional_string("tokenizer.chat_template");

  for (size_t id = 0; id < n; ++id) {
    const auto type = GgufTokenType(types[id]);
    if (type != GgufTokenType::Control && type != GgufTokenType::UserDefined && type != GgufTokenType::Unknown)
      continue;
    if (tokens[id].empty()) continue;  // nothing to match
    AddedTokenSpec added;
    added.id = int32_t(id);
    added.content = tokens[id];
    added.special = type != GgufTokenType::UserDefined;
    spec.added_tokens.push_back(std::move(added));
  }
  spec.vocab = std::move(tokens);
  return out;
}

Tokenizer tokenizer_from_gguf(const io::GgufFile& file) { return Tokenizer::from_spec(read_gguf_tokenizer(file).spec); }

}  // namespace inferno::text

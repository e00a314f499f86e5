#include "text/tokenizer_decoder.hpp"

#include <optional>

#include "text/tokenizer_byte_level.hpp"
#include "text/utf8.hpp"
#include "util/error.hpp"

namespace inferno::text {
namespace {

using Kind = DecoderStep::Kind;

std::string replace_all(std::string_view s, std::string_view pattern, std::string_view content) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit = s.find(pattern); hit != std::string_view::npos; hit = s.find(pattern, pos)) {
    out.append(s.substr(pos, hit - pos));
    out.append(content);
    pos = hit + pattern.size();
  }
  out.append(s.substr(pos));
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The byte of a "<0xAB>" token. Parsed as Rust's u8::from_str_radix parses the two characters, which also
// accepts a '+' sign before a single digit.
std::optional<uint8_t> byte_of_token(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return std::nullopt;
  const int hi = hex_value(token[3]), lo = hex_value(token[4]);
  if (token[3] == '+' && lo >= 0) return uint8_t(lo);
  if (hi < 0 || lo < 0) return std::nullopt;
  return uint8_t(hi * 16 + lo);
}

// Strip: at most `start` leading and `stop` trailing copies of one character.
std::string strip_token(std::string_view token, std::string_view content, size_t start, size_t stop) {
  size_t begin = 0, stripped = 0;
  while (stripped < start && token.substr(begin, content.size()) == content) {
    begin += content.size();
    ++stripped;
  }
  size_t end = token.size();
  stripped = 0;
  while (stripped < stop && end >= content.size() && token.substr(end - content.size(), content.size()) == content) {
    end -= content.size();
    ++stripped;
  }
  return begin < end ? std::string(token.substr(begin, end - begin)) : std::string();
}

// Metaspace: the replacement character becomes a space, except in the first token where (unless the prepend
// scheme is "never") every occurrence is dropped, as the tokenizers library does.
std::string metaspace_token(std::string_view token, std::string_view replacement, bool first, PrependScheme scheme) {
  return replace_all(token, replacement, first && scheme != PrependScheme::Never ? "" : " ");
}

// ByteLevel: a token whose characters all come from the byte table stands for those bytes; any other token
// (an added token with other characters, say) stands for its own UTF-8 bytes.
void append_byte_level_bytes(std::string& out, std::string_view token) {
  const size_t mark = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const int b = byte_level::byte_of_char(utf8::decode(token, pos));
    if (b < 0) {
      out.resize(mark);
      out.append(token);
      return;
    }
    out += char(b);
  }
}

}  // namespace

DecoderChain::DecoderChain(bool has_decoder, std::vector<DecoderStep> steps, std::string_view source)
    : has_decoder_(has_decoder), steps_(std::move(steps)) {
  bool fused = false;
  for (const DecoderStep& step : steps_) {
    fused_before_.push_back(fused);
    if (fused && (step.kind == Kind::ByteFallback || step.kind == Kind::ByteLevel))
      fail(std::string(source) + ": decoder: a ByteFallback or ByteLevel step after Fuse is not supported");
    if (fused && step.kind == Kind::Replace && utf8::count_code_points(step.pattern) != 1)
      fail(std::string(source) + ": decoder: a Replace of more than one character after Fuse is not supported");
    if (step.kind == Kind::Fuse || step.kind == Kind::ByteLevel) fused = true;
  }
}

std::string DecoderChain::decode(std::vector<std::string> tokens) const {
  if (!has_decoder_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const DecoderStep& step : steps_) {
    switch (step.kind) {
      case Kind::Replace:
        for (std::string& t : tokens) t = replace_all(t, step.pattern, step.content);
        break;
      case Kind::Strip:
        for (std::string& t : tokens) t = strip_token(t, step.content, step.start, step.stop);
        break;
      case Kind::Metaspace:
        for (size_t i = 0; i < tokens.size(); ++i)
          tokens[i] = metaspace_token(tokens[i], step.content, i == 0, step.prepend_scheme);
        break;
      case Kind::Fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Kind::ByteLevel: {
        std::string bytes;
        for (const std::string& t : tokens) append_byte_level_bytes(bytes, t);
        tokens.assign(1, utf8::to_valid_lossy(bytes));
        break;
      }
      case Kind::ByteFallback: {
        // A run of byte tokens becomes its text if that is valid UTF-8, else one U+FFFD per byte.
        std::vector<std::string> out;
        std::string run;
        auto end_run = [&] {
          if (run.empty()) return;
          if (utf8::is_valid(run)) {
            out.push_back(run);
          } else {
            for (size_t i = 0; i < run.size(); ++i) out.emplace_back(utf8::replacement_character);
          }
          run.clear();
        };
        for (std::string& t : tokens) {
          if (auto b = byte_of_token(t)) {
            run += char(*b);
          } else {
            end_run();
            out.push_back(std::move(t));
          }
        }
        end_run();
        tokens = std::move(out);
        break;
      }
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string DecoderChain::token_bytes(std::string_view token) const {
  std::string t(token);
  if (!has_decoder_) return " " + t;  // decode joins tokens with a space
  for (size_t i = 0; i < steps_.size(); ++i) {
    const DecoderStep& step = steps_[i];
    switch (step.kind) {
      case Kind::Replace: t = replace_all(t, step.pattern, step.content); break;
      case Kind::Strip:  // after fusing, Strip sees the whole text, whose ends are elsewhere
        if (!fused_before_[i]) t = strip_token(t, step.content, step.start, step.stop);
        break;
      case Kind::Metaspace: t = metaspace_token(t, step.content, false, step.prepend_scheme); break;
      case Kind::Fuse: break;
      case Kind::ByteLevel: {
        std::string bytes;
        append_byte_level_bytes(bytes, t);
        t = std::move(bytes);
        break;
      }
      case Kind::ByteFallback:
        if (auto b = byte_of_token(t)) t.assign(1, char(*b));
        break;
    }
  }
  return t;
}

DecoderChain::Stream::Stream(const DecoderChain& chain) : chain_(&chain), states_(chain.steps_.size()) {}

std::string DecoderChain::Stream::push(std::string_view token) {
  if (!chain_->has_decoder_) {
    if (any_token_) out_ += ' ';
    any_token_ = true;
    out_.append(token);
  } else {
    feed(0, std::string(token));
  }
  return std::exchange(out_, std::string());
}

std::string DecoderChain::Stream::finish() {
  if (chain_->has_decoder_) flush(0);
  std::string rest = std::exchange(out_, std::string());
  states_.assign(chain_->steps_.size(), StageState{});
  any_token_ = false;
  return rest;
}

void DecoderChain::Stream::feed(size_t stage, std::string item) {
  if (stage == chain_->steps_.size()) {
    out_ += item;
    return;
  }
  const DecoderStep& step = chain_->steps_[stage];
  const bool fused = chain_->fused_before_[stage];
  StageState& state = states_[stage];
  switch (step.kind) {
    case Kind::Replace:
      // After fusing, items are pieces of one string cut at character boundaries, and the pattern is one
      // character (checked in the constructor), so replacing within each piece is exact.
      feed(stage + 1, replace_all(item, step.pattern, step.content));
      return;
    case Kind::Metaspace:
      // After fusing there is only one token, the first.
      feed(stage + 1, metaspace_token(item, step.content, fused || state.tokens_seen++ == 0, step.prepend_scheme));
      return;
    case Kind::Fuse:
      feed(stage + 1, std::move(item));
      return;
    case Kind::ByteFallback:
      if (auto b = byte_of_token(item)) {
        state.byte_run += char(*b);  // held: a later byte token can still make the run invalid
      } else {
        flush_byte_run(stage);
        feed(stage + 1, std::move(item));
      }
      return;
    case Kind::ByteLevel: {
      append_byte_level_bytes(state.pending_bytes, item);
      const size_t keep = utf8::incomplete_tail_length(state.pending_bytes);
      if (state.pending_bytes.size() > keep) {
        std::string text = utf8::to_valid_lossy(std::string_view(state.pending_bytes).substr(0, state.pending_bytes.size() - keep));
        state.pending_bytes.erase(0, state.pending_bytes.size() - keep);
        feed(stage + 1, std::move(text));
      }
      return;
    }
    case Kind::Strip: {
      if (!fused) {
        feed(stage + 1, strip_token(item, step.content, step.start, step.stop));
        return;
      }
      // One string arriving in pieces: strip at its very start, and hold a run of strip characters at the
      // current end until something else follows (or the stream ends, and they are dropped).
      std::string out;
      std::string_view rest = item;
      const std::string_view c = step.content;
      while (!rest.empty()) {
        const bool is_strip_char = rest.substr(0, c.size()) == c;
        const size_t length = is_strip_char ? c.size() : utf8::sequence_length(uint8_t(rest[0]));
        const std::string_view ch = rest.substr(0, length);
        rest.remove_prefix(length);
        if (!state.past_start) {
          if (is_strip_char && state.stripped_at_start < step.start) {
            ++state.stripped_at_start;
            continue;
          }
          state.past_start = true;
        }
        if (step.stop == 0) {
          out += ch;
        } else if (is_strip_char) {
          state.held_at_end += ch;
          if (++state.held_count > step.stop) {  // more than can be stripped: the oldest one stays
            out += c;
            state.held_at_end.erase(0, c.size());
            --state.held_count;
          }
        } else {
          out += state.held_at_end;
          state.held_at_end.clear();
          state.held_count = 0;
          out += ch;
        }
      }
      if (!out.empty()) feed(stage + 1, std::move(out));
      return;
    }
  }
}

void DecoderChain::Stream::flush_byte_run(size_t stage) {
  std::string run = std::exchange(states_[stage].byte_run, std::string());
  if (run.empty()) return;
  if (utf8::is_valid(run)) {
    feed(stage + 1, std::move(run));
  } else {
    // One U+FFFD token per byte, as the batch decoder makes them (later per-token steps count them).
    for (size_t i = 0; i < run.size(); ++i) feed(stage + 1, std::string(utf8::replacement_character));
  }
}

void DecoderChain::Stream::flush(size_t stage) {
  if (stage == chain_->steps_.size()) return;
  StageState& state = states_[stage];
  switch (chain_->steps_[stage].kind) {
    case Kind::ByteFallback:
      flush_byte_run(stage);
      break;
    case Kind::ByteLevel:
      if (!state.pending_bytes.empty()) feed(stage + 1, utf8::to_valid_lossy(std::exchange(state.pending_bytes, {})));
      break;
    case Kind::Strip:
      state.held_at_end.clear();  // the end of the string: these are the trailing characters to strip
      state.held_count = 0;
      break;
    default:
      break;
  }
  flush(stage + 1);
}

}  // namespace inferno::text

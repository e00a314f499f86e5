#pragma once
// The decoder chain of tokenizer.json (Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace), twice:
// `decode` follows the tokenizers library step by step over the whole token list; `Stream` gives the same text
// piece by piece as tokens arrive, holding back only what a later token could still change (an unfinished
// UTF-8 character, a run of <0xAB> byte tokens, a strippable tail).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer_spec.hpp"

namespace inferno::text {

class DecoderChain {
 public:
  // has_decoder false: no decoder at all (tokens joined with spaces). Throws for chains that cannot be streamed
  // exactly (a byte-level or byte-fallback step after the tokens were fused, a multi-character Replace after it).
  DecoderChain(bool has_decoder, std::vector<DecoderStep> steps, std::string_view source);

  // The tokenizers library's Decoder::decode: every step over the whole list, then the pieces concatenated.
  std::string decode(std::vector<std::string> tokens) const;
  // The bytes one token stands for in the middle of a text: each step on the token alone, as if tokens came before
  // and after it (no stripping at the ends of the text, Metaspace's "▁" a space), byte tokens as their raw bytes,
  // which may be part of a UTF-8 character only; without a decoder, the space that joins it to the token before.
  // For logprobs' bytes and constrained decoding.
  std::string token_bytes(std::string_view token) const;

  class Stream {
   public:
    explicit Stream(const DecoderChain& chain);
    std::string push(std::string_view token);  // text that no later token can change
    std::string finish();                      // the rest; the stream then starts over
   private:
    struct StageState {
      std::string byte_run;          // ByteFallback: bytes of consecutive <0xAB> tokens
      std::string pending_bytes;     // ByteLevel: an unfinished UTF-8 sequence
      size_t tokens_seen = 0;        // Metaspace: index of the next token
      size_t stripped_at_start = 0;  // Strip after fusing: characters removed so far at the very start
      bool past_start = false;       //   ... and whether something else has come since
      std::string held_at_end;       //   trailing strip characters that may turn out to be the end
      size_t held_count = 0;
    };
    void feed(size_t stage, std::string item);
    void flush(size_t stage);
    void flush_byte_run(size_t stage);

    const DecoderChain* chain_;
    std::vector<StageState> states_;
    bool any_token_ = false;  // without a decoder: whether a space goes before the next token
    std::string out_;
  };

 private:
  bool has_decoder_;
  std::vector<DecoderStep> steps_;
  std::vector<bool> fused_before_;  // whether step i sees the one fused string instead of separate tokens
};

}  // namespace inferno::text

#pragma once
// A tokenizer from the vocabulary a GGUF file carries (tokenizer.ggml.*), with llama.cpp's semantics
// (llama-vocab.cpp), expressed as a TokenizerSpec so that the same Tokenizer runs it:
//
// - "llama" (SentencePiece): tokens with scores. llama.cpp merges, again and again, the adjacent pair whose
//   concatenation is a token with the highest score (leftmost first among equals), then spells symbols that are
//   not tokens as <0xAB> byte tokens. Here every way of cutting a token into two tokens becomes a BPE merge,
//   ranked by the score of the token they make: the same merges in the same order, so the same ids wherever the
//   scores of tokens made from other tokens are distinct (SentencePiece's BPE vocabularies, where a piece's
//   score is minus its merge rank). A space is prepended (add_space_prefix, default on) to the text and after
//   every special token, spaces become "▁"; decoding turns "▁" back into spaces and drops the first one.
// - "gpt2" (byte-level BPE): tokens and ranked merges; tokenizer.ggml.pre picks the pre-tokenizer split:
//   "llama-bpe" / "llama3" / "llama-v3" (Llama 3's regex, whole words found in the vocabulary taken as they are),
//   "gpt-2" / "gpt2" (GPT-2's regex), "default" (llama.cpp's fallback chain of four regexes).
//
// Tokens of type CONTROL, USER_DEFINED and UNKNOWN are added tokens, matched in the text before anything else;
// CONTROL and UNKNOWN ones are special (skipped when decoding with skip_special_tokens), as llama.cpp renders
// them only on request. BOS / EOS follow tokenizer.ggml.add_bos_token / add_eos_token with llama.cpp's defaults.
#include <cstdint>
#include <optional>
#include <string>

#include "io/gguf.hpp"
#include "text/tokenizer.hpp"
#include "text/tokenizer_spec.hpp"

namespace inferno::text {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class GgufTokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// The spec, and what the GGUF vocabulary says beyond it.
struct GgufTokenizer {
  TokenizerSpec spec;
  std::string model;  // tokenizer.ggml.model: "llama" or "gpt2"
  std::string pre;    // tokenizer.ggml.pre as written, "" when absent
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id, eot_id, eom_id;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;  // SentencePiece: a space before the text and after each special token
};

// Throws inferno::Error naming the file and the key for a missing, malformed or unsupported vocabulary.
GgufTokenizer read_gguf_tokenizer(const io::GgufFile& file);
Tokenizer tokenizer_from_gguf(const io::GgufFile& file);

}  // namespace inferno::text

#pragma once
// Tokenizer driven by a Hugging Face tokenizer.json (+ tokenizer_config.json), giving the same ids and text as the
// `tokenizers` library: byte-level BPE (Llama 3) and SentencePiece-style BPE with byte fallback (Llama 2,
// TinyLlama, Mistral), added/special tokens, the post-processor's BOS/EOS, and the decoder chain.
//
// The pipeline, as in the tokenizers library: split the text on added tokens -> normalize each piece -> split on
// added tokens that match normalized text -> pre-tokenize into words -> BPE each word -> add BOS/EOS.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer_spec.hpp"

namespace inferno::text {

class Tokenizer {
 public:
  // tokenizer_config_json may not exist; then bos/eos/chat template come only from tokenizer.json.
  static Tokenizer from_files(const std::filesystem::path& tokenizer_json,
                              const std::filesystem::path& tokenizer_config_json);
  // tokenizer.json (+ tokenizer_config.json, + chat_template.jinja when the config has no template) in dir.
  static Tokenizer from_dir(const std::filesystem::path& dir);
  // From a spec filled by any reader (tokenizer.json today, a GGUF vocabulary later).
  static Tokenizer from_spec(TokenizerSpec spec);

  // Throws inferno::Error "input text is not valid UTF-8 at byte N" for invalid input.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Ids without a token (outside the vocabulary: padded embeddings) are skipped, as the tokenizers library does.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;

  // One past the largest id (added tokens included).
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // the token string as stored (e.g. "Ġworld", "▁world")
  // The bytes the token stands for within a decoded text (" world"; "<0xE2>" is one byte), "" for an id without a
  // token (DecoderChain::token_bytes).
  std::string token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  // For every id: the bytes the token adds in the middle of a text (see DecoderChain::token_bytes); empty for
  // special tokens and ids without a token.
  std::vector<std::string> token_bytes() const;

  // BOS/EOS: tokenizer_config.json's bos_token/eos_token; without them, the post-processor's added tokens;
  // without those, the usual added special tokens (<s>, <|begin_of_text|>, ...). Whether encode adds BOS
  // is the post-processor's business, not bos_id's: Llama 3's tokenizer.json has a BOS it never adds.
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;
  std::string bos_token() const;  // "" when there is none
  std::string eos_token() const;
  std::optional<std::string> chat_template() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class StreamingDecoder;
};

// Turns ids into text as they are generated. The pieces, concatenated, equal Tokenizer::decode of all the ids:
// no piece ends inside a UTF-8 character, runs of <0xAB> byte tokens come out joined, and the SentencePiece
// decoder's leading-space strip applies only at the very start.
class StreamingDecoder {
 public:
  StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  ~StreamingDecoder();
  StreamingDecoder(StreamingDecoder&&) noexcept;
  StreamingDecoder& operator=(StreamingDecoder&&) noexcept;

  std::string push(int32_t id);  // text that is now final (often empty)
  std::string finish();          // whatever is left (unfinished bytes become U+FFFD, as decode does); then starts over

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace inferno::text

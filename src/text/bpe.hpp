#pragma once
// The BPE model of Hugging Face `tokenizers` (models::bpe): a vocabulary, merges applied by rank, and the rules
// for characters outside the vocabulary (byte fallback to <0xAB> tokens, or an unknown token, possibly fused).
// It is built from plain vectors, not from JSON, so that a GGUF vocabulary can feed it the same way.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace inferno::text {

// Hash and equality that let a std::unordered_map<std::string, V> be searched with a string_view.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct StringViewEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringViewHash, StringViewEqual>;

struct BpeOptions {
  std::optional<std::string> unk_token;  // token for characters outside the vocabulary (after byte fallback)
  bool fuse_unk = false;                 // consecutive unknown characters become one unknown token
  bool byte_fallback = false;            // unknown characters become their <0xAB> byte tokens, when all exist
  bool ignore_merges = false;            // a whole pre-token found in the vocabulary is taken as is
};

class BpeModel {
 public:
  using Merge = std::pair<std::string, std::string>;

  // tokens[id] is the token string of id; an empty string marks an id with no token. merges are in rank order
  // (the first merge is applied first). `source` names where they came from, for error messages.
  BpeModel(std::vector<std::string> tokens, const std::vector<Merge>& merges, BpeOptions options,
           std::string_view source);

  // Appends the ids of one pre-token (the `tokenize` of the tokenizers library, ignore_merges included).
  void tokenize(std::string_view pre_token, std::vector<int32_t>& ids) const;

  // Appends the ids of one word by merges alone (no ignore_merges look-up).
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;

  // Splits a pre-token into parts whose merges cannot interact, so that each part can be merged (and cached)
  // on its own with the same result as the whole. For SentencePiece-style vocabularies this cuts before every
  // "▁" that follows another character, which keeps merging linear in the text length and lets a text
  // without any pre-tokenizer reuse the result of each repeated word. A single part when not provably safe.
  void split_independent(std::string_view pre_token, std::vector<std::string_view>& parts) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr for an id without a token.
  const std::string* id_to_token(int32_t id) const;
  int32_t size() const { return int32_t(tokens_.size()); }
  const BpeOptions& options() const { return options_; }

 private:
  // Merging looks pairs and characters up millions of times per megabyte of text: both tables are flat
  // open-addressing hash tables (linear probing) rather than node-based maps.
  struct MergeSlot {
    uint64_t pair;  // left id << 32 | right id; empty_pair if the slot is free
    uint32_t rank;
    int32_t merged_id;
  };
  struct TokenSlot {
    uint32_t hash;  // low bits of the token's hash, to skip most string comparisons
    int32_t id;     // -1 if the slot is free
  };
  static constexpr uint64_t empty_pair = ~uint64_t(0);
  static uint64_t pair_key(int32_t left, int32_t right) { return uint64_t(uint32_t(left)) << 32 | uint32_t(right); }
  const MergeSlot* find_merge(int32_t left, int32_t right) const;
  void insert_merge(uint64_t pair, uint32_t rank, int32_t merged_id);
  std::optional<int32_t> char_id(uint32_t cp, std::string_view text) const;

  std::vector<std::string> tokens_;
  std::vector<TokenSlot> token_slots_;
  std::vector<MergeSlot> merge_slots_;
  std::vector<int32_t> bmp_char_ids_;      // id of each single-character token below U+10000, -1 if none
  std::array<int32_t, 256> byte_ids_;      // id of each <0xAB> byte token, -1 if none
  std::optional<int32_t> unk_id_;
  BpeOptions options_;
  bool split_before_metaspace_ = false;    // see split_independent
};

}  // namespace inferno::text

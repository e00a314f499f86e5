#pragma once
// Everything that defines a tokenizer, as plain data: what tokenizer.json + tokenizer_config.json say, in a form
// that a GGUF vocabulary can fill as well. Tokenizer::from_spec turns it into a working tokenizer.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "text/bpe.hpp"

namespace inferno::text {

// How the pieces matched by a Split pattern are kept (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// When Metaspace adds its replacement character in front of a piece.
enum class PrependScheme { Always, First, Never };

struct NormalizerStep {
  enum class Kind { Prepend, Replace, Nfc, Nfd, Nfkc, Nfkd };
  Kind kind;
  std::string pattern;            // Replace: text (or regex when pattern_is_regex) to replace
  bool pattern_is_regex = false;
  std::string content;            // Prepend: the prefix; Replace: the replacement
};

struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel, Metaspace };
  Kind kind;
  // Split
  std::string pattern;
  bool pattern_is_regex = false;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  // ByteLevel: GPT-2's byte-to-character mapping, optionally with a leading space and GPT-2's own split regex
  bool add_prefix_space = false;
  bool use_regex = true;
  // Metaspace: spaces become `replacement`, which may be prepended; optionally split before each one
  std::string replacement;
  PrependScheme prepend_scheme = PrependScheme::Always;
  bool split = true;
};

struct DecoderStep {
  enum class Kind { Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace };
  Kind kind;
  std::string pattern;            // Replace: text to replace
  std::string content;            // Replace: replacement; Strip: the one character to strip; Metaspace: replacement
  size_t start = 0, stop = 0;     // Strip: at most this many characters from the start / the end
  PrependScheme prepend_scheme = PrependScheme::Always;  // Metaspace
};

struct AddedTokenSpec {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;       // swallow whitespace on its left
  bool rstrip = false;       // swallow whitespace on its right
  bool normalized = false;   // matched in the normalized text rather than the raw input
  bool single_word = false;  // matched only when not inside a word
};

struct TokenizerSpec {
  std::string source;  // the file(s) it came from, for error messages

  // The BPE model.
  std::vector<std::string> vocab;  // vocab[id]; empty string = no token at this id
  std::vector<BpeModel::Merge> merges;
  BpeOptions bpe;

  std::vector<AddedTokenSpec> added_tokens;
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  // The decoder chain. Without a decoder, the tokenizers library joins the token strings with spaces.
  bool has_decoder = false;
  std::vector<DecoderStep> decoder;

  // Post-processor for a single sequence with add_special_tokens: ids before and after the text.
  std::vector<int32_t> prefix_ids;
  std::vector<int32_t> suffix_ids;

  // From tokenizer_config.json (or derived, see Tokenizer::bos_id).
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> chat_template;
};

}  // namespace inferno::text

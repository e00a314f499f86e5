#pragma once
// UTF-8 functions for the tokenizer: validation, code point decode/encode, and the lossy conversion that the
// Hugging Face decoders use (Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace inferno::text::utf8 {

inline constexpr size_t npos = std::string_view::npos;
inline constexpr std::string_view replacement_character = "\xEF\xBF\xBD";  // U+FFFD

// Byte offset of the first byte that does not belong to a well-formed UTF-8 sequence, or npos if all is valid.
size_t find_invalid(std::string_view bytes);
inline bool is_valid(std::string_view bytes) { return find_invalid(bytes) == npos; }

// Length of the UTF-8 sequence that starts at lead byte `lead` in well-formed text (1 to 4).
inline size_t sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at bytes[pos] (which must be well-formed) and advances pos past it.
uint32_t decode(std::string_view bytes, size_t& pos);

// Appends the UTF-8 encoding of code point cp.
void append(std::string& out, uint32_t cp);
inline std::string encode(uint32_t cp) {
  std::string s;
  append(s, cp);
  return s;
}

// Number of code points in well-formed text.
size_t count_code_points(std::string_view bytes);

// Well-formed text from arbitrary bytes: every maximal subpart of an ill-formed sequence becomes one U+FFFD,
// as the Unicode standard recommends and Rust's from_utf8_lossy does (so an incomplete sequence at the end
// becomes a single U+FFFD).
std::string to_valid_lossy(std::string_view bytes);
void append_valid_lossy(std::string& out, std::string_view bytes);

// Length (0 to 3) of a trailing sequence that is incomplete but could still become a valid character if more
// bytes followed. Streaming decoders hold these bytes back instead of emitting U+FFFD for them too early.
size_t incomplete_tail_length(std::string_view bytes);

}  // namespace inferno::text::utf8

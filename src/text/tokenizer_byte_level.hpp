#pragma once
// GPT-2's byte-to-unicode table, used by byte-level BPE (Llama 3): each byte becomes one printable character,
// so that token strings never hold raw bytes. Printable Latin-1 bytes map to themselves; the others (controls,
// space, 0x7F-0xA0, 0xAD) map to U+0100 onwards, in byte order.
#include <array>
#include <cstdint>
#include <string>

namespace inferno::text::byte_level {

// The code point byte b maps to.
inline uint32_t char_of_byte(uint8_t b) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (int i = 0; i < 256; ++i) {
      const bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      t[i] = printable ? uint32_t(i) : next++;
    }
    return t;
  }();
  return table[b];
}

// The byte that code point cp stands for, or -1 if cp is not in the table.
inline int byte_of_char(uint32_t cp) {
  static const std::array<int16_t, 324> table = [] {  // all mapped code points are below 256 + 68
    std::array<int16_t, 324> t{};
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[char_of_byte(uint8_t(b))] = int16_t(b);
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

}  // namespace inferno::text::byte_level

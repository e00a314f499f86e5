#include "text/utf8.hpp"

namespace inferno::text::utf8 {
namespace {

// For a lead byte: how many bytes its sequence has (0 = cannot start a sequence), and the allowed range of the
// second byte (narrower than 80..BF for E0, ED, F0, F4: this rules out overlong forms, surrogates and code points
// above U+10FFFF, per Table 3-7 of the Unicode standard).
struct LeadInfo {
  uint8_t length;
  uint8_t second_min;
  uint8_t second_max;
};

LeadInfo lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};  // continuation bytes, and C0/C1 (always overlong)
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// How many bytes from pos form a valid prefix of one sequence (at least 1 if bytes[pos] is a lead byte), and
// whether that prefix is the complete sequence.
struct Prefix {
  size_t length;
  bool complete;
};

Prefix valid_prefix(std::string_view bytes, size_t pos) {
  const LeadInfo info = lead_info(uint8_t(bytes[pos]));
  if (info.length == 0) return {0, false};
  if (info.length == 1) return {1, true};
  size_t n = 1;
  while (n < info.length && pos + n < bytes.size()) {
    const uint8_t b = uint8_t(bytes[pos + n]);
    const uint8_t lo = n == 1 ? info.second_min : 0x80;
    const uint8_t hi = n == 1 ? info.second_max : 0xBF;
    if (b < lo || b > hi) break;
    ++n;
  }
  return {n, n == info.length};
}

}  // namespace

size_t find_invalid(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (uint8_t(bytes[pos]) < 0x80) {  // ASCII fast path
      ++pos;
      continue;
    }
    const Prefix p = valid_prefix(bytes, pos);
    if (!p.complete) return pos;
    pos += p.length;
  }
  return npos;
}

uint32_t decode(std::string_view bytes, size_t& pos) {
  const uint8_t b0 = uint8_t(bytes[pos]);
  const size_t n = sequence_length(b0);
  uint32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (uint8_t(bytes[pos + i]) & 0x3F);
  pos += n;
  return cp;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

size_t count_code_points(std::string_view bytes) {
  size_t n = 0;
  for (char c : bytes) n += (uint8_t(c) & 0xC0) != 0x80;
  return n;
}

void append_valid_lossy(std::string& out, std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Prefix p = valid_prefix(bytes, pos);
    if (p.complete) {
      out.append(bytes.substr(pos, p.length));
      pos += p.length;
    } else {
      out.append(replacement_character);
      pos += p.length == 0 ? 1 : p.length;
    }
  }
}

std::string to_valid_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  append_valid_lossy(out, bytes);
  return out;
}

size_t incomplete_tail_length(std::string_view bytes) {
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t pos = n - back;
    const uint8_t b = uint8_t(bytes[pos]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: the lead, if any, is further back
    const Prefix p = valid_prefix(bytes, pos);
    return (!p.complete && p.length == back) ? back : 0;
  }
  return 0;
}

}  // namespace inferno::text::utf8

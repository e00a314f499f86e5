#include "text/tokenizer_regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/utf8.hpp"
#include "util/error.hpp"

namespace inferno::text {
namespace {

// Unicode White_Space, the meaning of `\s` in Oniguruma with UTF-8.
constexpr std::string_view white_space_items =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

std::string pcre2_pattern_from_oniguruma(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      if (e == 's') {
        if (in_class) {
          out += white_space_items;
        } else {
          out += '[';
          out += white_space_items;
          out += ']';
        }
      } else if (e == 'S' && !in_class) {
        out += "[^";
        out += white_space_items;
        out += ']';
      } else {
        out += c;
        out += e;
      }
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') out += p[i++];  // a leading ']' is literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class such as [:alpha:]
      const size_t close = p.find(":]", i + 2);
      if (close != std::string_view::npos) {
        out.append(p.substr(i, close + 2 - i));
        i = close + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
    ++i;
  }
  return out;
}

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
};

Regex::Regex(std::string_view pattern, std::string_view what)
    : pattern_(pattern), what_(what), code_(std::make_unique<Code>()) {
  const std::string translated = pcre2_pattern_from_oniguruma(pattern);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr);
  if (!code_->code)
    fail(std::string(what) + ": cannot compile regex \"" + pattern_ + "\": " + pcre2_message(error) +
         " at offset " + std::to_string(error_offset));
  // JIT makes splitting a megabyte of text take milliseconds; without it (unsupported CPU) the interpreter works.
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  if (code_ && code_->code) pcre2_code_free(code_->code);
}

struct Regex::Matcher::State {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  ~State() {
    if (match_data) pcre2_match_data_free(match_data);
    if (context) pcre2_match_context_free(context);
    if (jit_stack) pcre2_jit_stack_free(jit_stack);
  }
};

Regex::Matcher::Matcher(const Regex& regex) : regex_(regex), state_(std::make_unique<State>()) {
  state_->match_data = pcre2_match_data_create_from_pattern(regex_.code_->code, nullptr);
  if (!state_->match_data) fail(regex_.what_ + ": out of memory for regex match data");
}

Regex::Matcher::~Matcher() = default;

void Regex::Matcher::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) {
  matches.clear();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  size_t previous_end = std::string_view::npos;
  while (start <= text.size()) {
    // The text was validated once up front; checking it again on every call would make splitting quadratic.
    int rc = pcre2_match(regex_.code_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, state_->match_data,
                         state_->context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !state_->jit_stack) {
      // Deeply backtracking input: give the JIT a larger stack once and retry.
      state_->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
      state_->context = pcre2_match_context_create(nullptr);
      if (!state_->jit_stack || !state_->context) fail(regex_.what_ + ": out of memory for the regex JIT stack");
      pcre2_jit_stack_assign(state_->context, nullptr, state_->jit_stack);
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail(regex_.what_ + ": regex \"" + regex_.pattern_ + "\" failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state_->match_data);
    const size_t begin = ovector[0], end = ovector[1];
    if (begin == end) {
      // An empty match is kept unless it touches the previous match (Rust's find_iter rule); either way the
      // search moves on by one character.
      if (begin != previous_end) matches.emplace_back(begin, end);
      if (begin >= text.size()) break;
      start = begin + utf8::sequence_length(uint8_t(text[begin]));
      continue;
    }
    matches.emplace_back(begin, end);
    previous_end = end;
    start = end;
  }
}

}  // namespace inferno::text

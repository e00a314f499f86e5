// The template lexer. jinja2 defines its lexer by regular expressions; this follows the same rules by hand:
// - `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`, `-#}` all whitespace after it;
// - lstrip_blocks: spaces and tabs between the start of a line and a block or comment tag go (unless `{%+`);
// - trim_blocks: one newline right after a block or comment tag goes (unless `+%}`), never after `}}`;
// - newlines are normalized to \n and a single trailing newline of the template is dropped.
#include "text/jinja_lexer.hpp"

#include <charconv>
#include <cmath>
#include <optional>

#include "text/jinja_internal.hpp"
#include "util/error.hpp"

namespace inferno::text::jinja {

void syntax_error(int line, const std::string& what) {
  throw Error("chat template line " + std::to_string(line) + ": " + what);
}

namespace {

std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // jinja2's keep_trailing_newline=False
  return out;
}

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize_newlines(source)) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t tag = find_tag_start(pos_);
      if (tag == std::string::npos) {
        emit_text(std::string_view(src_).substr(pos_));
        pos_ = src_.size();
        break;
      }
      const char kind = src_[tag + 1];
      size_t after = tag + 2;
      const char sign = after < src_.size() && (src_[after] == '-' || src_[after] == '+') ? src_[after] : 0;
      if (sign) ++after;
      std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);
      emit_text(strip_before_tag(text, sign, kind != '{'));
      line_ += count_newlines(text);
      if (kind == '%') {
        if (auto raw_end = match_raw_begin(after)) {
          lex_raw(tag, *raw_end);
          continue;
        }
      }
      if (kind == '#') {
        lex_comment(tag, after);
      } else {
        lex_tag(kind, tag, after);
      }
    }
    tokens_.push_back(Token{TokenType::End, "", line_});
    return std::move(tokens_);
  }

 private:
  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  // Whether the text that follows starts a line (the template start, or the last tag ended with a newline).
  bool line_starting_ = true;
  std::vector<Token> tokens_;

  bool starts_with(size_t at, std::string_view s) const { return std::string_view(src_).substr(at).starts_with(s); }

  size_t find_tag_start(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  size_t skip_space(size_t at) const {
    while (at < src_.size()) {
      size_t next = at;
      if (!is_space(decode_utf8(src_, next))) break;
      at = next;
    }
    return at;
  }

  static bool all_space(std::string_view s) {
    size_t pos = 0;
    while (pos < s.size())
      if (!is_space(decode_utf8(s, pos))) return false;
    return true;
  }

  // The text before a tag, after the tag's whitespace control.
  std::string_view strip_before_tag(std::string_view text, char sign, bool lstrip_applies) const {
    if (sign == '-') return strip_right(text);
    if (sign != '+' && lstrip_applies) {
      size_t line_start = text.rfind('\n');
      line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
      if ((line_start > 0 || line_starting_) && line_start < text.size() && all_space(text.substr(line_start)))
        return text.substr(0, line_start);
    }
    return text;
  }

  static std::string_view strip_right(std::string_view text) {
    size_t keep = 0, pos = 0;
    while (pos < text.size())
      if (!is_space(decode_utf8(text, pos))) keep = pos;
    return text.substr(0, keep);
  }

  void emit_text(std::string_view text) {
    if (!text.empty()) tokens_.push_back(Token{TokenType::Text, std::string(text), line_});
  }

  // Moves past a tag that ended at `end` (exclusive), counting its lines.
  void finish_tag(size_t tag_start, size_t end) {
    line_ += count_newlines(std::string_view(src_).substr(tag_start, end - tag_start));
    pos_ = end;
    line_starting_ = end > 0 && src_[end - 1] == '\n';
  }

  // `{% raw %}` (after `{%` and its sign): the position after the tag, or nothing if this is another tag.
  std::optional<size_t> match_raw_begin(size_t at) const {
    at = skip_space(at);
    if (!starts_with(at, "raw")) return std::nullopt;
    at = skip_space(at + 3);
    if (starts_with(at, "-%}")) return skip_space(at + 3);
    if (starts_with(at, "%}")) return at + 2;  // jinja2 applies no trim_blocks after `{% raw %}`
    return std::nullopt;
  }

  void lex_raw(size_t tag_start, size_t body_start) {
    const int opened = line_;
    finish_tag(tag_start, body_start);
    for (size_t search = body_start;;) {
      size_t q = src_.find("{%", search);
      if (q == std::string::npos) syntax_error(opened, "missing end of raw directive ('{% endraw %}')");
      size_t at = q + 2;
      char sign = at < src_.size() && (src_[at] == '-' || src_[at] == '+') ? src_[at] : 0;
      if (sign) ++at;
      at = skip_space(at);
      if (!starts_with(at, "endraw")) {
        search = q + 2;
        continue;
      }
      at = skip_space(at + 6);
      size_t end;
      if (starts_with(at, "+%}")) {
        end = at + 3;
      } else if (starts_with(at, "-%}")) {
        end = skip_space(at + 3);
      } else if (starts_with(at, "%}")) {
        end = at + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      } else {
        search = q + 2;
        continue;
      }
      std::string_view body = std::string_view(src_).substr(body_start, q - body_start);
      emit_text(strip_before_tag(body, sign, true));
      line_ += count_newlines(body);
      finish_tag(q, end);
      return;
    }
  }

  void lex_comment(size_t tag_start, size_t content_start) {
    size_t close = src_.find("#}", content_start);
    if (close == std::string::npos) syntax_error(line_, "missing end of comment tag '#}'");
    size_t end = close + 2;
    const char sign = close > content_start ? src_[close - 1] : 0;
    if (sign == '-') {
      end = skip_space(end);
    } else if (sign != '+' && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    finish_tag(tag_start, end);
  }

  void lex_tag(char kind, size_t tag_start, size_t at) {
    const bool block = kind == '%';
    const int opened = line_;
    tokens_.push_back(Token{block ? TokenType::BlockBegin : TokenType::VariableBegin, "", line_});
    int line = line_;
    std::string brackets;  // expected closers of the open brackets
    while (true) {
      if (at >= src_.size())
        syntax_error(opened,
                     block ? "unclosed block tag '{%' (missing '%}')" : "unclosed variable tag '{{' (missing '}}')");
      if (brackets.empty()) {
        size_t end = 0;
        if (block) {
          if (starts_with(at, "+%}")) {
            end = at + 3;
          } else if (starts_with(at, "-%}")) {
            end = skip_space(at + 3);
          } else if (starts_with(at, "%}")) {
            end = at + 2;
            if (end < src_.size() && src_[end] == '\n') ++end;
          }
        } else {
          if (starts_with(at, "-}}"))
            end = skip_space(at + 3);
          else if (starts_with(at, "}}"))
            end = at + 2;
        }
        if (end) {
          tokens_.push_back(Token{block ? TokenType::BlockEnd : TokenType::VariableEnd, "", line});
          finish_tag(tag_start, end);
          return;
        }
      }
      const char c = src_[at];
      size_t next = at;
      if (is_space(decode_utf8(src_, next))) {
        line += c == '\n';
        at = next;
      } else if (is_digit(c)) {
        at = lex_number(at, line);
      } else if (is_name_start(c)) {
        size_t end = at;
        while (end < src_.size() && is_name_char(src_[end])) ++end;
        tokens_.push_back(Token{TokenType::Name, src_.substr(at, end - at), line});
        at = end;
      } else if (c == '\'' || c == '"') {
        at = lex_string(at, line);
      } else {
        at = lex_operator(at, line, brackets);
      }
    }
  }

  size_t scan_digits(size_t at, bool (*digit)(char)) const {
    // digits with single underscores between them, as Python's 1_000
    size_t end = at;
    while (end < src_.size() &&
           (digit(src_[end]) || (src_[end] == '_' && end > at && end + 1 < src_.size() && digit(src_[end + 1]))))
      ++end;
    return end;
  }

  size_t lex_number(size_t at, int line) {
    std::string digits;
    auto keep = [&](size_t from, size_t to) {
      for (size_t i = from; i < to; ++i)
        if (src_[i] != '_') digits += src_[i];
    };
    // A float may not follow a '.', so that `x.0.1` reads as item 0, item 1 (jinja2's rule).
    const bool after_dot = at > 0 && src_[at - 1] == '.';
    size_t int_end = scan_digits(at, is_digit);
    if (!after_dot) {
      size_t end = int_end;
      bool is_float = false;
      if (end + 1 < src_.size() && src_[end] == '.' && is_digit(src_[end + 1])) {
        end = scan_digits(end + 1, is_digit);
        is_float = true;
      }
      if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
        size_t exp = end + 1;
        if (exp < src_.size() && (src_[exp] == '+' || src_[exp] == '-')) ++exp;
        if (exp < src_.size() && is_digit(src_[exp])) {
          end = scan_digits(exp, is_digit);
          is_float = true;
        }
      }
      if (is_float) {
        keep(at, end);
        Token token{TokenType::Float, src_.substr(at, end - at), line};
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), token.real);
        if (ec == std::errc::result_out_of_range)
          token.real =
              digits.find("e-") != std::string::npos || digits.find("E-") != std::string::npos ? 0.0 : HUGE_VAL;
        tokens_.push_back(std::move(token));
        return end;
      }
    }
    int base = 10;
    size_t end = int_end;
    if (src_[at] == '0' && at + 1 < src_.size()) {
      const char prefix = char(src_[at + 1] | 0x20);
      auto is_hex = [](char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); };
      auto is_oct = [](char c) { return c >= '0' && c <= '7'; };
      auto is_bin = [](char c) { return c == '0' || c == '1'; };
      bool (*digit)(char) = prefix == 'x' ? +is_hex : prefix == 'o' ? +is_oct : prefix == 'b' ? +is_bin : nullptr;
      if (digit) {
        base = prefix == 'x' ? 16 : prefix == 'o' ? 8 : 2;
        size_t start = at + 2 + (at + 2 < src_.size() && src_[at + 2] == '_');
        end = scan_digits(start, digit);
        if (end == start) syntax_error(line, "invalid integer literal '" + src_.substr(at, start - at) + "'");
        keep(start, end);
      }
    }
    if (base == 10) keep(at, end);
    Token token{TokenType::Integer, src_.substr(at, end - at), line};
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), token.integer, base);
    if (ec != std::errc()) syntax_error(line, "integer literal '" + token.text + "' is too large");
    tokens_.push_back(std::move(token));
    return end;
  }

  // A quoted string, decoded as Python's unicode-escape codec does (which is what jinja2 applies).
  size_t lex_string(size_t at, int& line) {
    const char quote = src_[at];
    const int start_line = line;
    std::string value;
    size_t i = at + 1;
    auto hex_value = [&](size_t from, int count) -> uint32_t {
      uint32_t v = 0;
      for (int k = 0; k < count; ++k) {
        char c = from + size_t(k) < src_.size() ? src_[from + size_t(k)] : 0;
        int d = is_digit(c) ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ? (c | 0x20) - 'a' + 10 : -1;
        if (d < 0) syntax_error(line, "truncated \\x, \\u or \\U escape in string literal");
        v = v * 16 + uint32_t(d);
      }
      return v;
    };
    while (true) {
      if (i >= src_.size()) syntax_error(start_line, "unterminated string literal");
      char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line;
      if (c != '\\') {
        value += c;
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) syntax_error(start_line, "unterminated string literal");
      char e = src_[i + 1];
      i += 2;
      switch (e) {
        case '\n': ++line; break;  // a backslash at the end of a line continues it
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x':
          append_utf8(hex_value(i, 2), value);
          i += 2;
          break;
        case 'u':
          append_utf8(hex_value(i, 4), value);
          i += 4;
          break;
        case 'U': {
          uint32_t cp = hex_value(i, 8);
          if (cp > 0x10FFFF) syntax_error(line, "\\U escape out of the Unicode range");
          append_utf8(cp, value);
          i += 8;
          break;
        }
        case 'N': syntax_error(line, "\\N{...} escapes in string literals are not supported");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = uint32_t(e - '0');
            for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k, ++i)
              cp = cp * 8 + uint32_t(src_[i] - '0');
            append_utf8(cp, value);
          } else {  // unknown escapes keep their backslash, as in Python
            value += '\\';
            value += e;
          }
      }
    }
    tokens_.push_back(Token{TokenType::String, std::move(value), start_line});
    return i + 1;
  }

  size_t lex_operator(size_t at, int line, std::string& brackets) {
    static constexpr std::string_view kTwoChar[] = {"**", "//", "==", "!=", ">=", "<="};
    for (auto op : kTwoChar) {
      if (starts_with(at, op)) {
        tokens_.push_back(Token{TokenType::Operator, std::string(op), line});
        return at + 2;
      }
    }
    const char c = src_[at];
    static constexpr std::string_view kOneChar = "+-/*%~[](){}><=.:|,;";
    if (kOneChar.find(c) == std::string_view::npos) {
      size_t next = at;
      std::string shown;
      append_utf8(decode_utf8(src_, next), shown);
      syntax_error(line, "unexpected character '" + shown + "'");
    }
    if (c == '(' || c == '[' || c == '{') {
      brackets += c == '(' ? ')' : c == '[' ? ']' : '}';
    } else if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) syntax_error(line, std::string("unexpected '") + c + "'");
      if (brackets.back() != c)
        syntax_error(line, std::string("unexpected '") + c + "', expected '" + brackets.back() + "'");
      brackets.pop_back();
    }
    tokens_.push_back(Token{TokenType::Operator, std::string(1, c), line});
    return at + 1;
  }
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  return Lexer(source).run();
}

}  // namespace inferno::text::jinja

#pragma once
// Splits a template into text and tag tokens with jinja2's whitespace rules as transformers configures them:
// trim_blocks (a newline right after a block or comment tag goes), lstrip_blocks (spaces and tabs from the start of
// a line up to a block or comment tag go), the `-` and `+` markers, and one trailing newline of the template dropped.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace inferno::text::jinja {

enum class TokenType {
  Text,           // template text outside tags (and the inside of {% raw %})
  VariableBegin,  // {{
  VariableEnd,    // }}
  BlockBegin,     // {%
  BlockEnd,       // %}
  Name,
  String,  // text holds the decoded value
  Integer,
  Float,
  Operator,
  End,  // end of template
};

struct Token {
  TokenType type;
  std::string text;
  int line = 1;
  int64_t integer = 0;
  double real = 0;
};

std::vector<Token> tokenize(std::string_view source);

// "chat template line N: what", thrown as inferno::Error.
[[noreturn]] void syntax_error(int line, const std::string& what);

}  // namespace inferno::text::jinja

#pragma once
// Internals of the chat-template interpreter shared by its parts: Python's semantics for values (truth, str(),
// repr(), ==, <, json.dumps), Python's str operations on UTF-8 text, and the calling convention of functions,
// filters and tests. Not part of the public API (see chat_template.hpp).
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "text/chat_template.hpp"

namespace inferno::text::jinja {

// A failure while evaluating, not yet located: the innermost node being evaluated adds its line and turns it into
// an inferno::Error.
struct EvalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Limits that keep a hostile template (a tokenizer_config.json is input) from overflowing the stack, hanging or
// exhausting memory; each failure names its limit. Real chat templates stay far below every one: they nest a few
// levels, loop over the messages a few times and build strings about the size of the conversation.
// Parsing: statements, expressions and the expression tree (a chain of filters, .attr or [i], `a + b + c`...) nest
// at most this deep, which bounds the recursion of parsing, evaluating and destroying the template.
inline constexpr int kMaxTemplateNesting = 200;
// Rendering: expression evaluations and bodies in progress at once, macro calls and their bodies included.
inline constexpr int kMaxRenderDepth = 1000;
inline constexpr int kMaxCallDepth = 200;  // nested macro calls
// Containers inside containers in one value (the interpreter's walks over values recurse this deep).
inline constexpr int kMaxValueDepth = 512;
inline constexpr uint64_t kMaxSteps = 2'000'000;       // loop iterations plus macro calls in one render
inline constexpr int64_t kMaxRangeLength = 1'000'000;  // items of one range() or list repetition
inline constexpr size_t kMaxStringBytes = 64u << 20;  // one string, and the whole output
// Created in one render, live or not, so that building by repeated concatenation is bounded by its work and not
// only by its final size: list and dict items, and bytes of strings.
inline constexpr uint64_t kMaxElementsCreated = 4'000'000;
inline constexpr uint64_t kMaxStringBytesCreated = 512u << 20;

// What one render has created so far. While a Renderer lives, Value's constructors charge the one of its thread;
// values made outside a render (the messages, the context) are not counted.
struct RenderBudget {
  uint64_t elements = 0;
  uint64_t string_bytes = 0;
};
void charge_elements(uint64_t count);
void charge_string_bytes(uint64_t bytes);
// Installs `budget` as this thread's for its lifetime, restoring the previous one after.
class ActiveBudget {
 public:
  explicit ActiveBudget(RenderBudget& budget);
  ~ActiveBudget();
  ActiveBudget(const ActiveBudget&) = delete;
  ActiveBudget& operator=(const ActiveBudget&) = delete;

 private:
  RenderBudget* previous_;
};
// Throws once a string being built passes kMaxStringBytes.
void check_string_size(size_t bytes);

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class Renderer;

class Callable {
 public:
  explicit Callable(std::string name) : name_(std::move(name)) {}
  virtual ~Callable() = default;
  virtual Value call(Renderer& renderer, CallArgs& args) const = 0;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

class BuiltinFunction : public Callable {
 public:
  using Fn = std::function<Value(Renderer&, CallArgs&)>;
  BuiltinFunction(std::string name, Fn fn) : Callable(std::move(name)), fn_(std::move(fn)) {}
  Value call(Renderer& renderer, CallArgs& args) const override { return fn_(renderer, args); }

 private:
  Fn fn_;
};

// bound_to: the value a bound method holds (see Value::function).
Value make_function(std::string name, BuiltinFunction::Fn fn, const Value* bound_to = nullptr);

// Binds call arguments to parameter names as Python does (positional in order, then by keyword); parameters not
// given stay empty. `what` names the callee in errors ("filter 'indent'").
std::vector<std::optional<Value>> bind_args(const CallArgs& args, std::initializer_list<std::string_view> params,
                                            std::string_view what);

// ---- Python semantics of values ----
bool truthy(const Value& v);
std::string type_name(const Value& v);  // Python's: 'str', 'int', 'NoneType', 'dict', 'list', 'tuple', ...
std::string to_str(const Value& v);     // str(v); Undefined prints as ""
std::string repr(const Value& v);
std::string format_float(double d);  // repr(float): shortest round trip, "1.0", "1e-05", "1e+16"
bool equals(const Value& a, const Value& b);
// Python's ordering of a and b: -1, 0 or 1; throws EvalError when their types do not order.
int compare(const Value& a, const Value& b, std::string_view op);
std::string undefined_message(const Value& undefined);
[[noreturn]] void fail_undefined(const Value& undefined);
// The items of a list, the keys of a dict, the characters of a string; Undefined iterates as empty.
Value::List iterate(const Value& v);
// Python's binary operators + - * / // % ** on values (no Undefined).
Value arithmetic(std::string_view op, const Value& a, const Value& b);
// Python's `item in container`: substring, list element or dict key.
bool contains(const Value& container, const Value& item);

// json.dumps with transformers' defaults (ensure_ascii=False); indent set means one item per line.
struct JsonStyle {
  std::optional<std::string> indent;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool ensure_ascii = false;
  bool sort_keys = false;
};
void dump_json(const Value& v, const JsonStyle& style, std::string& out);

// ---- Python str operations on UTF-8 (a str is a sequence of code points) ----
uint32_t decode_utf8(std::string_view s, size_t& pos);  // invalid bytes decode as themselves (Latin-1)
void append_utf8(uint32_t code_point, std::string& out);
std::vector<size_t> code_point_offsets(std::string_view s);  // byte offset of each code point, then s.size()
size_t code_point_count(std::string_view s);
bool is_space(uint32_t code_point);  // str.isspace(), which is also what regex \s matches
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
std::string to_upper(std::string_view s);
std::string to_lower(std::string_view s);
std::string capitalize(std::string_view s);  // str.capitalize(): first upper, rest lower
std::string title_case(std::string_view s);  // str.title()
// str.split(sep, maxsplit); no sep: split on runs of whitespace, dropping empty parts.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> splitlines(std::string_view s);
std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count);
// Python's slice semantics: the indices a[start:stop:step] selects from a sequence of `length` items.
std::vector<int64_t> slice_indices(int64_t length, const Value& start, const Value& stop, const Value& step);

// ---- builtins (jinja_builtins.cpp) ----
using FilterFn = Value (*)(Renderer&, const Value& subject, CallArgs& args);
using TestFn = bool (*)(Renderer&, const Value& subject, CallArgs& args);
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);
// obj.name: methods of str, dict and list first, then dict keys and namespace attributes, as jinja2's getattr.
Value get_attribute(const Value& object, std::string_view name);
// obj[key]: items first, then attributes (methods), as jinja2's getitem.
Value get_item(const Value& object, const Value& key);
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step);
Value call_value(Renderer& renderer, const Value& callee, CallArgs& args);
// printf-style formatting, as Python's str % args and jinja2's format filter.
std::string percent_format(std::string_view format, const Value& args);
// raise_exception, strftime_now, range, namespace, dict.
Dict make_globals();

}  // namespace inferno::text::jinja

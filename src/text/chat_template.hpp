#pragma once
// Chat templates: a Jinja2-subset interpreter that renders Hugging Face chat templates exactly as transformers'
// apply_chat_template(..., tokenize=False) does. transformers runs jinja2's immutable sandbox with trim_blocks and
// lstrip_blocks, the loop-control extension (break/continue), a `{% generation %}` tag, the globals raise_exception
// and strftime_now, and a tojson filter that does not escape HTML; this interpreter follows the same rules.
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "util/error.hpp"

namespace inferno::text {

namespace jinja {
class Callable;  // a function value inside a template (macro, builtin, bound method)
struct Program;  // a parsed template
}  // namespace jinja

class Dict;

// A JSON-like value for template context: null, bool, int, double, string, list, dict that keeps insertion order.
// Lists and dicts share their storage between copies and copy it before a change (copy-on-write), so passing
// values around is cheap. Inside templates a value may also be Undefined (a missing variable, with a hint for the
// error message), a Function (macro, builtin, bound method) or a Namespace (the one mutable object jinja2 has).
// Strings share their storage too (they never change), so copying a long one costs nothing. Every value knows how
// many containers deep it is; building one deeper than the interpreter's limit (512 levels) throws, which keeps
// the recursive walks (==, tojson, repr, destruction) within the stack.
class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function, Namespace };
  using List = std::vector<Value>;

  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : kind_(Kind::Bool), data_(b) {}
  template <std::integral T>
    requires(!std::same_as<T, bool> && !std::same_as<T, char>)
  Value(T i) : kind_(Kind::Int), data_(static_cast<int64_t>(i)) {}
  Value(double d) : kind_(Kind::Float), data_(d) {}
  Value(std::string s);  // counted against the string bytes a render may create
  Value(std::string_view s) : Value(std::string(s)) {}
  Value(const char* s) : Value(std::string(s)) {}

  static Value list(List items = {});
  static Value tuple(List items);  // a list that prints as (a, b), as jinja2's tuples and dict items do
  // A list standing for the lazy generator that jinja2's select, map, items, unique... filters return: always
  // true, without a length, index or JSON form; iterate it or pass it through |list.
  static Value generator(List items);
  static Value dict();
  static Value dict(Dict entries);
  static Value undefined(std::string hint = {});
  // bound_to: the value a bound method holds (a list's .index holds the list), so that a namespace can tell what it
  // would hold through the function.
  static Value function(std::shared_ptr<const jinja::Callable> callable, const Value* bound_to = nullptr);
  static Value namespace_object(Dict attributes);

  // Parses JSON text (simdjson); throws Error naming the position of a syntax error.
  static Value from_json(std::string_view json);
  // JSON as Python's json.dumps(ensure_ascii=False) writes it: ", " and ": " separators, or with indent >= 0
  // one item per line indented by that many spaces. Throws Error for Undefined, functions and namespaces.
  std::string to_json(int indent = -1) const;

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_null() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_tuple() const { return kind_ == Kind::List && sequence_ == Sequence::Tuple; }
  bool is_generator() const { return kind_ == Kind::List && sequence_ == Sequence::Generator; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_function() const { return kind_ == Kind::Function; }
  bool is_namespace() const { return kind_ == Kind::Namespace; }

  // Typed access; each throws Error when the value is of another kind.
  bool as_bool() const;
  int64_t as_int() const;
  double as_double() const;  // an int or a float
  const std::string& as_string() const;
  const List& as_list() const;
  const Dict& as_dict() const;  // a dict, or a namespace's attributes
  const jinja::Callable& as_function() const;
  const std::string& undefined_hint() const;  // why it is undefined ("'x' is undefined"), for error messages

  // Containers deep: 0 for a scalar, 1 for a list of scalars. A namespace counts its attributes as they were when
  // this copy of it was made or last set.
  int depth() const { return depth_; }
  // Whether this is a namespace or holds one (in an item, or in the value a bound method holds). A namespace may
  // not hold another, which rules out cycles.
  bool holds_namespace() const { return kind_ == Kind::Namespace || holds_namespace_; }

  // The value under `key` of a dict (or a namespace attribute), or nullptr.
  const Value* find(std::string_view key) const;
  // Appends to a list; throws Error for other kinds.
  void push_back(Value item);
  // Sets `key` of a dict, keeping its position if present (Python dict order); on a namespace, sets the shared
  // attribute (every copy of a namespace sees it, as in jinja2). Throws Error for other kinds.
  void set(std::string key, Value value);

 private:
  Kind kind_ = Kind::None;
  // Takes in the depth and the namespace flag of an item; throws past the depth limit.
  void hold(const Value& item);
  std::variant<std::monostate, bool, int64_t, double, std::shared_ptr<const std::string>, std::shared_ptr<List>,
               std::shared_ptr<Dict>, std::shared_ptr<const jinja::Callable>>
      data_;
  enum class Sequence : uint8_t { List, Tuple, Generator };
  Sequence sequence_ = Sequence::List;
  uint16_t depth_ = 0;
  bool holds_namespace_ = false;
};

// A string-keyed map that keeps insertion order, as Python dicts (and so JSON objects in transformers) do.
class Dict {
 public:
  using Entry = std::pair<std::string, Value>;
  Dict() = default;
  Dict(std::initializer_list<Entry> entries);

  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(std::string key, Value value);
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

 private:
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Small dicts (messages, loop objects) search linearly; the index is built once a dict grows past this.
  static constexpr size_t kIndexFrom = 32;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t, KeyHash, std::equal_to<>> index_;
};

// raise_exception(message) in a template: what() is the message, exactly as the template wrote it.
struct TemplateRaise : Error {
  using Error::Error;
};

class ChatTemplate {
 public:
  // Parses once. Syntax errors and unsupported constructs (an unknown tag, filter or test) throw Error naming the
  // construct and its line; as in jinja2 3, an unknown filter or test inside an `if` fails only if it runs.
  explicit ChatTemplate(std::string source);

  // messages: a list of {role, content, ...}; extra_context: a dict of more variables (bos_token, eos_token,
  // tools, date_string, ...) or null. As in transformers, `tools` and `documents` are none unless given.
  // Throws TemplateRaise for raise_exception, Error (with the line) for any other failure.
  std::string render(const Value& messages, bool add_generation_prompt, const Value& extra_context) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::shared_ptr<const jinja::Program> program_;
};

// The chat template of a tokenizer_config.json text: the `chat_template` string, or from a list of
// {name, template} the one named "default". nullopt when the config has none; Error for malformed JSON, a
// `chat_template` of another type, or a list without "default".
std::optional<std::string> chat_template_from_tokenizer_config(std::string_view json);

// The special tokens transformers passes to every chat template (its special_tokens_map: bos_token, eos_token,
// unk_token, sep_token, pad_token, cls_token, mask_token), read from tokenizer_config.json text; each may be a
// string or an AddedToken object {"content": ...}. Tokens that are absent or null are left out.
Value special_tokens_from_tokenizer_config(std::string_view json);

}  // namespace inferno::text

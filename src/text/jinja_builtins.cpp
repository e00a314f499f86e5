// What templates can call: jinja2's filters and tests, the methods of str, dict and list that Python offers
// (and the immutable sandbox allows), attribute and item access, printf-style formatting, and the globals that
// transformers provides (raise_exception, strftime_now) beside jinja2's own (range, namespace, dict).
#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <utility>

#include "text/jinja_ast.hpp"

namespace inferno::text::jinja {

Value make_function(std::string name, BuiltinFunction::Fn fn, const Value* bound_to) {
  return Value::function(std::make_shared<BuiltinFunction>(std::move(name), std::move(fn)), bound_to);
}

std::vector<std::optional<Value>> bind_args(const CallArgs& args, std::initializer_list<std::string_view> params,
                                            std::string_view what) {
  std::vector<std::optional<Value>> bound(params.size());
  if (args.positional.size() > params.size())
    throw EvalError(std::string(what) + " takes at most " + std::to_string(params.size()) + " argument(s), got " +
                    std::to_string(args.positional.size()));
  for (size_t i = 0; i < args.positional.size(); ++i) bound[i] = args.positional[i];
  for (const auto& [key, value] : args.keyword) {
    auto it = std::find(params.begin(), params.end(), key);
    if (it == params.end()) throw EvalError(std::string(what) + " got an unexpected keyword argument '" + key + "'");
    size_t index = size_t(it - params.begin());
    if (bound[index]) throw EvalError(std::string(what) + " got multiple values for argument '" + key + "'");
    bound[index] = value;
  }
  return bound;
}

namespace {

// ---- argument checks ----

bool is_integral(const Value& v) {
  return v.is_int() || v.is_bool();
}
int64_t integral(const Value& v) {
  return v.is_bool() ? int64_t(v.as_bool()) : v.as_int();
}

int64_t int_arg(const std::optional<Value>& v, int64_t fallback, std::string_view what) {
  if (!v || v->is_null()) return fallback;
  if (!is_integral(*v)) throw EvalError(std::string(what) + ": expected an integer, got '" + type_name(*v) + "'");
  return integral(*v);
}

bool bool_arg(const std::optional<Value>& v, bool fallback) {
  return v ? truthy(*v) : fallback;
}

std::string string_arg(const std::optional<Value>& v, std::string fallback, std::string_view what) {
  if (!v) return fallback;
  if (!v->is_string()) throw EvalError(std::string(what) + ": expected a string, got '" + type_name(*v) + "'");
  return v->as_string();
}

// None or a string of characters to strip.
std::optional<std::string> chars_arg(const std::optional<Value>& v, std::string_view what) {
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) throw EvalError(std::string(what) + " arg must be None or str");
  return v->as_string();
}

void no_args(const CallArgs& args, std::string_view what) {
  bind_args(args, {}, what);
}

Value string_list(std::vector<std::string> parts) {
  Value::List items;
  for (auto& part : parts) items.emplace_back(std::move(part));
  return Value::list(std::move(items));
}

// A str's code point count before byte offset `byte`.
int64_t code_point_index(std::string_view s, size_t byte) {
  return int64_t(code_point_count(s.substr(0, byte)));
}

bool all_code_points(std::string_view s, bool (*pred)(uint32_t)) {
  if (s.empty()) return false;
  size_t pos = 0;
  while (pos < s.size())
    if (!pred(decode_utf8(s, pos))) return false;
  return true;
}

utf8proc_category_t category(uint32_t cp) {
  return utf8proc_category(utf8proc_int32_t(cp));
}
bool is_alpha(uint32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
         c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
}
bool is_decimal(uint32_t cp) {
  return category(cp) == UTF8PROC_CATEGORY_ND;
}
bool is_numeric_char(uint32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}
bool is_alnum(uint32_t cp) {
  return is_alpha(cp) || is_numeric_char(cp);
}
bool is_word_char(uint32_t cp) {
  return is_alnum(cp) || cp == '_';
}

// str.islower() / str.isupper(): some cased character, and none of the other case.
bool has_case(std::string_view s, bool upper) {
  bool cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    auto c = category(decode_utf8(s, pos));
    if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT) {
      if (!upper) return false;
      cased = true;
    } else if (c == UTF8PROC_CATEGORY_LL) {
      if (upper) return false;
      cased = true;
    }
  }
  return cased;
}

// prefix or suffix: a str, or a tuple/list of them.
bool affix_matches(std::string_view s, const Value& affix, bool prefix, std::string_view what) {
  auto one = [&](const Value& v) {
    if (!v.is_string()) throw EvalError(std::string(what) + " first arg must be str or a tuple of str");
    return prefix ? s.starts_with(v.as_string()) : s.ends_with(v.as_string());
  };
  if (affix.is_list()) {
    for (const auto& v : affix.as_list())
      if (one(v)) return true;
    return false;
  }
  return one(affix);
}

std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  if (maxsplit < 0) return split(s, sep, maxsplit);
  std::vector<std::string> parts;
  if (sep) {
    if (sep->empty()) throw EvalError("empty separator");
    size_t end = s.size();
    while (int64_t(parts.size()) < maxsplit) {
      size_t found = end >= sep->size() ? s.rfind(*sep, end - sep->size()) : std::string_view::npos;
      if (found == std::string_view::npos) break;
      parts.emplace_back(s.substr(found + sep->size(), end - found - sep->size()));
      end = found;
    }
    parts.emplace_back(s.substr(0, end));
  } else {
    auto offsets = code_point_offsets(s);
    auto space_at = [&](size_t i) {
      size_t pos = offsets[i];
      return is_space(decode_utf8(s, pos));
    };
    size_t i = offsets.size() - 1;  // code points [0, i) remain
    while (true) {
      while (i > 0 && space_at(i - 1)) --i;
      if (i == 0) break;
      if (int64_t(parts.size()) == maxsplit) {
        parts.emplace_back(s.substr(0, offsets[i]));
        break;
      }
      size_t end = i;
      while (i > 0 && !space_at(i - 1)) --i;
      parts.emplace_back(s.substr(offsets[i], offsets[end] - offsets[i]));
    }
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

// ---- methods ----

using StringMethod = Value (*)(const std::string& self, const CallArgs& args);
using ValueMethod = Value (*)(const Value& self, const CallArgs& args);

Value find_impl(const std::string& s, const CallArgs& args, bool from_right, bool raise, std::string_view what) {
  auto b = bind_args(args, {"sub"}, what);
  std::string sub = string_arg(b[0], "", what);
  if (!b[0]) throw EvalError(std::string(what) + " takes exactly one argument");
  size_t at = from_right ? s.rfind(sub) : s.find(sub);
  if (at == std::string::npos) {
    if (raise) throw EvalError("substring not found");
    return int64_t(-1);
  }
  return code_point_index(s, at);
}

struct NamedStringMethod {
  std::string_view name;
  StringMethod fn;
};

const NamedStringMethod kStringMethods[] = {
    {"strip",
     [](const std::string& s, const CallArgs& a) -> Value {
       return strip(s, chars_arg(bind_args(a, {"chars"}, "str.strip")[0], "strip"), true, true);
     }},
    {"lstrip",
     [](const std::string& s, const CallArgs& a) -> Value {
       return strip(s, chars_arg(bind_args(a, {"chars"}, "str.lstrip")[0], "lstrip"), true, false);
     }},
    {"rstrip",
     [](const std::string& s, const CallArgs& a) -> Value {
       return strip(s, chars_arg(bind_args(a, {"chars"}, "str.rstrip")[0], "rstrip"), false, true);
     }},
    {"split",
     [](const std::string& s, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"sep", "maxsplit"}, "str.split");
       return string_list(split(s, chars_arg(b[0], "split"), int_arg(b[1], -1, "str.split")));
     }},
    {"rsplit",
     [](const std::string& s, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"sep", "maxsplit"}, "str.rsplit");
       return string_list(rsplit(s, chars_arg(b[0], "rsplit"), int_arg(b[1], -1, "str.rsplit")));
     }},
    {"splitlines",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.splitlines");
       return string_list(splitlines(s));
     }},
    {"startswith",
     [](const std::string& s, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"prefix"}, "str.startswith");
       if (!b[0]) throw EvalError("str.startswith takes exactly one argument");
       return affix_matches(s, *b[0], true, "startswith");
     }},
    {"endswith",
     [](const std::string& s, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"suffix"}, "str.endswith");
       if (!b[0]) throw EvalError("str.endswith takes exactly one argument");
       return affix_matches(s, *b[0], false, "endswith");
     }},
    {"upper",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.upper");
       return to_upper(s);
     }},
    {"lower",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.lower");
       return to_lower(s);
     }},
    {"title",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.title");
       return title_case(s);
     }},
    {"capitalize",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.capitalize");
       return capitalize(s);
     }},
    {"replace",
     [](const std::string& s, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"old", "new", "count"}, "str.replace");
       if (!b[0] || !b[1]) throw EvalError("str.replace needs the old and new strings");
       return replace(s, string_arg(b[0], "", "str.replace"), string_arg(b[1], "", "str.replace"),
                      int_arg(b[2], -1, "str.replace"));
     }},
    {"find", [](const std::string& s, const CallArgs& a) { return find_impl(s, a, false, false, "str.find"); }},
    {"rfind", [](const std::string& s, const CallArgs& a) { return find_impl(s, a, true, false, "str.rfind"); }},
    {"index", [](const std::string& s, const CallArgs& a) { return find_impl(s, a, false, true, "str.index"); }},
    {"rindex", [](const std::string& s, const CallArgs& a) { return find_impl(s, a, true, true, "str.rindex"); }},
    {"count",
     [](const std::string& s, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"sub"}, "str.count");
       if (!b[0]) throw EvalError("str.count takes exactly one argument");
       std::string sub = string_arg(b[0], "", "str.count");
       if (sub.empty()) return int64_t(code_point_count(s) + 1);
       int64_t n = 0;
       for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
       return n;
     }},
    {"join",
     [](const std::string& s, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"iterable"}, "str.join");
       if (!b[0]) throw EvalError("str.join takes exactly one argument");
       std::string out;
       auto items = iterate(*b[0]);
       for (size_t i = 0; i < items.size(); ++i) {
         if (!items[i].is_string())
           throw EvalError("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(items[i]) +
                           " found");
         if (i) out += s;
         out += items[i].as_string();
         check_string_size(out.size());
       }
       return out;
     }},
    {"isdigit",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.isdigit");
       return all_code_points(s, is_decimal);
     }},
    {"isnumeric",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.isnumeric");
       return all_code_points(s, is_numeric_char);
     }},
    {"isalpha",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.isalpha");
       return all_code_points(s, is_alpha);
     }},
    {"isalnum",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.isalnum");
       return all_code_points(s, is_alnum);
     }},
    {"isspace",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.isspace");
       return all_code_points(s, is_space);
     }},
    {"islower",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.islower");
       return has_case(s, false);
     }},
    {"isupper",
     [](const std::string& s, const CallArgs& a) -> Value {
       no_args(a, "str.isupper");
       return has_case(s, true);
     }},
};

Value dict_items(const Value& d) {
  Value::List items;
  for (const auto& [key, value] : d.as_dict().entries()) items.push_back(Value::tuple({Value(key), value}));
  return Value::list(std::move(items));
}

struct NamedValueMethod {
  std::string_view name;
  ValueMethod fn;
};

const NamedValueMethod kDictMethods[] = {
    {"items",
     [](const Value& d, const CallArgs& a) {
       no_args(a, "dict.items");
       return dict_items(d);
     }},
    {"keys",
     [](const Value& d, const CallArgs& a) {
       no_args(a, "dict.keys");
       return Value::list(iterate(d));
     }},
    {"values",
     [](const Value& d, const CallArgs& a) {
       no_args(a, "dict.values");
       Value::List values;
       for (const auto& entry : d.as_dict().entries()) values.push_back(entry.second);
       return Value::list(std::move(values));
     }},
    {"get",
     [](const Value& d, const CallArgs& a) {
       auto b = bind_args(a, {"key", "default"}, "dict.get");
       if (!b[0]) throw EvalError("dict.get needs a key");
       const Value* found = b[0]->is_string() ? d.find(b[0]->as_string()) : nullptr;
       return found ? *found : b[1].value_or(Value());
     }},
};

const NamedValueMethod kListMethods[] = {
    {"index",
     [](const Value& l, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"value"}, "list.index");
       if (!b[0]) throw EvalError("list.index takes exactly one argument");
       const auto& items = l.as_list();
       for (size_t i = 0; i < items.size(); ++i)
         if (equals(items[i], *b[0])) return int64_t(i);
       throw EvalError(repr(*b[0]) + " is not in list");
     }},
    {"count",
     [](const Value& l, const CallArgs& a) -> Value {
       auto b = bind_args(a, {"value"}, "list.count");
       if (!b[0]) throw EvalError("list.count takes exactly one argument");
       int64_t n = 0;
       for (const auto& item : l.as_list()) n += equals(item, *b[0]);
       return n;
     }},
};

// Methods that would change a list or dict: jinja2's immutable sandbox (which transformers uses) refuses them.
bool is_mutating_method(std::string_view name) {
  static constexpr std::string_view kNames[] = {"append", "extend",  "insert", "pop",        "remove", "clear",
                                                "sort",   "reverse", "update", "setdefault", "popitem"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

std::string object_description(const Value& v) {
  return v.is_null() ? "'None'" : "'" + type_name(v) + " object'";
}

Value no_attribute(const Value& v, std::string_view name) {
  return Value::undefined(object_description(v) + " has no attribute '" + std::string(name) + "'");
}

std::optional<Value> method_of(const Value& object, std::string_view name) {
  if (object.is_string()) {
    for (const auto& m : kStringMethods)
      if (m.name == name) {
        StringMethod fn = m.fn;  // holds the str value, which shares the text
        return make_function("str." + std::string(name),
                             [object, fn](Renderer&, CallArgs& args) { return fn(object.as_string(), args); });
      }
    return std::nullopt;
  }
  if (object.is_dict() || (object.is_list() && !object.is_generator())) {
    const bool dict = object.is_dict();
    auto begin = dict ? std::begin(kDictMethods) : std::begin(kListMethods);
    auto end = dict ? std::end(kDictMethods) : std::end(kListMethods);
    for (auto m = begin; m != end; ++m)
      if (m->name == name) {
        ValueMethod fn = m->fn;
        return make_function(type_name(object) + "." + std::string(name),
                             [object, fn](Renderer&, CallArgs& args) { return fn(object, args); }, &object);
      }
    if (is_mutating_method(name)) {
      std::string what = "'" + std::string(name) + "' of a " + type_name(object);
      return make_function(type_name(object) + "." + std::string(name), [what](Renderer&, CallArgs&) -> Value {
        throw EvalError("access to " + what + " is unsafe: templates cannot modify lists or dicts");
      });
    }
  }
  return std::nullopt;
}

}  // namespace

// ---- attribute and item access ----

Value get_attribute(const Value& object, std::string_view name) {
  if (object.is_undefined()) fail_undefined(object);
  if (auto method = method_of(object, name)) return *method;
  if (object.is_dict() || object.is_namespace()) {
    if (const Value* v = object.find(name)) return *v;
  }
  return no_attribute(object, name);
}

Value get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) fail_undefined(object);
  if (object.is_dict() && key.is_string()) {
    if (const Value* v = object.find(key.as_string())) return *v;
  }
  if (object.is_generator()) return Value::undefined("'generator' object is not subscriptable");
  if ((object.is_list() || object.is_string()) && is_integral(key)) {
    int64_t i = integral(key);
    if (object.is_list()) {
      const auto& items = object.as_list();
      int64_t n = int64_t(items.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return items[size_t(i)];
    } else {
      const std::string& s = object.as_string();
      auto offsets = code_point_offsets(s);
      int64_t n = int64_t(offsets.size()) - 1;
      if (i < 0) i += n;
      if (i >= 0 && i < n) return s.substr(offsets[size_t(i)], offsets[size_t(i) + 1] - offsets[size_t(i)]);
    }
    return Value::undefined(object_description(object) + " has no element " + std::to_string(integral(key)));
  }
  if (key.is_string()) return get_attribute(object, key.as_string());
  return Value::undefined(object_description(object) + " has no element " + repr(key));
}

Value slice(const Value& object, const Value& start, const Value& stop, const Value& step) {
  if (object.is_undefined()) fail_undefined(object);
  if (object.is_list() && !object.is_generator()) {
    const auto& items = object.as_list();
    Value::List out;
    for (int64_t i : slice_indices(int64_t(items.size()), start, stop, step)) out.push_back(items[size_t(i)]);
    return object.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  if (object.is_string()) {
    const std::string& s = object.as_string();
    auto offsets = code_point_offsets(s);
    std::string out;
    for (int64_t i : slice_indices(int64_t(offsets.size()) - 1, start, stop, step))
      out.append(s, offsets[size_t(i)], offsets[size_t(i) + 1] - offsets[size_t(i)]);
    return out;
  }
  // jinja2 slices with Python's own subscript, not its lenient getitem, so this fails rather than being Undefined.
  throw EvalError("'" + type_name(object) + "' object is not subscriptable");
}

Value call_value(Renderer& renderer, const Value& callee, CallArgs& args) {
  if (callee.is_function()) return callee.as_function().call(renderer, args);
  if (callee.is_undefined()) fail_undefined(callee);
  throw EvalError("'" + type_name(callee) + "' object is not callable");
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      if (!item.is_string()) throw EvalError("'in <string>' requires string as left operand, not " + type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::List:
      for (const auto& v : container.as_list())
        if (equals(v, item)) return true;
      return false;
    case Value::Kind::Dict: return item.is_string() && container.find(item.as_string()) != nullptr;
    default: throw EvalError("argument of type '" + type_name(container) + "' is not iterable");
  }
}

// ---- printf-style formatting ----

std::string percent_format(std::string_view format, const Value& args) {
  const bool mapping = args.is_dict();
  Value::List values = args.is_tuple() ? args.as_list() : Value::List{args};
  size_t next_value = 0;
  std::string out;
  auto take = [&]() -> Value {
    if (next_value >= values.size()) throw EvalError("not enough arguments for format string");
    return values[next_value++];
  };
  for (size_t i = 0; i < format.size(); ++i) {
    check_string_size(out.size());
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (++i >= format.size()) throw EvalError("incomplete format");
    std::optional<Value> keyed;
    if (format[i] == '(') {
      size_t close = format.find(')', i);
      if (close == std::string_view::npos) throw EvalError("incomplete format key");
      if (!mapping) throw EvalError("format requires a mapping");
      std::string key(format.substr(i + 1, close - i - 1));
      const Value* v = args.find(key);
      if (!v) throw EvalError("format key '" + key + "' not found");
      keyed = *v;
      i = close + 1;
    }
    std::string flags;
    while (i < format.size() && std::string_view("-+ 0#").find(format[i]) != std::string_view::npos)
      flags += format[i++];
    auto number = [&]() -> int64_t {
      if (i < format.size() && format[i] == '*') {
        ++i;
        Value v = take();
        if (!is_integral(v)) throw EvalError("* wants int");
        return std::clamp<int64_t>(integral(v), -4096, 4096);
      }
      int64_t n = 0;
      while (i < format.size() && format[i] >= '0' && format[i] <= '9')
        n = std::min<int64_t>(n * 10 + (format[i++] - '0'), 4096);
      return n;
    };
    int64_t width = number();
    std::optional<int64_t> precision;
    if (i < format.size() && format[i] == '.') {
      ++i;
      precision = number();
    }
    while (i < format.size() && (format[i] == 'h' || format[i] == 'l' || format[i] == 'L')) ++i;
    if (i >= format.size()) throw EvalError("incomplete format");
    const char conversion = format[i];
    if (conversion == '%') {
      out += '%';
      continue;
    }
    Value v = keyed ? *keyed : take();
    std::string text;
    auto c_format = [&](const char* length, auto value) {
      std::string spec = "%" + flags + (width ? std::to_string(width) : "") +
                         (precision ? "." + std::to_string(*precision) : "") + length + conversion;
      char buf[8192];
      std::snprintf(buf, sizeof buf, spec.c_str(), value);
      return std::string(buf);
    };
    switch (conversion) {
      case 's':
      case 'r':
      case 'a': {
        text = conversion == 's' ? to_str(v) : repr(v);
        if (precision) {
          auto offsets = code_point_offsets(text);
          if (size_t(*precision) + 1 < offsets.size()) text.resize(offsets[size_t(*precision)]);
        }
        int64_t pad = width - int64_t(code_point_count(text));
        if (pad > 0)
          text = flags.find('-') != std::string::npos ? text + std::string(size_t(pad), ' ')
                                                      : std::string(size_t(pad), ' ') + text;
        out += text;
        continue;
      }
      case 'd':
      case 'i':
      case 'u':
        if (v.is_float()) v = Value(int64_t(std::trunc(v.as_double())));
        if (!is_integral(v))
          throw EvalError("%" + std::string(1, conversion) + " format: a real number is required, not " + type_name(v));
        out += c_format("ll", (long long)integral(v));
        continue;
      case 'x':
      case 'X':
      case 'o':
        if (!is_integral(v))
          throw EvalError("%" + std::string(1, conversion) + " format: an integer is required, not " + type_name(v));
        out += c_format("ll", (long long)integral(v));
        continue;
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G':
        if (!is_integral(v) && !v.is_float()) throw EvalError("must be real number, not " + type_name(v));
        out += c_format("", v.is_float() ? v.as_double() : double(integral(v)));
        continue;
      case 'c':
        if (is_integral(v) && integral(v) >= 0 && integral(v) <= 0x10FFFF)
          append_utf8(uint32_t(integral(v)), out);
        else if (v.is_string() && code_point_count(v.as_string()) == 1)
          out += v.as_string();
        else
          throw EvalError("%c requires an int or a single character");
        continue;
      default: throw EvalError(std::string("unsupported format character '") + conversion + "'");
    }
  }
  if (!mapping && next_value < values.size()) throw EvalError("not all arguments converted during string formatting");
  return out;
}

namespace {

// ---- filters ----

Value attribute_path(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return get_item(item, attribute);
  Value current = item;
  for (const auto& part : split(attribute.as_string(), std::string("."), -1)) {
    if (current.is_undefined()) fail_undefined(current);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    current = get_item(current, digits ? Value(int64_t(std::strtoll(part.c_str(), nullptr, 10))) : Value(part));
  }
  return current;
}

// The value sort, unique, min and max compare: lowercased strings unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive, const std::optional<Value>& attribute) {
  Value key = attribute && !attribute->is_null() ? attribute_path(v, *attribute) : v;
  if (!case_sensitive && key.is_string()) return to_lower(key.as_string());
  return key;
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
    check_string_size(out.size());
  }
  return out;
}

// Python's float(str): surrounding whitespace, underscores between digits, inf and nan; no hex.
std::optional<double> parse_float(std::string_view text) {
  std::string s = strip(text, std::nullopt, true, true);
  std::string cleaned;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 == s.size() || !std::isdigit((unsigned char)s[i - 1]) ||
          !std::isdigit((unsigned char)s[i + 1]))
        return std::nullopt;
      continue;
    }
    if (s[i] == 'x' || s[i] == 'X' || s[i] == 'p' || s[i] == 'P') return std::nullopt;
    cleaned += s[i];
  }
  if (cleaned.empty()) return std::nullopt;
  char* end = nullptr;
  double d = std::strtod(cleaned.c_str(), &end);
  if (end != cleaned.c_str() + cleaned.size()) return std::nullopt;
  return d;
}

// Python's int(str, base) for bases 2 to 36 (and 0: from the prefix).
std::optional<int64_t> parse_int(std::string_view text, int64_t base) {
  std::string s = strip(text, std::nullopt, true, true);
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  auto prefix_base = [&](char c) {
    c = char(c | 0x20);
    return c == 'x' ? 16 : c == 'o' ? 8 : c == 'b' ? 2 : 0;
  };
  if (i + 1 < s.size() && s[i] == '0' && prefix_base(s[i + 1]) && (base == 0 || base == prefix_base(s[i + 1]))) {
    base = prefix_base(s[i + 1]);
    i += 2;
    if (i < s.size() && s[i] == '_') ++i;
  }
  if (base == 0) base = 10;
  if (base < 2 || base > 36) throw EvalError("int() base must be >= 2 and <= 36, or 0");
  if (i >= s.size()) return std::nullopt;
  int64_t value = 0;
  bool last_underscore = false;
  for (size_t start = i; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_') {
      if (i == start || last_underscore) return std::nullopt;
      last_underscore = true;
      continue;
    }
    last_underscore = false;
    int digit = std::isdigit((unsigned char)c) ? c - '0' : std::isalpha((unsigned char)c) ? (c | 0x20) - 'a' + 10 : 99;
    if (digit >= base) return std::nullopt;
    if (__builtin_mul_overflow(value, base, &value) || __builtin_add_overflow(value, digit, &value))
      throw EvalError("integer too large");
  }
  if (last_underscore) return std::nullopt;
  return negative ? -value : value;
}

Value filter_abs(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'abs'");
  if (v.is_float()) return std::fabs(v.as_double());
  if (is_integral(v)) {
    if (integral(v) == INT64_MIN) throw EvalError("integer overflow");
    return std::abs(integral(v));
  }
  throw EvalError("bad operand type for abs(): '" + type_name(v) + "'");
}

// Python's getattr only: unlike `.name`, a dict key is not an attribute.
Value filter_attr(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"name"}, "filter 'attr'");
  std::string name = string_arg(b[0], "", "filter 'attr'");
  if (v.is_undefined()) fail_undefined(v);
  if (auto method = method_of(v, name)) return *method;
  if (v.is_namespace())
    if (const Value* attribute = v.find(name)) return *attribute;
  return no_attribute(v, name);
}

Value filter_batch(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"linecount", "fill_with"}, "filter 'batch'");
  int64_t size = int_arg(b[0], 0, "filter 'batch'");
  if (size <= 0) throw EvalError("filter 'batch' needs a positive line count");
  Value::List batches, current;
  for (auto& item : iterate(v)) {
    current.push_back(std::move(item));
    if (int64_t(current.size()) == size) batches.push_back(Value::list(std::exchange(current, {})));
  }
  if (!current.empty()) {
    if (b[1] && !b[1]->is_null())
      while (int64_t(current.size()) < size) current.push_back(*b[1]);
    batches.push_back(Value::list(std::move(current)));
  }
  return Value::generator(std::move(batches));
}

Value filter_capitalize(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'capitalize'");
  return capitalize(to_str(v));
}

Value filter_center(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"width"}, "filter 'center'");
  std::string s = to_str(v);
  int64_t width = std::min<int64_t>(int_arg(b[0], 80, "filter 'center'"), int64_t(kMaxStringBytes));
  int64_t pad = width - int64_t(code_point_count(s));
  if (pad <= 0) return s;
  int64_t left = pad / 2 + (pad & width & 1);  // Python's str.center rounding
  return std::string(size_t(left), ' ') + s + std::string(size_t(pad - left), ' ');
}

Value filter_length(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'length'");
  switch (v.kind()) {
    case Value::Kind::Undefined: return int64_t(0);
    case Value::Kind::String: return int64_t(code_point_count(v.as_string()));
    case Value::Kind::List:
      if (v.is_generator()) throw EvalError("object of type 'generator' has no len()");
      return int64_t(v.as_list().size());
    case Value::Kind::Dict: return int64_t(v.as_dict().size());
    default: throw EvalError("object of type '" + type_name(v) + "' has no len()");
  }
}

Value filter_default(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"default_value", "boolean"}, "filter 'default'");
  if (v.is_undefined() || (bool_arg(b[1], false) && !truthy(v))) return b[0].value_or(Value(""));
  return v;
}

Value filter_dictsort(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"case_sensitive", "by", "reverse"}, "filter 'dictsort'");
  if (!v.is_dict()) throw EvalError("filter 'dictsort' needs a dict, got '" + type_name(v) + "'");
  const bool case_sensitive = bool_arg(b[0], false), reverse = bool_arg(b[2], false);
  std::string by = string_arg(b[1], "key", "filter 'dictsort'");
  if (by != "key" && by != "value") throw EvalError("You can only sort by either 'key' or 'value'");
  Value::List items = dict_items(v).as_list();
  const size_t index = by == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value kx = sort_key(x.as_list()[index], case_sensitive, std::nullopt);
    Value ky = sort_key(y.as_list()[index], case_sensitive, std::nullopt);
    return reverse ? compare(ky, kx, "<") < 0 : compare(kx, ky, "<") < 0;
  });
  return Value::list(std::move(items));
}

Value filter_escape(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'escape'");
  return html_escape(to_str(v));
}

Value filter_first(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'first'");
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value filter_last(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'last'");
  if (v.is_generator()) throw EvalError("'generator' object is not reversible");
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value filter_float(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"default"}, "filter 'float'");
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_float()) return v;
  if (is_integral(v)) return double(integral(v));
  if (v.is_string())
    if (auto d = parse_float(v.as_string())) return *d;
  return b[0].value_or(Value(0.0));
}

Value filter_int(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"default", "base"}, "filter 'int'");
  if (v.is_undefined()) fail_undefined(v);
  if (is_integral(v)) return integral(v);
  auto from_double = [](double d) -> Value {
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18)
      throw EvalError("cannot convert float " + format_float(d) + " to integer");
    return int64_t(std::trunc(d));
  };
  if (v.is_float()) return from_double(v.as_double());
  if (v.is_string()) {
    if (auto i = parse_int(v.as_string(), int_arg(b[1], 10, "filter 'int'"))) return *i;
    if (auto d = parse_float(v.as_string())) return from_double(*d);  // "42.23"|int is 42, as in jinja2
  }
  return b[0].value_or(Value(int64_t(0)));
}

Value filter_format(Renderer&, const Value& v, CallArgs& a) {
  if (!a.keyword.empty() && !a.positional.empty())
    throw EvalError("can't handle positional and keyword arguments at the same time");
  if (!a.keyword.empty()) {
    Dict d;
    for (auto& [key, value] : a.keyword) d.set(key, value);
    return percent_format(to_str(v), Value::dict(std::move(d)));
  }
  return percent_format(to_str(v), Value::tuple(a.positional));
}

Value filter_indent(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"width", "first", "blank"}, "filter 'indent'");
  std::string indentation;
  if (b[0] && b[0]->is_string())
    indentation = b[0]->as_string();
  else
    indentation = std::string(size_t(std::clamp<int64_t>(int_arg(b[0], 4, "filter 'indent'"), 0, 4096)), ' ');
  const bool first = bool_arg(b[1], false), blank = bool_arg(b[2], false);
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string()) throw EvalError("unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
  std::string s = v.as_string() + "\n";  // as jinja2 does, so that a trailing newline keeps its line
  auto lines = splitlines(s);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    if (i && (blank || !lines[i].empty())) out += indentation;
    out += lines[i];
    check_string_size(out.size());
  }
  if (first) out = indentation + out;
  return out;
}

Value filter_items(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'items'");
  if (v.is_undefined()) return Value::generator({});
  if (!v.is_dict()) throw EvalError("Can only get item pairs from a mapping.");
  return Value::generator(dict_items(v).as_list());
}

Value filter_join(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"d", "attribute"}, "filter 'join'");
  std::string separator = b[0] ? to_str(*b[0]) : "";
  std::string out;
  auto items = iterate(v);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += to_str(b[1] && !b[1]->is_null() ? attribute_path(items[i], *b[1]) : items[i]);
    check_string_size(out.size());
  }
  return out;
}

Value filter_list(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'list'");
  return Value::list(iterate(v));
}

Value filter_lower(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'lower'");
  return to_lower(to_str(v));
}

Value filter_upper(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'upper'");
  return to_upper(to_str(v));
}

Value filter_map(Renderer& r, const Value& v, CallArgs& a) {
  auto items = iterate(v);
  Value::List out;
  const Value* attribute = nullptr;
  const Value* fallback = nullptr;
  for (const auto& [key, value] : a.keyword) {
    if (key == "attribute")
      attribute = &value;
    else if (key == "default")
      fallback = &value;
  }
  if (attribute) {
    if (!a.positional.empty() || a.keyword.size() != 1u + (fallback != nullptr))
      throw EvalError("filter 'map' takes attribute= (and default=) or a filter name and its arguments");
    for (const auto& item : items) {
      Value mapped = attribute_path(item, *attribute);
      out.push_back(mapped.is_undefined() && fallback ? *fallback : mapped);
    }
    return Value::generator(std::move(out));
  }
  if (a.positional.empty() || !a.positional[0].is_string())
    throw EvalError("filter 'map' needs a filter name or attribute=");
  std::string name = a.positional[0].as_string();
  FilterFn fn = find_filter(name);
  if (!fn) throw EvalError("unknown filter '" + name + "' in map()");
  CallArgs rest{Value::List(a.positional.begin() + 1, a.positional.end()), a.keyword};
  for (const auto& item : items) {
    CallArgs call_args = rest;
    out.push_back(fn(r, item, call_args));
  }
  return Value::generator(std::move(out));
}

Value min_max(const Value& v, CallArgs& a, bool want_max) {
  auto b = bind_args(a, {"case_sensitive", "attribute"}, want_max ? "filter 'max'" : "filter 'min'");
  const bool case_sensitive = bool_arg(b[0], false);
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(items[0], case_sensitive, b[1]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = sort_key(items[i], case_sensitive, b[1]);
    int c = compare(key, best_key, want_max ? ">" : "<");
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Value filter_max(Renderer&, const Value& v, CallArgs& a) {
  return min_max(v, a, true);
}
Value filter_min(Renderer&, const Value& v, CallArgs& a) {
  return min_max(v, a, false);
}

// select/reject(test, args...) and selectattr/rejectattr(attribute, test, args...).
Value select_items(Renderer& r, const Value& v, CallArgs& a, bool by_attribute, bool keep_when) {
  std::string what = std::string(keep_when ? "select" : "reject") + (by_attribute ? "attr" : "");
  if (!a.keyword.empty()) throw EvalError("filter '" + what + "' takes no keyword arguments");
  size_t next = 0;
  std::optional<Value> attribute;
  if (by_attribute) {
    if (a.positional.empty()) throw EvalError("filter '" + what + "' needs an attribute");
    attribute = a.positional[next++];
  }
  TestFn test = nullptr;
  if (next < a.positional.size()) {
    if (!a.positional[next].is_string()) throw EvalError("filter '" + what + "' needs a test name");
    std::string name = a.positional[next++].as_string();
    test = find_test(name);
    if (!test) throw EvalError("unknown test '" + name + "' in " + what + "()");
  }
  CallArgs test_args{Value::List(a.positional.begin() + long(next), a.positional.end()), {}};
  Value::List out;
  for (const auto& item : iterate(v)) {
    Value subject = attribute ? attribute_path(item, *attribute) : item;
    CallArgs args = test_args;
    bool passes = test ? test(r, subject, args) : truthy(subject);
    if (passes == keep_when) out.push_back(item);
  }
  return Value::generator(std::move(out));
}

Value filter_select(Renderer& r, const Value& v, CallArgs& a) {
  return select_items(r, v, a, false, true);
}
Value filter_reject(Renderer& r, const Value& v, CallArgs& a) {
  return select_items(r, v, a, false, false);
}
Value filter_selectattr(Renderer& r, const Value& v, CallArgs& a) {
  return select_items(r, v, a, true, true);
}
Value filter_rejectattr(Renderer& r, const Value& v, CallArgs& a) {
  return select_items(r, v, a, true, false);
}

Value filter_replace(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"old", "new", "count"}, "filter 'replace'");
  if (!b[0] || !b[1]) throw EvalError("filter 'replace' needs the old and new strings");
  return replace(to_str(v), to_str(*b[0]), to_str(*b[1]), int_arg(b[2], -1, "filter 'replace'"));
}

Value filter_reverse(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'reverse'");
  if (v.is_string()) {
    const std::string& s = v.as_string();
    auto offsets = code_point_offsets(s);
    std::string out;
    for (size_t i = offsets.size() - 1; i > 0; --i) out.append(s, offsets[i - 1], offsets[i] - offsets[i - 1]);
    return out;
  }
  auto items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::generator(std::move(items));  // jinja2 returns reversed(value), an iterator
}

Value filter_round(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"precision", "method"}, "filter 'round'");
  int64_t precision = std::clamp<int64_t>(int_arg(b[0], 0, "filter 'round'"), -300, 300);
  std::string method = string_arg(b[1], "common", "filter 'round'");
  if (method != "common" && method != "ceil" && method != "floor")
    throw EvalError("method must be common, ceil or floor");
  if (is_integral(v) && method == "common" && precision >= 0) return integral(v);
  if (!is_integral(v) && !v.is_float()) throw EvalError("type " + type_name(v) + " doesn't define __round__ method");
  double x = v.is_float() ? v.as_double() : double(integral(v));
  double scale = std::pow(10.0, double(precision));
  // Python's round() is round-half-even; nearbyint rounds that way in the default rounding mode.
  double scaled = method == "ceil"    ? std::ceil(x * scale)
                  : method == "floor" ? std::floor(x * scale)
                                      : std::nearbyint(x * scale);
  return scaled / scale;
}

Value filter_safe(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'safe'");
  return to_str(v);
}

// jinja2 sorts by a list of keys (one per comma-separated attribute), so equal items are never ordered with '<'.
Value filter_sort(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"reverse", "case_sensitive", "attribute"}, "filter 'sort'");
  const bool reverse = bool_arg(b[0], false), case_sensitive = bool_arg(b[1], false);
  std::vector<std::optional<Value>> attributes;
  if (b[2] && b[2]->is_string()) {
    for (auto& part : split(b[2]->as_string(), std::string(","), -1))
      attributes.emplace_back(Value(strip(part, std::nullopt, true, true)));
  } else {
    attributes.push_back(b[2]);
  }
  auto items = iterate(v);
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : items) {
    Value::List keys;
    for (const auto& attribute : attributes) keys.push_back(sort_key(item, case_sensitive, attribute));
    keyed.emplace_back(Value::list(std::move(keys)), std::move(item));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? compare(y.first, x.first, "<") < 0 : compare(x.first, y.first, "<") < 0;
  });
  Value::List out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::list(std::move(out));
}

Value filter_string(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'string'");
  return to_str(v);
}

Value filter_sum(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"attribute", "start"}, "filter 'sum'");
  Value total = b[1].value_or(Value(int64_t(0)));
  for (const auto& item : iterate(v)) {
    Value x = b[0] && !b[0]->is_null() ? attribute_path(item, *b[0]) : item;
    if (x.is_undefined()) fail_undefined(x);
    total = arithmetic("+", total, x);
  }
  return total;
}

// jinja2's title filter: a word starts after '-', whitespace or an opening bracket; its first letter goes upper,
// the rest lower (unlike str.title, digits do not start words).
Value filter_title(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'title'");
  std::string s = to_str(v), out;
  size_t pos = 0;
  bool word_start = true;
  while (pos < s.size()) {
    uint32_t cp = decode_utf8(s, pos);
    auto mapped = word_start ? utf8proc_toupper(utf8proc_int32_t(cp)) : utf8proc_tolower(utf8proc_int32_t(cp));
    append_utf8(uint32_t(mapped), out);
    word_start = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || is_space(cp);
  }
  return out;
}

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False),
// which unlike jinja2's own does not escape <, >, & and '.
Value filter_tojson(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"ensure_ascii", "indent", "separators", "sort_keys"}, "filter 'tojson'");
  JsonStyle style;
  style.ensure_ascii = bool_arg(b[0], false);
  style.sort_keys = bool_arg(b[3], false);
  if (b[1] && !b[1]->is_null()) {
    if (b[1]->is_string())
      style.indent = b[1]->as_string();
    else
      style.indent = std::string(size_t(std::clamp<int64_t>(int_arg(b[1], 0, "filter 'tojson'"), 0, 4096)), ' ');
    style.item_separator = ",";
  }
  if (b[2] && !b[2]->is_null()) {
    if (!b[2]->is_list() || b[2]->as_list().size() != 2 || !b[2]->as_list()[0].is_string() ||
        !b[2]->as_list()[1].is_string())
      throw EvalError("tojson separators must be a pair of strings");
    style.item_separator = b[2]->as_list()[0].as_string();
    style.key_separator = b[2]->as_list()[1].as_string();
  }
  std::string out;
  dump_json(v, style, out);
  return out;
}

Value filter_trim(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"chars"}, "filter 'trim'");
  return strip(to_str(v), chars_arg(b[0], "trim"), true, true);
}

Value filter_unique(Renderer&, const Value& v, CallArgs& a) {
  auto b = bind_args(a, {"case_sensitive", "attribute"}, "filter 'unique'");
  const bool case_sensitive = bool_arg(b[0], false);
  Value::List out, seen;
  for (auto& item : iterate(v)) {
    Value key = sort_key(item, case_sensitive, b[1]);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) continue;
    seen.push_back(std::move(key));
    out.push_back(std::move(item));
  }
  return Value::generator(std::move(out));
}

Value filter_wordcount(Renderer&, const Value& v, CallArgs& a) {
  no_args(a, "filter 'wordcount'");
  std::string s = to_str(v);
  int64_t words = 0;
  bool in_word = false;
  size_t pos = 0;
  while (pos < s.size()) {
    bool word = is_word_char(decode_utf8(s, pos));
    words += word && !in_word;
    in_word = word;
  }
  return words;
}

struct NamedFilter {
  std::string_view name;
  FilterFn fn;
};

const NamedFilter kFilters[] = {
    {"abs", filter_abs},
    {"attr", filter_attr},
    {"batch", filter_batch},
    {"capitalize", filter_capitalize},
    {"center", filter_center},
    {"count", filter_length},
    {"d", filter_default},
    {"default", filter_default},
    {"dictsort", filter_dictsort},
    {"e", filter_escape},
    {"escape", filter_escape},
    {"first", filter_first},
    {"float", filter_float},
    {"format", filter_format},
    {"indent", filter_indent},
    {"int", filter_int},
    {"items", filter_items},
    {"join", filter_join},
    {"last", filter_last},
    {"length", filter_length},
    {"list", filter_list},
    {"lower", filter_lower},
    {"map", filter_map},
    {"max", filter_max},
    {"min", filter_min},
    {"reject", filter_reject},
    {"rejectattr", filter_rejectattr},
    {"replace", filter_replace},
    {"reverse", filter_reverse},
    {"round", filter_round},
    {"safe", filter_safe},
    {"select", filter_select},
    {"selectattr", filter_selectattr},
    {"sort", filter_sort},
    {"string", filter_string},
    {"sum", filter_sum},
    {"title", filter_title},
    {"tojson", filter_tojson},
    {"trim", filter_trim},
    {"unique", filter_unique},
    {"upper", filter_upper},
    {"wordcount", filter_wordcount},
};

// ---- tests ----

const Value& one_arg(const CallArgs& a, std::string_view test) {
  if (a.positional.size() != 1 || !a.keyword.empty())
    throw EvalError("test '" + std::string(test) + "' takes exactly one argument");
  return a.positional[0];
}

// value % 2 == 1 (or == 0), with Python's % (so floats work too).
bool test_odd_even(const Value& v, CallArgs& a, bool odd) {
  no_args(a, odd ? "test 'odd'" : "test 'even'");
  if (v.is_undefined()) fail_undefined(v);
  return equals(arithmetic("%", v, Value(int64_t(2))), Value(int64_t(odd ? 1 : 0)));
}

bool compare_test(const Value& v, CallArgs& a, std::string_view name, std::string_view op) {
  const Value& other = one_arg(a, name);
  if (op == "==") return equals(v, other);
  if (op == "!=") return !equals(v, other);
  int c = compare(v, other, op);
  return op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
}

bool same_object(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::List: return &a.as_list() == &b.as_list();
    case Value::Kind::Dict:
    case Value::Kind::Namespace: return &a.as_dict() == &b.as_dict();
    case Value::Kind::Function: return &a.as_function() == &b.as_function();
    default: return equals(a, b);
  }
}

struct NamedTest {
  std::string_view name;
  TestFn fn;
};

// Each test as a lambda of the TestFn signature.
#define INFERNO_TEST(body) [](Renderer&, [[maybe_unused]] const Value& v, CallArgs& a) -> bool body
const NamedTest kTests[] = {
    {"defined", INFERNO_TEST({
       no_args(a, "test 'defined'");
       return !v.is_undefined();
     })},
    {"undefined", INFERNO_TEST({
       no_args(a, "test 'undefined'");
       return v.is_undefined();
     })},
    {"none", INFERNO_TEST({
       no_args(a, "test 'none'");
       return v.is_null();
     })},
    {"boolean", INFERNO_TEST({
       no_args(a, "test 'boolean'");
       return v.is_bool();
     })},
    {"true", INFERNO_TEST({
       no_args(a, "test 'true'");
       return v.is_bool() && v.as_bool();
     })},
    {"false", INFERNO_TEST({
       no_args(a, "test 'false'");
       return v.is_bool() && !v.as_bool();
     })},
    {"string", INFERNO_TEST({
       no_args(a, "test 'string'");
       return v.is_string();
     })},
    {"number", INFERNO_TEST({
       no_args(a, "test 'number'");
       return v.is_bool() || v.is_number();
     })},
    {"integer", INFERNO_TEST({
       no_args(a, "test 'integer'");
       return v.is_int();
     })},
    {"float", INFERNO_TEST({
       no_args(a, "test 'float'");
       return v.is_float();
     })},
    {"mapping", INFERNO_TEST({
       no_args(a, "test 'mapping'");
       return v.is_dict();
     })},
    // jinja2's Undefined is iterable (as empty) and has a length, so it passes these two.
    {"iterable", INFERNO_TEST({
       no_args(a, "test 'iterable'");
       return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
     })},
    {"sequence", INFERNO_TEST({
       no_args(a, "test 'sequence'");
       return v.is_string() || (v.is_list() && !v.is_generator()) || v.is_dict() || v.is_undefined();
     })},
    {"callable", INFERNO_TEST({
       no_args(a, "test 'callable'");
       return v.is_function() || v.is_undefined();
     })},
    {"odd", INFERNO_TEST({ return test_odd_even(v, a, true); })},
    {"even", INFERNO_TEST({ return test_odd_even(v, a, false); })},
    {"divisibleby", INFERNO_TEST({
       const Value& n = one_arg(a, "divisibleby");
       if (v.is_undefined()) fail_undefined(v);
       if (n.is_undefined()) fail_undefined(n);
       return equals(arithmetic("%", v, n), Value(int64_t(0)));
     })},
    {"eq", INFERNO_TEST({ return compare_test(v, a, "eq", "=="); })},
    {"equalto", INFERNO_TEST({ return compare_test(v, a, "equalto", "=="); })},
    {"==", INFERNO_TEST({ return compare_test(v, a, "==", "=="); })},
    {"ne", INFERNO_TEST({ return compare_test(v, a, "ne", "!="); })},
    {"!=", INFERNO_TEST({ return compare_test(v, a, "!=", "!="); })},
    {"lt", INFERNO_TEST({ return compare_test(v, a, "lt", "<"); })},
    {"lessthan", INFERNO_TEST({ return compare_test(v, a, "lessthan", "<"); })},
    {"<", INFERNO_TEST({ return compare_test(v, a, "<", "<"); })},
    {"le", INFERNO_TEST({ return compare_test(v, a, "le", "<="); })},
    {"<=", INFERNO_TEST({ return compare_test(v, a, "<=", "<="); })},
    {"gt", INFERNO_TEST({ return compare_test(v, a, "gt", ">"); })},
    {"greaterthan", INFERNO_TEST({ return compare_test(v, a, "greaterthan", ">"); })},
    {">", INFERNO_TEST({ return compare_test(v, a, ">", ">"); })},
    {"ge", INFERNO_TEST({ return compare_test(v, a, "ge", ">="); })},
    {">=", INFERNO_TEST({ return compare_test(v, a, ">=", ">="); })},
    {"in", INFERNO_TEST({ return contains(one_arg(a, "in"), v); })},
    {"sameas", INFERNO_TEST({ return same_object(v, one_arg(a, "sameas")); })},
    {"lower", INFERNO_TEST({
       no_args(a, "test 'lower'");
       return has_case(to_str(v), false);
     })},
    {"upper", INFERNO_TEST({
       no_args(a, "test 'upper'");
       return has_case(to_str(v), true);
     })},
    {"filter", INFERNO_TEST({
       const Value& n = one_arg(a, "filter");
       return n.is_string() && find_filter(n.as_string());
     })},
    {"test", INFERNO_TEST({
       const Value& n = one_arg(a, "test");
       return n.is_string() && find_test(n.as_string());
     })},
    {"escaped", INFERNO_TEST({
       no_args(a, "test 'escaped'");
       return false;
     })},
};
#undef INFERNO_TEST

// ---- globals ----

Value global_range(Renderer&, CallArgs& a) {
  if (!a.keyword.empty() || a.positional.empty() || a.positional.size() > 3)
    throw EvalError("range expects 1 to 3 integer arguments");
  std::vector<int64_t> n;
  for (const auto& v : a.positional) {
    if (!is_integral(v)) throw EvalError("'" + type_name(v) + "' object cannot be interpreted as an integer");
    n.push_back(integral(v));
  }
  int64_t start = n.size() == 1 ? 0 : n[0], stop = n.size() == 1 ? n[0] : n[1], step = n.size() == 3 ? n[2] : 1;
  if (step == 0) throw EvalError("range() arg 3 must not be zero");
  __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
  __int128 count = span <= 0 ? 0 : (span - 1) / (step > 0 ? step : -__int128(step)) + 1;
  if (count > kMaxRangeLength) throw EvalError("range() longer than " + std::to_string(kMaxRangeLength) + " items");
  Value::List items;
  items.reserve(size_t(count));
  for (int64_t k = 0; k < int64_t(count); ++k) items.emplace_back(int64_t(start + __int128(k) * step));
  return Value::list(std::move(items));
}

// dict(mapping, **kwargs) as Python builds it; namespace() takes the same arguments.
Dict dict_from_args(const CallArgs& a, std::string_view what) {
  Dict d;
  if (a.positional.size() > 1) throw EvalError(std::string(what) + " expected at most 1 positional argument");
  if (!a.positional.empty()) {
    const Value& source = a.positional[0];
    if (source.is_dict() || source.is_namespace()) {
      for (const auto& entry : source.as_dict().entries()) d.set(entry.first, entry.second);
    } else {
      for (const auto& pair : iterate(source)) {
        if (!pair.is_list() || pair.as_list().size() != 2 || !pair.as_list()[0].is_string())
          throw EvalError(std::string(what) + ": expected a mapping or (key, value) pairs");
        d.set(pair.as_list()[0].as_string(), pair.as_list()[1]);
      }
    }
  }
  for (const auto& [key, value] : a.keyword) d.set(key, value);
  return d;
}

Value global_strftime_now(Renderer&, CallArgs& a) {
  auto b = bind_args(a, {"format"}, "strftime_now");
  if (!b[0]) throw EvalError("strftime_now() missing required argument 'format'");
  std::string format = string_arg(b[0], "", "strftime_now");
  if (format.find('\0') != std::string::npos) throw EvalError("strftime_now: embedded null character");
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  // A trailing space tells an empty result apart from a buffer too small (both make strftime return 0).
  const std::string padded = format + " ";
  for (size_t capacity = 64 + format.size() * 8; capacity <= (1u << 20); capacity *= 4) {
    std::string buffer(capacity, '\0');
    size_t n = std::strftime(buffer.data(), capacity, padded.c_str(), &local);
    if (n > 0) {
      buffer.resize(n - 1);
      return buffer;
    }
  }
  throw EvalError("strftime_now: result too long");
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  for (const auto& f : kFilters)
    if (f.name == name) return f.fn;
  return nullptr;
}

TestFn find_test(std::string_view name) {
  for (const auto& t : kTests)
    if (t.name == name) return t.fn;
  return nullptr;
}

Dict make_globals() {
  Dict globals;
  globals.set("range", make_function("range", global_range));
  globals.set("namespace", make_function("namespace", [](Renderer&, CallArgs& a) {
                Dict attributes = dict_from_args(a, "namespace");
                for (const auto& [key, value] : attributes.entries())
                  if (value.holds_namespace())
                    throw EvalError("namespace(): attribute '" + key + "' holds a namespace, which a namespace cannot");
                return Value::namespace_object(std::move(attributes));
              }));
  globals.set("dict",
              make_function("dict", [](Renderer&, CallArgs& a) { return Value::dict(dict_from_args(a, "dict")); }));
  globals.set("raise_exception", make_function("raise_exception", [](Renderer&, CallArgs& a) -> Value {
                auto b = bind_args(a, {"message"}, "raise_exception");
                if (!b[0]) throw EvalError("raise_exception() missing required argument 'message'");
                throw TemplateRaise(to_str(*b[0]));
              }));
  globals.set("strftime_now", make_function("strftime_now", global_strftime_now));
  return globals;
}

}  // namespace inferno::text::jinja

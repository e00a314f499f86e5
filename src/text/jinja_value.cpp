// Value and Dict, JSON in and out, and the Python semantics the interpreter needs: truth, str(), repr(), ==, <,
// json.dumps, and Python's str operations on UTF-8 text.
#include <simdjson.h>
#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "text/jinja_internal.hpp"

namespace inferno::text {

using jinja::EvalError;

// ---------------------------------------------------------------------------------------------------------------
// The budget of one render

namespace jinja {
namespace {
thread_local RenderBudget* active_budget = nullptr;
}

ActiveBudget::ActiveBudget(RenderBudget& budget) : previous_(active_budget) {
  active_budget = &budget;
}
ActiveBudget::~ActiveBudget() {
  active_budget = previous_;
}

void charge_elements(uint64_t count) {
  if (!active_budget) return;
  active_budget->elements += count;
  if (active_budget->elements > kMaxElementsCreated)
    throw EvalError("the template created more than " + std::to_string(kMaxElementsCreated) +
                    " list and dict items in one render");
}

void charge_string_bytes(uint64_t bytes) {
  if (!active_budget) return;
  active_budget->string_bytes += bytes;
  if (active_budget->string_bytes > kMaxStringBytesCreated)
    throw EvalError("the template created more than " + std::to_string(kMaxStringBytesCreated >> 20) +
                    " MiB of strings in one render");
}

void check_string_size(size_t bytes) {
  if (bytes > kMaxStringBytes)
    throw EvalError("string longer than " + std::to_string(kMaxStringBytes >> 20) + " MiB");
}
}  // namespace jinja

// ---------------------------------------------------------------------------------------------------------------
// Value

Value::Value(std::string s) : kind_(Kind::String) {
  jinja::charge_string_bytes(s.size());
  data_ = std::make_shared<const std::string>(std::move(s));
}

void Value::hold(const Value& item) {
  if (item.depth_ + 1 > depth_) {
    if (item.depth_ + 1 > jinja::kMaxValueDepth)
      throw EvalError("value nested deeper than " + std::to_string(jinja::kMaxValueDepth) +
                      " levels of lists and dicts");
    depth_ = uint16_t(item.depth_ + 1);
  }
  holds_namespace_ = holds_namespace_ || item.holds_namespace();
}

Value Value::list(List items) {
  jinja::charge_elements(items.size());
  Value v;
  v.kind_ = Kind::List;
  v.depth_ = 1;
  for (const auto& item : items) v.hold(item);
  v.data_ = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::tuple(List items) {
  Value v = list(std::move(items));
  v.sequence_ = Sequence::Tuple;
  return v;
}

Value Value::generator(List items) {
  Value v = list(std::move(items));
  v.sequence_ = Sequence::Generator;
  return v;
}

Value Value::dict() {
  return dict(Dict{});
}

Value Value::dict(Dict entries) {
  jinja::charge_elements(entries.size());
  Value v;
  v.kind_ = Kind::Dict;
  v.depth_ = 1;
  for (const auto& entry : entries.entries()) v.hold(entry.second);
  v.data_ = std::make_shared<Dict>(std::move(entries));
  return v;
}

Value Value::undefined(std::string hint) {
  Value v;
  v.kind_ = Kind::Undefined;
  v.data_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::function(std::shared_ptr<const jinja::Callable> callable, const Value* bound_to) {
  Value v;
  v.kind_ = Kind::Function;
  v.data_ = std::move(callable);
  if (bound_to) {
    v.depth_ = bound_to->depth_;
    v.holds_namespace_ = bound_to->holds_namespace();
  }
  return v;
}

Value Value::namespace_object(Dict attributes) {
  jinja::charge_elements(attributes.size());
  Value v;
  v.kind_ = Kind::Namespace;
  v.depth_ = 1;
  for (const auto& entry : attributes.entries()) v.hold(entry.second);
  v.data_ = std::make_shared<Dict>(std::move(attributes));
  return v;
}

namespace {
const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::Undefined: return "undefined";
    case Value::Kind::None: return "null";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "string";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Function: return "function";
    case Value::Kind::Namespace: return "namespace";
  }
  return "?";
}

[[noreturn]] void wrong_kind(Value::Kind have, const char* want) {
  throw Error(std::string("template value: expected ") + want + ", got " + kind_name(have));
}
}  // namespace

bool Value::as_bool() const {
  if (kind_ != Kind::Bool) wrong_kind(kind_, "bool");
  return std::get<bool>(data_);
}

int64_t Value::as_int() const {
  if (kind_ != Kind::Int) wrong_kind(kind_, "int");
  return std::get<int64_t>(data_);
}

double Value::as_double() const {
  if (kind_ == Kind::Int) return double(std::get<int64_t>(data_));
  if (kind_ != Kind::Float) wrong_kind(kind_, "number");
  return std::get<double>(data_);
}

const std::string& Value::as_string() const {
  if (kind_ != Kind::String) wrong_kind(kind_, "string");
  return *std::get<std::shared_ptr<const std::string>>(data_);
}

const Value::List& Value::as_list() const {
  if (kind_ != Kind::List) wrong_kind(kind_, "list");
  return *std::get<std::shared_ptr<List>>(data_);
}

const Dict& Value::as_dict() const {
  if (kind_ != Kind::Dict && kind_ != Kind::Namespace) wrong_kind(kind_, "dict");
  return *std::get<std::shared_ptr<Dict>>(data_);
}

const jinja::Callable& Value::as_function() const {
  if (kind_ != Kind::Function) wrong_kind(kind_, "function");
  return *std::get<std::shared_ptr<const jinja::Callable>>(data_);
}

const std::string& Value::undefined_hint() const {
  if (kind_ != Kind::Undefined) wrong_kind(kind_, "undefined");
  return *std::get<std::shared_ptr<const std::string>>(data_);
}

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::Dict && kind_ != Kind::Namespace) return nullptr;
  return std::get<std::shared_ptr<Dict>>(data_)->find(key);
}

void Value::push_back(Value item) {
  if (kind_ != Kind::List) wrong_kind(kind_, "list");
  auto& items = std::get<std::shared_ptr<List>>(data_);
  jinja::charge_elements(1);
  hold(item);
  if (items.use_count() > 1) {
    jinja::charge_elements(items->size());
    items = std::make_shared<List>(*items);
  }
  items->push_back(std::move(item));
}

void Value::set(std::string key, Value value) {
  if (kind_ != Kind::Dict && kind_ != Kind::Namespace) wrong_kind(kind_, "dict");
  auto& entries = std::get<std::shared_ptr<Dict>>(data_);
  hold(value);
  if (kind_ == Kind::Dict && entries.use_count() > 1) {
    jinja::charge_elements(entries->size());
    entries = std::make_shared<Dict>(*entries);
  }
  const size_t before = entries->size();
  entries->set(std::move(key), std::move(value));
  jinja::charge_elements(entries->size() - before);
}

// ---------------------------------------------------------------------------------------------------------------
// Dict

Dict::Dict(std::initializer_list<Entry> entries) {
  for (const auto& [key, value] : entries) set(key, value);
}

const Value* Dict::find(std::string_view key) const {
  if (!index_.empty()) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  for (const auto& entry : entries_)
    if (entry.first == key) return &entry.second;
  return nullptr;
}

Value* Dict::find(std::string_view key) {
  return const_cast<Value*>(static_cast<const Dict*>(this)->find(key));
}

void Dict::set(std::string key, Value value) {
  if (Value* existing = find(key)) {
    *existing = std::move(value);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(value));
  if (!index_.empty()) {
    index_.emplace(entries_.back().first, entries_.size() - 1);
  } else if (entries_.size() >= kIndexFrom) {
    for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON

namespace {
Value from_element(simdjson::dom::element element) {
  using simdjson::dom::element_type;
  switch (element.type()) {
    case element_type::ARRAY: {
      Value::List items;
      for (simdjson::dom::element child : simdjson::dom::array(element)) items.push_back(from_element(child));
      return Value::list(std::move(items));
    }
    case element_type::OBJECT: {
      Dict entries;
      for (simdjson::dom::key_value_pair field : simdjson::dom::object(element))
        entries.set(std::string(field.key), from_element(field.value));
      return Value::dict(std::move(entries));
    }
    case element_type::INT64: return Value(int64_t(element.get_int64().value_unsafe()));
    // Beyond int64 Python keeps an exact integer; a double is the closest this Value holds.
    case element_type::UINT64: return Value(double(element.get_uint64().value_unsafe()));
    case element_type::DOUBLE: return Value(element.get_double().value_unsafe());
    case element_type::STRING: return Value(std::string(element.get_string().value_unsafe()));
    case element_type::BOOL: return Value(element.get_bool().value_unsafe());
    case element_type::NULL_VALUE: return Value();
  }
  return Value();
}
}  // namespace

namespace {
// simdjson 3.0 rejects integers beyond 64 bits, which Python reads exactly (transformers writes model_max_length as
// 1000000000000000019884624838656). Such literals get a ".0" so that they parse, as doubles.
std::string widen_long_integers(std::string_view json) {
  std::string out;
  out.reserve(json.size() + 16);
  for (size_t i = 0; i < json.size();) {
    const char c = json[i];
    if (c == '"') {  // copy a string whole, escapes included
      size_t end = i + 1;
      while (end < json.size() && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
      end = std::min(end + 1, json.size());
      out.append(json.substr(i, end - i));
      i = end;
    } else if ((c >= '0' && c <= '9') || c == '-') {
      size_t end = i + 1;
      while (end < json.size() && std::string_view("0123456789.eE+-").find(json[end]) != std::string_view::npos) ++end;
      std::string_view number = json.substr(i, end - i);
      out.append(number);
      const size_t digits = number.size() - (c == '-');
      if (digits >= 20 && number.find_first_of(".eE") == std::string_view::npos) out += ".0";
      i = end;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}
}  // namespace

Value Value::from_json(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  auto error = parser.parse(simdjson::padded_string(json)).get(root);
  if (error == simdjson::NUMBER_ERROR)
    error = parser.parse(simdjson::padded_string(widen_long_integers(json))).get(root);
  if (error) throw Error(std::string("invalid JSON: ") + simdjson::error_message(error));
  try {
    return from_element(root);
  } catch (const EvalError& e) {  // nested deeper than a value may be
    throw Error(std::string("JSON: ") + e.what());
  }
}

std::string Value::to_json(int indent) const {
  jinja::JsonStyle style;
  if (indent >= 0) {
    style.indent = std::string(size_t(indent), ' ');
    style.item_separator = ",";
  }
  std::string out;
  try {
    jinja::dump_json(*this, style, out);
  } catch (const EvalError& e) {
    throw Error(std::string("template value to JSON: ") + e.what());
  }
  return out;
}

namespace jinja {

namespace {
void hex_escape(uint32_t unit, std::string& out) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(unit));
  out += buf;
}

void dump_json_string(std::string_view s, bool ensure_ascii, std::string& out) {
  out += '"';
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    uint32_t cp = decode_utf8(s, pos);
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20) {
          hex_escape(cp, out);
        } else if (cp >= 0x80 && ensure_ascii) {
          if (cp >= 0x10000) {  // UTF-16 surrogate pair, as Python writes it
            uint32_t v = cp - 0x10000;
            hex_escape(0xD800 + (v >> 10), out);
            hex_escape(0xDC00 + (v & 0x3FF), out);
          } else {
            hex_escape(cp, out);
          }
        } else {
          out.append(s.substr(start, pos - start));
        }
    }
  }
  out += '"';
}

void dump_json_at(const Value& v, const JsonStyle& style, int depth, std::string& out) {
  auto newline = [&](int level) {
    out += '\n';
    for (int i = 0; i < level; ++i) out += *style.indent;
  };
  switch (v.kind()) {
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.as_int()); return;
    case Value::Kind::Float: {
      double d = v.as_double();
      if (std::isnan(d))
        out += "NaN";
      else if (std::isinf(d))
        out += d > 0 ? "Infinity" : "-Infinity";
      else
        out += format_float(d);
      return;
    }
    case Value::Kind::String: dump_json_string(v.as_string(), style.ensure_ascii, out); return;
    case Value::Kind::List: {
      if (v.is_generator()) throw EvalError("Object of type generator is not JSON serializable");
      const auto& items = v.as_list();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += style.item_separator;
        if (style.indent) newline(depth + 1);
        dump_json_at(items[i], style, depth + 1, out);
        check_string_size(out.size());
      }
      if (style.indent) newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      const auto& entries = v.as_dict().entries();
      if (entries.empty()) {
        out += "{}";
        return;
      }
      std::vector<const Dict::Entry*> order;
      for (const auto& entry : entries) order.push_back(&entry);
      if (style.sort_keys)
        std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < order.size(); ++i) {
        if (i) out += style.item_separator;
        if (style.indent) newline(depth + 1);
        dump_json_string(order[i]->first, style.ensure_ascii, out);
        out += style.key_separator;
        dump_json_at(order[i]->second, style, depth + 1, out);
        check_string_size(out.size());
      }
      if (style.indent) newline(depth);
      out += '}';
      return;
    }
    case Value::Kind::Undefined:
    case Value::Kind::Function:
    case Value::Kind::Namespace: throw EvalError("Object of type " + type_name(v) + " is not JSON serializable");
  }
}
}  // namespace

void dump_json(const Value& v, const JsonStyle& style, std::string& out) {
  dump_json_at(v, style, 0, out);
}

// ---------------------------------------------------------------------------------------------------------------
// Python semantics

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return false;
    case Value::Kind::Bool: return v.as_bool();
    case Value::Kind::Int: return v.as_int() != 0;
    case Value::Kind::Float: return v.as_double() != 0.0;
    case Value::Kind::String: return !v.as_string().empty();
    case Value::Kind::List: return v.is_generator() || !v.as_list().empty();  // a generator is always true
    case Value::Kind::Dict: return !v.as_dict().empty();
    case Value::Kind::Function:
    case Value::Kind::Namespace: return true;
  }
  return false;
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::None: return "NoneType";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::List: return v.is_tuple() ? "tuple" : v.is_generator() ? "generator" : "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Function: return "function";
    case Value::Kind::Namespace: return "Namespace";
  }
  return "?";
}

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, size_t(end - buf));  // shortest round trip: "-1.2345e+02"
  std::string sign;
  if (!sci.empty() && sci[0] == '-') {
    sign = "-";
    sci.remove_prefix(1);
  }
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits += c;
  int exponent = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+'), sci.data() + sci.size(), exponent);
  // Python's repr switches to exponent notation when the decimal point falls outside (-4, 16].
  int point = exponent + 1;
  const int n = int(digits.size());
  std::string out = sign;
  if (point > -4 && point <= 16) {
    if (point <= 0) {
      out += "0." + std::string(size_t(-point), '0') + digits;
    } else if (point >= n) {
      out += digits + std::string(size_t(point - n), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(point)) + "." + digits.substr(size_t(point));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (n > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp_buf;
}

namespace {
// str.isprintable(): what repr() leaves as it is.
bool is_printable(uint32_t cp) {
  if (cp == ' ') return true;
  if (cp < 0x20 || cp == 0x7f) return false;
  if (cp < 0x7f) return true;
  switch (utf8proc_category(utf8proc_int32_t(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
  }
}

std::string repr_string(std::string_view s) {
  char quote = '\'';
  if (s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos) quote = '"';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    uint32_t cp = decode_utf8(s, pos);
    if (cp == uint32_t(quote) || cp == '\\') {
      out += '\\';
      out += char(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (!is_printable(cp)) {
      char buf[16];
      if (cp <= 0xff)
        std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(cp));
      else if (cp <= 0xffff)
        std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(cp));
      else
        std::snprintf(buf, sizeof buf, "\\U%08x", unsigned(cp));
      out += buf;
    } else {
      out.append(s.substr(start, pos - start));
    }
  }
  out += quote;
  return out;
}

std::string repr_dict(const Dict& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : d.entries()) {
    if (!first) out += ", ";
    first = false;
    out += repr_string(key) + ": " + repr(value);
    check_string_size(out.size());
  }
  return out + "}";
}
}  // namespace

std::string repr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::String: return repr_string(v.as_string());
    case Value::Kind::List: {
      if (v.is_generator()) return "<generator object>";
      const auto& items = v.as_list();
      std::string out = v.is_tuple() ? "(" : "[";
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        out += repr(items[i]);
        check_string_size(out.size());
      }
      if (v.is_tuple() && items.size() == 1) out += ",";
      return out + (v.is_tuple() ? ")" : "]");
    }
    case Value::Kind::Dict: return repr_dict(v.as_dict());
    case Value::Kind::Function: return "<function " + v.as_function().name() + ">";
    case Value::Kind::Namespace: return "<Namespace " + repr_dict(v.as_dict()) + ">";
    default: return to_str(v);
  }
}

std::string to_str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "";
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return v.as_bool() ? "True" : "False";
    case Value::Kind::Int: return std::to_string(v.as_int());
    case Value::Kind::Float: return format_float(v.as_double());
    case Value::Kind::String: return v.as_string();
    default: return repr(v);
  }
}

namespace {
bool is_numeric(const Value& v) {
  return v.is_bool() || v.is_int() || v.is_float();
}

// Python treats bool as an int.
int64_t numeric_int(const Value& v) {
  return v.is_bool() ? int64_t(v.as_bool()) : v.as_int();
}
double numeric_double(const Value& v) {
  return v.is_bool() ? double(v.as_bool()) : v.as_double();
}
}  // namespace

bool equals(const Value& a, const Value& b) {
  if (is_numeric(a) && is_numeric(b)) {
    if (a.is_float() || b.is_float()) return numeric_double(a) == numeric_double(b);
    return numeric_int(a) == numeric_int(b);
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.as_string() == b.as_string();
    case Value::Kind::List: {
      if (a.is_generator() || b.is_generator()) return &a.as_list() == &b.as_list();
      if (a.is_tuple() != b.is_tuple()) return false;
      const auto& x = a.as_list();
      const auto& y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Value::Kind::Dict: {
      const auto& x = a.as_dict();
      const auto& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x.entries()) {
        const Value* other = y.find(key);
        if (!other || !equals(value, *other)) return false;
      }
      return true;
    }
    case Value::Kind::Function: return &a.as_function() == &b.as_function();
    case Value::Kind::Namespace: return &a.as_dict() == &b.as_dict();
    default: return false;
  }
}

int compare(const Value& a, const Value& b, std::string_view op) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (is_numeric(a) && is_numeric(b)) {
    if (a.is_float() || b.is_float()) {
      double x = numeric_double(a), y = numeric_double(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    int64_t x = numeric_int(a), y = numeric_int(b);
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order, which is how Python orders str.
    int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple() && !a.is_generator() && !b.is_generator()) {
    const auto& x = a.as_list();
    const auto& y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equals(x[i], y[i])) return compare(x[i], y[i], op);
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  throw EvalError("'" + std::string(op) + "' not supported between instances of '" + type_name(a) + "' and '" +
                  type_name(b) + "'");
}

std::string undefined_message(const Value& undefined) {
  const std::string& hint = undefined.undefined_hint();
  return hint.empty() ? "undefined value" : hint;
}

void fail_undefined(const Value& undefined) {
  throw EvalError(undefined_message(undefined));
}

Value::List iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return v.as_list();
    case Value::Kind::Dict: {
      Value::List keys;
      for (const auto& entry : v.as_dict().entries()) keys.emplace_back(entry.first);
      return keys;
    }
    case Value::Kind::String: {
      Value::List chars;
      const std::string& s = v.as_string();
      auto offsets = code_point_offsets(s);
      for (size_t i = 0; i + 1 < offsets.size(); ++i)
        chars.emplace_back(s.substr(offsets[i], offsets[i + 1] - offsets[i]));
      return chars;
    }
    default: throw EvalError("'" + type_name(v) + "' object is not iterable");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Python str operations on UTF-8

uint32_t decode_utf8(std::string_view s, size_t& pos) {
  unsigned char c = static_cast<unsigned char>(s[pos]);
  size_t extra = (c >= 0xC2 && c <= 0xDF) ? 1 : (c >= 0xE0 && c <= 0xEF) ? 2 : (c >= 0xF0 && c <= 0xF4) ? 3 : 0;
  if (extra == 0 || pos + extra >= s.size()) {
    ++pos;
    return c;
  }
  uint32_t cp = c & (0x3F >> extra);
  for (size_t i = 1; i <= extra; ++i) {
    unsigned char next = static_cast<unsigned char>(s[pos + i]);
    if ((next & 0xC0) != 0x80) {  // malformed: take the lead byte alone
      ++pos;
      return c;
    }
    cp = (cp << 6) | (next & 0x3F);
  }
  pos += extra + 1;
  return cp;
}

void append_utf8(uint32_t cp, std::string& out) {
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

std::vector<size_t> code_point_offsets(std::string_view s) {
  std::vector<size_t> offsets;
  size_t pos = 0;
  while (pos < s.size()) {
    offsets.push_back(pos);
    decode_utf8(s, pos);
  }
  offsets.push_back(s.size());
  return offsets;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0, pos = 0;
  while (pos < s.size()) {
    decode_utf8(s, pos);
    ++n;
  }
  return n;
}

bool is_space(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20)) return true;
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

namespace {
std::vector<uint32_t> decode_all(std::string_view s) {
  std::vector<uint32_t> cps;
  size_t pos = 0;
  while (pos < s.size()) cps.push_back(decode_utf8(s, pos));
  return cps;
}
}  // namespace

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  std::vector<uint32_t> strip_set;
  if (chars) strip_set = decode_all(*chars);
  auto strippable = [&](uint32_t cp) {
    return chars ? std::find(strip_set.begin(), strip_set.end(), cp) != strip_set.end() : is_space(cp);
  };
  auto offsets = code_point_offsets(s);
  size_t first = 0, last = offsets.size() - 1;  // code point range [first, last)
  auto cp_at = [&](size_t i) {
    size_t pos = offsets[i];
    return decode_utf8(s, pos);
  };
  if (left)
    while (first < last && strippable(cp_at(first))) ++first;
  if (right)
    while (last > first && strippable(cp_at(last - 1))) --last;
  return std::string(s.substr(offsets[first], offsets[last] - offsets[first]));
}

namespace {
template <typename Map>
std::string map_code_points(std::string_view s, Map map) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) append_utf8(uint32_t(map(utf8proc_int32_t(decode_utf8(s, pos)))), out);
  return out;
}

bool is_cased(uint32_t cp) {
  auto category = utf8proc_category(utf8proc_int32_t(cp));
  return category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LL || category == UTF8PROC_CATEGORY_LT;
}
}  // namespace

std::string to_upper(std::string_view s) {
  return map_code_points(s, utf8proc_toupper);
}
std::string to_lower(std::string_view s) {
  return map_code_points(s, utf8proc_tolower);
}

std::string capitalize(std::string_view s) {
  std::string out;
  size_t pos = 0;
  bool first = true;
  while (pos < s.size()) {
    auto cp = utf8proc_int32_t(decode_utf8(s, pos));
    append_utf8(uint32_t(first ? utf8proc_totitle(cp) : utf8proc_tolower(cp)), out);
    first = false;
  }
  return out;
}

std::string title_case(std::string_view s) {
  std::string out;
  size_t pos = 0;
  bool previous_cased = false;
  while (pos < s.size()) {
    uint32_t cp = decode_utf8(s, pos);
    auto mapped = previous_cased ? utf8proc_tolower(utf8proc_int32_t(cp)) : utf8proc_totitle(utf8proc_int32_t(cp));
    append_utf8(uint32_t(mapped), out);
    previous_cased = is_cased(cp);
  }
  return out;
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> parts;
  if (sep) {
    if (sep->empty()) throw EvalError("empty separator");
    size_t start = 0;
    while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
      size_t found = s.find(*sep, start);
      if (found == std::string_view::npos) break;
      parts.emplace_back(s.substr(start, found - start));
      start = found + sep->size();
    }
    parts.emplace_back(s.substr(start));
    return parts;
  }
  auto offsets = code_point_offsets(s);
  auto cp_at = [&](size_t i) {
    size_t pos = offsets[i];
    return decode_utf8(s, pos);
  };
  size_t n = offsets.size() - 1, i = 0;
  while (true) {
    while (i < n && is_space(cp_at(i))) ++i;
    if (i == n) break;
    if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {  // the rest, leading whitespace dropped
      parts.emplace_back(s.substr(offsets[i]));
      break;
    }
    size_t start = i;
    while (i < n && !is_space(cp_at(i))) ++i;
    parts.emplace_back(s.substr(offsets[start], offsets[i] - offsets[start]));
  }
  return parts;
}

std::vector<std::string> splitlines(std::string_view s) {
  std::vector<std::string> lines;
  size_t pos = 0, line_start = 0;
  while (pos < s.size()) {
    size_t here = pos;
    uint32_t cp = decode_utf8(s, pos);
    bool boundary = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E ||
                    cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (!boundary) continue;
    lines.emplace_back(s.substr(line_start, here - line_start));
    if (cp == '\r' && pos < s.size() && s[pos] == '\n') ++pos;
    line_start = pos;
  }
  if (line_start < s.size()) lines.emplace_back(s.substr(line_start));
  return lines;
}

std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts the replacement around every character
    auto offsets = code_point_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || done < count) {
        out += replacement;
        ++done;
        check_string_size(out.size());
      }
      out.append(s.substr(offsets[i], offsets[i + 1] - offsets[i]));
    }
    if (count < 0 || done < count) out += replacement;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t found = s.find(old, start);
    if (found == std::string_view::npos) break;
    out.append(s.substr(start, found - start));
    out += replacement;
    check_string_size(out.size());
    start = found + old.size();
    ++done;
  }
  out.append(s.substr(start));
  return out;
}

std::vector<int64_t> slice_indices(int64_t length, const Value& start_v, const Value& stop_v, const Value& step_v) {
  auto index_of = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_null() || v.is_undefined()) return std::nullopt;
    if (v.is_int()) return v.as_int();
    if (v.is_bool()) return int64_t(v.as_bool());
    throw EvalError(std::string("slice ") + what + " must be an integer or None, not '" + type_name(v) + "'");
  };
  int64_t step = index_of(step_v, "step").value_or(1);
  if (step == 0) throw EvalError("slice step cannot be zero");
  const int64_t lower = step < 0 ? -1 : 0, upper = step < 0 ? length - 1 : length;
  auto clamp = [&](std::optional<int64_t> index, int64_t fallback) {
    if (!index) return fallback;
    int64_t i = *index < 0 ? *index + length : *index;
    return std::clamp(i, lower, upper);
  };
  int64_t start = clamp(index_of(start_v, "start"), step < 0 ? upper : lower);
  int64_t stop = clamp(index_of(stop_v, "stop"), step < 0 ? lower : upper);
  // Counted rather than stepped, so that a huge step cannot overflow.
  int64_t count = 0;
  if (step > 0 && stop > start) count = (stop - start - 1) / step + 1;
  if (step < 0 && stop < start) count = (start - stop - 1) / -step + 1;
  std::vector<int64_t> indices;
  for (int64_t k = 0; k < count; ++k) indices.push_back(start + k * step);
  return indices;
}

}  // namespace jinja
}  // namespace inferno::text

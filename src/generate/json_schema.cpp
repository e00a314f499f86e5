#include "generate/json_schema.hpp"

#include <simdjson.h>

#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "util/error.hpp"

namespace inferno::gen {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using Sequence = GrammarBuilder::Sequence;

const std::set<std::string_view> kAnnotations = {"title",   "description", "default",    "examples", "format",
                                                  "$schema", "$id",         "$comment",   "deprecated",
                                                  "readOnly", "writeOnly",  "$defs",      "definitions"};
const std::set<std::string_view> kAssertions = {"type",      "properties", "required", "additionalProperties",
                                                 "items",     "minItems",   "maxItems", "minLength",
                                                 "maxLength", "enum",       "const",    "anyOf",
                                                 "$ref"};
const std::vector<std::string_view> kTypes = {"object", "array", "string", "number", "integer", "boolean", "null"};

class SchemaCompiler {
 public:
  explicit SchemaCompiler(element root) : root_(root), b_(kMaxSymbols) {}

  Grammar compile_root() {
    const uint32_t start = value(root_, "#", 0);
    return b_.build(start, "json schema");
  }

 private:
  [[noreturn]] static void refuse(const std::string& path, const std::string& why) {
    fail("json schema at " + path + ": " + why);
  }

  // ---- shared pieces ----
  uint32_t ws() {
    if (ws_) return *ws_;
    // Nothing, one space, or one newline and an indentation of spaces and tabs: the layouts JSON is written in. A
    // model is not let fill every place with blank lines (the greedy demo model would, until max_tokens).
    const ByteSet indent = ByteSet().add(' ').add('\t');
    uint32_t tail = b_.new_rule();  // matches the empty text only
    b_.add(tail, {});
    for (int i = 0; i < kMaxIndent; ++i) {
      const uint32_t r = b_.new_rule();
      b_.add(r, {});
      b_.add(r, {b_.bytes(indent), GrammarBuilder::ref(tail)});
      tail = r;
    }
    const uint32_t r = b_.new_rule();
    b_.add(r, {});
    b_.add(r, {b_.bytes(ByteSet().add(' '))});
    b_.add(r, {b_.bytes(ByteSet().add('\n')), GrammarBuilder::ref(tail)});
    return *(ws_ = r);
  }
  Grammar::Symbol w() { return GrammarBuilder::ref(ws()); }

  // One character inside a string: printable ASCII but '"' and '\', an escape, or a valid UTF-8 sequence.
  uint32_t string_char() {
    if (char_) return *char_;
    const uint32_t r = b_.new_rule();
    ByteSet ascii;
    ascii.add_range(0x20, 0x7f);
    ascii.bits['"' >> 6] &= ~(uint64_t(1) << ('"' & 63));
    ascii.bits['\\' >> 6] &= ~(uint64_t(1) << ('\\' & 63));
    b_.add(r, {b_.bytes(ascii)});
    ByteSet simple_escape;
    for (char c : std::string_view("\"\\/bfnrt")) simple_escape.add(uint8_t(c));
    b_.add(r, {b_.byte('\\'), b_.bytes(simple_escape)});
    ByteSet hex, hex_no_d, octal;
    hex.add_range('0', '9').add_range('a', 'f').add_range('A', 'F');
    hex_no_d.add_range('0', '9').add_range('a', 'c').add_range('A', 'C').add_range('e', 'f').add_range('E', 'F');
    octal.add_range('0', '7');
    const auto h = b_.bytes(hex);
    b_.add(r, {b_.byte('\\'), b_.byte('u'), b_.bytes(hex_no_d), h, h, h});  // no surrogate halves: they come in
    b_.add(r, {b_.byte('\\'), b_.byte('u'), b_.bytes(ByteSet().add('d').add('D')), b_.bytes(octal), h, h});  // pairs
    // UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
    const auto cont = b_.bytes(ByteSet().add_range(0x80, 0xbf));
    b_.add(r, {b_.bytes(ByteSet().add_range(0xc2, 0xdf)), cont});
    b_.add(r, {b_.byte(0xe0), b_.bytes(ByteSet().add_range(0xa0, 0xbf)), cont});
    b_.add(r, {b_.bytes(ByteSet().add_range(0xe1, 0xec).add_range(0xee, 0xef)), cont, cont});
    b_.add(r, {b_.byte(0xed), b_.bytes(ByteSet().add_range(0x80, 0x9f)), cont});
    b_.add(r, {b_.byte(0xf0), b_.bytes(ByteSet().add_range(0x90, 0xbf)), cont, cont});
    b_.add(r, {b_.bytes(ByteSet().add_range(0xf1, 0xf3)), cont, cont, cont});
    b_.add(r, {b_.byte(0xf4), b_.bytes(ByteSet().add_range(0x80, 0x8f)), cont, cont});
    return *(char_ = r);
  }

  // `item` repeated min..max times (max < 0: no bound), `separator` between two repetitions.
  uint32_t repeat(uint32_t item, int64_t min, int64_t max, const Sequence& separator) {
    const uint32_t r = b_.new_rule();
    if (max == 0) {
      b_.add(r, {});
      return r;
    }
    // The optional tail after the mandatory ones: a chain of at most `max - min` or a loop.
    uint32_t tail = b_.new_rule();
    b_.add(tail, {});
    auto tail_step = [&](uint32_t next) {
      Sequence s = separator;
      s.push_back(GrammarBuilder::ref(item));
      s.push_back(GrammarBuilder::ref(next));
      return s;
    };
    if (max < 0) {
      b_.add(tail, tail_step(tail));
    } else {
      for (int64_t i = std::max<int64_t>(min, 1); i < max; ++i) {
        const uint32_t longer = b_.new_rule();
        b_.add(longer, {});
        b_.add(longer, tail_step(tail));
        tail = longer;
      }
    }
    Sequence first{GrammarBuilder::ref(item)};
    for (int64_t i = 1; i < min; ++i) {
      first.insert(first.end(), separator.begin(), separator.end());
      first.push_back(GrammarBuilder::ref(item));
      if (first.size() > kMaxSymbols) refuse("#", "minItems or minLength is too large");
    }
    first.push_back(GrammarBuilder::ref(tail));
    b_.add(r, std::move(first));
    if (min == 0) b_.add(r, {});
    return r;
  }

  uint32_t literal_rule(std::string_view text) {
    const uint32_t r = b_.new_rule();
    b_.add(r, b_.literal(text));
    return r;
  }

  uint32_t string_rule(int64_t min, int64_t max) {
    const uint32_t r = b_.new_rule();
    b_.add(r, {b_.byte('"'), GrammarBuilder::ref(repeat(string_char(), min, max, {})), b_.byte('"')});
    return r;
  }

  uint32_t digits(int64_t min, int64_t max) {
    if (!digit_) {
      digit_ = b_.new_rule();
      b_.add(*digit_, {b_.bytes(ByteSet().add_range('0', '9'))});
    }
    return repeat(*digit_, min, max, {});
  }

  uint32_t number_rule(bool integer) {
    std::optional<uint32_t>& cached = integer ? integer_ : number_;
    if (cached) return *cached;
    const uint32_t int_part = b_.new_rule();
    b_.add(int_part, {b_.byte('0')});
    b_.add(int_part, {b_.bytes(ByteSet().add_range('1', '9')), GrammarBuilder::ref(digits(0, 15))});
    const uint32_t sign = b_.new_rule();
    b_.add(sign, {});
    b_.add(sign, {b_.byte('-')});
    const uint32_t r = b_.new_rule();
    if (integer) {
      b_.add(r, {GrammarBuilder::ref(sign), GrammarBuilder::ref(int_part)});
    } else {
      const uint32_t fraction = b_.new_rule();
      b_.add(fraction, {});
      b_.add(fraction, {b_.byte('.'), GrammarBuilder::ref(digits(1, 15))});
      const uint32_t exponent = b_.new_rule();
      b_.add(exponent, {});
      const uint32_t exponent_sign = b_.new_rule();
      b_.add(exponent_sign, {});
      b_.add(exponent_sign, {b_.bytes(ByteSet().add('+').add('-'))});
      b_.add(exponent, {b_.bytes(ByteSet().add('e').add('E')), GrammarBuilder::ref(exponent_sign),
                        GrammarBuilder::ref(digits(1, 2))});
      b_.add(r, {GrammarBuilder::ref(sign), GrammarBuilder::ref(int_part), GrammarBuilder::ref(fraction),
                 GrammarBuilder::ref(exponent)});
    }
    return *(cached = r);
  }

  // Any JSON value (the schema {} or true).
  uint32_t any_value() {
    if (any_) return *any_;
    const uint32_t r = b_.new_rule();
    any_ = r;
    b_.add(r, {GrammarBuilder::ref(object_any(r))});
    b_.add(r, {GrammarBuilder::ref(array_of(r, 0, -1))});
    b_.add(r, {GrammarBuilder::ref(string_rule(0, -1))});
    b_.add(r, {GrammarBuilder::ref(number_rule(false))});
    for (const char* word : {"true", "false", "null"}) b_.add(r, b_.literal(word));
    return r;
  }

  // An object with any keys, each value matching `value_rule`.
  uint32_t object_any(uint32_t value_rule) {
    const uint32_t member = b_.new_rule();
    b_.add(member, {GrammarBuilder::ref(string_rule(0, -1)), w(), b_.byte(':'), w(), GrammarBuilder::ref(value_rule)});
    const uint32_t r = b_.new_rule();
    b_.add(r, {b_.byte('{'), w(), GrammarBuilder::ref(repeat(member, 0, -1, {w(), b_.byte(','), w()})), w(),
               b_.byte('}')});
    return r;
  }

  uint32_t array_of(uint32_t item, int64_t min, int64_t max) {
    const uint32_t r = b_.new_rule();
    b_.add(r, {b_.byte('['), w(), GrammarBuilder::ref(repeat(item, min, max, {w(), b_.byte(','), w()})), w(),
               b_.byte(']')});
    return r;
  }

  // ---- schema keywords ----
  static std::optional<int64_t> count(simdjson::dom::object o, std::string_view key, const std::string& path) {
    element e;
    if (o.at_key(key).get(e) != simdjson::SUCCESS) return std::nullopt;
    int64_t v = 0;
    if (e.is_int64()) v = int64_t(e);
    else if (e.is_double() && double(e) == double(int64_t(double(e)))) v = int64_t(double(e));
    else refuse(path, "'" + std::string(key) + "' must be a non-negative integer");
    if (v < 0) refuse(path, "'" + std::string(key) + "' must be a non-negative integer");
    return v;
  }

  static bool value_has_type(element v, std::string_view type) {
    switch (v.type()) {
      case element_type::OBJECT: return type == "object";
      case element_type::ARRAY: return type == "array";
      case element_type::STRING: return type == "string";
      case element_type::INT64:
      case element_type::UINT64: return type == "integer" || type == "number";
      case element_type::DOUBLE: {
        const double d = double(v);
        return type == "number" || (type == "integer" && d == double(int64_t(d)));
      }
      case element_type::BOOL: return type == "boolean";
      case element_type::NULL_VALUE: return type == "null";
    }
    return false;
  }

  uint32_t resolve_ref(std::string_view ref, const std::string& path, size_t depth) {
    const std::string key(ref);
    if (auto it = refs_.find(key); it != refs_.end()) return it->second;
    element target;
    if (ref == "#") {
      target = root_;
    } else {
      std::string_view name;
      std::string_view container;
      if (ref.starts_with("#/$defs/")) container = "$defs", name = ref.substr(8);
      else if (ref.starts_with("#/definitions/")) container = "definitions", name = ref.substr(14);
      else refuse(path, "$ref '" + key + "' is not supported (only \"#\", \"#/$defs/NAME\" and \"#/definitions/NAME\")");
      if (name.find('/') != std::string_view::npos || name.find('~') != std::string_view::npos)
        refuse(path, "$ref '" + key + "': nested or escaped names are not supported");
      if (root_.at_key(container).at_key(name).get(target) != simdjson::SUCCESS)
        refuse(path, "$ref '" + key + "' names no definition");
    }
    // The rule exists before its body, so a definition may refer to itself (through some text, see build()).
    const uint32_t r = b_.new_rule();
    refs_[key] = r;
    b_.add(r, {GrammarBuilder::ref(value(target, key, depth + 1))});
    return r;
  }

  uint32_t value(element schema, const std::string& path, size_t depth) {
    if (depth > kMaxSchemaDepth) refuse(path, "the schema nests more than " + std::to_string(kMaxSchemaDepth) + " levels");
    if (schema.is_bool()) {
      if (!bool(schema)) refuse(path, "the schema false matches nothing");
      return any_value();
    }
    simdjson::dom::object o;
    if (schema.get(o) != simdjson::SUCCESS) refuse(path, "a schema must be an object or a boolean");
    for (auto field : o)
      if (!kAssertions.count(field.key) && !kAnnotations.count(field.key))
        refuse(path, "keyword '" + std::string(field.key) + "' is not supported");

    element e;
    if (o.at_key("$ref").get(e) == simdjson::SUCCESS) {
      if (!e.is_string()) refuse(path, "'$ref' must be a string");
      for (auto field : o)
        if (kAssertions.count(field.key) && field.key != "$ref")
          refuse(path, "'$ref' beside '" + std::string(field.key) + "' is not supported");
      return resolve_ref(std::string_view(e), path, depth);
    }

    // The types allowed here: "type", else what the other keywords imply, else any.
    std::vector<std::string_view> types;
    if (o.at_key("type").get(e) == simdjson::SUCCESS) {
      auto check = [&](element t) {
        if (!t.is_string()) refuse(path + "/type", "a type must be a string");
        const std::string_view name(t);
        if (std::find(kTypes.begin(), kTypes.end(), name) == kTypes.end())
          refuse(path + "/type", "unknown type '" + std::string(name) + "'");
        types.push_back(name);
      };
      simdjson::dom::array list;
      if (e.get(list) == simdjson::SUCCESS) {
        for (element t : list) check(t);
        if (types.empty()) refuse(path + "/type", "an empty list of types");
      } else {
        check(e);
      }
    }

    std::vector<uint32_t> alternatives;
    const bool has_enum = o.at_key("enum").get(e) == simdjson::SUCCESS;
    element constant;
    const bool has_const = o.at_key("const").get(constant) == simdjson::SUCCESS;
    if (has_enum || has_const) {
      std::vector<element> values;
      if (has_const) {
        values.push_back(constant);
      } else {
        simdjson::dom::array list;
        if (e.get(list) != simdjson::SUCCESS) refuse(path, "'enum' must be a list");
        for (element v : list) values.push_back(v);
      }
      for (element v : values) {
        bool ok = types.empty();
        for (auto t : types) ok = ok || value_has_type(v, t);
        if (ok) alternatives.push_back(literal_rule(simdjson::to_string(v)));
      }
      if (alternatives.empty()) refuse(path, "no value of 'enum' / 'const' has the schema's type");
    } else if (o.at_key("anyOf").get(e) == simdjson::SUCCESS) {
      simdjson::dom::array list;
      if (e.get(list) != simdjson::SUCCESS || list.size() == 0) refuse(path, "'anyOf' must be a non-empty list");
      if (!types.empty()) refuse(path, "'anyOf' beside 'type' is not supported (put the type into each branch)");
      size_t i = 0;
      for (element branch : list) alternatives.push_back(value(branch, path + "/anyOf/" + std::to_string(i++), depth + 1));
    } else {
      if (types.empty()) {
        for (auto [keyword, type] : {std::pair{"properties", "object"}, {"required", "object"},
                                     {"additionalProperties", "object"}, {"items", "array"}, {"minItems", "array"},
                                     {"maxItems", "array"}, {"minLength", "string"}, {"maxLength", "string"}})
          if (o.at_key(keyword).error() == simdjson::SUCCESS &&
              std::find(types.begin(), types.end(), type) == types.end())
            types.push_back(type);
        if (types.empty()) return any_value();
      }
      for (std::string_view t : types) alternatives.push_back(typed(o, t, path, depth));
    }
    if (alternatives.size() == 1) return alternatives[0];
    const uint32_t r = b_.new_rule();
    for (uint32_t a : alternatives) b_.add(r, {GrammarBuilder::ref(a)});
    return r;
  }

  uint32_t typed(simdjson::dom::object o, std::string_view type, const std::string& path, size_t depth) {
    if (type == "string") {
      const int64_t min = count(o, "minLength", path).value_or(0);
      const auto max = count(o, "maxLength", path);
      if (max && *max < min) refuse(path, "'maxLength' is less than 'minLength'");
      return string_rule(min, max ? *max : -1);
    }
    if (type == "number" || type == "integer") return number_rule(type == "integer");
    if (type == "boolean") {
      const uint32_t r = b_.new_rule();
      b_.add(r, b_.literal("true"));
      b_.add(r, b_.literal("false"));
      return r;
    }
    if (type == "null") return literal_rule("null");
    if (type == "array") {
      element items;
      uint32_t item;
      if (o.at_key("items").get(items) == simdjson::SUCCESS) {
        if (items.is_array()) refuse(path + "/items", "'items' as a list (tuple validation) is not supported");
        item = value(items, path + "/items", depth + 1);
      } else {
        item = any_value();
      }
      const int64_t min = count(o, "minItems", path).value_or(0);
      const auto max = count(o, "maxItems", path);
      if (max && *max < min) refuse(path, "'maxItems' is less than 'minItems'");
      return array_of(item, min, max ? *max : -1);
    }
    return object(o, path, depth);
  }

  uint32_t object(simdjson::dom::object o, const std::string& path, size_t depth) {
    struct Property {
      std::string key_json;  // the key as written, quoted and escaped
      std::string name;
      uint32_t value_rule;
      bool required = false;
    };
    std::vector<Property> properties;
    element e;
    if (o.at_key("properties").get(e) == simdjson::SUCCESS) {
      simdjson::dom::object props;
      if (e.get(props) != simdjson::SUCCESS) refuse(path, "'properties' must be an object");
      for (auto field : props) {
        const std::string name(field.key);
        properties.push_back({quote(name), name, 0, false});
        properties.back().value_rule = value(field.value, path + "/properties/" + name, depth + 1);
      }
    }
    bool additional_false = false;
    std::optional<uint32_t> additional_rule;
    if (o.at_key("additionalProperties").get(e) == simdjson::SUCCESS) {
      if (e.is_bool()) additional_false = !bool(e);
      else additional_rule = value(e, path + "/additionalProperties", depth + 1);
    }
    if (o.at_key("required").get(e) == simdjson::SUCCESS) {
      simdjson::dom::array list;
      if (e.get(list) != simdjson::SUCCESS) refuse(path, "'required' must be a list of strings");
      for (element name_element : list) {
        if (!name_element.is_string()) refuse(path, "'required' must be a list of strings");
        const std::string name{std::string_view(name_element)};
        auto it = std::find_if(properties.begin(), properties.end(), [&](const Property& p) { return p.name == name; });
        if (it == properties.end()) {
          if (additional_false)
            refuse(path, "required property '" + name + "' is not in 'properties' and additionalProperties is false");
          properties.push_back({quote(name), name, additional_rule ? *additional_rule : any_value(), true});
        } else {
          it->required = true;
        }
      }
    }
    if (properties.empty()) {
      if (additional_false) return literal_rule("{}");
      return object_any(additional_rule ? *additional_rule : any_value());
    }
    // after[i][first]: the members from property i on; `first` when none was written yet (no comma before).
    const size_t n = properties.size();
    std::vector<std::array<uint32_t, 2>> after(n + 1);
    after[n] = {b_.new_rule(), b_.new_rule()};
    b_.add(after[n][0], {});
    b_.add(after[n][1], {});
    for (size_t i = n; i-- > 0;) {
      const Property& p = properties[i];
      Sequence member = b_.literal(p.key_json);
      member.insert(member.end(), {w(), b_.byte(':'), w(), GrammarBuilder::ref(p.value_rule)});
      for (int first = 0; first < 2; ++first) {
        const uint32_t r = b_.new_rule();
        Sequence with;
        if (!first) with = {w(), b_.byte(','), w()};
        with.insert(with.end(), member.begin(), member.end());
        with.push_back(GrammarBuilder::ref(after[i + 1][0]));
        b_.add(r, std::move(with));
        if (!p.required) b_.add(r, {GrammarBuilder::ref(after[i + 1][first])});
        after[i][first] = r;
      }
    }
    const uint32_t r = b_.new_rule();
    b_.add(r, {b_.byte('{'), w(), GrammarBuilder::ref(after[0][1]), w(), b_.byte('}')});
    return r;
  }

  static std::string quote(const std::string& s) {
    // A JSON string holding s, escaped as simdjson writes strings (the key's bytes are valid: they came from JSON).
    std::string json = "\"";
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') json += '\\', json += char(c);
      else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        json += buf;
      } else {
        json += char(c);
      }
    }
    return json + "\"";
  }

  element root_;
  GrammarBuilder b_;
  std::unordered_map<std::string, uint32_t> refs_;
  std::optional<uint32_t> ws_, char_, digit_, integer_, number_, any_;
};

}  // namespace

Grammar compile_json_schema(std::string_view schema_json) {
  simdjson::dom::parser parser;
  element root;
  if (const auto error = parser.parse(schema_json.data(), schema_json.size()).get(root); error != simdjson::SUCCESS)
    fail(std::string("json schema: not valid JSON: ") + simdjson::error_message(error));
  return SchemaCompiler(root).compile_root();
}

}  // namespace inferno::gen

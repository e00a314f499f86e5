#pragma once
// An independent validator for the JSON Schema subset that constrained decoding supports (type, properties,
// required, additionalProperties, items, minItems, maxItems, minLength, maxLength, enum, const, anyOf, local
// $ref), written from the specification's wording, to check outputs with something other than the grammar that
// made them. Returns "" when `value` validates, else why not (with a JSON pointer to the place).
#include <simdjson.h>

#include <cmath>
#include <string>
#include <string_view>

namespace inferno::testing {

inline size_t code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

inline bool json_equal(simdjson::dom::element a, simdjson::dom::element b) {
  return simdjson::to_string(a) == simdjson::to_string(b);
}

inline bool has_type(simdjson::dom::element v, std::string_view type) {
  using T = simdjson::dom::element_type;
  switch (v.type()) {
    case T::OBJECT: return type == "object";
    case T::ARRAY: return type == "array";
    case T::STRING: return type == "string";
    case T::INT64:
    case T::UINT64: return type == "integer" || type == "number";
    case T::DOUBLE: return type == "number" || (type == "integer" && std::floor(double(v)) == double(v));
    case T::BOOL: return type == "boolean";
    case T::NULL_VALUE: return type == "null";
  }
  return false;
}

inline std::string validate_json(simdjson::dom::element value, simdjson::dom::element schema,
                                 simdjson::dom::element root, const std::string& where = "") {
  if (schema.is_bool()) return bool(schema) ? "" : where + ": schema false";
  simdjson::dom::object s = schema;
  simdjson::dom::element k;
  if (s.at_key("$ref").get(k) == simdjson::SUCCESS) {
    std::string_view ref = k;
    simdjson::dom::element target = root;
    if (ref != "#") {
      const bool defs = ref.starts_with("#/$defs/");
      target = root.at_key(defs ? "$defs" : "definitions").at_key(ref.substr(defs ? 8 : 14));
    }
    return validate_json(value, target, root, where);
  }
  if (s.at_key("type").get(k) == simdjson::SUCCESS) {
    bool ok = false;
    if (k.is_string()) ok = has_type(value, std::string_view(k));
    else
      for (auto t : simdjson::dom::array(k)) ok = ok || has_type(value, std::string_view(t));
    if (!ok) return where + ": wrong type";
  }
  if (s.at_key("const").get(k) == simdjson::SUCCESS && !json_equal(value, k)) return where + ": not the const";
  if (s.at_key("enum").get(k) == simdjson::SUCCESS) {
    bool ok = false;
    for (auto e : simdjson::dom::array(k)) ok = ok || json_equal(value, e);
    if (!ok) return where + ": not in enum";
  }
  if (s.at_key("anyOf").get(k) == simdjson::SUCCESS) {
    bool ok = false;
    for (auto branch : simdjson::dom::array(k)) ok = ok || validate_json(value, branch, root, where).empty();
    if (!ok) return where + ": no anyOf branch";
  }
  if (value.is_string()) {
    const size_t n = code_points(std::string_view(value));
    if (s.at_key("minLength").get(k) == simdjson::SUCCESS && n < uint64_t(int64_t(k))) return where + ": too short";
    if (s.at_key("maxLength").get(k) == simdjson::SUCCESS && n > uint64_t(int64_t(k))) return where + ": too long";
  }
  if (value.is_array()) {
    simdjson::dom::array a = value;
    if (s.at_key("minItems").get(k) == simdjson::SUCCESS && a.size() < uint64_t(int64_t(k))) return where + ": few items";
    if (s.at_key("maxItems").get(k) == simdjson::SUCCESS && a.size() > uint64_t(int64_t(k))) return where + ": many items";
    if (s.at_key("items").get(k) == simdjson::SUCCESS) {
      size_t i = 0;
      for (auto item : a)
        if (auto e = validate_json(item, k, root, where + "/" + std::to_string(i++)); !e.empty()) return e;
    }
  }
  if (value.is_object()) {
    simdjson::dom::object o = value;
    simdjson::dom::object properties;
    const bool has_properties = s.at_key("properties").get(properties) == simdjson::SUCCESS;
    if (s.at_key("required").get(k) == simdjson::SUCCESS)
      for (auto name : simdjson::dom::array(k))
        if (o.at_key(std::string_view(name)).error()) return where + ": missing " + std::string(std::string_view(name));
    simdjson::dom::element additional;
    const bool has_additional = s.at_key("additionalProperties").get(additional) == simdjson::SUCCESS;
    for (auto field : o) {
      simdjson::dom::element sub;
      const std::string at = where + "/" + std::string(field.key);
      if (has_properties && properties.at_key(field.key).get(sub) == simdjson::SUCCESS) {
        if (auto e = validate_json(field.value, sub, root, at); !e.empty()) return e;
      } else if (has_additional) {
        if (auto e = validate_json(field.value, additional, root, at); !e.empty()) return e;
      }
    }
  }
  return "";
}

// Parses `text` and validates it against `schema_json`: "" when both hold, else why not.
inline std::string parse_and_validate(const std::string& text, const std::string& schema_json) {
  simdjson::dom::parser text_parser, schema_parser;
  simdjson::dom::element value, schema;
  if (auto e = text_parser.parse(text).get(value); e) return std::string("not JSON: ") + simdjson::error_message(e);
  if (auto e = schema_parser.parse(schema_json).get(schema); e) return "bad schema";
  return validate_json(value, schema, schema);
}

}  // namespace inferno::testing

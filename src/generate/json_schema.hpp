#pragma once
// JSON Schema (a subset) compiled into a grammar of the JSON texts that validate against it, for constrained
// decoding (OpenAI's response_format json_schema, tool-call arguments).
//
// Supported: type (one or a list of object, array, string, number, integer, boolean, null), properties, required,
// additionalProperties, items, minItems / maxItems, minLength / maxLength, enum, const, anyOf, $ref to "#",
// "#/$defs/NAME" or "#/definitions/NAME". Annotations are ignored: title, description, default, examples, format,
// $schema, $id, $comment, deprecated, readOnly, writeOnly. Any other keyword is refused with an Error naming it.
//
// The grammar accepts a subset of the valid texts, which is what decoding needs (every output validates):
// - properties come in the schema's order, each at most once; declared properties are the only ones written, even
//   when additionalProperties allows others (an object schema without properties takes any keys);
// - numbers have at most 16 integer digits, 15 fraction digits and a 2-digit exponent;
// - strings hold printable characters, valid UTF-8 and the JSON escapes (no lone surrogates);
// - whitespace between tokens: nothing, one space, or a newline and at most kMaxIndent spaces and tabs at each
//   place; none before or after the value.
// Bounds on user input: the schema nests at most kMaxSchemaDepth levels, the grammar has at most kMaxSymbols
// symbols (minLength, maxItems... are unrolled into it), the matcher bounds the output's nesting (GrammarMatcher).
#include <string_view>

#include "generate/grammar.hpp"

namespace inferno::gen {

constexpr size_t kMaxSchemaDepth = 64;
constexpr size_t kMaxSymbols = 200000;
constexpr int kMaxIndent = 20;

// Throws Error "json schema at #/properties/x: ..." naming the keyword at fault.
Grammar compile_json_schema(std::string_view schema_json);

}  // namespace inferno::gen

// Constrained decoding: JSON schemas compiled into grammars, the matcher as an acceptor of whole texts, random walks
// through the token mask whose every complete output parses and validates (with an independent validator), the
// trie mask equal to checking every token alone on the real Llama 3 vocabulary, refusals of what is not supported,
// and the caps on user input. Prints the mask's per-step time on the 128K vocabulary.
#include <chrono>
#include <cstdio>

#include "generate/json_schema.hpp"
#include "json_schema_validator.hpp"
#include "test_support.hpp"
#include "text/tokenizer.hpp"

using namespace inferno;
using namespace inferno::gen;
using namespace inferno::testing;

namespace {

// A vocabulary of the 256 single bytes plus a few multi-byte tokens: every text can be spelled.
std::shared_ptr<const TokenTrie> byte_vocabulary() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, char(b));
  for (const char* t : {"{\"", "\":", "\", \"", "true", "null", "  ", "\n", "12", "\"}", "},", "[{", "]}", "\u00e9t\u00e9"})
    bytes.emplace_back(t);
  bytes.emplace_back();  // a special token (eos): no bytes
  return std::make_shared<const TokenTrie>(bytes);
}

std::shared_ptr<const GrammarConstraint> constraint(const std::string& schema,
                                                    std::shared_ptr<const TokenTrie> vocabulary = byte_vocabulary()) {
  return std::make_shared<const GrammarConstraint>(
      GrammarConstraint{std::make_shared<const Grammar>(compile_json_schema(schema)), std::move(vocabulary)});
}

bool accepts(const std::string& schema, const std::string& text) {
  GrammarMatcher m(constraint(schema));
  return m.advance_bytes(text) && m.complete();
}

std::string error_of(const std::string& schema) {
  try {
    compile_json_schema(schema);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Draws tokens uniformly among those the mask allows until the grammar is finished, or it is complete and a coin
// says stop, or `max_tokens`. Returns the text and whether it is complete.
std::pair<std::string, bool> random_output(const std::shared_ptr<const GrammarConstraint>& c, Rng& rng, int max_tokens,
                                           int32_t eos) {
  GrammarMatcher m(c);
  std::string text;
  std::vector<float> scores(c->vocabulary->vocab_size());
  for (int step = 0; step < max_tokens; ++step) {
    std::fill(scores.begin(), scores.end(), 0.0f);
    const int32_t eos_ids[] = {eos};
    m.apply_mask(scores, eos_ids);
    std::vector<int32_t> allowed;
    for (size_t t = 0; t < scores.size(); ++t)
      if (scores[t] == 0.0f) allowed.push_back(int32_t(t));
    REQUIRE(!allowed.empty());
    // Favor closing: pick eos when allowed half the time, else a random allowed token (weighted to end strings).
    if (m.complete() && rng.integer(0, 1)) return {text, true};
    int32_t token = allowed[size_t(rng.integer(0, int(allowed.size()) - 1))];
    for (int32_t t : allowed)  // a closing byte, often: keeps random texts short
      if (rng.integer(0, 3) == 0 && c->vocabulary->bytes_of(t).size() == 1 &&
          std::string_view("\"]}").find(c->vocabulary->bytes_of(t)[0]) != std::string_view::npos)
        token = t;
    if (token == eos) return {text, true};
    REQUIRE(m.advance(token));
    text += c->vocabulary->bytes_of(token);
    if (m.finished()) return {text, true};
  }
  return {text, m.complete()};
}

const char* const kSchemas[] = {
    R"({"type":"object"})",
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer"},
        "ok":{"type":"boolean"}},"required":["name","age"],"additionalProperties":false})",
    R"({"type":"array","items":{"type":"number"},"minItems":2,"maxItems":4})",
    R"({"enum":["red","green",3,null,{"a":[1,2]}]})",
    R"({"anyOf":[{"type":"string","minLength":2,"maxLength":3},{"type":"null"},{"const":true}]})",
    R"({"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","maxLength":4},"maxItems":3},
        "kind":{"const":"x"},"extra":{"type":["integer","null"]}},"required":["kind"]})",
    R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
        "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],
        "additionalProperties":false}},"$ref":"#/$defs/node"})",
    R"({"type":"object","additionalProperties":{"type":"string","maxLength":2},"maxProperties_is_absent":null})",
};

}  // namespace

TEST_CASE("grammar: the compiled schema accepts what validates and refuses what does not") {
  const std::string person = kSchemas[1];
  CHECK(accepts(person, R"({"name":"Ann","age":31})"));
  CHECK(accepts(person, R"({ "name" : "Ann", "age": -7, "ok": true })"));
  CHECK(accepts(person, "{\n  \"name\": \"\\u00e9\\n\",\n  \"age\": 0\n}"));
  CHECK_FALSE(accepts(person, R"({"age":31,"name":"Ann"})"));        // schema order only
  CHECK_FALSE(accepts(person, R"({"name":"Ann"})"));                 // required age
  CHECK_FALSE(accepts(person, R"({"name":"Ann","age":31,"x":1})"));  // additionalProperties false
  CHECK_FALSE(accepts(person, R"({"name":"Ann","age":3.5})"));       // integer
  CHECK_FALSE(accepts(person, R"({"name":"Annabelle","age":1})"));   // maxLength 8
  CHECK_FALSE(accepts(person, R"({"name":"Ann","age":01})"));        // no leading zero
  CHECK_FALSE(accepts(person, R"( {"name":"Ann","age":1})"));        // nothing before the value
  CHECK_FALSE(accepts(person, "{\"name\":\"\xc3\",\"age\":1}"));      // a cut UTF-8 character
  CHECK_FALSE(accepts(person, "{\"name\":\"\\ud800\",\"age\":1}"));  // a lone surrogate escape
  CHECK_FALSE(accepts(person, "{\"name\":\"a\tb\",\"age\":1}"));      // a raw control character
  // Whitespace: nothing, one space, or a newline and an indentation of up to kMaxIndent spaces and tabs.
  CHECK(accepts(person, "{\n\t\"name\":\"A\",\n" + std::string(inferno::gen::kMaxIndent, ' ') + "\"age\":1\n}"));
  CHECK_FALSE(accepts(person, "{\n" + std::string(inferno::gen::kMaxIndent + 1, ' ') + "\"name\":\"A\",\"age\":1}"));
  CHECK_FALSE(accepts(person, "{\n\n\"name\":\"A\",\"age\":1}"));  // blank lines
  CHECK_FALSE(accepts(person, "{\"name\":  \"A\",\"age\":1}"));     // two spaces
  CHECK_FALSE(accepts(person, "{\"name\": \n\"A\",\"age\":1}"));   // a space, then a newline
  CHECK(accepts(kSchemas[2], "[1.5,-2e10]"));
  CHECK_FALSE(accepts(kSchemas[2], "[1]"));
  CHECK_FALSE(accepts(kSchemas[2], "[1e-,2]"));
  CHECK(accepts(kSchemas[2], "[1E+05,0.25e3]"));
  CHECK_FALSE(accepts(kSchemas[2], "[1,2,3,4,5]"));
  CHECK(accepts(kSchemas[3], R"({"a":[1,2]})"));
  CHECK(accepts(kSchemas[3], "null"));
  CHECK_FALSE(accepts(kSchemas[3], R"("blue")"));
  CHECK(accepts(kSchemas[4], R"("ab")"));
  CHECK(accepts(kSchemas[4], "true"));
  CHECK_FALSE(accepts(kSchemas[4], R"("a")"));
  CHECK_FALSE(accepts(kSchemas[4], "false"));
  CHECK(accepts(kSchemas[6], R"({"v":1,"next":{"v":2,"next":null}})"));
  CHECK_FALSE(accepts(kSchemas[6], R"({"v":1,"next":{"v":2}})"));
  CHECK(accepts(R"({"type":"object"})", R"({"a":{"b":[1,"x",{"c":null}]},"d":false})"));
  CHECK_FALSE(accepts(R"({"type":"object"})", "[]"));
  CHECK(accepts(R"({"type":"object","properties":{"a":{"type":"string"}},"required":["a","b"]})", R"({"a":"x","b":[1]})"));
}

TEST_CASE("grammar: random walks through the mask end in texts that parse and validate") {
  INFERNO_SEED_INFO();
  auto vocabulary = byte_vocabulary();
  const int32_t eos = int32_t(vocabulary->vocab_size() - 1);
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    const std::string schema = kSchemas[i];
    if (schema.find("maxProperties_is_absent") != std::string::npos) {  // an unknown keyword: refused
      CHECK(error_of(schema).find("'maxProperties_is_absent'") != std::string::npos);
      continue;
    }
    auto c = constraint(schema, vocabulary);
    Rng rng(i);
    int complete = 0;
    for (int run = 0; run < 30; ++run) {
      auto [text, whole] = random_output(c, rng, 400, eos);
      if (!whole) continue;
      ++complete;
      INFO("schema " << schema << "\noutput " << text);
      CHECK(parse_and_validate(text, schema) == "");
    }
    INFO("schema " << schema);
    CHECK(complete >= 10);  // the walks favor closing; most end well within 400 tokens
  }
}

TEST_CASE("grammar: unsupported keywords, bad schemas and oversized grammars are refused by name") {
  CHECK(error_of(R"({"type":"string","pattern":"a+"})").find("keyword 'pattern' is not supported") != std::string::npos);
  CHECK(error_of(R"({"properties":{"x":{"minimum":3}}})").find("#/properties/x") != std::string::npos);
  CHECK(error_of(R"({"oneOf":[{"type":"null"}]})").find("'oneOf'") != std::string::npos);
  CHECK(error_of(R"({"type":"strin"})").find("unknown type 'strin'") != std::string::npos);
  CHECK(error_of(R"({"$ref":"#/$defs/nope"})").find("names no definition") != std::string::npos);
  CHECK(error_of(R"({"$ref":"http://x/y"})").find("not supported") != std::string::npos);
  CHECK(error_of(R"({"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}},"$ref":"#/$defs/a"})")
            .find("left recursion") != std::string::npos);
  CHECK(error_of(R"({"type":"string","maxLength":100000000})").find("more than") != std::string::npos);
  CHECK(error_of(R"({"type":"array","minItems":5,"maxItems":2})").find("maxItems") != std::string::npos);
  CHECK(error_of("{\"type\":").find("not valid JSON") != std::string::npos);
  CHECK(error_of("false").find("matches nothing") != std::string::npos);
  std::string deep = R"({"type":"string"})";
  for (int i = 0; i < 100; ++i) deep = R"({"type":"array","items":)" + deep + "}";
  CHECK(error_of(deep).find("nests more than") != std::string::npos);
}

TEST_CASE("grammar: nesting in the output is capped, not unbounded") {
  GrammarMatcher m(constraint(R"({"type":"object"})"));
  REQUIRE(m.advance_bytes("{\"a\":"));
  size_t depth = 0;
  while (depth < 10000 && m.advance_bytes("[")) ++depth;
  CHECK(depth > 50);
  CHECK(depth < 10000);  // refused somewhere past the stack-depth cap
}

TEST_CASE("grammar: the trie mask on the Llama 3 vocabulary equals checking every token alone; time per step") {
  INFERNO_SEED_INFO();
  const auto dir = tokenizer_dir("llama3");
  REQUIRE_MESSAGE(std::filesystem::exists(dir / "tokenizer.json"), "run tools/fetch-tokenizers.sh");
  const auto tokenizer = text::Tokenizer::from_dir(dir);
  const auto bytes = tokenizer.token_bytes();
  CHECK(bytes[size_t(*tokenizer.token_to_id("Ġworld"))] == " world");
  CHECK(bytes[size_t(*tokenizer.token_to_id("<|eot_id|>"))].empty());
  auto vocabulary = std::make_shared<const TokenTrie>(bytes);
  const std::string schema = kSchemas[5];
  auto c = constraint(schema, vocabulary);
  GrammarMatcher m(c);
  Rng rng(7);
  std::vector<uint8_t> mask;
  double total_ms = 0, worst_ms = 0;
  int steps = 0;
  // Prefixes that put the parse in different places: object start, inside a key, inside a string value, an array.
  const std::string text = R"({"tags": ["ab", "c"], "kind": "x", "extra": 12})";
  size_t at = 0;
  while (at <= text.size()) {
    const auto t0 = std::chrono::steady_clock::now();
    m.fill_mask(mask);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    total_ms += ms;
    worst_ms = std::max(worst_ms, ms);
    ++steps;
    // Every token alone, through a copy of the state: the same verdict as the trie walk.
    size_t allowed = 0, mismatches = 0;
    GrammarMatcher alone(c);  // its own caches: no state shared with the walk
    REQUIRE(alone.advance_bytes(text.substr(0, at)));
    for (size_t t = 0; t < bytes.size(); ++t) {
      const bool ok = !bytes[t].empty() && alone.can_advance(bytes[t]);
      mismatches += ok != bool(mask[t]);
      allowed += ok;
    }
    INFO("after " << text.substr(0, at));
    CHECK(mismatches == 0);
    if (at == text.size()) {
      CHECK(allowed == 0);  // the object is closed: nothing may follow
      break;
    }
    CHECK(allowed > 0);
    const size_t step = size_t(rng.integer(1, 4));
    const size_t next = std::min(text.size(), at + step);
    REQUIRE(m.advance_bytes(text.substr(at, next - at)));
    at = next;
  }
  CHECK(m.finished());
  MESSAGE("mask over " << bytes.size() << " tokens: " << total_ms / steps << " ms per step on average, " << worst_ms
                       << " ms at worst (" << steps << " steps, states cached: " << m.cached_states() << ")");
}

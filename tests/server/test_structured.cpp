// Structured output over real HTTP: response_format (json_object, json_schema) on the demo model, which knows no
// JSON, so every valid output is the constraint's doing; tools / tool_choice on a random tiny model with the Llama
// 3.1 tokenizer and chat template. Outputs are parsed with simdjson and validated against their schema with the
// test's own validator (tests/json_schema_validator.hpp), not with the grammar that made them.
#include <fstream>

#include "http_support.hpp"
#include "json_schema_validator.hpp"
#include "server/structured.hpp"

using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

Served& brown() {
  static Served served(brown_dir(), {.parallel = 4});
  return served;
}

// The tiny random Llama 3 checkpoint with the Llama 3.1 tokenizer and its chat template (which renders tools).
Served& llama31() {
  static Served served([] {
    const fs::path dir = fs::temp_directory_path() / ("inferno-test-structured-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    // Room for the tool-laden prompt (some 300 tokens): the random weights do not care about positions.
    std::ofstream(dir / "config.json", std::ios::trunc)
        << replace_once(read_text(data_path("hf-llama/llama3-vocab-tied-bf16/config.json")),
                        "\"max_position_embeddings\": 256", "\"max_position_embeddings\": 1024");
    for (const char* f : {"generation_config.json", "model.safetensors"})
      if (!fs::exists(dir / f)) fs::create_symlink(fs::absolute(data_path("hf-llama/llama3-vocab-tied-bf16") / f), dir / f);
    const fs::path tok = tokenizer_dir("llama3_1");
    REQUIRE_MESSAGE(fs::exists(tok / "tokenizer.json"), "run tools/fetch-tokenizers.sh: " << tok << " is missing");
    if (!fs::exists(dir / "tokenizer.json")) fs::create_symlink(fs::absolute(tok / "tokenizer.json"), dir / "tokenizer.json");
    // Meta's Llama 3.1 template (the one that renders tools; the fetched tokenizer_config.json has a short one).
    const std::string chat_template = read_text(data_path("templates/llama3_1_tools.jinja"));
    std::ofstream(dir / "tokenizer_config.json", std::ios::trunc)
        << R"({"bos_token":"<|begin_of_text|>","eos_token":"<|eot_id|>","chat_template":)"
        << inferno::json_quote(chat_template) << "}";
    return dir;
  }());
  return served;
}

// Tool-laden prompts and constrained decoding on lavapipe take longer than the usual bound.
Reply post_slow(int port, const std::string& path, const std::string& body) { return post(port, path, body, {}, 300s); }

// Room for a whole call from the random model: under the JSON grammar it may put a newline and up to 20 spaces or
// tabs at every place whitespace may go (as llama.cpp's JSON grammar allows) and draw integers of 16 digits, so a
// call of the add function took 50-60 tokens in runs here; 48 cut most of them.
const char* const kCallTokens = "256";

const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":6},"age":{"type":"integer"},
        "member":{"type":"boolean"}},"required":["name","age","member"],"additionalProperties":false})",
    R"({"type":"array","items":{"enum":["red","green","blue"]},"minItems":1,"maxItems":3})",
    R"({"anyOf":[{"type":"null"},{"type":"object","properties":{"v":{"type":"number"},"tags":{"type":"array",
        "items":{"type":"string","maxLength":3},"maxItems":2}},"required":["v","tags"],"additionalProperties":false}]})",
    R"({"$defs":{"pair":{"type":"object","properties":{"k":{"const":"x"},"n":{"type":["integer","null"]}},
        "required":["k","n"],"additionalProperties":false}},"type":"array","items":{"$ref":"#/$defs/pair"},"maxItems":2})",
};

}  // namespace

TEST_CASE("response_format json_schema: every output of the demo model parses and validates, whatever the seed") {
  INFERNO_SEED_INFO();
  Rng rng(1);
  int whole = 0, runs = 0;
  for (const char* schema : kSchemas) {
    for (int i = 0; i < 3; ++i) {
      const int seed = rng.integer(0, 1 << 30);
      const bool chat_shape = i == 2;  // completions have no chat template on this model: the prompt shape only
      const std::string body =
          std::string("{\"prompt\":\"The jury said\",\"max_tokens\":120,\"temperature\":1.0,\"seed\":") +
          std::to_string(seed) + ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"t\"," +
          "\"strict\":true,\"schema\":" + schema + "}}" + (chat_shape ? ",\"stop\":[\"never\"]" : "") + "}";
      const Reply r = post_slow(brown().port, "/v1/completions", body);
      REQUIRE_MESSAGE(r.status == 200, r.body);
      simdjson::dom::parser parser;
      const auto choice = parser.parse(r.body)["choices"].at(0);
      const std::string text = str(choice["text"]), finish = str(choice["finish_reason"]);
      INFO("schema " << schema << " seed " << seed << "\ntext " << text);
      ++runs;
      if (finish == "stop") {
        ++whole;
        CHECK(parse_and_validate(text, schema) == "");
      } else {
        CHECK(finish == "length");
      }
    }
  }
  CHECK(whole * 3 >= runs * 2);  // the schemas bound every string and list: most outputs end well within 120 tokens
}

TEST_CASE("response_format json_object gives an object; max_tokens too small gives finish_reason length") {
  INFERNO_SEED_INFO();
  Rng rng(2);
  int whole = 0;
  for (int i = 0; i < 4; ++i) {
    const std::string body = "{\"prompt\":\"The city\",\"max_tokens\":150,\"temperature\":1.0,\"seed\":" +
                             std::to_string(rng.integer(0, 1 << 30)) + ",\"response_format\":{\"type\":\"json_object\"}}";
    const Reply r = post_slow(brown().port, "/v1/completions", body);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    simdjson::dom::parser parser;
    const auto choice = parser.parse(r.body)["choices"].at(0);
    const std::string text = str(choice["text"]);
    INFO("text " << text);
    CHECK(text.rfind("{", 0) == 0);  // the constraint holds from the first byte, whole or cut
    if (str(choice["finish_reason"]) == "stop") {
      ++whole;
      CHECK(parse_and_validate(text, R"({"type":"object"})") == "");
    }
  }
  MESSAGE(whole << " of 4 free-form objects closed within 150 tokens");
  const Reply cut = post_slow(brown().port, "/v1/completions",
                         std::string("{\"prompt\":\"The\",\"max_tokens\":2,\"temperature\":0,\"response_format\":") +
                             "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"t\",\"schema\":" + kSchemas[0] + "}}}");
  REQUIRE_MESSAGE(cut.status == 200, cut.body);
  simdjson::dom::parser parser;
  const auto choice = parser.parse(cut.body)["choices"].at(0);
  CHECK(str(choice["finish_reason"]) == "length");
  CHECK(str(choice["text"]).rfind("{", 0) == 0);  // a prefix of a valid text, not a whole one
}

TEST_CASE("unsupported schemas and malformed response_format get 400 naming the keyword") {
  auto refused = [](const std::string& response_format) {
    const Reply r = post_slow(brown().port, "/v1/completions",
                         "{\"prompt\":\"x\",\"max_tokens\":2,\"response_format\":" + response_format + "}");
    CHECK_MESSAGE(r.status == 400, r.body);
    simdjson::dom::parser parser;
    const auto error = parser.parse(r.body)["error"];
    CHECK(str(error["param"]) == "response_format");
    return str(error["message"]);
  };
  CHECK(refused(R"({"type":"json_schema","json_schema":{"name":"t","schema":{"type":"string","pattern":"^a"}}})")
            .find("'pattern'") != std::string::npos);
  CHECK(refused(R"({"type":"json_schema","json_schema":{"name":"t","schema":{"type":"object","properties":{"a":{"minimum":1}}}}})")
            .find("#/properties/a") != std::string::npos);
  CHECK(refused(R"({"type":"json_schema","json_schema":{"name":"t"}})").find("schema") != std::string::npos);
  CHECK(refused(R"({"type":"yaml"})").find("yaml") != std::string::npos);
  CHECK(refused(R"("json")").find("object") != std::string::npos);
}

TEST_CASE("tool calls: Llama 3.1's JSON format parsed into tool_calls; plain text stays text") {
  using inferno::server::parse_tool_calls;
  const std::vector<std::string> names = {"get_weather", "add"};
  auto calls = parse_tool_calls(R"( {"name": "get_weather", "parameters": {"city": "Paris"}} )", names);
  REQUIRE(calls);
  REQUIRE(calls->size() == 1);
  CHECK((*calls)[0].name == "get_weather");
  CHECK((*calls)[0].arguments == R"({"city":"Paris"})");
  calls = parse_tool_calls(R"([{"name":"add","arguments":{"a":1,"b":2}},{"name":"get_weather","parameters":{}}])", names);
  REQUIRE(calls);
  CHECK(calls->size() == 2);
  CHECK_FALSE(parse_tool_calls("The weather is fine.", names));
  CHECK_FALSE(parse_tool_calls(R"({"name":"other","parameters":{}})", names));  // not one of the tools
  CHECK_FALSE(parse_tool_calls(R"({"name":"add","parameters":{"a":1})", names));  // cut
}

TEST_CASE("tools with tool_choice required / named: the answer is a tool call whose arguments validate") {
  INFERNO_SEED_INFO();
  const std::string weather_params =
      R"({"type":"object","properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false})";
  const std::string add_params =
      R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"],"additionalProperties":false})";
  const std::string tools = R"([{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":)" +
                            weather_params + R"(}},{"type":"function","function":{"name":"add","parameters":)" + add_params + "}}]";
  // The template renders the tools into the prompt.
  const std::string rendered = llama31().model.render_chat_json(R"([{"role":"user","content":"Weather in Paris?"}])", true, tools);
  CHECK(rendered.find("get_weather") != std::string::npos);
  CHECK(rendered.find("Weather now") != std::string::npos);

  Rng rng(3);
  int calls_seen = 0;
  for (const std::string& choice : {std::string("\"required\""), std::string(R"({"type":"function","function":{"name":"add"}})")}) {
    for (int i = 0; i < 2; ++i) {
      const std::string body = R"({"messages":[{"role":"user","content":"Weather in Paris?"}],"max_tokens":)" +
                               std::string(kCallTokens) + R"(,"temperature":1.0,"seed":)" +
                               std::to_string(rng.integer(0, 1 << 30)) + ",\"tools\":" + tools + ",\"tool_choice\":" + choice + "}";
      const Reply r = post_slow(llama31().port, "/v1/chat/completions", body);
      REQUIRE_MESSAGE(r.status == 200, r.body);
      simdjson::dom::parser parser;
      const auto c = parser.parse(r.body)["choices"].at(0);
      INFO("choice " << choice << "\nreply " << r.body);
      if (str(c["finish_reason"]) == "length") continue;  // cut inside the call: text, as OpenAI does
      REQUIRE(str(c["finish_reason"]) == "tool_calls");
      CHECK(c["message"]["content"].is_null());
      const auto call = c["message"]["tool_calls"].at(0);
      CHECK(str(call["type"]) == "function");
      CHECK(str(call["id"]).rfind("call_", 0) == 0);
      const std::string name = str(call["function"]["name"]);
      if (choice != "\"required\"") CHECK(name == "add");
      CHECK(parse_and_validate(str(call["function"]["arguments"]), name == "add" ? add_params : weather_params) == "");
      ++calls_seen;
    }
  }
  CHECK(calls_seen >= 2);

  // tool_choice none: no constraint, the text comes back as content.
  const Reply none = post_slow(llama31().port, "/v1/chat/completions",
                          R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0,"tools":)" + tools +
                              R"(,"tool_choice":"none"})");
  REQUIRE_MESSAGE(none.status == 200, none.body);
  simdjson::dom::parser parser;
  const auto c = parser.parse(none.body)["choices"].at(0);
  CHECK(c["message"]["content"].is_string());
  CHECK(str(c["finish_reason"]) != "tool_calls");

  // A conversation that carries an earlier call and its result renders and answers.
  const Reply turn = post_slow(llama31().port, "/v1/chat/completions",
                          R"({"messages":[{"role":"user","content":"1+2?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"add","arguments":"{\"a\":1,\"b\":2}"}}]},{"role":"tool","tool_call_id":"call_1","content":"3"}],"max_tokens":3,"temperature":0,"tools":)" +
                              tools + "}");
  CHECK_MESSAGE(turn.status == 200, turn.body);

  // Bad tool requests: 400 naming the field.
  auto param_of = [](const Reply& r) {
    simdjson::dom::parser p;
    return str(p.parse(r.body)["error"]["param"]);
  };
  const Reply unknown = post_slow(llama31().port, "/v1/chat/completions",
                             R"({"messages":[{"role":"user","content":"x"}],"tools":)" + tools +
                                 R"(,"tool_choice":{"type":"function","function":{"name":"nope"}}})");
  CHECK(unknown.status == 400);
  CHECK(param_of(unknown) == "tool_choice");
  const Reply bad_tool = post_slow(llama31().port, "/v1/chat/completions",
                              R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})");
  CHECK(bad_tool.status == 400);
  CHECK(param_of(bad_tool) == "tools");
}

namespace {

// One choice of a stream as a client assembles it from the chunks.
struct StreamedChoice {
  std::string content, finish, name, arguments, id;
  int tool_chunks = 0, finish_chunks = 0;
};
std::vector<StreamedChoice> assemble(const Events& events, size_t n) {
  std::vector<StreamedChoice> out(n);
  simdjson::dom::parser p;
  for (const std::string& data : events.data) {
    const auto chunk = p.parse(data)["choices"].at(0);
    const int64_t index = int64_t(chunk["index"]);
    REQUIRE(index >= 0);
    REQUIRE(size_t(index) < n);
    StreamedChoice& c = out[size_t(index)];
    const auto delta = chunk["delta"];
    std::string_view text;
    if (delta["content"].get(text) == simdjson::SUCCESS) c.content += text;
    simdjson::dom::array calls;
    if (delta["tool_calls"].get(calls) == simdjson::SUCCESS) {
      ++c.tool_chunks;
      REQUIRE(calls.size() == 1);
      const auto call = calls.at(0);
      CHECK(int64_t(call["index"]) == 0);
      CHECK(str(call["type"]) == "function");
      c.id = str(call["id"]);
      c.name += str(call["function"]["name"]);
      c.arguments += str(call["function"]["arguments"]);
    }
    std::string_view reason;
    if (chunk["finish_reason"].get(reason) == simdjson::SUCCESS) {
      ++c.finish_chunks;
      c.finish = reason;
    }
  }
  return out;
}

const std::string kAddParams =
    R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"],"additionalProperties":false})";

// The same request (its seed fixed) unstreamed and streamed: every choice the same, as text or as one call. Returns
// how many choices were calls.
int check_streamed_as_whole(const std::string& body, int n, const std::string& tool_choice) {
  const Reply whole = post_slow(llama31().port, "/v1/chat/completions", body + "}");
  const Reply streamed = post_slow(llama31().port, "/v1/chat/completions", body + ",\"stream\":true}");
  REQUIRE_MESSAGE(whole.status == 200, whole.body);
  REQUIRE_MESSAGE(streamed.status == 200, streamed.body);
  INFO("tool_choice " << tool_choice << "\nwhole " << whole.body << "\nstreamed " << streamed.body);
  simdjson::dom::parser parser;
  const simdjson::dom::array choices = parser.parse(whole.body)["choices"];
  REQUIRE(choices.size() == size_t(n));
  const Events events = parse_events(streamed.body);
  REQUIRE(events.ended_with_done);
  const std::vector<StreamedChoice> got = assemble(events, size_t(n));
  int calls = 0;
  for (const auto c : choices) {
    const size_t index = size_t(int64_t(c["index"]));
    REQUIRE(index < got.size());
    const StreamedChoice& s = got[index];
    CAPTURE(index);
    CHECK(s.finish_chunks == 1);  // one chunk ends each choice
    CHECK(s.finish == str(c["finish_reason"]));
    if (s.finish == "tool_calls") {
      ++calls;
      CHECK(tool_choice != "\"none\"");
      CHECK(s.tool_chunks == 1);
      CHECK(s.content.empty());  // the call's text is not also sent as content
      CHECK(c["message"]["content"].is_null());
      CHECK(s.id.rfind("call_", 0) == 0);
      const auto call = c["message"]["tool_calls"].at(0);
      CHECK(str(call["id"]).rfind("call_", 0) == 0);
      CHECK(s.name == str(call["function"]["name"]));
      CHECK(s.arguments == str(call["function"]["arguments"]));
      CHECK(parse_and_validate(s.arguments, kAddParams) == "");
    } else {
      CHECK(s.tool_chunks == 0);
      CHECK(s.content == str(c["message"]["content"]));  // held text released whole, in order
    }
  }
  return calls;
}

}  // namespace

TEST_CASE("tools streamed: a call comes as delta.tool_calls equal to the answer unstreamed; text streams as text") {
  INFERNO_SEED_INFO();
  const std::string tools = R"([{"type":"function","function":{"name":"add","parameters":)" + kAddParams + "}}]";
  Rng rng(5);
  int calls_seen = 0;
  for (const std::string choice : {"\"required\"", "\"none\"", "\"auto\""}) {
    for (int i = 0; i < 2; ++i) {
      const std::string seed = std::to_string(rng.integer(0, 1 << 30));
      const std::string body = R"({"messages":[{"role":"user","content":"1+2?"}],"max_tokens":)" +
                               std::string(choice == "\"required\"" ? kCallTokens : "48") + R"(,"temperature":1.0,"seed":)" + seed + ",\"tools\":" + tools + ",\"tool_choice\":" + choice;
      calls_seen += check_streamed_as_whole(body, 1, choice);
    }
  }
  CHECK(calls_seen >= 1);  // tool_choice required: a call unless cut by max_tokens
}

// OpenAI answers n > 1 with tools choice by choice: some may call a function, others answer in text.
TEST_CASE("tools with n > 1: each choice is a call or text of its own, streamed as unstreamed") {
  INFERNO_SEED_INFO();
  const std::string tools = R"([{"type":"function","function":{"name":"add","parameters":)" + kAddParams + "}}]";
  Rng rng(6);
  int calls_seen = 0;
  for (const std::string choice : {"\"required\"", "\"auto\""}) {
    const int n = rng.integer(2, 4);
    const std::string seed = std::to_string(rng.integer(0, 1 << 30));
    const std::string body = R"({"messages":[{"role":"user","content":"1+2?"}],"max_tokens":)" +
                             std::string(choice == "\"required\"" ? kCallTokens : "48") + R"(,"temperature":1.0,"n":)" +
                             std::to_string(n) + ",\"seed\":" + seed + ",\"tools\":" + tools + ",\"tool_choice\":" + choice;
    const int calls = check_streamed_as_whole(body, n, choice);
    if (choice == "\"required\"") CHECK(calls >= 1);  // every choice a call unless cut by max_tokens
    calls_seen += calls;
  }
  CHECK(calls_seen >= 1);
}

TEST_CASE("ToolCallStream: deltas held while the text may be a call, released in order once it cannot") {
  using inferno::server::Choice;
  using inferno::server::ToolCallStream;
  auto delta = [](std::string text, std::optional<std::string> finish = std::nullopt) {
    return Choice{.index = 0, .text = std::move(text), .finish_reason = std::move(finish)};
  };
  auto texts = [](const ToolCallStream::Out& out) {
    std::string all;
    for (const auto& d : out.deltas) all += d.text + "|";
    return all;
  };
  {  // a call: nothing goes out until the end, then the call and no text
    ToolCallStream s({"add"});
    CHECK(s.push(delta(" ")).deltas.empty());
    CHECK(s.push(delta("{\"name\": \"add\", ")).deltas.empty());
    CHECK(s.push(delta("\"parameters\": {\"a\": 1}}")).deltas.empty());
    const auto end = s.push(delta("", "stop"));
    CHECK(end.deltas.empty());
    REQUIRE(end.calls);
    REQUIRE(end.calls->size() == 1);
    CHECK(end.calls->front().name == "add");
    CHECK(end.calls->front().arguments == "{\"a\":1}");
  }
  {  // text: held while only whitespace, then everything in order, then as it comes
    ToolCallStream s({"add"});
    CHECK(s.push(delta("\n")).deltas.empty());
    CHECK(texts(s.push(delta("Hello"))) == "\n|Hello|");
    CHECK(!s.holding());
    CHECK(texts(s.push(delta(" {"))) == " {|");
    const auto end = s.push(delta("", "stop"));
    CHECK(!end.calls);
    REQUIRE(end.deltas.size() == 1);
    CHECK(*end.deltas.front().finish_reason == "stop");
  }
  {  // looks like a call but is not one of the tools, or is cut by the length: released at the end as text
    for (const char* finish : {"stop", "length"}) {
      ToolCallStream s({"add"});
      CHECK(s.push(delta("{\"name\": \"sub\", \"parameters\": {}}")).deltas.empty());
      const auto end = s.push(delta("", finish));
      CHECK(!end.calls);
      CHECK(texts(end) == "{\"name\": \"sub\", \"parameters\": {}}||");
      CHECK(*end.deltas.back().finish_reason == finish);
    }
    ToolCallStream cut({"add"});
    CHECK(cut.push(delta("{\"name\": \"add\", \"param")).deltas.empty());
    CHECK(!cut.push(delta("", "length")).calls);
  }
}

TEST_CASE("Session (one sequence, no batching engine) honours GenerateOptions::json_schema too") {
  INFERNO_SEED_INFO();
  Rng rng(4);
  inferno::Model& model = brown().model;
  inferno::Session session(model);
  int whole = 0;
  for (int i = 0; i < 3; ++i) {
    inferno::GenerateOptions o;
    o.max_new_tokens = 120;
    o.sampling.do_sample = true;
    o.sampling.seed = uint64_t(rng.integer(0, 1 << 30));
    o.json_schema = kSchemas[i % 2];
    const auto tokens = session.generate(model.tokenize("The jury"), o);
    const std::string text = model.detokenize(tokens);
    INFO("schema " << o.json_schema << "\ntext " << text);
    if (int(tokens.size()) == o.max_new_tokens) continue;  // cut by the length
    ++whole;
    CHECK(parse_and_validate(text, o.json_schema) == "");
  }
  CHECK(whole >= 2);
  CHECK_THROWS_WITH_AS(inferno::check_json_schema(R"({"not":{}})"), doctest::Contains("'not'"), inferno::Error);
}

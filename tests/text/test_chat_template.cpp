// Chat templates against transformers: every case of tests/data/hf-llama/chat_template_cases.json (the Llama 3 and
// 3.1 templates of the real tokenizer_config.json files, the Llama 2 and Zephyr templates that the cases carry; the
// rendered text tokenized as apply_chat_template(tokenize=True) does),
// the tokenizer_config.json readers, the Value API, and errors that name the construct and its line.
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>

#include "test_support.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;
using inferno::testing::read_text;
using inferno::text::chat_template_from_tokenizer_config;
using inferno::text::ChatTemplate;
using inferno::text::Dict;
using inferno::text::special_tokens_from_tokenizer_config;
using inferno::text::TemplateRaise;
using inferno::text::Value;

// tokenizer_config.json of a tokenizer fetched into third_party/tokenizers.
std::string tokenizer_config(const std::string& name) {
  fs::path path = inferno::testing::tokenizer_dir(name) / "tokenizer_config.json";
  if (!fs::exists(path)) FAIL("missing " << path.string() << ": run tools/fetch-tokenizers.sh to fetch the tokenizers");
  return read_text(path);
}

// The tokenizer fetched into third_party/tokenizers under `name`, loaded once.
const inferno::text::Tokenizer& tokenizer_of(const std::string& name) {
  static std::map<std::string, inferno::text::Tokenizer> loaded;
  auto it = loaded.find(name);
  if (it == loaded.end()) it = loaded.emplace(name, inferno::text::Tokenizer::from_dir(inferno::testing::tokenizer_dir(name))).first;
  return it->second;
}

// The message of the inferno::Error that `action` throws, or "(no error)".
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const inferno::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string parse_error(const std::string& source) {
  return error_of([&] { ChatTemplate chat_template(source); });
}

std::string render_error(const std::string& source) {
  return error_of([&] { ChatTemplate(source).render(Value::list(), false, Value()); });
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("every fixture case renders exactly as transformers' apply_chat_template") {
  Value fixture = Value::from_json(read_text(inferno::testing::data_path("hf-llama/chat_template_cases.json")));
  size_t texts = 0, errors = 0, tokenized = 0;
  for (const char* family : {"llama3", "llama3_1", "llama2", "zephyr"}) {
    const Value* cases = fixture.find(family);
    REQUIRE_MESSAGE(cases, "chat_template_cases.json has no '" << family << "' cases");
    REQUIRE(!cases->as_list().empty());
    for (const Value& c : cases->as_list()) {
      // Llama 3 and 3.1 cases use their tokenizer's own template; the others name a tokenizer and bring a template.
      const Value* tokenizer = c.find("tokenizer");
      std::string config = tokenizer_config(tokenizer ? tokenizer->as_string() : family);
      const Value* own_template = c.find("chat_template");
      std::string source =
          own_template ? own_template->as_string() : chat_template_from_tokenizer_config(config).value();
      // transformers passes the tokenizer's special tokens (bos_token, eos_token, ...) to every template.
      Value special_tokens = special_tokens_from_tokenizer_config(config);
      const bool add_generation_prompt = c.find("add_generation_prompt")->as_bool();
      const Value& messages = *c.find("messages");
      CAPTURE(family);
      CAPTURE(messages.to_json());
      CAPTURE(add_generation_prompt);
      ChatTemplate chat_template(source);
      if (const Value* error = c.find("error")) {
        std::string raised = "(nothing raised)";
        try {
          chat_template.render(messages, add_generation_prompt, special_tokens);
        } catch (const TemplateRaise& e) {
          raised = e.what();
        }
        CHECK(raised == error->as_string());
        ++errors;
      } else {
        const std::string text = chat_template.render(messages, add_generation_prompt, special_tokens);
        CHECK(text == c.find("text")->as_string());
        ++texts;
        // apply_chat_template(tokenize=True): the rendered text through the tokenizer with no special tokens added
        // (the template wrote them), so the special-token markup must come out as single added tokens.
        if (const Value* ids = c.find("ids")) {
          std::vector<int32_t> expected;
          for (const Value& id : ids->as_list()) expected.push_back(int32_t(id.as_int()));
          CHECK(tokenizer_of(tokenizer ? tokenizer->as_string() : family).encode(text, false) == expected);
          ++tokenized;
        }
      }
    }
  }
  CHECK(texts > 0);
  CHECK(errors > 0);
  CHECK(tokenized == texts);
}

TEST_CASE("chat_template_from_tokenizer_config") {
  SUBCASE("a string") {
    CHECK(chat_template_from_tokenizer_config(R"({"chat_template": "{{ x }}", "bos_token": "<s>"})").value() ==
          "{{ x }}");
  }
  SUBCASE("named templates: the one called default") {
    auto source = chat_template_from_tokenizer_config(
        R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
    CHECK(source.value() == "D");
  }
  SUBCASE("absent, null or an empty list: none") {
    CHECK(!chat_template_from_tokenizer_config(R"({"bos_token": "<s>"})"));
    CHECK(!chat_template_from_tokenizer_config(R"({"chat_template": null})"));
    CHECK(!chat_template_from_tokenizer_config(R"({"chat_template": []})"));
  }
  SUBCASE("malformed") {
    CHECK(contains(error_of([] {
                     chat_template_from_tokenizer_config(R"({"chat_template": [{"name": "rag", "template": "R"}]})");
                   }),
                   "none is called 'default'"));
    CHECK(contains(error_of([] { chat_template_from_tokenizer_config(R"({"chat_template": 3})"); }), "chat_template"));
    CHECK(contains(error_of([] { chat_template_from_tokenizer_config("{\"chat_template\": "); }),
                   "tokenizer_config.json"));
    CHECK(contains(error_of([] { chat_template_from_tokenizer_config("[1]"); }), "tokenizer_config.json"));
  }
  SUBCASE("the real Llama 3.1 tokenizer") {
    auto source = chat_template_from_tokenizer_config(tokenizer_config("llama3_1"));
    REQUIRE(source);
    CHECK(contains(*source, "<|start_header_id|>"));
  }
}

TEST_CASE("special_tokens_from_tokenizer_config reads strings and AddedToken objects") {
  Value tokens = special_tokens_from_tokenizer_config(
      R"({"bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false},
          "pad_token": null, "unk_token": "<unk>", "chat_template": "x"})");
  CHECK(tokens.to_json() == R"({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})");
  CHECK(contains(error_of([] { special_tokens_from_tokenizer_config(R"({"bos_token": 1})"); }), "bos_token"));
  Value llama3 = special_tokens_from_tokenizer_config(tokenizer_config("llama3"));
  CHECK(llama3.find("bos_token")->as_string() == "<|begin_of_text|>");
}

TEST_CASE("Value: JSON in and out, insertion order, copy-on-write") {
  Value v = Value::from_json(R"({"z": 1, "a": [1.5, true, null, "é\n"], "m": {"k": -2, "big": 1e300}})");
  CHECK(v.to_json() == R"({"z": 1, "a": [1.5, true, null, "é\n"], "m": {"k": -2, "big": 1e+300}})");
  CHECK(v.to_json(2) ==
        "{\n  \"z\": 1,\n  \"a\": [\n    1.5,\n    true,\n    null,\n    \"é\\n\"\n  ],\n"
        "  \"m\": {\n    \"k\": -2,\n    \"big\": 1e+300\n  }\n}");
  CHECK(v.find("z")->as_int() == 1);
  CHECK(v.find("a")->as_list()[0].as_double() == 1.5);
  CHECK(v.find("nope") == nullptr);
  Value copy = v;
  copy.set("z", "changed");
  copy.set("new", Value::list({1, 2}));
  CHECK(v.find("z")->as_int() == 1);  // the original is untouched
  CHECK(copy.to_json() ==
        R"({"z": "changed", "a": [1.5, true, null, "é\n"], "m": {"k": -2, "big": 1e+300}, "new": [1, 2]})");
  Value list = Value::list();
  list.push_back("x");
  Value list_copy = list;
  list_copy.push_back(3);
  CHECK(list.to_json() == R"(["x"])");
  CHECK(list_copy.to_json() == R"(["x", 3])");
  CHECK(Value::dict(Dict{{"b", 1}, {"a", 2}, {"b", 3}}).to_json() == R"({"b": 3, "a": 2})");
  CHECK(contains(error_of([] { Value::from_json("{\"a\": }"); }), "JSON"));
  CHECK(contains(error_of([] { Value(1).as_string(); }), "expected string"));
}

TEST_CASE("context: extra variables, tools and documents as transformers passes them") {
  ChatTemplate probe(
      "{{ tools is defined }}{{ tools is none }}{{ documents is none }}|{{ date_string }}|{{ messages | length }}");
  CHECK(probe.render(Value::list({Value::dict()}), false, Value()) == "TrueTrueTrue||1");
  Value extra = Value::dict(Dict{{"tools", Value::list({1})}, {"date_string", "26 Jul 2024"}});
  CHECK(probe.render(Value::list(), false, extra) == "TrueFalseTrue|26 Jul 2024|0");
  CHECK(contains(error_of([&] { probe.render(Value::list(), false, Value("not a dict")); }), "extra context"));
  // A template renders any number of times, each with fresh variables.
  ChatTemplate counter("{% set n = n | default(0) + 1 %}{{ n }}");
  CHECK(counter.render(Value::list(), false, Value()) == "1");
  CHECK(counter.render(Value::list(), false, Value()) == "1");
}

TEST_CASE("raise_exception throws TemplateRaise carrying exactly the message") {
  ChatTemplate chat_template(
      "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
      "{{ raise_exception('Unknown role: ' + m.role + ' (only user/assistant)') }}{% endif %}{% endfor %}ok");
  CHECK(chat_template.render(Value::from_json(R"([{"role": "user"}])"), false, Value()) == "ok");
  std::string raised;
  try {
    chat_template.render(Value::from_json(R"([{"role": "user"}, {"role": "tool"}])"), false, Value());
  } catch (const TemplateRaise& e) {
    raised = e.what();
  }
  CHECK(raised == "Unknown role: tool (only user/assistant)");
  // It is an inferno::Error too, so a caller that only knows Error still reports it.
  CHECK(render_error("{% macro m() %}{{ raise_exception('deep') }}{% endmacro %}{{ m() }}") == "deep");
}

TEST_CASE("syntax errors and unsupported constructs name the construct and the line") {
  std::string e = parse_error("Hello\n{{ name | frobnicate }}");
  CHECK(contains(e, "unknown filter 'frobnicate'"));
  CHECK(contains(e, "line 2"));

  e = parse_error("{% for m in messages %}\n{{ m }}\n");
  CHECK(contains(e, "unclosed 'for' block opened at line 1"));
  CHECK(contains(e, "'endfor'"));

  e = parse_error("{% if x %}\n\n{% endfor %}");
  CHECK(contains(e, "unexpected 'endfor'"));
  CHECK(contains(e, "line 3"));

  e = parse_error("a\n{% frobnicate %}");
  CHECK(contains(e, "unknown tag 'frobnicate'"));
  CHECK(contains(e, "line 2"));

  e = parse_error("{% include 'other.jinja' %}");
  CHECK(contains(e, "unsupported tag 'include'"));

  e = parse_error("\n\n{{ x is frobnicated }}");
  CHECK(contains(e, "unknown test 'frobnicated'"));
  CHECK(contains(e, "line 3"));

  // In a loop or macro body the error comes at once, even when that code would never run.
  CHECK(contains(parse_error("{% for m in [] %}{{ m | frobnicate }}{% endfor %}"), "unknown filter 'frobnicate'"));
  CHECK(contains(parse_error("{% macro f() %}{{ 1 is frobnicated }}{% endmacro %}"), "unknown test 'frobnicated'"));

  CHECK(contains(parse_error("{% for x in xs recursive %}{% endfor %}"), "recursive"));
  CHECK(contains(parse_error("{{ 1 + }}"), "expected an expression"));
  CHECK(contains(parse_error("{{ 'open string }}"), "unterminated string"));
  CHECK(contains(parse_error("{{ x "), "unclosed variable tag"));
  CHECK(contains(parse_error("{# no end"), "comment"));
  CHECK(contains(parse_error("{% raw %} no end"), "endraw"));
  CHECK(contains(parse_error("{{ (1 ]}}"), "unexpected ']'"));
  CHECK(contains(parse_error("{% break %}"), "'break' outside a for loop"));
  CHECK(contains(parse_error("{% set true = 1 %}"), "cannot assign to 'true'"));
  CHECK(contains(parse_error("{{ a ! b }}"), "unexpected character '!'"));
}

TEST_CASE("an unknown filter or test inside an if fails only when that branch runs, as in jinja2 3") {
  // Templates guard optional features this way; jinja2 compiles such branches and fails only if they run.
  ChatTemplate guarded(
      "{% if fancy %}\n{{ text | frobnicate }}{% elif strict and x is frobnicated %}b{% endif %}"
      "{{ text | frobnicate if fancy else text }}");
  CHECK(guarded.render(Value::list(), false, Value::from_json(R"({"text": "plain"})")) == "plain");
  std::string e = error_of([&] { guarded.render(Value::list(), false, Value::from_json(R"({"fancy": true})")); });
  CHECK(contains(e, "unknown filter 'frobnicate'"));
  CHECK(contains(e, "line 2"));
  e = error_of([&] { guarded.render(Value::list(), false, Value::from_json(R"({"strict": true, "x": 1})")); });
  CHECK(contains(e, "unknown test 'frobnicated'"));
}

TEST_CASE("errors while rendering name the line") {
  std::string e = render_error("one\ntwo\n{{ nothing.attribute }}");
  CHECK(contains(e, "line 3"));
  CHECK(contains(e, "'nothing' is undefined"));
  CHECK(contains(render_error("{{ 'text' + 1 }}"), "can only concatenate str"));
  CHECK(contains(render_error("{{ 1 // 0 }}"), "by zero"));
  CHECK(contains(render_error("{% for x in 5 %}{% endfor %}"), "'int' object is not iterable"));
  CHECK(contains(render_error("{{ undefined_thing | tojson }}"), "not JSON serializable"));
  CHECK(contains(render_error("{% set ns = 1 %}{% set ns.x = 2 %}"), "namespace"));
  CHECK(contains(render_error("{{ [1, 2].append(3) }}"), "cannot modify"));
  CHECK(contains(render_error("{% for a, b in [[1, 2, 3]] %}{% endfor %}"), "too many values to unpack"));
  // Limits that keep a hostile template from hanging or exhausting memory.
  CHECK(contains(render_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"), "nested too deeply"));
  CHECK(contains(render_error("{{ range(100000000) | length }}"), "range()"));
  CHECK(contains(render_error("{{ 'x' * 10000000000 }}"), "string longer than 64 MiB"));
  CHECK(contains(render_error("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}"),
                 "loop iterations"));
  CHECK(contains(render_error("{{ 9223372036854775807 + 1 }}"), "overflow"));
}

// The template language, construct by construct: statements, expressions, filters, tests, methods, globals,
// whitespace control and Undefined, each with the text jinja2 (as transformers configures it: trim_blocks,
// lstrip_blocks, loop controls) gives by its documented semantics; then randomized checks of loop variables,
// Python arithmetic, slicing, whitespace control, tojson and string filters.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "text/chat_template.hpp"

namespace {

using inferno::text::ChatTemplate;
using inferno::text::Dict;
using inferno::text::Value;

// Renders with the variables of `context_json` (a JSON object; "messages" and "add_generation_prompt" go to
// their own arguments).
std::string render(const std::string& source, const std::string& context_json = "{}") {
  Value context = Value::from_json(context_json);
  Value messages = context.find("messages") ? *context.find("messages") : Value::list();
  const Value* prompt = context.find("add_generation_prompt");
  return ChatTemplate(source).render(messages, prompt && prompt->as_bool(), context);
}

struct LanguageCase {
  const char* source;
  const char* context_json;
  const char* expected;
};

const char* const kMessages =
    R"J({"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "  Hi  "},
                      {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]})J";

// clang-format off
const LanguageCase kCases[] = {
    // ---- literals and printing (Python's str() of each value) ----
    {R"T({{ 1 }}|{{ -2 }}|{{ 1.5 }}|{{ 2.0 }}|{{ 1e3 }}|{{ 1e-5 }}|{{ 1e16 }}|{{ 0.1 + 0.2 }})T", R"J({})J",
     R"E(1|-2|1.5|2.0|1000.0|1e-05|1e+16|0.30000000000000004)E"},
    {R"T({{ true }}|{{ false }}|{{ True }}|{{ none }}|{{ None }}|{{ "it's" }}|{{ 'say "hi"' }})T", R"J({})J",
     R"E(True|False|True|None|None|it's|say "hi")E"},
    {R"T({{ [1, "a", none, true, 2.5] }}|{{ {"k": "v", "n": [1]} }}|{{ (1, 2) }}|{{ (1,) }}|{{ ["it's"] }})T", R"J({})J",
     R"E([1, 'a', None, True, 2.5]|{'k': 'v', 'n': [1]}|(1, 2)|(1,)|["it's"])E"},
    {R"T({{ "a\tb\\n\x41\u00e9" }}|{{ "one" "two" }}|{{ 'new
line' }})T", R"J({})J", "a\tb\\nA\u00e9|onetwo|new\nline"},
    {R"T({{ 0x1F }}|{{ 1_000 }}|{{ 0b101 }}|{{ 0o17 }})T", R"J({})J", R"E(31|1000|5|15)E"},
    // ---- arithmetic, as Python: / is true division, // floors, % takes the divisor's sign ----
    {R"T({{ 7 + 2 }}|{{ 7 - 9 }}|{{ 7 * 3 }}|{{ 7 / 2 }}|{{ 6 / 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }})T",
     R"J({})J", R"E(9|-2|21|3.5|2.0|3|-4|1|2|-2|1024|0.5)E"},
    {R"T({{ 7.5 // 2 }}|{{ -7.5 % 2 }}|{{ 1 + 1.5 }}|{{ true + 1 }}|{{ "ab" * 3 }}|{{ 2 * [0] }}|{{ [1] + [2, 3] }}|{{ "a" + "b" }})T",
     R"J({})J", R"E(3.0|0.5|2.5|2|ababab|[0, 0]|[1, 2, 3]|ab)E"},
    {R"T({{ "n=" ~ 1 ~ none ~ true ~ 1.50 }}|{{ -(3) }}|{{ +4 }}|{{ 2 + 3 * 4 }}|{{ (2 + 3) * 4 }}|{{ 2 * 3 ** 2 }})T",
     R"J({})J", R"E(n=1NoneTrue1.5|-3|4|14|20|18)E"},
    // ---- comparisons and logic ----
    {R"T({{ 1 == 1.0 }}{{ 1 != 2 }}{{ 1 < 2 < 3 }}{{ 1 < 3 < 2 }}{{ "a" < "b" }}{{ [1, 2] < [1, 3] }}{{ 2 >= 2 }}{{ 3 <= 2 }})T",
     R"J({})J", R"E(TrueTrueTrueFalseTrueTrueTrueFalse)E"},
    {R"T({{ 1 in [1, 2] }}{{ 3 not in [1, 2] }}{{ "at" in "cat" }}{{ "k" in {"k": 1} }}{{ "v" in {"k": "v"} }})T",
     R"J({})J", R"E(TrueTrueTrueTrueFalse)E"},
    {R"T({{ true and "x" }}|{{ 0 and "x" }}|{{ false or "y" }}|{{ "" or none }}|{{ not "" }}|{{ not not 1 }}|{{ none or 0 or "z" }})T",
     R"J({})J", R"E(x|0|y|None|True|True|z)E"},
    {R"T({{ "yes" if 1 else "no" }}|{{ "yes" if 0 else "no" }}|[{{ "x" if false }}]|{{ 1 if false else 2 if true else 3 }})T",
     R"J({})J", R"E(yes|no|[]|2)E"},
    // ---- variables, attributes, items, slices ----
    {R"T({{ messages[1]['content'] }}|{{ messages[1].content }}|{{ messages[-1].role }}|{{ messages | length }}|{{ messages[1:] | length }})T",
     kMessages, R"E(  Hi  |  Hi  |user|4|3)E"},
    {R"T({{ messages[::-1][0].content }}|{{ messages[1:3] | map(attribute="role") | join(",") }}|{{ messages[:-3][0].role }})T",
     kMessages, R"E(Bye|user,assistant|system)E"},
    {R"T({{ "abcdef"[1:4] }}|{{ "abcdef"[::2] }}|{{ "abcdef"[::-1] }}|{{ "abc"[-1] }}|{{ [1, 2, 3, 4][1:-1] }}|{{ [1, 2, 3][5:] }}|{{ "héllo"[1] }})T",
     R"J({})J", R"E(bcd|ace|fedcba|c|[2, 3]|[]|é)E"},
    {R"T([{{ messages[10] }}][{{ messages[0].missing }}][{{ messages[0]["missing"] }}][{{ none.attr }}])T", kMessages,
     R"E([][][][])E"},
    {R"T({% set d = {"a": 1, "items": 2} %}{{ d.a }}|{{ d["items"] }}|{{ d.items() | list }}|{{ d.get("a") }}|{{ d.get("z", "no") }}|{{ d.get("z") }})T",
     R"J({})J", R"E(1|2|[('a', 1), ('items', 2)]|1|no|None)E"},
    {R"T({{ {"b": 1, "a": 2}.keys() | list }}|{{ {"b": 1, "a": 2}.values() | list }}|{% for k, v in {"x": 1, "y": 2}.items() %}{{ k }}={{ v }};{% endfor %})T",
     R"J({})J", R"E(['b', 'a']|[1, 2]|x=1;y=2;)E"},
    // ---- string methods ----
    {R"T({{ "  a b  ".strip() }}|{{ "xxhixx".strip("x") }}|{{ "  a ".lstrip() }}|{{ " a  ".rstrip() }}|{{ "a,b,,c".split(",") }}|{{ " a  b ".split() }}|{{ "a b c".split(" ", 1) }})T",
     R"J({})J", R"E(a b|hi|a | a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c'])E"},
    {R"T({{ "Hello".startswith("He") }}{{ "Hello".endswith(("x", "lo")) }}|{{ "hello World".upper() }}|{{ "HeLLo".lower() }}|{{ "hello wORLD x2y".title() }}|{{ "hELLO".capitalize() }}|{{ "a-b-c".replace("-", "+") }})T",
     R"J({})J", R"E(TrueTrue|HELLO WORLD|hello|Hello World X2Y|Hello|a+b+c)E"},
    {R"T({{ "abcb".find("b") }}|{{ "abcb".rfind("b") }}|{{ "abc".find("z") }}|{{ "banana".count("a") }}|{{ "-".join(["a", "b"]) }}|{{ "a\nb\r\nc".splitlines() }}|{{ "42".isdigit() }})T",
     R"J({})J", R"E(1|3|-1|3|a-b|['a', 'b', 'c']|True)E"},
    // ---- filters ----
    {R"T({{ "  x  " | trim }}|{{ "--x--" | trim("-") }}|{{ "héllo" | length }}|{{ [1, 2] | count }}|{{ {"a": 1} | length }}|{{ "hello world" | title }}|{{ "hELLO wORLD" | capitalize }})T",
     R"J({})J", R"E(x|x|5|2|1|Hello World|Hello world)E"},
    {R"T({{ "Ab" | lower }}{{ "ab" | upper }}|{{ [3, 1, 2] | first }}{{ [3, 1, 2] | last }}|{{ [3, 1, 2] | join }}|{{ [3, 1, 2] | join(", ") }}|{{ "abc" | first }})T",
     R"J({})J", R"E(abAB|32|312|3, 1, 2|a)E"},
    {R"T({{ missing | default("d") }}|{{ "" | default("d") }}|{{ "" | default("d", true) }}|{{ none | default("d") }}|{{ missing | d("short") }})T",
     R"J({})J", R"E(d||d|None|short)E"},
    {R"T({{ "a-b-c" | replace("-", "") }}|{{ "aaa" | replace("a", "b", 2) }}|{{ 42 | string }}|{{ "42" | int + 1 }}|{{ "4.7" | int }}|{{ "x" | int }}|{{ "x" | int(7) }}|{{ "3.5" | float }}|{{ 2 | float }})T",
     R"J({})J", R"E(abc|bba|42|43|4|0|7|3.5|2.0)E"},
    {R"T({{ "ab" | list }}|{{ {"a": 1, "b": 2} | items | list }}|{{ {"b": 1, "a": 2} | dictsort }}|{{ [3, 1, 2] | sort }}|{{ ["b", "A", "c"] | sort(reverse=true) }}|{{ [1, 2] | reverse | list }})T",
     R"J({})J", R"E(['a', 'b']|[('a', 1), ('b', 2)]|[('a', 2), ('b', 1)]|[1, 2, 3]|['c', 'b', 'A']|[2, 1])E"},
    {R"T({{ messages | selectattr("role", "equalto", "user") | map(attribute="content") | list }}|{{ messages | rejectattr("role", "equalto", "user") | map(attribute="role") | join(",") }})T",
     kMessages, R"E(['  Hi  ', 'Bye']|system,assistant)E"},
    {R"T({{ messages | selectattr("role", "in", ["system", "assistant"]) | list | length }}|{{ messages | map(attribute="role") | unique | list }}|{{ messages | map(attribute="name", default="-") | join }})T",
     kMessages, R"E(2|['system', 'user', 'assistant']|----)E"},
    {R"T({{ [1, 2, 3, 4] | select("odd") | list }}|{{ [1, 2, 3, 4] | reject("even") | list }}|{{ ["a", "b"] | map("upper") | list }}|{{ [0, 1, "", "x"] | select | list }})T",
     R"J({})J", R"E([1, 3]|[1, 3]|['A', 'B']|[1, 'x'])E"},
    {R"T({{ "a\nb\n\nc" | indent(2) }}|{{ "a\nb" | indent(2, first=true) }}|{{ "a\n\nb" | indent("> ", blank=true) }})T",
     R"J({})J", "a\n  b\n\n  c|  a\n  b|a\n> \n> b"},
    {R"T({{ "<b>&'\"</b>" | escape }}|{{ "<i>" | e }}|{{ "<b>" | safe }}|{{ [1, 2, 3] | sum }}|{{ [1, 5, 3] | max }}|{{ [4, 2] | min }}|{{ -3 | abs }}|{{ 2.5 | round }}|{{ 1.26 | round(1) }}|{{ 2.1 | round(0, "ceil") }})T",
     R"J({})J", R"E(&lt;b&gt;&amp;&#39;&#34;&lt;/b&gt;|&lt;i&gt;|<b>|6|5|2|3|2.0|1.3|3.0)E"},
    {R"T({{ "%s is %d" | format("x", 3) }}|{{ "%05.1f|%-3s|" | format(3.14159, "a") }}|{{ "%s" % "y" }}|{{ "a b  c" | wordcount }}|{{ "ab" | center(6) }}|{{ [1, 2, 3] | batch(2) | list }})T",
     R"J({})J", R"E(x is 3|003.1|a  ||y|3|  ab  |[[1, 2], [3]])E"},
    // tojson is transformers' json.dumps(ensure_ascii=False): no HTML escaping, ", " and ": " separators
    {R"T({{ {"b": 1, "a": [1, 2.5, "é<&>\n"], "c": none, "d": true} | tojson }})T", R"J({})J",
     R"E({"b": 1, "a": [1, 2.5, "é<&>\n"], "c": null, "d": true})E"},
    {R"T({{ {"a": [1, {"b": []}], "c": {}} | tojson(indent=2) }}|{{ "é" | tojson(ensure_ascii=true) }}|{{ {"b": 1, "a": 2} | tojson(sort_keys=true) }}|{{ [1, {"a": 2}] | tojson(separators=(",", ":")) }})T",
     R"J({})J", "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": {}\n}|\"\\u00e9\"|{\"a\": 2, \"b\": 1}|[1,{\"a\":2}]"},
    // ---- tests ----
    {R"T({{ x is defined }}{{ messages is defined }}{{ none is none }}{{ 1 is not none }}{{ "a" is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 3 is number }}{{ 3 is integer }}{{ 3.0 is float }})T",
     kMessages, R"E(FalseTrueTrueTrueTrueTrueTrueTrueTrueTrue)E"},
    {R"T({{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ 1 is in [1] }}{{ true is true }}{{ false is boolean }}{{ "ABC" is upper }}{{ "abc" is lower }}{{ none is sameas none }})T",
     R"J({})J", R"E(TrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrue)E"},
    {R"T({% if not missing is defined %}a{% endif %}{% if missing is not defined %}b{% endif %}{% if messages[0].content is string and messages | length > 3 %}c{% endif %})T",
     kMessages, R"E(abc)E"},
    // ---- if / for / set / namespace ----
    {R"T({% if false %}a{% elif 0 %}b{% elif "x" %}c{% else %}d{% endif %}{% if [] %}e{% else %}f{% endif %})T", R"J({})J",
     R"E(cf)E"},
    {R"T({% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %})T",
     kMessages,
     R"E(1043TrueFalse4;2132FalseFalse4;3221FalseFalse4;4310FalseTrue4;)E"},
    {R"T({% for m in messages if m.role != "system" %}{{ loop.index }}:{{ m.role }}{{ "," if not loop.last }}{% endfor %})T",
     kMessages, R"E(1:user,2:assistant,3:user)E"},
    {R"T({% for m in messages %}{{ loop.previtem.role if not loop.first }}>{{ loop.nextitem.role if not loop.last }}|{{ loop.cycle("odd", "even") }};{% endfor %})T",
     kMessages, R"E(>user|odd;system>assistant|even;user>user|odd;assistant>|even;)E"},
    {R"T({% for x in [] %}x{% else %}empty{% endfor %}|{% for x in missing %}x{% else %}undefined is empty{% endfor %})T",
     R"J({})J", R"E(empty|undefined is empty)E"},
    {R"T({% for a, b in [[1, 2], [3, 4]] %}{{ a + b }};{% endfor %}{% for c in "hé" %}[{{ c }}]{% endfor %}{% for k in {"x": 1, "y": 2} %}{{ k }}{% endfor %})T",
     R"J({})J", R"E(3;7;[h][é]xy)E"},
    {R"T({% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}|{{ range(3) | list }}|{{ range(1, 10, 4) | list }}|{{ range(3, 0, -1) | list }})T",
     R"J({})J", R"E(0134|[0, 1, 2]|[1, 5, 9]|[3, 2, 1])E"},
    {R"T({% for row in [[1, 2], [3]] %}{% for x in row %}{{ loop.index }}{{ x }} {% endfor %}/{{ loop.index }} {% endfor %})T",
     R"J({})J", R"E(11 22 /1 13 /2 )E"},
    // a plain set inside a loop is local to the iteration; a namespace carries state out of it
    {R"T({% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }})T", R"J({})J",
     R"E(123|1)E"},
    {R"T({% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == "user" %}{% set ns.found = true %}{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.n }})T",
     kMessages, R"E(True 2)E"},
    {R"T({% if true %}{% set leaked = "if opens no scope" %}{% endif %}{{ leaked }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = (5, 6) %}{{ t[1] }}|{% set d = dict(k=1, j="v") %}{{ d }})T",
     R"J({})J", R"E(if opens no scope|12|6|{'k': 1, 'j': 'v'})E"},
    {R"T({% set block %}  text {{ 1 + 1 }}  {% endset %}[{{ block }}]|{% set shout | upper %}quiet{% endset %}{{ shout }}|{% filter upper %}f{{ "g" }}{% endfilter %})T",
     R"J({})J", R"E([  text 2  ]|QUIET|FG)E"},
    {R"T({% set messages = messages[1:] %}{{ messages | length }}{% if messages[0]['role'] == 'user' %}!{% endif %})T", kMessages,
     R"E(3!)E"},
    // ---- macros ----
    {R"T({% macro greet(name, greeting="Hi") %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet("Bob") }} {{ greet("Al", greeting="Yo") }} {{ greet(name="Zed") }})T",
     R"J({})J", R"E(Hi, Bob! Yo, Al! Hi, Zed!)E"},
    {R"T({% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}|{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }})T",
     R"J({})J", R"E(1(2, 3){'k': 4}|321)E"},
    {R"T({% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap("b") %}bold{% endcall %}|{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(v) each([1, 2]) %}[{{ v }}]{% endcall %})T",
     R"J({})J", R"E(<b>bold</b>|[1][2])E"},
    {R"T({% set x = "defined later" %}{% macro show() %}{{ x }}{% endmacro %}{% set x = "seen at call time" %}{{ show() }})T",
     R"J({})J", R"E(seen at call time)E"},
    // ---- raw, comments, whitespace control (trim_blocks and lstrip_blocks are on) ----
    {R"T({% raw %}{{ not rendered }} {% if %}{% endraw %}|a {# a comment #}b)T", R"J({})J", R"E({{ not rendered }} {% if %}|a b)E"},
    {"  {% if true %}\n    yes\n  {% endif %}\nend", R"J({})J", "    yes\nend"},
    {"{%- if true -%}\n  x  \n{%- endif -%}\n y", R"J({})J", "xy"},
    {"{{- 'a' -}}\n\n{{ 'b' }}  \n  {{- 'c' }}", R"J({})J", "abc"},
    {"a\n    {%+ if true %}kept{% endif %}|{% if true +%}\nnewline kept{% endif %}", R"J({})J", "a\n    kept|\nnewline kept"},
    {"{% for i in range(2) %}\n  {{ i }}\n{% endfor %}\ntrailing newline dropped\n", R"J({})J",
     "  0\n  1\ntrailing newline dropped"},
    {"{{ 'x' }}\n  {# comment on its own line #}\n  {% if true %}y{% endif %}", R"J({})J", "x\ny"},
    {"windows\r\nline\rendings\r\n", R"J({})J", "windows\nline\nendings"},
    // ---- globals and context ----
    {R"T({{ bos_token }}{% for m in messages %}{{ m.role[0] }}{% endfor %}{{ eos_token }}|{{ tools is none }}{{ documents is none }}{{ add_generation_prompt }})T",
     R"J({"bos_token": "<s>", "eos_token": "</s>", "messages": [{"role": "user"}, {"role": "assistant"}], "add_generation_prompt": true})J",
     R"E(<s>ua</s>|TrueTrueTrue)E"},
    {R"T({{ tools | length }}{{ tools[0].function.name }}|{{ custom | tojson }})T",
     R"J({"tools": [{"function": {"name": "f"}}], "custom": {"x": [1]}})J", R"E(1f|{"x": [1]})E"},
    {R"T({{ raise_exception is defined }}{{ strftime_now is defined }}{{ range is defined }}{{ namespace is defined }}{{ strftime_now("%%") }})T",
     R"J({})J", R"E(TrueTrueTrueTrue%)E"},
    // ---- Undefined: prints empty, is false, iterates as empty, has length 0 ----
    {R"T([{{ missing }}][{{ missing ~ "x" }}][{{ missing | length }}][{{ missing | trim }}][{{ missing | join }}]{{ missing == missing }}{% if not missing %}!{% endif %})T",
     R"J({})J", R"E([][x][0][][]True!)E"},
};
// clang-format on

}  // namespace

TEST_CASE("constructs render as jinja2 renders them") {
  for (const auto& c : kCases) {
    CAPTURE(c.source);
    CHECK(render(c.source, c.context_json) == std::string(c.expected));
  }
}

TEST_CASE("loop variables over lists of random length") {
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng(1);
  for (int round = 0; round < 20; ++round) {
    const int n = rng.integer(1, 37);
    Value items = Value::list();
    for (int i = 0; i < n; ++i) items.push_back(rng.integer(-1000, 1000));
    Value context = Value::dict();
    context.set("items", items);
    std::string got = ChatTemplate(
                          "{% for x in items %}{{ x }}:{{ loop.index }},{{ loop.index0 }},{{ loop.revindex }},"
                          "{{ loop.revindex0 }},{{ loop.first }},{{ loop.last }},{{ loop.length }};{% endfor %}")
                          .render(Value::list(), false, context);
    std::string expected;
    for (int i = 0; i < n; ++i) {
      expected += std::to_string(items.as_list()[size_t(i)].as_int()) + ":" + std::to_string(i + 1) + "," +
                  std::to_string(i) + "," + std::to_string(n - i) + "," + std::to_string(n - i - 1) + "," +
                  (i == 0 ? "True" : "False") + "," + (i == n - 1 ? "True" : "False") + "," + std::to_string(n) + ";";
    }
    CHECK(got == expected);
  }
}

TEST_CASE("// and % follow Python: the quotient is floored, the remainder takes the divisor's sign") {
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng(2);
  ChatTemplate division("{{ a // b }} {{ a % b }} {{ a / b }}");
  for (int round = 0; round < 200; ++round) {
    const int64_t a = rng.integer(-100000, 100000);
    int64_t b = rng.integer(-300, 300);
    if (b == 0) b = 7;
    Value context = Value::dict();
    context.set("a", a);
    context.set("b", b);
    // Floor of the exact quotient, computed in long double (exact for these magnitudes).
    const auto quotient = int64_t(std::floor((long double)a / (long double)b));
    const int64_t remainder = a - quotient * b;
    std::string got = division.render(Value::list(), false, context);
    std::string expected_prefix = std::to_string(quotient) + " " + std::to_string(remainder) + " ";
    CAPTURE(a);
    CAPTURE(b);
    CHECK(got.rfind(expected_prefix, 0) == 0);
    // a / b prints Python's repr of the double: it must read back as the same double.
    CHECK(std::stod(got.substr(expected_prefix.size())) == double(a) / double(b));
  }
}

TEST_CASE("slices follow Python's rules for any start, stop and step") {
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng(3);
  for (int round = 0; round < 300; ++round) {
    const int length = rng.integer(0, 12);
    Value items = Value::list();
    std::string letters;
    for (int i = 0; i < length; ++i) {
      items.push_back(i);
      letters += char('a' + i);
    }
    // None or an index, possibly negative or out of range.
    auto bound = [&]() -> std::string { return rng.integer(0, 3) == 0 ? "" : std::to_string(rng.integer(-15, 15)); };
    std::string start = bound(), stop = bound();
    int step = rng.integer(-3, 3);
    if (step == 0) step = 1;
    // Python's documented rule: indices i, i+k, i+2k, ... from the normalized start while before the stop.
    auto normalize = [&](const std::string& text, bool is_start) -> int {
      if (text.empty()) return is_start ? (step > 0 ? 0 : length - 1) : (step > 0 ? length : -1);
      int i = std::stoi(text);
      if (i < 0) i += length;
      return step > 0 ? std::clamp(i, 0, length) : std::clamp(i, -1, length - 1);
    };
    std::string expected_letters;
    std::vector<int> expected_items;
    for (int i = normalize(start, true), end = normalize(stop, false); step > 0 ? i < end : i > end; i += step) {
      expected_letters += char('a' + i);
      expected_items.push_back(i);
    }
    std::string expected_list = "[";
    for (size_t i = 0; i < expected_items.size(); ++i)
      expected_list += (i ? ", " : "") + std::to_string(expected_items[i]);
    expected_list += "]";
    Value context = Value::dict();
    context.set("items", items);
    context.set("letters", letters);
    std::string subscript = "[" + start + ":" + stop + ":" + std::to_string(step) + "]";
    CAPTURE(length);
    CAPTURE(subscript);
    CHECK(ChatTemplate("{{ items" + subscript + " }}|{{ letters" + subscript + " }}")
              .render(Value::list(), false, context) == expected_list + "|" + expected_letters);
  }
}

TEST_CASE("whitespace control with random surrounding whitespace") {
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng(4);
  auto whitespace = [&](bool newlines) {
    std::string s;
    for (int i = rng.integer(0, 6); i > 0; --i) s += newlines ? " \t\n"[rng.integer(0, 2)] : " \t"[rng.integer(0, 1)];
    return s;
  };
  for (int round = 0; round < 100; ++round) {
    const std::string a = whitespace(true), b = whitespace(true), c = whitespace(true);
    // `-` markers remove all whitespace, newlines included, on their side of the tag.
    CHECK(render("x" + a + "{%- if true -%}" + b + "y" + c + "{%- endif -%}" + whitespace(true) + "z") == "xyz");
    CHECK(render("x" + a + "{{- 'y' -}}" + b + "z") == "xyz");
    // lstrip_blocks: spaces and tabs from the start of the line to a block tag go; trim_blocks: the newline after it.
    const std::string indent = whitespace(false);
    CHECK(render("x\n" + indent + "{% if true %}\ny\n" + indent + "{% endif %}\nz") == "x\ny\nz");
    // Neither applies to {{ }}: the text around it stays.
    CHECK(render("x\n" + indent + "{{ 'y' }}\nz") == "x\n" + indent + "y\nz");
  }
}

namespace {

Value random_value(inferno::testing::Rng& rng, int depth) {
  static const char* const kPieces[] = {"a", "Z", " ", "é", "☃", "🎉", "\"", "\\", "\n", "\t", "\x01", "<", "&", "/"};
  auto random_string = [&] {
    std::string s;
    for (int i = rng.integer(0, 8); i > 0; --i) s += kPieces[rng.integer(0, 13)];
    return s;
  };
  switch (rng.integer(0, depth > 0 ? 7 : 5)) {
    case 0: return Value();
    case 1: return Value(rng.integer(0, 1) == 1);
    case 2: return Value(rng.integer(-1000000, 1000000));
    case 3: return Value(double(rng.uniform(-1e6f, 1e6f)));
    case 4:
    case 5: return Value(random_string());
    case 6: {
      Value list = Value::list();
      for (int i = rng.integer(0, 4); i > 0; --i) list.push_back(random_value(rng, depth - 1));
      return list;
    }
    default: {
      Value dict = Value::dict();
      for (int i = rng.integer(0, 4); i > 0; --i) dict.set(random_string(), random_value(rng, depth - 1));
      return dict;
    }
  }
}

// Structural equality, keys in order.
bool same(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::None: return true;
    case Value::Kind::Bool: return a.as_bool() == b.as_bool();
    case Value::Kind::Int: return a.as_int() == b.as_int();
    case Value::Kind::Float: return a.as_double() == b.as_double();
    case Value::Kind::String: return a.as_string() == b.as_string();
    case Value::Kind::List:
      if (a.as_list().size() != b.as_list().size()) return false;
      for (size_t i = 0; i < a.as_list().size(); ++i)
        if (!same(a.as_list()[i], b.as_list()[i])) return false;
      return true;
    case Value::Kind::Dict: {
      const auto& x = a.as_dict().entries();
      const auto& y = b.as_dict().entries();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (x[i].first != y[i].first || !same(x[i].second, y[i].second)) return false;
      return true;
    }
    default: return false;
  }
}

}  // namespace

TEST_CASE("tojson of random values reads back as the same value") {
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng(5);
  ChatTemplate compact("{{ value | tojson }}");
  ChatTemplate indented("{{ value | tojson(indent=3) }}");
  ChatTemplate ascii("{{ value | tojson(ensure_ascii=true) }}");
  for (int round = 0; round < 200; ++round) {
    Value value = random_value(rng, 3);
    Value context = Value::dict();
    context.set("value", value);
    std::string json = compact.render(Value::list(), false, context);
    CAPTURE(json);
    CHECK(same(Value::from_json(json), value));
    CHECK(json == value.to_json());
    CHECK(same(Value::from_json(indented.render(Value::list(), false, context)), value));
    std::string escaped = ascii.render(Value::list(), false, context);
    CHECK(std::all_of(escaped.begin(), escaped.end(), [](char ch) { return (unsigned char)ch < 0x80; }));
    CHECK(same(Value::from_json(escaped), value));
  }
}

TEST_CASE("string filters on random text count code points and strip Python whitespace") {
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng(6);
  static const char* const kPieces[] = {"a", "B", "é", "ß", "☃", "🎉", " ", "\t", "\n", "\u00a0", "\u3000", "x"};
  static const bool kIsSpace[] = {false, false, false, false, false, false, true, true, true, true, true, false};
  ChatTemplate filters("{{ s | length }}|{{ s | trim }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s | reverse }}");
  for (int round = 0; round < 200; ++round) {
    std::vector<int> pieces;
    for (int i = rng.integer(0, 12); i > 0; --i) pieces.push_back(rng.integer(0, 11));
    std::string s;
    for (int p : pieces) s += kPieces[p];
    size_t first = 0, last = pieces.size();
    while (first < last && kIsSpace[pieces[first]]) ++first;
    while (last > first && kIsSpace[pieces[last - 1]]) --last;
    size_t left_end = 0;
    while (left_end < pieces.size() && kIsSpace[pieces[left_end]]) ++left_end;
    size_t right_end = pieces.size();
    while (right_end > 0 && kIsSpace[pieces[right_end - 1]]) --right_end;
    auto join = [&](size_t from, size_t to) {
      std::string out;
      for (size_t i = from; i < to; ++i) out += kPieces[pieces[i]];
      return out;
    };
    std::string reversed;
    for (size_t i = pieces.size(); i > 0; --i) reversed += kPieces[pieces[i - 1]];
    Value context = Value::dict();
    context.set("s", s);
    CAPTURE(s);
    CHECK(filters.render(Value::list(), false, context) == std::to_string(pieces.size()) + "|" + join(first, last) +
                                                               "|" + join(left_end, pieces.size()) + "|" +
                                                               join(0, right_end) + "|" + reversed);
  }
}

TEST_CASE("a namespace counts across loop iterations") {
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng(7);
  ChatTemplate counter(
      "{% set ns = namespace(users=0, last='') %}{% for m in messages %}{% if m.role == 'user' %}"
      "{% set ns.users = ns.users + 1 %}{% set ns.last = m.content %}{% endif %}{% endfor %}{{ ns.users }}:{{ ns.last "
      "}}");
  for (int round = 0; round < 50; ++round) {
    Value messages = Value::list();
    int users = 0;
    std::string last;
    for (int i = rng.integer(0, 20); i > 0; --i) {
      const bool user = rng.integer(0, 1) == 1;
      std::string content = "m" + std::to_string(rng.integer(0, 999));
      messages.push_back(Value::dict(Dict{{"role", user ? "user" : "assistant"}, {"content", content}}));
      if (user) {
        ++users;
        last = content;
      }
    }
    CHECK(counter.render(messages, false, Value()) == std::to_string(users) + ":" + last);
  }
}

// ---- a hostile template (tokenizer_config.json is input) meets a limit and fails with one error naming it ----
// Each attack below would overflow the stack, run for minutes or take gigabytes without its limit; the sizes are
// chosen so, and none is timed.

namespace {

std::string repeated(const std::string& piece, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += piece;
  return out;
}

// The error message of parsing and rendering `source`, or "" when it renders.
std::string error_of(const std::string& source, const std::string& context_json = "{}") {
  try {
    render(source, context_json);
  } catch (const inferno::Error& e) {
    return e.what();
  }
  return "";
}

bool mentions(const std::string& error, const std::string& part) {
  return error.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("chains of filters, attributes, items, calls and operators nest at most 200 levels") {
  const std::string too_deep = "expression nested deeper than 200 levels";
  const std::string x = R"J({"x": "v"})J";
  CHECK(mentions(error_of("{{ 'x'" + repeated("|upper", 50000) + " }}"), too_deep));
  CHECK(mentions(error_of("{{ x" + repeated(".a", 50000) + " }}", x), too_deep));
  CHECK(mentions(error_of("{{ x" + repeated("[0]", 50000) + " }}", x), too_deep));
  CHECK(mentions(error_of("{{ x" + repeated("[1:]", 50000) + " }}", x), too_deep));
  CHECK(mentions(error_of("{{ x" + repeated("()", 50000) + " }}", x), too_deep));
  CHECK(mentions(error_of("{{ x" + repeated(" is defined", 50000) + " }}", x), "tests cannot be chained"));
  CHECK(mentions(error_of("{{ 1" + repeated(" is divisibleby(1)", 50000) + " }}"), too_deep));
  for (const char* op : {" + ", " - ", " * ", " / ", " // ", " % ", " ** ", " ~ ", " and ", " or "})
    CHECK_MESSAGE(mentions(error_of("{{ 1" + repeated(op + std::string("1"), 50000) + " }}"), too_deep), std::string(op));
  // A chain of comparisons is one node, evaluated in a loop.
  CHECK(render("{{ 1" + repeated(" == 1", 50000) + " }}") == "True");
  CHECK(mentions(error_of("{{ 1" + repeated(" if x", 50000) + " }}"), too_deep));
  CHECK(mentions(error_of("{{ 1" + repeated(" if x else 1", 50000) + " }}"), "template nested deeper than 200"));
  // Recursion in the grammar: unary operators, brackets, blocks, macros.
  const std::pair<const char*, const char*> nested[] = {
      {"not ", ""}, {"-", ""}, {"- ", ""}, {"+", ""}, {"(", ")"}, {"[", "]"}, {"{'k': ", "}"}, {"-(", ")"}, {"f(", ")"}};
  for (const auto& [open, close] : nested)
    CHECK_MESSAGE(mentions(error_of("{{ " + repeated(open, 50000) + "1" + repeated(close, 50000) + " }}"),
                           "template nested deeper than 200"),
                  std::string(open));
  for (const char* block : {"{% if x %}", "{% for a in x %}", "{% macro m() %}", "{% filter upper %}",
                            "{% set s %}", "{% call f() %}", "{% generation %}"})
    CHECK_MESSAGE(mentions(error_of(repeated(block, 50000)), "template nested deeper than 200"), std::string(block));
  // The limit leaves room: 190 levels parse and render.
  CHECK(render("{{ 'x'" + repeated("|upper", 190) + " }}") == "X");
  CHECK(render("{{ 0" + repeated(" + 1", 190) + " }}") == "190");
  CHECK(render(repeated("{% if true %}", 190) + "y" + repeated("{% endif %}", 190)) == "y");
}

TEST_CASE("evaluation nests at most 1000 levels, macro calls included") {
  // 150 macro calls each under a chain of 150 operators: 22,500 levels of evaluation.
  const std::string source = "{% macro m(n) %}{% if n > 0 %}{{ m(n - 1)" + repeated(" ~ ''", 150) +
                             " }}{% endif %}{% endmacro %}{{ m(150) }}";
  CHECK(mentions(error_of(source), "evaluation nested deeper than 1000 levels"));
  CHECK(render("{% macro m(n) %}{% if n > 0 %}{{ m(n - 1) ~ 'x' }}{% endif %}{% endmacro %}{{ m(150) | length }}") ==
        "150");
}

TEST_CASE("values nest at most 512 levels of lists and dicts") {
  const std::string too_deep = "value nested deeper than 512 levels";
  // Built by wrapping a list in itself 100,000 times: tojson, == and destroying it would recurse that deep.
  std::string e = error_of(
      "{% set ns = namespace(l=[]) %}\n{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}"
      "{{ ns.l | tojson }}{{ ns.l == ns.l }}");
  CHECK(mentions(e, too_deep));
  CHECK(mentions(e, "line 2"));
  CHECK(mentions(error_of("{% set ns = namespace(d={}) %}{% for i in range(100000) %}{% set ns.d = {'k': ns.d} %}"
                          "{% endfor %}{{ ns.d }}"),
                 too_deep));
  CHECK(mentions(error_of("{% set ns = namespace(d={}) %}{% for i in range(100000) %}{% set ns.d = dict(k=ns.d) %}"
                          "{% endfor %}{{ ns.d }}"),
                 too_deep));
  // 500 levels are fine.
  CHECK(render("{% set ns = namespace(l=[]) %}{% for i in range(500) %}{% set ns.l = [ns.l] %}{% endfor %}"
               "{{ ns.l | tojson | length }} {{ ns.l == ns.l }}") == "1002 True");
  // JSON input deeper than that is refused as it is read.
  CHECK_THROWS_WITH_AS(Value::from_json(std::string(600, '[') + std::string(600, ']')),
                       doctest::Contains("nested deeper than 512"), inferno::Error);
  // A namespace cannot hold a namespace, directly, in a container or through a bound method: no cycles.
  for (const char* held : {"ns", "[ns]", "{'k': [ns]}", "[ns].index", "loop"})
    CHECK_MESSAGE(mentions(error_of("{% set ns = namespace() %}{% for i in [1] %}{% set ns.me = " + std::string(held) +
                                    " %}{% endfor %}{{ ns }}"),
                           "a namespace cannot hold a namespace"),
                  std::string(held));
  CHECK(mentions(error_of("{% set ns = namespace() %}{% set other = namespace(inner=[ns]) %}"),
                 "holds a namespace"));
}

TEST_CASE("one render creates at most 4 million list items and 512 MiB of strings, and writes at most 64 MiB") {
  // Doubling a list 64 times would need 2^64 items.
  CHECK(mentions(error_of("{% set ns = namespace(l=[0]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}"
                          "{% endfor %}{{ ns.l | length }}"),
                 "more than 4000000 list and dict items"));
  CHECK(mentions(error_of("{% set ns = namespace(d={}) %}{% for i in range(100000) %}"
                          "{% set ns.d = dict(ns.d, **{i|string: i}) %}{% endfor %}"),
                 "more than 4000000 list and dict items"));
  // Growing a string by 100 bytes 100,000 times copies 500 GB; the budget stops it after about 512 MiB of copies.
  const std::string piece = "'" + std::string(100, 'y') + "'";
  for (const char* op : {" ~ ", " + "})
    CHECK_MESSAGE(mentions(error_of("{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s" +
                                    std::string(op) + piece + " %}{% endfor %}{{ ns.s | length }}"),
                           "more than 512 MiB of strings"),
                  std::string(op));
  // The output, and each string however it is built.
  CHECK(mentions(error_of("{% set s = 'x' * 10000000 %}{% for i in range(1000) %}{{ s }}{% endfor %}"),
                 "rendered text longer than 64 MiB"));
  const std::vector<std::string> builders = {
      "s.replace('', 'y' * 1000)", "([s] * 1000) | tojson", "[s] * 1000", "([s] * 1000) | join",
      "''.join([s] * 1000)",       "('\\n' * 100000) | indent(1000, blank=true)",
      "('%s' * 100) % (" + repeated("s, ", 100) + ")"};
  for (const auto& builder : builders)
    CHECK_MESSAGE(mentions(error_of("{% set s = 'x' * 1000000 %}{{ " + builder + " }}"), "string longer than 64 MiB"), builder);
}

// Real chat templates (Llama 3.1, Llama 3.2, Qwen2.5) with tools, tool calls, tool results, builtin tools and
// raise_exception, against goldens rendered by jinja2 3.1.6 configured as transformers' apply_chat_template
// configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception,
// strftime_now, tojson = json.dumps(ensure_ascii=False)), with tools=None and documents=None unless given.
#include <ctime>
#include <string>

#include "test_support.hpp"
#include "text/chat_template.hpp"

namespace {

using inferno::text::ChatTemplate;
using inferno::text::TemplateRaise;
using inferno::text::Value;

// meta-llama/Llama-3.1-8B-Instruct, tokenizer_config.json
constexpr const char* kLlama31Template = R"JINJA({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)JINJA";

// meta-llama/Llama-3.2-1B-Instruct, tokenizer_config.json: today's date from strftime_now unless date_string is given
constexpr const char* kLlama32Template = R"JINJA({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)JINJA";

// Qwen/Qwen2.5-7B-Instruct, tokenizer_config.json
constexpr const char* kQwen25Template = R"JINJA({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)JINJA";

struct ModelCase {
  const char* name;
  const char* chat_template;
  const char* messages_json;
  bool add_generation_prompt;
  const char* extra_json;
  const char* expected;  // the rendered text, or
  const char* error;     // the raise_exception message
};

// Generated from jinja2 3.1.6 configured as transformers configures it (see the comment above).
const ModelCase kModelCases[] = {
    {"llama3_1 chat", kLlama31Template,
     R"JSON([{"role": "system", "content": "  You are a helpful assistant.  "}, {"role": "user", "content": "What's 2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "  Und 3+3? Grüße ☃ 🎉  "}])JSON",
     true, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})JSON",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n"
    "\n"
    "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "What's 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "4<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Und 3+3? Grüße ☃ 🎉<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "", nullptr},
    {"llama3_1 date_string, no generation prompt", kLlama31Template,
     R"JSON([{"role": "user", "content": "What's 2+2?"}])JSON",
     false, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "date_string": "02 Jan 2025"})JSON",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 02 Jan 2025\n"
    "\n"
    "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "What's 2+2?<|eot_id|>", nullptr},
    {"llama3_1 tools in the first user message", kLlama31Template,
     R"JSON([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}, {"role": "tool", "content": {"temperature": 21.5, "sky": "clear"}}, {"role": "assistant", "content": "21.5 °C and clear."}, {"role": "user", "content": "Thanks"}])JSON",
     true, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city, in °C.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. \"Paris\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}, {"type": "function", "function": {"name": "get_time", "description": "Time now", "parameters": {"type": "object", "properties": {}}}}]})JSON",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Environment: ipython\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n"
    "\n"
    "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n"
    "\n"
    "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n"
    "\n"
    "{\n"
    "    \"type\": \"function\",\n"
    "    \"function\": {\n"
    "        \"name\": \"get_weather\",\n"
    "        \"description\": \"Current weather in a city, in °C.\",\n"
    "        \"parameters\": {\n"
    "            \"type\": \"object\",\n"
    "            \"properties\": {\n"
    "                \"city\": {\n"
    "                    \"type\": \"string\",\n"
    "                    \"description\": \"City name, e.g. \\\"Paris\\\"\"\n"
    "                },\n"
    "                \"unit\": {\n"
    "                    \"type\": \"string\",\n"
    "                    \"enum\": [\n"
    "                        \"celsius\",\n"
    "                        \"fahrenheit\"\n"
    "                    ]\n"
    "                }\n"
    "            },\n"
    "            \"required\": [\n"
    "                \"city\"\n"
    "            ]\n"
    "        }\n"
    "    }\n"
    "}\n"
    "\n"
    "{\n"
    "    \"type\": \"function\",\n"
    "    \"function\": {\n"
    "        \"name\": \"get_time\",\n"
    "        \"description\": \"Time now\",\n"
    "        \"parameters\": {\n"
    "            \"type\": \"object\",\n"
    "            \"properties\": {}\n"
    "        }\n"
    "    }\n"
    "}\n"
    "\n"
    "Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
    "\n"
    "{\"temperature\": 21.5, \"sky\": \"clear\"}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "21.5 °C and clear.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Thanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "", nullptr},
    {"llama3_1 tools in the system message", kLlama31Template,
     R"JSON([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}, {"role": "tool", "content": {"temperature": 21.5, "sky": "clear"}}, {"role": "assistant", "content": "21.5 °C and clear."}, {"role": "user", "content": "Thanks"}])JSON",
     true, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city, in °C.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. \"Paris\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}], "tools_in_user_message": false})JSON",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Environment: ipython\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n"
    "\n"
    "You have access to the following functions. To call a function, please respond with JSON for a function call.Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n"
    "\n"
    "{\n"
    "    \"type\": \"function\",\n"
    "    \"function\": {\n"
    "        \"name\": \"get_weather\",\n"
    "        \"description\": \"Current weather in a city, in °C.\",\n"
    "        \"parameters\": {\n"
    "            \"type\": \"object\",\n"
    "            \"properties\": {\n"
    "                \"city\": {\n"
    "                    \"type\": \"string\",\n"
    "                    \"description\": \"City name, e.g. \\\"Paris\\\"\"\n"
    "                },\n"
    "                \"unit\": {\n"
    "                    \"type\": \"string\",\n"
    "                    \"enum\": [\n"
    "                        \"celsius\",\n"
    "                        \"fahrenheit\"\n"
    "                    ]\n"
    "                }\n"
    "            },\n"
    "            \"required\": [\n"
    "                \"city\"\n"
    "            ]\n"
    "        }\n"
    "    }\n"
    "}\n"
    "\n"
    "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
    "\n"
    "{\"temperature\": 21.5, \"sky\": \"clear\"}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "21.5 °C and clear.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Thanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "", nullptr},
    {"llama3_1 builtin tools", kLlama31Template,
     R"JSON([{"role": "user", "content": "Search the weather"}, {"role": "assistant", "tool_calls": [{"function": {"name": "brave_search", "arguments": {"query": "weather Paris", "count": "3"}}}]}, {"role": "ipython", "content": "[\"sunny\"]"}])JSON",
     true, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]})JSON",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Environment: ipython\n"
    "Tools: brave_search, wolfram_alpha\n"
    "\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n"
    "\n"
    "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Search the weather<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "<|python_tag|>brave_search.call(query=\"weather Paris\", count=\"3\")<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n"
    "\n"
    "\"[\\\"sunny\\\"]\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "", nullptr},
    {"llama3_1 two tool calls", kLlama31Template,
     R"JSON([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": {}}}]}])JSON",
     false, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})JSON",
    nullptr, "This model only supports single tool-calls at once!"},
    {"llama3_1 tools without a user message", kLlama31Template,
     R"JSON([{"role": "system", "content": "s"}])JSON",
     true, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tools": [{"type": "function", "function": {"name": "get_time", "description": "Time now", "parameters": {"type": "object", "properties": {}}}}]})JSON",
    nullptr, "Cannot put tools in the first user message when there's no first user message!"},
    {"llama3_2 chat", kLlama32Template,
     R"JSON([{"role": "system", "content": "  You are a helpful assistant.  "}, {"role": "user", "content": "What's 2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "  Und 3+3? Grüße ☃ 🎉  "}])JSON",
     true, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "date_string": "@@DATE@@"})JSON",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: @@DATE@@\n"
    "\n"
    "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "What's 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "4<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Und 3+3? Grüße ☃ 🎉<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "", nullptr},
    {"llama3_2 tool call", kLlama32Template,
     R"JSON([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}, {"role": "tool", "content": {"temperature": 21.5, "sky": "clear"}}, {"role": "assistant", "content": "21.5 °C and clear."}, {"role": "user", "content": "Thanks"}])JSON",
     false, R"JSON({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city, in °C.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. \"Paris\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}], "date_string": "09 Mar 2025"})JSON",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Environment: ipython\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 09 Mar 2025\n"
    "\n"
    "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n"
    "\n"
    "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n"
    "\n"
    "{\n"
    "    \"type\": \"function\",\n"
    "    \"function\": {\n"
    "        \"name\": \"get_weather\",\n"
    "        \"description\": \"Current weather in a city, in °C.\",\n"
    "        \"parameters\": {\n"
    "            \"type\": \"object\",\n"
    "            \"properties\": {\n"
    "                \"city\": {\n"
    "                    \"type\": \"string\",\n"
    "                    \"description\": \"City name, e.g. \\\"Paris\\\"\"\n"
    "                },\n"
    "                \"unit\": {\n"
    "                    \"type\": \"string\",\n"
    "                    \"enum\": [\n"
    "                        \"celsius\",\n"
    "                        \"fahrenheit\"\n"
    "                    ]\n"
    "                }\n"
    "            },\n"
    "            \"required\": [\n"
    "                \"city\"\n"
    "            ]\n"
    "        }\n"
    "    }\n"
    "}\n"
    "\n"
    "Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
    "\n"
    "{\"temperature\": 21.5, \"sky\": \"clear\"}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "21.5 °C and clear.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Thanks<|eot_id|>", nullptr},
    {"qwen2_5 chat", kQwen25Template,
     R"JSON([{"role": "system", "content": "  You are a helpful assistant.  "}, {"role": "user", "content": "What's 2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "  Und 3+3? Grüße ☃ 🎉  "}])JSON",
     true, R"JSON({})JSON",
    "<|im_start|>system\n"
    "  You are a helpful assistant.  <|im_end|>\n"
    "<|im_start|>user\n"
    "What's 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n"
    "4<|im_end|>\n"
    "<|im_start|>user\n"
    "  Und 3+3? Grüße ☃ 🎉  <|im_end|>\n"
    "<|im_start|>assistant\n"
    "", nullptr},
    {"qwen2_5 default system", kQwen25Template,
     R"JSON([{"role": "user", "content": "What's 2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "  Und 3+3? Grüße ☃ 🎉  "}])JSON",
     false, R"JSON({})JSON",
    "<|im_start|>system\n"
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n"
    "What's 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n"
    "4<|im_end|>\n"
    "<|im_start|>user\n"
    "  Und 3+3? Grüße ☃ 🎉  <|im_end|>\n"
    "", nullptr},
    {"qwen2_5 tools", kQwen25Template,
     R"JSON([{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}, {"role": "tool", "content": {"temperature": 21.5, "sky": "clear"}}, {"role": "tool", "content": "second"}, {"role": "assistant", "content": "21.5 °C and clear."}, {"role": "user", "content": "Thanks"}])JSON",
     true, R"JSON({"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city, in °C.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. \"Paris\""}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}, {"type": "function", "function": {"name": "get_time", "description": "Time now", "parameters": {"type": "object", "properties": {}}}}]})JSON",
    "<|im_start|>system\n"
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n"
    "\n"
    "# Tools\n"
    "\n"
    "You may call one or more functions to assist with the user query.\n"
    "\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n"
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather in a city, in °C.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name, e.g. \\\"Paris\\\"\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"celsius\", \"fahrenheit\"]}}, \"required\": [\"city\"]}}}\n"
    "{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"description\": \"Time now\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}\n"
    "</tools>\n"
    "\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
    "</tool_call><|im_end|>\n"
    "<|im_start|>user\n"
    "Weather in Paris?<|im_end|>\n"
    "<|im_start|>assistant\n"
    "<tool_call>\n"
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n"
    "</tool_call><|im_end|>\n"
    "<|im_start|>user\n"
    "<tool_response>\n"
    "{'temperature': 21.5, 'sky': 'clear'}\n"
    "</tool_response>\n"
    "<tool_response>\n"
    "second\n"
    "</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n"
    "21.5 °C and clear.<|im_end|>\n"
    "<|im_start|>user\n"
    "Thanks<|im_end|>\n"
    "<|im_start|>assistant\n"
    "", nullptr},
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

std::string today(const char* format) {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buffer[64];
  return std::string(buffer, std::strftime(buffer, sizeof buffer, format, &local));
}

}  // namespace

TEST_CASE("real chat templates render as transformers does") {
  for (const auto& c : kModelCases) {
    CAPTURE(c.name);
    ChatTemplate chat_template(c.chat_template);
    Value messages = Value::from_json(c.messages_json);
    Value extra = Value::from_json(c.extra_json);
    if (c.expected) {
      CHECK(chat_template.render(messages, c.add_generation_prompt, extra) == std::string(c.expected));
    } else {
      std::string raised;
      try {
        chat_template.render(messages, c.add_generation_prompt, extra);
      } catch (const TemplateRaise& e) {
        raised = e.what();
      }
      CHECK(raised == c.error);
    }
  }
}

TEST_CASE("Llama 3.2 prints today's date from strftime_now when date_string is not given") {
  // The golden "llama3_2 chat" was rendered with date_string "@@DATE@@"; without it the template calls
  // strftime_now("%d %b %Y"). Both dates are taken around the render so that midnight cannot fail the test.
  const ModelCase* golden = nullptr;
  for (const auto& c : kModelCases)
    if (std::string(c.name) == "llama3_2 chat") golden = &c;
  REQUIRE(golden);
  Value extra = Value::from_json(golden->extra_json);
  Value without_date = Value::dict();
  for (const auto& [key, value] : extra.as_dict().entries())
    if (key != "date_string") without_date.set(key, value);
  std::string before = today("%d %b %Y");
  std::string text = ChatTemplate(kLlama32Template).render(Value::from_json(golden->messages_json), true, without_date);
  std::string after = today("%d %b %Y");
  CHECK(text.find("@@DATE@@") == std::string::npos);
  const bool matches = text == replace_all(golden->expected, "@@DATE@@", before) ||
                       text == replace_all(golden->expected, "@@DATE@@", after);
  CHECK_MESSAGE(matches, text);
}

#pragma once
// Structured output in the OpenAI API: response_format (json_object, json_schema) and tools / tool_choice, read from
// a request into what the engine decodes under (a JSON schema) and what the chat template renders (the tools), and
// the model's tool-call text turned back into OpenAI's tool_calls.
//
// Tool calls follow Llama 3.1's JSON format: the model answers {"name": NAME, "parameters": {...}} (after its
// <|python_tag|> special token, which decoding drops), or a list of such objects. tool_choice "required" or a named
// function constrains decoding to that format with the function's parameters schema; "auto" lets the model choose
// and parses its text; "none" keeps the text and gives the template no tools.
#include <optional>
#include <string>
#include <vector>

#include <simdjson.h>

#include "server/openai.hpp"

namespace inferno::server {

// The JSON schema a response_format asks for: "" for none or {"type": "text"}, {"type": "object"} for json_object,
// the schema of json_schema (checked: ApiError 400 naming the unsupported keyword).
std::string read_response_format(std::optional<simdjson::dom::element> response_format);

struct ToolRequest {
  enum class Choice { None, Auto, Required, Named };
  Choice choice = Choice::None;   // None also when no tools were given
  std::string tools_json;         // the tools for the template: [{"type": "function", "function": {...}}, ...]
  std::vector<std::string> names;  // the functions' names
  std::string call_schema;        // Required / Named: the schema of a call, for constrained decoding
  bool active() const { return choice != Choice::None; }
};
// Throws ApiError naming the field at fault.
ToolRequest read_tools(std::optional<simdjson::dom::element> tools, std::optional<simdjson::dom::element> tool_choice);

// The calls in a model's answer, each with a fresh id, or nothing when the text is not a call of one of `names`.
std::optional<std::vector<ToolCall>> parse_tool_calls(const std::string& text, const std::vector<std::string>& names);
// Choices that ended with "stop" and whose text is calls of `names` become tool calls (finish_reason "tool_calls");
// the others stay text. Each choice of n is parsed on its own, as OpenAI answers n > 1 with tools.
void parse_tool_call_choices(std::vector<Choice>& choices, const std::vector<std::string>& names);

// A streamed chat choice under tools: its deltas are held while the text so far could still be a call (nothing but
// whitespace yet, or it begins with '{' or '['), and released in order as soon as it cannot; at the end, held text
// that parses as calls of the request's tools (and ended with "stop") becomes tool calls instead, as in the
// non-streamed answer. Text that is not a call streams as it comes, delayed by at most its leading whitespace.
class ToolCallStream {
 public:
  explicit ToolCallStream(std::vector<std::string> names) : names_(std::move(names)) {}
  struct Out {
    std::vector<Choice> deltas;                  // to send now, in order
    std::optional<std::vector<ToolCall>> calls;  // the choice ended as these calls (send them, then "tool_calls")
  };
  // `delta` as the generation posts it; one with a finish_reason ends the choice.
  Out push(Choice delta);
  bool holding() const { return holding_; }

 private:
  std::vector<std::string> names_;
  bool holding_ = true;
  std::string text_;             // the held deltas' text
  std::vector<Choice> held_;
};

// The structured-output fields of a request body already checked by parse_completion_request.
struct StructuredRequest {
  std::string json_schema;    // what decoding follows: response_format's, or the tool-call schema; "" for free text
  ToolRequest tools;
  std::string messages_json;  // chat with tools or tool turns: the messages for Model::render_chat_json; else ""
};
StructuredRequest read_structured(std::string_view body, const CompletionRequest& request);

// The messages of a chat request as the template reads them: role, content (text), and an assistant's tool_calls
// with their arguments as objects (as transformers' templates expect), tool_call_id and name as given.
std::string template_messages_json(simdjson::dom::array messages, const std::vector<ChatMessage>& checked);

}  // namespace inferno::server

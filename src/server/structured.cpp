#include "server/structured.hpp"

#include <random>

#include "util/json_writer.hpp"

namespace inferno::server {

namespace {

using simdjson::dom::element;

constexpr size_t kMaxTools = 128;

std::string call_id() {
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof buf, "call_%08x%08x", rd(), rd());
  return buf;
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string read_response_format(std::optional<element> e) {
  if (!e) return "";
  simdjson::dom::object o;
  std::string_view type;
  if (e->get(o) != simdjson::SUCCESS || o["type"].get(type) != simdjson::SUCCESS)
    throw ApiError::invalid("response_format", "'response_format' must be an object with a string 'type'");
  if (type == "text") return "";
  if (type == "json_object") return R"({"type":"object"})";
  if (type != "json_schema")
    throw ApiError::invalid("response_format", "response_format type '" + std::string(type) +
                                                   "' is not supported (text, json_object or json_schema)");
  simdjson::dom::object spec;
  if (o["json_schema"].get(spec) != simdjson::SUCCESS)
    throw ApiError::invalid("response_format", "response_format json_schema needs a 'json_schema' object");
  element schema;
  if (spec["schema"].get(schema) != simdjson::SUCCESS)
    throw ApiError::invalid("response_format", "response_format.json_schema needs a 'schema'");
  std::string text = simdjson::to_string(schema);
  try {
    check_json_schema(text);
  } catch (const Error& err) {
    throw ApiError::invalid("response_format", std::string("response_format.json_schema.schema: ") + err.what());
  }
  return text;
}

ToolRequest read_tools(std::optional<element> tools, std::optional<element> tool_choice) {
  ToolRequest r;
  simdjson::dom::array list;
  if (tools) {
    if (tools->get(list) != simdjson::SUCCESS) throw ApiError::invalid("tools", "'tools' must be a list");
    if (list.size() > kMaxTools)
      throw ApiError::invalid("tools", "'tools' has more than " + std::to_string(kMaxTools) + " tools");
  }
  if (!tools || list.size() == 0) {
    if (tool_choice && !(tool_choice->is_string() && std::string_view(*tool_choice) == "none") &&
        !(tool_choice->is_string() && std::string_view(*tool_choice) == "auto"))
      throw ApiError::invalid("tool_choice", "'tool_choice' names a tool but 'tools' is empty");
    return r;
  }
  std::vector<std::string> parameters;  // each tool's parameters schema as JSON
  JsonWriter all;
  all.begin_array();
  size_t i = 0;
  for (element tool : list) {
    const std::string where = "tools[" + std::to_string(i++) + "]";
    std::string_view type, name;
    element function;
    if (tool["type"].get(type) != simdjson::SUCCESS || type != "function" ||
        tool["function"].get(function) != simdjson::SUCCESS || function["name"].get(name) != simdjson::SUCCESS)
      throw ApiError::invalid("tools", "'" + where + "' must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
    element params;
    if (function["parameters"].get(params) == simdjson::SUCCESS) {
      if (!params.is_object()) throw ApiError::invalid("tools", "'" + where + ".function.parameters' must be an object");
      parameters.push_back(simdjson::to_string(params));
    } else {
      parameters.push_back(R"({"type":"object"})");
    }
    r.names.emplace_back(name);
    all.json(simdjson::to_string(tool));
  }
  all.end_array();
  r.tools_json = all.str();
  r.choice = ToolRequest::Choice::Auto;
  std::string named;
  if (tool_choice) {
    if (tool_choice->is_string()) {
      const std::string_view c(*tool_choice);
      if (c == "none") r.choice = ToolRequest::Choice::None;
      else if (c == "required") r.choice = ToolRequest::Choice::Required;
      else if (c != "auto")
        throw ApiError::invalid("tool_choice", "'tool_choice' must be none, auto, required or a named function");
    } else {
      std::string_view name;
      if ((*tool_choice)["function"]["name"].get(name) != simdjson::SUCCESS)
        throw ApiError::invalid("tool_choice", "'tool_choice' must be none, auto, required or "
                                               "{\"type\": \"function\", \"function\": {\"name\": ...}}");
      named = std::string(name);
      if (std::find(r.names.begin(), r.names.end(), named) == r.names.end())
        throw ApiError::invalid("tool_choice", "'tool_choice' names '" + named + "', which is not in 'tools'");
      r.choice = ToolRequest::Choice::Named;
    }
  }
  if (r.choice == ToolRequest::Choice::Required || r.choice == ToolRequest::Choice::Named) {
    std::vector<std::string> branches;
    for (size_t t = 0; t < r.names.size(); ++t) {
      if (r.choice == ToolRequest::Choice::Named && r.names[t] != named) continue;
      branches.push_back(R"({"type":"object","properties":{"name":{"const":)" + json_quote(r.names[t]) +
                         R"(},"parameters":)" + parameters[t] +
                         R"(},"required":["name","parameters"],"additionalProperties":false})");
    }
    if (branches.size() == 1) {
      r.call_schema = branches[0];
    } else {
      r.call_schema = R"({"anyOf":[)";
      for (size_t b = 0; b < branches.size(); ++b) r.call_schema += (b ? "," : "") + branches[b];
      r.call_schema += "]}";
    }
    try {
      check_json_schema(r.call_schema);
    } catch (const Error& err) {
      throw ApiError::invalid("tools", std::string("a tool's parameters cannot constrain decoding: ") + err.what());
    }
  }
  return r;
}

std::optional<std::vector<ToolCall>> parse_tool_calls(const std::string& text, const std::vector<std::string>& names) {
  const std::string_view body = trim(text);
  if (body.empty() || (body.front() != '{' && body.front() != '[')) return std::nullopt;
  simdjson::dom::parser parser;
  element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return std::nullopt;
  std::vector<element> objects;
  simdjson::dom::array list;
  if (root.get(list) == simdjson::SUCCESS) {
    for (element e : list) objects.push_back(e);
  } else {
    objects.push_back(root);
  }
  if (objects.empty()) return std::nullopt;
  std::vector<ToolCall> calls;
  for (element o : objects) {
    std::string_view name;
    if (!o.is_object() || o["name"].get(name) != simdjson::SUCCESS) return std::nullopt;
    if (std::find(names.begin(), names.end(), name) == names.end()) return std::nullopt;
    element arguments;
    if (o["parameters"].get(arguments) != simdjson::SUCCESS && o["arguments"].get(arguments) != simdjson::SUCCESS)
      return std::nullopt;
    if (!arguments.is_object()) return std::nullopt;
    calls.push_back({call_id(), std::string(name), simdjson::to_string(arguments)});
  }
  return calls;
}

void parse_tool_call_choices(std::vector<Choice>& choices, const std::vector<std::string>& names) {
  for (Choice& c : choices) {
    if (c.finish_reason.value_or("stop") != "stop") continue;  // cut by max_tokens: text, as OpenAI answers
    if (auto calls = parse_tool_calls(c.text, names)) {
      c.tool_calls = std::move(*calls);
      c.text.clear();
      c.finish_reason = "tool_calls";
    }
  }
}

ToolCallStream::Out ToolCallStream::push(Choice delta) {
  Out out;
  if (!holding_) {
    out.deltas.push_back(std::move(delta));
    return out;
  }
  text_ += delta.text;
  const bool ended = delta.finish_reason.has_value();
  const std::string_view body = trim(text_);
  const bool may_be_call = body.empty() || body.front() == '{' || body.front() == '[';
  if (ended && may_be_call && *delta.finish_reason == "stop") {
    if ((out.calls = parse_tool_calls(text_, names_))) {
      holding_ = false;
      held_.clear();
      return out;
    }
  }
  held_.push_back(std::move(delta));
  if (may_be_call && !ended) return out;
  holding_ = false;  // text, not a call: what was held goes out as it came
  out.deltas = std::move(held_);
  held_.clear();
  return out;
}

std::string template_messages_json(simdjson::dom::array messages, const std::vector<ChatMessage>& checked) {
  JsonWriter j;
  j.begin_array();
  size_t i = 0;
  for (element m : messages) {
    if (i >= checked.size()) break;
    j.begin_object().field("role", checked[i].role).field("content", checked[i].content);
    std::string_view text;
    for (const char* key : {"tool_call_id", "name"})
      if (m[key].get(text) == simdjson::SUCCESS) j.field(key, text);
    simdjson::dom::array calls;
    if (m["tool_calls"].get(calls) == simdjson::SUCCESS) {
      j.key("tool_calls").begin_array();
      for (element call : calls) {
        std::string_view name, id, arguments;
        if (call["function"]["name"].get(name) != simdjson::SUCCESS)
          throw ApiError::invalid("messages", "messages[" + std::to_string(i) + "].tool_calls: each needs function.name");
        j.begin_object();
        if (call["id"].get(id) == simdjson::SUCCESS) j.field("id", id);
        j.field("type", "function").key("function").begin_object().field("name", name);
        // OpenAI sends arguments as JSON text; chat templates print them with tojson, so they get the object.
        simdjson::dom::parser parser;
        element parsed;
        if (call["function"]["arguments"].get(arguments) == simdjson::SUCCESS &&
            parser.parse(arguments.data(), arguments.size()).get(parsed) == simdjson::SUCCESS && parsed.is_object())
          j.key("arguments").json(simdjson::to_string(parsed));
        else
          j.field("arguments", arguments);
        j.end_object().end_object();
      }
      j.end_array();
    }
    j.end_object();
    ++i;
  }
  j.end_array();
  return j.str();
}

StructuredRequest read_structured(std::string_view body, const CompletionRequest& request) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS)
    throw ApiError::invalid("", "the request body must be a JSON object");
  auto field = [&](std::string_view key) -> std::optional<element> {
    element e;
    if (root.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return std::nullopt;
    return e;
  };
  StructuredRequest r;
  r.json_schema = read_response_format(field("response_format"));
  if (!request.chat) {
    if (field("tools") || field("tool_choice"))
      throw ApiError::invalid("tools", "'tools' belong to /v1/chat/completions");
    return r;
  }
  r.tools = read_tools(field("tools"), field("tool_choice"));
  if (r.tools.active() && !r.json_schema.empty())
    throw ApiError::invalid("response_format", "'response_format' together with 'tools' is not supported");
  if (!r.tools.call_schema.empty()) r.json_schema = r.tools.call_schema;
  simdjson::dom::array messages;
  bool tool_turns = false;
  if (root["messages"].get(messages) == simdjson::SUCCESS)
    for (element m : messages) tool_turns = tool_turns || m["tool_calls"].error() == simdjson::SUCCESS ||
                                            m["tool_call_id"].error() == simdjson::SUCCESS;
  if (r.tools.active() || tool_turns) r.messages_json = template_messages_json(messages, request.messages);
  return r;
}

}  // namespace inferno::server

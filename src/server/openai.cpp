#include "server/openai.hpp"

#include <simdjson.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "util/json_writer.hpp"

namespace inferno::server {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr size_t kMaxStopStrings = 16;

// Typed access to the fields of the request object; a field that is absent or null is "not given".
class Fields {
 public:
  explicit Fields(simdjson::dom::object object) : object_(object) {}

  std::optional<element> get(std::string_view key) const {
    element e;
    if (object_.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return std::nullopt;
    return e;
  }
  std::optional<bool> boolean(std::string_view key) const {
    auto e = get(key);
    if (!e) return std::nullopt;
    if (!e->is_bool()) throw type_error(key, "a boolean");
    return bool(*e);
  }
  std::optional<int64_t> integer(std::string_view key) const {
    auto e = get(key);
    if (!e) return std::nullopt;
    return as_integer(*e, key);
  }
  std::optional<double> number(std::string_view key) const {
    auto e = get(key);
    if (!e) return std::nullopt;
    if (!e->is_number()) throw type_error(key, "a number");
    return double(*e);
  }
  std::optional<std::string> string(std::string_view key) const {
    auto e = get(key);
    if (!e) return std::nullopt;
    if (!e->is_string()) throw type_error(key, "a string");
    return std::string(std::string_view(*e));
  }

  static int64_t as_integer(element e, std::string_view what) {
    if (e.is_int64()) return int64_t(e);
    if (e.is_uint64()) throw ApiError::invalid(std::string(what), "'" + std::string(what) + "' is out of range");
    if (e.is_double()) {  // 16.0 is an integer; 16.5 is not
      const double d = double(e);
      if (std::floor(d) == d && std::fabs(d) < 9.0e15) return int64_t(d);
    }
    throw type_error(what, "an integer");
  }
  static ApiError type_error(std::string_view key, const char* expected) {
    return ApiError::invalid(std::string(key), "'" + std::string(key) + "' must be " + expected);
  }

 private:
  simdjson::dom::object object_;
};

void check_range(const std::optional<double>& v, const char* key, double lo, double hi, bool lo_open = false) {
  if (!v) return;
  if (std::isfinite(*v) && *v <= hi && (lo_open ? *v > lo : *v >= lo)) return;
  char range[64];
  std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
  throw ApiError::invalid(key, std::string("'") + key + "' must be in " + range);
}

void refuse_unsupported(const Fields& f, bool chat) {
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (auto v = f.number(key); v && *v != 0)
      throw ApiError::invalid(key, std::string("'") + key + "' is not supported by this server (only 0)");
  if (auto e = f.get("logprobs")) {
    const bool asked = e->is_bool() ? bool(*e) : (e->is_number() ? double(*e) != 0 : true);
    if (asked) throw ApiError::invalid("logprobs", "'logprobs' is not supported by this server");
  }
  if (auto e = f.get("top_logprobs"); e && !(e->is_number() && double(*e) == 0))
    throw ApiError::invalid("top_logprobs", "'top_logprobs' is not supported by this server");
  if (auto e = f.get("logit_bias")) {
    simdjson::dom::object o;
    if (e->get(o) != simdjson::SUCCESS) throw Fields::type_error("logit_bias", "an object");
    if (o.size() != 0) throw ApiError::invalid("logit_bias", "'logit_bias' is not supported by this server");
  }
  if (auto e = f.get("n")) {
    if (Fields::as_integer(*e, "n") != 1) throw ApiError::invalid("n", "'n' must be 1: this server makes one choice per request");
  }
  // response_format, tools and tool_choice: server/structured.hpp.
  if (!chat) {
    if (auto echo = f.boolean("echo"); echo && *echo) throw ApiError::invalid("echo", "'echo' is not supported by this server");
    if (auto b = f.integer("best_of"); b && *b != 1) throw ApiError::invalid("best_of", "'best_of' must be 1");
    if (auto s = f.string("suffix"); s && !s->empty()) throw ApiError::invalid("suffix", "'suffix' is not supported by this server");
  }
}

std::vector<int32_t> token_ids(simdjson::dom::array a) {
  std::vector<int32_t> ids;
  for (element e : a) {
    if (!e.is_int64() || int64_t(e) < 0 || int64_t(e) > std::numeric_limits<int32_t>::max())
      throw ApiError::invalid("prompt", "'prompt' as a list must hold token ids (non-negative integers) or one string");
    ids.push_back(int32_t(int64_t(e)));
  }
  return ids;
}

void read_prompt(const Fields& f, CompletionRequest& r) {
  auto e = f.get("prompt");
  if (!e) throw ApiError::invalid("prompt", "'prompt' is required");
  if (e->is_string()) {
    r.prompt_text = std::string(std::string_view(*e));
    return;
  }
  simdjson::dom::array a;
  if (e->get(a) != simdjson::SUCCESS) throw Fields::type_error("prompt", "a string or a list");
  if (a.size() == 0) throw ApiError::invalid("prompt", "'prompt' is an empty list");
  element first = a.at(0);
  if (first.is_number()) {
    r.prompt_ids = token_ids(a);
    return;
  }
  if (a.size() != 1) throw ApiError::invalid("prompt", "'prompt' holds several prompts: this server takes one per request");
  if (first.is_string()) {
    r.prompt_text = std::string(std::string_view(first));
    return;
  }
  simdjson::dom::array inner;
  if (first.get(inner) != simdjson::SUCCESS || inner.size() == 0)
    throw ApiError::invalid("prompt", "'prompt' must be a string, a list of token ids, or a list holding one of those");
  r.prompt_ids = token_ids(inner);
}

std::string message_content(element content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (content.is_string()) return std::string(std::string_view(content));
  simdjson::dom::array parts;
  if (content.get(parts) != simdjson::SUCCESS) throw Fields::type_error(where, "a string or a list of text parts");
  std::string text;
  for (element part : parts) {
    std::string_view type, part_text;
    if (part["type"].get(type) != simdjson::SUCCESS || type != "text" || part["text"].get(part_text) != simdjson::SUCCESS)
      throw ApiError::invalid(where, "'" + where + "': only {\"type\": \"text\", \"text\": ...} parts are supported");
    text += part_text;
  }
  return text;
}

void read_messages(const Fields& f, CompletionRequest& r) {
  auto e = f.get("messages");
  if (!e) throw ApiError::invalid("messages", "'messages' is required");
  simdjson::dom::array a;
  if (e->get(a) != simdjson::SUCCESS) throw Fields::type_error("messages", "a list");
  if (a.size() == 0) throw ApiError::invalid("messages", "'messages' is empty");
  size_t i = 0;
  for (element m : a) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    simdjson::dom::object o;
    if (m.get(o) != simdjson::SUCCESS) throw Fields::type_error(where, "an object");
    const Fields mf(o);
    const auto role = mf.string("role");
    if (!role) throw ApiError::invalid(where + ".role", "'" + where + ".role' is required");
    const auto content = mf.get("content");  // null: an assistant turn that only called tools
    r.messages.push_back({*role, content ? message_content(*content, i) : std::string()});
    ++i;
  }
}

void read_stop(const Fields& f, CompletionRequest& r) {
  auto e = f.get("stop");
  if (!e) return;
  if (e->is_string()) {
    r.stop.emplace_back(std::string_view(*e));
    return;
  }
  simdjson::dom::array a;
  if (e->get(a) != simdjson::SUCCESS) throw Fields::type_error("stop", "a string or a list of strings");
  if (a.size() > kMaxStopStrings)
    throw ApiError::invalid("stop", "'stop' has " + std::to_string(a.size()) + " strings; at most " +
                                        std::to_string(kMaxStopStrings) + " are allowed");
  for (element s : a) {
    if (!s.is_string()) throw Fields::type_error("stop", "a string or a list of strings");
    r.stop.emplace_back(std::string_view(s));
  }
}

}  // namespace

std::string ApiError::to_json() const {
  JsonWriter j;
  j.begin_object().key("error").begin_object();
  j.field("message", message).field("type", type);
  if (param.empty()) j.null_field("param");
  else j.field("param", param);
  if (code.empty()) j.null_field("code");
  else j.field("code", code);
  j.end_object().end_object();
  return j.str();
}

CompletionRequest parse_completion_request(std::string_view body, bool chat) {
  simdjson::dom::parser parser;
  element root;
  if (const auto error = parser.parse(body.data(), body.size()).get(root); error != simdjson::SUCCESS)
    throw ApiError::invalid("", std::string("the request body is not valid JSON: ") + simdjson::error_message(error));
  simdjson::dom::object object;
  if (root.get(object) != simdjson::SUCCESS) throw ApiError::invalid("", "the request body must be a JSON object");
  const Fields f(object);

  CompletionRequest r;
  r.chat = chat;
  f.string("model");  // any name: the server has one model; only its type is checked
  if (chat) read_messages(f, r);
  else read_prompt(f, r);
  refuse_unsupported(f, chat);

  const char* max_key = "max_tokens";
  auto max_tokens = f.integer(max_key);
  if (!max_tokens) max_tokens = f.integer(max_key = "max_completion_tokens");
  if (max_tokens) {
    if (*max_tokens < 1 || *max_tokens > 1'000'000)
      throw ApiError::invalid(max_key, std::string("'") + max_key + "' must be at least 1 (and at most 1000000)");
    r.max_tokens = int(*max_tokens);
  }
  r.temperature = f.number("temperature");
  check_range(r.temperature, "temperature", 0.0, 2.0);
  r.top_p = f.number("top_p");
  check_range(r.top_p, "top_p", 0.0, 1.0, true);
  r.min_p = f.number("min_p");
  check_range(r.min_p, "min_p", 0.0, 1.0);
  r.repetition_penalty = f.number("repetition_penalty");
  check_range(r.repetition_penalty, "repetition_penalty", 0.0, 100.0, true);
  if (auto k = f.integer("top_k")) {
    if (*k < -1 || *k > 1'000'000) throw ApiError::invalid("top_k", "'top_k' must be -1 or 0 (off) or a positive count");
    r.top_k = int(std::max<int64_t>(*k, 0));
  }
  r.seed = f.integer("seed");
  read_stop(f, r);
  r.stream = f.boolean("stream").value_or(false);
  if (auto e = f.get("stream_options")) {
    simdjson::dom::object o;
    if (e->get(o) != simdjson::SUCCESS) throw Fields::type_error("stream_options", "an object");
    r.include_usage = Fields(o).boolean("include_usage").value_or(false);
  }
  r.ignore_eos = f.boolean("ignore_eos").value_or(false);
  return r;
}

namespace {

void head_fields(JsonWriter& j, const ResponseHead& head, const char* object) {
  j.field("id", head.id).field("object", object).field("created", head.created).field("model", head.model);
}

void usage_field(JsonWriter& j, const Usage& usage) {
  j.key("usage").begin_object();
  j.field("prompt_tokens", usage.prompt_tokens)
      .field("completion_tokens", usage.completion_tokens)
      .field("total_tokens", usage.prompt_tokens + usage.completion_tokens);
  j.key("prompt_tokens_details").begin_object().field("cached_tokens", usage.cached_tokens).end_object();
  j.end_object();
}

}  // namespace

std::string completion_json(const ResponseHead& head, const std::string& text, const std::string& finish_reason,
                            const Usage& usage) {
  JsonWriter j;
  j.begin_object();
  head_fields(j, head, head.chat ? "chat.completion" : "text_completion");
  j.key("choices").begin_array().begin_object().field("index", 0);
  if (head.chat) j.key("message").begin_object().field("role", "assistant").field("content", text).end_object();
  else j.field("text", text);
  j.null_field("logprobs").field("finish_reason", finish_reason).end_object().end_array();
  usage_field(j, usage);
  j.end_object();
  return j.str();
}

std::string chunk_json(const ResponseHead& head, const std::string& text, bool first,
                       const std::optional<std::string>& finish_reason) {
  JsonWriter j;
  j.begin_object();
  head_fields(j, head, head.chat ? "chat.completion.chunk" : "text_completion");
  j.key("choices").begin_array().begin_object().field("index", 0);
  if (head.chat) {
    j.key("delta").begin_object();
    if (first) j.field("role", "assistant");
    if (first || !text.empty()) j.field("content", text);
    j.end_object();
  } else {
    j.field("text", text);
  }
  j.null_field("logprobs");
  if (finish_reason) j.field("finish_reason", *finish_reason);
  else j.null_field("finish_reason");
  j.end_object().end_array().end_object();
  return j.str();
}

std::string usage_chunk_json(const ResponseHead& head, const Usage& usage) {
  JsonWriter j;
  j.begin_object();
  head_fields(j, head, head.chat ? "chat.completion.chunk" : "text_completion");
  j.key("choices").begin_array().end_array();
  usage_field(j, usage);
  j.end_object();
  return j.str();
}

std::string models_json(const std::string& model, int64_t created) {
  JsonWriter j;
  j.begin_object().field("object", "list").key("data").begin_array();
  j.begin_object().field("id", model).field("object", "model").field("created", created).field("owned_by", "inferno");
  j.end_object().end_array().end_object();
  return j.str();
}

}  // namespace inferno::server

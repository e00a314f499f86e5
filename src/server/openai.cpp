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
  if (auto e = f.get("logit_bias")) {
    simdjson::dom::object o;
    if (e->get(o) != simdjson::SUCCESS) throw Fields::type_error("logit_bias", "an object");
    if (o.size() != 0) throw ApiError::invalid("logit_bias", "'logit_bias' is not supported by this server");
  }
  // response_format, tools and tool_choice: server/structured.hpp.
  if (!chat) {
    if (auto echo = f.boolean("echo"); echo && *echo) throw ApiError::invalid("echo", "'echo' is not supported by this server");
    if (auto b = f.integer("best_of"); b && *b != 1 && *b != f.integer("n").value_or(1))
      throw ApiError::invalid("best_of", "'best_of' must equal 'n': this server returns every sequence it makes");
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

// n, the penalties and logprobs, in OpenAI's shapes: chat has logprobs (a boolean) and top_logprobs, completions
// a logprobs count.
void read_choice_fields(const Fields& f, CompletionRequest& r) {
  if (auto n = f.integer("n")) {
    if (*n < 1 || *n > kMaxChoices)
      throw ApiError::invalid("n", "'n' must be in [1, " + std::to_string(kMaxChoices) + "]");
    r.n = int(*n);
  }
  r.presence_penalty = f.number("presence_penalty");
  check_range(r.presence_penalty, "presence_penalty", -2.0, 2.0);
  r.frequency_penalty = f.number("frequency_penalty");
  check_range(r.frequency_penalty, "frequency_penalty", -2.0, 2.0);
  const auto top_count = [](int64_t k, const char* key) {
    if (k < 0 || k > kMaxTopLogprobs)
      throw ApiError::invalid(key, std::string("'") + key + "' must be in [0, " + std::to_string(kMaxTopLogprobs) + "]");
    return int(k);
  };
  if (r.chat) {
    const bool asked = f.boolean("logprobs").value_or(false);
    const auto top = f.integer("top_logprobs");
    if (top && !asked) throw ApiError::invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (asked) r.logprobs = top ? top_count(*top, "top_logprobs") : 0;
  } else {
    if (f.get("top_logprobs"))
      throw ApiError::invalid("top_logprobs", "'top_logprobs' is a chat field; completions take 'logprobs': N");
    if (auto k = f.integer("logprobs")) r.logprobs = top_count(*k, "logprobs");
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
  read_choice_fields(f, r);
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

namespace {

// A log-probability as JSON: a token the model gives no chance has -inf, which JSON cannot hold; vLLM writes
// -9999.0 for it, and so does this.
float json_logprob(float logprob) { return std::isfinite(logprob) ? logprob : -9999.0f; }

void bytes_field(JsonWriter& j, const std::string& bytes) {
  j.key("bytes").begin_array();
  for (unsigned char b : bytes) j.value(int(b));
  j.end_array();
}

// Chat's choices[].logprobs: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}],
// "refusal": null}. `token` is the bytes as text (a piece of a character comes out as U+FFFD), `bytes` exact.
void chat_logprobs(JsonWriter& j, const std::vector<TokenLogprob>& tokens) {
  j.key("logprobs").begin_object().key("content").begin_array();
  for (const TokenLogprob& t : tokens) {
    j.begin_object().field("token", t.bytes).field("logprob", json_logprob(t.logprob));
    bytes_field(j, t.bytes);
    j.key("top_logprobs").begin_array();
    for (const auto& [bytes, logprob] : t.top) {
      j.begin_object().field("token", bytes).field("logprob", json_logprob(logprob));
      bytes_field(j, bytes);
      j.end_object();
    }
    j.end_array().end_object();
  }
  j.end_array().null_field("refusal").end_object();
}

// Completions' choices[].logprobs: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}.
void completion_logprobs(JsonWriter& j, const std::vector<TokenLogprob>& tokens) {
  j.key("logprobs").begin_object();
  j.key("tokens").begin_array();
  for (const TokenLogprob& t : tokens) j.value(t.bytes);
  j.end_array().key("token_logprobs").begin_array();
  for (const TokenLogprob& t : tokens) j.value(json_logprob(t.logprob));
  j.end_array().key("top_logprobs").begin_array();
  for (const TokenLogprob& t : tokens) {
    j.begin_object();
    for (const auto& [bytes, logprob] : t.top) j.field(bytes, json_logprob(logprob));
    j.end_object();
  }
  j.end_array().key("text_offset").begin_array();
  for (const TokenLogprob& t : tokens) j.value(uint64_t(t.text_offset));
  j.end_array().end_object();
}

void logprobs_field(JsonWriter& j, const ResponseHead& head, const Choice& c) {
  if (!c.with_logprobs) j.null_field("logprobs");
  else if (head.chat) chat_logprobs(j, c.logprobs);
  else completion_logprobs(j, c.logprobs);
}

// "tool_calls": [...] of a message, or of a stream chunk's delta, which numbers the calls ("index").
void tool_calls_field(JsonWriter& j, const std::vector<ToolCall>& calls, bool indexed) {
  j.key("tool_calls").begin_array();
  for (size_t i = 0; i < calls.size(); ++i) {
    j.begin_object();
    if (indexed) j.field("index", int64_t(i));
    j.field("id", calls[i].id).field("type", "function");
    j.key("function").begin_object().field("name", calls[i].name).field("arguments", calls[i].arguments).end_object();
    j.end_object();
  }
  j.end_array();
}

}  // namespace

std::string completion_json(const ResponseHead& head, const std::vector<Choice>& choices, const Usage& usage) {
  JsonWriter j;
  j.begin_object();
  head_fields(j, head, head.chat ? "chat.completion" : "text_completion");
  j.key("choices").begin_array();
  for (const Choice& c : choices) {
    j.begin_object().field("index", c.index);
    if (head.chat && !c.tool_calls.empty()) {
      j.key("message").begin_object().field("role", "assistant").null_field("content");
      tool_calls_field(j, c.tool_calls, false);
      j.end_object();
    } else if (head.chat) {
      j.key("message").begin_object().field("role", "assistant").field("content", c.text).end_object();
    } else {
      j.field("text", c.text);
    }
    logprobs_field(j, head, c);
    j.field("finish_reason", c.finish_reason.value_or("stop")).end_object();
  }
  j.end_array();
  usage_field(j, usage);
  j.end_object();
  return j.str();
}

std::string chunk_json(const ResponseHead& head, const Choice& delta, bool first) {
  JsonWriter j;
  j.begin_object();
  head_fields(j, head, head.chat ? "chat.completion.chunk" : "text_completion");
  j.key("choices").begin_array().begin_object().field("index", delta.index);
  if (head.chat) {
    j.key("delta").begin_object();
    if (first) j.field("role", "assistant");
    if (!delta.tool_calls.empty()) tool_calls_field(j, delta.tool_calls, true);
    else if (first || !delta.text.empty()) j.field("content", delta.text);
    j.end_object();
  } else {
    j.field("text", delta.text);
  }
  if (delta.logprobs.empty()) j.null_field("logprobs");
  else logprobs_field(j, head, delta);
  if (delta.finish_reason) j.field("finish_reason", *delta.finish_reason);
  else j.null_field("finish_reason");
  j.end_object().end_array().end_object();
  return j.str();
}

TokenizeRequest parse_tokenize_request(std::string_view body) {
  simdjson::dom::parser parser;
  element root;
  simdjson::dom::object object;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS || root.get(object) != simdjson::SUCCESS)
    throw ApiError::invalid("", "the request body must be a JSON object");
  const Fields f(object);
  TokenizeRequest r;
  auto content = f.string("content");
  if (!content) throw ApiError::invalid("content", "'content' is required");
  r.content = std::move(*content);
  r.add_special = f.boolean("add_special").value_or(false);
  return r;
}

std::vector<int32_t> parse_detokenize_request(std::string_view body, uint32_t vocab_size) {
  simdjson::dom::parser parser;
  element root;
  simdjson::dom::object object;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS || root.get(object) != simdjson::SUCCESS)
    throw ApiError::invalid("", "the request body must be a JSON object");
  auto e = Fields(object).get("tokens");
  if (!e) throw ApiError::invalid("tokens", "'tokens' is required");
  simdjson::dom::array a;
  if (e->get(a) != simdjson::SUCCESS) throw Fields::type_error("tokens", "a list of token ids");
  std::vector<int32_t> ids;
  for (element t : a) {
    if (!t.is_int64() || int64_t(t) < 0 || int64_t(t) >= int64_t(vocab_size))
      throw ApiError::invalid("tokens", "'tokens' must hold token ids in [0, " + std::to_string(vocab_size) + ")");
    ids.push_back(int32_t(int64_t(t)));
  }
  return ids;
}

std::string tokenize_json(const std::vector<int32_t>& ids) {
  JsonWriter j;
  j.begin_object().key("tokens").begin_array();
  for (int32_t id : ids) j.value(int(id));
  j.end_array().end_object();
  return j.str();
}

std::string detokenize_json(const std::string& text) {
  JsonWriter j;
  j.begin_object().field("content", text).end_object();
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

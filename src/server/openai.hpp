#pragma once
// OpenAI's HTTP API as inferno serves it: the request bodies of /v1/completions and /v1/chat/completions, checked
// field by field, and the JSON of responses, stream chunks and errors.
//
// Fields read (others are ignored): model (any string: the server has one model), prompt (completions: a string,
// a list of token ids, or a list holding one of those), messages (chat: {role, content} with content a string or
// a list of {"type": "text", "text"} parts), max_tokens / max_completion_tokens, temperature (0: greedy), top_p,
// seed, stop (a string or a list of up to 16), n (1..16 choices), presence_penalty / frequency_penalty ([-2, 2]),
// logprobs (chat: true with top_logprobs 0..20; completions: 0..20), stream, stream_options.include_usage.
// Extensions as in vLLM and llama.cpp: top_k, min_p, repetition_penalty, ignore_eos. Refused with 400 rather than
// silently ignored: echo, best_of other than n, suffix, logit_bias. response_format, tools and tool_choice are read
// by server/structured.hpp. Also llama.cpp's /tokenize and /detokenize bodies.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "inferno/inferno.hpp"

namespace inferno::server {

// A request the server refuses, in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault, "" for none
  std::string code;   // "" for none

  static ApiError invalid(std::string param, std::string message) {
    return {400, std::move(message), "invalid_request_error", std::move(param), ""};
  }
  std::string to_json() const;
};

struct CompletionRequest {
  bool chat = false;
  std::vector<ChatMessage> messages;      // chat
  std::optional<std::string> prompt_text;  // completions: text to tokenize ...
  std::vector<int32_t> prompt_ids;         // ... or token ids
  std::optional<int> max_tokens;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false, ignore_eos = false;
  int n = 1;                                // choices
  std::optional<double> presence_penalty, frequency_penalty;
  int logprobs = -1;                        // -1: none; k: each token's and the k most likely (top_logprobs)
};

constexpr int kMaxChoices = 16;      // n
constexpr int kMaxTopLogprobs = 20;  // top_logprobs (chat) and logprobs (completions), as OpenAI's chat and vLLM

// Parses and checks a request body; throws ApiError naming the field at fault.
CompletionRequest parse_completion_request(std::string_view body, bool chat);

// llama.cpp's /tokenize: {"content": "...", "add_special": false} → ids; /detokenize: {"tokens": [...]} → text.
struct TokenizeRequest {
  std::string content;
  bool add_special = false;
};
TokenizeRequest parse_tokenize_request(std::string_view body);
std::vector<int32_t> parse_detokenize_request(std::string_view body, uint32_t vocab_size);
std::string tokenize_json(const std::vector<int32_t>& ids);   // {"tokens": [...]}
std::string detokenize_json(const std::string& text);         // {"content": "..."}

// The response pieces. `id` names the completion ("cmpl-..." / "chatcmpl-..."), `created` is Unix seconds.
struct ResponseHead {
  std::string id, model;
  int64_t created = 0;
  bool chat = false;
};
struct Usage {
  int prompt_tokens = 0, completion_tokens = 0;
  int cached_tokens = 0;  // usage.prompt_tokens_details.cached_tokens: prompt tokens from the prefix cache
};
// One generated token with its log-probabilities (log-softmax of the model's raw logits at its position).
struct TokenLogprob {
  std::string bytes;        // what the token stands for in the text (maybe part of a UTF-8 character)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // the most likely tokens' bytes and log-probabilities
  size_t text_offset = 0;   // characters of the choice's text before this token (completions' text_offset)
};
// A function call the model answered with (tools): OpenAI's tool_calls[i].
struct ToolCall {
  std::string id;         // "call_" and 16 random hex digits
  std::string name;
  std::string arguments;  // a JSON object as text, as OpenAI sends it
};
// One choice of a response, or what a stream chunk adds to it.
struct Choice {
  int index = 0;
  std::string text;
  std::optional<std::string> finish_reason;  // set when the choice has ended
  bool with_logprobs = false;                // logprobs asked for: the "logprobs" object, else null
  std::vector<TokenLogprob> logprobs;
  // A chat choice whose text was calls of the request's tools: its message has these instead of content (null), and
  // its finish_reason is "tool_calls".
  std::vector<ToolCall> tool_calls;
};
std::string completion_json(const ResponseHead& head, const std::vector<Choice>& choices, const Usage& usage);
// One stream chunk. For chat, the first chunk of each choice carries the role; a finish_reason ends the choice; a
// delta with tool_calls carries them whole (name and all arguments) as delta.tool_calls, each with its index.
std::string chunk_json(const ResponseHead& head, const Choice& delta, bool first);
// The last chunk when stream_options.include_usage: no choices, the usage.
std::string usage_chunk_json(const ResponseHead& head, const Usage& usage);
std::string models_json(const std::string& model, int64_t created);

}  // namespace inferno::server

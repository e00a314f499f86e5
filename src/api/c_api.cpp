// The C API (include/inferno/inferno.h) over the C++ API: handles own C++ objects, every entry point catches
// everything and turns it into a status and a thread-local message.
#include "inferno/inferno.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "inferno/inferno.hpp"

// A model handle shares its Model with the sessions made from it: inferno_model_free and inferno_session_free may
// come in either order, and the model goes with the last of them.
struct inferno_model {
  std::shared_ptr<inferno::Model> shared;
  inferno::Model& model;
};

struct inferno_session {
  std::shared_ptr<inferno::Model> model;
  inferno::Session session;
};

// The engine keeps the model's shared state alive itself; the handle's shared_ptr keeps the C++ Model the engine
// was made from (it takes a reference) until the engine has gone.
struct inferno_engine {
  std::shared_ptr<inferno::Model> model;
  std::unique_ptr<inferno::Engine> engine;
  ~inferno_engine() { engine.reset(); }  // before `model`
};

namespace {

thread_local std::string last_error;

// A failure that already knows its status (argument checks, sizes, missing things).
struct StatusError {
  inferno_status status;
  std::string message;
};

// Runs body, turning whatever it throws into a status; the message goes to last_error.
template <class Body>
inferno_status guarded(Body&& body) noexcept {
  try {
    last_error.clear();
    body();
    return INFERNO_OK;
  } catch (const StatusError& e) {
    last_error = e.message;
    return e.status;
  } catch (const inferno::OutOfDeviceMemory& e) {
    last_error = e.what();
    return INFERNO_ERROR_OUT_OF_MEMORY;
  } catch (const inferno::Cancelled& e) {
    last_error = e.what();
    return INFERNO_ERROR_CANCELLED;
  } catch (const inferno::Error& e) {
    last_error = e.what();
    return INFERNO_ERROR_FAILED;
  } catch (const std::bad_alloc&) {
    last_error = "out of host memory";
    return INFERNO_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    last_error = std::string("internal error: ") + e.what();
    return INFERNO_ERROR_INTERNAL;
  } catch (...) {
    last_error = "internal error: an unknown exception";
    return INFERNO_ERROR_INTERNAL;
  }
}

// The value of an enum field a C caller filled: any int may be there, and reading one outside the enumerators
// through the enum type is undefined in C++, so it is read as the int it is.
template <class Enum>
int enum_value(const Enum& e) {
  static_assert(sizeof(Enum) == sizeof(int));
  int v = 0;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

void require(bool ok, const char* what) {
  if (!ok) throw StatusError{INFERNO_ERROR_INVALID_ARGUMENT, what};
}

template <class T>
T& need(T* handle, const char* name) {
  if (!handle) throw StatusError{INFERNO_ERROR_INVALID_ARGUMENT, std::string(name) + " is NULL"};
  return *handle;
}

void copy_truncated(char* dst, size_t capacity, const std::string& src) {
  const size_t n = std::min(src.size(), capacity - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

// Writes a text result (NUL-terminated) or reports the size it needs.
void write_text(const std::string& text, char* out, size_t capacity, size_t* length) {
  require(length != nullptr, "text_length is NULL");
  require(out != nullptr || capacity == 0, "the text buffer is NULL but its capacity is not 0");
  *length = text.size();
  if (capacity < text.size() + 1)
    throw StatusError{INFERNO_ERROR_BUFFER_TOO_SMALL, "the text needs " + std::to_string(text.size() + 1) +
                                                          " bytes with its NUL; the buffer has " + std::to_string(capacity)};
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
}

void write_ids(const std::vector<int32_t>& ids, int32_t* out, size_t capacity, size_t* count) {
  require(count != nullptr, "count is NULL");
  require(out != nullptr || capacity == 0, "the id buffer is NULL but its capacity is not 0");
  *count = ids.size();
  if (capacity < ids.size())
    throw StatusError{INFERNO_ERROR_BUFFER_TOO_SMALL, "the result has " + std::to_string(ids.size()) +
                                                          " ids; the buffer has room for " + std::to_string(capacity)};
  std::copy(ids.begin(), ids.end(), out);
}

const inferno::Model& text_model(const inferno_model* model) {
  const inferno::Model& m = need(model, "model").model;
  if (!m.has_tokenizer())
    throw StatusError{INFERNO_ERROR_UNSUPPORTED, (m.info().path / "tokenizer.json").string() + ": the model has no tokenizer"};
  return m;
}

inferno::SamplingOptions to_cpp(const inferno_sampling& s) {
  inferno::SamplingOptions o;
  o.do_sample = s.do_sample != 0;
  o.temperature = s.temperature;
  o.top_k = s.top_k;
  o.top_p = s.top_p;
  o.min_p = s.min_p;
  o.typical_p = s.typical_p;
  o.repetition_penalty = s.repetition_penalty;
  o.no_repeat_ngram_size = s.no_repeat_ngram_size;
  o.min_new_tokens = s.min_new_tokens;
  o.seed = s.seed;
  return o;
}

inferno_sampling to_c(const inferno::SamplingOptions& o) {
  inferno_sampling s;
  s.do_sample = o.do_sample ? 1 : 0;
  s.temperature = o.temperature;
  s.top_k = o.top_k;
  s.top_p = o.top_p;
  s.min_p = o.min_p;
  s.typical_p = o.typical_p;
  s.repetition_penalty = o.repetition_penalty;
  s.no_repeat_ngram_size = o.no_repeat_ngram_size;
  s.min_new_tokens = o.min_new_tokens;
  s.seed = o.seed;
  return s;
}

inferno::KvDtype kv_dtype_of(const inferno_kv_dtype& value) {
  const int kv_dtype = enum_value(value);
  switch (kv_dtype) {
    case INFERNO_KV_AUTO: return inferno::KvDtype::Auto;
    case INFERNO_KV_F32: return inferno::KvDtype::F32;
    case INFERNO_KV_F16: return inferno::KvDtype::F16;
    case INFERNO_KV_BF16: return inferno::KvDtype::BF16;
    case INFERNO_KV_Q8: return inferno::KvDtype::Q8;
    default: break;
  }
  throw StatusError{INFERNO_ERROR_INVALID_ARGUMENT, "kv_dtype " + std::to_string(kv_dtype) + " is not one of inferno_kv_dtype"};
}

// Checks a prompt against the vocabulary (what inferno_generate and inferno_engine_submit take).
void check_prompt(const inferno::Model& model, const int32_t* prompt, size_t count) {
  require(prompt != nullptr && count > 0, "the prompt is empty (NULL or count 0)");
  const uint32_t vocab = model.info().vocab_size;
  for (size_t i = 0; i < count; ++i)
    if (prompt[i] < 0 || uint32_t(prompt[i]) >= vocab)
      throw StatusError{INFERNO_ERROR_INVALID_ARGUMENT, "prompt id " + std::to_string(prompt[i]) + " at " +
                                                            std::to_string(i) + " is outside the vocabulary (" +
                                                            std::to_string(vocab) + " ids)"};
}

// The C++ generation options of C parameters.
inferno::GenerateOptions generate_options(const inferno_generate_params& p) {
  require(p.max_new_tokens >= 0, "max_new_tokens must not be negative");
  require(p.eos_ids != nullptr || p.eos_count == 0, "eos_ids is NULL but eos_count is not 0");
  inferno::GenerateOptions options;
  options.max_new_tokens = p.max_new_tokens;
  options.ignore_eos = p.ignore_eos != 0;
  if (p.eos_ids) options.eos_ids = std::vector<int32_t>(p.eos_ids, p.eos_ids + p.eos_count);
  options.sampling = to_cpp(p.sampling);
  return options;
}

// One engine request's C side: its callbacks, its text stream, and whether its token callback stopped it. Shared
// by the C++ request's two callbacks, which run on the engine's thread.
struct EngineRequestState {
  inferno_token_fn on_token = nullptr;
  inferno_finish_fn on_finish = nullptr;
  void* user_data = nullptr;
  std::optional<inferno::TextStream> stream;
  bool stopped = false;
  std::vector<int32_t> eos;
  bool ignore_eos = false;
};

inferno_finish_reason finish_reason_of(const inferno::EngineResult& r, const EngineRequestState& s) {
  if (r.finish_reason == "error") return INFERNO_FINISH_ERROR;
  if (r.finish_reason == "cancelled" || s.stopped) return INFERNO_FINISH_CANCELLED;
  if (r.finish_reason == "length") return INFERNO_FINISH_LENGTH;
  const bool eos = !s.ignore_eos && !r.tokens.empty() &&
                   std::find(s.eos.begin(), s.eos.end(), r.tokens.back()) != s.eos.end();
  return eos ? INFERNO_FINISH_EOS : INFERNO_FINISH_LENGTH;
}

// The latest device listing, for inferno_device_info.
std::mutex listing_mutex;
std::optional<std::vector<inferno::DeviceInfo>> listing;

}  // namespace

extern "C" {

const char* inferno_version(void) { return INFERNO_VERSION_STRING; }

const char* inferno_last_error(void) { return last_error.c_str(); }

const char* inferno_status_name(inferno_status status) {
  switch (status) {
    case INFERNO_OK: return "INFERNO_OK";
    case INFERNO_ERROR_INVALID_ARGUMENT: return "INFERNO_ERROR_INVALID_ARGUMENT";
    case INFERNO_ERROR_NOT_FOUND: return "INFERNO_ERROR_NOT_FOUND";
    case INFERNO_ERROR_BUFFER_TOO_SMALL: return "INFERNO_ERROR_BUFFER_TOO_SMALL";
    case INFERNO_ERROR_CANCELLED: return "INFERNO_ERROR_CANCELLED";
    case INFERNO_ERROR_UNSUPPORTED: return "INFERNO_ERROR_UNSUPPORTED";
    case INFERNO_ERROR_OUT_OF_MEMORY: return "INFERNO_ERROR_OUT_OF_MEMORY";
    case INFERNO_ERROR_FAILED: return "INFERNO_ERROR_FAILED";
    case INFERNO_ERROR_INTERNAL: return "INFERNO_ERROR_INTERNAL";
  }
  return "INFERNO_STATUS_UNKNOWN";
}

// ---- devices ----

inferno_status inferno_device_count(int* count) {
  return guarded([&] {
    require(count != nullptr, "count is NULL");
    auto devices = inferno::list_devices();
    *count = int(devices.size());
    std::lock_guard lock(listing_mutex);
    listing = std::move(devices);
  });
}

inferno_status inferno_device_info(int index, inferno_device* device) {
  return guarded([&] {
    require(device != nullptr, "device is NULL");
    std::lock_guard lock(listing_mutex);
    if (!listing) listing = inferno::list_devices();
    if (index < 0 || size_t(index) >= listing->size())
      throw StatusError{INFERNO_ERROR_INVALID_ARGUMENT, "device index " + std::to_string(index) + " is out of range (" +
                                                            std::to_string(listing->size()) + " device(s))"};
    const inferno::DeviceInfo& d = (*listing)[size_t(index)];
    *device = inferno_device{};
    device->index = d.index;
    copy_truncated(device->name, sizeof device->name, d.name);
    copy_truncated(device->type, sizeof device->type, d.type);
    device->memory_bytes = d.memory_bytes;
    device->chosen = d.chosen ? 1 : 0;
  });
}

// ---- models ----

inferno_model_params inferno_model_default_params(void) {
  inferno_model_params p;
  p.device = -1;
  p.progress_bar = 0;
  p.progress = nullptr;
  p.progress_user_data = nullptr;
  p.devices = nullptr;
  p.device_count = 0;
  p.split = nullptr;
  return p;
}

inferno_status inferno_model_load(const char* path, const inferno_model_params* params, inferno_model** model) {
  return guarded([&] {
    need(model, "model") = nullptr;  // NULL in *model on every failure
    require(path != nullptr, "path is NULL");
    const inferno_model_params p = params ? *params : inferno_model_default_params();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      throw StatusError{INFERNO_ERROR_NOT_FOUND, std::string(path) + ": no such file or directory"};
    inferno::ModelOptions options;
    options.device = p.device;
    options.quiet = !p.progress_bar;
    require(p.device_count == 0 || p.devices != nullptr, "params->devices is NULL but device_count is not 0");
    require(p.device_count <= 64, "params->device_count is more than 64");
    if (p.device_count > 0) options.devices.assign(p.devices, p.devices + p.device_count);
    if (p.split) {
      require(p.device_count > 0, "params->split is given without params->devices");
      options.split.assign(p.split, p.split + p.device_count);
    }
    if (p.progress)
      options.on_progress = [&p](float fraction) { return p.progress(fraction, p.progress_user_data) == 0; };
    auto shared = std::make_shared<inferno::Model>(inferno::Model::load(path, options));
    *model = new inferno_model{shared, *shared};
  });
}

void inferno_model_free(inferno_model* model) { delete model; }

inferno_status inferno_model_describe(const inferno_model* model, inferno_model_desc* desc) {
  return guarded([&] {
    const inferno::Model& m = need(model, "model").model;
    require(desc != nullptr, "desc is NULL");
    const inferno::ModelInfo& i = m.info();
    *desc = inferno_model_desc{};
    copy_truncated(desc->family, sizeof desc->family, i.family);
    desc->layers = i.layers;
    desc->hidden_size = i.hidden_size;
    desc->heads = i.heads;
    desc->kv_heads = i.kv_heads;
    desc->head_dim = i.head_dim;
    desc->vocab_size = i.vocab_size;
    desc->max_position_embeddings = i.max_position_embeddings;
    desc->params = i.params;
    desc->weight_bytes = i.weight_bytes;
    desc->has_tokenizer = m.has_tokenizer() ? 1 : 0;
    desc->has_chat_template = m.has_chat_template() ? 1 : 0;
    copy_truncated(desc->device_name, sizeof desc->device_name, m.device().name);
  });
}

inferno_status inferno_model_eos_ids(const inferno_model* model, int32_t* ids, size_t capacity, size_t* count) {
  return guarded([&] { write_ids(need(model, "model").model.eos_ids(), ids, capacity, count); });
}

// ---- text ----

inferno_status inferno_tokenize(const inferno_model* model, const char* text, size_t text_length,
                                int add_special_tokens, int32_t* ids, size_t capacity, size_t* count) {
  return guarded([&] {
    require(text != nullptr || text_length == 0, "text is NULL but text_length is not 0");
    const inferno::Model& m = text_model(model);
    const std::string input = text ? std::string(text, text_length) : std::string();
    write_ids(m.tokenize(input, add_special_tokens != 0), ids, capacity, count);
  });
}

inferno_status inferno_detokenize(const inferno_model* model, const int32_t* ids, size_t count,
                                  int skip_special_tokens, char* text, size_t capacity, size_t* text_length) {
  return guarded([&] {
    require(ids != nullptr || count == 0, "ids is NULL but count is not 0");
    const inferno::Model& m = text_model(model);
    const std::vector<int32_t> input(ids, ids + count);
    write_text(m.detokenize(input, skip_special_tokens != 0), text, capacity, text_length);
  });
}

inferno_status inferno_chat_render(const inferno_model* model, const inferno_chat_message* messages, size_t count,
                                   int add_generation_prompt, const char* template_source, char* text,
                                   size_t capacity, size_t* text_length) {
  return guarded([&] {
    const inferno::Model& m = need(model, "model").model;
    require(messages != nullptr || count == 0, "messages is NULL but count is not 0");
    std::vector<inferno::ChatMessage> list;
    for (size_t i = 0; i < count; ++i) {
      if (!messages[i].role || !messages[i].content)
        throw StatusError{INFERNO_ERROR_INVALID_ARGUMENT, "message " + std::to_string(i) + ": role or content is NULL"};
      list.push_back({messages[i].role, messages[i].content});
    }
    if (!template_source && !m.has_chat_template())
      throw StatusError{INFERNO_ERROR_UNSUPPORTED,
                        (m.info().path / "tokenizer_config.json").string() + ": the model has no chat_template"};
    std::optional<std::string> source;
    if (template_source) source = template_source;
    write_text(m.render_chat(list, add_generation_prompt != 0, source), text, capacity, text_length);
  });
}

// ---- generation ----

inferno_sampling inferno_sampling_defaults(void) { return to_c(inferno::SamplingOptions{}); }

inferno_status inferno_model_sampling_defaults(const inferno_model* model, inferno_sampling* sampling) {
  return guarded([&] {
    const inferno::Model& m = need(model, "model").model;
    require(sampling != nullptr, "sampling is NULL");
    *sampling = to_c(inferno::default_sampling(m));
  });
}

inferno_session_params inferno_session_default_params(void) {
  inferno_session_params p;
  p.ctx = 0;
  p.kv_dtype = INFERNO_KV_AUTO;
  return p;
}

inferno_status inferno_session_create(inferno_model* model, const inferno_session_params* params,
                                      inferno_session** session) {
  return guarded([&] {
    need(session, "session") = nullptr;  // NULL in *session on every failure
    inferno_model& owner = need(model, "model");
    const inferno_session_params p = params ? *params : inferno_session_default_params();
    inferno::SessionOptions options;
    options.ctx = p.ctx;
    options.kv_dtype = kv_dtype_of(p.kv_dtype);
    *session = new inferno_session{owner.shared, inferno::Session(owner.model, options)};
  });
}

void inferno_session_free(inferno_session* session) {
  try {
    delete session;
  } catch (...) {  // a session's destructor waits for the device; nothing may escape into C
  }
}

inferno_generate_params inferno_generate_default_params(void) {
  inferno_generate_params p;
  p.max_new_tokens = 20;
  p.ignore_eos = 0;
  p.eos_ids = nullptr;
  p.eos_count = 0;
  p.skip_special_tokens = 1;
  p.sampling = inferno_sampling_defaults();
  p.on_token = nullptr;
  p.user_data = nullptr;
  return p;
}

inferno_status inferno_generate(inferno_session* session, const int32_t* prompt, size_t count,
                                const inferno_generate_params* params, int32_t* ids, size_t capacity,
                                inferno_generate_result* result) {
  return guarded([&] {
    inferno_session& s = need(session, "session");
    require(prompt != nullptr && count > 0, "the prompt is empty (NULL or count 0)");
    const inferno_generate_params p = params ? *params : inferno_generate_default_params();
    require(p.max_new_tokens >= 0, "max_new_tokens must not be negative");
    if (ids && capacity < size_t(p.max_new_tokens))
      throw StatusError{INFERNO_ERROR_BUFFER_TOO_SMALL, "the id buffer has room for " + std::to_string(capacity) +
                                                            " ids, less than max_new_tokens " +
                                                            std::to_string(p.max_new_tokens)};
    const inferno::Model& model = *s.model;
    const uint32_t vocab = model.info().vocab_size;
    for (size_t i = 0; i < count; ++i)
      if (prompt[i] < 0 || uint32_t(prompt[i]) >= vocab)
        throw StatusError{INFERNO_ERROR_INVALID_ARGUMENT, "prompt id " + std::to_string(prompt[i]) + " at " +
                                                              std::to_string(i) + " is outside the vocabulary (" +
                                                              std::to_string(vocab) + " ids)"};
    inferno::GenerateOptions options;
    options.max_new_tokens = p.max_new_tokens;
    options.ignore_eos = p.ignore_eos != 0;
    if (p.eos_ids) options.eos_ids = std::vector<int32_t>(p.eos_ids, p.eos_ids + p.eos_count);
    options.sampling = to_cpp(p.sampling);

    std::optional<inferno::TextStream> stream;
    if (p.on_token && model.has_tokenizer()) stream.emplace(model, p.skip_special_tokens != 0);
    bool cancelled = false;
    std::function<bool(int32_t)> on_token;
    if (p.on_token)
      on_token = [&](int32_t token) {
        const std::string piece = stream ? stream->push(token) : std::string();
        cancelled = p.on_token(token, piece.c_str(), piece.size(), p.user_data) != 0;
        return !cancelled;
      };
    const std::vector<int32_t> out = s.session.generate(std::vector<int32_t>(prompt, prompt + count), options, on_token);
    if (stream) {
      const std::string rest = stream->finish();
      if (!rest.empty()) p.on_token(-1, rest.c_str(), rest.size(), p.user_data);
    }
    if (ids) std::copy(out.begin(), out.end(), ids);
    if (result) {
      const std::vector<int32_t> eos = options.eos_ids ? *options.eos_ids : model.eos_ids();
      const bool ended_at_eos = !options.ignore_eos && !out.empty() &&
                                std::find(eos.begin(), eos.end(), out.back()) != eos.end();
      const auto& stats = s.session.stats();
      *result = inferno_generate_result{};
      result->new_tokens = out.size();
      result->finish_reason = cancelled ? INFERNO_FINISH_CANCELLED : ended_at_eos ? INFERNO_FINISH_EOS : INFERNO_FINISH_LENGTH;
      result->prompt_tokens = stats.prompt_tokens;
      result->reused_tokens = stats.reused_tokens;
      result->prefill_seconds = stats.prefill_seconds;
      result->decode_seconds = stats.decode_seconds;
    }
  });
}

inferno_engine_params inferno_engine_default_params(void) {
  const inferno::EngineOptions d;  // the C++ API's defaults: one set of them
  inferno_engine_params p;
  p.parallel = d.parallel;
  p.ctx = d.ctx;
  p.kv_budget_bytes = d.kv_budget_bytes;
  p.kv_budget_share = d.kv_budget_share;
  p.batch_tokens = d.batch_tokens;
  p.kv_dtype = INFERNO_KV_AUTO;  // d.kv_dtype, KvDtype::Auto
  p.prefix_cache = d.prefix_cache ? 1 : 0;
  return p;
}

inferno_status inferno_engine_create(inferno_model* model, const inferno_engine_params* params,
                                     inferno_engine** engine) {
  return guarded([&] {
    need(engine, "engine") = nullptr;  // NULL in *engine on every failure
    inferno_model& owner = need(model, "model");
    const inferno_engine_params p = params ? *params : inferno_engine_default_params();
    require(p.parallel >= 1, "parallel must be at least 1");
    require(p.batch_tokens >= 1, "batch_tokens must be at least 1");
    require(p.kv_budget_share == 0 || (p.kv_budget_share > 0 && p.kv_budget_share <= 1),
            "kv_budget_share must be 0 (off) or above 0 and at most 1");
    inferno::EngineOptions o;
    o.parallel = p.parallel;
    o.ctx = p.ctx;
    o.kv_budget_bytes = p.kv_budget_bytes;
    o.kv_budget_share = p.kv_budget_share;
    o.batch_tokens = p.batch_tokens;
    o.kv_dtype = kv_dtype_of(p.kv_dtype);
    o.prefix_cache = p.prefix_cache != 0;
    auto handle = std::make_unique<inferno_engine>();
    handle->model = owner.shared;
    handle->engine = std::make_unique<inferno::Engine>(*owner.shared, o);
    *engine = handle.release();
  });
}

void inferno_engine_free(inferno_engine* engine) {
  try {
    delete engine;
  } catch (...) {  // the engine's destructor waits for its thread and the device; nothing may escape into C
  }
}

inferno_status inferno_engine_submit(inferno_engine* engine, const int32_t* prompt, size_t count,
                                     const inferno_generate_params* params, inferno_finish_fn on_finish, uint64_t* id) {
  return guarded([&] {
    inferno_engine& e = need(engine, "engine");
    const inferno::Model& model = *e.model;
    check_prompt(model, prompt, count);
    const inferno_generate_params p = params ? *params : inferno_generate_default_params();
    const inferno::GenerateOptions options = generate_options(p);
    auto state = std::make_shared<EngineRequestState>();
    state->on_token = p.on_token;
    state->on_finish = on_finish;
    state->user_data = p.user_data;
    state->ignore_eos = options.ignore_eos;
    state->eos = options.eos_ids ? *options.eos_ids : model.eos_ids();
    if (p.on_token && model.has_tokenizer()) state->stream.emplace(model, p.skip_special_tokens != 0);
    inferno::EngineRequest request;
    request.prompt.assign(prompt, prompt + count);
    request.options = options;
    if (p.on_token)
      request.on_token = [state](int32_t token) {
        const std::string piece = state->stream ? state->stream->push(token) : std::string();
        state->stopped = state->on_token(token, piece.c_str(), piece.size(), state->user_data) != 0;
        return !state->stopped;
      };
    request.on_finish = [state](const inferno::EngineResult& r) {
      if (state->stream && state->on_token) {
        const std::string rest = state->stream->finish();
        if (!rest.empty()) state->on_token(-1, rest.c_str(), rest.size(), state->user_data);
      }
      if (!state->on_finish) return;
      inferno_request_result c{};
      c.id = r.id;
      c.finish_reason = finish_reason_of(r, *state);
      c.tokens = r.tokens.data();
      c.new_tokens = r.tokens.size();
      c.prompt_tokens = r.prompt_tokens;
      c.cached_tokens = r.cached_tokens;
      c.first_token_seconds = r.first_token_seconds;
      c.seconds = r.seconds;
      c.error = r.error.c_str();
      state->on_finish(&c, state->user_data);
    };
    const uint64_t request_id = e.engine->submit(std::move(request));
    if (id) *id = request_id;
  });
}

inferno_status inferno_engine_cancel(inferno_engine* engine, uint64_t id) {
  return guarded([&] { need(engine, "engine").engine->cancel(id); });
}

inferno_status inferno_engine_get_counts(const inferno_engine* engine, inferno_engine_counts* counts) {
  return guarded([&] {
    const inferno::Engine& e = *need(engine, "engine").engine;
    require(counts != nullptr, "counts is NULL");
    counts->running = e.running();
    counts->waiting = e.waiting();
    counts->kv_blocks = e.kv_blocks();
    counts->kv_blocks_in_use = e.kv_blocks_in_use();
    counts->kv_block_tokens = e.kv_block_tokens();
  });
}

}  // extern "C"

// inferno::Engine: the public face of continuous batching (generate/scheduler.hpp).
#include <algorithm>
#include <cctype>
#include <future>

#include "api/model_access.hpp"
#include "generate/scheduler.hpp"
#include "model/forward.hpp"
#include "util/error.hpp"

namespace inferno {

namespace {

TokenLogprobs to_logprobs(const gen::TokenLogprobs& l) { return {l.logprob, l.top}; }

EngineResult to_result(const gen::RequestResult& r) {
  EngineResult out{r.tokens, gen::finish_reason_name(r.reason), r.error, r.prompt_tokens, r.cached_tokens,
                   r.first_token_seconds, r.seconds, {}, r.id};
  for (const auto& l : r.logprobs) out.logprobs.push_back(to_logprobs(l));
  return out;
}

}  // namespace

// The shared state of the model an Engine runs; a moved-from Model has none.
std::shared_ptr<Model::Impl> need_state(const std::shared_ptr<Model::Impl>& impl) {
  if (!impl) throw Error("Engine: the Model was moved from (it holds no model any more)");
  return impl;
}

struct Engine::Impl {
  Model model;  // a second handle on the model's shared state: the engine keeps it alive (as a Session does)
  uint32_t ctx = 0;
  kernels::KvType kv_type;
  std::unique_ptr<model::PagedKvCache> pool;
  std::unique_ptr<gen::BatchEngine> engine;

  gen::GenerateOptions engine_options(const GenerateOptions& o) const {
    gen::GenerateOptions g = api::engine_options(o, model.eos_ids());
    g.grammar = api::grammar_constraint(model.impl(), o.json_schema);
    return g;
  }
};

KvBudget parse_kv_budget(const std::string& text) {
  const std::string bad = "--kv-budget '" + text + "' is neither a share of free device memory (e.g. 50%) nor a size "
                          "(e.g. 2G, 512M)";
  if (!text.empty() && text.back() == '%') {
    const std::string number = text.substr(0, text.size() - 1);
    double pct = -1;
    try {
      size_t used = 0;
      pct = std::stod(number, &used);
      if (used != number.size() || number.empty() || !std::isdigit(static_cast<unsigned char>(number[0]))) pct = -1;
    } catch (const std::exception&) {
      pct = -1;
    }
    if (!(pct > 0 && pct <= 100)) throw Error(bad + ": the share must be above 0% and at most 100%");
    return {.bytes = 0, .share = pct / 100};
  }
  std::vector<uint64_t> sizes;
  try {
    sizes = parse_memory_sizes(text);
  } catch (const Error&) {
    throw Error(bad);
  }
  if (sizes.size() != 1 || sizes[0] == 0) throw Error(bad);
  return {.bytes = sizes[0], .share = 0};
}

Engine::Engine(Model& model, const EngineOptions& o) : impl_(std::make_unique<Impl>(Impl{Model(need_state(model.impl_)), 0, {}, {}, {}})) {
  const model::LlamaModel& llama = api::llama_of(model);
  const auto& h = llama.hyper();
  if (o.parallel == 0) throw Error("--parallel must be at least 1");
  impl_->ctx = o.ctx ? o.ctx : std::min<uint32_t>(h.max_position_embeddings, 4096);
  impl_->kv_type = api::kv_type(o.kv_dtype, llama);
  const uint32_t bs = model::PagedKvCache::kDefaultBlockSize;
  const uint64_t per_block = model::PagedKvCache::bytes_per_block(h, bs, impl_->kv_type);
  uint64_t budget = o.kv_budget_bytes;
  if (o.kv_budget_share != 0) {
    if (!(o.kv_budget_share > 0 && o.kv_budget_share <= 1))
      throw Error("--kv-budget: a share of free device memory must be above 0% and at most 100%");
    const uint64_t total = model.device().budget_bytes, used = model.device_bytes_in_use();
    if (total <= used)
      throw Error("--kv-budget " + std::to_string(o.kv_budget_share * 100) + "%: device '" + model.device().name +
                  "' has no memory left after the weights (" + std::to_string(used) + " of " + std::to_string(total) +
                  " bytes in use)");
    budget = std::max<uint64_t>(1, uint64_t(o.kv_budget_share * double(total - used)));
    // A layer's pool is one storage binding: a share of a large device may ask for more than that allows.
    const uint64_t per_layer_block = per_block / (2ull * h.layers);
    const uint64_t binding_blocks = llama.device().caps().max_storage_buffer_range / per_layer_block;
    budget = std::min(budget, binding_blocks * per_block);
  }
  uint64_t blocks = budget ? budget / per_block : uint64_t(o.parallel) * ((uint64_t(impl_->ctx) + bs - 1) / bs);
  if (blocks == 0)
    throw Error("--kv-budget " + std::to_string(budget) + " bytes is less than one KV block (" +
                std::to_string(per_block) + " bytes of " + std::to_string(bs) + " tokens)");
  if (blocks > UINT32_MAX) throw Error("--kv-budget: too many KV blocks");
  std::lock_guard lock(api::device_lock_of(model));
  // Split over devices: each device holds its own layers' blocks of the one pool.
  const std::vector<const model::LlamaModel*> stages = api::stages_of(model);
  std::vector<vk::Device*> devices;
  std::vector<uint32_t> layers;
  for (const model::LlamaModel* s : stages) {
    devices.push_back(&s->device());
    layers.push_back(uint32_t(s->layers().size()));
  }
  impl_->pool = std::make_unique<model::PagedKvCache>(devices, layers, h, uint32_t(blocks), bs, impl_->kv_type);
  impl_->engine = std::make_unique<gen::BatchEngine>(
      stages, *impl_->pool,
      gen::SchedulerOptions{.max_sequences = o.parallel, .batch_tokens = std::max(o.batch_tokens, o.parallel),
                            .max_context = impl_->ctx, .prefix_cache = o.prefix_cache},
      &api::device_lock_of(model));
}

Engine::~Engine() {
  impl_->engine.reset();  // joins the stepping thread; what was left ends as cancelled
  std::lock_guard lock(api::device_lock_of(impl_->model));
  impl_->pool.reset();
}

uint64_t Engine::submit(EngineRequest request) {
  if (request.options.max_new_tokens < 0) throw Error("max_new_tokens must not be negative");
  if (request.logprobs < -1) throw Error("logprobs must be -1 (none) or a count of at least 0");
  gen::BatchRequest r{.prompt = std::move(request.prompt), .options = impl_->engine_options(request.options),
                      .on_token = std::move(request.on_token), .on_finish = {}, .logprobs = request.logprobs,
                      .on_token_logprobs = {}};
  if (request.on_token_logprobs)
    r.on_token_logprobs = [cb = std::move(request.on_token_logprobs)](int32_t token, const gen::TokenLogprobs& l) {
      return cb(token, to_logprobs(l));
    };
  r.on_finish = [done = std::move(request.on_finish)](const gen::RequestResult& result) {
    if (done) done(to_result(result));
  };
  return impl_->engine->submit(std::move(r));
}

void Engine::cancel(uint64_t id) { impl_->engine->cancel(id); }

EngineResult Engine::generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                              const std::function<bool(int32_t)>& on_token) {
  std::promise<EngineResult> result;
  auto future = result.get_future();
  submit({.prompt = prompt, .options = options, .on_token = on_token,
          .on_finish = [&result](const EngineResult& r) { result.set_value(r); }});
  return future.get();
}

uint32_t Engine::parallel() const { return impl_->engine->scheduler().options().max_sequences; }
uint32_t Engine::ctx() const { return impl_->ctx; }
KvDtype Engine::kv_dtype() const {
  switch (impl_->kv_type) {
    case kernels::KvType::F32: return KvDtype::F32;
    case kernels::KvType::F16: return KvDtype::F16;
    case kernels::KvType::BF16: return KvDtype::BF16;
    case kernels::KvType::Q8: return KvDtype::Q8;
  }
  return KvDtype::F32;
}
uint32_t Engine::kv_blocks() const { return impl_->pool->blocks(); }
uint32_t Engine::kv_block_tokens() const { return impl_->pool->block_size(); }
uint64_t Engine::kv_pool_bytes() const { return impl_->pool->bytes(); }
size_t Engine::running() const { return impl_->engine->scheduler().running(); }
size_t Engine::waiting() const { return impl_->engine->scheduler().waiting(); }
uint32_t Engine::kv_blocks_in_use() const { return impl_->engine->scheduler().kv_blocks_in_use(); }
double Engine::step_seconds() const { return impl_->engine->step_seconds(); }

}  // namespace inferno

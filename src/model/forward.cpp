#include "model/forward.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/elementwise.hpp"
#include "kernels/embedding.hpp"
#include "kernels/int8.hpp"
#include "kernels/linear.hpp"
#include "kernels/norm.hpp"
#include "model/projection.hpp"
#include "util/error.hpp"

namespace inferno::model {

using kernels::KvType;

kernels::KvType default_kv_type(bool f32_embedding) { return f32_embedding ? KvType::F32 : KvType::F16; }

kernels::KvType default_kv_type(const LlamaModel& model) {
  return default_kv_type(model.main_weight_type() == kernels::WeightType::F32);
}

uint64_t KvCache::bytes_for(const LlamaHyper& h, uint32_t batch, uint32_t capacity, KvType type) {
  // Checked: a plan for a huge batch and context must not wrap around to a small number.
  // Elements of one layer's K, checked, then bytes (at most 4 per element, and 2 · layers more, still checked).
  uint64_t elements = 1, bytes = 0;
  for (const uint64_t factor : {uint64_t(batch), uint64_t(h.kv_heads), uint64_t(capacity), uint64_t(h.head_dim), uint64_t(4)})
    if (__builtin_mul_overflow(elements, factor, &elements))
      throw Error("KV cache for batch " + std::to_string(batch) + " and context " + std::to_string(capacity) +
                  ": its size overflows 64 bits");
  if (__builtin_mul_overflow(kernels::kv_bytes(type, elements / 4), 2ull * h.layers, &bytes))
    throw Error("KV cache for batch " + std::to_string(batch) + " and context " + std::to_string(capacity) +
                ": its size overflows 64 bits");
  return bytes;
}

KvCache::KvCache(vk::Device& device, const LlamaHyper& h, uint32_t batch, uint32_t capacity, KvType type)
    : batch_(batch), capacity_(capacity), type_(type) {
  if (batch == 0 || capacity == 0) throw Error("KV cache: batch and context must be positive");
  kernels::check_kv_head_dim("KV cache", type, h.head_dim);
  const uint64_t per_layer = kernels::kv_bytes(type, uint64_t(batch) * h.kv_heads * capacity * h.head_dim);
  if (per_layer > device.caps().max_storage_buffer_range)  // larger than the device allows: as memory run out
    throw OutOfDeviceMemory("KV cache: " + std::to_string(per_layer) + " bytes per layer for batch " + std::to_string(batch) +
                " and context " + std::to_string(capacity) + " exceed the " +
                std::to_string(device.caps().max_storage_buffer_range) + "-byte storage buffer range of " + device.label() +
                "; use a smaller --ctx");
  for (uint32_t l = 0; l < h.layers; ++l) {
    k_.emplace_back(device, per_layer, vk::MemoryKind::Device, "kv_cache.k." + std::to_string(l));
    v_.emplace_back(device, per_layer, vk::MemoryKind::Device, "kv_cache.v." + std::to_string(l));
  }
}

uint64_t KvCache::bytes() const {
  uint64_t total = 0;
  for (size_t i = 0; i < k_.size(); ++i) total += k_[i].allocated_bytes() + v_[i].allocated_bytes();
  return total;
}

namespace {

// The hyper-parameters with the layer count of the layers a (stage of a) model holds: its KV cache's size.
LlamaHyper held_layers(const LlamaModel& model) {
  LlamaHyper h = model.hyper();
  h.layers = uint32_t(model.layers().size());
  return h;
}

}  // namespace

Forward::Forward(const LlamaModel& model, uint32_t batch, uint32_t capacity, KvType kv_type, bool timestamps)
    : model_(model),
      device_(model.device()),
      cache_(model.device(), held_layers(model), batch, capacity, kv_type),
      rec_(model.device(), timestamps),
      decode_rec_(model.device(), timestamps) {
  const auto& h = model.hyper();
  // Split-K decode attention on GPUs: a few hundred workgroups instead of one per head once the context is long
  // (about 128 cache slots a split). CPU drivers run workgroups on a few cores and gain nothing from it.
  if (!device_.cpu_class()) attention_splits_ = std::clamp<uint32_t>((capacity + 127) / 128, 1, 32);
  if (const char* env = std::getenv("INFERNO_NORM_FOLD")) {
    const std::string v = env;
    if (v != "0" && v != "1") throw Error("INFERNO_NORM_FOLD=" + v + ": expected 0 or 1");
    fold_norms_ = v == "1";
  }
  // cos/sin per position. Dynamic NTK scaling changes the table with the sequence length as decoding goes on, so
  // that table lives in host-visible memory, rewritten through its mapping with no submission of its own.
  rope_table_ = vk::Buffer(device_, uint64_t(capacity) * h.head_dim * 4,
                           h.rope.type == "dynamic" ? vk::MemoryKind::Staging : vk::MemoryKind::Device, "rope_table");
  // Each sequence's first unpadded slot, then `past` for the replayed decode recording.
  kv_start_ = vk::Buffer(device_, (uint64_t(batch) + 1) * 4, vk::MemoryKind::Staging, "kv_start");
}

uint64_t Forward::scratch_bytes_for(const LlamaHyper& h, uint32_t batch, uint32_t rows, uint32_t logits_rows) {
  // hidden, hidden_normed, q|k|v, attention out, gate|up, the SwiGLU product
  const uint64_t per_row = 2ull * h.hidden + h.q_dim() + 2ull * h.kv_dim() + h.q_dim() + 3ull * h.intermediate;
  const uint64_t logits = uint64_t(logits_rows) * h.vocab * 2;  // device logits and their host-visible copy
  return 4 * (per_row * rows + uint64_t(batch) * h.hidden + logits + 2ull * rows + batch + 1);
}

uint64_t Forward::scratch_bytes() const {
  uint64_t total = 0;
  for (const vk::Buffer* b : {&x_, &xn_, &qkv_, &attn_, &gate_up_, &act_, &partials_, &last_, &logits_, &ids_, &positions_,
                              &kv_start_, &readback_, &rope_table_, &xq_, &xscale_, &hidden_in_, &hidden_out_})
    total += b->allocated_bytes();
  return total;
}

void Forward::ensure_scratch(uint32_t rows, uint32_t logits_rows, uint64_t attention_partial_floats) {
  const auto& h = model_.hyper();
  if (rows > scratch_rows_) {
    auto f32 = [&](uint64_t floats, const char* name) {
      return vk::Buffer(device_, floats * 4, vk::MemoryKind::Device, name);
    };
    x_ = f32(uint64_t(rows) * h.hidden, "hidden");
    xn_ = f32(uint64_t(rows) * h.hidden, "hidden_normed");
    qkv_ = f32(uint64_t(rows) * h.qkv_dim(), "q_k_v");
    attn_ = f32(uint64_t(rows) * h.q_dim(), "attention_out");
    gate_up_ = f32(uint64_t(rows) * 2 * h.intermediate, "mlp_gate_up");
    act_ = f32(uint64_t(rows) * h.intermediate, "mlp_act");
    ids_ = vk::Buffer(device_, uint64_t(rows) * 4, vk::MemoryKind::Staging, "token_ids");
    if (const uint32_t widest = model_.widest_int8_input()) {
      xq_ = vk::Buffer(device_, uint64_t(rows) * kernels::quantized_row_words(widest) * 4, vk::MemoryKind::Device, "int8_activations");
      xscale_ = f32(rows, "int8_activation_scales");
    }
    positions_ = vk::Buffer(device_, uint64_t(rows) * 4, vk::MemoryKind::Staging, "positions");
    if (!model_.has_embedding())
      hidden_in_ = vk::Buffer(device_, uint64_t(rows) * h.hidden * 4, vk::MemoryKind::Staging, "hidden_in");
    if (!model_.has_head())
      hidden_out_ = vk::Buffer(device_, uint64_t(rows) * h.hidden * 4, vk::MemoryKind::Readback, "hidden_out");
    scratch_rows_ = rows;
    ++buffers_generation_;
  }
  if (!last_) last_ = vk::Buffer(device_, uint64_t(cache_.batch()) * h.hidden * 4, vk::MemoryKind::Device, "last_hidden");
  if (logits_rows > logits_rows_) {
    const uint64_t bytes = uint64_t(logits_rows) * h.vocab * 4;
    logits_ = vk::Buffer(device_, bytes, vk::MemoryKind::Device, "logits");
    readback_ = vk::Buffer(device_, bytes, vk::MemoryKind::Readback, "logits_readback");
    logits_rows_ = logits_rows;
    ++buffers_generation_;
  }
  if (attention_partial_floats * 4 > partials_.bytes()) {
    partials_ = vk::Buffer(device_, attention_partial_floats * 4, vk::MemoryKind::Device, "attention_partials");
    ++buffers_generation_;
  }
}

void Forward::update_rope_table(std::span<const int32_t> positions, int32_t max_pos) {
  const auto& h = model_.hyper();
  const bool dynamic = h.rope.type == "dynamic";
  // Only dynamic NTK scaling depends on the sequence length (transformers: max(position_ids) + 1, once past
  // max_position_embeddings); every other type is one table for every position, computed once (seq_len 0).
  const int64_t seq_len = dynamic ? std::max<int64_t>(int64_t(max_pos) + 1, h.max_position_embeddings) : 0;
  const bool beyond = dynamic && seq_len > int64_t(h.max_position_embeddings);
  if (!beyond && seq_len == rope_seq_len_) return;
  RopeFrequencies f = compute_rope_frequencies(h.rope, seq_len);
  for (size_t i = 0; i < h.rope_freq_factors.size() && i < f.inv_freq.size(); ++i) f.inv_freq[i] /= h.rope_freq_factors[i];
  const uint32_t half = h.head_dim / 2, capacity = cache_.capacity();
  if (f.inv_freq.size() != half) throw Error("RoPE: partial rotary embeddings are not supported");
  auto write_row = [&](float* row, uint32_t pos) {
    for (uint32_t i = 0; i < half; ++i) {
      // transformers: freqs = inv_freq · position in float32, then cos/sin in float32, times attention_scaling.
      const float angle = f.inv_freq[i] * float(pos);
      row[2 * i] = float(std::cos(double(angle))) * f.attention_scaling;
      row[2 * i + 1] = float(std::sin(double(angle))) * f.attention_scaling;
    }
  };
  if (beyond) {
    // Past max_position_embeddings the frequencies change every step: rewrite only the rows this step reads (the
    // cache keeps earlier keys as they were rotated, as transformers' does). The table is then a mix: mark it so.
    float* table = static_cast<float*>(rope_table_.mapped());
    for (int32_t pos : positions) write_row(table + size_t(pos) * half * 2, uint32_t(pos));
    rope_seq_len_ = -1;
    return;
  }
  std::vector<float> table(size_t(capacity) * half * 2);
  for (uint32_t pos = 0; pos < capacity; ++pos) write_row(table.data() + size_t(pos) * half * 2, pos);
  vk::upload(device_, rope_table_, 0, table.data(), table.size() * 4);  // through the mapping where there is one
  rope_seq_len_ = seq_len;
}

void Forward::rewind(uint32_t past) {
  if (past > past_) throw Error("cannot rewind the KV cache forward");
  past_ = past;
}

std::vector<float> Forward::step(const Step& s) {
  if (pending_.rec) throw Error("forward step while a linked step is pending");
  std::vector<float> logits = run_step(s, Mode::Run);
  // The logits are on the host already: a NaN or infinity among them (NaN or infinite weights, a broken scale) is
  // found here for one pass over them, and named by a diagnosis pass instead of being sampled as token 0.
  if (std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); })) return logits;
  past_ -= s.tokens;  // the same step again, stage by stage (it rewrites the same cache slots)
  run_step(s, Mode::Probe);
  past_ -= s.tokens;
  throw Error("the logits hold NaN or infinity, but a second pass stage by stage gave finite values throughout");
}

void Forward::set_links(const vk::Buffer* in, const vk::Buffer* out) {
  link_in_ = in;
  link_out_ = out;
  ++buffers_generation_;  // the decode recording binds the old ones
}

void Forward::record_linked(const Step& s, uint64_t offset) {
  if (pending_.rec) throw Error("linked forward step while another is pending");
  if ((!model_.has_embedding() && !link_in_) || (!model_.has_head() && !link_out_))
    throw Error("linked forward step of a stage without its link buffers");
  link_offset_ = offset;
  run_step(s, Mode::Linked);
}

void Forward::submit_linked(std::span<const vk::SemaphoreValue> waits, std::span<const vk::SemaphoreValue> signals) {
  if (!pending_.rec) throw Error("submit_linked without a recorded step");
  pending_.rec->submit(waits, signals);
}

std::vector<float> Forward::finish_linked() {
  if (!pending_.rec) throw Error("finish_linked without a recorded step");
  const Pending p = pending_;
  p.rec->wait();  // done already (the caller waited for its semaphore): this resets nothing but the bookkeeping
  pending_ = {};
  return finish_step(p.tokens, p.out_rows);
}

void Forward::abandon_linked() {
  if (!pending_.rec) return;
  vk::Recorder* rec = pending_.rec;
  pending_ = {};
  rec->wait();
}

std::vector<float> Forward::run_step(const Step& s, Mode mode) {
  const bool probe = mode == Mode::Probe, linked = mode == Mode::Linked;
  const auto& h = model_.hyper();
  const uint32_t rows = s.batch * s.tokens;
  if (s.batch != cache_.batch())
    throw Error("step for " + std::to_string(s.batch) + " sequences on a cache made for " + std::to_string(cache_.batch()));
  if (s.tokens == 0) throw Error("a forward step needs at least one token");
  if (s.ids.size() != rows || s.positions.size() != rows || s.kv_start.size() != s.batch)
    throw Error("forward step: ids, positions and kv_start sizes disagree with batch × tokens");
  if (past_ + s.tokens > cache_.capacity())
    throw Error("context full: " + std::to_string(past_) + " + " + std::to_string(s.tokens) + " tokens exceed the " +
                std::to_string(cache_.capacity()) + "-token KV cache (raise --ctx)");
  for (int32_t id : s.ids)
    if (id < 0 || uint32_t(id) >= h.vocab)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(h.vocab) + ")");
  int32_t max_pos = 0;
  for (int32_t p : s.positions) {
    if (p < 0 || uint32_t(p) >= cache_.capacity())
      throw Error("position id " + std::to_string(p) + " is outside the context of " + std::to_string(cache_.capacity()));
    max_pos = std::max(max_pos, p);
  }
  if (!linked && !model_.has_embedding() && s.hidden.size() != uint64_t(rows) * h.hidden)
    throw Error("forward step of a stage without the embedding: the hidden state has " + std::to_string(s.hidden.size()) +
                " floats, not rows × hidden = " + std::to_string(uint64_t(rows) * h.hidden));
  const uint32_t out_rows = !model_.has_head() ? rows : s.rows == LogitsRows::All ? rows : s.batch;
  // A decode step (one new token a sequence, last logits) is recorded once and then replayed: everything that
  // changes from step to step (ids, positions, past) is read from host-visible buffers when the commands run, so the
  // host does no recording at all until scratch buffers are reallocated. Other steps are recorded afresh.
  const bool decode =
      s.tokens == 1 && s.rows == LogitsRows::Last && replay_decode_ && !probe && !(linked && link_offset_ != 0);

  kernels::AttentionShape shape;
  shape.batch = s.batch;
  shape.tokens = s.tokens;
  shape.past = past_;
  shape.heads = h.heads;
  shape.kv_heads = h.kv_heads;
  shape.head_dim = h.head_dim;
  shape.capacity = cache_.capacity();
  shape.scale = float(1.0 / std::sqrt(double(h.head_dim)));
  shape.past_at_run_time = decode;
  shape.splits = s.tokens <= kMaxSplitTokens ? std::min(attention_splits_, cache_.capacity()) : 1;

  ensure_scratch(rows, model_.has_head() ? out_rows : 0, kernels::attention_partial_floats(shape, rows));
  const uint64_t hidden_bytes = uint64_t(rows) * h.hidden * 4;
  if (linked && ((!model_.has_embedding() && link_in_->bytes() < link_offset_ + hidden_bytes) ||
                 (!model_.has_head() && link_out_->bytes() < link_offset_ + hidden_bytes)))
    throw Error("linked forward step of " + std::to_string(rows) + " rows: a link buffer holds fewer");
  if (!linked && !model_.has_embedding()) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(hidden_in_.mapped(), s.hidden.data(), s.hidden.size() * 4);
    hidden_copy_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  update_rope_table(s.positions, max_pos);
  std::memcpy(ids_.mapped(), s.ids.data(), rows * 4);
  std::memcpy(positions_.mapped(), s.positions.data(), rows * 4);
  std::memcpy(kv_start_.mapped(), s.kv_start.data(), s.batch * 4);
  const int32_t past = int32_t(past_);
  std::memcpy(static_cast<std::byte*>(kv_start_.mapped()) + uint64_t(s.batch) * 4, &past, 4);

  vk::Recorder& rec = decode ? decode_rec_ : rec_;
  last_rec_ = &rec;
  if (decode && decode_recorded_for_ == buffers_generation_ && decode_linked_ == linked) {
    if (linked) {
      pending_ = {&rec, s.tokens, out_rows};
      return {};
    }
    rec.submit_and_wait();
    return finish_step(s.tokens, out_rows);
  }

  const KvType kv = cache_.type();
  const uint32_t qkv = h.qkv_dim();  // floats in a row of q | k | v
  vk::Device& d = device_;
  // A projection of x, its parts side by side in y (rows y_stride floats apart). w8a8 layers read x quantized to
  // int8 (per token, or with the module's static scale); x is quantized once, and again only where a part's static
  // scale differs.
  auto project = [&](const vk::Buffer& x, uint32_t m, std::span<const Linear> parts, const vk::Buffer& y,
                     uint32_t y_stride, bool accumulate, const kernels::DeviceVector* norm = nullptr) {
    record_projection(d, rec, {.x = &x, .m = m, .parts = parts, .y = &y, .y_stride = y_stride, .accumulate = accumulate,
                               .xq = &xq_, .xscale = &xscale_, .norm = norm, .norm_eps = h.rms_eps});
  };
  // A projection of the norm of x: the norm folded into it where it can be (a few rows, no int8 activations),
  // else the norm kernel into xn_ first.
  auto project_normed = [&](const vk::Buffer& x, uint32_t m, const kernels::DeviceVector& norm,
                            std::span<const Linear> parts, const vk::Buffer& y, uint32_t y_stride) {
    const bool fold = fold_norms_ && kernels::linear_folds_norm(d, m) &&
                      std::none_of(parts.begin(), parts.end(), [](const Linear& p) { return p.int8_activations; });
    if (fold) return project(x, m, parts, y, y_stride, false, &norm);
    kernels::record_rmsnorm(d, rec, x, norm, xn_, m, h.hidden, h.rms_eps);
    project(xn_, m, parts, y, y_stride, false);
  };
  auto head = [&](const vk::Buffer& x, uint32_t m) {
    const bool fold = fold_norms_ && kernels::linear_folds_norm(d, m);
    if (!fold) kernels::record_rmsnorm(d, rec, x, model_.final_norm(), x, m, h.hidden, h.rms_eps);
    kernels::record_linear(d, rec, {.weight = &model_.lm_head(), .x = &x, .y = &logits_, .m = m,
                                    .norm = fold ? &model_.final_norm() : nullptr, .norm_eps = h.rms_eps});
  };

  // Diagnosis (probe): after the embedding, after each layer and after the head, submit what is recorded so far and
  // read the stage's output back; the first one holding a NaN or infinity is named in the error.
  vk::Buffer probe_readback;
  if (probe) probe_readback = vk::Buffer(d, uint64_t(rows) * std::max(h.hidden, h.vocab) * 4, vk::MemoryKind::Readback,
                                         "diagnosis_readback");
  auto probe_stage = [&](const vk::Buffer& out, uint32_t out_rows, uint32_t row_floats, const std::string& stage) {
    if (!probe) return;
    const uint64_t floats = uint64_t(out_rows) * row_floats;
    rec.copy(out, 0, probe_readback, 0, floats * 4);
    rec.submit_and_wait();
    const float* values = static_cast<const float*>(probe_readback.mapped());
    for (uint64_t i = 0; i < floats; ++i)
      if (!std::isfinite(values[i]))
        throw Error("the logits hold NaN or infinity: " + stage + " is the first stage whose output does (" +
                    (std::isnan(values[i]) ? "NaN" : "infinity") + " in row " + std::to_string(i / row_floats) +
                    " of " + std::to_string(out_rows) + ")");
    rec.begin();
  };

  rec.begin();
  if (model_.has_embedding()) {
    kernels::record_embedding(d, rec, model_.embedding(), ids_, rows, x_);
  } else if (linked) {
    rec.barrier_with_host();  // what the stage before wrote, through memory another device or the host shares
    rec.copy(*link_in_, link_offset_, x_, 0, hidden_bytes, kTransferLabel);
  } else {
    rec.copy(hidden_in_, 0, x_, 0, hidden_bytes, kTransferLabel);
  }
  probe_stage(x_, rows, h.hidden, model_.has_embedding() ? "the embedding (" + model_.embedding().name + ")" : "the hidden state from the previous device");
  const kernels::KvWriteRope rope{qkv_, qkv, 0, positions_, rope_table_, cache_.capacity()};
  for (uint32_t i = 0; i < model_.layers().size(); ++i) {
    const LayerWeights& l = model_.layers()[i];
    // attention block: q | k | v side by side in one row
    project_normed(x_, rows, l.attn_norm, l.qkv.parts, qkv_, qkv);
    // RoPE on q and k within the cache write: k rotated on its way into the cache, q in place.
    kernels::record_kv_write(d, rec, kv, shape, qkv_, qkv, qkv_, qkv, cache_.k(i), cache_.v(i), kv_start_, h.q_dim(),
                             h.q_dim() + h.kv_dim(), &rope);
    kernels::record_attention(d, rec, kv, shape, qkv_, qkv, cache_.k(i), cache_.v(i), kv_start_, attn_, &partials_);
    project(attn_, rows, std::span(&l.o, 1), x_, h.hidden, true);  // the residual add folded into the projection
    // MLP block: gate | up side by side
    project_normed(x_, rows, l.ffn_norm, l.gate_up.parts, gate_up_, 2 * h.intermediate);
    kernels::record_silu_mul(d, rec, gate_up_, act_, rows, h.intermediate);
    project(act_, rows, std::span(&l.down, 1), x_, h.hidden, true);
    const std::string layer = std::to_string(model_.first_layer() + i);
    probe_stage(x_, rows, h.hidden, "layer " + layer + " (model.layers." + layer + ")");
  }
  if (!model_.has_head()) {
    // every row, to the next stage
    rec.copy(x_, 0, linked ? *link_out_ : hidden_out_, linked ? link_offset_ : 0, hidden_bytes, kTransferLabel);
    if (linked) rec.barrier_with_host();
  } else if (s.rows == LogitsRows::All) {
    head(x_, rows);  // (the hidden states are not needed after this: normed in place where not folded)
  } else {
    // Only each sequence's last token: gather those rows, then norm and project just them.
    for (uint32_t b = 0; b < s.batch; ++b)
      rec.copy(x_, (uint64_t(b) * s.tokens + s.tokens - 1) * h.hidden * 4, last_, uint64_t(b) * h.hidden * 4,
                uint64_t(h.hidden) * 4);
    head(last_, s.batch);
  }
  if (model_.has_head()) {
    probe_stage(logits_, out_rows, h.vocab, "lm_head (the final norm and output projection)");
    rec.copy(logits_, 0, readback_, 0, uint64_t(out_rows) * h.vocab * 4);
    if (linked) rec.barrier_with_host();  // the host reads the logits after a semaphore wait, not a fence's
  }
  ++recordings_;
  if (linked) {
    if (decode) {
      decode_recorded_for_ = buffers_generation_;
      decode_linked_ = true;
    }
    pending_ = {&rec, s.tokens, out_rows};
    return {};
  }
  rec.submit_and_wait();
  if (decode) {
    decode_recorded_for_ = buffers_generation_;
    decode_linked_ = false;
  }
  return finish_step(s.tokens, out_rows);
}

std::vector<float> Forward::finish_step(uint32_t tokens, uint32_t out_rows) {
  past_ += tokens;
  const bool head = model_.has_head();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> out(size_t(out_rows) * (head ? model_.hyper().vocab : model_.hyper().hidden));
  std::memcpy(out.data(), (head ? readback_ : hidden_out_).mapped(), out.size() * 4);
  if (!head) hidden_copy_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace inferno::model

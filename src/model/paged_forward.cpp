#include "model/paged_forward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention_paged.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/embedding.hpp"
#include "kernels/int8.hpp"
#include "kernels/linear.hpp"
#include "kernels/norm.hpp"
#include "model/projection.hpp"
#include "model/rope.hpp"
#include "model/stage_threads.hpp"
#include "util/error.hpp"

namespace inferno::model {

PagedForward::PagedForward(const LlamaModel& model, PagedKvCache& cache, uint32_t max_context)
    : model_(model), device_(model.device()), cache_(cache), max_context_(max_context), rec_(model.device()) {
  const auto& h = model.hyper();
  if (max_context == 0) throw Error("paged forward: the context must be positive");
  // Per-sequence lengths would need a table per sequence once dynamic NTK scaling changes the frequencies.
  if (h.rope.type == "dynamic")
    throw Error("dynamic NTK RoPE scaling is not supported by the batched engine (each sequence would need its own "
                "frequencies)");
  RopeFrequencies f = compute_rope_frequencies(h.rope, 0);
  for (size_t i = 0; i < h.rope_freq_factors.size() && i < f.inv_freq.size(); ++i) f.inv_freq[i] /= h.rope_freq_factors[i];
  const uint32_t half = h.head_dim / 2;
  if (f.inv_freq.size() != half) throw Error("RoPE: partial rotary embeddings are not supported");
  // The same table Forward computes (transformers: inv_freq · position in float32, cos/sin in float32).
  std::vector<float> table(size_t(max_context) * half * 2);
  for (uint32_t pos = 0; pos < max_context; ++pos)
    for (uint32_t i = 0; i < half; ++i) {
      const float angle = f.inv_freq[i] * float(pos);
      table[(size_t(pos) * half + i) * 2] = float(std::cos(double(angle))) * f.attention_scaling;
      table[(size_t(pos) * half + i) * 2 + 1] = float(std::sin(double(angle))) * f.attention_scaling;
    }
  rope_table_ = vk::Buffer(device_, table.size() * 4, vk::MemoryKind::Device, "rope_table");
  vk::upload(device_, rope_table_, 0, table.data(), table.size() * 4);
  if (!device_.cpu_class()) attention_splits_ = 0;  // chosen per step from the longest sequence
}

uint64_t PagedForward::scratch_bytes() const {
  uint64_t total = 0;
  for (const vk::Buffer* b : {&x_, &xn_, &qkv_, &attn_, &gate_up_, &act_, &partials_, &last_, &logits_, &ids_,
                              &positions_, &paging_, &readback_, &rope_table_, &xq_, &xscale_, &hidden_in_, &hidden_out_})
    total += b->allocated_bytes();
  return total;
}

void PagedForward::ensure_scratch(uint32_t rows, uint32_t logits_rows, uint32_t paging_words, uint64_t partial_floats) {
  const auto& h = model_.hyper();
  auto f32 = [&](uint64_t floats, const char* name) { return vk::Buffer(device_, floats * 4, vk::MemoryKind::Device, name); };
  if (rows > scratch_rows_) {
    x_ = f32(uint64_t(rows) * h.hidden, "hidden");
    xn_ = f32(uint64_t(rows) * h.hidden, "hidden_normed");
    qkv_ = f32(uint64_t(rows) * h.qkv_dim(), "q_k_v");
    attn_ = f32(uint64_t(rows) * h.q_dim(), "attention_out");
    gate_up_ = f32(uint64_t(rows) * 2 * h.intermediate, "mlp_gate_up");
    act_ = f32(uint64_t(rows) * h.intermediate, "mlp_act");
    ids_ = vk::Buffer(device_, uint64_t(rows) * 4, vk::MemoryKind::Staging, "token_ids");
    positions_ = vk::Buffer(device_, uint64_t(rows) * 4, vk::MemoryKind::Staging, "positions");
    if (const uint32_t widest = model_.widest_int8_input()) {
      xq_ = vk::Buffer(device_, uint64_t(rows) * kernels::quantized_row_words(widest) * 4, vk::MemoryKind::Device,
                       "int8_activations");
      xscale_ = f32(rows, "int8_activation_scales");
    }
    if (!model_.has_embedding())
      hidden_in_ = vk::Buffer(device_, uint64_t(rows) * h.hidden * 4, vk::MemoryKind::Staging, "hidden_in");
    if (!model_.has_head())
      hidden_out_ = vk::Buffer(device_, uint64_t(rows) * h.hidden * 4, vk::MemoryKind::Readback, "hidden_out");
    scratch_rows_ = rows;
  }
  if (logits_rows > logits_rows_) {
    last_ = f32(uint64_t(logits_rows) * h.hidden, "last_hidden");
    logits_ = f32(uint64_t(logits_rows) * h.vocab, "logits");
    readback_ = vk::Buffer(device_, uint64_t(logits_rows) * h.vocab * 4, vk::MemoryKind::Readback, "logits_readback");
    logits_rows_ = logits_rows;
  }
  if (paging_words > paging_words_) {
    paging_ = vk::Buffer(device_, uint64_t(paging_words) * 4, vk::MemoryKind::Staging, "paging");
    paging_words_ = paging_words;
  }
  if (partial_floats * 4 > partials_.bytes()) partials_ = f32(partial_floats, "attention_partials");
}

uint32_t PagedForward::check(std::span<const PagedSequence> seqs) const {
  const auto& h = model_.hyper();
  if (seqs.empty()) throw Error("a paged step needs at least one sequence");
  const uint32_t bs = cache_.block_size();
  uint64_t rows = 0;
  for (const PagedSequence& s : seqs) {
    if (s.ids.empty()) throw Error("a paged step gives a sequence no token");
    const uint64_t end = uint64_t(s.past) + s.ids.size();
    if (end > max_context_)
      throw Error("context full: " + std::to_string(s.past) + " + " + std::to_string(s.ids.size()) +
                  " tokens exceed the " + std::to_string(max_context_) + "-token context (raise --ctx)");
    if (s.blocks.size() * bs < end)
      throw Error("paged step: a block table of " + std::to_string(s.blocks.size()) + " blocks cannot hold " +
                  std::to_string(end) + " tokens");
    for (uint32_t b : s.blocks)
      if (b >= cache_.blocks()) throw Error("paged step: block " + std::to_string(b) + " is outside the pool");
    for (int32_t id : s.ids)
      if (id < 0 || uint32_t(id) >= h.vocab)
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(h.vocab) + ")");
    rows += s.ids.size();
  }
  if (rows > (1ull << 31)) throw Error("paged step of " + std::to_string(rows) + " rows: more than 2^31");
  return uint32_t(rows);
}

std::vector<float> PagedForward::step(std::span<const PagedSequence> seqs, std::span<const float> hidden,
                                      bool split_attention) {
  if (pending_.recorded) throw Error("paged step while a linked step is pending");
  const Pending step = record(seqs, hidden, split_attention, false, 0);
  rec_.submit_and_wait();
  return collect(step.rows, step.out_rows, false);
}

void PagedForward::set_links(const vk::Buffer* in, const vk::Buffer* out) {
  link_in_ = in;
  link_out_ = out;
}

void PagedForward::record_linked(std::span<const PagedSequence> seqs, bool split_attention, uint64_t offset) {
  if (pending_.recorded) throw Error("linked paged step while another is pending");
  if ((!model_.has_embedding() && !link_in_) || (!model_.has_head() && !link_out_))
    throw Error("linked paged step of a stage without its link buffers");
  pending_ = record(seqs, {}, split_attention, true, offset);
}

void PagedForward::submit_linked(std::span<const vk::SemaphoreValue> waits, std::span<const vk::SemaphoreValue> signals) {
  if (!pending_.recorded) throw Error("submit_linked without a recorded paged step");
  rec_.submit(waits, signals);
}

std::vector<float> PagedForward::finish_linked() {
  if (!pending_.recorded) throw Error("finish_linked without a recorded paged step");
  const Pending p = pending_;
  pending_ = {};
  rec_.wait();  // done already where the caller waited for its semaphore
  return collect(p.rows, p.out_rows, true);
}

void PagedForward::abandon_linked() {
  if (!pending_.recorded) return;
  pending_ = {};
  rec_.wait();  // a submission in flight ends (its waits released by the caller); a recording never submitted stays
}

std::vector<float> PagedForward::collect(uint32_t rows, uint32_t out_rows, bool linked) const {
  const auto& h = model_.hyper();
  if (!model_.has_head()) {
    if (linked) return {};  // the rows are in the link memory
    std::vector<float> out(size_t(rows) * h.hidden);
    std::memcpy(out.data(), hidden_out_.mapped(), out.size() * 4);
    return out;
  }
  std::vector<float> out(size_t(out_rows) * h.vocab);
  if (!out.empty()) std::memcpy(out.data(), readback_.mapped(), out.size() * 4);
  return out;
}

PagedForward::Pending PagedForward::record(std::span<const PagedSequence> seqs, std::span<const float> hidden,
                                           bool split_attention, bool linked, uint64_t offset) {
  const auto& h = model_.hyper();
  const uint32_t rows = check(seqs);
  const uint32_t bs = cache_.block_size();
  uint32_t out_rows = 0, width = 1, longest = 0;
  for (const PagedSequence& s : seqs) {
    const uint64_t end = uint64_t(s.past) + s.ids.size();
    out_rows += s.logits && model_.has_head() ? 1 : 0;
    width = std::max(width, uint32_t((end + bs - 1) / bs));
    longest = std::max(longest, uint32_t(end));
  }
  const uint64_t hidden_bytes = uint64_t(rows) * h.hidden * 4;
  if (!linked && !model_.has_embedding() && hidden.size() != uint64_t(rows) * h.hidden)
    throw Error("paged step of a stage without the embedding: the hidden state has " + std::to_string(hidden.size()) +
                " floats, not rows × hidden = " + std::to_string(uint64_t(rows) * h.hidden));
  if (linked && ((!model_.has_embedding() && link_in_->bytes() < offset + hidden_bytes) ||
                 (!model_.has_head() && link_out_->bytes() < offset + hidden_bytes)))
    throw Error("linked paged step of " + std::to_string(rows) + " rows: a link buffer holds fewer");
  const uint32_t n_seqs = uint32_t(seqs.size());
  kernels::PagedShape shape{.rows = rows, .heads = h.heads, .kv_heads = h.kv_heads, .head_dim = h.head_dim,
                            .block_size = bs, .blocks = cache_.blocks(), .table_width = width, .table_first = rows,
                            .sequences = n_seqs, .scale = float(1.0 / std::sqrt(double(h.head_dim)))};
  // Split-K on GPUs for decode-sized steps: about 128 keys a split, as Forward chooses.
  if (split_attention && (attention_splits_ == 0 || attention_splits_ > 1)) {
    const uint32_t splits = attention_splits_ == 0 ? std::clamp<uint32_t>((longest + 127) / 128, 1, 32) : attention_splits_;
    if (rows <= 64 && splits > 1) {
      shape.splits = std::min(splits, longest);
      shape.split_keys = (longest + shape.splits - 1) / shape.splits;
    }
  }
  const uint32_t paging_words = rows + n_seqs * width;
  ensure_scratch(rows, model_.has_head() ? std::max(out_rows, 1u) : 0, paging_words, kernels::paged_partial_floats(shape));

  auto* ids = static_cast<int32_t*>(ids_.mapped());
  auto* positions = static_cast<int32_t*>(positions_.mapped());
  auto* paging = static_cast<int32_t*>(paging_.mapped());
  for (uint32_t i = 0, r = 0; i < n_seqs; ++i) {
    const PagedSequence& s = seqs[i];
    for (size_t t = 0; t < s.ids.size(); ++t, ++r) {
      ids[r] = s.ids[t];
      positions[r] = int32_t(s.past + t);
      paging[r] = int32_t(i);
    }
    int32_t* table = paging + rows + size_t(i) * width;
    const uint32_t used = uint32_t(std::min<size_t>(s.blocks.size(), width));
    for (uint32_t j = 0; j < width; ++j) table[j] = j < used ? int32_t(s.blocks[j]) : 0;
  }

  const kernels::KvType kv = cache_.type();
  const uint32_t qkv = h.qkv_dim();
  vk::Device& d = device_;
  vk::Recorder& rec = rec_;
  auto project = [&](const vk::Buffer& x, uint32_t m, std::span<const Linear> parts, const vk::Buffer& y,
                     uint32_t y_stride, bool accumulate) {
    record_projection(d, rec, {.x = &x, .m = m, .parts = parts, .y = &y, .y_stride = y_stride, .accumulate = accumulate,
                               .xq = &xq_, .xscale = &xscale_});
  };

  if (!linked && !model_.has_embedding()) std::memcpy(hidden_in_.mapped(), hidden.data(), hidden.size() * 4);
  rec.begin();
  if (model_.has_embedding()) {
    kernels::record_embedding(d, rec, model_.embedding(), ids_, rows, x_);
  } else if (linked) {
    rec.barrier_with_host();  // what the stage before wrote, through memory another device or the host shares
    rec.copy(*link_in_, offset, x_, 0, hidden_bytes);
  } else {
    rec.copy(hidden_in_, 0, x_, 0, hidden_bytes);
  }
  const kernels::KvWriteRope rope{qkv_, qkv, 0, positions_, rope_table_, max_context_};
  for (uint32_t i = 0; i < model_.layers().size(); ++i) {
    const LayerWeights& l = model_.layers()[i];
    const uint32_t layer = model_.first_layer() + i;  // the cache's layers are the whole model's
    kernels::record_rmsnorm(d, rec, x_, l.attn_norm, xn_, rows, h.hidden, h.rms_eps);
    project(xn_, rows, l.qkv.parts, qkv_, qkv, false);
    kernels::record_kv_write_paged(d, rec, kv, shape, qkv_, qkv, h.q_dim(), qkv_, qkv, h.q_dim() + h.kv_dim(),
                                   cache_.k(layer), cache_.v(layer), paging_, positions_, rope);
    kernels::record_attention_paged(d, rec, kv, shape, qkv_, qkv, cache_.k(layer), cache_.v(layer), paging_, positions_, attn_,
                                    &partials_);
    project(attn_, rows, std::span(&l.o, 1), x_, h.hidden, true);
    kernels::record_rmsnorm(d, rec, x_, l.ffn_norm, xn_, rows, h.hidden, h.rms_eps);
    project(xn_, rows, l.gate_up.parts, gate_up_, 2 * h.intermediate, false);
    kernels::record_silu_mul(d, rec, gate_up_, act_, rows, h.intermediate);
    project(act_, rows, std::span(&l.down, 1), x_, h.hidden, true);
  }
  if (!model_.has_head()) {
    rec.copy(x_, 0, linked ? *link_out_ : hidden_out_, linked ? offset : 0, hidden_bytes);  // every row, to the next stage
    if (linked) rec.barrier_with_host();
  } else if (out_rows > 0) {
    // Each wanted sequence's last row, gathered, then normed and projected alone.
    uint32_t r = 0, o = 0;
    for (const PagedSequence& s : seqs) {
      r += uint32_t(s.ids.size());
      if (!s.logits) continue;
      rec.copy(x_, uint64_t(r - 1) * h.hidden * 4, last_, uint64_t(o++) * h.hidden * 4, uint64_t(h.hidden) * 4);
    }
    kernels::record_rmsnorm(d, rec, last_, model_.final_norm(), last_, out_rows, h.hidden, h.rms_eps);
    kernels::record_linear(d, rec, {.weight = &model_.lm_head(), .x = &last_, .y = &logits_, .m = out_rows});
    rec.copy(logits_, 0, readback_, 0, uint64_t(out_rows) * h.vocab * 4);
    if (linked) rec.barrier_with_host();  // the host reads the logits after a semaphore wait, not a fence's
  }
  return {.recorded = true, .rows = rows, .out_rows = out_rows};
}

PagedPipeline::PagedPipeline(const std::vector<const LlamaModel*>& stages, PagedKvCache& cache, uint32_t max_context) {
  if (stages.empty()) throw Error("a paged pipeline needs at least one stage");
  uint32_t next_layer = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const LlamaModel& m = *stages[i];
    if (m.has_embedding() != (i == 0) || m.has_head() != (i + 1 == stages.size()) || m.first_layer() != next_layer)
      throw Error("paged pipeline stage " + std::to_string(i) + " does not continue the stage before it");
    next_layer += uint32_t(m.layers().size());
    forwards_.push_back(std::make_unique<PagedForward>(m, cache, max_context));
  }
  micro_batch_ = micro_batch_rows_from_env(stages.size() >= 2 ? kDefaultMicroBatchRows : 0);
  if (next_layer != stages.front()->hyper().layers)
    throw Error("paged pipeline stages hold " + std::to_string(next_layer) + " of the model's " +
                std::to_string(stages.front()->hyper().layers) + " layers");
  set_host_links(stage_links_host_only_from_env());
}

void PagedPipeline::set_host_links(bool host_only) {
  for (auto& f : forwards_) f->set_links(nullptr, nullptr);  // before the buffers they name go
  std::vector<vk::Device*> devices;
  for (auto& f : forwards_) devices.push_back(&f->model().device());
  chain_.reset(devices, host_only);
}

void PagedPipeline::connect(size_t i) { forwards_[i]->set_links(chain_.in(i), chain_.out(i)); }

std::vector<std::vector<PagedSequence>> PagedPipeline::micro_batches(std::span<const PagedSequence> seqs) const {
  std::vector<std::vector<PagedSequence>> whole(1, std::vector<PagedSequence>(seqs.begin(), seqs.end()));
  uint64_t rows = 0;
  for (const PagedSequence& s : seqs) rows += s.ids.size();
  if (forwards_.size() < 2 || micro_batch_ == 0 || rows <= micro_batch_ || seqs.empty()) return whole;
  // Fewest rows a micro-batch may hold: more than the matrix·vector kernel takes.
  constexpr uint64_t least = kernels::kMatvecMaxRows + 1;
  const uint64_t count = std::min<uint64_t>((rows + micro_batch_ - 1) / micro_batch_, rows / least);
  if (count < 2) return whole;
  // The last micro-batch: an even share, or every sequence's last token if there are more sequences.
  const uint64_t last = std::max<uint64_t>(rows / count, seqs.size());
  const uint64_t rest = rows - last;
  const uint64_t leading = std::min<uint64_t>((rest + micro_batch_ - 1) / micro_batch_, rest / least);
  if (leading < 1) return whole;
  // rest rows from the sequences' leading tokens (never a last token: rest ≤ rows − sequences), in order, in
  // `leading` micro-batches of even length (each ≥ least: leading ≤ rest / least).
  std::vector<std::vector<PagedSequence>> out(leading + 1);
  std::vector<uint32_t> taken(seqs.size(), 0);
  size_t seq = 0;
  for (uint64_t k = 0; k < leading; ++k) {
    uint64_t want = rest / leading + (k < rest % leading ? 1 : 0);
    while (want > 0) {
      const PagedSequence& s = seqs[seq];
      const uint64_t available = s.ids.size() - 1 - taken[seq];  // its last token stays for the last micro-batch
      if (available == 0) {
        ++seq;
        continue;
      }
      const uint32_t n = uint32_t(std::min(available, want));
      out[k].push_back({.ids = s.ids.subspan(taken[seq], n), .past = s.past + taken[seq], .blocks = s.blocks,
                        .logits = false});
      taken[seq] += n;
      want -= n;
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    const PagedSequence& s = seqs[i];
    out.back().push_back({.ids = s.ids.subspan(taken[i]), .past = s.past + taken[i], .blocks = s.blocks,
                          .logits = s.logits});
  }
  return out;
}

std::vector<float> PagedPipeline::step(std::span<const PagedSequence> sequences) {
  const auto pieces = micro_batches(sequences);
  last_micro_batches_ = pieces.size();
  const size_t n = forwards_.size();
  // Checked before any link memory is sized for the step (the first stage names what is wrong).
  const uint64_t rows = forwards_.front()->check(sequences);
  const uint64_t row_bytes = uint64_t(forwards_.front()->model().hyper().hidden) * 4;
  const bool chained = chain_.chained();
  if (chained)
    for (size_t i : chain_.reserve(rows * row_bytes)) {
      connect(i);
      connect(i + 1);
    }
  host_waits_ = 0;
  host_copy_bytes_ = 0;
  if (pieces.size() < 2) {
    if (chained) return step_chained(sequences);
    std::vector<float> out = forwards_.front()->step(sequences);
    ++host_waits_;
    for (size_t i = 1; i < n; ++i) {
      out = forwards_[i]->step(sequences, out);  // read back from stage i-1, written into stage i's mapped input
      ++host_waits_;
      host_copy_bytes_ += 2 * rows * row_bytes;
    }
    return out;
  }
  // Micro-batch k's rows start at the rows of the ones before it, in the link memory as in the step.
  std::vector<uint64_t> offsets(pieces.size(), 0);
  for (size_t k = 1; k < pieces.size(); ++k) {
    uint64_t r = 0;
    for (const PagedSequence& s : pieces[k - 1]) r += s.ids.size();
    offsets[k] = offsets[k - 1] + r * row_bytes;
  }
  auto outputs = run_stage_threads(n, pieces.size(), [&](size_t stage, size_t k, std::vector<float> in) {
    PagedForward& f = *forwards_[stage];
    if (!chained) return f.step(pieces[k], in, /*split_attention=*/false);
    try {
      f.record_linked(pieces[k], /*split_attention=*/false, offsets[k]);
      f.submit_linked({}, {});
      return f.finish_linked();  // the host waits for each micro-batch, as the threads hand over
    } catch (...) {
      f.abandon_linked();  // a micro-batch recorded or submitted, not collected
      throw;
    }
  });
  host_waits_ = uint32_t(n * pieces.size());
  if (!chained) host_copy_bytes_ = 2 * rows * row_bytes * (n - 1);
  return std::move(outputs.back());  // only the last micro-batch has logits
}

std::vector<float> PagedPipeline::step_chained(std::span<const PagedSequence> sequences) {
  host_waits_ = chain_.run(
      [&](size_t i) { forwards_[i]->record_linked(sequences, /*split_attention=*/true, 0); },
      [&](size_t i, StageChain::Semaphores waits, StageChain::Semaphores signals) { forwards_[i]->submit_linked(waits, signals); },
      [&](size_t i) { forwards_[i]->abandon_linked(); });
  std::vector<float> out;
  for (size_t i = 0; i < forwards_.size(); ++i) {
    std::vector<float> r = forwards_[i]->finish_linked();
    if (i + 1 == forwards_.size()) out = std::move(r);
  }
  return out;
}

}  // namespace inferno::model

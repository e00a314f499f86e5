#include "model/pipeline.hpp"

#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <string>

#include "kernels/linear.hpp"
#include "model/stage_threads.hpp"
#include "util/error.hpp"

namespace inferno::model {

namespace {

using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point from, Clock::time_point to) { return std::chrono::duration<double>(to - from).count(); }

}  // namespace

Pipeline::Pipeline(std::vector<const LlamaModel*> stages, uint32_t batch, uint32_t capacity, kernels::KvType kv_type,
                   bool timestamps) {
  if (stages.empty()) throw Error("a pipeline needs at least one stage");
  uint32_t next_layer = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const LlamaModel& m = *stages[i];
    const bool first = i == 0, last = i + 1 == stages.size();
    if (m.has_embedding() != first || m.has_head() != last || m.first_layer() != next_layer)
      throw Error("pipeline stage " + std::to_string(i) + " does not continue the stage before it (layers from " +
                  std::to_string(m.first_layer()) + ", expected " + std::to_string(next_layer) + ")");
    next_layer = m.first_layer() + uint32_t(m.layers().size());
    forwards_.push_back(std::make_unique<Forward>(m, batch, capacity, kv_type, timestamps));
  }
  if (next_layer != stages.front()->hyper().layers)
    throw Error("pipeline stages hold " + std::to_string(next_layer) + " of the model's " +
                std::to_string(stages.front()->hyper().layers) + " layers");
  dynamic_rope_ = stages.front()->hyper().rope.type == "dynamic";
  max_position_embeddings_ = stages.front()->hyper().max_position_embeddings;
  micro_batch_ = micro_batch_rows_from_env(stages.size() >= 2 ? kDefaultMicroBatchRows : 0);
  set_host_links(stage_links_host_only_from_env());
}

void Pipeline::set_host_links(bool host_only) {
  for (auto& f : forwards_) f->set_links(nullptr, nullptr);  // before the buffers they name go
  std::vector<vk::Device*> devices;
  for (auto& f : forwards_) devices.push_back(&f->device());
  chain_.reset(devices, host_only);
}

void Pipeline::connect(size_t i) { forwards_[i]->set_links(chain_.in(i), chain_.out(i)); }

void Pipeline::reserve_links(uint64_t bytes) {
  for (size_t i : chain_.reserve(bytes)) {
    connect(i);
    connect(i + 1);
  }
}

void Pipeline::rewind(uint32_t past) {
  for (auto& f : forwards_) f->rewind(past);
}

std::vector<Pipeline::Range> Pipeline::micro_batches(uint32_t batch, uint32_t tokens) const {
  const std::vector<Range> whole = {{0, tokens}};
  if (forwards_.size() < 2 || micro_batch_ == 0 || batch == 0 || tokens < 2) return whole;
  const uint64_t rows = uint64_t(batch) * tokens;
  if (rows <= micro_batch_) return whole;
  // Tokens a range aims at, and the fewest it may hold: 2 (the tiled attention kernel) and more than
  // kMatvecMaxRows rows (the matmul kernels).
  const uint64_t aim = std::max<uint64_t>(1, micro_batch_ / batch);
  const uint64_t least = std::max<uint64_t>(2, (kernels::kMatvecMaxRows + batch) / batch);
  const uint64_t count = std::min((tokens + aim - 1) / aim, tokens / least);
  if (count < 2) return whole;
  // Even lengths: each range holds floor or ceil of tokens / count ≥ least tokens.
  std::vector<Range> out;
  uint32_t first = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t n = uint32_t(tokens / count + (i < tokens % count ? 1 : 0));
    out.push_back({first, n});
    first += n;
  }
  return out;
}

std::vector<float> Pipeline::step(const Step& s) {
  int32_t max_pos = 0;
  for (int32_t p : s.positions) max_pos = std::max(max_pos, p);
  const bool frequencies_vary = dynamic_rope_ && int64_t(max_pos) + 1 > int64_t(max_position_embeddings_);
  const auto ranges = frequencies_vary ? std::vector<Range>{{0, s.tokens}} : micro_batches(s.batch, s.tokens);
  if (ranges.size() < 2) return step_in_turn(s);
  return step_pipelined(s, ranges);
}

std::vector<float> Pipeline::step_in_turn(const Step& s) {
  // A step the first stage will refuse (its checks name what is wrong) takes the plain path, which refuses it
  // before any link memory is sized for it.
  const Forward& first = *forwards_.front();
  if (chain_.chained() && s.batch == first.cache().batch() && s.tokens > 0 &&
      uint64_t(first.past()) + s.tokens <= first.cache().capacity())
    return step_chained(s);
  return step_host(s);
}

std::vector<float> Pipeline::step_host(const Step& s) {
  const uint32_t past_before = past();
  host_waits_ = 0;
  host_copy_bytes_ = 0;
  stage_seconds_.assign(forwards_.size(), 0.0);
  trace_.clear();
  timings_.assign(forwards_.size(), {});
  double copies_before = 0;
  for (const auto& f : forwards_) copies_before += f->hidden_copy_seconds();
  const auto start = Clock::now();
  auto t0 = start;
  std::vector<float> out;
  try {
    out = forwards_.front()->step(s);
    ++host_waits_;
    for (size_t i = 1; i < forwards_.size(); ++i) {
      const auto t1 = Clock::now();
      stage_seconds_[i - 1] = seconds(t0, t1);
      trace_.push_back({uint32_t(i - 1), 0, seconds(start, t0), seconds(start, t1)});
      t0 = t1;
      Step next = s;
      next.hidden = out;  // read back from stage i-1, written into stage i's mapped input
      transferred_bytes_ += out.size() * 4;
      host_copy_bytes_ += 2 * out.size() * 4;
      out = forwards_[i]->step(next);
      ++host_waits_;
    }
  } catch (...) {
    rewind(past_before);  // the stages before the one that failed took the step
    throw;
  }
  const auto end = Clock::now();
  for (size_t i = 0; i < forwards_.size(); ++i) timings_[i] = forwards_[i]->recorder().timings();
  stage_seconds_.back() = seconds(t0, end);
  trace_.push_back({uint32_t(forwards_.size() - 1), 0, seconds(start, t0), seconds(start, end)});
  step_seconds_ = seconds(start, end);
  transfer_seconds_ = -copies_before;
  for (const auto& f : forwards_) transfer_seconds_ += f->hidden_copy_seconds();
  return out;
}

std::vector<float> Pipeline::step_chained(const Step& s) {
  const size_t n = forwards_.size();
  const uint64_t bytes = uint64_t(s.batch) * s.tokens * forwards_.front()->hidden_size() * 4;
  reserve_links(bytes);
  stage_seconds_.assign(n, 0.0);
  trace_.clear();
  host_waits_ = 0;
  host_copy_bytes_ = 0;
  const uint32_t past_before = past();
  const auto start = Clock::now();
  std::vector<Clock::time_point> began(n), done(n);
  host_waits_ = chain_.run([&](size_t i) {
        began[i] = Clock::now();
        forwards_[i]->record_linked(s);
      },
      [&](size_t i, StageChain::Semaphores waits, StageChain::Semaphores signals) { forwards_[i]->submit_linked(waits, signals); },
      [&](size_t i) { forwards_[i]->abandon_linked(); },  // the cache as before the step
      [&](size_t i) { done[i] = Clock::now(); });
  std::vector<float> out;
  timings_.assign(n, {});
  for (size_t i = 0; i < n; ++i) {
    std::vector<float> r = forwards_[i]->finish_linked();
    timings_[i] = forwards_[i]->recorder().timings();
    if (i + 1 == n) out = std::move(r);
  }
  const auto end = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    if (done[i] == Clock::time_point{}) done[i] = end;  // known done only when the last stage is
    stage_seconds_[i] = seconds(began[i], done[i]);
    trace_.push_back({uint32_t(i), 0, seconds(start, began[i]), seconds(start, done[i])});
  }
  step_seconds_ = seconds(start, end);
  transfer_seconds_ = 0;
  transferred_bytes_ += bytes * (n - 1);
  // A NaN or infinity: the step again the plain way, whose last stage names where it first appears.
  if (!std::all_of(out.begin(), out.end(), [](float v) { return std::isfinite(v); })) {
    rewind(past_before);
    return step_host(s);
  }
  return out;
}

std::vector<float> Pipeline::step_pipelined(const Step& s, const std::vector<Range>& ranges) {
  const size_t stages = forwards_.size(), pieces = ranges.size();
  if (s.ids.size() != uint64_t(s.batch) * s.tokens || s.positions.size() != uint64_t(s.batch) * s.tokens)
    throw Error("forward step: ids, positions and kv_start sizes disagree with batch × tokens");
  // Each micro-batch's ids and positions: its range of every sequence, sequence-major as a step wants them.
  std::vector<std::vector<int32_t>> ids(pieces), positions(pieces);
  for (size_t k = 0; k < pieces; ++k)
    for (uint32_t b = 0; b < s.batch; ++b) {
      const size_t from = size_t(b) * s.tokens + ranges[k].first;
      ids[k].insert(ids[k].end(), s.ids.begin() + long(from), s.ids.begin() + long(from + ranges[k].count));
      positions[k].insert(positions[k].end(), s.positions.begin() + long(from),
                          s.positions.begin() + long(from + ranges[k].count));
    }

  const uint32_t past_before = past();
  double copies_before = 0;
  for (const auto& f : forwards_) copies_before += f->hidden_copy_seconds();
  // Chained links: micro-batch k's rows cross through its own place in the link memory (its rows' offset in the
  // step), written by stage i's commands and read by stage i + 1's once stage i is done with it, with no host copy.
  // A step the first stage will refuse takes the host copy, which refuses it before any link memory is sized for it.
  const Forward& first = *forwards_.front();
  const bool linked = chain_.chained() && s.batch == first.cache().batch() &&
                      uint64_t(first.past()) + s.tokens <= first.cache().capacity();
  const uint64_t row_bytes = uint64_t(first.hidden_size()) * 4;
  if (linked) reserve_links(uint64_t(s.batch) * s.tokens * row_bytes);
  std::vector<double> busy(stages, 0.0);
  std::vector<uint64_t> moved(stages, 0);
  std::vector<std::vector<vk::DispatchTime>> timings(stages);  // each stage's thread appends to its own
  std::vector<MicroBatchTime> trace;
  std::mutex trace_mutex;
  const auto start = Clock::now();
  auto run = [&](size_t i, size_t k, std::vector<float> hidden) {
    const Step piece{.batch = s.batch, .tokens = ranges[k].count, .ids = ids[k], .positions = positions[k],
                     .kv_start = s.kv_start, .rows = s.rows, .hidden = hidden};
    const auto t0 = Clock::now();
    std::vector<float> out;
    try {
      if (linked) {
        forwards_[i]->record_linked(piece, uint64_t(s.batch) * ranges[k].first * row_bytes);
        forwards_[i]->submit_linked({}, {});
        out = forwards_[i]->finish_linked();  // the host waits for each micro-batch, as the threads hand over
      } else {
        out = forwards_[i]->step(piece);
      }
    } catch (...) {
      forwards_[i]->abandon_linked();  // a micro-batch recorded or submitted, not collected
      throw;
    }
    const auto t1 = Clock::now();
    busy[i] += seconds(t0, t1);
    for (auto& t : forwards_[i]->recorder().timings()) timings[i].push_back(std::move(t));
    if (i + 1 < stages) moved[i] += uint64_t(s.batch) * ranges[k].count * row_bytes;
    {
      std::lock_guard lock(trace_mutex);
      trace.push_back({uint32_t(i), uint32_t(k), seconds(start, t0), seconds(start, t1)});
    }
    return out;
  };
  std::vector<std::vector<float>> last;  // the last stage's output of each micro-batch
  std::exception_ptr error;
  try {
    last = run_stage_threads(stages, pieces, run);
  } catch (...) {
    error = std::current_exception();
  }
  step_seconds_ = seconds(start, Clock::now());
  stage_seconds_ = busy;
  trace_ = std::move(trace);
  timings_ = std::move(timings);
  transfer_seconds_ = -copies_before;
  for (const auto& f : forwards_) transfer_seconds_ += f->hidden_copy_seconds();
  host_waits_ = uint32_t(stages * pieces);
  host_copy_bytes_ = 0;
  for (uint64_t m : moved) {
    transferred_bytes_ += m;
    if (!linked) host_copy_bytes_ += 2 * m;
  }
  if (error) {
    rewind(past_before);  // every stage as before the step (some ran more micro-batches than others)
    std::rethrow_exception(error);
  }

  // A NaN or infinity (checked by each stage's own step on the host copy): the step again the plain way, which names
  // the first layer at fault.
  if (linked && std::any_of(last.begin(), last.end(), [](const std::vector<float>& l) {
        return !std::all_of(l.begin(), l.end(), [](float v) { return std::isfinite(v); });
      })) {
    rewind(past_before);
    return step_host(s);
  }
  if (s.rows == LogitsRows::Last) return std::move(last.back());  // each sequence's last token is in the last range
  // Every row's logits: micro-batch k holds rows [first, first + count) of each sequence.
  const size_t vocab = last.front().size() / (size_t(s.batch) * ranges.front().count);
  std::vector<float> out(size_t(s.batch) * s.tokens * vocab);
  for (size_t k = 0; k < pieces; ++k)
    for (uint32_t b = 0; b < s.batch; ++b)
      std::copy_n(last[k].begin() + long(size_t(b) * ranges[k].count * vocab), size_t(ranges[k].count) * vocab,
                  out.begin() + long((size_t(b) * s.tokens + ranges[k].first) * vocab));
  return out;
}

}  // namespace inferno::model

// Parity with Hugging Face transformers on the fixture checkpoints (tests/data/hf-llama, see tests/data/README.md):
// logits against transformers' float32 run, greedy continuations, the KV-cache path position by position, and
// left-padded batches.
#include <algorithm>
#include <cmath>

#include "generate/session.hpp"
#include "gpu_support.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "kernels/linear.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

struct Case {
  const char* name;
  bool f32;  // F32 checkpoint: f32 KV cache by default and the tight tolerance
  int prompts;
  bool continuation;
};

// Tolerances on max |Δ| / max |ref| against transformers' float32 logits (the numbers): F32 weights with f32
// accumulation differ from torch only by summation order (~1e-6); F16/BF16 checkpoints run here with an f16 KV
// cache by default, whose rounding of K and V (relative 2^-11) bounds the error at a few 1e-4 on these models.
double tolerance(const Case& c) { return c.f32 ? 1e-4 : 3e-3; }

const Case kCases[] = {
    {"llama3-gqa-f32", true, 3, true},   {"llama3-tied-bf16", false, 3, true}, {"bias-headdim-f16", false, 3, true},
    {"mha-sharded-bf16", false, 3, true}, {"mqa-yarn-f32", true, 3, true},     {"llama3-vocab-tied-bf16", false, 2, false},
    // dynamic NTK scaling with max_position_embeddings 16: every prompt + continuation decodes past it, so inv_freq is
    // recomputed each step from max(position_ids) + 1 (and for the whole 33-token prompt at prefill)
    {"dynamic-rope-f32", true, 3, true},
};

std::vector<int32_t> to_i32(const std::vector<int64_t>& v) { return std::vector<int32_t>(v.begin(), v.end()); }

std::unique_ptr<model::LlamaModel> load(const Case& c) {
  return model::LlamaModel::load(test_device(), data_path(std::string("hf-llama/") + c.name), {.quiet = true});
}

}  // namespace

TEST_CASE("logits equal transformers' float32 logits on every fixture") {
  for (const Case& c : kCases) {
    const std::string name = c.name;
    CAPTURE(name);
    ValidationGuard guard;
    auto m = load(c);
    io::SafetensorsFile ref(data_path(std::string("hf-llama/") + c.name + "/reference.safetensors"));
    gen::Session session(*m, 64, model::default_kv_type(*m));
    for (int p = 0; p < c.prompts; ++p) {
      CAPTURE(p);
      const std::string key = "prompt" + std::to_string(p);
      const auto ids = to_i32(ref.read_i64(key + ".input_ids"));
      const auto want = ref.read_f32(key + ".logits_f32");
      auto got = session.all_logits(ids);
      if (want.size() < got.size()) got.erase(got.begin(), got.end() - long(want.size()));  // last position only
      const double err = relative_max_error(got, want);
      MESSAGE(name << " prompt " << p << ": max|Δ|/max|ref| = " << err);
      CHECK(err <= tolerance(c));
      if (!c.f32) {
        // The aim: closer to transformers' float32 numbers than transformers itself in the checkpoint's dtype.
        auto native = ref.read_f32(key + ".logits");
        if (want.size() < native.size()) native.erase(native.begin(), native.end() - long(want.size()));
        const double native_err = relative_max_error(native, want);
        MESSAGE(name << " prompt " << p << ": transformers in its own dtype: " << native_err);
        CHECK(err < native_err);
      }
    }
  }
}

TEST_CASE("greedy continuations equal transformers' (f32 KV cache)") {
  for (const Case& c : kCases) {
    const std::string name = c.name;
    CAPTURE(name);
    auto m = load(c);
    io::SafetensorsFile ref(data_path(std::string("hf-llama/") + c.name + "/reference.safetensors"));
    gen::Session session(*m, 80, kernels::KvType::F32);
    for (int p = 0; p < c.prompts; ++p) {
      CAPTURE(p);
      const std::string key = "prompt" + std::to_string(p);
      const auto ids = to_i32(ref.read_i64(key + ".input_ids"));
      const auto want = to_i32(ref.read_i64(key + ".greedy_f32"));
      gen::GenerateOptions o;
      o.max_new_tokens = int(want.size());
      o.ignore_eos = true;
      CHECK(session.generate(ids, o) == want);
    }
  }
}

TEST_CASE("the KV-cache path reproduces transformers' logits position by position, one submission per decode step") {
  for (const Case& c : kCases) {
    if (!c.continuation) continue;
    const std::string name = c.name;
    CAPTURE(name);
    auto m = load(c);
    io::SafetensorsFile ref(data_path(std::string("hf-llama/") + c.name + "/reference.safetensors"));
    const uint32_t vocab = m->hyper().vocab;
    for (int p = 0; p < c.prompts; ++p) {
      CAPTURE(p);
      const std::string key = "prompt" + std::to_string(p);
      const auto prompt = to_i32(ref.read_i64(key + ".input_ids"));
      const auto greedy = to_i32(ref.read_i64(key + ".greedy_f32"));
      const auto want = ref.read_f32(key + ".continuation_logits_f32");  // [T + 24, V]
      model::Forward fwd(*m, 1, 64, model::default_kv_type(*m));
      const int32_t kv_start = 0;
      std::vector<int32_t> positions(prompt.size());
      for (size_t i = 0; i < prompt.size(); ++i) positions[i] = int32_t(i);
      auto logits = fwd.step({.batch = 1, .tokens = uint32_t(prompt.size()), .ids = prompt, .positions = positions,
                              .kv_start = std::span(&kv_start, 1)});
      double worst = relative_max_error(logits, std::span(want).subspan((prompt.size() - 1) * vocab, vocab));
      for (size_t k = 0; k < greedy.size(); ++k) {
        const int32_t pos = int32_t(prompt.size() + k);
        const uint64_t before = test_device().submissions();
        logits = fwd.step({.batch = 1, .tokens = 1, .ids = std::span(&greedy[k], 1), .positions = std::span(&pos, 1),
                           .kv_start = std::span(&kv_start, 1)});
        CHECK(test_device().submissions() == before + 1);  // a decode step is exactly one queue submission
        worst = std::max(worst, relative_max_error(logits, std::span(want).subspan(size_t(pos) * vocab, vocab)));
      }
      MESSAGE(name << " prompt " << p << " continuation: max|Δ|/max|ref| = " << worst);
      CHECK(worst <= tolerance(c));
      // The prompt, and one decode step replayed for all the others (a one-token prompt is itself that step).
      CHECK(fwd.recordings() == (prompt.size() == 1 ? 1u : 2u));
    }
  }
}

// The replayed decode recording reads ids, positions and past at run time: it must give the very bits that a fresh
// recording of each step gives, in a batch with left padding, across a rewind (chat edits) and after a longer
// prefill has reallocated the scratch buffers (which forces a new recording).
TEST_CASE("replayed decode steps equal freshly recorded ones bit for bit") {
  const Case& c = kCases[0];
  auto m = load(c);
  const uint32_t vocab = m->hyper().vocab, batch = 2;
  model::Forward replayed(*m, batch, 64, kernels::KvType::F16), fresh(*m, batch, 64, kernels::KvType::F16),
      split(*m, batch, 64, kernels::KvType::F16), folded(*m, batch, 64, kernels::KvType::F16);
  fresh.set_replay_decode(false);
  // The fold pinned off (INFERNO_NORM_FOLD may set the default), but in `folded`.
  for (model::Forward* f : {&replayed, &fresh, &split}) f->set_fold_norms(false);
  split.set_attention_splits(5);  // split-K attention (GPUs' decode), replayed too: another order of the same sums
  folded.set_fold_norms(true);    // RMSNorm inside the projections of steps of up to 8 rows
  Rng rng(405);
  INFERNO_SEED_INFO();
  const std::vector<int32_t> kv_start = {0, 2};
  auto run_both = [&](uint32_t tokens) {
    std::vector<int32_t> ids(batch * tokens), positions(batch * tokens);
    for (uint32_t b = 0; b < batch; ++b)
      for (uint32_t t = 0; t < tokens; ++t) {
        ids[b * tokens + t] = rng.integer(0, int(vocab) - 1);
        positions[b * tokens + t] = std::max<int32_t>(int32_t(replayed.past() + t) - kv_start[b], 1);
      }
    const model::Step step{.batch = batch, .tokens = tokens, .ids = ids, .positions = positions, .kv_start = kv_start};
    const auto a = replayed.step(step), b = fresh.step(step), c = split.step(step), f = folded.step(step);
    REQUIRE(a.size() == size_t(batch) * vocab);
    // f32 model, f16 cache: split-K changes only the order of f32 sums and the exps of the softmax (a few 1e-6 of
    // an attention output), which two random layers and the lm_head amplify to at most 2.2e-5 of the logits' scale
    // over many seeds; a combine that mis-weights its splits gives 0.2. Bound: 2e-4.
    CHECK(relative_max_error(c, b) <= 2e-4);
    // The folded norm rounds (x·g)·w·inv_rms where the norm kernel rounds ((x·inv_rms)·g)·w, and sums the squares in
    // another order: f32 roundings again, under the same bound (a norm weight left out moves the logits by ~1).
    CHECK(relative_max_error(f, b) <= 2e-4);
    // Two norm kernels a layer fewer where the rows are few enough to fold (the matrix·vector kernel's: up to 8 on
    // GPUs, 1 on CPU drivers, whose register-blocked kernel takes more), and the final one (last rows only).
    const uint64_t saved =
        (kernels::linear_folds_norm(test_device(), batch * tokens) ? 2 * m->hyper().layers : 0) +
        (kernels::linear_folds_norm(test_device(), batch) ? 1 : 0);
    CHECK(folded.recorder().dispatch_count() + saved == fresh.recorder().dispatch_count());
    CHECK(std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) {
      return std::bit_cast<uint32_t>(x) == std::bit_cast<uint32_t>(y);
    }));
  };
  run_both(5);
  for (int i = 0; i < 6; ++i) run_both(1);
  CHECK(replayed.recordings() == 2);
  CHECK(fresh.recordings() == 7);
  replayed.rewind(3);
  fresh.rewind(3);
  split.rewind(3);
  folded.rewind(3);
  for (int i = 0; i < 3; ++i) run_both(1);
  CHECK(replayed.recordings() == 2);  // a rewind changes only past, which the recording reads at run time
  run_both(9);                        // more rows than before: new scratch buffers
  for (int i = 0; i < 3; ++i) run_both(1);
  CHECK(replayed.recordings() == 4);
}

TEST_CASE("left-padded batches generate what transformers' batched generate does") {
  for (const Case& c : kCases) {
    const std::string name = c.name;
    CAPTURE(name);
    auto m = load(c);
    io::SafetensorsFile ref(data_path(std::string("hf-llama/") + c.name + "/reference.safetensors"));
    const auto& shape = ref.at("batch.input_ids_left_padded").shape;
    const auto padded = ref.read_i64("batch.input_ids_left_padded");
    const auto mask = ref.read_i64("batch.attention_mask");
    const auto want = ref.read_i64("batch.greedy_f32");
    const size_t batch = size_t(shape[0]), len = size_t(shape[1]), n = want.size() / batch;
    std::vector<std::vector<int32_t>> prompts(batch);
    for (size_t b = 0; b < batch; ++b)
      for (size_t t = 0; t < len; ++t)
        if (mask[b * len + t]) prompts[b].push_back(int32_t(padded[b * len + t]));
    gen::Session session(*m, uint32_t(len + n), kernels::KvType::F32, uint32_t(batch));
    gen::GenerateOptions o;
    o.max_new_tokens = int(n);
    o.ignore_eos = true;
    const auto got = session.generate_batch(prompts, o, 0);
    for (size_t b = 0; b < batch; ++b) {
      CAPTURE(b);
      CHECK(got[b] == to_i32(std::vector<int64_t>(want.begin() + long(b * n), want.begin() + long((b + 1) * n))));
    }
  }
}

TEST_CASE("device memory = weights on disk + KV cache + scratch, as the allocator holds it") {
  const uint64_t before = test_device().allocated_bytes();
  {
    auto m = load(kCases[3]);  // sharded BF16
    io::Checkpoint ckpt(data_path("hf-llama/mha-sharded-bf16"));
    CHECK(m->weight_bytes() == ckpt.total_tensor_bytes());
    gen::Session session(*m, 100, kernels::KvType::F16);
    const std::vector<int32_t> ids = {1, 2, 3, 4, 5};
    session.all_logits(ids);
    const auto& f = session.forward();
    CHECK(f.cache().bytes() >= model::KvCache::bytes_for(m->hyper(), 1, 100, kernels::KvType::F16));
    // Everything the device holds is accounted for by weights (with allocation padding), the cache and scratch.
    const uint64_t held = test_device().allocated_bytes() - before;
    const uint64_t accounted = f.cache().bytes() + f.scratch_bytes();
    CHECK(held >= accounted + m->weight_bytes());
    CHECK(held - accounted - m->weight_bytes() < 64 * 1024);  // weights' own allocation rounding only
  }
  CHECK(test_device().allocated_bytes() == before);
}

TEST_CASE("a full context is a clear error, never a write past the cache") {
  auto m = load(kCases[0]);
  gen::Session session(*m, 8, kernels::KvType::F32);
  gen::GenerateOptions o;
  o.max_new_tokens = 20;
  o.ignore_eos = true;
  const std::vector<int32_t> ids = {1, 2, 3};
  CHECK_THROWS_WITH_AS(session.generate(ids, o), doctest::Contains("context full"), inferno::Error);
  const std::vector<int32_t> bad = {1, 100000};
  CHECK_THROWS_WITH_AS(session.all_logits(bad), doctest::Contains("100000"), inferno::Error);
}

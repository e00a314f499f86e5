// Continuous batching over the paged KV cache: the pool's bookkeeping (references, prefix cache, LRU eviction), the
// engine against transformers' greedy continuations, and the promises of the batching issue: a greedy request gives
// the same tokens alone or beside others at different positions, with its prefix from the cache or computed, with
// its prompt prefilled whole or in chunks; a cancelled request leaves nothing behind in the pool.
#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "generate/scheduler.hpp"
#include "gpu_support.hpp"
#include "io/safetensors.hpp"
#include "model/llama.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::KvType;

namespace {

std::vector<int32_t> to_i32(const std::vector<int64_t>& v) { return std::vector<int32_t>(v.begin(), v.end()); }

const model::LlamaModel& demo_model() {
  static auto m = model::LlamaModel::load(test_device(), root_dir() / "models/brown-8m-bf16", {.quiet = true});
  return *m;
}

std::vector<int32_t> random_ids(Rng& rng, size_t n) {
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = rng.integer(3, 31999);
  return ids;
}

gen::GenerateOptions greedy(int max_new_tokens) {
  gen::GenerateOptions o;
  o.max_new_tokens = max_new_tokens;
  o.ignore_eos = true;
  return o;
}

// Runs the requests through one scheduler and returns each one's result.
std::vector<gen::RequestResult> run_all(gen::Scheduler& s, const std::vector<std::vector<int32_t>>& prompts,
                                        const std::vector<gen::GenerateOptions>& options) {
  std::vector<gen::RequestResult> results(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i)
    s.submit({.prompt = prompts[i], .options = options[i],
              .on_finish = [&results, i](const gen::RequestResult& r) { results[i] = r; }});
  s.run_until_idle();
  return results;
}

}  // namespace

TEST_CASE("the block pool counts references, keeps published blocks for reuse and evicts the least recently used") {
  model::LlamaHyper h;
  h.layers = 1;
  h.kv_heads = 1;
  h.head_dim = 2;
  model::PagedKvCache pool(test_device(), h, 3, 4, KvType::F32);
  const std::vector<int32_t> a{1, 2, 3, 4}, b{5, 6, 7, 8}, c{9, 9, 9, 9};
  const uint32_t x = *pool.allocate(), y = *pool.allocate(), z = *pool.allocate();
  CHECK(pool.available() == 0);
  CHECK_FALSE(pool.allocate());
  pool.publish(x, 0, a);
  const uint64_t ha = model::PagedKvCache::chain_hash(0, a);
  pool.publish(y, ha, b);
  pool.release(z);  // unpublished: free at once
  CHECK(pool.available() == 1);
  // A reference from a lookup keeps a block alive after its first owner is gone.
  const auto again = pool.lookup(0, a);
  REQUIRE(again);
  CHECK(*again == x);
  pool.release(x);
  pool.release(*again);
  pool.release(y);
  CHECK(pool.available() == 3);
  CHECK(pool.in_use() == 0);
  CHECK(pool.cached_blocks() == 2);
  // Same tokens after another parent, or other tokens under the same parent: not the cached block.
  CHECK_FALSE(pool.lookup(ha, a));
  CHECK_FALSE(pool.lookup(0, c));
  // y was released last, so x is the least recently used cached block and is evicted first.
  const uint32_t first = *pool.allocate();  // the free block
  CHECK(first == z);
  const uint32_t second = *pool.allocate();  // evicts x
  CHECK(second == x);
  CHECK_FALSE(pool.lookup(0, a));
  CHECK(pool.lookup(ha, b) == y);
  CHECK_THROWS_WITH(pool.publish(y, 0, std::vector<int32_t>{1, 2}), doctest::Contains("full blocks"));
  pool.release(y);
  pool.release(first);
  pool.release(second);
  CHECK_THROWS_WITH(pool.release(second), doctest::Contains("released twice"));
  CHECK(pool.available() == 3);
}

TEST_CASE("batched greedy continuations equal transformers' (f32 KV cache, all prompts in one batch)") {
  // The fixtures' prompts and transformers' float32 greedy continuations (tests/data/hf-llama): every prompt of a
  // checkpoint at once, at different lengths, in small blocks so that tables span several of them.
  for (const char* name : {"llama3-gqa-f32", "mqa-yarn-f32", "bias-headdim-f16", "mha-sharded-bf16"}) {
    CAPTURE(name);
    auto m = model::LlamaModel::load(test_device(), data_path(std::string("hf-llama/") + name), {.quiet = true});
    io::SafetensorsFile ref(data_path(std::string("hf-llama/") + name + "/reference.safetensors"));
    std::vector<std::vector<int32_t>> prompts, want;
    std::vector<gen::GenerateOptions> options;
    for (int p = 0; p < 3; ++p) {
      const std::string key = "prompt" + std::to_string(p);
      prompts.push_back(to_i32(ref.read_i64(key + ".input_ids")));
      want.push_back(to_i32(ref.read_i64(key + ".greedy_f32")));
      options.push_back(greedy(int(want.back().size())));
    }
    model::PagedKvCache pool(test_device(), m->hyper(), 64, 4, KvType::F32);
    gen::Scheduler s(*m, pool, {.max_sequences = 3, .batch_tokens = 64, .max_context = 128});
    const auto results = run_all(s, prompts, options);
    for (size_t p = 0; p < prompts.size(); ++p) {
      CAPTURE(p);
      CHECK(results[p].tokens == want[p]);
      CHECK(results[p].reason == gen::FinishReason::Length);
    }
    CHECK(pool.in_use() == 0);
  }
}

TEST_CASE("a greedy request gives the same tokens alone, beside 7 others, chunked, and from the prefix cache") {
  INFERNO_SEED_INFO();
  const auto& m = demo_model();
  Rng rng(77);
  // Eight prompts of different lengths (so different positions at every step) and lengths to generate.
  std::vector<std::vector<int32_t>> prompts;
  std::vector<gen::GenerateOptions> options;
  for (int i = 0; i < 8; ++i) {
    prompts.push_back(random_ids(rng, size_t(rng.integer(1, 90))));
    options.push_back(greedy(rng.integer(8, 24)));
  }
  model::PagedKvCache pool(test_device(), m.hyper(), 256, 16, KvType::F32);
  std::vector<std::vector<int32_t>> alone;
  {
    gen::Scheduler s(m, pool, {.max_sequences = 1, .max_context = 256, .prefix_cache = false});
    for (size_t i = 0; i < prompts.size(); ++i) alone.push_back(run_all(s, {prompts[i]}, {options[i]})[0].tokens);
  }
  // The old one-sequence path gives the same tokens.
  {
    gen::Session session(m, 256, KvType::F32);
    for (size_t i = 0; i < prompts.size(); ++i) CHECK(session.generate(prompts[i], options[i]) == alone[i]);
  }
  SUBCASE("beside 7 others") {
    gen::Scheduler s(m, pool, {.max_sequences = 8, .max_context = 256, .prefix_cache = false});
    const auto results = run_all(s, prompts, options);
    for (size_t i = 0; i < prompts.size(); ++i) CHECK(results[i].tokens == alone[i]);
    CHECK(s.stats().steps < 8 * 24);  // they ran together
  }
  SUBCASE("prefilled in chunks of 7 tokens beside decoding sequences") {
    gen::Scheduler s(m, pool, {.max_sequences = 8, .batch_tokens = 8, .max_context = 256, .prefix_cache = false});
    const auto results = run_all(s, prompts, options);
    for (size_t i = 0; i < prompts.size(); ++i) CHECK(results[i].tokens == alone[i]);
  }
  SUBCASE("prefix from the cache") {
    gen::Scheduler s(m, pool, {.max_sequences = 8, .max_context = 256});
    // A 70-token shared prefix: the second round finds its 4 full blocks (64 tokens) computed by the first.
    const auto prefix = random_ids(rng, 70);
    std::vector<std::vector<int32_t>> first, second;
    for (int i = 0; i < 4; ++i) {
      auto p = prefix;
      const auto tail = random_ids(rng, size_t(rng.integer(1, 20)));
      p.insert(p.end(), tail.begin(), tail.end());
      (i % 2 ? second : first).push_back(p);
    }
    const std::vector<gen::GenerateOptions> o2(2, greedy(12));
    const auto r1 = run_all(s, first, o2);
    CHECK(r1[0].cached_tokens == 0);
    const auto r2 = run_all(s, second, o2);
    for (const auto& r : r2) CHECK(r.cached_tokens == 64);
    gen::Scheduler computed(m, pool, {.max_sequences = 1, .max_context = 256, .prefix_cache = false});
    for (size_t i = 0; i < second.size(); ++i) CHECK(run_all(computed, {second[i]}, {o2[i]})[0].tokens == r2[i].tokens);
    // A prompt that is exactly the cached blocks still computes its last token itself.
    const std::vector<int32_t> exact(prefix.begin(), prefix.begin() + 64);
    const auto r3 = run_all(s, {exact}, {greedy(4)});
    CHECK(r3[0].cached_tokens == 48);
    CHECK(r3[0].tokens == run_all(computed, {exact}, {greedy(4)})[0].tokens);
  }
  CHECK(pool.in_use() == 0);
}

TEST_CASE("cancelled and stopped requests leave nothing behind in the pool; the engine takes requests from many threads") {
  const auto& m = demo_model();
  Rng rng(78);
  model::PagedKvCache pool(test_device(), m.hyper(), 64, 16, KvType::F16);
  SUBCASE("cancel mid-way, and a callback that stops") {
    gen::Scheduler s(m, pool, {.max_sequences = 4, .max_context = 256});
    std::vector<gen::RequestResult> results(3);
    uint64_t victim = 0;
    int seen = 0;
    victim = s.submit({.prompt = random_ids(rng, 40), .options = greedy(50),
                       .on_token = [&](int32_t) { if (++seen == 3) s.cancel(victim); return true; },
                       .on_finish = [&](const gen::RequestResult& r) { results[0] = r; }});
    int own = 0;
    s.submit({.prompt = random_ids(rng, 20), .options = greedy(50), .on_token = [&](int32_t) { return ++own < 4; },
              .on_finish = [&](const gen::RequestResult& r) { results[1] = r; }});
    s.submit({.prompt = random_ids(rng, 30), .options = greedy(6),
              .on_finish = [&](const gen::RequestResult& r) { results[2] = r; }});
    s.run_until_idle();
    CHECK(results[0].reason == gen::FinishReason::Cancelled);
    CHECK(results[0].tokens.size() == 3);
    CHECK(results[1].reason == gen::FinishReason::Stopped);
    CHECK(results[1].tokens.size() == 4);
    CHECK(results[2].reason == gen::FinishReason::Length);
    CHECK(results[2].tokens.size() == 6);
    CHECK(pool.in_use() == 0);
  }
  SUBCASE("requests the pool or the context can never hold end with a clear error") {
    gen::Scheduler s(m, pool, {.max_sequences = 2, .max_context = 2000});
    const auto r = run_all(s, {random_ids(rng, 1000), {}}, {greedy(200), greedy(2)});
    CHECK(r[0].reason == gen::FinishReason::Error);
    CHECK(r[0].error.find("KV blocks") != std::string::npos);
    CHECK(r[1].error.find("empty") != std::string::npos);
    gen::Scheduler small(m, pool, {.max_sequences = 2, .max_context = 32});
    const auto r2 = run_all(small, {random_ids(rng, 40)}, {greedy(2)});
    CHECK(r2[0].error.find("raise --ctx") != std::string::npos);
    CHECK(pool.in_use() == 0);
  }
  SUBCASE("several threads submit, stream and cancel at once") {
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 6; ++i) prompts.push_back(random_ids(rng, size_t(rng.integer(5, 40))));
    std::vector<std::vector<int32_t>> alone;
    {
      gen::Scheduler s(m, pool, {.max_sequences = 1, .max_context = 256, .prefix_cache = false});
      for (const auto& p : prompts) alone.push_back(run_all(s, {p}, {greedy(10)})[0].tokens);
    }
    gen::BatchEngine engine(m, pool, {.max_sequences = 4, .max_context = 256});
    std::vector<std::thread> threads;
    std::vector<std::vector<int32_t>> streamed(prompts.size());
    std::vector<gen::RequestResult> results(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i)
      threads.emplace_back([&, i] {
        std::promise<void> done;
        const bool cancel = i == 5;
        std::atomic<uint64_t> id{0};
        id = engine.submit({.prompt = prompts[i], .options = greedy(cancel ? 1000 : 10),
                            .on_token = [&, i](int32_t t) { streamed[i].push_back(t); return true; },
                            .on_finish = [&, i](const gen::RequestResult& r) { results[i] = r; done.set_value(); }});
        if (cancel) engine.cancel(id);
        done.get_future().wait();
      });
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < 5; ++i) {
      CHECK(results[i].tokens == alone[i]);
      CHECK(streamed[i] == alone[i]);
    }
    CHECK(results[5].reason == gen::FinishReason::Cancelled);
    CHECK(pool.in_use() == 0);
  }
}

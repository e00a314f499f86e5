// The C API of the batching engine (inferno_engine_*), compiled as C++: several threads submitting at once get the
// tokens each request gets alone, a token callback stops its request, cancel by id leaves no KV block held, freeing
// the engine ends what runs, and bad arguments come back as a status.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "capi_support.hpp"
#include "inferno/inferno.h"
#include "inferno/inferno.hpp"
#include "test_support.hpp"

using namespace inferno::testing;

namespace {

// What the callbacks of the requests of one test saw, filled from the engine's thread.
struct Board {
  std::mutex mutex;
  std::condition_variable done;
  std::map<uint64_t, std::vector<int32_t>> tokens;  // by id, from the finish callback
  std::map<uint64_t, inferno_finish_reason> reasons;
  std::map<uint64_t, std::string> errors;
  void wait_for(size_t finished) {
    std::unique_lock lock(mutex);
    REQUIRE(done.wait_for(lock, std::chrono::seconds(120), [&] { return reasons.size() >= finished; }));
  }
};

void on_finish(const inferno_request_result* r, void* user_data) {
  auto& board = *static_cast<Board*>(user_data);
  std::lock_guard lock(board.mutex);
  board.tokens[r->id].assign(r->tokens, r->tokens + r->new_tokens);
  board.reasons[r->id] = r->finish_reason;
  board.errors[r->id] = r->error;
  board.done.notify_all();
}

inferno_engine* make_engine(uint32_t parallel, uint32_t ctx) {
  inferno_engine_params p = inferno_engine_default_params();
  p.parallel = parallel;
  p.ctx = ctx;
  p.kv_dtype = INFERNO_KV_F32;  // greedy results then do not depend on the batch
  inferno_engine* engine = nullptr;
  REQUIRE_MESSAGE(inferno_engine_create(brown_c(), &p, &engine) == INFERNO_OK, inferno_last_error());
  return engine;
}

// Polls until the engine holds no request and no block (the counts are published at the end of a step).
inferno_engine_counts settle(inferno_engine* engine) {
  inferno_engine_counts c{};
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(inferno_engine_get_counts(engine, &c) == INFERNO_OK);
    if (c.running == 0 && c.waiting == 0 && c.kv_blocks_in_use == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return c;
}

}  // namespace

TEST_CASE("engine C API: the default parameters are the C++ API's") {
  const inferno_engine_params p = inferno_engine_default_params();
  const inferno::EngineOptions d;
  CHECK(p.parallel == d.parallel);
  CHECK(p.ctx == d.ctx);
  CHECK(p.kv_budget_bytes == d.kv_budget_bytes);
  CHECK(p.kv_budget_share == d.kv_budget_share);
  CHECK(p.batch_tokens == d.batch_tokens);
  CHECK(p.kv_dtype == INFERNO_KV_AUTO);
  CHECK(d.kv_dtype == inferno::KvDtype::Auto);
  CHECK(p.prefix_cache == (d.prefix_cache ? 1 : 0));
}

TEST_CASE("engine C API: four threads submit at once; each request gets the tokens it gets alone") {
  const std::vector<std::vector<int32_t>> prompts = {{1, 450, 4853}, {1, 306, 2355, 471, 263}, {1, 29871}, {1, 17, 900, 31}};
  inferno_generate_params g = inferno_generate_default_params();
  g.max_new_tokens = 10;
  g.ignore_eos = 1;

  // Alone: one request at a time on an engine of one.
  std::vector<std::vector<int32_t>> alone;
  {
    inferno_engine* engine = make_engine(1, 64);
    Board board;
    g.user_data = &board;
    for (const auto& p : prompts) {
      uint64_t id = 0;
      REQUIRE(inferno_engine_submit(engine, p.data(), p.size(), &g, on_finish, &id) == INFERNO_OK);
      board.wait_for(alone.size() + 1);
      std::lock_guard lock(board.mutex);
      CHECK(board.reasons[id] == INFERNO_FINISH_LENGTH);
      alone.push_back(board.tokens[id]);
    }
    inferno_engine_free(engine);
  }

  inferno_engine* engine = make_engine(8, 64);
  Board board;
  g.user_data = &board;
  std::map<uint64_t, size_t> prompt_of;
  std::mutex ids_mutex;
  std::vector<std::thread> threads;
  std::atomic<int> go{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      while (go.load() == 0) std::this_thread::yield();  // all four at once
      for (int r = 0; r < 3; ++r) {
        const size_t which = size_t(t + r) % prompts.size();
        uint64_t id = 0;
        const inferno_status s =
            inferno_engine_submit(engine, prompts[which].data(), prompts[which].size(), &g, on_finish, &id);
        std::lock_guard lock(ids_mutex);
        CHECK(s == INFERNO_OK);
        prompt_of[id] = which;
      }
    });
  go = 1;
  for (auto& t : threads) t.join();
  REQUIRE(prompt_of.size() == 12);  // twelve distinct ids
  board.wait_for(12);
  {
    std::lock_guard lock(board.mutex);
    for (const auto& [id, which] : prompt_of) {
      CAPTURE(id);
      CHECK(board.reasons[id] == INFERNO_FINISH_LENGTH);
      CHECK(board.tokens[id] == alone[which]);
    }
  }
  const inferno_engine_counts c = settle(engine);
  CHECK(c.running == 0);
  CHECK(c.waiting == 0);
  CHECK(c.kv_blocks_in_use == 0);
  CHECK(c.kv_blocks == 8 * 4);  // parallel × ctx / block tokens
  CHECK(c.kv_block_tokens == 16);
  inferno_engine_free(engine);
}

namespace {

struct Stream {
  Board* board = nullptr;
  std::mutex mutex;
  std::condition_variable started;
  int tokens = 0, stop_after = -1;
  std::string text;
};

int stream_token(int32_t token, const char* piece, size_t length, void* user_data) {
  auto& s = *static_cast<Stream*>(user_data);
  std::lock_guard lock(s.mutex);
  s.text.append(piece, length);
  if (token < 0) return 0;
  ++s.tokens;
  s.started.notify_all();
  return s.stop_after >= 0 && s.tokens >= s.stop_after ? 1 : 0;
}

void stream_finish(const inferno_request_result* r, void* user_data) { on_finish(r, static_cast<Stream*>(user_data)->board); }

}  // namespace

TEST_CASE("engine C API: a token callback stops its request; its pieces spell its ids") {
  inferno_engine* engine = make_engine(2, 128);
  Board board;
  Stream stream;
  stream.board = &board;
  stream.stop_after = 5;
  inferno_generate_params g = inferno_generate_default_params();
  g.max_new_tokens = 50;
  g.ignore_eos = 1;
  g.on_token = stream_token;
  g.user_data = &stream;
  const int32_t prompt[] = {1, 450, 4853};
  uint64_t id = 0;
  REQUIRE(inferno_engine_submit(engine, prompt, 3, &g, stream_finish, &id) == INFERNO_OK);
  board.wait_for(1);
  {
    std::lock_guard lock(board.mutex);
    CHECK(board.reasons[id] == INFERNO_FINISH_CANCELLED);
    REQUIRE(board.tokens[id].size() == 5);
    size_t length = 0;
    const auto& ids = board.tokens[id];
    inferno_detokenize(brown_c(), ids.data(), ids.size(), 1, nullptr, 0, &length);
    std::string text(length + 1, '\0');
    REQUIRE(inferno_detokenize(brown_c(), ids.data(), ids.size(), 1, text.data(), text.size(), &length) == INFERNO_OK);
    text.resize(length);
    std::lock_guard slock(stream.mutex);
    CHECK(stream.text == text);
  }
  CHECK(settle(engine).kv_blocks_in_use == 0);
  inferno_engine_free(engine);
}

TEST_CASE("engine C API: cancel by id mid-way leaves the pool empty; freeing the engine ends what runs") {
  inferno_engine* engine = make_engine(2, 512);
  Board board;
  Stream stream;
  stream.board = &board;
  inferno_generate_params g = inferno_generate_default_params();
  g.max_new_tokens = 400;
  g.ignore_eos = 1;
  g.on_token = stream_token;
  g.user_data = &stream;
  const int32_t prompt[] = {1, 450, 4853, 306};
  uint64_t id = 0;
  REQUIRE(inferno_engine_submit(engine, prompt, 4, &g, stream_finish, &id) == INFERNO_OK);
  {
    std::unique_lock lock(stream.mutex);
    REQUIRE(stream.started.wait_for(lock, std::chrono::seconds(60), [&] { return stream.tokens >= 2; }));
  }
  inferno_engine_counts c{};
  REQUIRE(inferno_engine_get_counts(engine, &c) == INFERNO_OK);
  CHECK(c.kv_blocks_in_use > 0);  // admission reserved prompt + 400 tokens
  REQUIRE(inferno_engine_cancel(engine, id) == INFERNO_OK);
  board.wait_for(1);
  {
    std::lock_guard lock(board.mutex);
    CHECK(board.reasons[id] == INFERNO_FINISH_CANCELLED);
    CHECK(board.tokens[id].size() < 400);
  }
  c = settle(engine);
  CHECK(c.running == 0);
  CHECK(c.waiting == 0);
  CHECK(c.kv_blocks_in_use == 0);
  CHECK(inferno_engine_cancel(engine, id) == INFERNO_OK);     // finished: ignored
  CHECK(inferno_engine_cancel(engine, 987654) == INFERNO_OK);  // never was: ignored

  // Two more, then the engine freed at once: whether queued or already running, each ends as cancelled.
  Board last;
  g.on_token = nullptr;
  g.user_data = &last;
  REQUIRE(inferno_engine_submit(engine, prompt, 4, &g, on_finish, nullptr) == INFERNO_OK);
  REQUIRE(inferno_engine_submit(engine, prompt, 4, &g, on_finish, nullptr) == INFERNO_OK);
  inferno_engine_free(engine);  // their finish callbacks have run when it returns
  CHECK(last.reasons.size() == 2);
  for (const auto& [rid, reason] : last.reasons) CHECK(reason == INFERNO_FINISH_CANCELLED);
}

TEST_CASE("engine C API: bad arguments come back as a status naming them") {
  inferno_engine* engine = nullptr;
  CHECK(inferno_engine_create(nullptr, nullptr, &engine) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_engine_create(brown_c(), nullptr, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  inferno_engine_params p = inferno_engine_default_params();
  p.parallel = 0;
  CHECK(inferno_engine_create(brown_c(), &p, &engine) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(inferno_last_error()).find("parallel") != std::string::npos);
  CHECK(engine == nullptr);
  p = inferno_engine_default_params();
  p.kv_dtype = static_cast<inferno_kv_dtype>(42);
  CHECK(inferno_engine_create(brown_c(), &p, &engine) == INFERNO_ERROR_INVALID_ARGUMENT);
  p = inferno_engine_default_params();
  p.kv_budget_share = 1.5;
  CHECK(inferno_engine_create(brown_c(), &p, &engine) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(inferno_last_error()).find("kv_budget_share") != std::string::npos);
  p = inferno_engine_default_params();
  p.ctx = 64;
  p.kv_dtype = INFERNO_KV_Q8;
  REQUIRE(inferno_engine_create(brown_c(), &p, &engine) == INFERNO_OK);
  const int32_t bad[] = {1, 99999999};
  CHECK(inferno_engine_submit(engine, bad, 2, nullptr, nullptr, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(inferno_last_error()).find("99999999") != std::string::npos);
  CHECK(inferno_engine_submit(engine, nullptr, 0, nullptr, nullptr, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_engine_submit(nullptr, bad, 1, nullptr, nullptr, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_engine_cancel(nullptr, 1) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_engine_get_counts(engine, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_engine_get_counts(nullptr, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  // A request asking for more tokens than the context holds ends (at the context, or refused), it never hangs.
  Board board;
  inferno_generate_params g = inferno_generate_default_params();
  g.max_new_tokens = 1000;
  g.ignore_eos = 1;
  g.user_data = &board;
  uint64_t id = 0;
  REQUIRE(inferno_engine_submit(engine, bad, 1, &g, on_finish, &id) == INFERNO_OK);
  board.wait_for(1);
  {
    std::lock_guard lock(board.mutex);
    CHECK((board.reasons[id] == INFERNO_FINISH_ERROR || board.reasons[id] == INFERNO_FINISH_LENGTH));
  }
  inferno_engine_free(engine);
  inferno_engine_free(nullptr);
}

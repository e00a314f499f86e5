#include "model/stage_threads.hpp"

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "util/error.hpp"

namespace inferno::model {

uint32_t micro_batch_rows_from_env(uint32_t fallback) {
  const char* env = std::getenv("INFERNO_PIPELINE_MICROBATCH");
  if (!env) return fallback;
  const std::string v = env;
  char* end = nullptr;
  errno = 0;
  const unsigned long rows = std::strtoul(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || *end != '\0' || errno == ERANGE || rows > 1'000'000)
    throw Error("INFERNO_PIPELINE_MICROBATCH=" + v + ": expected rows a micro-batch, 0 (no pipelining) to 1000000");
  return uint32_t(rows);
}

std::vector<std::vector<float>> run_stage_threads(size_t stages, size_t pieces, const StageWork& work) {
  // outputs[i][k]: what stage i gave out for piece k, present once done[i][k]. One lock for all: a stage holds it
  // only to hand a result over or to take one.
  std::vector<std::vector<std::vector<float>>> outputs(stages, std::vector<std::vector<float>>(pieces));
  std::vector<std::vector<char>> done(stages, std::vector<char>(pieces, 0));
  std::mutex mutex;
  std::condition_variable handed_over;
  bool failed = false;
  std::exception_ptr error;
  auto fail = [&] {
    {
      std::lock_guard lock(mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
    handed_over.notify_all();
  };
  auto run_stage = [&](size_t i) {
    try {
      for (size_t k = 0; k < pieces; ++k) {
        std::vector<float> input;
        {
          std::unique_lock lock(mutex);
          handed_over.wait(lock, [&] { return failed || i == 0 || done[i - 1][k]; });
          if (failed) return;
          if (i > 0) input = std::move(outputs[i - 1][k]);
        }
        std::vector<float> out = work(i, k, std::move(input));
        {
          std::lock_guard lock(mutex);
          outputs[i][k] = std::move(out);
          done[i][k] = 1;
        }
        handed_over.notify_all();
      }
    } catch (...) {
      fail();
    }
  };
  {
    std::vector<std::jthread> threads;
    try {
      for (size_t i = 0; i < stages; ++i) threads.emplace_back(run_stage, i);
    } catch (...) {  // no thread for a stage: the ones started stop before their next piece
      fail();
    }
  }  // joined
  if (error) std::rethrow_exception(error);
  return std::move(outputs.back());
}

}  // namespace inferno::model

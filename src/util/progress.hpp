#pragma once
// A loading bar on stderr: bytes done, MB/s. Silent when stderr is not a terminal or when asked to be quiet.
#include <chrono>
#include <cstdint>
#include <string>

namespace inferno {

class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total_bytes, bool quiet = false);
  ~ProgressBar();
  void advance(uint64_t bytes);
  void finish();

 private:
  void draw(bool final_line);
  std::string label_;
  uint64_t total_ = 0, done_ = 0;
  bool enabled_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace inferno

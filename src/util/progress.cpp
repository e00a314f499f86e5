#include "util/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace inferno {

ProgressBar::ProgressBar(std::string label, uint64_t total_bytes, bool quiet)
    : label_(std::move(label)), total_(total_bytes), enabled_(!quiet && isatty(STDERR_FILENO)) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::advance(uint64_t bytes) {
  done_ += bytes;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void ProgressBar::draw(bool final_line) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ ? double(done_) / double(total_) : 1.0;
  const int width = 30, filled = int(frac * width);
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MB %7.1f MB/s%s", label_.c_str(), bar.c_str(), frac * 100.0,
               double(done_) / 1e6, secs > 0 ? double(done_) / 1e6 / secs : 0.0, final_line ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace inferno

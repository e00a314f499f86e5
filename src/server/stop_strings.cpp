#include "server/stop_strings.hpp"

#include <algorithm>

namespace inferno::server {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  // Byte by byte, so that where the text stops does not depend on how it was split: the first stop string to
  // end wins (the longest, when several end at the same byte).
  for (char c : text) {
    pending_ += c;
    size_t longest = 0;
    for (const auto& s : stops_)
      if (s.size() > longest && pending_.size() >= s.size() && pending_.compare(pending_.size() - s.size(), s.size(), s) == 0)
        longest = s.size();
    if (longest) {
      stopped_ = true;
      std::string out = pending_.substr(0, pending_.size() - longest);
      pending_.clear();
      return out;
    }
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k)
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::finish() {
  std::string out;
  out.swap(pending_);
  return stopped_ ? std::string() : out;
}

}  // namespace inferno::server

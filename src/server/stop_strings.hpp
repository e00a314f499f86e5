#pragma once
// OpenAI's `stop`: generation ends as soon as the text contains one of the stop strings, and the text returned
// ends just before it. Where it ends does not depend on how the text came in pieces: at the first byte where a
// stop string ends (the longest one, when several end there). While streaming, text that might be the start of a
// stop string is held back until the next pieces show whether it is.
#include <string>
#include <string_view>
#include <vector>

namespace inferno::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);  // empty strings are ignored

  // Adds generated text; returns the part of the text so far that is now final (never part of a stop string).
  std::string push(std::string_view text);
  // True once a stop string has appeared: push returned the text before it and will return nothing more.
  bool stopped() const { return stopped_; }
  // The text held back, when generation ended without a stop string.
  std::string finish();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace inferno::server

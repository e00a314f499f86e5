#pragma once
// The regular expressions of tokenizer.json (Split pre-tokenizer, Replace normalizer), run with PCRE2.
// The tokenizers library runs them with Oniguruma; the patterns Llama-family tokenizers use mean the same in
// both once `\s` is pinned to Unicode White_Space (PCRE2 also counts U+180E, which Oniguruma does not).
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace inferno::text {

class Regex {
 public:
  // Compiles `pattern` (UTF-8, Unicode properties). `what` names the pattern's origin for error messages.
  Regex(std::string_view pattern, std::string_view what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Match state for one thread; reuse it across calls to avoid allocating per search.
  class Matcher {
   public:
    explicit Matcher(const Regex& regex);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // Non-overlapping matches, left to right, as [begin, end) byte offsets. `text` must be valid UTF-8.
    void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches);

   private:
    const Regex& regex_;
    struct State;
    std::unique_ptr<State> state_;
  };

  const std::string& source_pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::string what_;
  struct Code;
  std::unique_ptr<Code> code_;
};

// The pattern rewritten for PCRE2: `\s` and `\S` become explicit White_Space classes.
std::string pcre2_pattern_from_oniguruma(std::string_view pattern);

}  // namespace inferno::text

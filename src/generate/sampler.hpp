#pragma once
// Choosing the next token from processed logits: greedy (argmax) or a seeded categorical draw, as transformers'
// `generate` does after its logits processors (torch.argmax, or softmax then torch.multinomial).
#include <cstdint>
#include <random>
#include <span>

namespace inferno::gen {

// torch.argmax's rule: the first index of the largest score; a NaN counts as larger than any number.
// Throws inferno::Error for empty scores.
int32_t argmax(std::span<const float> scores);

// Draws tokens with probability softmax(scores). The generator is std::mt19937_64 (fully specified by the C++
// standard) with a hand-made uniform double, so a seed gives the same tokens on every platform and run; it does not
// reproduce torch's random stream.
class Sampler {
 public:
  explicit Sampler(uint64_t seed);
  // Throws inferno::Error when no token has a probability (empty scores, all -inf, NaN or +inf scores).
  int32_t sample(std::span<const float> processed_scores);

 private:
  double uniform_01();  // in [0, 1)
  std::mt19937_64 engine_;
};

}  // namespace inferno::gen

#include "generate/sampler.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "util/error.hpp"

namespace inferno::gen {

int32_t argmax(std::span<const float> scores) {
  if (scores.empty()) fail("argmax: the logits are empty (a vocabulary of 0 tokens)");
  size_t best = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i])) return int32_t(i);
    if (scores[i] > scores[best]) best = i;  // strictly greater: the first of equal maxima wins
  }
  return int32_t(best);
}

Sampler::Sampler(uint64_t seed) : engine_(seed) {}

double Sampler::uniform_01() {
  // The top 53 bits of one 64-bit draw, scaled: every double in [0, 1) with spacing 2^-53, the same everywhere
  // (std::uniform_real_distribution's algorithm is left to each standard library).
  return double(engine_() >> 11) * 0x1.0p-53;
}

int32_t Sampler::sample(std::span<const float> processed_scores) {
  if (processed_scores.empty()) fail("sampling: the logits are empty (a vocabulary of 0 tokens)");
  float max = -INFINITY;
  for (float s : processed_scores) {
    if (std::isnan(s) || s == INFINITY)
      fail("sampling: the logits hold NaN or +inf, so the probabilities are undefined");
    if (s > max) max = s;
  }
  if (max == -INFINITY) fail("sampling: every token was filtered out (all logits are -inf)");

  // Unnormalized probabilities exp(s - max) in double; the draw scales the uniform number by their sum instead of
  // dividing each one, which picks token i with probability weight_i / sum.
  std::vector<double> weights(processed_scores.size());
  double total = 0.0;
  for (size_t i = 0; i < processed_scores.size(); ++i) {
    weights[i] = std::exp(double(processed_scores[i]) - double(max));
    total += weights[i];
  }
  const double target = uniform_01() * total;
  double running = 0.0;
  size_t last_possible = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] == 0.0) continue;  // a filtered token can never be drawn
    running += weights[i];
    last_possible = i;
    if (target < running) return int32_t(i);
  }
  return int32_t(last_possible);  // rounding left target at the very top of the sum
}

}  // namespace inferno::gen

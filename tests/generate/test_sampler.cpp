// Greedy choice and seeded categorical sampling.
#include <cmath>
#include <vector>

#include "generate/sampler.hpp"
#include "test_support.hpp"
#include "util/error.hpp"

using namespace inferno::gen;
using inferno::testing::Rng;

TEST_CASE("argmax returns the first of equal maxima, as torch.argmax does") {
  INFERNO_SEED_INFO();
  Rng rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int vocab = rng.integer(2, 300);
    auto scores = rng.uniform_vector(size_t(vocab), -10, 10);
    const int first = rng.integer(0, vocab - 2);
    const int second = rng.integer(first + 1, vocab - 1);
    scores[size_t(first)] = scores[size_t(second)] = 11.0f;  // above every random value
    CHECK(argmax(scores) == first);
  }
  const std::vector<float> with_nan{1.0f, NAN, 5.0f, NAN};  // torch: NaN is the maximum
  CHECK(argmax(with_nan) == 1);
  const std::vector<float> all_filtered(4, -INFINITY);
  CHECK(argmax(all_filtered) == 0);
  CHECK_THROWS_AS(argmax(std::vector<float>{}), inferno::Error);
}

TEST_CASE("sampling frequencies follow softmax probabilities") {
  INFERNO_SEED_INFO();
  Rng rng(12);
  const int vocab = 9;
  auto scores = rng.uniform_vector(vocab, -2, 2);
  scores[3] = -INFINITY;  // filtered tokens must never come out
  scores[7] = -INFINITY;
  std::vector<double> probs(vocab);
  double sum = 0;
  for (int t = 0; t < vocab; ++t) sum += probs[size_t(t)] = std::exp(double(scores[size_t(t)]));
  for (double& p : probs) p /= sum;

  Sampler sampler(inferno::testing::test_seed());
  const int draws = 200000;
  std::vector<int> counts(vocab, 0);
  for (int i = 0; i < draws; ++i) ++counts[size_t(sampler.sample(scores))];
  for (int t = 0; t < vocab; ++t) {
    const double expected = draws * probs[size_t(t)];
    // Each count is Binomial(draws, p): 5 standard deviations leave a false alarm chance below 1e-6 per token.
    const double bound = 5 * std::sqrt(draws * probs[size_t(t)] * (1 - probs[size_t(t)])) + 1;
    INFO("token " << t << " count " << counts[size_t(t)] << " expected " << expected);
    CHECK(std::fabs(counts[size_t(t)] - expected) <= bound);
  }
  CHECK(counts[3] == 0);
  CHECK(counts[7] == 0);
}

TEST_CASE("the same seed gives the same tokens, another seed other tokens") {
  INFERNO_SEED_INFO();
  Rng rng(13);
  const auto scores = rng.uniform_vector(50, -1, 1);
  const uint64_t seed = inferno::testing::test_seed();
  Sampler first(seed), again(seed), other(seed + 1);
  std::vector<int32_t> a, b, c;
  for (int i = 0; i < 500; ++i) {
    a.push_back(first.sample(scores));
    b.push_back(again.sample(scores));
    c.push_back(other.sample(scores));
  }
  CHECK(a == b);
  CHECK(a != c);  // 500 draws over ~50 likely tokens: identical sequences are out of reach by chance
}

TEST_CASE("sampling refuses logits without a probability distribution") {
  Sampler sampler(1);
  CHECK_THROWS_AS(sampler.sample(std::vector<float>(6, -INFINITY)), inferno::Error);
  CHECK_THROWS_AS(sampler.sample(std::vector<float>{0.0f, NAN}), inferno::Error);
  CHECK_THROWS_AS(sampler.sample(std::vector<float>{0.0f, INFINITY}), inferno::Error);
  CHECK_THROWS_AS(sampler.sample(std::vector<float>{}), inferno::Error);
  const std::vector<float> one_left{-INFINITY, -INFINITY, 3.0f, -INFINITY};
  for (int i = 0; i < 100; ++i) CHECK(sampler.sample(one_left) == 2);
}

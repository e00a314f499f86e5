// OpenAI's presence and frequency penalties and the log-probabilities the server hands out: a hand-computed case,
// random data against the definitions computed here in double, and their place among the processors.
#include <cmath>
#include <map>
#include <vector>

#include "generate/logits_processors.hpp"
#include "test_support.hpp"
#include "util/error.hpp"

using namespace inferno::gen;
using inferno::testing::Rng;

TEST_CASE("presence and frequency penalties: a hand-computed case") {
  // Generated: 2 twice, 0 once. logit[v] -= presence·[count > 0] + frequency·count.
  std::vector<float> scores = {1.0f, 2.0f, 3.0f, -1.0f};
  const std::vector<int32_t> generated = {2, 0, 2};
  apply_presence_frequency_penalty(scores, generated, 0.5, 0.25);
  CHECK(scores[0] == 1.0f - (0.5f + 0.25f));      // 0.25
  CHECK(scores[1] == 2.0f);                        // never generated
  CHECK(scores[2] == 3.0f - (0.5f + 2 * 0.25f));  // 2.0
  CHECK(scores[3] == -1.0f);
  // Negative values reward repetition.
  std::vector<float> rewarded = {0.0f, 0.0f};
  apply_presence_frequency_penalty(rewarded, std::vector<int32_t>{1, 1, 1}, -1.0, -2.0);
  CHECK(rewarded[0] == 0.0f);
  CHECK(rewarded[1] == 7.0f);
}

TEST_CASE("presence and frequency penalties on random data, over the generated tokens only") {
  INFERNO_SEED_INFO();
  Rng rng(31);
  for (int trial = 0; trial < 50; ++trial) {
    const int vocab = rng.integer(1, 300);
    std::vector<float> scores = rng.uniform_vector(size_t(vocab), -10, 10);
    const std::vector<float> before = scores;
    std::vector<int32_t> ids(size_t(rng.integer(1, 60)));
    for (auto& id : ids) id = rng.integer(0, vocab - 1);
    const int prompt_length = rng.integer(0, int(ids.size()));
    const double presence = rng.uniform(-2, 2), frequency = rng.uniform(-2, 2);
    SamplingParams params;
    params.presence_penalty = float(presence);
    params.frequency_penalty = float(frequency);
    apply_logits_processors(scores, ids, prompt_length, params);
    std::map<int32_t, int> counts;
    for (size_t i = size_t(prompt_length); i < ids.size(); ++i) ++counts[ids[i]];
    for (int v = 0; v < vocab; ++v) {
      const auto it = counts.find(v);
      const double want = it == counts.end() ? double(before[size_t(v)])
                                             : double(before[size_t(v)]) - double(float(presence)) -
                                                   double(float(frequency)) * it->second;
      // One rounding to float of a double result: half an ulp of a value below 10 + 2 + 2·60.
      CHECK_MESSAGE(std::fabs(double(scores[size_t(v)]) - want) <= 1e-5, "trial " << trial << " token " << v);
    }
  }
}

TEST_CASE("penalties outside [-2, 2] and token ids outside the vocabulary are refused") {
  std::vector<float> scores(4, 0.0f);
  CHECK_THROWS_WITH_AS(apply_presence_frequency_penalty(scores, std::vector<int32_t>{1}, 2.5, 0), doctest::Contains("presence_penalty"),
                       inferno::Error);
  CHECK_THROWS_WITH_AS(apply_presence_frequency_penalty(scores, std::vector<int32_t>{1}, 0, -3), doctest::Contains("frequency_penalty"),
                       inferno::Error);
  CHECK_THROWS_WITH_AS(apply_presence_frequency_penalty(scores, std::vector<int32_t>{4}, 1, 0), doctest::Contains("outside"),
                       inferno::Error);
  CHECK_THROWS_AS(apply_presence_frequency_penalty(scores, std::vector<int32_t>{1}, NAN, 0), inferno::Error);
}

TEST_CASE("token log-probabilities: log-softmax of the logits, the top ones most likely first") {
  INFERNO_SEED_INFO();
  Rng rng(32);
  for (int trial = 0; trial < 50; ++trial) {
    const int vocab = rng.integer(1, 500);
    std::vector<float> logits = rng.uniform_vector(size_t(vocab), -20, 20);
    if (vocab > 3) logits[2] = logits[1];  // a tie: the lower id first
    const int32_t token = rng.integer(0, vocab - 1);
    const int top = rng.integer(0, 25);
    const TokenLogprobs got = token_logprobs(logits, token, top);
    double max = -INFINITY, sum = 0;
    for (float x : logits) max = std::max(max, double(x));
    for (float x : logits) sum += std::exp(double(x) - max);
    const auto logprob = [&](int32_t v) { return double(logits[size_t(v)]) - max - std::log(sum); };
    // Float rounding of values up to 40 in magnitude: 40 · 2^-24 ≈ 2.4e-6.
    CHECK(std::fabs(got.logprob - logprob(token)) <= 1e-5);
    REQUIRE(got.top.size() == size_t(std::min(top, vocab)));
    double total = 0;
    for (int v = 0; v < vocab; ++v) total += std::exp(logprob(v));
    CHECK(std::fabs(total - 1.0) <= 1e-9);
    for (size_t i = 0; i < got.top.size(); ++i) {
      CHECK(std::fabs(got.top[i].second - logprob(got.top[i].first)) <= 1e-5);
      if (i > 0) {
        const auto& [prev_id, prev] = got.top[i - 1];
        const auto& [id, value] = got.top[i];
        CHECK((logits[size_t(prev_id)] > logits[size_t(id)] || (logits[size_t(prev_id)] == logits[size_t(id)] && prev_id < id)));
        (void)prev;
        (void)value;
      }
    }
    // Nothing left out is more likely than the last one kept.
    if (!got.top.empty())
      for (int v = 0; v < vocab; ++v) {
        bool kept = false;
        for (const auto& t : got.top) kept |= t.first == v;
        if (!kept) CHECK(logits[size_t(v)] <= logits[size_t(got.top.back().first)]);
      }
  }
  CHECK_THROWS_AS(token_logprobs(std::vector<float>{1.0f, 2.0f}, 2, 1), inferno::Error);
}

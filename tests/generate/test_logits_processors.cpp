// Logits processors on random data: each checked against its documented rule (computed independently here, in
// double precision where probabilities are involved) and against the order transformers' `generate` applies them in.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "generate/logits_processors.hpp"
#include "test_support.hpp"
#include "util/error.hpp"

using namespace inferno::gen;
using inferno::testing::Rng;

namespace {

constexpr float kNegInf = -INFINITY;

std::vector<int32_t> random_ids(Rng& rng, size_t count, int vocab) {
  std::vector<int32_t> ids(count);
  for (auto& id : ids) id = rng.integer(0, vocab - 1);
  return ids;
}

std::vector<double> softmax_f64(const std::vector<float>& logits) {
  double max = -INFINITY;
  for (float x : logits) max = std::max(max, double(x));
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(double(logits[i]) - max);
  for (double& v : p) v /= sum;
  return p;
}

std::vector<size_t> ascending_order(const std::vector<double>& keys) {
  std::vector<size_t> order(keys.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  return order;
}

// Which entries a filtering warper removed: exactly the ones it set to -inf, every other entry untouched.
std::vector<bool> removed_mask(const std::vector<float>& before, const std::vector<float>& after) {
  std::vector<bool> removed(before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    removed[i] = after[i] == kNegInf && before[i] != kNegInf;
    if (!removed[i]) REQUIRE(after[i] == before[i]);
  }
  return removed;
}

}  // namespace

TEST_CASE("repetition penalty: seen tokens once, negative scores multiplied, positive divided") {
  INFERNO_SEED_INFO();
  Rng rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    const int vocab = rng.integer(1, 61);
    const auto scores = rng.uniform_vector(size_t(vocab), -6, 6);
    const auto ids = random_ids(rng, size_t(rng.integer(0, 40)), vocab);  // repeats are likely
    const double penalty = rng.uniform(0.3f, 2.5f);
    auto out = scores;
    apply_repetition_penalty(out, ids, penalty);
    const std::set<int32_t> seen(ids.begin(), ids.end());
    const float p = float(penalty);
    for (int t = 0; t < vocab; ++t) {
      // One float operation, the one torch does: the result is exact, not approximate.
      const float expected = !seen.count(t) ? scores[t] : scores[t] < 0 ? scores[t] * p : scores[t] / p;
      CHECK(out[size_t(t)] == expected);
    }
  }
  std::vector<float> scores(5, 1.0f);
  const std::vector<int32_t> outside{5};
  CHECK_THROWS_AS(apply_repetition_penalty(scores, outside, 1.2), inferno::Error);
  CHECK_THROWS_AS(apply_repetition_penalty(scores, {}, 0.0), inferno::Error);
}

TEST_CASE("no-repeat n-gram bans exactly the continuations of earlier n-grams") {
  INFERNO_SEED_INFO();
  Rng rng(2);
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = rng.integer(2, 7);  // a small vocabulary makes repeated n-grams common
    const int n = rng.integer(1, 4);
    const auto ids = random_ids(rng, size_t(rng.integer(0, 30)), vocab);
    const auto scores = rng.uniform_vector(size_t(vocab), -3, 3);
    auto out = scores;
    apply_no_repeat_ngram(out, ids, n);

    // The classic formulation: a table from every (n-1)-token prefix to the tokens that followed it.
    std::map<std::vector<int32_t>, std::set<int32_t>> followers;
    for (size_t start = 0; start + size_t(n) <= ids.size(); ++start)
      followers[std::vector<int32_t>(ids.begin() + long(start), ids.begin() + long(start) + n - 1)].insert(
          ids[start + size_t(n) - 1]);
    std::set<int32_t> banned;
    if (ids.size() >= size_t(n)) {
      const std::vector<int32_t> current(ids.end() - (n - 1), ids.end());
      if (followers.count(current)) banned = followers[current];
    }
    for (int t = 0; t < vocab; ++t) CHECK(out[size_t(t)] == (banned.count(t) ? kNegInf : scores[size_t(t)]));
  }
}

TEST_CASE("bad words: single tokens always, longer words only after their prefix, eos singletons dropped") {
  INFERNO_SEED_INFO();
  Rng rng(3);
  const int vocab = 23;
  const auto scores = rng.uniform_vector(vocab, -4, 4);
  const std::vector<int32_t> eos{2};
  const std::vector<std::vector<int32_t>> bad{{9}, {7, 10}, {4, 7, 11}, {3, 12}, {2}, {2, 13}, {5, 6, 7, 8, 14}};
  auto banned_for = [&](const std::vector<int32_t>& ids) {
    auto out = scores;
    apply_bad_words(out, ids, bad, eos);
    std::set<int32_t> banned;
    for (int t = 0; t < vocab; ++t) {
      if (out[size_t(t)] == kNegInf) banned.insert(t);
      else CHECK(out[size_t(t)] == scores[size_t(t)]);
    }
    return banned;
  };
  CHECK(banned_for({1, 4, 7}) == std::set<int32_t>{9, 10, 11});
  CHECK(banned_for({0, 2}) == std::set<int32_t>{9, 13});
  CHECK(banned_for({}) == std::set<int32_t>{9});
  // transformers skips a word longer than the sequence even when the sequence ends with its prefix.
  CHECK(banned_for({7}) == std::set<int32_t>{9});
  CHECK(banned_for({1, 7}) == std::set<int32_t>{9, 10});
  CHECK(banned_for({5, 6, 7, 8}) == std::set<int32_t>{9});  // needs the prefix 5 6 7 8 *and* 5 tokens: 4 < 5
  CHECK(banned_for({0, 5, 6, 7, 8}) == std::set<int32_t>{9, 14});

  auto out = scores;
  const std::vector<std::vector<int32_t>> outside{{vocab}}, empty_word{{}}, negative{{-1}};
  CHECK_THROWS_AS(apply_bad_words(out, {}, outside, eos), inferno::Error);
  CHECK_THROWS_AS(apply_bad_words(out, {}, empty_word, eos), inferno::Error);
  CHECK_THROWS_AS(apply_bad_words(out, {}, negative, eos), inferno::Error);
}

TEST_CASE("min length and min new tokens ban eos until the length is reached") {
  INFERNO_SEED_INFO();
  Rng rng(4);
  for (int trial = 0; trial < 50; ++trial) {
    const int vocab = rng.integer(8, 40);
    const auto scores = rng.uniform_vector(size_t(vocab), -4, 4);
    const std::vector<int32_t> eos{2, 5, vocab + 3};  // an id past the vocabulary is ignored, as torch.isin does
    const int min_length = rng.integer(1, 30);
    for (int length : {min_length - 1, min_length}) {
      auto out = scores;
      apply_min_length(out, size_t(std::max(length, 0)), min_length, eos);
      for (int t = 0; t < vocab; ++t) {
        const bool banned = length < min_length && (t == 2 || t == 5);
        CHECK(out[size_t(t)] == (banned ? kNegInf : scores[size_t(t)]));
      }
    }
    const int prompt = rng.integer(0, 20);
    const int min_new = rng.integer(1, 10);
    for (int generated : {min_new - 1, min_new}) {
      auto out = scores;
      apply_min_new_tokens(out, size_t(prompt + generated), prompt, min_new, eos);
      for (int t = 0; t < vocab; ++t) {
        const bool banned = generated < min_new && (t == 2 || t == 5);
        CHECK(out[size_t(t)] == (banned ? kNegInf : scores[size_t(t)]));
      }
    }
  }
}

TEST_CASE("suppress tokens and temperature") {
  INFERNO_SEED_INFO();
  Rng rng(5);
  const int vocab = 31;
  const auto scores = rng.uniform_vector(vocab, -8, 8);
  auto out = scores;
  const std::vector<int32_t> suppress{0, 3, 30, 31, -1};
  apply_suppress_tokens(out, suppress);
  for (int t = 0; t < vocab; ++t)
    CHECK(out[size_t(t)] == (t == 0 || t == 3 || t == 30 ? kNegInf : scores[size_t(t)]));

  const double temperature = rng.uniform(0.05f, 3.0f);
  out = scores;
  apply_temperature(out, temperature);
  // torch divides by the float32 rounding of the temperature: one correctly rounded division, exact here.
  for (int t = 0; t < vocab; ++t) CHECK(out[size_t(t)] == scores[size_t(t)] / float(temperature));
  CHECK_THROWS_AS(apply_temperature(out, 0.0), inferno::Error);
  CHECK_THROWS_AS(apply_temperature(out, -1.0), inferno::Error);
}

TEST_CASE("top-k keeps every score >= the k-th largest, ties included") {
  INFERNO_SEED_INFO();
  Rng rng(6);
  for (int trial = 0; trial < 200; ++trial) {
    const int vocab = rng.integer(1, 50);
    std::vector<float> scores(static_cast<size_t>(vocab));
    for (auto& s : scores) s = rng.integer(0, 9) == 0 ? kNegInf : float(rng.integer(-3, 3));  // many ties
    const int k = rng.integer(1, vocab + 3);
    const int keep = rng.integer(1, 4);
    auto out = scores;
    apply_top_k(out, k, keep);
    std::vector<float> descending = scores;
    std::sort(descending.begin(), descending.end(), std::greater<float>());
    const float kth = descending[size_t(std::min(std::max(k, keep), vocab) - 1)];
    const auto removed = removed_mask(scores, out);
    for (int t = 0; t < vocab; ++t)  // an entry already at -inf stays so: removed_mask counts only new removals
      CHECK(removed[size_t(t)] == (scores[size_t(t)] < kth && scores[size_t(t)] != kNegInf));
  }
  std::vector<float> scores{1, 2};
  CHECK_THROWS_AS(apply_top_k(scores, 0), inferno::Error);
  CHECK_THROWS_AS(apply_top_k(scores, -2), inferno::Error);
}

// The warpers below are checked against their rule evaluated in double precision. Random data rarely puts a
// cumulative probability within float rounding (~1e-7) of a threshold; trials that come within 1e-5 are skipped,
// since there float32 (what transformers computes in) and float64 may legitimately disagree.
constexpr double kBoundaryMargin = 1e-5;

TEST_CASE("top-p removes the least probable tokens whose cumulative probability is <= 1 - p") {
  INFERNO_SEED_INFO();
  Rng rng(7);
  int checked = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int vocab = rng.integer(1, 150);
    auto scores = rng.uniform_vector(size_t(vocab), -5, 5);
    for (auto& s : scores)
      if (rng.integer(0, 12) == 0) s = kNegInf;  // already filtered tokens, as after top-k
    if (std::all_of(scores.begin(), scores.end(), [](float s) { return s == kNegInf; })) continue;
    const double top_p = rng.uniform(0.f, 1.f);
    const int keep = rng.integer(1, 3);

    const auto probs = softmax_f64(scores);
    std::vector<double> keys(scores.begin(), scores.end());
    const auto order = ascending_order(keys);
    std::vector<bool> expected(size_t(vocab), false);
    double cumulative = 0;
    bool near_boundary = false;
    for (size_t position = 0; position < order.size(); ++position) {
      cumulative += probs[order[position]];
      if (std::fabs(cumulative - (1 - top_p)) < kBoundaryMargin) near_boundary = true;
      const bool protected_top = position + size_t(keep) >= order.size();
      expected[order[position]] = cumulative <= 1 - top_p && !protected_top;
    }
    if (near_boundary) continue;
    auto out = scores;
    apply_top_p(out, top_p, keep);
    const auto removed = removed_mask(scores, out);
    for (int t = 0; t < vocab; ++t)
      if (scores[size_t(t)] != kNegInf) CHECK(removed[size_t(t)] == expected[size_t(t)]);
    ++checked;
  }
  CHECK(checked > 300);
  std::vector<float> scores{1, 2};
  CHECK_THROWS_AS(apply_top_p(scores, 1.5), inferno::Error);
}

TEST_CASE("top-p keeps transformers' threshold for a float top_p and torch's order for ties") {
  // Five equal logits have probability exactly 0.2f each. transformers computes 1 - 0.8 = 0.19999999999999996 in
  // double, which rounds to 0.2f, so the first sorted token (cumulative 0.2f <= 0.2f) goes; 1 - double(0.8f) would
  // round to the float below 0.2f and keep it. torch.sort leaves a short run of equal values in index order, so
  // the removed token is token 0.
  std::vector<float> scores(5, 1.5f);
  SamplingParams params;
  params.do_sample = true;
  params.top_k = 0;
  params.top_p = 0.8f;
  apply_logits_processors(scores, {}, 0, params);
  CHECK(scores[0] == kNegInf);
  for (int t = 1; t < 5; ++t) CHECK(scores[size_t(t)] == 1.5f);
}

TEST_CASE("min-p removes tokens below min_p times the top probability") {
  INFERNO_SEED_INFO();
  Rng rng(8);
  int checked = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = rng.integer(1, 120);
    const auto scores = rng.uniform_vector(size_t(vocab), -6, 6);
    const double min_p = rng.uniform(0.f, 1.f);
    const auto probs = softmax_f64(scores);
    const double threshold = min_p * *std::max_element(probs.begin(), probs.end());
    bool near_boundary = false;
    for (double p : probs)
      if (std::fabs(p - threshold) < kBoundaryMargin * threshold) near_boundary = true;
    if (near_boundary) continue;
    auto out = scores;
    apply_min_p(out, min_p);
    const auto removed = removed_mask(scores, out);
    for (int t = 0; t < vocab; ++t) CHECK(removed[size_t(t)] == (probs[size_t(t)] < threshold));
    ++checked;
  }
  CHECK(checked > 250);
}

TEST_CASE("typical keeps the tokens closest to the entropy up to the probability mass") {
  INFERNO_SEED_INFO();
  Rng rng(9);
  int checked = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = rng.integer(2, 120);
    const auto scores = rng.uniform_vector(size_t(vocab), -5, 5);
    const double mass = rng.uniform(0.02f, 0.98f);
    const int keep = rng.integer(1, 3);

    const auto probs = softmax_f64(scores);
    double entropy = 0;
    for (double p : probs) entropy -= p * std::log(p);
    std::vector<double> distance(static_cast<size_t>(vocab));
    for (size_t i = 0; i < distance.size(); ++i) distance[i] = std::fabs(-std::log(probs[i]) - entropy);
    const auto order = ascending_order(distance);
    double cumulative = 0;
    size_t below_mass = 0;
    bool near_boundary = false;
    for (size_t position : order) {
      cumulative += probs[position];
      below_mass += cumulative < mass;
      if (std::fabs(cumulative - mass) < kBoundaryMargin) near_boundary = true;
    }
    const double cutoff = distance[order[std::min(below_mass, size_t(vocab) - 1)]];
    for (double d : distance)
      if (d != cutoff && std::fabs(d - cutoff) < kBoundaryMargin) near_boundary = true;
    if (near_boundary) continue;
    std::vector<bool> expected(static_cast<size_t>(vocab));
    for (size_t position = 0; position < order.size(); ++position)
      expected[order[position]] = position >= size_t(keep) && distance[order[position]] > cutoff;

    auto out = scores;
    apply_typical(out, mass, keep);
    const auto removed = removed_mask(scores, out);
    for (int t = 0; t < vocab; ++t) CHECK(removed[size_t(t)] == expected[size_t(t)]);
    ++checked;
  }
  CHECK(checked > 250);
}

TEST_CASE("apply_logits_processors runs generate's order, warpers only when sampling") {
  INFERNO_SEED_INFO();
  Rng rng(10);
  SamplingParams params;
  params.temperature = 0.6f;
  params.top_k = 40;
  params.top_p = 0.9f;
  params.min_p = 0.02f;
  params.typical_p = 0.95f;
  params.repetition_penalty = 1.3f;
  params.no_repeat_ngram_size = 2;
  params.bad_words_ids = {{3}, {4, 5}};
  params.suppress_tokens = {6};
  params.min_length = 30;
  params.min_new_tokens = 5;
  params.eos_ids = {2, 7};

  auto processors_in_order = [&](std::vector<float>& s, const std::vector<int32_t>& ids, int prompt) {
    apply_repetition_penalty(s, ids, 1.3f);
    apply_no_repeat_ngram(s, ids, 2);
    apply_bad_words(s, ids, params.bad_words_ids, params.eos_ids);
    apply_min_length(s, ids.size(), 30, params.eos_ids);
    apply_min_new_tokens(s, ids.size(), prompt, 5, params.eos_ids);
    apply_suppress_tokens(s, params.suppress_tokens);
  };
  auto warpers = [&](std::vector<float>& s, bool reversed) {
    std::vector<std::function<void()>> steps{
        [&] { apply_temperature(s, 0.6); },  [&] { apply_top_k(s, 40); }, [&] { apply_top_p(s, 0.9); },
        [&] { apply_min_p(s, 0.02); }, [&] { apply_typical(s, 0.95); }};
    if (reversed) std::reverse(steps.begin(), steps.end());
    for (auto& step : steps) step();
  };

  // Random sequences until one where the warpers' order changes the result, so that the comparison below can tell
  // the right order from a wrong one.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int vocab = rng.integer(60, 140);
    const auto scores = rng.uniform_vector(size_t(vocab), -4, 4);
    const auto ids = random_ids(rng, size_t(rng.integer(8, 25)), 12);
    const int prompt = rng.integer(0, int(ids.size()));

    auto expected = scores, reversed = scores;
    processors_in_order(expected, ids, prompt);
    processors_in_order(reversed, ids, prompt);
    warpers(expected, false);
    warpers(reversed, true);
    if (expected == reversed) continue;

    params.do_sample = true;
    auto out = scores;
    apply_logits_processors(out, ids, prompt, params);
    CHECK(out == expected);

    params.do_sample = false;  // greedy: temperature, top-k, top-p, min-p and typical are not applied
    auto greedy_expected = scores;
    processors_in_order(greedy_expected, ids, prompt);
    out = scores;
    apply_logits_processors(out, ids, prompt, params);
    CHECK(out == greedy_expected);
    return;
  }
  FAIL("no random case where the warpers' order mattered");
}

TEST_CASE("apply_logits_processors rejects invalid parameters") {
  std::vector<float> scores(10, 0.5f);
  const std::vector<int32_t> ids{1, 2, 3};
  SamplingParams params;
  params.do_sample = true;
  params.temperature = 0.0f;
  CHECK_THROWS_AS(apply_logits_processors(scores, ids, 0, params), inferno::Error);
  params.temperature = 1.0f;
  params.top_k = -1;
  CHECK_THROWS_AS(apply_logits_processors(scores, ids, 0, params), inferno::Error);
  params.top_k = 50;
  CHECK_THROWS_AS(apply_logits_processors(scores, ids, 4, params), inferno::Error);  // prompt longer than ids
  const std::vector<int32_t> outside{1, 10};
  params.repetition_penalty = 1.2f;
  CHECK_THROWS_AS(apply_logits_processors(scores, outside, 0, params), inferno::Error);
  CHECK_THROWS_AS(apply_logits_processors({}, ids, 0, SamplingParams{}), inferno::Error);
}

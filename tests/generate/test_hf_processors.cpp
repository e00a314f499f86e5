// Each logits processor against transformers' own output (tests/data/hf-llama/sampling, made by make_fixtures.py
// with transformers 5.17 / torch 2.11 on CPU): `scores` [3, 64] and `input_ids` [3, 12] in, `out.NAME` out, one
// row per sequence. The processor and its parameters are spelled in NAME (processors.json lists them).
#include <simdjson.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "generate/logits_processors.hpp"
#include "io/safetensors.hpp"
#include "test_support.hpp"

using namespace inferno::gen;

namespace {

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// "suppress_tokens_3_5_7" after the prefix "suppress_tokens_" -> {3, 5, 7}
std::vector<int32_t> underscore_separated_ids(const std::string& text) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('_', start);
    if (end == std::string::npos) end = text.size();
    ids.push_back(int32_t(std::stol(text.substr(start, end - start))));
    start = end + 1;
  }
  return ids;
}

}  // namespace

TEST_CASE("every logits processor reproduces transformers' output on the fixture") {
  const auto dir = inferno::testing::data_path("hf-llama/sampling");
  const inferno::io::SafetensorsFile file(dir / "processors.safetensors");
  simdjson::dom::parser parser;
  const simdjson::dom::element manifest = parser.load((dir / "processors.json").string());

  const auto& scores_info = file.at("scores");
  REQUIRE(scores_info.shape.size() == 2);
  const size_t rows = size_t(scores_info.shape[0]);
  const size_t vocab = size_t(scores_info.shape[1]);
  const std::vector<float> all_scores = file.read_f32("scores");
  const std::vector<int64_t> all_ids = file.read_i64("input_ids");
  REQUIRE(file.at("input_ids").shape[0] == int64_t(rows));
  const size_t sequence_length = size_t(file.at("input_ids").shape[1]);

  std::vector<std::vector<int32_t>> bad_words;
  for (simdjson::dom::element word : manifest["bad_words_ids"].get_array()) {
    bad_words.emplace_back();
    for (int64_t id : word.get_array()) bad_words.back().push_back(int32_t(id));
  }
  const std::vector<int32_t> fixture_eos{2};  // make_fixtures.py builds NoBadWordsLogitsProcessor with eos_token_id=2

  int processors_checked = 0;
  for (std::string_view name_view : manifest["names"].get_array()) {
    const std::string name(name_view);
    std::function<void(std::span<float>, std::span<const int32_t>)> apply;
    auto number_after = [&](const std::string& prefix) { return std::stod(name.substr(prefix.size())); };
    if (starts_with(name, "temperature_")) {
      apply = [t = number_after("temperature_")](auto s, auto) { apply_temperature(s, t); };
    } else if (starts_with(name, "top_k_")) {
      apply = [k = int(number_after("top_k_"))](auto s, auto) { apply_top_k(s, k); };
    } else if (starts_with(name, "top_p_")) {
      apply = [p = number_after("top_p_")](auto s, auto) { apply_top_p(s, p); };
    } else if (starts_with(name, "min_p_")) {
      apply = [p = number_after("min_p_")](auto s, auto) { apply_min_p(s, p); };
    } else if (starts_with(name, "typical_")) {
      apply = [m = number_after("typical_")](auto s, auto) { apply_typical(s, m); };
    } else if (starts_with(name, "repetition_penalty_")) {
      apply = [p = number_after("repetition_penalty_")](auto s, auto ids) { apply_repetition_penalty(s, ids, p); };
    } else if (starts_with(name, "no_repeat_ngram_")) {
      apply = [n = int(number_after("no_repeat_ngram_"))](auto s, auto ids) { apply_no_repeat_ngram(s, ids, n); };
    } else if (starts_with(name, "min_length_")) {
      int min_length = 0, eos = 0;
      REQUIRE(std::sscanf(name.c_str(), "min_length_%d_eos_%d", &min_length, &eos) == 2);
      apply = [min_length, eos_ids = std::vector<int32_t>{eos}](auto s, auto ids) {
        apply_min_length(s, ids.size(), min_length, eos_ids);
      };
    } else if (starts_with(name, "suppress_tokens_")) {
      apply = [tokens = underscore_separated_ids(name.substr(std::string("suppress_tokens_").size()))](auto s, auto) {
        apply_suppress_tokens(s, tokens);
      };
    } else if (name == "bad_words") {
      apply = [&](auto s, auto ids) { apply_bad_words(s, ids, bad_words, fixture_eos); };
    } else {
      FAIL("processors.json names a processor this test does not know: " << name);
    }

    const std::vector<float> expected_all = file.read_f32("out." + name);
    REQUIRE(expected_all.size() == rows * vocab);
    double max_difference = 0;
    for (size_t row = 0; row < rows; ++row) {
      std::vector<float> scores(all_scores.begin() + long(row * vocab), all_scores.begin() + long((row + 1) * vocab));
      std::vector<int32_t> ids;
      for (size_t i = 0; i < sequence_length; ++i) ids.push_back(int32_t(all_ids[row * sequence_length + i]));
      apply(scores, ids);
      for (size_t t = 0; t < vocab; ++t) {
        const float expected = expected_all[row * vocab + t];
        INFO(name << " row " << row << " token " << t << ": ours " << scores[t] << ", transformers " << expected);
        if (std::isinf(expected)) {
          CHECK(scores[t] == expected);
        } else {
          REQUIRE(std::isfinite(scores[t]));
          // The processors repeat torch's float32 operations, so agreement is expected to the bit; 1e-6 absolute
          // (about one float ulp at |x| ~ 10) is the allowance for a reordered float sum.
          CHECK(std::fabs(scores[t] - expected) <= 1e-6);
          max_difference = std::max(max_difference, double(std::fabs(scores[t] - expected)));
        }
      }
    }
    MESSAGE(name << ": max |ours - transformers| over finite entries = " << max_difference);
    ++processors_checked;
  }
  CHECK(processors_checked == 11);
}

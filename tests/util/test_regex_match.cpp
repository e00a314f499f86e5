// python_re_match follows Python's re.match: anchored at the start only, PCRE2 syntax close to Python's.
#include "test_support.hpp"
#include "util/error.hpp"
#include "util/regex_match.hpp"

using inferno::Error;
using inferno::util::python_re_match;

TEST_CASE("python_re_match anchors at the start, not at the end, like re.match") {
  CHECK(python_re_match(".*lm_head", "lm_head", "t"));
  CHECK(python_re_match(".*lm_head", "model.lm_head", "t"));
  CHECK(python_re_match("model\\.layers\\.0\\.", "model.layers.0.mlp.down_proj", "t"));  // a prefix is enough
  CHECK_FALSE(python_re_match("layers\\.0", "model.layers.0.mlp", "t"));                // but it starts at 0
  CHECK(python_re_match(".*(gate|up)_proj", "model.layers.3.mlp.up_proj", "t"));
  CHECK_FALSE(python_re_match(".*(gate|up)_proj", "model.layers.3.mlp.down_proj", "t"));
  CHECK(python_re_match(".*\\d+\\.mlp", "model.layers.12.mlp.up_proj", "t"));
  CHECK(python_re_match("", "anything", "t"));
}

TEST_CASE("python_re_match names the place and the pattern that does not compile") {
  CHECK_THROWS_WITH_AS(python_re_match("(lm_head", "lm_head", "config.json: ignore"),
                       doctest::Contains("config.json: ignore: regular expression '(lm_head'"), Error);
}

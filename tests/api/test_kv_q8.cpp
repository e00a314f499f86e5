// The q8 KV cache (int8 with an f32 scale per 32 values of a head) on whole models, against the f32 cache: logits of
// every position, greedy tokens through a Session (contiguous cache) and an Engine (paged pool), and the memory it
// takes. The kernel tests bound one attention call (tests/kernels/test_attention.cpp); through a model the error
// passes through later layers, so the bounds here are measured values with a margin, stated beside each check.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "inferno/inferno.hpp"
#include "test_support.hpp"

using namespace inferno::testing;

namespace {

std::filesystem::path brown() { return root_dir() / "models/brown-8m-bf16"; }

// max |a − b| / max |b| over all logits.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

std::vector<int32_t> prompt_ids(const inferno::Model& model, size_t n) {
  std::vector<int32_t> ids = model.tokenize(
      "The jury further said in term-end presentments that the City Executive Committee, which had over-all charge "
      "of the election, deserves the praise and thanks of the City of Atlanta for the manner in which it was held.");
  ids.resize(std::min(ids.size(), n));
  return ids;
}

}  // namespace

TEST_CASE("q8 KV: logits of every position stay near the f32 cache's, on the demo model and a head_dim 32 fixture") {
  // The per-value error is at most absmax / 254 of its block (0.4 %); measured max |Δ| / max |logit|: 0.0039 on the
  // demo model (40 positions), 0.0054 on bias-headdim-f16 (12). Bound: 0.02, about four times the larger.
  struct Case {
    std::filesystem::path path;
    std::vector<int32_t> ids;
  };
  inferno::Model demo = inferno::Model::load(brown(), {.quiet = true});
  const auto data = std::filesystem::path(std::getenv("INFERNO_TEST_DATA"));
  for (const Case& c : {Case{brown(), prompt_ids(demo, 40)},
                        Case{data / "hf-llama/bias-headdim-f16", {1, 7, 42, 99, 3, 250, 17, 8, 64, 5, 33, 12}}}) {
    CAPTURE(c.path);
    inferno::Model model = inferno::Model::load(c.path, {.quiet = true});
    inferno::Session f32(model, {.ctx = 64, .kv_dtype = inferno::KvDtype::F32});
    inferno::Session q8(model, {.ctx = 64, .kv_dtype = inferno::KvDtype::Q8});
    CHECK(q8.kv_dtype() == inferno::KvDtype::Q8);
    const auto reference = f32.logits(c.ids);
    const auto got = q8.logits(c.ids);
    REQUIRE(got.size() == reference.size());
    const double error = relative_error(got, reference);
    MESSAGE("q8 KV logits: max |delta| / max |logit| = " << error);
    CHECK(error <= 0.02);
    CHECK(error > 0);  // the cache really is quantized
  }
}

TEST_CASE("q8 KV: greedy tokens of the demo model equal the f32 cache's, in a Session and in the Engine") {
  // Measured: the 48 greedy tokens of this prompt equal f32's in both paths. The check allows the last 8 to differ
  // (a near-tie among the top logits may flip once the errors above accumulate), never the first 40.
  inferno::Model model = inferno::Model::load(brown(), {.quiet = true});
  const auto ids = prompt_ids(model, 12);
  inferno::GenerateOptions options;
  options.max_new_tokens = 48;
  options.ignore_eos = true;
  inferno::Session f32(model, {.ctx = 128, .kv_dtype = inferno::KvDtype::F32});
  const auto reference = f32.generate(ids, options);
  auto common_prefix = [&](const std::vector<int32_t>& got) {
    size_t n = 0;
    while (n < got.size() && n < reference.size() && got[n] == reference[n]) ++n;
    return n;
  };
  inferno::Session q8(model, {.ctx = 128, .kv_dtype = inferno::KvDtype::Q8});
  const auto session_tokens = q8.generate(ids, options);
  MESSAGE("q8 Session: " << common_prefix(session_tokens) << " of 48 greedy tokens equal f32's");
  CHECK(common_prefix(session_tokens) >= 40);

  inferno::Engine engine(model, {.parallel = 2, .ctx = 128, .kv_dtype = inferno::KvDtype::Q8});
  CHECK(engine.kv_dtype() == inferno::KvDtype::Q8);
  const auto result = engine.generate(ids, options);
  REQUIRE(result.error.empty());
  MESSAGE("q8 Engine: " << common_prefix(result.tokens) << " of 48 greedy tokens equal f32's");
  CHECK(common_prefix(result.tokens) >= 40);
}

TEST_CASE("q8 KV: the cache takes 36 bytes per 32 values, and models whose head_dim is not a multiple of 32 refuse it") {
  const inferno::ModelInfo info = inferno::inspect_model(brown());
  const uint32_t ctx = 256;
  const uint64_t rope_table = uint64_t(ctx) * info.head_dim * 4;
  const uint64_t values = 2ull * info.layers * info.kv_heads * ctx * info.head_dim;
  CHECK(inferno::kv_cache_bytes(info, ctx, 1, inferno::KvDtype::Q8) - rope_table == values / 32 * 36);
  CHECK(inferno::kv_cache_bytes(info, ctx, 1, inferno::KvDtype::F16) - rope_table == values * 2);

  // What the session holds: the estimate, plus scratch for one row.
  inferno::Model model = inferno::Model::load(brown(), {.quiet = true});
  inferno::Session session(model, {.ctx = ctx, .kv_dtype = inferno::KvDtype::Q8});
  session.logits({1});
  const uint64_t estimate = inferno::kv_cache_bytes(info, ctx, 1, inferno::KvDtype::Q8);
  CHECK(session.device_bytes() >= estimate);
  CHECK(session.device_bytes() - estimate <= inferno::scratch_bytes(info, 1, 1) + 64 * 1024);

  const auto data = std::filesystem::path(std::getenv("INFERNO_TEST_DATA"));
  inferno::Model narrow = inferno::Model::load(data / "hf-llama/llama3-gqa-f32", {.quiet = true});  // head_dim 16
  CHECK_THROWS_WITH_AS(inferno::Session(narrow, {.ctx = 16, .kv_dtype = inferno::KvDtype::Q8}).logits({1, 2}),
                       doctest::Contains("head_dim is 16"), inferno::Error);
  CHECK_THROWS_WITH_AS(inferno::kv_cache_bytes(narrow.info(), 16, 1, inferno::KvDtype::Q8),
                       doctest::Contains("head_dim is 16"), inferno::Error);
  CHECK(inferno::parse_kv_dtype("q8") == inferno::KvDtype::Q8);
  CHECK(std::string(inferno::kv_dtype_name(inferno::KvDtype::Q8)) == "q8");
}

#pragma once
// Shared test support: where the test data lives, and seeded random data whose seed is printed on failure.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "util/error.hpp"

namespace inferno::testing {

// tests/data (copied fixtures) and the project root, passed by meson in the environment.
inline std::filesystem::path data_dir() {
  const char* d = std::getenv("INFERNO_TEST_DATA");
  return d ? d : "tests/data";
}
inline std::filesystem::path root_dir() {
  const char* d = std::getenv("INFERNO_ROOT");
  return d ? d : ".";
}
inline std::filesystem::path data_path(const std::string& rel) { return data_dir() / rel; }
// Large tokenizer files fetched by tools/fetch-tokenizers.sh (not committed).
inline std::filesystem::path tokenizer_dir(const std::string& name) { return root_dir() / "third_party/tokenizers" / name; }

// Makes `dir` a complete checkpoint with text in and out: the llama3-vocab-tied-bf16 fixture's weights and the real
// Llama 3 tokenizer (which has a chat template), linked in. Returns dir.
inline std::filesystem::path llama3_text_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  const fs::path tok = tokenizer_dir("llama3");
  REQUIRE_MESSAGE(fs::exists(tok / "tokenizer.json"), "run tools/fetch-tokenizers.sh: " << tok << " is missing");
  fs::create_directories(dir);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
    if (!fs::exists(dir / f)) fs::create_symlink(fs::absolute(data_path("hf-llama/llama3-vocab-tied-bf16") / f), dir / f);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (!fs::exists(dir / f)) fs::create_symlink(fs::absolute(tok / f), dir / f);
  return dir;
}

// The whole file as text; fails the test when it cannot be read.
inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file, "cannot read " << path.string());
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// `text` with its one occurrence of `from` replaced by `to` (fails the test unless `from` occurs exactly once).
inline std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, from);
  REQUIRE_MESSAGE(text.find(from, at + 1) == std::string::npos, from);
  return text.replace(at, from.size(), to);
}

// Makes `dir` a checkpoint of `weights_dir`'s model.safetensors (linked) under another config.json: the same
// weights with an edited config, for the checks that refuse a checkpoint whose tensors disagree with it.
inline void link_weights_with_config(const std::filesystem::path& dir, const std::filesystem::path& weights_dir,
                                     const std::string& config_json) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  std::ofstream(dir / "config.json", std::ios::binary | std::ios::trunc) << config_json;
  fs::create_symlink(fs::absolute(weights_dir / "model.safetensors"), dir / "model.safetensors");
}

// A fresh seed each run unless INFERNO_TEST_SEED fixes one; the seed is attached to every failure message.
inline uint64_t test_seed() {
  static const uint64_t seed = [] {
    if (const char* s = std::getenv("INFERNO_TEST_SEED")) return uint64_t(std::strtoull(s, nullptr, 10));
    return uint64_t(std::random_device{}()) << 32 | std::random_device{}();
  }();
  return seed;
}

struct Rng {
  std::mt19937_64 engine;
  explicit Rng(uint64_t salt = 0) : engine(test_seed() ^ (salt * 0x9E3779B97F4A7C15ull)) {}
  float uniform(float lo = -1.f, float hi = 1.f) { return std::uniform_real_distribution<float>(lo, hi)(engine); }
  float normal(float stddev = 1.f) { return std::normal_distribution<float>(0.f, stddev)(engine); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(engine); }  // inclusive
  std::vector<float> uniform_vector(size_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    for (auto& x : v) x = uniform(lo, hi);
    return v;
  }
};

// A random prompt of Brown-corpus words for the demo model: fresh each run, the seed printed on failure.
inline std::string random_prompt(Rng& rng) {
  static const char* words[] = {"the", "jury", "said", "city", "of", "county", "election", "was", "a",
                                "man", "party", "and", "he", "they", "Fulton", "state", "house", "new"};
  std::string text = "The";
  const int n = rng.integer(1, 5);
  for (int i = 0; i < n; ++i) text += std::string(" ") + words[rng.integer(0, int(std::size(words)) - 1)];
  return text;
}

// max |Δ| / max |ref|: how the parity tests and CONTRACT.md compare logits (a NaN anywhere is infinitely far).
inline double relative_max_error(std::span<const float> got, std::span<const float> ref) {
  REQUIRE(got.size() == ref.size());
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(ref[i])));
    const double d = std::fabs(double(got[i]) - double(ref[i]));
    if (std::isnan(d)) return INFINITY;
    max_diff = std::max(max_diff, d);
  }
  return max_diff / max_ref;
}

}  // namespace inferno::testing

// Put at the top of a test case: every failure in it then says which seed reproduces it.
#define INFERNO_SEED_INFO() INFO("seed (rerun with INFERNO_TEST_SEED=" << ::inferno::testing::test_seed() << ")")

// Zero-copy loading: weights read in place from the mapped checkpoint (VK_EXT_external_memory_host) give exactly the
// logits of the copied weights, for every fixture format; what cannot be read in place (misaligned tensors, GGUF's
// reordered Q and K rows) is copied; the device's account holds the same bytes either way.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "generate/session.hpp"
#include "gpu_support.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors_writer.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"

using namespace inferno;
using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

// INFERNO_ZERO_COPY set for one scope.
struct ZeroCopyEnv {
  explicit ZeroCopyEnv(const char* value) { ::setenv("INFERNO_ZERO_COPY", value, 1); }
  ~ZeroCopyEnv() { ::unsetenv("INFERNO_ZERO_COPY"); }
};

struct Run {
  std::vector<float> logits;
  uint64_t imported = 0;     // device bytes read in place while the model was loaded
  uint64_t held = 0;         // device bytes the model's weights held
  uint64_t weight_bytes = 0;
  uint64_t matrix_bytes = 0;  // the bytes of its weight matrices (what may be read in place)
};

uint64_t matrix_bytes(const model::LlamaModel& m) {
  uint64_t total = m.embedding().rows * m.embedding().row_bytes();
  if (&m.lm_head() != &m.embedding()) total += m.lm_head().rows * m.lm_head().row_bytes();
  for (const auto& l : m.layers())
    for (const model::Linear* p : l.linears()) total += p->weight.rows * p->weight.row_bytes();
  return total;
}

// Every binding of a weight chunk, the unread bias placeholder included, starts at the chunk's first row and spans no
// more than its rows (rounded to 16 bytes): an imported chunk starts inside its first page, and a binding of the
// whole buffer would run past maxStorageBufferRange for chunks sized up to it (a 1B model's tied Q8_0 embedding).
size_t bindings_past_chunks(const model::LlamaModel& m) {
  size_t bad = 0;
  auto check = [&](const kernels::DeviceMatrix& w) {
    for (const kernels::WeightChunk& c : w.chunks) {
      uint32_t first = 0, dtype = 0;
      const vk::Binding b = kernels::bias_binding(test_device(), nullptr, c, first, dtype);
      const uint64_t span = b.buffer->size() - b.offset, own = (uint64_t(c.rows) * w.row_bytes() + 15) & ~uint64_t(15);
      if ((b.offset != c.offset || span > own) && bad++ < 3)
        FAIL_CHECK(w.name << ": the bias placeholder binds " << span << " bytes from " << b.offset << ", the chunk has "
                          << own << " from " << c.offset);
    }
  };
  check(m.embedding());
  check(m.lm_head());
  for (const auto& l : m.layers())
    for (const model::Linear* p : l.linears()) check(p->weight);
  return bad;
}

Run run(const fs::path& path, const char* zero_copy) {
  ZeroCopyEnv env(zero_copy);
  const uint64_t before = test_device().allocated_bytes();
  Run r;
  {
    ValidationGuard guard;
    auto m = model::LlamaModel::load(test_device(), path, {.quiet = true});
    r.imported = test_device().imported_bytes();
    r.held = test_device().allocated_bytes() - before;
    r.weight_bytes = m->weight_bytes();
    r.matrix_bytes = matrix_bytes(*m);
    CHECK(bindings_past_chunks(*m) == 0);
    gen::Session session(*m, 16, model::default_kv_type(*m));
    const std::vector<int32_t> ids = {1, 5, 9, 2, 7, 3};
    r.logits = session.all_logits(ids);
  }
  CHECK(test_device().allocated_bytes() == before);
  CHECK(test_device().imported_bytes() == 0);  // nothing read in place outlives the model
  return r;
}

// Loads `path` copied and read in place; requires bit-identical logits and the same device bytes for the weights.
Run compare(const fs::path& path) {
  const Run copied = run(path, "0");
  const Run in_place = run(path, "1");
  CHECK(copied.imported == 0);
  REQUIRE(copied.logits.size() == in_place.logits.size());
  CHECK(std::memcmp(copied.logits.data(), in_place.logits.data(), copied.logits.size() * sizeof(float)) == 0);
  CHECK(in_place.weight_bytes == copied.weight_bytes);
  // Both hold the weights' on-disk bytes plus allocation rounding, whichever memory holds them.
  for (const Run* r : {&copied, &in_place}) {
    CHECK(r->held >= r->weight_bytes);
    CHECK(r->held - r->weight_bytes < 64 * 1024);
  }
  MESSAGE(path.string() << ": " << in_place.imported << " of " << in_place.matrix_bytes
                        << " matrix bytes read in place");
  return in_place;
}

// The checkpoint at `src` rewritten by inferno's writer into `dir` (data section on 64 bytes), tensors whose sizes are
// multiples of 64 first, so that every one of those starts 64-byte aligned in the file.
fs::path aligned_copy(const fs::path& src, const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().extension() == ".json" && e.path().filename() != "model.safetensors.index.json")
      fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  io::Checkpoint ckpt(src);
  std::vector<io::TensorToWrite> tensors;
  for (int aligned = 1; aligned >= 0; --aligned)
    for (const std::string& name : ckpt.tensor_names()) {
      const io::TensorInfo& t = ckpt.at(name);
      if ((t.bytes % 64 == 0) == bool(aligned)) tensors.push_back({name, t.dtype, t.shape, ckpt.data(t), {}});
    }
  io::write_safetensors(dir / "model.safetensors", tensors, {}, 64);
  return dir;
}

const char* const kSafetensors[] = {"llama3-gqa-f32",   "llama3-tied-bf16", "bias-headdim-f16",
                                    "mha-sharded-bf16", "mqa-yarn-f32",     "llama3-vocab-tied-bf16",
                                    "dynamic-rope-f32", "w8a8-int8",        "w8a8-static-int8"};

}  // namespace

TEST_CASE("zero-copy loading gives the copied weights' logits bit for bit: safetensors F32/F16/BF16 and w8a8") {
  if (!test_device().caps().host_import) {
    MESSAGE("the device cannot import host memory: nothing to compare");
    return;
  }
  const fs::path tmp = fs::temp_directory_path() / ("inferno-zero-copy-" + std::to_string(::getpid()));
  for (const char* name : kSafetensors) {
    CAPTURE(name);
    // As transformers wrote them (their data sections start 8 bytes off 16: most tensors are copied) ...
    compare(data_path(std::string("hf-llama/") + name));
    // ... and rewritten with the data section on 64 bytes: every matrix is read in place.
    const Run aligned = compare(aligned_copy(data_path(std::string("hf-llama/") + name), tmp / name));
    CHECK(aligned.imported >= aligned.matrix_bytes);
    CHECK(aligned.imported < aligned.matrix_bytes + 64 * 1024);
  }
  fs::remove_all(tmp);
}

TEST_CASE("zero-copy loading gives the copied weights' logits bit for bit: GGUF floats and blocks") {
  if (!test_device().caps().host_import) {
    MESSAGE("the device cannot import host memory: nothing to compare");
    return;
  }
  for (const char* file : {"gguf/float/llama3-gqa-f32.gguf", "gguf/float/llama3-tied-bf16.gguf",
                           "gguf/float/bias-headdim-f16.gguf", "gguf/brown-8m-q8_0/model.gguf",
                           "gguf/tiny-k-q4_0/model.gguf", "gguf/tiny-k-q4_k_m/model.gguf", "gguf/tiny-k-q6_k/model.gguf",
                           "gguf/tiny-k-q8_0/model.gguf"}) {
    CAPTURE(file);
    const Run r = compare(data_path(file));
    // GGUF aligns every tensor to 32 bytes: all but Q and K (whose rows are reordered on the host, and so q | k | v
    // with them) are read in place.
    CHECK(r.imported > 0);
    CHECK(r.imported < r.matrix_bytes);
  }
}

TEST_CASE("INFERNO_ZERO_COPY takes 0, 1 or auto and nothing else") {
  ZeroCopyEnv env("yes");
  CHECK_THROWS_WITH_AS(model::LlamaModel::load(test_device(), data_path("hf-llama/llama3-tied-bf16"), {.quiet = true}),
                       doctest::Contains("INFERNO_ZERO_COPY must be 0, 1 or auto"), Error);
}

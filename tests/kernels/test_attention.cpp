// KV-cache writes and causal GQA attention against a double-precision reference of transformers' eager attention,
// run over the cache-rounded K/V values: several steps per case (prefill, then decode or more prefill with past > 0),
// left padding through kv_start, GQA / MQA / MHA, head_dim up to 256, contexts of several key chunks, all four cache
// dtypes (q8 against its own bound, below), and caches too large for one binding.
#include <algorithm>
#include <bit>

#include "kernels/attention.hpp"
#include "kernels/rope.hpp"
#include "ops_support.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::KvType;

namespace {

Dtype dtype_of(KvType t) { return t == KvType::F32 ? Dtype::F32 : t == KvType::F16 ? Dtype::F16 : Dtype::BF16; }

struct Step {
  uint32_t tokens;
  bool attend;  // false: only write the cache (fills a long context quickly)
};

struct Case {
  const char* name;
  uint32_t batch, heads, kv_heads, head_dim, capacity;
  std::vector<int32_t> kv_start;
  std::vector<Step> steps;
  uint32_t q_padding = 0, kv_padding = 0;  // extra floats at the end of each q row, k/v row
  uint32_t first_slot = 0;                 // where the first step writes (slots before it are never looked at)
  bool poison_cache = true;                // fill the whole cache with NaN bytes first (small caches only)
  bool past_at_run_time = false;           // past read from kv_start[batch] by the kernels, not the push constants
  uint32_t splits = 1;                     // split-K attention over this many key ranges
  kernels::AttentionShape::Kernel kernel = kernels::AttentionShape::Kernel::Auto;
};

// The host's copy of the cache: slots [first_slot, capacity) of every plane (sequence, kv head), as the cache dtype
// holds them. NaN marks a slot not written yet.
struct HostCache {
  uint32_t first_slot, slots, head_dim;
  std::vector<float> k, v;
  HostCache(uint32_t planes, uint32_t first, uint32_t capacity, uint32_t dim)
      : first_slot(first),
        slots(capacity - first),
        head_dim(dim),
        k(size_t(planes) * slots * dim, kNaN),
        v(size_t(planes) * slots * dim, kNaN) {}
  size_t at(uint32_t plane, uint32_t slot, uint32_t d) const {
    return (size_t(plane) * slots + (slot - first_slot)) * head_dim + d;
  }
};

// out[row, h] = Σ_j softmax(q·k_j · scale) v_j over j = max(kv_start, 0) .. past + t, in double; zeros where no key
// is visible. Also gives each output row's error bound for the f32 kernel (see the comment at the bound).
// With `quantized`, the cache holds the values before q8 quantization and the bound adds what it may do to the output.
void reference_attention(const Case& c, const kernels::AttentionShape& s, const HostCache& cache,
                         const std::vector<float>& q, uint32_t q_stride, std::vector<double>& out,
                         std::vector<double>& tolerance, bool quantized = false) {
  const uint32_t group = c.heads / c.kv_heads, D = c.head_dim;
  out.assign(size_t(s.batch) * s.tokens * c.heads * D, 0.0);
  tolerance.assign(out.size(), 0.0);
  for (uint32_t b = 0; b < s.batch; ++b)
    for (uint32_t t = 0; t < s.tokens; ++t)
      for (uint32_t h = 0; h < c.heads; ++h) {
        const size_t row = size_t(b) * s.tokens + t;
        const uint32_t plane = b * c.kv_heads + h / group;
        const int64_t first = std::max<int64_t>(c.kv_start[b], 0), last = int64_t(s.past) + t;
        if (first > last) continue;  // no visible key: zeros
        const float* qh = &q[row * q_stride + size_t(h) * D];
        std::vector<double> scores;
        double max_score = -1e300, max_abs_score = 0, max_abs_products = 0, max_abs_v = 0, max_abs_k = 0;
        for (int64_t j = first; j <= last; ++j) {
          double dot = 0, abs_products = 0;
          for (uint32_t d = 0; d < D; ++d) {
            const double kd = cache.k[cache.at(plane, uint32_t(j), d)];
            dot += qh[d] * kd;
            abs_products += std::abs(qh[d] * kd);
            max_abs_k = std::max(max_abs_k, std::abs(kd));
            max_abs_v = std::max(max_abs_v, std::abs(double(cache.v[cache.at(plane, uint32_t(j), d)])));
          }
          scores.push_back(dot * s.scale);
          max_score = std::max(max_score, scores.back());
          max_abs_score = std::max(max_abs_score, std::abs(scores.back()));
          max_abs_products = std::max(max_abs_products, abs_products);
        }
        double sum = 0;
        for (auto& sc : scores) sum += (sc = std::exp(sc - max_score));
        for (uint32_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = first; j <= last; ++j)
            acc += scores[size_t(j - first)] * cache.v[cache.at(plane, uint32_t(j), d)];
          out[row * c.heads * D + size_t(h) * D + d] = acc / sum;
        }
        // The f32 kernel's error bound, relative to max|v| (an output is a convex combination of the v_j):
        //  - each score is a length-D dot product and a scaling, off by at most (D + 2) u · scale · Σ|q_i k_i|; a
        //    softmax weight moves by twice its scores' error, relatively;
        //  - exp errs by at most 3 + 2|x| ulp (Vulkan specification; 1 ulp = 2u) with |x| ≤ 2 max|score|, in each
        //    weight and in each of the `chunks` rescalings of the running sums, numerator and denominator alike;
        //  - the weighted sum of v takes at most `keys` roundings per chunk (the kernel's keys per chunk) and one per
        //    rescaling; the tiled kernel's chunks start at the first visible key, as the row kernel's do.
        // Split-K adds one rescaling per split (the combine) to the chunks' own.
        const double keys = kernels::attention_chunk_keys(s);
        const double u = kUnitRoundoff, chunks = std::ceil(double(scores.size()) / keys) + (s.splits > 1 ? s.splits : 0);
        const double score_error = (D + 2) * u * s.scale * max_abs_products;
        const double exp_error = 2 * (chunks + 1) * 2 * (3 + 4 * max_abs_score) * u;
        double bound = max_abs_v * (2 * score_error + exp_error + (keys + 2 * chunks + 8) * u);
        if (quantized) {
          // q8 moves each k and v value by at most δ = q8_value_bound(max|k|) (or of max|v|): a score by at most
          // ε = scale · Σ_d |q_d| · δ_k, so a softmax weight by a factor within e^{±2ε}, and the output (a convex
          // combination of the v_j) by at most max|v| · (e^{2ε} − 1) from the weights plus δ_v from the values.
          double q_l1 = 0;
          for (uint32_t d = 0; d < D; ++d) q_l1 += std::abs(qh[d]);
          const double eps = s.scale * q_l1 * q8_value_bound(max_abs_k);
          bound += max_abs_v * std::expm1(2 * eps) + q8_value_bound(max_abs_v);
        }
        for (uint32_t d = 0; d < D; ++d) tolerance[row * c.heads * D + size_t(h) * D + d] = bound;
      }
}

// Runs the steps of a case with one cache dtype: each step writes its K/V rows through kv_write and (if asked)
// attends, and both the cache contents and the outputs are compared with the host. Returns the number of kv_write
// and attention dispatches of each step.
std::vector<uint64_t> run_case(const Case& c, KvType type, Rng& rng) {
  std::vector<uint64_t> dispatches;
  vk::Device& d = test_device();
  const Dtype dt = dtype_of(type);
  const uint32_t D = c.head_dim, planes = c.batch * c.kv_heads;
  const uint32_t q_width = c.heads * D, kv_width = c.kv_heads * D;
  const uint32_t q_stride = q_width + c.q_padding, kv_stride = kv_width + c.kv_padding;
  const bool q8 = type == KvType::Q8;
  const uint64_t cache_bytes = kernels::kv_bytes(type, uint64_t(planes) * c.capacity * D);
  vk::Buffer k_cache(d, cache_bytes, vk::MemoryKind::Device, "k cache"),
      v_cache(d, cache_bytes, vk::MemoryKind::Device, "v cache");
  if (c.poison_cache) {
    // 0xFFFF is a NaN in f16 and in bf16, 0xFFFFFFFF one in f32: a slot read before it is written shows.
    const std::vector<uint8_t> nan_bytes(cache_bytes, 0xFF);
    vk::upload(d, k_cache, 0, nan_bytes.data(), cache_bytes);
    vk::upload(d, v_cache, 0, nan_bytes.data(), cache_bytes);
  }
  std::vector<int32_t> starts_and_past = c.kv_start;
  starts_and_past.push_back(0);
  vk::Buffer kv_start = device_buffer(starts_and_past, "kv_start");
  HostCache host(planes, c.first_slot, c.capacity, D);
  // q8: the values before quantization (host holds what the device stored, read back after each write).
  HostCache exact(planes, c.first_slot, c.capacity, D);

  uint32_t past = c.first_slot;
  for (size_t step = 0; step < c.steps.size(); ++step) {
    const Step st = c.steps[step];
    CAPTURE(step);
    CAPTURE(past);
    CAPTURE(st.tokens);
    kernels::AttentionShape s;
    s.batch = c.batch;
    s.tokens = st.tokens;
    s.past = past;
    s.heads = c.heads;
    s.kv_heads = c.kv_heads;
    s.head_dim = D;
    s.capacity = c.capacity;
    s.scale = float(1.0 / std::sqrt(double(D)));
    s.splits = c.splits;
    s.kernel = c.kernel;
    if (c.past_at_run_time) {
      // The real past goes to the buffer; the shape holds a wrong one that the kernels must not use.
      s.past_at_run_time = true;
      s.past = past == 0 ? c.capacity - st.tokens : 0;
      const int32_t run_time_past = int32_t(past);
      vk::upload(d, kv_start, uint64_t(c.batch) * 4, &run_time_past, 4);
    }
    const uint32_t rows = c.batch * st.tokens;
    std::vector<float> q = rng.uniform_vector(size_t(rows) * q_stride, -2.f, 2.f);
    std::vector<float> k = rng.uniform_vector(size_t(rows) * kv_stride),
                       v = rng.uniform_vector(size_t(rows) * kv_stride);
    for (uint32_t b = 0; b < c.batch; ++b)
      for (uint32_t t = 0; t < st.tokens; ++t) {
        // Padding tokens (slots before kv_start) get large keys and values: attending to one would show plainly.
        const float boost = int64_t(past) + t < c.kv_start[b] ? 8.f : 1.f;
        const size_t row = size_t(b) * st.tokens + t;
        for (uint32_t h = 0; h < c.kv_heads; ++h)
          for (uint32_t i = 0; i < D; ++i) {
            const size_t src = row * kv_stride + size_t(h) * D + i;
            k[src] *= boost;
            v[src] *= boost;
            exact.k[host.at(b * c.kv_heads + h, past + t, i)] = k[src];
            exact.v[host.at(b * c.kv_heads + h, past + t, i)] = v[src];
            if (q8) continue;
            host.k[host.at(b * c.kv_heads + h, past + t, i)] = round_to(dt, k[src]);
            host.v[host.at(b * c.kv_heads + h, past + t, i)] = round_to(dt, v[src]);
          }
      }
    vk::Buffer qb = device_buffer(q, "q"), kb = device_buffer(k, "k"), vb = device_buffer(v, "v");
    vk::Buffer out(d, uint64_t(rows) * q_width * 4, vk::MemoryKind::Device, "attention out");
    vk::Buffer partials(d, std::max<uint64_t>(4, kernels::attention_partial_floats(s, rows) * 4),
                        vk::MemoryKind::Device, "partials");
    vk::Recorder rec(d);
    rec.begin();
    kernels::record_kv_write(d, rec, type, s, kb, kv_stride, vb, kv_stride, k_cache, v_cache, kv_start);
    if (st.attend) {
      poison(rec, out, uint64_t(rows) * q_width);
      if (c.splits > 1) poison(rec, partials, kernels::attention_partial_floats(s, rows));
      kernels::record_attention(d, rec, type, s, qb, q_stride, k_cache, v_cache, kv_start, out, &partials);
    }
    dispatches.push_back(rec.dispatch_count() - (st.attend ? 1 : 0));
    rec.submit_and_wait();

    // The cache holds exactly the rounded values where written (q8: within its bound of the value, and then taken
    // as what attention must see), and its poison everywhere else.
    size_t bad = 0;
    for (uint32_t p = 0; p < planes; ++p) {
      const uint64_t plane_offset = kernels::kv_bytes(type, (uint64_t(p) * c.capacity + c.first_slot) * D);
      const size_t n = size_t(host.slots) * D;
      for (int which = 0; which < 2; ++which) {
        const vk::Buffer& cache = which == 0 ? k_cache : v_cache;
        std::vector<float>& expected = which == 0 ? host.k : host.v;
        const std::vector<float>& before = which == 0 ? exact.k : exact.v;
        const auto raw = read_back<uint8_t>(cache, kernels::kv_bytes(type, n), plane_offset);
        const auto got = q8 ? decode_q8(raw) : decode(dt, raw);
        if (q8) {
          for (size_t i = 0; i < n; ++i) {
            const float value = before[size_t(p) * n + i];
            const size_t block = i / 32 * 36;
            bool ok;
            if (std::isnan(value)) {
              ok = !c.poison_cache || (raw[block + i % 32] == 0xFF &&
                                       std::all_of(&raw[block + 32], &raw[block + 36], [](uint8_t x) { return x == 0xFF; }));
            } else {
              double absmax = 0;
              for (size_t j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) absmax = std::max(absmax, std::abs(double(before[size_t(p) * n + j])));
              ok = std::abs(double(got[i]) - value) <= q8_value_bound(absmax);
              expected[size_t(p) * n + i] = got[i];
            }
            if (!ok && bad++ < 3)
              FAIL_CHECK((which ? "v" : "k") << " q8 cache plane " << p << " slot " << c.first_slot + i / D << " dim "
                                             << i % D << ": " << got[i] << ", stored for " << value);
          }
          continue;
        }
        const uint32_t bytes = dt == Dtype::F32 ? 4 : 2;
        for (size_t i = 0; i < n; ++i) {
          const float want = expected[size_t(p) * n + i];
          const bool ok = std::isnan(want) ? (!c.poison_cache || std::all_of(&raw[i * bytes], &raw[(i + 1) * bytes],
                                                                             [](uint8_t x) { return x == 0xFF; }))
                                           : got[i] == want;
          if (!ok && bad++ < 3)
            FAIL_CHECK((which ? "v" : "k") << " cache plane " << p << " slot " << c.first_slot + i / D << " dim "
                                           << i % D << ": " << got[i] << ", expected " << want);
        }
      }
    }
    CHECK(bad == 0);

    if (st.attend) {
      std::vector<double> want, tolerance;
      kernels::AttentionShape real = s;
      real.past = past;
      reference_attention(c, real, host, q, q_stride, want, tolerance);
      const auto got = read_back<float>(out, want.size());
      bad = 0;
      for (size_t i = 0; i < want.size(); ++i)
        if (!(std::abs(got[i] - want[i]) <= tolerance[i]) && bad++ < 3)
          FAIL_CHECK("out row " << i / q_width << " head " << (i % q_width) / D << " dim " << i % D << ": " << got[i]
                                << ", expected " << want[i] << " ± " << tolerance[i]);
      CHECK(bad == 0);
      if (q8) {  // against attention over the values before quantization, within the bound q8 adds
        reference_attention(c, real, exact, q, q_stride, want, tolerance, true);
        bad = 0;
        for (size_t i = 0; i < want.size(); ++i)
          if (!(std::abs(got[i] - want[i]) <= tolerance[i]) && bad++ < 3)
            FAIL_CHECK("q8 out row " << i / q_width << " head " << (i % q_width) / D << " dim " << i % D << ": "
                                     << got[i] << ", unquantized " << want[i] << " ± " << tolerance[i]);
        CHECK(bad == 0);
      }
    }
    past += st.tokens;
  }
  return dispatches;
}

const KvType kAllTypes[] = {KvType::F32, KvType::F16, KvType::BF16};
const KvType kAllTypesAndQ8[] = {KvType::F32, KvType::F16, KvType::BF16, KvType::Q8};

}  // namespace

TEST_CASE("kv type names and sizes") {
  CHECK(std::string(kernels::kv_type_name(KvType::F32)) == "f32");
  CHECK(std::string(kernels::kv_type_name(KvType::F16)) == "f16");
  CHECK(std::string(kernels::kv_type_name(KvType::BF16)) == "bf16");
  CHECK(std::string(kernels::kv_type_name(KvType::Q8)) == "q8");
  CHECK(kernels::kv_bytes(KvType::F32, 64) == 256);
  CHECK(kernels::kv_bytes(KvType::F16, 64) == 128);
  CHECK(kernels::kv_bytes(KvType::BF16, 64) == 128);
  CHECK(kernels::kv_bytes(KvType::Q8, 64) == 72);  // 56 % of f16: two blocks of 32 levels and a scale
  CHECK_NOTHROW(kernels::check_kv_head_dim("x", KvType::Q8, 96));
  CHECK_THROWS_WITH_AS(kernels::check_kv_head_dim("model m", KvType::Q8, 16), doctest::Contains("head_dim is 16"),
                       inferno::Error);
  CHECK_NOTHROW(kernels::check_kv_head_dim("x", KvType::F16, 16));
}

TEST_CASE("kv_write q8: each block of 32 as round(value / scale) levels with scale absmax / 127; zeros, NaN, signs") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(406);
  kernels::AttentionShape s;
  s.tokens = 2;
  s.kv_heads = 2;
  s.heads = 2;
  s.head_dim = 64;
  s.capacity = 2;
  const size_t n = size_t(s.tokens) * s.kv_heads * s.head_dim, blocks = n / 32;
  // Block 0 all zeros, block 1 holds a NaN, block 2 the levels -127 .. 127 of 2^-3 exactly, the rest random of
  // magnitudes from 1e-30 to 1e30.
  std::vector<float> k(n), v(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t block = i / 32;
    const float magnitude = std::pow(10.f, float(rng.integer(-30, 30)));
    k[i] = block == 0 ? 0.f : block == 2 ? float(int(i % 32) * 8 - 127) / 8 : rng.uniform(-1.f, 1.f) * magnitude;
    v[i] = -k[i];
  }
  k[32 + 5] = kNaN;
  vk::Buffer kb = device_buffer(k, "k"), vb = device_buffer(v, "v");
  const uint64_t bytes = kernels::kv_bytes(KvType::Q8, n);
  vk::Buffer k_cache(d, bytes, vk::MemoryKind::Device, "k cache"), v_cache(d, bytes, vk::MemoryKind::Device, "v cache");
  const vk::Buffer kv_start = device_buffer(std::vector<int32_t>{0}, "kv_start");
  vk::Recorder rec(d);
  rec.begin();
  kernels::record_kv_write(d, rec, KvType::Q8, s, kb, s.kv_heads * s.head_dim, vb, s.kv_heads * s.head_dim, k_cache,
                           v_cache, kv_start);
  rec.submit_and_wait();
  // The cache is [kv_heads, capacity, head_dim]; the rows are [tokens, kv_heads · head_dim].
  auto source = [&](const std::vector<float>& x, size_t cache_index) {
    const size_t dim = cache_index % s.head_dim, slot = cache_index / s.head_dim % s.capacity;
    const size_t head = cache_index / (size_t(s.head_dim) * s.capacity);
    return x[(slot * s.kv_heads + head) * s.head_dim + dim];
  };
  size_t bad = 0;
  for (int which = 0; which < 2; ++which) {
    const std::vector<float>& src = which == 0 ? k : v;
    const auto raw = read_back<uint8_t>(which == 0 ? k_cache : v_cache, bytes);
    const auto got = decode_q8(raw);
    for (size_t b = 0; b < blocks; ++b) {
      float scale;
      std::memcpy(&scale, &raw[b * 36 + 32], 4);
      double absmax = 0;
      bool nan = false;
      for (size_t i = b * 32; i < b * 32 + 32; ++i) {
        absmax = std::max(absmax, std::abs(double(source(src, i))));
        nan = nan || std::isnan(source(src, i));
      }
      if (nan) {
        if (!std::isnan(scale) && bad++ < 3) FAIL_CHECK("block " << b << " holds a NaN but its scale is " << scale);
        continue;
      }
      if (!(std::abs(scale - absmax / 127) <= 1e-6 * absmax) && bad++ < 3)
        FAIL_CHECK("block " << b << ": scale " << scale << ", absmax / 127 is " << absmax / 127);
      for (size_t i = b * 32; i < b * 32 + 32; ++i) {
        const double x = source(src, i);
        const int level = int8_t(raw[b * 36 + i % 32]);
        // The nearest level (ties may go either way within the device's division error), never -128.
        const double exact_level = absmax > 0 ? x * 127 / absmax : 0;
        const bool ok = level >= -127 && std::abs(level - exact_level) <= 0.5 + 1e-4 &&
                        std::abs(double(got[i]) - x) <= q8_value_bound(absmax);
        if (!ok && bad++ < 3)
          FAIL_CHECK((which ? "v" : "k") << "[" << i << "] = " << x << " stored as level " << level << " of scale "
                                         << scale);
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("kv_write rounds to the cache dtype bit for bit like PyTorch, edge values and random bit patterns") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(403);
  const float inf = std::numeric_limits<float>::infinity();
  // Ties and limits of both 16-bit formats, subnormals, signed zeros and non-finite values, then random bits.
  // 2^-25 rounds to 0 in f16 (a tie), 3·2^-26 up to the smallest subnormal; 2^-14 is f16's smallest normal.
  const std::vector<float> edges = {0.f, -0.f, 1.f + 1.f / 2048, 1.f + 3.f / 2048, 1.f + 1.f / 256, 1.f + 3.f / 256,
                                    65504.f, 65519.99f, 65520.f, -65520.f, 1e-8f, 2.9802322e-8f, 4.4703484e-8f,
                                    6.097555e-5f, 6.1035156e-5f, 1e-40f, 3.4e38f, inf, -inf, kNaN, -kNaN};
  kernels::AttentionShape s;
  s.tokens = 3;
  s.kv_heads = 1;
  s.heads = 1;
  s.head_dim = 256;
  s.capacity = 3;
  const size_t n = size_t(s.tokens) * s.head_dim;
  for (KvType type : kAllTypes) {
    CAPTURE(kernels::kv_type_name(type));
    std::vector<float> k(n), v(n);
    for (size_t i = 0; i < n; ++i) {
      k[i] = i < edges.size() ? edges[i] : std::bit_cast<float>(uint32_t(rng.engine()));
      v[i] = i < edges.size() ? -edges[i] : std::bit_cast<float>(uint32_t(rng.engine()));
    }
    const uint32_t bytes = type == KvType::F32 ? 4 : 2;
    vk::Buffer kb = device_buffer(k, "k"), vb = device_buffer(v, "v");
    vk::Buffer k_cache(d, n * bytes, vk::MemoryKind::Device, "k cache"),
        v_cache(d, n * bytes, vk::MemoryKind::Device, "v cache");
    vk::Recorder rec(d);
    rec.begin();
    const vk::Buffer kv_start = device_buffer(std::vector<int32_t>{0}, "kv_start");
    kernels::record_kv_write(d, rec, type, s, kb, s.head_dim, vb, s.head_dim, k_cache, v_cache, kv_start);
    rec.submit_and_wait();
    size_t bad = 0;
    for (int which = 0; which < 2; ++which) {
      const std::vector<float>& src = which == 0 ? k : v;
      const auto raw = read_back<uint8_t>(which == 0 ? k_cache : v_cache, n * bytes);
      for (size_t i = 0; i < n; ++i) {
        bool ok;
        if (type == KvType::F32) {
          float got;
          std::memcpy(&got, &raw[i * 4], 4);
          // A NaN's payload is not promised to survive a shader's load and store; any NaN will do.
          ok = std::isnan(src[i]) ? std::isnan(got) : std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(src[i]);
        } else {
          uint16_t got;
          std::memcpy(&got, &raw[i * 2], 2);
          ok = got == (type == KvType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]));
        }
        if (!ok && bad++ < 3)
          FAIL_CHECK((which ? "v" : "k") << "[" << i << "] = " << src[i] << " (bits " << std::bit_cast<uint32_t>(src[i])
                                         << ") is stored wrongly");
      }
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("attention matches eager attention over the rounded cache: padding, GQA/MQA/MHA, prefill and decode") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(401);
  const std::vector<Case> cases = {
      // GQA 4/2 with three left-padded sequences; prefill, then two decode steps.
      {"gqa batch 3", 3, 4, 2, 64, 16, {0, 3, 6}, {{9, true}, {1, true}, {1, true}}, 8, 3},
      // MHA, head_dim 16: sequence 0's first two prefill rows see no key at all (zeros); several tokens at past > 0.
      {"mha batch 2", 2, 3, 3, 16, 13, {2, 0}, {{5, true}, {1, true}, {4, true}}},
      // MQA 4/1, head_dim 128, a prefill of several chunks, then more tokens on top.
      {"mqa", 1, 4, 1, 128, 200, {0}, {{130, true}, {3, true}}, 0, 5},
      // head_dim 256, two chunks of keys.
      {"head_dim 256", 1, 4, 2, 256, 80, {1}, {{70, true}, {1, true}}},
      // A single token at past 0, then one more.
      {"one token", 1, 2, 1, 32, 4, {0}, {{1, true}, {1, true}}},
      // A long context: 700 cached tokens (11 chunks) written without attending, then decode over them.
      {"long context", 2, 4, 2, 64, 720, {0, 37}, {{700, false}, {2, true}, {1, true}}, 4, 0},
  };
  // Each case with both kernels: one workgroup per query row, and tiles of query rows (the default for prefill).
  using Kernel = kernels::AttentionShape::Kernel;
  for (Case c : cases)
    for (Kernel kernel : {Kernel::Rows, Kernel::Tiles})
      for (KvType type : kAllTypesAndQ8) {
        if (type == KvType::Q8 && c.head_dim % 32 != 0) continue;  // q8 blocks are 32 values of one head
        c.kernel = kernel;
        const std::string name = c.name;
        CAPTURE(name);
        CAPTURE(kernels::kv_type_name(type));
        CAPTURE(kernel == Kernel::Tiles);
        run_case(c, type, rng);
      }
  // Split-K: key ranges attended apart and combined, some of them empty (left padding, short contexts), with the
  // past at run time as the replayed decode step has it.
  for (uint32_t splits : {2u, 3u, 8u})
    for (Case c : {cases[0], cases[1], cases[2], cases[5]}) {
      c.splits = splits;
      c.past_at_run_time = splits == 3;
      const std::string name = c.name;
      CAPTURE(name);
      CAPTURE(splits);
      run_case(c, splits == 8 ? KvType::BF16 : splits == 2 && c.head_dim % 32 == 0 ? KvType::Q8 : KvType::F32, rng);
    }
  // past read by the kernels from kv_start[batch] (the replayed decode recording), on the cases with a batch > 1.
  for (Case c : {cases[0], cases[1], cases[5]})
    for (Kernel kernel : {Kernel::Rows, Kernel::Tiles}) {
      c.past_at_run_time = true;
      c.kernel = kernel;
      const std::string name = c.name;
      CAPTURE(name);
      run_case(c, KvType::F16, rng);
      if (c.head_dim % 32 == 0) run_case(c, KvType::Q8, rng);
    }
}

// Caches that need several bindings: head_dim 128, 4 kv heads, and a capacity at which an f32 plane (one sequence's
// kv head) takes a quarter of a binding and a little more, so a sequence's planes are split 3 + 1; in f16 a sequence
// fits, two do not. 0 (and a message) where that would take more than 1 GiB.
constexpr uint32_t kSplitHeadDim = 128, kSplitKvHeads = 4;
uint32_t split_capacity() {
  const vk::Device& d = test_device();
  const uint32_t capacity = uint32_t(d.caps().max_storage_buffer_range / (kSplitKvHeads * kSplitHeadDim * 4)) + 1000;
  if (uint64_t(capacity) * kSplitHeadDim * kSplitKvHeads * 2 * 4 > (uint64_t(1) << 30)) {
    MESSAGE("maxStorageBufferRange is " << d.caps().max_storage_buffer_range << " bytes: skipping the split test");
    return 0;
  }
  return capacity;
}

TEST_CASE("attention and kv_write split a cache larger than one binding") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  const uint32_t capacity = split_capacity();
  if (!capacity) return;
  Rng rng(402);
  const uint32_t past = capacity - 8;
  Case c{"split", 2, 8, kSplitKvHeads, kSplitHeadDim, capacity, {int32_t(past), int32_t(past + 1)},
         {{4, true}, {1, true}}, 0, 0, past, false};
  for (KvType type : {KvType::F32, KvType::F16}) {
    CAPTURE(kernels::kv_type_name(type));
    // Split: more than one kv_write and one attention dispatch.
    for (uint64_t n : run_case(c, type, rng)) CHECK(n > 2);
  }
}

// The fused path (kv_write_rope) against the two kernels it replaces, run on the same device: record_rope over the
// q and k heads of q | k | v rows, then record_kv_write. Both compute each rotated element with the same f32
// expression, so the q rows and both caches must agree bit for bit (any NaN matching any NaN), including the NaN of a
// position outside the table.
struct RopeWriteCase {
  uint32_t batch, tokens, heads, kv_heads, head_dim, capacity, past, padding;
  bool past_at_run_time;
};

void check_kv_write_rope(const RopeWriteCase& c, KvType type, Rng& rng, bool out_of_table) {
  vk::Device& d = test_device();
  kernels::AttentionShape s;
  s.batch = c.batch;
  s.tokens = c.tokens;
  s.past = c.past;
  s.heads = c.heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.capacity = c.capacity;
  s.past_at_run_time = c.past_at_run_time;
  const uint32_t rows = c.batch * c.tokens, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const uint32_t stride = q_dim + 2 * kv_dim + c.padding, half = c.head_dim / 2;
  const uint32_t table_positions = c.past + c.tokens + uint32_t(rng.integer(0, 3));
  std::vector<float> qkv(size_t(rows) * stride), table(size_t(table_positions) * half * 2);
  for (float& x : qkv) x = rng.uniform(-4.f, 4.f);
  for (float& x : table) x = rng.uniform(-1.f, 1.f);
  std::vector<int32_t> positions(rows), kv_start(c.batch + 1, 0);
  for (int32_t& p : positions) p = rng.integer(0, int(table_positions) - 1);
  if (out_of_table) positions[size_t(rng.integer(0, int(rows) - 1))] = int32_t(table_positions);
  kv_start[c.batch] = int32_t(c.past);
  const vk::Buffer positions_b = device_buffer(positions, "positions"), table_b = device_buffer(table, "cos_sin"),
                   starts = device_buffer(kv_start, "kv_start");
  const uint64_t cache_bytes = kernels::kv_bytes(type, uint64_t(c.batch) * c.kv_heads * c.capacity * c.head_dim);
  struct Path {
    vk::Buffer qkv, k_cache, v_cache;
  };
  auto make_path = [&](const char* name) {
    return Path{device_buffer(qkv, name), vk::Buffer(d, cache_bytes, vk::MemoryKind::Device, "k cache"),
                vk::Buffer(d, cache_bytes, vk::MemoryKind::Device, "v cache")};
  };
  Path separate = make_path("qkv separate"), fused = make_path("qkv fused");
  vk::Recorder rec(d);
  rec.begin();
  // NaN everywhere first, a binding's worth at a time (the split case's caches exceed one).
  const uint64_t chunk = d.caps().max_storage_buffer_range / 4;
  for (const Path* p : {&separate, &fused})
    for (const vk::Buffer* cache : {&p->k_cache, &p->v_cache})
      for (uint64_t first = 0; first < cache_bytes / 4; first += chunk)
        kernels::record_fill(d, rec, *cache, first, std::min(chunk, cache_bytes / 4 - first), kNaN);
  kernels::record_rope(d, rec, separate.qkv, rows, c.heads + c.kv_heads, c.head_dim, stride, positions_b, table_b,
                       table_positions);
  kernels::record_kv_write(d, rec, type, s, separate.qkv, stride, separate.qkv, stride, separate.k_cache,
                           separate.v_cache, starts, q_dim, q_dim + kv_dim);
  const kernels::KvWriteRope rope{fused.qkv, stride, 0, positions_b, table_b, table_positions};
  kernels::record_kv_write(d, rec, type, s, fused.qkv, stride, fused.qkv, stride, fused.k_cache, fused.v_cache,
                           starts, q_dim, q_dim + kv_dim, &rope);
  rec.submit_and_wait();
  auto same = [](float a, float b) {
    return (std::isnan(a) && std::isnan(b)) || std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
  };
  // q: the rotated query heads; k and v columns of the rows are the fused path's input and stay as they were.
  const auto q_separate = read_back<float>(separate.qkv, qkv.size()), q_fused = read_back<float>(fused.qkv, qkv.size());
  size_t bad = 0;
  for (uint32_t r = 0; r < rows; ++r)
    for (uint32_t i = 0; i < stride; ++i) {
      const size_t at = size_t(r) * stride + i;
      const float want = i < q_dim ? q_separate[at] : qkv[at];
      if (!same(q_fused[at], want) && bad++ < 3)
        FAIL_CHECK("row " << r << " column " << i << ": " << q_fused[at] << ", the separate kernels give " << want);
    }
  // The caches word by word: f32 as floats, 16-bit caches as their bits (a NaN of either path matches any NaN).
  const uint16_t nan_above = type == KvType::F16 ? 0x7c00 : 0x7f80;
  for (int which = 0; which < 2; ++which) {
    const vk::Buffer& a_cache = which ? separate.v_cache : separate.k_cache;
    const vk::Buffer& b_cache = which ? fused.v_cache : fused.k_cache;
    if (type == KvType::Q8) {  // block by block: equal words, or both scales NaN (a NaN's levels are undefined)
      const auto a = read_back<uint32_t>(a_cache, cache_bytes / 4), b = read_back<uint32_t>(b_cache, cache_bytes / 4);
      for (size_t block = 0; block < a.size() / 9; ++block) {
        float sa, sb;
        std::memcpy(&sa, &a[block * 9 + 8], 4);
        std::memcpy(&sb, &b[block * 9 + 8], 4);
        const bool equal = std::equal(&a[block * 9], &a[block * 9 + 9], &b[block * 9]);
        if (!equal && !(std::isnan(sa) && std::isnan(sb)) && bad++ < 3)
          FAIL_CHECK((which ? "v" : "k") << " q8 cache block " << block << " differs (scales " << sb << ", " << sa << ")");
      }
    } else if (type == KvType::F32) {
      const auto a = read_back<float>(a_cache, cache_bytes / 4), b = read_back<float>(b_cache, cache_bytes / 4);
      for (size_t i = 0; i < a.size(); ++i)
        if (!same(a[i], b[i]) && bad++ < 3)
          FAIL_CHECK((which ? "v" : "k") << " cache [" << i << "] = " << b[i] << " instead of " << a[i]);
    } else {
      const auto a = read_back<uint16_t>(a_cache, cache_bytes / 2), b = read_back<uint16_t>(b_cache, cache_bytes / 2);
      for (size_t i = 0; i < a.size(); ++i) {
        const bool both_nan = (a[i] & 0x7fff) > nan_above && (b[i] & 0x7fff) > nan_above;
        if (a[i] != b[i] && !both_nan && bad++ < 3)
          FAIL_CHECK((which ? "v" : "k") << " cache word " << i << " = " << b[i] << " instead of " << a[i]);
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("kv_write with RoPE equals rope then kv_write: GQA/MQA/MHA, odd head_dim / 2, batches, run-time past") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(404);
  const RopeWriteCase cases[] = {
      {1, 1, 4, 1, 64, 40, 17, 0, true},   // decode, MQA, replayed (past read at run time)
      {2, 3, 6, 2, 10, 16, 5, 3, false},   // GQA 3, head_dim 10 (d/2 odd), padded rows
      {3, 5, 2, 2, 6, 9, 0, 1, false},     // MHA, head_dim 6, prefill from slot 0
      {2, 1, 8, 4, 128, 70, 63, 0, true},  // decode over a batch
  };
  for (const RopeWriteCase& c : cases)
    for (KvType type : kAllTypesAndQ8) {
      if (type == KvType::Q8 && c.head_dim % 32 != 0) continue;
      CAPTURE(kernels::kv_type_name(type));
      CAPTURE(c.heads);
      CAPTURE(c.head_dim);
      check_kv_write_rope(c, type, rng, rng.integer(0, 1) == 1);
    }
}

TEST_CASE("kv_write with RoPE turns every query head once when the cache is split over several bindings") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  // In f32 a sequence's 4 planes do not fit one binding, so its query heads are turned by two dispatches, each
  // taking the heads of its own KV heads.
  const uint32_t capacity = split_capacity();
  if (!capacity) return;
  Rng rng(405);
  check_kv_write_rope({1, 2, 8, kSplitKvHeads, kSplitHeadDim, capacity, capacity - 2, 0, false}, KvType::F32, rng, false);
}

TEST_CASE("kv_write and attention refuse inconsistent shapes, naming what is wrong") {
  vk::Device& d = test_device();
  vk::Buffer small(d, 64, vk::MemoryKind::Device, "small"), cache(d, 4096, vk::MemoryKind::Device, "cache");
  vk::Recorder rec(d);
  rec.begin();
  kernels::AttentionShape s;
  s.heads = 4;
  s.kv_heads = 3;
  s.head_dim = 8;
  s.capacity = 16;
  s.scale = 0.35f;
  CHECK_THROWS_WITH_AS(kernels::record_attention(d, rec, KvType::F16, s, small, 32, cache, cache, small, small),
                       doctest::Contains("kv_heads 3"), inferno::Error);
  s.kv_heads = 2;
  s.head_dim = 7;
  CHECK_THROWS_WITH_AS(kernels::record_kv_write(d, rec, KvType::F32, s, small, 14, small, 14, cache, cache, small),
                       doctest::Contains("head_dim 7"), inferno::Error);
  s.head_dim = 8;
  s.past = 15;
  s.tokens = 2;
  CHECK_THROWS_WITH_AS(kernels::record_kv_write(d, rec, KvType::F32, s, small, 16, small, 16, cache, cache, small),
                       doctest::Contains("capacity 16"), inferno::Error);
  s.past = 0;
  CHECK_THROWS_WITH_AS(kernels::record_attention(d, rec, KvType::BF16, s, small, 16, cache, cache, small, small),
                       doctest::Contains("q row stride 16"), inferno::Error);
  CHECK_THROWS_WITH_AS(kernels::record_attention(d, rec, KvType::BF16, s, small, 32, cache, cache, small, small),
                       doctest::Contains("'small'"), inferno::Error);
  s.capacity = 1000;  // 2 × 2 × 1000 × 8 × 4 bytes: more than the cache holds
  vk::Buffer rows(d, 1024, vk::MemoryKind::Device, "rows");
  CHECK_THROWS_WITH_AS(kernels::record_kv_write(d, rec, KvType::F32, s, rows, 16, rows, 16, cache, cache, small),
                       doctest::Contains("'cache'"), inferno::Error);
}

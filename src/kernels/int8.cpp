#include "kernels/int8.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/linear.hpp"
#include "kernels/shader_registry.hpp"
#include "util/error.hpp"
#include "util/half.hpp"

namespace inferno::kernels {

namespace {

// Host memory for the int8 rows quantized at a time before they go to the device.
constexpr uint64_t kQuantizePieceBytes = 1u << 20;
// |q| ≤ 128 on both sides: an int32 dot product of k terms cannot overflow while 128 · 127 · k < 2^31.
constexpr uint32_t kW8A8MaxK = uint32_t((uint64_t(1) << 31) / (128 * 127));
constexpr uint32_t kMatmulTile = 64;   // TILE in linear_w8a8_matmul.comp
constexpr uint32_t kMatvecMaxM = 8;
constexpr uint32_t kThreads = 64;

float source_value(WeightType type, const std::byte* row, uint32_t i) {
  if (type == WeightType::F32) {
    float v;
    std::memcpy(&v, row + uint64_t(i) * 4, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, row + uint64_t(i) * 2, 2);
  return type == WeightType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// Mirrors `Push` in shaders/w8a8_common.glsl.
struct W8A8Push {
  uint32_t k_words, n, m;
  uint32_t xq_offset, xq_stride;
  uint32_t y_offset, y_stride;
  uint32_t bias_offset, bias_dtype;
  uint32_t accumulate;
  uint32_t wscale_offset, wscale_dtype;
  uint32_t xscale_offset;
};

// Mirrors `Push` in shaders/quantize_rows.comp.
struct QuantizeRowsPush {
  uint32_t k, m, x_offset, x_stride, xq_offset, xq_stride, scale_offset;
  float static_scale;
};

void need_bytes(const std::string& what, const vk::Buffer& b, const char* role, uint64_t bytes, uint32_t m) {
  if (b.bytes() < bytes)
    throw Error(what + ": " + role + " buffer '" + b.name() + "' holds " + std::to_string(b.bytes()) + " bytes, " +
                std::to_string(m) + " rows need " + std::to_string(bytes));
}

}  // namespace

DeviceMatrix quantize_matrix_int8(vk::Device& device, std::string name, WeightType source_type, uint32_t rows,
                                  uint32_t cols, std::span<const std::byte> source, uint64_t max_chunk_bytes,
                                  const std::function<void(uint64_t)>& on_bytes) {
  if (!is_float_type(source_type))
    throw Error("weight '" + name + "': only f32, f16 or bf16 weights can be quantized to int8, not " +
                weight_type_name(source_type));
  if (rows == 0 || cols == 0)
    throw Error("weight '" + name + "' has an empty shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  const uint64_t row_bytes = weight_row_bytes(WeightType::I8, cols, name);
  const uint64_t source_row_bytes = uint64_t(cols) * weight_type_bytes(source_type);
  if (source.size() != source_row_bytes * rows)
    throw Error("weight '" + name + "' [" + std::to_string(rows) + ", " + std::to_string(cols) + "] " +
                weight_type_name(source_type) + " needs " + std::to_string(source_row_bytes * rows) + " bytes, got " +
                std::to_string(source.size()));
  const uint32_t rows_per_chunk = matrix_rows_per_chunk(device, name, row_bytes, cols, max_chunk_bytes);
  const uint32_t rows_per_piece = uint32_t(std::clamp<uint64_t>(kQuantizePieceBytes / row_bytes, 1, rows_per_chunk));

  DeviceMatrix matrix;
  matrix.name = std::move(name);
  matrix.type = WeightType::I8;
  matrix.rows = rows;
  matrix.cols = cols;
  std::vector<float> scales(rows);
  std::vector<int8_t> piece(uint64_t(std::min(rows_per_piece, rows)) * cols);
  for (uint32_t first = 0; first < rows; first += std::min(rows_per_chunk, rows - first)) {
    const uint32_t chunk_rows = std::min(rows_per_chunk, rows - first);
    const std::string chunk_name =
        matrix.name + (chunk_rows < rows ? " rows " + std::to_string(first) + "+" + std::to_string(chunk_rows) : "");
    WeightChunk chunk{vk::Buffer(device, uint64_t(chunk_rows) * row_bytes, vk::MemoryKind::Device, chunk_name), first,
                      chunk_rows};
    for (uint32_t p0 = 0; p0 < chunk_rows; p0 += rows_per_piece) {
      const uint32_t piece_rows = std::min(rows_per_piece, chunk_rows - p0);
      for (uint32_t r = 0; r < piece_rows; ++r) {
        const uint32_t row = first + p0 + r;
        const std::byte* src = source.data() + uint64_t(row) * source_row_bytes;
        float largest = 0;
        for (uint32_t c = 0; c < cols; ++c) {
          const float v = source_value(source_type, src, c);
          if (!std::isfinite(v))
            throw Error("weight '" + matrix.name + "': row " + std::to_string(row) + " holds a non-finite value (" +
                        std::to_string(v) + "), which int8 cannot represent");
          largest = std::max(largest, std::fabs(v));
        }
        const float scale = largest / 127.0f;
        scales[row] = scale;
        int8_t* q = piece.data() + uint64_t(r) * cols;
        for (uint32_t c = 0; c < cols; ++c) {
          // nearbyint in the default rounding mode: round half to even, as torch.round.
          const float v = scale == 0 ? 0.0f : std::nearbyint(source_value(source_type, src, c) / scale);
          q[c] = int8_t(std::clamp(v, -127.0f, 127.0f));
        }
      }
      vk::upload(device, chunk.buffer, uint64_t(p0) * row_bytes, piece.data(), uint64_t(piece_rows) * row_bytes);
      if (on_bytes) on_bytes(uint64_t(piece_rows) * source_row_bytes);
    }
    matrix.chunks.push_back(std::move(chunk));
  }
  matrix.row_scales = upload_vector(device, matrix.name + " scales", WeightType::F32, rows,
                                    std::as_bytes(std::span<const float>(scales)));
  return matrix;
}

void record_quantize_rows(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, const vk::Buffer& xq,
                          const vk::Buffer& xscale, uint32_t m, uint32_t k, float static_scale,
                          uint64_t max_binding_bytes) {
  const std::string what = "quantize_rows";
  if (m == 0) return;
  if (k == 0) throw Error(what + ": rows of 0 elements");
  if (!(static_scale >= 0) || std::isinf(static_scale))
    throw Error(what + ": the static scale " + std::to_string(static_scale) + " is not a finite number ≥ 0");
  const uint64_t words = quantized_row_words(k);
  need_bytes(what, x, "x", uint64_t(m) * k * 4, m);
  need_bytes(what, xq, "xq", uint64_t(m) * words * 4, m);
  need_bytes(what, xscale, "xscale", uint64_t(m) * 4, m);
  if (&x == &xq || &x == &xscale || &xq == &xscale) throw Error(what + ": x, xq and xscale must be different buffers");

  const uint32_t block = std::min({m, rows_per_binding(device, max_binding_bytes, uint64_t(k) * 4, uint64_t(k) * 4, what + " x"),
                                   rows_per_binding(device, max_binding_bytes, words * 4, words * 4, what + " xq"),
                                   rows_per_binding(device, max_binding_bytes, 4, 4, what + " xscale")});
  const auto& p = pipeline(device, "quantize_rows", {kThreads});
  for (uint32_t m0 = 0; m0 < m; m0 += block) {
    const uint32_t mb = std::min(block, m - m0);
    const BindingWindow xw = binding_window(device, x, uint64_t(m0) * k * 4, uint64_t(m0 + mb) * k * 4, 4);
    const BindingWindow qw = binding_window(device, xq, m0 * words * 4, (m0 + mb) * words * 4, 4);
    const BindingWindow sw = binding_window(device, xscale, uint64_t(m0) * 4, uint64_t(m0 + mb) * 4, 4);
    const QuantizeRowsPush push{k, mb, xw.first_element, k, qw.first_element, uint32_t(words), sw.first_element,
                                 static_scale};
    const Grid g = grid_1d(device, mb);
    rec.dispatch(p, {vk::in(x, xw.offset, xw.range), vk::out(xq, qw.offset, qw.range), vk::out(xscale, sw.offset, sw.range)},
                 push, g.x, g.y);
  }
}

bool w8a8_coopmat_available(const vk::Device& device) {
  return has_shader("linear_w8a8_matmul_coopmat") && device.caps().coopmat_i8_shape[0] != 0;
}

bool w8a8_packed_dot_available(const vk::Device& device) {
  return has_shader("linear_w8a8_matvec_dot") && has_shader("linear_w8a8_matmul_dot") &&
         device.caps().integer_dot_product && device.caps().api_version >= VK_API_VERSION_1_3;
}

void record_linear_w8a8(vk::Device& device, vk::Recorder& rec, const W8A8Args& args) {
  if (!args.weight || !args.xq || !args.xscale || !args.y)
    throw Error("record_linear_w8a8: weight, xq, xscale and y are required");
  const DeviceMatrix& w = *args.weight;
  const std::string what = "w8a8 linear '" + w.name + "'";
  if (w.type != WeightType::I8)
    throw Error(what + ": the weights are " + weight_type_name(w.type) + ", w8a8 needs int8 (i8)");
  check_row_scales(w, what);
  if (args.m == 0) return;
  const uint32_t k = w.cols, n = w.rows, m = args.m;
  if (k > kW8A8MaxK)
    throw Error(what + ": rows of " + std::to_string(k) + " int8 values could overflow int32 sums (at most " +
                std::to_string(kW8A8MaxK) + ")");
  const uint32_t k_words = k / 4;  // I8 rows are whole words
  const uint64_t y_stride = args.y_stride ? args.y_stride : n;
  const uint64_t y_column = args.y_column;
  if (y_stride < y_column + n)
    throw Error(what + ": y rows " + std::to_string(y_stride) + " floats apart overlap (columns " +
                std::to_string(y_column) + " + n = " + std::to_string(n) + ")");
  if (y_stride > UINT32_MAX / 2) throw Error(what + ": y row stride too large");
  need_bytes(what, *args.xq, "xq", uint64_t(m) * k_words * 4, m);
  need_bytes(what, *args.xscale, "xscale", uint64_t(m) * 4, m);
  need_bytes(what, *args.y, "y", ((m - 1) * y_stride + y_column + n) * 4, m);
  if (args.y == args.xq || args.y == args.xscale) throw Error(what + ": y must not be xq or xscale");
  if (args.bias && args.bias->size != n)
    throw Error(what + ": bias '" + args.bias->name + "' has " + std::to_string(args.bias->size) + " elements, not " +
                std::to_string(n));

  const uint32_t block =
      std::min({m, rows_per_binding(device, args.max_binding_bytes, uint64_t(k_words) * 4, uint64_t(k_words) * 4, what + " xq"),
                rows_per_binding(device, args.max_binding_bytes, y_stride * 4, (y_column + n) * 4, what + " y"),
                rows_per_binding(device, args.max_binding_bytes, 4, 4, what + " xscale")});
  const bool matvec = m <= kMatvecMaxM;
  const bool available = w8a8_packed_dot_available(device);
  if (args.kernels == W8A8Kernels::PackedDot && !available)
    throw Error(what + ": packed integer dot products are not available (" +
                (has_shader("linear_w8a8_matvec_dot") ? "the device lacks shaderIntegerDotProduct"
                                                      : "this build's glslc lacks GL_EXT_integer_dot_product") + ")");
  const bool packed = args.kernels == W8A8Kernels::PackedDot ||
                      ((args.kernels == W8A8Kernels::Auto || args.kernels == W8A8Kernels::Rows) && available &&
                       device.caps().integer_dot_accelerated);
  const std::string suffix = packed ? "_dot" : "";
  const bool coopmat_here = w8a8_coopmat_available(device);
  // INFERNO_MATMUL steers the default as it does record_linear's (coopmat or rows where they cannot run: an error).
  W8A8Kernels asked = args.kernels;
  if (asked == W8A8Kernels::Auto && !matvec) {
    const MatmulOverride override = matmul_override();
    if (override == MatmulOverride::CoopMat) asked = W8A8Kernels::CoopMat;
    if (override == MatmulOverride::Rows) asked = W8A8Kernels::Rows;
    if (override == MatmulOverride::Tiled) asked = packed ? W8A8Kernels::PackedDot : W8A8Kernels::Plain;
  }
  if (asked == W8A8Kernels::Rows && !linear_rows_available(device))
    throw Error(what + ": the register-blocked kernel is not available (the device's subgroups are not a fixed size "
                       "of at least 8 with broadcasts)");
  // CPU drivers: the register-blocked kernel, as record_linear takes for float weights (one load of each weight for
  // all the workgroup's rows of xq, no shared memory).
  const bool rows = !matvec && (asked == W8A8Kernels::Rows ||
                                (asked == W8A8Kernels::Auto && device.cpu_class() && linear_rows_available(device)));
  const uint32_t rows_threads = device.caps().subgroup_size, rows_per_lane = 2;
  if (asked == W8A8Kernels::CoopMat && !coopmat_here)
    throw Error(what + ": int8 cooperative matrices are not available (" +
                (has_shader("linear_w8a8_matmul_coopmat") ? "the device offers none with int32 sums"
                                                          : "this build's glslc could not compile them") + ")");
  const bool coopmat = !matvec && (asked == W8A8Kernels::CoopMat ||
                                   (asked == W8A8Kernels::Auto && coopmat_here && !device.cpu_class()));
  const auto& caps = device.caps();
  const uint32_t fm = caps.coopmat_i8_shape[0], fn = caps.coopmat_i8_shape[1], fk = caps.coopmat_i8_shape[2];
  if (coopmat) {  // linear_w8a8_matmul_coopmat.comp's shared memory: two slices of int8, the tile of int32 sums
    const uint64_t shared = uint64_t(4 * fm + 4 * fn) * (2 * fk + 16) + uint64_t(4 * fm) * (4 * fn + 4) * 4;
    if (shared > caps.max_compute_shared_memory)
      throw Error(what + ": the int8 cooperative-matrix tile needs " + std::to_string(shared) +
                  " bytes of shared memory, the device has " + std::to_string(caps.max_compute_shared_memory));
  }
  for (uint32_t m0 = 0; m0 < m; m0 += block) {
    const uint32_t mb = std::min(block, m - m0);
    const BindingWindow qw = binding_window(device, *args.xq, uint64_t(m0) * k_words * 4, uint64_t(m0 + mb) * k_words * 4, 4);
    const BindingWindow sw = binding_window(device, *args.xscale, uint64_t(m0) * 4, uint64_t(m0 + mb) * 4, 4);
    const BindingWindow yw = binding_window(device, *args.y, (m0 * y_stride + y_column) * 4,
                                            ((m0 + mb - 1) * y_stride + y_column + n) * 4, 4);
    for (const WeightChunk& chunk : w.chunks) {
      W8A8Push push{k_words, chunk.rows, mb, qw.first_element, k_words, yw.first_element + chunk.first_row,
                    uint32_t(y_stride), 0, kNoBias, args.accumulate ? 1u : 0u, 0, dtype_code(w.row_scales->type),
                    sw.first_element};
      const vk::Binding bias = bias_binding(device, args.bias, chunk, push.bias_offset, push.bias_dtype);
      const vk::Binding scale_binding = row_scale_binding(device, w, chunk, push.wscale_offset);
      const std::initializer_list<vk::Binding> bindings = {
          chunk.binding(), vk::in(*args.xq, qw.offset, qw.range), vk::out(*args.y, yw.offset, yw.range),
          bias, scale_binding, vk::in(*args.xscale, sw.offset, sw.range)};
      if (matvec) {
        const auto& p = pipeline(device, "linear_w8a8_matvec" + suffix, {kThreads, mb});
        const Grid g = grid_1d(device, chunk.rows);
        rec.dispatch(p, bindings, push, g.x, g.y);
      } else if (rows) {
        // Rows of xq a workgroup: mb split evenly in tiles of at most 8, as record_linear's register-blocked kernel.
        const uint32_t tile_m = groups_for(mb, groups_for(mb, 8));
        const bool vec16 = k_words % 4 == 0;  // whole 16-byte units a row of W (the binding starts at a row)
        const auto& p = pipeline(device, "linear_w8a8_matmul_rows" + suffix,
                                 {rows_threads, tile_m, rows_per_lane, vec16 ? 1u : 0u}, rows_threads);
        const Grid g = grid_1d(device, uint64_t(groups_for(mb, tile_m)) * groups_for(chunk.rows, rows_threads * rows_per_lane));
        rec.dispatch(p, bindings, push, g.x, g.y);
      } else if (coopmat) {
        const auto& p = pipeline(device, "linear_w8a8_matmul_coopmat", {4 * caps.subgroup_size, fm, fn, fk},
                                 caps.subgroup_size);
        const Grid g = grid_1d(device, uint64_t(groups_for(chunk.rows, 4 * fn)) * groups_for(mb, 4 * fm));
        rec.dispatch(p, bindings, push, g.x, g.y);
      } else {
        const auto& p = pipeline(device, "linear_w8a8_matmul" + suffix);
        const Grid g = grid_1d(device, uint64_t(groups_for(chunk.rows, kMatmulTile)) * groups_for(mb, kMatmulTile));
        rec.dispatch(p, bindings, push, g.x, g.y);
      }
    }
  }
}

}  // namespace inferno::kernels

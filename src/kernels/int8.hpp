#pragma once
// INT8 weights with one scale per row, in two modes:
// - weight-only: int8 weights and f32 activations, y = Σ x · (q · s) through record_linear (WeightType::I8), for
//   compressed-tensors weights or a float checkpoint quantized while it loads (quantize_matrix_int8);
// - w8a8 (compressed-tensors `int-quantized` with int8 activations, dynamic per token or static per tensor):
//   activations quantized per row (record_quantize_rows), then exact int32 dot products,
//   y = float(qx · qw) · sx · sw (+ b) (record_linear_w8a8).
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "kernels/weights.hpp"
#include "vk/recorder.hpp"

namespace inferno::kernels {

// Quantizes a row-major float matrix (`source_type` F32, F16 or BF16; cols a multiple of 4) to int8 with one
// symmetric scale per row while it streams to the device: scale = max|w| / 127 (float32 division), q = round half to
// even (w / scale) clamped to [-127, 127] — the rounding of torch.round and numpy.round, so a PyTorch/NumPy
// reference reproduces the same integers; a zero row gets scale 0 and q 0. Host memory stays bounded: 1 MiB of int8
// rows at a time (or one row if larger), plus the f32 scales. The result is an I8 matrix with F32 row scales. Throws
// naming the tensor on a non-finite weight.
DeviceMatrix quantize_matrix_int8(vk::Device& device, std::string name, WeightType source_type, uint32_t rows,
                                  uint32_t cols, std::span<const std::byte> source, uint64_t max_chunk_bytes = 0,
                                  const std::function<void(uint64_t)>& on_bytes = {});

// Words of a quantized activation row of k int8 values, 4 a word (the tail word padded with zeros).
inline uint32_t quantized_row_words(uint32_t k) { return (k + 3) / 4; }

// Quantizes each row of x (f32 [m, k], rows k floats apart) to int8: xscale[r] = max|x[r]| / 127 and
// xq[r][i] = round half to even (x[r][i] / xscale[r]) clamped to [-128, 127], both divisions rounded as IEEE float32
// does (bit-exact with a float32 PyTorch/NumPy simulation); a zero row gets scale 0 and q 0. A `static_scale` > 0
// (compressed-tensors' static per-tensor `input_scale`) replaces every row's max|x| / 127. xq holds int8 [m, k]
// packed 4 a word, rows quantized_row_words(k) words apart; xscale is f32 [m]. `max_binding_bytes` (0 = the device's
// limit) bounds what one binding of x holds: tests pass a small value to force blocks of rows.
void record_quantize_rows(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, const vk::Buffer& xq,
                          const vk::Buffer& xscale, uint32_t m, uint32_t k, float static_scale = 0,
                          uint64_t max_binding_bytes = 0);

// Which integer dot-product kernels record_linear_w8a8 runs. Auto: for M > 8 the matrix-core kernel on GPUs where
// w8a8_coopmat_available; otherwise the packed 4×8-bit dot-product kernels where w8a8_packed_dot_available and the
// device reports them accelerated, the plain ones elsewhere (lavapipe emulates them: its packed matrix·matrix kernel
// measured 2× slower than the plain one); on CPU drivers, for M > 8, the register-blocked kernel
// (linear_w8a8_matmul_rows.comp) where linear_rows_available. CoopMat: matrix cores for M > 8 (an error where
// unavailable), the plain matrix·vector kernel for M ≤ 8. Rows: the register-blocked kernel for M > 8 (an error where
// unavailable; its packed-dot variant where PackedDot's conditions hold). All give the same bits (exact int32 sums).
enum class W8A8Kernels { Auto, Plain, PackedDot, CoopMat, Rows };

struct W8A8Args {
  const DeviceMatrix* weight = nullptr;  // I8 [N, K] with row scales
  const DeviceVector* bias = nullptr;    // optional, [N] in any float dtype
  const vk::Buffer* xq = nullptr;        // int8 [M, K] as record_quantize_rows writes it
  const vk::Buffer* xscale = nullptr;    // f32 [M]
  const vk::Buffer* y = nullptr;         // f32 [M, N], rows y_stride floats apart
  uint32_t m = 1;
  uint32_t y_stride = 0;                 // 0 = N
  uint32_t y_column = 0;                 // the first column of y written (as LinearArgs::y_column)
  bool accumulate = false;               // y += ... instead of y = ...
  W8A8Kernels kernels = W8A8Kernels::Auto;  // PackedDot throws where w8a8_packed_dot_available is false
  uint64_t max_binding_bytes = 0;        // as LinearArgs::max_binding_bytes
};

// y = float(xq · Wqᵀ) · xscale · row_scale (+ b): int32 dot products, exact; matrix·vector for M ≤ 8, tiled otherwise.
void record_linear_w8a8(vk::Device& device, vk::Recorder& rec, const W8A8Args& args);

// Whether the packed dot-product kernels can run on this device: the build has them (a glslc with
// GL_EXT_integer_dot_product) and the device exposes shaderIntegerDotProduct (Vulkan 1.3).
bool w8a8_packed_dot_available(const vk::Device& device);
// Whether the int8 cooperative-matrix kernel can run here: the build has it and the device offers int8 · int8 + int32
// cooperative matrices at subgroup scope (VK_KHR_cooperative_matrix) with shaderInt8.
bool w8a8_coopmat_available(const vk::Device& device);

}  // namespace inferno::kernels

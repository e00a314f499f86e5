#pragma once
// y = x · Wᵀ (+ b): x [M, K] f32 activations, W [N, K] in its own dtype (HF layout), y [M, N] f32, f32 accumulation.
// Small M (decode) uses a matrix·vector kernel that reads each weight row once for all M rows; larger M (prefill)
// a tiled matrix·matrix kernel, on matrix cores where the device has them (LinearTuning::matmul). Any sizes for float weights; block formats (Q8_0 ... Q6_K) and int8 weights (with
// their row scales: weight-only, x stays f32) are dequantized in registers, their K a whole number of blocks.
// Int8 activations (w8a8) are in kernels/int8.hpp.
#include "kernels/weights.hpp"
#include "vk/recorder.hpp"

namespace inferno::kernels {

// The most activation rows the matrix·vector kernel takes by default (LinearTuning::matvec_max_m).
inline constexpr uint32_t kMatvecMaxRows = 8;

struct LinearArgs {
  const DeviceMatrix* weight = nullptr;
  const DeviceVector* bias = nullptr;  // optional; same dtype as the weight not required
  const vk::Buffer* x = nullptr;       // f32 [M, K] starting at element 0, rows x_stride floats apart
  const vk::Buffer* y = nullptr;       // f32 [M, N] starting at element 0, rows y_stride floats apart
  uint32_t m = 1;
  uint32_t x_stride = 0;  // 0 = K
  uint32_t y_stride = 0;  // 0 = N
  uint32_t y_column = 0;  // the first column of y written: projections side by side in one output (q | k | v)
  bool accumulate = false;  // y += x·Wᵀ (+ b) instead of y = ... (residual add folded into the projection)
  // RMSNorm folded into the projection: x is the hidden state before the norm, and y = (RMSNorm(x) · norm) · Wᵀ with
  // LlamaRMSNorm's mean(x²) + eps, up to f32 rounding. Only on the matrix·vector path (m ≤ matvec_max_m): one pass
  // over x instead of a norm kernel, a barrier and a pass over its output. norm has K elements.
  const DeviceVector* norm = nullptr;
  float norm_eps = 0;
  // The largest range bound for x or y at once; 0 = the device's maxStorageBufferRange. Larger activations are
  // processed in blocks of rows. Tests pass a small value to force the blocking.
  uint64_t max_binding_bytes = 0;
};

// Tuning knobs of the matrix·vector kernel (specialization constants); 0 = the default for the device and shape.
struct LinearTuning {
  enum class Defaults { ForDevice, Cpu, Gpu };  // whose defaults fill the knobs left 0 (tests pick either class)
  uint32_t matvec_threads = 0;  // threads per workgroup (up to 1024)
  uint32_t matvec_rows = 0;     // outputs per workgroup (1..64), a multiple of threads / lanes
  uint32_t matvec_max_m = 0;    // the largest m that takes the matrix·vector kernel (1..8); larger m the tiled one
  uint32_t matvec_lanes = 0;    // threads that share one output: a divisor of threads (default: from k)
  bool matvec_no_vec16 = false;  // the 4-byte loads even where 16-byte loads are possible (tests both paths)
  // Finish each row's sum with subgroupAdd where lanes = the device's (fixed) subgroup size. Default: on GPUs with
  // subgroup arithmetic and one subgroup size; tests turn it on for the CPU device too.
  enum class SubgroupSum { Default, On, Off } matvec_subgroup_sum = SubgroupSum::Default;
  // The matrix·matrix kernel (m > matvec_max_m). CoopMat: matrix cores (VK_KHR_cooperative_matrix, f16 operands, f32
  // sums) for every weight type but F32; asking for it where the build or the device lacks it is an error. Default:
  // CoopMat on GPUs that have it for F16 and BF16 weights (exact in f16), else Tiled; INFERNO_MATMUL=tiled or
  // =coopmat overrides the default (for benchmarks and for testing on CPU drivers; coopmat where the device or build
  // has none is an error).
  // Rows: linear_matmul_rows.comp, register-blocked for CPU drivers (each thread TILE_M rows of x by PER_LANE rows of
  // W, x read by uniform loads); the default on CPU devices, where it also takes m = 2 .. 8 (batched decode) from the
  // matrix·vector kernel unless matvec_max_m is given.
  enum class Matmul { Default, Tiled, CoopMat, Rows } matmul = Matmul::Default;
  uint32_t rows_tile_m = 0;    // Rows: rows of x per workgroup, 1..16 (default: m split evenly in tiles of at most 8)
  uint32_t rows_per_lane = 0;  // Rows: rows of W per thread, 1..8 (default 2)
  Defaults defaults = Defaults::ForDevice;
};

// INFERNO_MATMUL, read once: whether the matrix·matrix kernels' default is overridden (tiled, rows or coopmat; unset or
// auto: no). Anything else is an error naming the variable. record_linear and record_linear_w8a8 follow it.
enum class MatmulOverride { None, Tiled, CoopMat, Rows };
MatmulOverride matmul_override();

// Whether record_linear would run m > matvec_max_m rows of this weight type on matrix cores with this tuning (no
// error where CoopMat is asked for and unavailable: false).
bool linear_uses_coopmat(const vk::Device& device, WeightType type, const LinearTuning& tuning = {});

// The knobs record_linear runs a weight of this type and width (cols) with: `asked` with its zeros and defaults
// filled in for the device (its class: vk::Device::device_class). Tests see which matrix·vector variant a device gets.
LinearTuning resolve_linear_tuning(const vk::Device& device, WeightType type, uint32_t cols, const LinearTuning& asked = {});
// Whether record_linear with default tuning folds an RMSNorm into m rows (LinearArgs::norm): the matrix·vector
// kernel's rows, which on CPU devices are m = 1 only (larger m take the register-blocked kernel).
bool linear_folds_norm(const vk::Device& device, uint32_t m);
// Whether the device runs the register-blocked kernel (LinearTuning::Matmul::Rows): subgroups of a fixed size of at
// least 8 with subgroupBroadcast.
bool linear_rows_available(const vk::Device& device);

void record_linear(vk::Device& device, vk::Recorder& rec, const LinearArgs& args);
void record_linear(vk::Device& device, vk::Recorder& rec, const LinearArgs& args, const LinearTuning& tuning);

}  // namespace inferno::kernels

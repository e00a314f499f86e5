#include "kernels/linear.hpp"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/shader_registry.hpp"
#include "util/error.hpp"

namespace inferno::kernels {

namespace {

// Mirrors `Push` in shaders/linear_common.glsl.
struct LinearPush {
  uint32_t k, n, m;
  uint32_t x_offset, x_stride;
  uint32_t y_offset, y_stride;
  uint32_t bias_offset, bias_dtype;
  uint32_t accumulate;
  uint32_t scale_offset, scale_dtype;
  float norm_eps;
};
constexpr uint32_t kMatmulTile = 64;   // TILE in linear_matmul.comp
constexpr uint32_t kMatvecMaxM = kMatvecMaxRows;  // the matvec kernel keeps ROWS × m sums per thread

// The largest divisor of `threads` that is at most `limit` (at least 1).
uint32_t divisor_at_most(uint32_t threads, uint32_t limit) {
  for (uint32_t d = std::min(threads, std::max(limit, 1u)); d > 1; --d)
    if (threads % d == 0) return d;
  return 1;
}

// `units`: what one lane takes per step along a row (4 elements, or a block format's unit).
LinearTuning resolve(const vk::Device& device, LinearTuning t, uint32_t units, const std::string& what) {
  // CPU drivers (lavapipe) run a workgroup's invocations as SIMD lanes: there one thread per output row, reading
  // along it, beats any split of a row across lanes (no reduction; measured 2-10x on lavapipe, 16 threads, 16 rows).
  // GPUs want adjacent threads on adjacent words: 64 threads fill a wave on every vendor.
  const bool cpu = t.defaults == LinearTuning::Defaults::ForDevice ? device.cpu_class()
                                                                   : t.defaults == LinearTuning::Defaults::Cpu;
  if (!t.matvec_threads) t.matvec_threads = cpu ? 16 : 64;
  if (cpu && !t.matvec_lanes && !t.matvec_rows) t.matvec_lanes = 1;
  if (t.matvec_threads > std::min<uint32_t>(1024, device.caps().max_workgroup_invocations))
    throw Error(what + ": matvec_threads " + std::to_string(t.matvec_threads) + " exceeds the device's workgroup size");
  if (!t.matvec_max_m) t.matvec_max_m = kMatvecMaxM;
  if (t.matvec_max_m < 1 || t.matvec_max_m > kMatvecMaxM) throw Error(what + ": matvec_max_m must be 1..8");
  const auto& caps = device.caps();
  const bool fixed_subgroup = caps.subgroup_arithmetic && caps.subgroup_size > 0 &&
                              caps.min_subgroup_size == caps.max_subgroup_size &&
                              t.matvec_threads % caps.subgroup_size == 0;
  const bool subgroup_sum = t.matvec_subgroup_sum == LinearTuning::SubgroupSum::On ||
                            (t.matvec_subgroup_sum == LinearTuning::SubgroupSum::Default && !cpu);
  if (!t.matvec_lanes && subgroup_sum && fixed_subgroup && !t.matvec_rows) t.matvec_lanes = caps.subgroup_size;
  t.matvec_subgroup_sum = subgroup_sum && fixed_subgroup && t.matvec_lanes == caps.subgroup_size
                              ? LinearTuning::SubgroupSum::On
                              : LinearTuning::SubgroupSum::Off;
  if (!t.matvec_lanes) {
    // Rows given: the lanes that make them a whole number of rows per lane group. Otherwise enough lanes for about
    // four units each: all 64 on long rows (one output per workgroup, N workgroups for wide GPUs to spread), 8 on a
    // 192-wide row, which then shares its workgroup with 7 other rows.
    t.matvec_lanes = t.matvec_rows ? t.matvec_threads / std::gcd(t.matvec_rows, t.matvec_threads)
                                   : divisor_at_most(t.matvec_threads, std::bit_floor(std::max(units / 4, 1u)));
  }
  if (t.matvec_threads % t.matvec_lanes != 0)
    throw Error(what + ": matvec_lanes " + std::to_string(t.matvec_lanes) + " does not divide matvec_threads " +
                std::to_string(t.matvec_threads));
  const uint32_t groups = t.matvec_threads / t.matvec_lanes;
  if (!t.matvec_rows) t.matvec_rows = groups;
  if (t.matvec_rows < 1 || t.matvec_rows > 64 || t.matvec_rows % groups != 0)
    throw Error(what + ": matvec_rows " + std::to_string(t.matvec_rows) + " must be 1..64 and a multiple of " +
                std::to_string(groups) + " (threads / lanes)");
  const uint64_t shared = uint64_t(t.matvec_rows) * t.matvec_max_m * t.matvec_lanes * 4;
  if (shared > device.caps().max_compute_shared_memory)
    throw Error(what + ": the matvec tuning needs " + std::to_string(shared) + " bytes of shared memory, the device has " +
                std::to_string(device.caps().max_compute_shared_memory));
  return t;
}

// A lane's step along a row: 4 elements of a float or int8 row, a block format's unit of 8.
uint32_t lane_units(WeightType type, uint32_t cols) {
  const bool units_of_8 = !is_float_type(type) && type != WeightType::I8;
  return units_of_8 ? cols / 8 : cols / 4;
}

// Why matrix cores cannot run `type` here, or "" when they can.
std::string coopmat_unavailable(const vk::Device& device, WeightType type) {
  const auto& caps = device.caps();
  if (type == WeightType::F32) return "F32 weights keep f32 products";
  if (!has_shader("linear_matmul_coopmat_" + std::string(weight_type_name(type))))
    return "this build's glslc could not compile cooperative-matrix kernels";
  if (!caps.coopmat_f16_shape[0]) return "the device offers no f16 cooperative matrices with f32 sums that it can run";
  return "";
}

// Why linear_matmul_rows.comp cannot run here, or "" when it can: its workgroup is one subgroup of a fixed size of at
// least 8, with subgroupBroadcast.
std::string rows_unavailable(const vk::Device& device) {
  const auto& caps = device.caps();
  if (!caps.subgroup_ballot) return "the device has no subgroup broadcasts in compute shaders";
  if (caps.subgroup_size < 8 || caps.min_subgroup_size != caps.max_subgroup_size)
    return "the device's subgroups are not a fixed size of at least 8";
  return "";
}

LinearTuning::Matmul matmul_kernel(const vk::Device& device, WeightType type, LinearTuning::Matmul asked) {
  using Matmul = LinearTuning::Matmul;
  if (asked == Matmul::Default) {
    const MatmulOverride choice = matmul_override();
    if (choice == MatmulOverride::Tiled) return Matmul::Tiled;
    if (choice == MatmulOverride::Rows) {
      if (const std::string why = rows_unavailable(device); !why.empty()) throw Error("INFERNO_MATMUL=rows: " + why);
      return Matmul::Rows;
    }
    if (choice == MatmulOverride::CoopMat) {
      // Asked for by name: F32 weights still keep f32 products, but a device or build without matrix cores is an
      // error rather than a quiet fallback (a benchmark or test would measure the wrong kernel).
      if (type == WeightType::F32) return Matmul::Tiled;
      if (const std::string why = coopmat_unavailable(device, type); !why.empty())
        throw Error("INFERNO_MATMUL=coopmat: " + why);
      return Matmul::CoopMat;
    }
    // By default only F16 and BF16 weights, which f16 holds exactly: block formats and int8 rows (scale × q) would
    // be rounded to f16 as well, which on the GGUF fixtures doubles the logits' error past the 1e-3 held for them
    // (2.2e-3 measured); they keep f32 activations unless INFERNO_MATMUL=coopmat asks.
    // CPU drivers: the register-blocked kernel (linear_matmul_rows.comp), for every weight type, where it runs.
    if (device.cpu_class() && rows_unavailable(device).empty()) return Matmul::Rows;
    const bool exact_in_f16 = type == WeightType::F16 || type == WeightType::BF16;
    return !device.cpu_class() && exact_in_f16 && coopmat_unavailable(device, type).empty() ? Matmul::CoopMat
                                                                                                   : Matmul::Tiled;
  }
  return asked;
}

}  // namespace

MatmulOverride matmul_override() {
  const char* env = std::getenv("INFERNO_MATMUL");
  const std::string choice = env ? env : "";
  if (choice.empty() || choice == "auto") return MatmulOverride::None;
  if (choice == "tiled") return MatmulOverride::Tiled;
  if (choice == "coopmat") return MatmulOverride::CoopMat;
  if (choice == "rows") return MatmulOverride::Rows;
  throw Error("INFERNO_MATMUL=" + choice + ": expected tiled, rows, coopmat or auto");
}

bool linear_folds_norm(const vk::Device& device, uint32_t m) {
  // Any weight type: only CoopMat depends on it, and it leaves the matrix·vector kernel its default rows.
  const bool rows = matmul_kernel(device, WeightType::F32, LinearTuning::Matmul::Default) == LinearTuning::Matmul::Rows;
  return m <= (rows ? 1u : kMatvecMaxM);
}

bool linear_rows_available(const vk::Device& device) { return rows_unavailable(device).empty(); }

bool linear_uses_coopmat(const vk::Device& device, WeightType type, const LinearTuning& tuning) {
  return matmul_kernel(device, type, tuning.matmul) == LinearTuning::Matmul::CoopMat &&
         coopmat_unavailable(device, type).empty();
}

LinearTuning resolve_linear_tuning(const vk::Device& device, WeightType type, uint32_t cols, const LinearTuning& asked) {
  return resolve(device, asked, lane_units(type, cols), std::string("a ") + weight_type_name(type) + " linear layer");
}

void record_linear(vk::Device& device, vk::Recorder& rec, const LinearArgs& args) {
  record_linear(device, rec, args, LinearTuning{});
}

void record_linear(vk::Device& device, vk::Recorder& rec, const LinearArgs& args, const LinearTuning& tuning_asked) {
  if (!args.weight || !args.x || !args.y) throw Error("record_linear: weight, x and y are required");
  const DeviceMatrix& w = *args.weight;
  const std::string what = "linear '" + w.name + "'";
  const LinearTuning tuning = resolve(device, tuning_asked, lane_units(w.type, w.cols), what);
  if (args.m == 0) return;
  const uint32_t k = w.cols, n = w.rows, m = args.m;
  const uint64_t x_stride = args.x_stride ? args.x_stride : k;
  const uint64_t y_stride = args.y_stride ? args.y_stride : n;
  const uint64_t y_column = args.y_column;
  if (x_stride < k)
    throw Error(what + ": x rows " + std::to_string(x_stride) + " floats apart overlap (k = " + std::to_string(k) + ")");
  if (y_stride < y_column + n)
    throw Error(what + ": y rows " + std::to_string(y_stride) + " floats apart overlap (columns " +
                std::to_string(y_column) + " + n = " + std::to_string(n) + ")");
  const uint64_t x_needs = ((m - 1) * x_stride + k) * 4, y_needs = ((m - 1) * y_stride + y_column + n) * 4;
  if (args.x->bytes() < x_needs)
    throw Error(what + ": x buffer '" + args.x->name() + "' holds " + std::to_string(args.x->bytes()) + " bytes, " +
                std::to_string(m) + " rows need " + std::to_string(x_needs));
  if (args.y->bytes() < y_needs)
    throw Error(what + ": y buffer '" + args.y->name() + "' holds " + std::to_string(args.y->bytes()) + " bytes, " +
                std::to_string(m) + " rows need " + std::to_string(y_needs));
  if (args.x == args.y) throw Error(what + ": x and y must be different buffers");
  if (args.bias && args.bias->size != n)
    throw Error(what + ": bias '" + args.bias->name + "' has " + std::to_string(args.bias->size) + " elements, not " +
                std::to_string(n));
  // The kernels index within a binding in 32-bit elements; bindings are at most maxStorageBufferRange (< 4 GiB).
  if (x_stride > UINT32_MAX / 2 || y_stride > UINT32_MAX / 2) throw Error(what + ": row strides too large");
  check_row_scales(w, what);

  const uint32_t block =
      std::min({m, rows_per_binding(device, args.max_binding_bytes, x_stride * 4, uint64_t(k) * 4, what + " x"),
                rows_per_binding(device, args.max_binding_bytes, y_stride * 4, (y_column + n) * 4, what + " y")});
  // The register-blocked kernel takes every m > 1 by default: with 8 rows of x a workgroup it reads each weight once
  // for 8 rows of x where the matrix·vector kernel keeps all m sums a thread and reloads x for each row of W.
  const LinearTuning::Matmul kind = matmul_kernel(device, w.type, tuning.matmul);
  const uint32_t matvec_max_m =
      tuning_asked.matvec_max_m || kind != LinearTuning::Matmul::Rows ? tuning.matvec_max_m : 1u;
  // A folded RMSNorm keeps the matrix·vector kernel up to its limit.
  const bool matvec = m <= matvec_max_m || (args.norm && m <= tuning.matvec_max_m);
  if (args.norm) {
    if (!matvec)
      throw Error(what + ": RMSNorm is folded only into the matrix·vector kernel (m ≤ " +
                  std::to_string(tuning.matvec_max_m) + "), not m = " + std::to_string(m));
    if (args.norm->size != k)
      throw Error(what + ": norm '" + args.norm->name + "' has " + std::to_string(args.norm->size) +
                  " elements, not k = " + std::to_string(k));
    if (!is_float_type(args.norm->type)) throw Error(what + ": norm '" + args.norm->name + "' is not a float vector");
  }
  const std::string dtype = weight_type_name(w.type);
  const auto& caps = device.caps();
  const bool coopmat = !matvec && kind == LinearTuning::Matmul::CoopMat;
  const bool rows = !matvec && kind == LinearTuning::Matmul::Rows;
  if (rows) {
    if (const std::string why = rows_unavailable(device); !why.empty())
      throw Error(what + ": register-blocked kernel asked for, but " + why);
  }
  const uint32_t rows_threads = caps.subgroup_size;  // one whole subgroup a workgroup
  const uint32_t rows_per_lane = tuning.rows_per_lane ? tuning.rows_per_lane : 2;
  if (tuning.rows_tile_m > 16) throw Error(what + ": rows_tile_m must be 1..16");
  if (rows_per_lane > 8) throw Error(what + ": rows_per_lane must be 1..8");
  if (coopmat) {
    if (const std::string why = coopmat_unavailable(device, w.type); !why.empty())
      throw Error(what + ": cooperative-matrix kernel asked for, but " + why);
  }
  // linear_matmul_coopmat.comp: 4 subgroups, each 2 × 2 fragments; the tile is 4 fragments a side.
  const uint32_t fm = caps.coopmat_f16_shape[0], fn = caps.coopmat_f16_shape[1], fk = caps.coopmat_f16_shape[2];
  const uint32_t tile_m = coopmat ? 4 * fm : kMatmulTile, tile_n = coopmat ? 4 * fn : kMatmulTile;
  if (coopmat) {
    const uint64_t depth = 2 * fk + 8;  // staged slice: KSTEPS fragment depths and 8 halves of padding
    const uint64_t shared = (uint64_t(tile_m) + tile_n) * depth * 2 + uint64_t(tile_m) * (tile_n + 4) * 4;
    if (shared > caps.max_compute_shared_memory)
      throw Error(what + ": the cooperative-matrix tile needs " + std::to_string(shared) +
                  " bytes of shared memory, the device has " + std::to_string(caps.max_compute_shared_memory));
  }
  for (uint32_t m0 = 0; m0 < m; m0 += block) {
    const uint32_t mb = std::min(block, m - m0);
    const BindingWindow xw = binding_window(device, *args.x, m0 * x_stride * 4, ((m0 + mb - 1) * x_stride + k) * 4, 4);
    const BindingWindow yw = binding_window(device, *args.y, (m0 * y_stride + y_column) * 4,
                                            ((m0 + mb - 1) * y_stride + y_column + n) * 4, 4);
    for (const WeightChunk& chunk : w.chunks) {
      LinearPush push{k, chunk.rows, mb, xw.first_element, uint32_t(x_stride), yw.first_element + chunk.first_row,
                      uint32_t(y_stride), 0, kNoBias, args.accumulate ? 1u : 0u, 0, 0, args.norm_eps};
      const vk::Binding bias = bias_binding(device, args.bias, chunk, push.bias_offset, push.bias_dtype);
      std::vector<vk::Binding> bindings = {chunk.binding(), vk::in(*args.x, xw.offset, xw.range),
                                           vk::out(*args.y, yw.offset, yw.range), bias};
      if (w.type == WeightType::I8) {  // the row scales, applied to each whole dot product
        bindings.push_back(row_scale_binding(device, w, chunk, push.scale_offset));
        push.scale_dtype = dtype_code(w.row_scales->type);
      }
      if (args.norm) {  // binding 5 (4 holds the row scales of int8 weights, and is unread otherwise)
        if (bindings.size() == 4) bindings.push_back(chunk.binding());
        bindings.push_back(vk::in(args.norm->buffer));
      }
      const vk::Pipeline* p;
      Grid g;
      if (matvec) {
        // 16-byte loads where float rows are whole 16-byte units and every x row starts on 16 bytes (block formats:
        // x alone).
        const bool vec16 = (!is_float_type(w.type) || uint64_t(k) * weight_type_bytes(w.type) % 16 == 0) &&
                           xw.first_element % 4 == 0 && x_stride % 4 == 0 && !tuning.matvec_no_vec16;
        p = &pipeline(device, (args.norm ? "linear_matvec_norm_" : "linear_matvec_") + dtype,
                      {tuning.matvec_threads, tuning.matvec_rows, mb, tuning.matvec_lanes, vec16 ? 1u : 0u,
                       tuning.matvec_subgroup_sum == LinearTuning::SubgroupSum::On ? 1u : 0u,
                       args.norm ? dtype_code(args.norm->type) : 0u});
        g = grid_1d(device, groups_for(chunk.rows, tuning.matvec_rows));
      } else if (rows) {
        // Rows of x a workgroup: mb split evenly in tiles of at most 8 (few distinct pipelines: m itself up to 8,
        // 5 .. 8 beyond), unless asked.
        const uint32_t tiles = groups_for(mb, 8);
        const uint32_t tile_m = tuning.rows_tile_m ? tuning.rows_tile_m : groups_for(mb, tiles);
        // Runs of 8 elements, 16 (F32: 32) bytes of a row each; x is read element by element.
        const bool vec16 = (!is_float_type(w.type) || k % 8 == 0) && !tuning.matvec_no_vec16;
        p = &pipeline(device, "linear_matmul_rows_" + dtype, {rows_threads, tile_m, rows_per_lane, vec16 ? 1u : 0u},
                      rows_threads);
        g = grid_1d(device, uint64_t(groups_for(mb, tile_m)) * groups_for(chunk.rows, rows_threads * rows_per_lane));
      } else {
        const uint32_t subgroup = caps.subgroup_size;
        p = coopmat ? &pipeline(device, "linear_matmul_coopmat_" + dtype, {4 * subgroup, fm, fn, fk}, subgroup)
                    : &pipeline(device, "linear_matmul_" + dtype);
        g = grid_1d(device, uint64_t(groups_for(chunk.rows, tile_n)) * groups_for(mb, tile_m));
      }
      rec.dispatch(*p, bindings, &push, sizeof(push), g.x, g.y);
    }
  }
}

}  // namespace inferno::kernels

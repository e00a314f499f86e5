#include "kernels/norm.hpp"

#include <algorithm>
#include <string>

#include "kernels/data_window.hpp"
#include "kernels/shader_registry.hpp"

namespace inferno::kernels {

namespace {

const char* rmsnorm_variant(WeightType type) {
  switch (type) {
    case WeightType::F32: return "rmsnorm_f32";
    case WeightType::F16: return "rmsnorm_f16";
    case WeightType::BF16: return "rmsnorm_bf16";
    default: break;
  }
  throw Error("rmsnorm: norm weights must be F32, F16 or BF16");
}

uint64_t weight_bytes(WeightType type, uint64_t count) { return type == WeightType::F32 ? count * 4 : count * 2; }

}  // namespace

void record_rmsnorm(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, const DeviceVector& weight,
                    const vk::Buffer& y, uint32_t rows, uint32_t dim, float eps) {
  if (weight.size != dim)
    throw Error("rmsnorm: weight '" + weight.name + "' has " + std::to_string(weight.size) + " values, the rows have " +
                std::to_string(dim));
  if (rows == 0 || dim == 0) return;
  if (!weight.buffer || weight.buffer.bytes() < weight_bytes(weight.type, dim))
    throw Error("rmsnorm: weight '" + weight.name + "' has no device buffer of " +
                std::to_string(weight_bytes(weight.type, dim)) + " bytes");
  // One workgroup per row: wide rows (hidden sizes) get more invocations to share the sum of squares.
  const uint32_t group = std::min<uint32_t>(dim >= 1024 ? 256 : 64, device.caps().max_workgroup_invocations);
  const auto& pipe = pipeline(device, rmsnorm_variant(weight.type), {group});
  const uint64_t row_bytes = uint64_t(dim) * 4;
  const uint64_t rows_per_dispatch = items_per_window(device, "rmsnorm", row_bytes);
  const vk::Binding weight_binding =
      data_window(device, "rmsnorm", weight.buffer, 0, weight_bytes(weight.type, dim), false).binding;
  for (uint64_t first = 0; first < rows; first += rows_per_dispatch) {
    const uint64_t n = std::min<uint64_t>(rows_per_dispatch, rows - first);
    const DataWindow xw = data_window(device, "rmsnorm", x, first * row_bytes, (first + n) * row_bytes, false);
    const DataWindow yw = data_window(device, "rmsnorm", y, first * row_bytes, (first + n) * row_bytes, true);
    const struct {
      uint32_t rows, dim, x_first, y_first;
      float eps;
    } push{uint32_t(n), dim, xw.first_word, yw.first_word, eps};
    const Grid grid = grid_1d(device, n);
    rec.dispatch(pipe, {xw.binding, weight_binding, yw.binding}, push, grid.x, grid.y);
  }
}

}  // namespace inferno::kernels

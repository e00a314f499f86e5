#include "kernels/elementwise.hpp"

#include <algorithm>
#include <string>

#include "kernels/data_window.hpp"
#include "kernels/shader_registry.hpp"
#include "util/error.hpp"

namespace inferno::kernels {

namespace {

constexpr uint32_t kElementGroup = 256;

// Splits `count` floats into pieces that fit one binding window and calls f(first, n) for each.
template <class F>
void for_each_piece(vk::Device& device, const char* kernel, uint64_t count, F&& f) {
  const uint64_t per_piece = items_per_window(device, kernel, 4);
  for (uint64_t first = 0; first < count; first += per_piece) f(first, std::min(per_piece, count - first));
}

}  // namespace

void record_add(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, const vk::Buffer& y, uint64_t count) {
  const auto& pipe = pipeline(device, "add_f32", {kElementGroup});
  for_each_piece(device, "add", count, [&](uint64_t first, uint64_t n) {
    const DataWindow xw = data_window(device, "add", x, first * 4, (first + n) * 4, false);
    const DataWindow yw = data_window(device, "add", y, first * 4, (first + n) * 4, true);
    const struct { uint32_t count, x_first, y_first; } push{uint32_t(n), xw.first_word, yw.first_word};
    const Grid grid = grid_1d(device, groups_for(n, kElementGroup));
    rec.dispatch(pipe, {xw.binding, yw.binding}, push, grid.x, grid.y);
  });
}

void record_silu_mul(vk::Device& device, vk::Recorder& rec, const vk::Buffer& gate_up, const vk::Buffer& out,
                     uint32_t rows, uint32_t dim) {
  if (&gate_up == &out) throw Error("silu_mul: gate_up and out must be different buffers");
  const auto& pipe = pipeline(device, "silu_mul_f32", {kElementGroup});
  // Pieces of whole rows, so that each row's gate and up lie in one window.
  const uint64_t per_piece = items_per_window(device, "silu_mul", uint64_t(dim) * 8);
  for (uint64_t first = 0; first < rows; first += per_piece) {
    const uint64_t n = std::min<uint64_t>(per_piece, rows - first);
    const DataWindow iw = data_window(device, "silu_mul", gate_up, first * dim * 8, (first + n) * dim * 8, false);
    const DataWindow ow = data_window(device, "silu_mul", out, first * dim * 4, (first + n) * dim * 4, true);
    const struct {
      uint32_t rows, dim, in_first, out_first;
    } push{uint32_t(n), dim, iw.first_word, ow.first_word};
    const Grid grid = grid_1d(device, groups_for(n * dim, kElementGroup));
    rec.dispatch(pipe, {iw.binding, ow.binding}, push, grid.x, grid.y);
  }
}

void record_softmax(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, uint32_t rows, uint32_t dim) {
  if (rows == 0 || dim == 0) return;
  // One workgroup per row: wide rows (vocabularies) get more invocations for the reductions.
  const uint32_t group = std::min<uint32_t>(dim >= 1024 ? 256 : 64, device.caps().max_workgroup_invocations);
  const auto& pipe = pipeline(device, "softmax_f32", {group});
  const uint64_t row_bytes = uint64_t(dim) * 4;
  const uint64_t rows_per_dispatch = items_per_window(device, "softmax", row_bytes);
  for (uint64_t first = 0; first < rows; first += rows_per_dispatch) {
    const uint64_t n = std::min<uint64_t>(rows_per_dispatch, rows - first);
    const DataWindow xw = data_window(device, "softmax", x, first * row_bytes, (first + n) * row_bytes, true);
    const struct { uint32_t rows, dim, x_first; } push{uint32_t(n), dim, xw.first_word};
    const Grid grid = grid_1d(device, n);
    rec.dispatch(pipe, {xw.binding}, push, grid.x, grid.y);
  }
}

}  // namespace inferno::kernels

#include "kernels/rope.hpp"

#include <algorithm>
#include <string>

#include "kernels/data_window.hpp"
#include "kernels/shader_registry.hpp"

namespace inferno::kernels {

void record_rope(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, uint32_t rows, uint32_t heads,
                 uint32_t head_dim, uint32_t row_stride, const vk::Buffer& positions, const vk::Buffer& cos_sin_table,
                 uint32_t table_positions) {
  if (head_dim == 0 || head_dim % 2 != 0 || head_dim > 256)
    throw Error("rope: head_dim " + std::to_string(head_dim) + " is not an even number from 2 to 256");
  const uint64_t width = uint64_t(heads) * head_dim;
  if (row_stride == 0) row_stride = uint32_t(width);
  if (row_stride < width)
    throw Error("rope: row stride " + std::to_string(row_stride) +
                " is shorter than heads × head_dim = " + std::to_string(width));
  if (rows == 0 || heads == 0) return;
  if (table_positions == 0) throw Error("rope: the cos/sin table '" + cos_sin_table.name() + "' is empty");
  const uint32_t half_dim = head_dim / 2;
  const uint64_t pairs_per_row = uint64_t(heads) * half_dim;

  constexpr uint32_t kGroup = 64;
  const auto& pipe = pipeline(device, "rope_f32", {kGroup});
  const DataWindow table =
      data_window(device, "rope", cos_sin_table, 0, uint64_t(table_positions) * half_dim * 2 * 4, false);
  const uint64_t row_bytes = uint64_t(row_stride) * 4;
  const uint64_t rows_per_dispatch = items_per_window(device, "rope", row_bytes);
  for (uint64_t first = 0; first < rows; first += rows_per_dispatch) {
    const uint64_t n = std::min<uint64_t>(rows_per_dispatch, rows - first);
    // The last row needs only its heads, not the whole stride.
    const DataWindow xw =
        data_window(device, "rope", x, first * row_bytes, ((first + n - 1) * row_stride + width) * 4, true);
    const DataWindow pw = data_window(device, "rope", positions, first * 4, (first + n) * 4, false);
    const struct {
      uint32_t rows, heads, head_dim, row_stride, x_first, positions_first, table_positions;
    } push{uint32_t(n), heads, head_dim, row_stride, xw.first_word, pw.first_word, table_positions};
    const Grid grid = grid_1d(device, groups_for(n * pairs_per_row, kGroup));
    rec.dispatch(pipe, {xw.binding, pw.binding, table.binding}, push, grid.x, grid.y);
  }
}

}  // namespace inferno::kernels

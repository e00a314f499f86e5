#include "kernels/embedding.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/shader_registry.hpp"
#include "util/error.hpp"

namespace inferno::kernels {

void record_embedding(vk::Device& device, vk::Recorder& rec, const DeviceMatrix& table, const vk::Buffer& ids,
                      uint32_t m, const vk::Buffer& out) {
  record_embedding(device, rec, table, ids, m, out, 0);
}

void record_embedding(vk::Device& device, vk::Recorder& rec, const DeviceMatrix& table, const vk::Buffer& ids,
                      uint32_t m, const vk::Buffer& out, uint64_t max_binding_bytes) {
  const std::string what = "embedding '" + table.name + "'";
  if (m == 0) return;
  const uint64_t hidden = table.cols;
  if (ids.bytes() < uint64_t(m) * 4)
    throw Error(what + ": ids buffer '" + ids.name() + "' holds " + std::to_string(ids.bytes()) + " bytes, " +
                std::to_string(m) + " ids need " + std::to_string(uint64_t(m) * 4));
  if (out.bytes() < uint64_t(m) * hidden * 4)
    throw Error(what + ": output buffer '" + out.name() + "' holds " + std::to_string(out.bytes()) + " bytes, " +
                std::to_string(m) + " rows need " + std::to_string(uint64_t(m) * hidden * 4));

  check_row_scales(table, what);
  constexpr uint32_t kThreads = 256;
  const auto& p = pipeline(device, std::string("embedding_") + weight_type_name(table.type), {kThreads});
  const uint32_t block = std::min({m, rows_per_binding(device, max_binding_bytes, hidden * 4, hidden * 4, what + " output"),
                                   rows_per_binding(device, max_binding_bytes, 4, 4, what + " ids")});
  for (uint32_t m0 = 0; m0 < m; m0 += block) {
    const uint32_t mb = std::min(block, m - m0);
    const BindingWindow iw = binding_window(device, ids, uint64_t(m0) * 4, uint64_t(m0 + mb) * 4, 4);
    const BindingWindow ow = binding_window(device, out, m0 * hidden * 4, (m0 + mb) * hidden * 4, 4);
    for (const WeightChunk& chunk : table.chunks) {
      struct {
        uint32_t hidden, first_row, rows, m, ids_offset, out_offset, scale_offset, scale_dtype;
      } push{uint32_t(hidden), chunk.first_row, chunk.rows, mb, iw.first_element, ow.first_element, 0, 0};
      std::vector<vk::Binding> bindings = {chunk.binding(), vk::in(ids, iw.offset, iw.range),
                                           vk::out(out, ow.offset, ow.range)};
      if (table.type == WeightType::I8) {
        bindings.push_back(row_scale_binding(device, table, chunk, push.scale_offset));
        push.scale_dtype = dtype_code(table.row_scales->type);
      }
      const Grid g = grid_1d(device, groups_for(uint64_t(mb) * hidden, kThreads));
      rec.dispatch(p, bindings, &push, sizeof(push), g.x, g.y);
    }
  }
}

}  // namespace inferno::kernels

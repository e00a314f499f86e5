#include "kernels/fill.hpp"

#include "kernels/shader_registry.hpp"

namespace inferno::kernels {

void record_fill(vk::Device& device, vk::Recorder& rec, const vk::Buffer& buffer, uint64_t offset_floats, uint64_t count,
                 float value) {
  constexpr uint32_t kGroup = 256;
  const auto& p = pipeline(device, "fill_f32", {kGroup});
  // Bind from an aligned offset at or before the first element; the shader skips the rest.
  const uint64_t align = device.caps().min_storage_offset_alignment;
  const uint64_t base = (offset_floats * 4) / align * align;
  const struct {
    uint32_t first, count;
    float value;
  } push{uint32_t((offset_floats * 4 - base) / 4), uint32_t(count), value};
  const Grid g = grid_1d(device, groups_for(count, kGroup));
  rec.dispatch(p, {vk::out(buffer, base, (offset_floats + count) * 4 - base)}, push, g.x, g.y);
}

}  // namespace inferno::kernels

#include "model/projection.hpp"

#include <optional>

#include "kernels/int8.hpp"
#include "kernels/linear.hpp"
#include "util/error.hpp"

namespace inferno::model {

void record_projection(vk::Device& d, vk::Recorder& rec, const ProjectionArgs& a) {
  std::optional<float> quantized_with;
  uint32_t column = 0;
  for (const Linear& part : a.parts) {
    const kernels::DeviceVector* bias = part.bias ? &*part.bias : nullptr;
    if (!part.int8_activations) {
      kernels::record_linear(d, rec, {.weight = &part.weight, .bias = bias, .x = a.x, .y = a.y, .m = a.m,
                                      .y_stride = a.y_stride, .y_column = column, .accumulate = a.accumulate,
                                      .norm = a.norm, .norm_eps = a.norm_eps});
    } else {
      if (!a.xq || !a.xscale) throw Error("projection '" + part.weight.name + "': w8a8 needs int8 activation buffers");
      if (quantized_with != part.input_scale) {
        kernels::record_quantize_rows(d, rec, *a.x, *a.xq, *a.xscale, a.m, part.weight.cols, part.input_scale);
        quantized_with = part.input_scale;
      }
      kernels::record_linear_w8a8(d, rec, {.weight = &part.weight, .bias = bias, .xq = a.xq, .xscale = a.xscale,
                                           .y = a.y, .m = a.m, .y_stride = a.y_stride, .y_column = column,
                                           .accumulate = a.accumulate});
    }
    column += part.weight.rows;
  }
}

}  // namespace inferno::model

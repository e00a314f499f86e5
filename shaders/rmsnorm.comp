#version 450
// RMSNorm as LlamaRMSNorm computes it in f32: variance = mean(x²), y = w · (x · inversesqrt(variance + eps)).
// One workgroup per row; the sum of squares is reduced in shared memory (the workgroup size must be a power of two).
// The weight is read in its own dtype: -DWEIGHT_F32, -DWEIGHT_F16 or -DWEIGHT_BF16 (16-bit values packed in words).
// x and y may be the same buffer: every invocation writes only the elements it read itself.
#extension GL_GOOGLE_include_directive : require
#include "dtype_load.glsl"

layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Weight { uint weight_words[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Push {
  uint rows, dim;
  uint x_first, y_first;  // where row 0 starts in the x and y bindings, in floats
  float eps;
} pc;

shared float partial[gl_WorkGroupSize.x];

float weight_at(uint i) {
#if defined(WEIGHT_F32)
  return uintBitsToFloat(weight_words[i]);
#elif defined(WEIGHT_F16)
  return f16_from_word(weight_words[i >> 1], i & 1u);
#elif defined(WEIGHT_BF16)
  return bf16_from_word(weight_words[i >> 1], i & 1u);
#else
#error "define WEIGHT_F32, WEIGHT_F16 or WEIGHT_BF16"
#endif
}

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (row >= pc.rows) return;  // the whole workgroup leaves together
  const uint tid = gl_LocalInvocationID.x, size = gl_WorkGroupSize.x;
  const uint xbase = pc.x_first + row * pc.dim, ybase = pc.y_first + row * pc.dim;

  float sum = 0.0;
  for (uint i = tid; i < pc.dim; i += size) sum += x[xbase + i] * x[xbase + i];
  partial[tid] = sum;
  barrier();
  for (uint stride = size / 2u; stride > 0u; stride >>= 1) {
    if (tid < stride) partial[tid] += partial[tid + stride];
    barrier();
  }
  const float inv_rms = inversesqrt(partial[0] / float(pc.dim) + pc.eps);
  for (uint i = tid; i < pc.dim; i += size) y[ybase + i] = weight_at(i) * (x[xbase + i] * inv_rms);
}

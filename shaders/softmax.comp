#version 450
// In-place softmax over each f32 row: m = max(x), y = exp(x − m) / Σ exp(x − m). One workgroup per row, shared-memory
// reductions (the workgroup size must be a power of two). Entries of −inf give exactly 0. A row that is entirely −inf
// has no defined softmax (PyTorch gives NaN); here it becomes all zeros, so that no NaN flows on.
#extension GL_GOOGLE_include_directive : require
#include "dtype_load.glsl"

layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(push_constant) uniform Push {
  uint rows, dim;
  uint x_first;  // where row 0 starts in the binding, in floats
} pc;

shared float partial[gl_WorkGroupSize.x];

// exp(v − row_max), exactly 0 for v = −inf without relying on exp(−inf).
float shifted_exp(float v, float row_max) { return v == negative_infinity() ? 0.0 : exp(v - row_max); }

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (row >= pc.rows) return;  // the whole workgroup leaves together
  const uint tid = gl_LocalInvocationID.x, size = gl_WorkGroupSize.x;
  const uint base = pc.x_first + row * pc.dim;

  float local_max = negative_infinity();
  for (uint i = tid; i < pc.dim; i += size) local_max = max(local_max, x[base + i]);
  partial[tid] = local_max;
  barrier();
  for (uint stride = size / 2u; stride > 0u; stride >>= 1) {
    if (tid < stride) partial[tid] = max(partial[tid], partial[tid + stride]);
    barrier();
  }
  const float row_max = partial[0];
  barrier();  // everyone has read the maximum before the sums overwrite it

  if (row_max == negative_infinity()) {
    for (uint i = tid; i < pc.dim; i += size) x[base + i] = 0.0;
    return;  // uniform: every invocation saw the same row_max
  }
  float sum = 0.0;
  for (uint i = tid; i < pc.dim; i += size) sum += shifted_exp(x[base + i], row_max);
  partial[tid] = sum;
  barrier();
  for (uint stride = size / 2u; stride > 0u; stride >>= 1) {
    if (tid < stride) partial[tid] += partial[tid + stride];
    barrier();
  }
  const float inv_sum = 1.0 / partial[0];
  for (uint i = tid; i < pc.dim; i += size) x[base + i] = shifted_exp(x[base + i], row_max) * inv_sum;
}

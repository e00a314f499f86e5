#version 450
// y = (xq · Wqᵀ) · sx · sw (+ b) for a few activation rows (decode): each workgroup computes one output for all NUM_M
// rows of xq, threads striding over the words of k (4 int8 a word, adjacent threads reading adjacent words); the
// int32 partial sums meet in shared memory.
#extension GL_GOOGLE_include_directive : require
#if defined(INT_DOT)
#extension GL_EXT_integer_dot_product : require
#endif

layout(local_size_x_id = 0) in;                // threads per workgroup
layout(constant_id = 1) const uint NUM_M = 1;  // activation rows: the dispatch's m

#include "w8a8_common.glsl"

shared int partial[NUM_M * gl_WorkGroupSize.x];

void main() {
  const uint threads = gl_WorkGroupSize.x;
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (row >= pc.n) return;  // the whole workgroup leaves together, before any barrier
  const uint t = gl_LocalInvocationID.x;

  int acc[NUM_M];
  for (uint m = 0u; m < NUM_M; ++m) acc[m] = 0;
  const uint base = row * pc.k_words;
  for (uint j = t; j < pc.k_words; j += threads) {
    const int w = weight_words[base + j];
#if defined(INT_DOT)
    for (uint m = 0u; m < NUM_M; ++m) acc[m] = dotPacked4x8AccSatEXT(w, xq[pc.xq_offset + m * pc.xq_stride + j], acc[m]);
#else
    const ivec4 wb = signed_bytes(w);
    for (uint m = 0u; m < NUM_M; ++m) acc[m] += dot_bytes(wb, signed_bytes(xq[pc.xq_offset + m * pc.xq_stride + j]));
#endif
  }

  for (uint m = 0u; m < NUM_M; ++m) partial[m * threads + t] = acc[m];
  barrier();
  for (uint m = t; m < NUM_M; m += threads) {
    int sum = 0;
    for (uint j = 0u; j < threads; ++j) sum += partial[m * threads + j];
    store_w8a8(m, row, sum);
  }
}

#version 450
// y = x · Wᵀ (+ b) for a few activation rows (decode): each workgroup computes ROWS outputs for all NUM_M rows of x,
// so every weight row is read once however many rows x has. Threads stride over k four elements at a time (adjacent
// threads reading adjacent words), or over the units of block formats (dequant.glsl); the partial sums meet in shared
// memory, portable to any subgroup size.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;                // threads per workgroup
layout(constant_id = 1) const uint ROWS = 1;   // weight rows (outputs) per workgroup
layout(constant_id = 2) const uint NUM_M = 1;  // activation rows: the dispatch's m

#include "linear_common.glsl"

shared float partial[ROWS * NUM_M * gl_WorkGroupSize.x];

void main() {
  const uint threads = gl_WorkGroupSize.x;
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint first_row = group * ROWS;
  if (first_row >= pc.n) return;  // the whole workgroup leaves together, before any barrier
  const uint t = gl_LocalInvocationID.x;

  float acc[ROWS * NUM_M];
  for (uint i = 0u; i < ROWS * NUM_M; ++i) acc[i] = 0.0;

  for (uint r = 0u; r < ROWS; ++r) {
    const uint row = first_row + r;
    if (row >= pc.n) break;
#if WEIGHT_QUANT
    // Block formats: threads stride over units (8 elements as two runs of 4, or 4 for int8), adjacent threads taking
    // adjacent units of a block, each dequantized in registers once for all NUM_M rows of x.
    const uint blocks_per_row = pc.k / QK;
    const uint units = blocks_per_row * QUNITS_PER_BLOCK;
    for (uint u = t; u < units; u += threads) {
      const uint block = u / QUNITS_PER_BLOCK;
      vec4 lo, hi;
      uvec2 at;
      dequant_unit((row * blocks_per_row + block) * QBYTES, u % QUNITS_PER_BLOCK, lo, hi, at);
      for (uint m = 0u; m < NUM_M; ++m) {
        const uint xa = pc.x_offset + m * pc.x_stride + block * QK;
        const uint xl = xa + at.x;
        float sum = dot(lo, vec4(x[xl], x[xl + 1u], x[xl + 2u], x[xl + 3u]));
#if QUNIT_HAS_HI
        const uint xh = xa + at.y;
        sum += dot(hi, vec4(x[xh], x[xh + 1u], x[xh + 2u], x[xh + 3u]));
#endif
        acc[r * NUM_M + m] += sum;
      }
    }
#else
    const uint base = row * pc.k;  // first element of the row within the chunk
    // A row of odd length may begin in the high half of a word: its first element is then taken alone, so that the
    // quads (two words each for 16-bit dtypes) start word-aligned. Elements before and after the quads go one by one.
#if WEIGHT_IS_16BIT
    const uint lead = base & 1u;
#else
    const uint lead = 0u;
#endif
    const uint quads_end = lead + (pc.k - lead) / 4u * 4u;
    for (uint q = lead + 4u * t; q < quads_end; q += 4u * threads) {
      const vec4 w = load_weight4(base + q);
      for (uint m = 0u; m < NUM_M; ++m) {
        const uint xa = pc.x_offset + m * pc.x_stride + q;
        acc[r * NUM_M + m] += dot(w, vec4(x[xa], x[xa + 1u], x[xa + 2u], x[xa + 3u]));
      }
    }
    for (uint j = t; j < lead + pc.k - quads_end; j += threads) {
      const uint q = j < lead ? j : quads_end + j - lead;
      const float w = load_weight(base + q);
      for (uint m = 0u; m < NUM_M; ++m) acc[r * NUM_M + m] += w * x[pc.x_offset + m * pc.x_stride + q];
    }
#endif
  }

  // One barrier, then each sum is finished by one thread: few barriers keep the kernel quick to compile on CPU
  // drivers (lavapipe), and the serial sums are short next to the k loop.
  for (uint i = 0u; i < ROWS * NUM_M; ++i) partial[i * threads + t] = acc[i];
  barrier();
  for (uint i = t; i < ROWS * NUM_M; i += threads) {
    const uint row = first_row + i / NUM_M;
    if (row >= pc.n) continue;
    float sum = 0.0;
    for (uint j = 0u; j < threads; ++j) sum += partial[i * threads + j];
    store_output(i % NUM_M, row, sum);
  }
}

#version 450
// y = x · Wᵀ (+ b) for several activation rows, laid out for CPU drivers (lavapipe), which run a subgroup's invocations
// as the lanes of one SIMD register and a workgroup (here one subgroup) on one thread. There every load inside a loop
// costs one scalar load per lane (about 16 instructions a lane with its bounds check), whether or not the lanes read
// the same address, while arithmetic on all lanes is one instruction. So the kernel loads as few words as it can per
// multiply-add:
//   - each thread takes PER_LANE rows of W (n = n0 + lane + threads · j), 8 elements at a time (a 16-byte run of
//     F16/BF16, two of F32, a unit of a block format), converted to f32 once for all TILE_M rows of x;
//   - every thread takes the same TILE_M rows of x: for each run of 8 elements, lane l loads element l of it (one
//     load for all lanes) and subgroupBroadcast hands each element to every lane (one register extract);
//   - its TILE_M × PER_LANE sums stay in registers, each updated once per 8 elements with a dot product (a chain of
//     multiply-adds within the unit, one loop-carried add: each loop-carried update costs a masked blend there).
// Rows of x past m repeat the last one and rows of W past n the last one (their sums are never stored), which keeps
// every load in bounds. Float rows that are not whole runs of 8 (or x rows off 16 bytes) take an element-by-element
// loop. The workgroup must be one whole subgroup of at least 8 invocations (the host checks it); correct on any
// device that runs it so, fast on CPU drivers.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_ballot : require

layout(local_size_x_id = 0) in;                  // threads per workgroup: the subgroup size (8 on AVX2 lavapipe)
layout(constant_id = 1) const uint TILE_M = 8;   // rows of x per workgroup
layout(constant_id = 2) const uint PER_LANE = 2; // rows of W per thread
// Float weights whose rows are whole 16-byte runs of 8 elements (k a multiple of 8, 32 bytes for F32) and x rows
// that start on 16 bytes (block formats and int8: x alone); the host checks the alignment.
layout(constant_id = 3) const bool VEC16 = false;

#include "linear_common.glsl"

layout(std430, binding = 0) readonly buffer Weights16 { uvec4 weight_vec16[]; };

// Elements run.x .. run.x+3 and run.y .. run.y+3 of row `row` of x, as two vec4s the same in every lane: lane l
// (l < 8) loads one of the 8, and each is broadcast from its lane.
void x_runs(uint row, uvec2 run, out vec4 lo, out vec4 hi) {
  const uint l = gl_SubgroupInvocationID & 7u;
  const float mine = x[pc.x_offset + row * pc.x_stride + (l < 4u ? run.x + l : run.y + l - 4u)];
  lo = vec4(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u),
            subgroupBroadcast(mine, 3u));
  hi = vec4(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u),
            subgroupBroadcast(mine, 7u));
}

void main() {
  const uint threads = gl_WorkGroupSize.x, lane = gl_LocalInvocationID.x;
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  // Consecutive workgroups take consecutive row blocks of x against the same rows of W, which stay in cache.
  const uint tiles_m = (pc.m + TILE_M - 1u) / TILE_M;
  const uint m0 = (group % tiles_m) * TILE_M, n0 = (group / tiles_m) * (threads * PER_LANE);
  // No early return for the workgroups past the end (grid_1d may add some): a return makes every later load
  // divergent to the compiler of CPU drivers; their rows clamp to the last one and they store nothing.

  uint xrow[TILE_M];
  for (uint i = 0u; i < TILE_M; ++i) xrow[i] = min(m0 + i, pc.m - 1u);
  uint wrow[PER_LANE];
  for (uint j = 0u; j < PER_LANE; ++j) wrow[j] = min(n0 + lane + threads * j, pc.n - 1u);
  float acc[TILE_M * PER_LANE];
  for (uint a = 0u; a < TILE_M * PER_LANE; ++a) acc[a] = 0.0;

#if WEIGHT_QUANT
  // Block formats and int8: a unit is 8 elements as two runs of 4 (4 as one run for int8), dequantized in registers.
  const uint blocks_per_row = pc.k / QK;
  const uint units = blocks_per_row * QUNITS_PER_BLOCK;
  for (uint u = 0u; u < units; ++u) {
    const uint block = u / QUNITS_PER_BLOCK, unit = u % QUNITS_PER_BLOCK;
    vec4 lo[PER_LANE], hi[PER_LANE];
    uvec2 at;
    for (uint j = 0u; j < PER_LANE; ++j) dequant_unit((wrow[j] * blocks_per_row + block) * QBYTES, unit, lo[j], hi[j], at);
    for (uint i = 0u; i < TILE_M; ++i) {
      vec4 xa, xb;
#if QUNIT_HAS_HI
      x_runs(xrow[i], block * QK + at, xa, xb);
      for (uint j = 0u; j < PER_LANE; ++j) acc[i * PER_LANE + j] += dot(lo[j], xa) + dot(hi[j], xb);
#else
      x_runs(xrow[i], uvec2(block * QK + at.x, block * QK + at.x), xa, xb);  // int8: one run of 4
      for (uint j = 0u; j < PER_LANE; ++j) acc[i * PER_LANE + j] += dot(lo[j], xa);
#endif
    }
  }
#else
  if (VEC16) {
    const uint units = pc.k / 8u;  // runs of 8 elements
#if WEIGHT_IS_16BIT
    const uint words_per_unit = 1u;  // 16-byte words
#else
    const uint words_per_unit = 2u;
#endif
    for (uint u = 0u; u < units; ++u) {
      vec4 lo[PER_LANE], hi[PER_LANE];
      for (uint j = 0u; j < PER_LANE; ++j) {
        const uint at = (wrow[j] * units + u) * words_per_unit;
        const uvec4 w = weight_vec16[at];
#if defined(WEIGHT_BF16)
        lo[j] = vec4(unpack_bf16x2(w.x), unpack_bf16x2(w.y));
        hi[j] = vec4(unpack_bf16x2(w.z), unpack_bf16x2(w.w));
#elif defined(WEIGHT_F16)
        lo[j] = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
        hi[j] = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
#else
        lo[j] = uintBitsToFloat(w);
        hi[j] = uintBitsToFloat(weight_vec16[at + 1u]);
#endif
      }
      for (uint i = 0u; i < TILE_M; ++i) {
        vec4 xa, xb;
        x_runs(xrow[i], uvec2(8u * u, 8u * u + 4u), xa, xb);
        for (uint j = 0u; j < PER_LANE; ++j) acc[i * PER_LANE + j] += dot(lo[j], xa) + dot(hi[j], xb);
      }
    }
  } else {
    // Rows that are not whole 16-byte units (odd k, or x rows off 16 bytes): element by element.
    for (uint k = 0u; k < pc.k; ++k) {
      float w[PER_LANE];
      for (uint j = 0u; j < PER_LANE; ++j) w[j] = load_weight(wrow[j] * pc.k + k);
      for (uint i = 0u; i < TILE_M; ++i) {
        const float xv = x[pc.x_offset + xrow[i] * pc.x_stride + k];
        for (uint j = 0u; j < PER_LANE; ++j) acc[i * PER_LANE + j] += xv * w[j];
      }
    }
  }
#endif

  for (uint i = 0u; i < TILE_M; ++i) {
    const uint m = m0 + i;
    if (m >= pc.m) break;
    for (uint j = 0u; j < PER_LANE; ++j) {
      const uint n = n0 + lane + threads * j;
      if (n < pc.n) store_output(m, n, acc[i * PER_LANE + j]);
    }
  }
}

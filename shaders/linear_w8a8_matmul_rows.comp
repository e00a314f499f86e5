#version 450
// y = (xq · Wqᵀ) · sx · sw (+ b) for several activation rows, laid out for CPU drivers the way
// linear_matmul_rows.comp is (read its header for why): a workgroup is one subgroup; each thread takes PER_LANE rows
// of W (n = n0 + lane + threads · j) and the same TILE_M rows of xq as every other thread, keeping TILE_M × PER_LANE
// int32 sums in registers. A unit is 16 int8 values of k: one 16-byte load of W a row, and of xq one word loaded by
// each of four lanes and handed to the others by subgroupBroadcast, so each weight and activation byte is unpacked
// once per unit for all the sums it feeds. The sums are exact (the host bounds k), so this kernel gives the bits of
// the other w8a8 kernels. Rows of xq past m repeat the last one and rows of W past n the last one (never stored),
// which keeps every load in bounds; rows that are not whole units take a word-by-word loop.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_ballot : require
#if defined(INT_DOT)
#extension GL_EXT_integer_dot_product : require
#endif

layout(local_size_x_id = 0) in;                  // threads per workgroup: the subgroup size
layout(constant_id = 1) const uint TILE_M = 8;   // rows of xq per workgroup
layout(constant_id = 2) const uint PER_LANE = 2; // rows of W per thread
layout(constant_id = 3) const bool VEC16 = false;  // rows of W are whole 16-byte units (k_words a multiple of 4)

#include "w8a8_common.glsl"

layout(std430, binding = 0) readonly buffer WeightUnits { ivec4 weight_units[]; };

// Words w .. w+3 of row `row` of xq, the same in every lane: lane l loads word l & 3, each is broadcast from its lane.
ivec4 x_unit(uint row, uint w) {
  const int mine = xq[pc.xq_offset + row * pc.xq_stride + w + (gl_SubgroupInvocationID & 3u)];
  return ivec4(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u),
               subgroupBroadcast(mine, 3u));
}

#if defined(INT_DOT)
int dot_words(int a, int b, int acc) { return dotPacked4x8AccSatEXT(a, b, acc); }
#else
int dot_words(int a, int b, int acc) { return acc + dot_bytes(signed_bytes(a), signed_bytes(b)); }
#endif

void main() {
  const uint threads = gl_WorkGroupSize.x, lane = gl_LocalInvocationID.x;
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  // Consecutive workgroups take consecutive row blocks of xq against the same rows of W, which stay in cache.
  const uint tiles_m = (pc.m + TILE_M - 1u) / TILE_M;
  const uint m0 = (group % tiles_m) * TILE_M, n0 = (group / tiles_m) * (threads * PER_LANE);
  // No early return past the end (see linear_matmul_rows.comp): those workgroups clamp their rows and store nothing.

  uint xrow[TILE_M];
  for (uint i = 0u; i < TILE_M; ++i) xrow[i] = min(m0 + i, pc.m - 1u);
  uint wrow[PER_LANE];
  for (uint j = 0u; j < PER_LANE; ++j) wrow[j] = min(n0 + lane + threads * j, pc.n - 1u);
  int acc[TILE_M * PER_LANE];
  for (uint a = 0u; a < TILE_M * PER_LANE; ++a) acc[a] = 0;

  if (VEC16) {
    const uint units = pc.k_words / 4u;
    for (uint u = 0u; u < units; ++u) {
      ivec4 w[PER_LANE];
      for (uint j = 0u; j < PER_LANE; ++j) w[j] = weight_units[wrow[j] * units + u];
      for (uint i = 0u; i < TILE_M; ++i) {
        const ivec4 xv = x_unit(xrow[i], 4u * u);
#if defined(INT_DOT)
        for (uint j = 0u; j < PER_LANE; ++j) {
          int s = acc[i * PER_LANE + j];
          s = dot_words(xv.x, w[j].x, s);
          s = dot_words(xv.y, w[j].y, s);
          s = dot_words(xv.z, w[j].z, s);
          acc[i * PER_LANE + j] = dot_words(xv.w, w[j].w, s);
        }
#else
        // Unpacked once for every row of W the thread holds.
        const ivec4 x0 = signed_bytes(xv.x), x1 = signed_bytes(xv.y), x2 = signed_bytes(xv.z), x3 = signed_bytes(xv.w);
        for (uint j = 0u; j < PER_LANE; ++j)
          acc[i * PER_LANE + j] += dot_bytes(x0, signed_bytes(w[j].x)) + dot_bytes(x1, signed_bytes(w[j].y)) +
                                   dot_bytes(x2, signed_bytes(w[j].z)) + dot_bytes(x3, signed_bytes(w[j].w));
#endif
      }
    }
  } else {
    for (uint kw = 0u; kw < pc.k_words; ++kw) {
      int w[PER_LANE];
      for (uint j = 0u; j < PER_LANE; ++j) w[j] = weight_words[wrow[j] * pc.k_words + kw];
      for (uint i = 0u; i < TILE_M; ++i) {
        const int xv = xq[pc.xq_offset + xrow[i] * pc.xq_stride + kw];
        for (uint j = 0u; j < PER_LANE; ++j) acc[i * PER_LANE + j] = dot_words(xv, w[j], acc[i * PER_LANE + j]);
      }
    }
  }

  for (uint i = 0u; i < TILE_M; ++i) {
    const uint m = m0 + i;
    if (m >= pc.m) break;
    for (uint j = 0u; j < PER_LANE; ++j) {
      const uint n = n0 + lane + threads * j;
      if (n < pc.n) store_w8a8(m, n, acc[i * PER_LANE + j]);
    }
  }
}

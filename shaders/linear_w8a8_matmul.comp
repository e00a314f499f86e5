#version 450
// y = (xq · Wqᵀ) · sx · sw (+ b) for many activation rows (prefill): each workgroup of 8×8 threads computes a 64×64
// tile of y, staging 8-word (32 k) slices of both int8 operands in shared memory; each thread keeps an 8×8 block of
// int32 sums strided by 8 (the layout of linear_matmul.comp). Ragged edges are zero-padded on load, skipped on store.
#extension GL_GOOGLE_include_directive : require
#if defined(INT_DOT)
#extension GL_EXT_integer_dot_product : require
#endif

#define TILE 64      // rows of xq and of W per workgroup
#define DEPTH 8      // words of k per shared-memory slice
#define SIDE 8       // threads per side of the workgroup
#define PER (TILE / SIDE)
layout(local_size_x = SIDE * SIDE) in;

#include "w8a8_common.glsl"

shared int x_tile[DEPTH][TILE + 1];
shared int w_tile[DEPTH][TILE + 1];

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint tiles_n = (pc.n + TILE - 1u) / TILE;
  const uint m0 = (group / tiles_n) * TILE, n0 = (group % tiles_n) * TILE;
  if (m0 >= pc.m) return;  // the whole workgroup leaves together, before any barrier
  const uint t = gl_LocalInvocationID.x;
  const uint tx = t % SIDE, ty = t / SIDE;

  int acc[PER][PER];
  for (uint i = 0u; i < PER; ++i)
    for (uint j = 0u; j < PER; ++j) acc[i][j] = 0;

  for (uint k0 = 0u; k0 < pc.k_words; k0 += DEPTH) {
    for (uint e = t; e < TILE * DEPTH; e += SIDE * SIDE) {
      const uint r = e / DEPTH, c = e % DEPTH;
      const uint k = k0 + c;
      const uint m = m0 + r, n = n0 + r;
      x_tile[c][r] = (m < pc.m && k < pc.k_words) ? xq[pc.xq_offset + m * pc.xq_stride + k] : 0;
      w_tile[c][r] = (n < pc.n && k < pc.k_words) ? weight_words[n * pc.k_words + k] : 0;
    }
    barrier();
    for (uint kk = 0u; kk < DEPTH; ++kk) {
#if defined(INT_DOT)
      int xv[PER], wv[PER];
      for (uint i = 0u; i < PER; ++i) xv[i] = x_tile[kk][ty + SIDE * i];
      for (uint j = 0u; j < PER; ++j) wv[j] = w_tile[kk][tx + SIDE * j];
      for (uint i = 0u; i < PER; ++i)
        for (uint j = 0u; j < PER; ++j) acc[i][j] = dotPacked4x8AccSatEXT(xv[i], wv[j], acc[i][j]);
#else
      ivec4 xv[PER], wv[PER];
      for (uint i = 0u; i < PER; ++i) xv[i] = signed_bytes(x_tile[kk][ty + SIDE * i]);
      for (uint j = 0u; j < PER; ++j) wv[j] = signed_bytes(w_tile[kk][tx + SIDE * j]);
      for (uint i = 0u; i < PER; ++i)
        for (uint j = 0u; j < PER; ++j) acc[i][j] += dot_bytes(xv[i], wv[j]);
#endif
    }
    barrier();
  }

  for (uint i = 0u; i < PER; ++i) {
    const uint m = m0 + ty + SIDE * i;
    if (m >= pc.m) continue;
    for (uint j = 0u; j < PER; ++j) {
      const uint n = n0 + tx + SIDE * j;
      if (n < pc.n) store_w8a8(m, n, acc[i][j]);
    }
  }
}

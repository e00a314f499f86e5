#version 450
// y = x · Wᵀ (+ b) for many activation rows (prefill): each workgroup of 8×8 threads computes a 64×64 tile of y
// (64 rows of x against 64 rows of W), staging 16-deep slices of both in shared memory. Each thread computes an 8×8
// block strided by 8, so that its shared-memory reads are broadcasts (along x) and consecutive (along W), and its
// stores to y consecutive across threads. 64 sums a thread (rather than 16 with 256 threads) halve the shared-memory
// reads per multiply-add, which is what CPU drivers (lavapipe gathers them lane by lane) pay for most.
// Ragged edges are zero-padded on load and skipped on store. Block formats are dequantized element by element as the
// weight slice is staged (load_weight from dequant.glsl), so the inner loop is the same for every weight type.
#extension GL_GOOGLE_include_directive : require

#define TILE 64      // rows of x and of W per workgroup
#define DEPTH 16     // k per shared-memory slice
#define SIDE 8       // threads per side of the workgroup
#define PER (TILE / SIDE)
layout(local_size_x = SIDE * SIDE) in;

#include "linear_common.glsl"

// k-major so the inner loop reads along a row; one float of padding keeps the transposing stores off shared banks.
shared float x_tile[DEPTH][TILE + 1];
shared float w_tile[DEPTH][TILE + 1];

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint tiles_n = (pc.n + TILE - 1u) / TILE;
  const uint m0 = (group / tiles_n) * TILE, n0 = (group % tiles_n) * TILE;
  if (m0 >= pc.m) return;  // the whole workgroup leaves together, before any barrier
  const uint t = gl_LocalInvocationID.x;
  const uint tx = t % SIDE, ty = t / SIDE;

  float acc[PER][PER];
  for (uint i = 0u; i < PER; ++i)
    for (uint j = 0u; j < PER; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < pc.k; k0 += DEPTH) {
    // 64×16 elements of each operand, four per thread, consecutive threads along k.
    for (uint e = t; e < TILE * DEPTH; e += SIDE * SIDE) {
      const uint r = e / DEPTH, c = e % DEPTH;
      const uint k = k0 + c;
      const uint m = m0 + r, n = n0 + r;
      x_tile[c][r] = (m < pc.m && k < pc.k) ? x[pc.x_offset + m * pc.x_stride + k] : 0.0;
      w_tile[c][r] = (n < pc.n && k < pc.k) ? load_weight(n * pc.k + k) : 0.0;
    }
    barrier();
    for (uint kk = 0u; kk < DEPTH; ++kk) {
      float xv[PER], wv[PER];
      for (uint i = 0u; i < PER; ++i) xv[i] = x_tile[kk][ty + SIDE * i];
      for (uint j = 0u; j < PER; ++j) wv[j] = w_tile[kk][tx + SIDE * j];
      for (uint i = 0u; i < PER; ++i)
        for (uint j = 0u; j < PER; ++j) acc[i][j] = fma(xv[i], wv[j], acc[i][j]);
    }
    barrier();
  }

  for (uint i = 0u; i < PER; ++i) {
    const uint m = m0 + ty + SIDE * i;
    if (m >= pc.m) continue;
    for (uint j = 0u; j < PER; ++j) {
      const uint n = n0 + tx + SIDE * j;
      if (n < pc.n) store_output(m, n, acc[i][j]);
    }
  }
}

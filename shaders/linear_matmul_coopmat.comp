#version 450
// y = x · Wᵀ (+ b) for many activation rows (prefill) on matrix cores: VK_KHR_cooperative_matrix multiplies f16
// fragments into f32 accumulators. Four subgroups (2 × 2) each own WM × WN fragments of a TM × TN tile of y; every
// BK-deep slice of x (TM rows) and of W (TN rows) is staged in shared memory as f16 (x converted from f32, W
// dequantized by load_weight, so every weight type shares this loop), then each subgroup loads its A fragments
// row-major from the x slice and its B fragments column-major from the W slice (W's rows are B's columns). The
// accumulators go through shared memory to the common epilogue (row scales, bias, accumulate), which also skips the
// ragged edges that the loads zero-padded.
// The fragment shape (FM × FN × FK) is what the device offers for f16 · f16 + f32 (16 × 16 × 16 on NVIDIA and AMD,
// 8 × 8 × 8 on lavapipe): specialization constants, with the tile following from them.
// Precision: x and W are rounded to f16 (11-bit significands) before the products; sums are f32. F32 weights never
// take this kernel. |x| beyond f16's 65504 would overflow: the inputs of Llama's projections (normalized activations
// and the SwiGLU product) stay far below it.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require

layout(local_size_x_id = 0) in;  // 4 subgroups: 4 × the subgroup size the pipeline requires
layout(constant_id = 1) const uint FM = 16;  // fragment rows (along m)
layout(constant_id = 2) const uint FN = 16;  // fragment columns (along n)
layout(constant_id = 3) const uint FK = 16;  // fragment depth (along k)

#define WM 2  // fragments a subgroup owns along m
#define WN 2  // ... along n
#define KSTEPS 2  // fragment depths per staged slice
const uint TM = 2u * WM * FM, TN = 2u * WN * FN, BK = KSTEPS * FK;
// Shared rows padded by 8 halves (16 bytes): fragment loads start on 16-byte boundaries and rows fall on other banks.
const uint XS = BK + 8u;
const uint YS = TN + 4u;

#include "linear_common.glsl"

shared float16_t x_slice[TM * XS];
shared float16_t w_slice[TN * XS];
shared float y_tile[TM * YS];

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint tiles_n = (pc.n + TN - 1u) / TN;
  const uint m0 = (group / tiles_n) * TM, n0 = (group % tiles_n) * TN;
  if (m0 >= pc.m) return;  // the whole workgroup leaves together, before any barrier
  const uint t = gl_LocalInvocationID.x, threads = gl_WorkGroupSize.x;
  const uint sm = gl_SubgroupID / 2u, sn = gl_SubgroupID % 2u;

  coopmat<float, gl_ScopeSubgroup, FM, FN, gl_MatrixUseAccumulator> acc[WM][WN];
  for (uint i = 0u; i < WM; ++i)
    for (uint j = 0u; j < WN; ++j) acc[i][j] = coopmat<float, gl_ScopeSubgroup, FM, FN, gl_MatrixUseAccumulator>(0.0);

  for (uint k0 = 0u; k0 < pc.k; k0 += BK) {
    // Consecutive threads along k: x's rows and W's rows are read along their length.
    for (uint e = t; e < TM * BK; e += threads) {
      const uint r = e / BK, c = e % BK, m = m0 + r, k = k0 + c;
      x_slice[r * XS + c] = float16_t((m < pc.m && k < pc.k) ? x[pc.x_offset + m * pc.x_stride + k] : 0.0);
    }
    for (uint e = t; e < TN * BK; e += threads) {
      const uint r = e / BK, c = e % BK, n = n0 + r, k = k0 + c;
      w_slice[r * XS + c] = float16_t((n < pc.n && k < pc.k) ? load_weight(n * pc.k + k) : 0.0);
    }
    barrier();
    for (uint kk = 0u; kk < BK; kk += FK) {
      coopmat<float16_t, gl_ScopeSubgroup, FM, FK, gl_MatrixUseA> a[WM];
      coopmat<float16_t, gl_ScopeSubgroup, FK, FN, gl_MatrixUseB> b[WN];
      for (uint i = 0u; i < WM; ++i)
        coopMatLoad(a[i], x_slice, ((sm * WM + i) * FM) * XS + kk, XS, gl_CooperativeMatrixLayoutRowMajor);
      for (uint j = 0u; j < WN; ++j)
        coopMatLoad(b[j], w_slice, ((sn * WN + j) * FN) * XS + kk, XS, gl_CooperativeMatrixLayoutColumnMajor);
      for (uint i = 0u; i < WM; ++i)
        for (uint j = 0u; j < WN; ++j) acc[i][j] = coopMatMulAdd(a[i], b[j], acc[i][j]);
    }
    barrier();
  }

  for (uint i = 0u; i < WM; ++i)
    for (uint j = 0u; j < WN; ++j)
      coopMatStore(acc[i][j], y_tile, ((sm * WM + i) * FM) * YS + (sn * WN + j) * FN, YS,
                   gl_CooperativeMatrixLayoutRowMajor);
  barrier();
  // Consecutive threads along n: stores to y are consecutive.
  for (uint e = t; e < TM * TN; e += threads) {
    const uint r = e / TN, c = e % TN, m = m0 + r, n = n0 + c;
    if (m < pc.m && n < pc.n) store_output(m, n, y_tile[r * YS + c]);
  }
}

#version 450
// y = (xq · Wqᵀ) · sx · sw (+ b) for many activation rows (prefill) on matrix cores: VK_KHR_cooperative_matrix
// multiplies int8 fragments into int32 accumulators, exactly, so the result has the plain kernels' bits. The layout is
// linear_matmul_coopmat.comp's: four subgroups (2 × 2), each owning WM × WN fragments of a TM × TN tile of y; BK-deep
// slices of both int8 operands are unpacked from their words into shared memory, A fragments loaded row-major from
// the xq slice, B fragments column-major from the W slice; the sums go through shared memory to the w8a8 epilogue.
// Fragment shape (FM × FN × FK): the device's int8 · int8 + int32 one (16 × 16 × 32 on NVIDIA, 8 × 8 × 8 on lavapipe).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require

layout(local_size_x_id = 0) in;  // 4 subgroups: 4 × the subgroup size the pipeline requires
layout(constant_id = 1) const uint FM = 16;
layout(constant_id = 2) const uint FN = 16;
layout(constant_id = 3) const uint FK = 32;

#define WM 2
#define WN 2
#define KSTEPS 2
const uint TM = 2u * WM * FM, TN = 2u * WN * FN, BK = KSTEPS * FK;  // BK: int8 elements a slice (a multiple of 4)
const uint BKW = BK / 4u;                                           // ... in words
const uint XS = BK + 16u;  // shared rows padded by 16 bytes
const uint YS = TN + 4u;

#include "w8a8_common.glsl"

shared int8_t x_slice[TM * XS];
shared int8_t w_slice[TN * XS];
shared int y_tile[TM * YS];


void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint tiles_n = (pc.n + TN - 1u) / TN;
  const uint m0 = (group / tiles_n) * TM, n0 = (group % tiles_n) * TN;
  if (m0 >= pc.m) return;  // the whole workgroup leaves together, before any barrier
  const uint t = gl_LocalInvocationID.x, threads = gl_WorkGroupSize.x;
  const uint sm = gl_SubgroupID / 2u, sn = gl_SubgroupID % 2u;

  coopmat<int, gl_ScopeSubgroup, FM, FN, gl_MatrixUseAccumulator> acc[WM][WN];
  for (uint i = 0u; i < WM; ++i)
    for (uint j = 0u; j < WN; ++j) acc[i][j] = coopmat<int, gl_ScopeSubgroup, FM, FN, gl_MatrixUseAccumulator>(0);

  for (uint k0 = 0u; k0 < pc.k_words; k0 += BKW) {
    // A word (4 values of k) a step, consecutive threads along k; zeros past the edges.
    for (uint e = t; e < TM * BKW; e += threads) {
      const uint r = e / BKW, c = e % BKW, m = m0 + r, k = k0 + c;
      const ivec4 v = signed_bytes((m < pc.m && k < pc.k_words) ? xq[pc.xq_offset + m * pc.xq_stride + k] : 0);
      for (uint i = 0u; i < 4u; ++i) x_slice[r * XS + 4u * c + i] = int8_t(v[i]);
    }
    for (uint e = t; e < TN * BKW; e += threads) {
      const uint r = e / BKW, c = e % BKW, n = n0 + r, k = k0 + c;
      const ivec4 v = signed_bytes((n < pc.n && k < pc.k_words) ? weight_words[n * pc.k_words + k] : 0);
      for (uint i = 0u; i < 4u; ++i) w_slice[r * XS + 4u * c + i] = int8_t(v[i]);
    }
    barrier();
    for (uint kk = 0u; kk < BK; kk += FK) {
      coopmat<int8_t, gl_ScopeSubgroup, FM, FK, gl_MatrixUseA> a[WM];
      coopmat<int8_t, gl_ScopeSubgroup, FK, FN, gl_MatrixUseB> b[WN];
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
  for (uint e = t; e < TM * TN; e += threads) {
    const uint r = e / TN, c = e % TN, m = m0 + r, n = n0 + c;
    if (m < pc.m && n < pc.n) store_w8a8(m, n, y_tile[r * YS + c]);
  }
}

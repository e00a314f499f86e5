#version 450
// y = x · Wᵀ (+ b) for a few activation rows (decode). A workgroup computes ROWS outputs for all NUM_M rows of x, so
// every weight row is read once however many rows x has. Its threads form groups of LANES: each group takes
// ROWS / (threads / LANES) rows, its lanes striding over k four elements at a time (adjacent lanes reading adjacent
// words), or over the units of block formats (dequant.glsl). LANES follows k: a short row (k = 192) keeps 8 lanes
// busy rather than leaving most of 64 idle, and the workgroup then takes several rows, so that a wide, short matrix
// such as an lm_head is a few thousand workgroups, not one per row. The partial sums meet in shared memory, portable
// to any subgroup size.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_arithmetic : enable

layout(local_size_x_id = 0) in;                // threads per workgroup
layout(constant_id = 1) const uint ROWS = 1;   // weight rows (outputs) per workgroup: a multiple of threads / LANES
layout(constant_id = 2) const uint NUM_M = 1;  // activation rows: the dispatch's m
layout(constant_id = 3) const uint LANES = 1;  // threads that share one output row: divides the workgroup size
// Float weights whose rows are whole 16-byte units, and x rows that start on 16 bytes: each lane loads 16 bytes of a
// row at a time (8 elements of f16/bf16, 4 of f32) and the matching x as vec4s. Block formats and int8: x as vec4s
// (their units are runs of 4 elements at multiples of 4). The host checks the alignment.
layout(constant_id = 4) const bool VEC16 = false;
// Lane groups that are whole subgroups (LANES = the subgroup size) finish their sums with subgroupAdd: no shared
// memory and no barrier. Checked against gl_SubgroupSize at run time; the shared-memory path otherwise.
layout(constant_id = 5) const bool SUBGROUP_SUM = false;
// NORM_FOLD: the dtype of the RMSNorm weight (DTYPE_*), a constant so that its unpacking is resolved when the
// pipeline is made rather than per element.
layout(constant_id = 6) const uint NORM_DTYPE = 0;

#include "linear_common.glsl"

// The same bindings seen 16 bytes an element (aliases of linear_common.glsl's, for VEC16).
layout(std430, binding = 0) readonly buffer Weights16 { uvec4 weight_vec16[]; };
layout(std430, binding = 1) readonly buffer X16 { vec4 x_vec4[]; };

// Elements xi .. xi+3 of x: one vec4 load where x rows start on 16 bytes and xi is a multiple of 4 (VEC16), else
// four floats.
vec4 x_run(uint xi) { return VEC16 ? x_vec4[xi / 4u] : vec4(x[xi], x[xi + 1u], x[xi + 2u], x[xi + 3u]); }

#if defined(NORM_FOLD)
// RMSNorm folded into the projection (decode): x is the hidden state before its norm. Each run of x the kernel loads
// is scaled by the norm weight g, and the squares of x are summed on the way (once a row of x: by the first weight row
// a lane group computes, or by every load where one load serves all the rows), so that the finished dot product is
// scaled by inversesqrt(mean(x²) + eps): y = Σ_k x_k g_k w_k · inv_rms, RMSNorm(x) · W up to f32 rounding, without
// the norm's own pass over x and its barrier.
layout(std430, binding = 5) readonly buffer NormWeight { uint norm_words[]; };
float x_sumsq[NUM_M];
bool count_squares = true;
float norm_at(uint k) { return unpack_element(norm_words[element_word(k, NORM_DTYPE)], k, NORM_DTYPE); }
// Elements k .. k+3: two words of a 16-bit weight where k is even (every vec4 path but odd rows' scalar one).
vec4 norm_at4(uint k) {
  if (NORM_DTYPE == DTYPE_F32)
    return uintBitsToFloat(uvec4(norm_words[k], norm_words[k + 1u], norm_words[k + 2u], norm_words[k + 3u]));
  if ((k & 1u) != 0u) return vec4(norm_at(k), norm_at(k + 1u), norm_at(k + 2u), norm_at(k + 3u));
  const uint w0 = norm_words[k >> 1], w1 = norm_words[(k >> 1) + 1u];
  if (NORM_DTYPE == DTYPE_F16) return vec4(unpackHalf2x16(w0), unpackHalf2x16(w1));
  return vec4(unpack_bf16x2(w0), unpack_bf16x2(w1));
}
#endif

// Elements k .. k+3 of activation row m (as the projection sees it: normalized and scaled where the norm is folded).
vec4 x_load4(uint m, uint k) {
  vec4 v = x_run(pc.x_offset + m * pc.x_stride + k);
#if defined(NORM_FOLD)
  if (count_squares) x_sumsq[m] += dot(v, v);
  v *= norm_at4(k);
#endif
  return v;
}
float x_load1(uint m, uint k) {
  float v = x[pc.x_offset + m * pc.x_stride + k];
#if defined(NORM_FOLD)
  if (count_squares) x_sumsq[m] += v * v;
  v *= norm_at(k);
#endif
  return v;
}

const uint GROUPS = gl_WorkGroupSize.x / LANES;  // lane groups per workgroup
const uint GROUP_ROWS = ROWS / GROUPS;           // rows each lane group computes

shared float partial[ROWS * NUM_M * LANES];
#if defined(NORM_FOLD)
shared float partial_squares[GROUPS * NUM_M * LANES];
#endif

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint first_row = group * ROWS;
  if (first_row >= pc.n) return;  // the whole workgroup leaves together, before any barrier
  const uint lane = gl_LocalInvocationID.x % LANES, lane_group = gl_LocalInvocationID.x / LANES;

  float acc[GROUP_ROWS * NUM_M];
  for (uint i = 0u; i < GROUP_ROWS * NUM_M; ++i) acc[i] = 0.0;
#if defined(NORM_FOLD)
  for (uint m = 0u; m < NUM_M; ++m) x_sumsq[m] = 0.0;
#endif

#if defined(QBLOCK_WORDS)
  // One thread per row group (CPU drivers, LANES = 1): whole blocks, each read once with its scale applied once to
  // its dot product, the thread's rows side by side so that each run of x is loaded once for all of them. Rows past
  // the end repeat the last one (their sums are never stored), which keeps the threads in step.
  if (LANES == 1u) {
    const uint blocks_per_row = pc.k / QK;
    const uint first = first_row + lane_group * GROUP_ROWS;
    for (uint block = 0u; block < blocks_per_row; ++block) {
      float d[GROUP_ROWS];
      uint qs[GROUP_ROWS * QBLOCK_WORDS];
      for (uint r = 0u; r < GROUP_ROWS; ++r) {
        uint row_qs[QBLOCK_WORDS];
        dequant_block((min(first + r, pc.n - 1u) * blocks_per_row + block) * QBYTES, d[r], row_qs);
        for (uint i = 0u; i < QBLOCK_WORDS; ++i) qs[r * QBLOCK_WORDS + i] = row_qs[i];
      }
      for (uint m = 0u; m < NUM_M; ++m) {
        vec4 xs[QBLOCK_WORDS];
        for (uint i = 0u; i < QBLOCK_WORDS; ++i) xs[i] = x_load4(m, block * QK + 4u * i);
        for (uint r = 0u; r < GROUP_ROWS; ++r) {
          float sum = 0.0;
          for (uint i = 0u; i < QBLOCK_WORDS; ++i) sum += dot(vec4(signed_bytes(qs[r * QBLOCK_WORDS + i])), xs[i]);
          acc[r * NUM_M + m] += d[r] * sum;
        }
      }
    }
  } else
#endif
  for (uint r = 0u; r < GROUP_ROWS; ++r) {
    const uint row = first_row + lane_group * GROUP_ROWS + r;
    if (row >= pc.n) break;
#if defined(NORM_FOLD)
    count_squares = r == 0u;  // each row of the group reads all of x again
#endif
#if WEIGHT_QUANT
    // Block formats: threads stride over units (8 elements as two runs of 4, or 4 for int8), adjacent threads taking
    // adjacent units of a block, each dequantized in registers once for all NUM_M rows of x.
    const uint blocks_per_row = pc.k / QK;
    const uint units = blocks_per_row * QUNITS_PER_BLOCK;
    for (uint u = lane; u < units; u += LANES) {
      const uint block = u / QUNITS_PER_BLOCK;
      vec4 lo, hi;
      uvec2 at;
      dequant_unit((row * blocks_per_row + block) * QBYTES, u % QUNITS_PER_BLOCK, lo, hi, at);
      for (uint m = 0u; m < NUM_M; ++m) {
        // Units are runs of 4 at multiples of 4 in the row: with x rows on 16 bytes (VEC16) each run is one vec4.
        float sum = dot(lo, x_load4(m, block * QK + at.x));
#if QUNIT_HAS_HI
        sum += dot(hi, x_load4(m, block * QK + at.y));
#endif
        acc[r * NUM_M + m] += sum;
      }
    }
#else
    if (VEC16) {
#if WEIGHT_IS_16BIT
      const uint per_unit = 8u;  // elements per 16-byte unit
#else
      const uint per_unit = 4u;
#endif
      const uint units = pc.k / per_unit, first_unit = row * units;
      for (uint u = lane; u < units; u += LANES) {
        const uvec4 w = weight_vec16[first_unit + u];
#if defined(WEIGHT_BF16)
        const vec4 lo = vec4(unpack_bf16x2(w.x), unpack_bf16x2(w.y)), hi = vec4(unpack_bf16x2(w.z), unpack_bf16x2(w.w));
#elif defined(WEIGHT_F16)
        const vec4 lo = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y)), hi = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
#else
        const vec4 lo = uintBitsToFloat(w);
#endif
        for (uint m = 0u; m < NUM_M; ++m) {
#if WEIGHT_IS_16BIT
          acc[r * NUM_M + m] += dot(lo, x_load4(m, u * per_unit)) + dot(hi, x_load4(m, u * per_unit + 4u));
#else
          acc[r * NUM_M + m] += dot(lo, x_load4(m, u * per_unit));
#endif
        }
      }
      continue;
    }
    const uint base = row * pc.k;  // first element of the row within the chunk
    // A row of odd length may begin in the high half of a word: its first element is then taken alone, so that the
    // quads (two words each for 16-bit dtypes) start word-aligned. Elements before and after the quads go one by one.
#if WEIGHT_IS_16BIT
    const uint lead = base & 1u;
#else
    const uint lead = 0u;
#endif
    const uint quads_end = lead + (pc.k - lead) / 4u * 4u;
    for (uint q = lead + 4u * lane; q < quads_end; q += 4u * LANES) {
      const vec4 w = load_weight4(base + q);
      for (uint m = 0u; m < NUM_M; ++m) acc[r * NUM_M + m] += dot(w, x_load4(m, q));
    }
    for (uint j = lane; j < lead + pc.k - quads_end; j += LANES) {
      const uint q = j < lead ? j : quads_end + j - lead;
      const float w = load_weight(base + q);
      for (uint m = 0u; m < NUM_M; ++m) acc[r * NUM_M + m] += w * x_load1(m, q);
    }
#endif
  }

  if (SUBGROUP_SUM && gl_SubgroupSize == LANES) {
#if defined(NORM_FOLD)
    float inv_rms[NUM_M];
    for (uint m = 0u; m < NUM_M; ++m) inv_rms[m] = inversesqrt(subgroupAdd(x_sumsq[m]) / float(pc.k) + pc.norm_eps);
#endif
    for (uint i = 0u; i < GROUP_ROWS * NUM_M; ++i) {
      float sum = subgroupAdd(acc[i]);
#if defined(NORM_FOLD)
      sum *= inv_rms[i % NUM_M];
#endif
      const uint row = first_row + lane_group * GROUP_ROWS + i / NUM_M;
      if (lane == 0u && row < pc.n) store_output(i % NUM_M, row, sum);
    }
    return;
  }
  // One barrier, then each sum is finished by one thread: few barriers keep the kernel quick to compile on CPU
  // drivers (lavapipe), and the serial sums (LANES terms) are short next to the k loop.
  for (uint i = 0u; i < GROUP_ROWS * NUM_M; ++i) partial[((lane_group * GROUP_ROWS * NUM_M) + i) * LANES + lane] = acc[i];
#if defined(NORM_FOLD)
  for (uint m = 0u; m < NUM_M; ++m) partial_squares[(lane_group * NUM_M + m) * LANES + lane] = x_sumsq[m];
#endif
  barrier();
  for (uint i = gl_LocalInvocationID.x; i < ROWS * NUM_M; i += gl_WorkGroupSize.x) {
    const uint row = first_row + i / NUM_M;
    if (row >= pc.n) continue;
    float sum = 0.0;
    for (uint j = 0u; j < LANES; ++j) sum += partial[i * LANES + j];
#if defined(NORM_FOLD)
    const uint squares = ((i / NUM_M) / GROUP_ROWS * NUM_M + i % NUM_M) * LANES;  // the row's lane group, row m of x
    float sumsq = 0.0;
    for (uint j = 0u; j < LANES; ++j) sumsq += partial_squares[squares + j];
    sum *= inversesqrt(sumsq / float(pc.k) + pc.norm_eps);
#endif
    store_output(i % NUM_M, row, sum);
  }
}

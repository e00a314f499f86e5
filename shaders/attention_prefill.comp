#version 450
// Causal GQA attention for many query rows at once (prefill), flash style: one workgroup per (tile of BR
// consecutive tokens of a sequence, query head). Keys and values come through shared memory BC at a time, each chunk
// read once for the BR queries of the tile instead of once per query (attention.comp's one-row workgroups), and
// each query row keeps an online softmax: a running maximum and sum, the output rescaled when the maximum grows.
// Same bindings, push constants, visibility (kv_start[b] .. past + t), cache planes and results as attention.comp:
// a row with no visible key gets zeros. Chunks past a tile's last row's keys are never read (the causal mask skips
// them), and keys a row must not see inside a chunk weigh exactly 0.
// The workgroup owns BR × head_dim outputs, OUTPUTS_PER_INVOCATION each (o = tid + i · workgroup size), so every
// invocation's outputs stay in registers across the chunks.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint BR = 16;        // query rows (tokens) per workgroup
layout(constant_id = 2) const uint BC = 16;        // keys per chunk
layout(constant_id = 3) const uint HEAD_DIM = 64;  // the model's head_dim (the shared tiles are sized by it)
layout(constant_id = 4) const uint OUTPUTS_PER_INVOCATION = 16;  // ceil(BR · HEAD_DIM / workgroup size)
const uint MAX_OUTPUTS = 64u;  // the host keeps OUTPUTS_PER_INVOCATION at or below it

#include "attention_common.glsl"

shared float q_tile[BR * HEAD_DIM];
shared float k_tile[BC * HEAD_DIM];
shared float v_tile[BC * HEAD_DIM];
shared float weights[BR * BC];  // a chunk's scores, then their weights exp(score − the row's new maximum)
shared float row_max[BR], row_sum[BR], row_rescale[BR];

const float NO_KEY = -1.0 / 0.0;  // -inf: the score of a key a row does not see

void main() {
  const uint tiles = (pc.tokens + BR - 1u) / BR;
  const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (wg >= pc.planes * pc.group_size * tiles) return;  // the whole workgroup leaves together
  const uint tid = gl_LocalInvocationID.x, size = gl_WorkGroupSize.x;
  const uint t0 = (wg % tiles) * BR;
  const uint g = (wg / tiles) % pc.group_size;
  const uint local_plane = wg / (tiles * pc.group_size);
  const uint plane = pc.first_plane + local_plane;
  const uint b = plane / pc.kv_heads, kv_head = plane % pc.kv_heads;
  const uint head = kv_head * pc.group_size + g;
  const uint rows_here = min(BR, pc.tokens - t0);
  const uint row0 = b * pc.tokens + t0 - pc.first_row;  // the tile's first row within the q and out bindings
  const uint plane_base = pc.cache_first + local_plane * pc.capacity * HEAD_DIM;

  for (uint e = tid; e < BR * HEAD_DIM; e += size) {
    const uint r = e / HEAD_DIM, d = e % HEAD_DIM;
    q_tile[e] = r < rows_here ? q[pc.q_first + (row0 + r) * pc.q_stride + head * HEAD_DIM + d] : 0.0;
  }
  if (tid < BR) {
    row_max[tid] = NO_KEY;
    row_sum[tid] = 0.0;
  }

  const uint first_key = uint(max(kv_start[b], 0));
  const uint past = pc.past_slot == ~0u ? pc.past : uint(kv_start[pc.past_slot]);
  const uint last_key = past + t0 + rows_here - 1u;  // the tile's last row sees the most keys

  float acc[MAX_OUTPUTS];
  for (uint i = 0u; i < OUTPUTS_PER_INVOCATION; ++i) acc[i] = 0.0;

  for (uint chunk = first_key; chunk <= last_key; chunk += BC) {
    const uint keys_here = min(BC, last_key + 1u - chunk);
    barrier();  // the previous chunk's tiles and weights are done with (and, the first time, q_tile is written)
    for (uint e = tid; e < BC * (HEAD_DIM / 2u); e += size) {
      const uint j = e / (HEAD_DIM / 2u), d = 2u * (e % (HEAD_DIM / 2u));
      vec2 kk = vec2(0.0), vv = vec2(0.0);
      if (j < keys_here) {
        const uint at = plane_base + (chunk + j) * HEAD_DIM + d;
        kk = KV_LOAD_PAIR(k_cache, at);
        vv = KV_LOAD_PAIR(v_cache, at);
      }
      k_tile[j * HEAD_DIM + d] = kk.x;
      k_tile[j * HEAD_DIM + d + 1u] = kk.y;
      v_tile[j * HEAD_DIM + d] = vv.x;
      v_tile[j * HEAD_DIM + d + 1u] = vv.y;
    }
    barrier();
    for (uint e = tid; e < BR * BC; e += size) {
      const uint r = e / BC, j = e % BC, key = chunk + j;
      float score = NO_KEY;
      if (r < rows_here && j < keys_here && key <= past + t0 + r) {
        float dot_qk = 0.0;
        for (uint d = 0u; d < HEAD_DIM; ++d) dot_qk += q_tile[r * HEAD_DIM + d] * k_tile[j * HEAD_DIM + d];
        score = dot_qk * pc.scale;
      }
      weights[e] = score;
    }
    barrier();
    if (tid < BR) {
      // One invocation a row: the chunk's maximum, the rescaling of what came before, the weights and their sum.
      float chunk_max = NO_KEY;
      for (uint j = 0u; j < BC; ++j) chunk_max = max(chunk_max, weights[tid * BC + j]);
      const float old_max = row_max[tid], new_max = max(old_max, chunk_max);
      // Nothing visible yet (new_max = -inf): nothing to rescale and no weight (exp(-inf − -inf) would be NaN).
      const bool seen = new_max != NO_KEY;
      const float rescale = seen && old_max != NO_KEY ? exp(old_max - new_max) : (seen ? 0.0 : 1.0);
      float chunk_sum = 0.0;
      for (uint j = 0u; j < BC; ++j) {
        const float s = weights[tid * BC + j];
        const float w = seen && s != NO_KEY ? exp(s - new_max) : 0.0;
        weights[tid * BC + j] = w;
        chunk_sum += w;
      }
      row_max[tid] = new_max;
      row_sum[tid] = row_sum[tid] * rescale + chunk_sum;
      row_rescale[tid] = rescale;
    }
    barrier();
    for (uint i = 0u; i < OUTPUTS_PER_INVOCATION; ++i) {
      const uint o = tid + i * size;
      if (o < BR * HEAD_DIM) {
        const uint r = o / HEAD_DIM, d = o % HEAD_DIM;
        float weighted = 0.0;
        for (uint j = 0u; j < keys_here; ++j) weighted += weights[r * BC + j] * v_tile[j * HEAD_DIM + d];
        acc[i] = acc[i] * row_rescale[r] + weighted;
      }
    }
  }
  barrier();  // row_sum is final (a tile whose rows see no key at all never entered the loop)
  for (uint i = 0u; i < OUTPUTS_PER_INVOCATION; ++i) {
    const uint o = tid + i * size;
    const uint r = o / HEAD_DIM, d = o % HEAD_DIM;
    if (o < BR * HEAD_DIM && r < rows_here) {
      const float sum = row_sum[r];
      result[pc.out_first + (row0 + r) * pc.out_stride + head * HEAD_DIM + d] = sum > 0.0 ? acc[i] / sum : 0.0;
    }
  }
}

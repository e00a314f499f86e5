#version 450
// Causal GQA attention over the KV cache, f32 throughout, one workgroup per (query row, head):
//   out = Σ_j softmax_j(q·k_j · scale) · v_j  over the visible keys j = kv_start[b] .. past + t.
// Keys are taken in chunks of one key per invocation (flash style): each chunk's scores update a running maximum and
// sum, and the output accumulator is rescaled when the maximum grows, so shared memory does not depend on the
// context length. The result equals a max-subtracted softmax in f32. Each invocation owns the output dimensions
// d = tid + k · workgroup size. A row with no visible key (a left-padding
// query in prefill) gets zeros. The dispatch covers the planes [first_plane, first_plane + planes) of the cache
// (see kv_cache.glsl): workgroups walk t fastest, then the query heads of one kv head, then the planes, so that
// neighbouring workgroups read the same keys.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;  // keys per chunk
layout(constant_id = 1) const uint DIMS_PER_INVOCATION = 1;  // ceil(head_dim / workgroup size)
// Split-K: SPLITS > 1 workgroups share a (query row, head), each over its own range of split_keys keys, and write
// their unnormalized output with its running max and sum to `partials`; attention_combine.comp merges them. Decode
// over a long context then keeps a GPU busy with heads × SPLITS workgroups instead of heads.
layout(constant_id = 2) const uint SPLITS = 1;
const uint MAX_HEAD_DIM = 256u;

#include "attention_common.glsl"
// SPLITS > 1: [rows, heads, SPLITS, head_dim + 2] (output, max, sum); otherwise unused (bound to anything).
layout(std430, binding = 5) writeonly buffer Partials { float partials[]; };

shared float q_shared[MAX_HEAD_DIM];
// This chunk's scores and weights exp(score − running max). Two arrays, so that two barriers per chunk suffice: the
// scores of the next chunk are written only after everyone passed this chunk's second barrier (done with the
// scores), its weights only after everyone passed the next chunk's first barrier (done with these weights).
shared float scores[gl_WorkGroupSize.x];
shared float weights[gl_WorkGroupSize.x];

void main() {
  const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (wg >= pc.planes * pc.group_size * pc.tokens * SPLITS) return;  // the whole workgroup leaves together
  const uint tid = gl_LocalInvocationID.x, size = gl_WorkGroupSize.x;
  const uint split = wg % SPLITS, item = wg / SPLITS;
  const uint t = item % pc.tokens;
  const uint g = (item / pc.tokens) % pc.group_size;
  const uint local_plane = item / (pc.tokens * pc.group_size);
  const uint plane = pc.first_plane + local_plane;
  const uint b = plane / pc.kv_heads, kv_head = plane % pc.kv_heads;
  const uint head = kv_head * pc.group_size + g;
  const uint row = b * pc.tokens + t - pc.first_row;
  const uint q_base = pc.q_first + row * pc.q_stride + head * pc.head_dim;
  const uint out_base = pc.out_first + row * pc.out_stride + head * pc.head_dim;
  const uint plane_base = pc.cache_first + local_plane * pc.capacity * pc.head_dim;

  for (uint d = tid; d < pc.head_dim; d += size) q_shared[d] = q[q_base + d];
  barrier();

  // The visible keys: first_key .. last_key (an empty range when first_key > last_key).
  uint first_key = uint(max(kv_start[b], 0));
  const uint past = pc.past_slot == ~0u ? pc.past : uint(kv_start[pc.past_slot]);
  uint last_key = past + t;
  if (SPLITS > 1u) {  // this split's share of them
    first_key = max(first_key, split * pc.split_keys);
    last_key = min(last_key, split * pc.split_keys + pc.split_keys - 1u);
  }

  // Every invocation keeps the running maximum and sum itself: they come from shared values that all invocations
  // read in the same order, so they agree, and no reduction tree (with its barriers) is needed.
  float running_max = 0.0, running_sum = 0.0;
  float acc[DIMS_PER_INVOCATION];
  for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) acc[k] = 0.0;

  for (uint chunk = first_key; chunk <= last_key; chunk += size) {
    const uint keys_here = min(size, last_key + 1u - chunk);
    if (tid < keys_here) {
      const uint key_base = plane_base + (chunk + tid) * pc.head_dim;
      float dot_qk = 0.0;
      for (uint d = 0u; d < pc.head_dim; d += 2u) {
        const vec2 kk = KV_LOAD_PAIR(k_cache, key_base + d);
        dot_qk += q_shared[d] * kk.x + q_shared[d + 1u] * kk.y;
      }
      scores[tid] = dot_qk * pc.scale;
    }
    barrier();
    float new_max = scores[0];
    for (uint j = 1u; j < keys_here; ++j) new_max = max(new_max, scores[j]);
    // The first chunk starts the running maximum; later ones may raise it, which rescales what came before.
    if (chunk != first_key) new_max = max(new_max, running_max);
    const float rescale = chunk == first_key ? 0.0 : exp(running_max - new_max);
    running_max = new_max;
    if (tid < keys_here) weights[tid] = exp(scores[tid] - new_max);
    barrier();
    // The weights' sum comes with the first output dimension's pass over them (invocations without an output
    // dimension never need it).
    float chunk_sum = 0.0;
    for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) {
      const uint d = tid + k * size;
      if (d < pc.head_dim) {
        float weighted = 0.0;
        for (uint j = 0u; j < keys_here; ++j) {
          const float w = weights[j];
          weighted += w * KV_LOAD(v_cache, plane_base + (chunk + j) * pc.head_dim + d);
          if (k == 0u) chunk_sum += w;
        }
        acc[k] = acc[k] * rescale + weighted;
      }
    }
    running_sum = running_sum * rescale + chunk_sum;
  }

  if (SPLITS > 1u) {
    const uint heads = pc.kv_heads * pc.group_size;
    const uint p = pc.partial_first + ((row * heads + head) * SPLITS + split) * (pc.head_dim + 2u);
    for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) {
      const uint d = tid + k * size;
      if (d < pc.head_dim) partials[p + d] = acc[k];
    }
    if (tid == 0u) {
      partials[p + pc.head_dim] = running_max;
      partials[p + pc.head_dim + 1u] = running_sum;  // 0: no key of this split is visible
    }
    return;
  }
  const float inv_sum = running_sum > 0.0 ? 1.0 / running_sum : 0.0;
  for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) {
    const uint d = tid + k * size;
    if (d < pc.head_dim) result[out_base + d] = acc[k] * inv_sum;
  }
}

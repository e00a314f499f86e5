#version 450
// Merges split-K attention (attention.comp with SPLITS > 1): each split left its unnormalized output o_s, running
// max m_s and sum l_s; with M = max of m_s over splits that saw a key (l_s > 0),
//   out = Σ_s exp(m_s − M) · o_s / Σ_s exp(m_s − M) · l_s,
// the same softmax as one pass over all keys. A row whose splits all saw no key gets zeros. One invocation per
// output element.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Partials { float partials[]; };  // [rows, heads, splits, head_dim + 2]
layout(std430, binding = 1) writeonly buffer Out { float result[]; };
layout(push_constant) uniform Push {
  uint rows, heads, head_dim, splits;
  uint out_stride;     // floats between rows of out
  uint out_first;      // where row 0 starts in the out binding, in floats
  uint partial_first;  // where row 0 starts in the partials binding, in floats
} pc;

void main() {
  const uint i = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * gl_WorkGroupSize.x +
                 gl_LocalInvocationID.x;
  if (i >= pc.rows * pc.heads * pc.head_dim) return;
  const uint d = i % pc.head_dim, row_head = i / pc.head_dim;
  const uint row = row_head / pc.heads, head = row_head % pc.heads;
  const uint stride = pc.head_dim + 2u, base = pc.partial_first + row_head * pc.splits * stride;
  float top = 0.0;
  bool any = false;
  for (uint s = 0u; s < pc.splits; ++s) {
    const float m = partials[base + s * stride + pc.head_dim], l = partials[base + s * stride + pc.head_dim + 1u];
    if (l > 0.0) {
      top = any ? max(top, m) : m;
      any = true;
    }
  }
  float numerator = 0.0, denominator = 0.0;
  for (uint s = 0u; s < pc.splits; ++s) {
    const uint p = base + s * stride;
    const float l = partials[p + pc.head_dim + 1u];
    if (l > 0.0) {
      const float w = exp(partials[p + pc.head_dim] - top);
      numerator += w * partials[p + d];
      denominator += w * l;
    }
  }
  result[pc.out_first + row * pc.out_stride + head * pc.head_dim + d] =
      denominator > 0.0 ? numerator / denominator : 0.0;
}

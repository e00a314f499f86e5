#version 450
// The SwiGLU product on the stacked gate | up projection: out[r, i] = silu(gate_up[r, i]) · gate_up[r, dim + i],
// silu(g) = g · sigmoid(g), on f32, one invocation per output element.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer GateUp { float gate_up[]; };  // [rows, 2 · dim]
layout(std430, binding = 1) writeonly buffer Out { float result[]; };      // [rows, dim]
layout(push_constant) uniform Push {
  uint rows, dim;
  uint in_first, out_first;  // where row 0 starts in each binding, in floats
} pc;

// exp() only ever sees a non-positive argument, so the denominator stays in [1, 2]: no overflow to infinity and
// no division by a huge number (whose precision the Vulkan specification leaves open) for large |g|.
float sigmoid(float g) {
  if (g >= 0.0) return 1.0 / (1.0 + exp(-g));
  const float e = exp(g);
  return e / (1.0 + e);
}

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint i = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.rows * pc.dim) return;
  const uint r = i / pc.dim, c = i % pc.dim;
  const uint at = pc.in_first + r * 2u * pc.dim + c;
  const float g = gate_up[at];
  result[pc.out_first + i] = g * sigmoid(g) * gate_up[at + pc.dim];
}

#version 450
// The SwiGLU product: out[i] = silu(gate[i]) · up[i], silu(g) = g · sigmoid(g), on f32, one invocation per element.
// out may be the same buffer as gate or up (each invocation reads its element before writing it).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Gate { float gate[]; };
layout(std430, binding = 1) readonly buffer Up { float up[]; };
layout(std430, binding = 2) writeonly buffer Out { float result[]; };
layout(push_constant) uniform Push {
  uint count;
  uint gate_first, up_first, out_first;  // where element 0 is in each binding, in floats
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
  if (i >= pc.count) return;
  const float g = gate[pc.gate_first + i];
  result[pc.out_first + i] = g * sigmoid(g) * up[pc.up_first + i];
}

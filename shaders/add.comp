#version 450
// The residual add: y[i] += x[i] on f32, one invocation per element.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform Push {
  uint count;
  uint x_first, y_first;  // where element 0 is in each binding, in floats
} pc;

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint i = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i < pc.count) y[pc.y_first + i] += x[pc.x_first + i];
}

#version 450
// Fills `count` floats from element `first` of a buffer with one value: poisons outputs in tests, clears scratch.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Out { float data[]; };
layout(push_constant) uniform Push { uint first; uint count; float value; } pc;
void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint i = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i < pc.count) data[pc.first + i] = pc.value;
}

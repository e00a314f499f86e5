#version 450
// Streams through a buffer with 16-byte loads and folds what it read into one word per workgroup: the device's
// achievable read bandwidth, the roofline that decode speed is measured against (`inferno bench`).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer In { uvec4 data[]; };
layout(std430, binding = 1) writeonly buffer Out { uint folded[]; };
layout(push_constant) uniform Push { uint count; } pc;  // uvec4 elements
shared uint partial[1024];
void main() {
  const uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
  uvec4 acc = uvec4(0);
  for (uint i = gl_GlobalInvocationID.x; i < pc.count; i += stride) acc ^= data[i];
  partial[gl_LocalInvocationID.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
  barrier();
  if (gl_LocalInvocationID.x == 0) {
    uint r = 0;
    for (uint t = 0; t < gl_WorkGroupSize.x; ++t) r ^= partial[t];
    folded[gl_WorkGroupID.x] = r;
  }
}

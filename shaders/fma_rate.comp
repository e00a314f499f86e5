#version 450
// Independent chains of f32 multiply-adds on registers, no memory traffic but one store per invocation: the device's
// achievable multiply-add rate, the roofline that prefill (matrix·matrix) speed is measured against (`inferno bench`).
// 32 chains an invocation (8 vec4s) hide the latency of a multiply and an add (CPU drivers such as lavapipe run the
// invocations of a subgroup as SIMD lanes and emit a multiply and an add, not a fused FMA). The multiplier stays below
// 1 in magnitude and the addend is small, so no chain overflows or goes subnormal.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Out { float folded[]; };
layout(push_constant) uniform Push {
  uint iterations;  // steps of every chain
  float scale;      // the multiplier (0.999...)
} pc;
void main() {
  const vec4 start = float(gl_GlobalInvocationID.x) + vec4(0.0, 1.0, 2.0, 3.0);
  vec4 a0 = start, a1 = start + 4.0, a2 = start + 8.0, a3 = start + 12.0;
  vec4 a4 = start + 16.0, a5 = start + 20.0, a6 = start + 24.0, a7 = start + 28.0;
  const vec4 add = vec4(1e-3 * float(gl_LocalInvocationID.x & 7u));
  const vec4 scale = vec4(pc.scale);
  for (uint i = 0u; i < pc.iterations; ++i) {
    a0 = fma(a0, scale, add);
    a1 = fma(a1, scale, add);
    a2 = fma(a2, scale, add);
    a3 = fma(a3, scale, add);
    a4 = fma(a4, scale, add);
    a5 = fma(a5, scale, add);
    a6 = fma(a6, scale, add);
    a7 = fma(a7, scale, add);
  }
  const vec4 sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
  folded[gl_GlobalInvocationID.x] = sum.x + sum.y + sum.z + sum.w;
}

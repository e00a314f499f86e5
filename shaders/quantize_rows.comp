#version 450
// Dynamic per-row (per-token) int8 quantization of f32 activations, as compressed-tensors' w8a8 checkpoints expect
// and bit-exact with its float32 simulation: scale = max|x| / 127, q = round-half-to-even(x / scale) clamped to
// [-128, 127], both divisions rounded as IEEE float32 division rounds. A zero row gets scale 0 and q 0.
// With a static scale (compressed-tensors `input_scale`, strategy tensor) every row takes that scale instead:
// q = round-half-to-even(x / scale) clamped to [-128, 127], the scale written to xscale like a dynamic one.
// One workgroup a row: the threads find max|x| together, then each packs 4 quantized values a word (lowest k in the
// lowest byte), the row's tail word padded with zeros.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };         // f32 [m, k]
layout(std430, binding = 1) writeonly buffer XQ { uint xq[]; };       // int8 [m, k], (k + 3) / 4 words a row
layout(std430, binding = 2) writeonly buffer XScale { float xscale[]; };  // f32 [m]

layout(push_constant) uniform Push {
  uint k;             // elements of a row
  uint m;             // rows of this dispatch
  uint x_offset;      // element of x[0][0] within the bound range
  uint x_stride;      // elements between rows of x
  uint xq_offset;     // word of xq[0] within the bound range
  uint xq_stride;     // words between rows of xq
  uint scale_offset;  // element of xscale[0] within the bound range
  float static_scale; // > 0: this scale for every row; 0: each row's own max|x| / 127
} pc;

shared float partial_max[gl_WorkGroupSize.x];
shared float row_scale;

// A finite, positive float as m · 2^(e − 150) with the leading 1 of the 24-bit m at bit 23 (subnormals normalized).
void split_float(uint bits, out uint m, out int e) {
  e = int(bits >> 23);
  m = bits & 0x7fffffu;
  if (e != 0) {
    m |= 0x800000u;
    return;
  }
  e = 1;
  while (m < 0x800000u) {
    m <<= 1;
    --e;
  }
}

// a / b rounded to nearest even, exactly as IEEE float32 division (GPU division may be off by a few ulps, which would
// move values that lie near half-integers across the rounding of q). a ≥ 0 and b > 0, both finite. Long division of
// the significands gives 25 quotient bits and a sticky bit, then one rounding (to a subnormal where it must).
float divide_rounded(float a, float b) {
  const uint a_bits = floatBitsToUint(a);
  if (a_bits == 0u) return 0.0;
  uint ma, mb;
  int ea, eb;
  split_float(a_bits, ma, ea);
  split_float(floatBitsToUint(b), mb, eb);
  if (ma < mb) {  // bring ma / mb into [1, 2)
    ma <<= 1;
    --ea;
  }
  uint quotient = 0u, remainder = ma;  // quotient = floor(ma · 2^24 / mb), 25 bits
  for (int i = 0; i < 25; ++i) {
    quotient <<= 1;
    if (remainder >= mb) {
      remainder -= mb;
      quotient |= 1u;
    }
    remainder <<= 1;
  }
  const bool sticky = remainder != 0u;
  const int biased = ea - eb + 127;  // the exponent of a normal result
  if (biased >= 255) return uintBitsToFloat(0x7f800000u);
  if (biased >= 1) {
    uint mantissa = quotient >> 1;
    if ((quotient & 1u) != 0u && (sticky || (mantissa & 1u) != 0u)) ++mantissa;
    return uintBitsToFloat((uint(biased - 1) << 23) + mantissa);  // a carry out of the mantissa bumps the exponent
  }
  const int shift = 2 - biased;  // subnormal: quotient · 2^-shift units of 2^-149
  if (shift > 25) return 0.0;
  uint mantissa = quotient >> shift;
  const uint rest = quotient & ((1u << shift) - 1u), half_unit = 1u << (shift - 1);
  if (rest > half_unit || (rest == half_unit && (sticky || (mantissa & 1u) != 0u))) ++mantissa;
  return uintBitsToFloat(mantissa);
}

// round-half-to-even(v / scale) for v ≥ 0. v · (1 / scale) (a reciprocal then a product, cheaper than a division
// and within ~3 ulps of the correctly rounded quotient, like GPU division itself) rounds to the same integer unless
// it lies within a few ulps of a half-integer: only those take the exact division. 3e-6 is ~25 ulps of margin.
int quantize_magnitude(float v, float scale, float inverse_scale) {
  const float approx = v * inverse_scale;
  if (approx > 256.0) return 256;  // clamped by the caller anyway (a static scale lets |x / scale| exceed 127)
  if (abs(fract(approx) - 0.5) > approx * 3.0e-6 + 1.0e-30) return int(roundEven(approx));
  return int(roundEven(divide_rounded(v, scale)));
}

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (row >= pc.m) return;  // the whole workgroup leaves together, before any barrier
  const uint t = gl_LocalInvocationID.x, threads = gl_WorkGroupSize.x;
  const uint x0 = pc.x_offset + row * pc.x_stride;

  float largest = 0.0;
  if (pc.static_scale <= 0.0)
    for (uint i = t; i < pc.k; i += threads) largest = max(largest, abs(x[x0 + i]));
  partial_max[t] = largest;
  barrier();
  if (t == 0u && pc.static_scale > 0.0) {
    row_scale = pc.static_scale;
    xscale[pc.scale_offset + row] = row_scale;
  } else if (t == 0u) {
    for (uint j = 1u; j < threads; ++j) largest = max(largest, partial_max[j]);
    // A zero row keeps scale 0 (and q 0); a row holding inf or NaN passes it on to the scale, and so to y.
    row_scale = largest == 0.0 || isinf(largest) || isnan(largest) ? largest : divide_rounded(largest, 127.0);
    xscale[pc.scale_offset + row] = row_scale;
  }
  barrier();
  const float scale = row_scale;
  const bool usable = scale > 0.0 && !isinf(scale);
  const float inverse_scale = usable ? 1.0 / scale : 0.0;

  const uint words = (pc.k + 3u) / 4u;
  for (uint w = t; w < words; w += threads) {
    uint packed = 0u;
    for (uint b = 0u; b < 4u; ++b) {
      const uint i = 4u * w + b;
      if (i >= pc.k || !usable) continue;
      const float v = x[x0 + i];
      int q = quantize_magnitude(abs(v), scale, inverse_scale);
      if (v < 0.0) q = -q;
      packed |= (uint(clamp(q, -128, 127)) & 0xffu) << (8u * b);
    }
    xq[pc.xq_offset + row * pc.xq_stride + w] = packed;
  }
}

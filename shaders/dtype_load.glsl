// 16-bit floats (f16, bf16) kept as packed 32-bit words, two values per word, the first in the low half
// (little-endian, as safetensors and the KV cache store them). Needs no 16-bit storage or arithmetic feature: values
// are widened to f32 on load and rounded back to nearest-even on store, bit-exact with PyTorch's .to(dtype).
#ifndef INFERNO_DTYPE_LOAD_GLSL
#define INFERNO_DTYPE_LOAD_GLSL

// The value in half `which` (0 = low, 1 = high) of a word.
float f16_from_word(uint word, uint which) { return unpackHalf2x16(which == 0u ? word : word >> 16).x; }
float bf16_from_word(uint word, uint which) { return uintBitsToFloat(which == 0u ? word << 16 : word & 0xffff0000u); }
vec2 f16x2_from_word(uint word) { return unpackHalf2x16(word); }
vec2 bf16x2_from_word(uint word) { return vec2(uintBitsToFloat(word << 16), uintBitsToFloat(word & 0xffff0000u)); }

// f32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN.
uint bf16_bits(float value) {
  uint u = floatBitsToUint(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  u += 0x7fffu + ((u >> 16) & 1u);
  return u >> 16;
}

// f32 -> f16 bits, round to nearest even, done on the bits so that it does not depend on how a driver's
// packHalf2x16 rounds (the specification leaves that open).
uint f16_bits(float value) {
  const uint u = floatBitsToUint(value);
  const uint sign = (u >> 16) & 0x8000u;
  const uint a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // 65520 and up round to infinity
  if (a < 0x38800000u) {                        // below 2^-14: an f16 subnormal (or zero)
    const uint e = a >> 23;
    if (e < 102u) return sign;                  // below 2^-25: rounds to zero
    const uint m = (a & 0x7fffffu) | 0x800000u;
    const uint shift = 126u - e;                // value / 2^-24 = m >> shift, 14 <= shift <= 24
    uint q = m >> shift;
    const uint rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u) != 0u)) ++q;
    return sign | q;
  }
  uint v = a - (112u << 23);  // rebias the exponent from 127 to 15
  v += 0xfffu + ((v >> 13) & 1u);
  return sign | (v >> 13);
}

uint pack_f16x2(float lo, float hi) { return f16_bits(lo) | (f16_bits(hi) << 16); }
uint pack_bf16x2(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }

const float FLOAT_MAX = 3.402823466e38;
float negative_infinity() { return uintBitsToFloat(0xff800000u); }
float quiet_nan() { return uintBitsToFloat(0x7fc00000u); }

#endif

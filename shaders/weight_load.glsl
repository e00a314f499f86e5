// Loading weights of any stored dtype as f32, with no need for 16-bit storage or float16 arithmetic: 16-bit weights
// are read as packed 32-bit words (two elements a word, the lower-indexed one in the low half, as on disk).
//
// Dtype-independent functions first; then, when the includer defines WEIGHT_F32, WEIGHT_F16 or WEIGHT_BF16 and has
// declared its weights as `uint WEIGHT_WORDS[]` (default name `weight_words`) in a storage buffer, the loaders
//   float load_weight(uint i)    element i
//   vec2  load_weight2(uint i)   elements i, i+1   (i even: one word for 16-bit dtypes)
//   vec4  load_weight4(uint i)   elements i .. i+3 (i even: two words for 16-bit dtypes)
// Rows of odd length begin in the middle of a word: callers handle a row's first element with load_weight when the
// row's first index is odd, then use the pair/quad loaders from the next (even) index.
// With a block format or int8 defined instead (WEIGHT_Q4_K, WEIGHT_I8, ...), dequant.glsl provides load_weight and
// the unit loader dequant_unit; WEIGHT_QUANT tells the two apart.
#ifndef WEIGHT_LOAD_GLSL
#define WEIGHT_LOAD_GLSL

// Dtype codes shared with the C++ side (kernels::WeightType).
#define DTYPE_F32 0u
#define DTYPE_F16 1u
#define DTYPE_BF16 2u

float bf16_low(uint word) { return uintBitsToFloat(word << 16); }
float bf16_high(uint word) { return uintBitsToFloat(word & 0xffff0000u); }
vec2 unpack_bf16x2(uint word) { return vec2(bf16_low(word), bf16_high(word)); }

// Element i of a vector of `dtype`, given the word that holds it: words[i] for f32, words[i / 2] for 16-bit dtypes.
// For small vectors (biases, norm weights) whose dtype is a run-time value rather than a variant.
float unpack_element(uint word, uint i, uint dtype) {
  if (dtype == DTYPE_F32) return uintBitsToFloat(word);
  const bool high = (i & 1u) != 0u;
  if (dtype == DTYPE_F16) {
    const vec2 pair = unpackHalf2x16(word);
    return high ? pair.y : pair.x;
  }
  return high ? bf16_high(word) : bf16_low(word);
}
// The index of the word holding element i.
uint element_word(uint i, uint dtype) { return dtype == DTYPE_F32 ? i : i >> 1; }

#ifndef WEIGHT_WORDS
#define WEIGHT_WORDS weight_words
#endif

#if defined(WEIGHT_F32)
#define WEIGHT_DTYPE DTYPE_F32
#define WEIGHT_IS_16BIT 0
#define WEIGHT_QUANT 0
float load_weight(uint i) { return uintBitsToFloat(WEIGHT_WORDS[i]); }
vec2 load_weight2(uint i) { return vec2(uintBitsToFloat(WEIGHT_WORDS[i]), uintBitsToFloat(WEIGHT_WORDS[i + 1u])); }
vec4 load_weight4(uint i) {
  return vec4(uintBitsToFloat(WEIGHT_WORDS[i]), uintBitsToFloat(WEIGHT_WORDS[i + 1u]),
              uintBitsToFloat(WEIGHT_WORDS[i + 2u]), uintBitsToFloat(WEIGHT_WORDS[i + 3u]));
}
#elif defined(WEIGHT_F16)
#define WEIGHT_DTYPE DTYPE_F16
#define WEIGHT_IS_16BIT 1
#define WEIGHT_QUANT 0
float load_weight(uint i) {
  const vec2 pair = unpackHalf2x16(WEIGHT_WORDS[i >> 1]);
  return (i & 1u) != 0u ? pair.y : pair.x;
}
vec2 load_weight2(uint i) { return unpackHalf2x16(WEIGHT_WORDS[i >> 1]); }
vec4 load_weight4(uint i) {
  const uint w = i >> 1;
  return vec4(unpackHalf2x16(WEIGHT_WORDS[w]), unpackHalf2x16(WEIGHT_WORDS[w + 1u]));
}
#elif defined(WEIGHT_BF16)
#define WEIGHT_DTYPE DTYPE_BF16
#define WEIGHT_IS_16BIT 1
#define WEIGHT_QUANT 0
float load_weight(uint i) {
  const uint word = WEIGHT_WORDS[i >> 1];
  return (i & 1u) != 0u ? bf16_high(word) : bf16_low(word);
}
vec2 load_weight2(uint i) { return unpack_bf16x2(WEIGHT_WORDS[i >> 1]); }
vec4 load_weight4(uint i) {
  const uint w = i >> 1;
  return vec4(unpack_bf16x2(WEIGHT_WORDS[w]), unpack_bf16x2(WEIGHT_WORDS[w + 1u]));
}
#elif defined(WEIGHT_Q8_0) || defined(WEIGHT_Q4_0) || defined(WEIGHT_Q4_1) || defined(WEIGHT_Q5_0) || \
    defined(WEIGHT_Q5_1) || defined(WEIGHT_Q4_K) || defined(WEIGHT_Q5_K) || defined(WEIGHT_Q6_K) || defined(WEIGHT_I8)
// Block formats and int8: load_weight(i) dequantizes one element; kernels that stream whole rows use dequant_unit.
#include "dequant.glsl"
#endif

#endif  // WEIGHT_LOAD_GLSL

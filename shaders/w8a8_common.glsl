// What the two w8a8 kernels (linear_w8a8_matvec.comp, linear_w8a8_matmul.comp) share: int8 weights and int8
// activations packed 4 a word (lowest k in the lowest byte), exact int32 dot products (|q| ≤ 128, so no overflow for
// k below 2^31 / (128 · 127); the C++ side refuses larger), and the epilogue y = float(dot) · sx · sw (+ b) (+ y).
// With INT_DOT defined the dot products use GL_EXT_integer_dot_product's packed 4×8-bit instructions; without it,
// plain integer arithmetic on the unpacked bytes. Both are exact, so both give the same bits.
#ifndef W8A8_COMMON_GLSL
#define W8A8_COMMON_GLSL

layout(std430, binding = 0) readonly buffer Weights { int weight_words[]; };  // one chunk of W [n, k] int8
layout(std430, binding = 1) readonly buffer XQ { int xq[]; };                 // int8 activations [m, k]
layout(std430, binding = 2) buffer Y { float y[]; };                          // f32 outputs
layout(std430, binding = 3) readonly buffer Bias { uint bias_words[]; };      // any dtype; unread without a bias
layout(std430, binding = 4) readonly buffer WScales { uint wscale_words[]; };  // one scale a weight row, any dtype
layout(std430, binding = 5) readonly buffer XScales { float xscale[]; };       // one f32 scale an activation row

#include "weight_load.glsl"  // dtype functions only (no WEIGHT_* defined): unpack_element, element_word

#define NO_BIAS 0xffffffffu

layout(push_constant) uniform Push {
  uint k_words;        // words of a row of W (k / 4)
  uint n;              // rows of this chunk of W: the outputs this dispatch writes
  uint m;              // activation rows of this dispatch
  uint xq_offset;      // word of xq[0] within the bound range
  uint xq_stride;      // words between rows of xq
  uint y_offset;       // element of y[0][chunk's first output] within the bound range
  uint y_stride;       // elements between rows of y
  uint bias_offset;    // element of the bias for the chunk's first output, within the bound range
  uint bias_dtype;     // DTYPE_* or NO_BIAS
  uint accumulate;     // nonzero: y += result instead of y = result
  uint wscale_offset;  // element of the chunk's first row scale within the bound range
  uint wscale_dtype;   // DTYPE_* of the row scales
  uint xscale_offset;  // element of the dispatch's first activation scale within the bound range
} pc;

ivec4 signed_bytes(int w) { return ivec4(w << 24, w << 16, w << 8, w) >> 24; }
int dot_bytes(ivec4 a, ivec4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

#include "linear_epilogue.glsl"

void store_w8a8(uint m, uint n, int dot) {
  const uint s = pc.wscale_offset + n;
  const float sw = unpack_element(wscale_words[element_word(s, pc.wscale_dtype)], s, pc.wscale_dtype);
  float value = float(dot) * xscale[pc.xscale_offset + m] * sw;
  store_biased(m, n, value);
}

#endif  // W8A8_COMMON_GLSL

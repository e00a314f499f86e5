// What the two linear kernels (linear_matvec.comp, linear_matmul.comp) share: their bindings, push constants and the
// epilogue that scales by the row scale (int8 weights), adds the bias (in its own dtype) and, when accumulating, the
// value already in y.
#ifndef LINEAR_COMMON_GLSL
#define LINEAR_COMMON_GLSL

layout(std430, binding = 0) readonly buffer Weights { uint weight_words[]; };  // one chunk of W [n, k], row-major
layout(std430, binding = 1) readonly buffer X { float x[]; };                  // f32 activations
layout(std430, binding = 2) buffer Y { float y[]; };                           // f32 outputs
layout(std430, binding = 3) readonly buffer Bias { uint bias_words[]; };       // any dtype; unread without a bias
#if defined(WEIGHT_I8)
layout(std430, binding = 4) readonly buffer RowScales { uint scale_words[]; };  // int8 weights: one scale a row
#endif

#include "weight_load.glsl"

#define NO_BIAS 0xffffffffu

layout(push_constant) uniform Push {
  uint k;            // inner dimension: columns of W, of x
  uint n;            // rows of this chunk of W: the outputs this dispatch writes
  uint m;            // activation rows of this dispatch
  uint x_offset;     // element of x[0][0] within the bound range
  uint x_stride;     // elements between rows of x
  uint y_offset;     // element of y[0][chunk's first output] within the bound range
  uint y_stride;     // elements between rows of y
  uint bias_offset;  // element of the bias for the chunk's first output, within the bound range
  uint bias_dtype;   // DTYPE_F32 / DTYPE_F16 / DTYPE_BF16, or NO_BIAS
  uint accumulate;   // nonzero: y += result instead of y = result
  uint scale_offset; // int8 weights: element of the chunk's first row scale within the bound range
  uint scale_dtype;  // int8 weights: DTYPE_* of the row scales
  float norm_eps;    // NORM_FOLD (linear_matvec.comp): RMSNorm's epsilon
} pc;

#include "linear_epilogue.glsl"

// `value` is the dot product of row m of x with row n of the chunk (for int8 weights, with the integers q).
void store_output(uint m, uint n, float value) {
#if defined(WEIGHT_I8)
  const uint s = pc.scale_offset + n;
  value *= unpack_element(scale_words[element_word(s, pc.scale_dtype)], s, pc.scale_dtype);
#endif
  store_biased(m, n, value);
}

#endif  // LINEAR_COMMON_GLSL

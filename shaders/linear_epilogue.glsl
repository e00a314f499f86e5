// The end of every linear kernel (linear_common.glsl, w8a8_common.glsl): add the bias, read in its own dtype, and,
// when accumulating, the value already in y; then store. The includer includes weight_load.glsl (unpack_element,
// element_word) and declares `bias_words`, `y` and a push block `pc` with bias_offset, bias_dtype (DTYPE_* or
// NO_BIAS), y_offset, y_stride and accumulate, before including this.
#ifndef LINEAR_EPILOGUE_GLSL
#define LINEAR_EPILOGUE_GLSL

// `value` is output n of activation row m, scales applied.
void store_biased(uint m, uint n, float value) {
  if (pc.bias_dtype != NO_BIAS) {
    const uint i = pc.bias_offset + n;
    value += unpack_element(bias_words[element_word(i, pc.bias_dtype)], i, pc.bias_dtype);
  }
  const uint at = pc.y_offset + m * pc.y_stride + n;
  if (pc.accumulate != 0u) value += y[at];  // never read otherwise: y may hold anything, NaN included
  y[at] = value;
}

#endif  // LINEAR_EPILOGUE_GLSL

// Dequantizing ggml's block formats (the layouts of ggml-common.h) and int8 weights in registers, for the linear
// kernels and the embedding gather. Portable: blocks are read as 32-bit words and their bytes extracted, with no need
// for 8- or 16-bit storage. Blocks of 18, 22, 34 or 210 bytes leave rows and blocks only 2-byte aligned, so
// multi-byte fields are read at any byte offset (two words when they straddle one).
//
// Included by weight_load.glsl when the includer defines one of WEIGHT_Q8_0, WEIGHT_Q4_0, WEIGHT_Q4_1, WEIGHT_Q5_0,
// WEIGHT_Q5_1, WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K, WEIGHT_I8, with the weights declared as `uint WEIGHT_WORDS[]`.
// A chunk's rows are a whole number of blocks laid end to end, so element i of the chunk (row-major) lies in block
// i / QK, which starts at byte (i / QK) * QBYTES. Provides
//   QK, QBYTES                     elements and bytes of a block
//   float load_weight(uint i)      element i of the chunk (I8: the integer q, the row scale is applied by the caller)
//   QUNIT, QUNIT_HAS_HI            elements per unit: 8 as two runs of 4 (ggml formats), 4 as one run (I8)
//   void dequant_unit(uint block_byte, uint unit, out vec4 lo, out vec4 hi, out uvec2 at)
//                                  unit `unit` of the block at byte `block_byte`: elements at.x .. at.x+3 of the block
//                                  in `lo` and at.y .. at.y+3 in `hi`, chosen so that a unit reads few, whole words
//   QBLOCK_WORDS, dequant_block    (Q8_0 only) a whole block as its scale and its q packed four to a word
#ifndef DEQUANT_GLSL
#define DEQUANT_GLSL

#ifndef WEIGHT_WORDS
#define WEIGHT_WORDS weight_words
#endif

// The byte at byte offset o.
uint quant_byte(uint o) { return (WEIGHT_WORDS[o >> 2] >> ((o & 3u) * 8u)) & 0xffu; }
// The 32 bits from byte offset o on, little-endian, whatever the alignment.
uint quant_word(uint o) {
  const uint shift = (o & 3u) * 8u;
  const uint low = WEIGHT_WORDS[o >> 2];
  if (shift == 0u) return low;
  return (low >> shift) | (WEIGHT_WORDS[(o >> 2) + 1u] << (32u - shift));
}
// The f16 at byte offset o (even), as f32.
float quant_half(uint o) {
  const uint w = WEIGHT_WORDS[o >> 2];
  return unpackHalf2x16((o & 2u) != 0u ? w >> 16 : w).x;
}
// The four bytes of a word, as signed or unsigned integers, and their low and high nibbles.
ivec4 signed_bytes(uint w) { return ivec4(int(w << 24) >> 24, int(w << 16) >> 24, int(w << 8) >> 24, int(w) >> 24); }
uvec4 bytes_of(uint w) { return uvec4(w, w >> 8, w >> 16, w >> 24) & 0xffu; }
vec4 low_nibbles(uint w) { return vec4(uvec4(w, w >> 8, w >> 16, w >> 24) & 0xfu); }
vec4 high_nibbles(uint w) { return vec4(uvec4(w >> 4, w >> 12, w >> 20, w >> 28) & 0xfu); }
// Bits first .. first+3 of v, each as 0 or 1.
vec4 four_bits(uint v, uint first) { return vec4((uvec4(v) >> (uvec4(0u, 1u, 2u, 3u) + first)) & 1u); }

// K-quants (Q4_K, Q5_K): sub-block j's 6-bit scale and min from the 12 scale bytes, given as three words
// (get_scale_min_k4): bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits; scales and mins 4-7
// take their low 4 bits from the nibbles of bytes 8-11 and their top 2 bits from the spare top bits of bytes 0-3
// (scales) and 4-7 (mins).
uvec2 k_scale_min(uvec3 words, uint j) {
  const uint shift = 8u * (j & 3u);
  const uint scales_low = (words.x >> shift) & 0xffu, mins_low = (words.y >> shift) & 0xffu;
  if (j < 4u) return uvec2(scales_low & 63u, mins_low & 63u);
  const uint packed = (words.z >> shift) & 0xffu;
  return uvec2((packed & 15u) | ((scales_low >> 6) << 4), (packed >> 4) | ((mins_low >> 6) << 4));
}

#define WEIGHT_QUANT 1
#define WEIGHT_IS_16BIT 0

#if defined(WEIGHT_Q8_0)
// block_q8_0 { half d; int8 qs[32]; }: w = d · q.
#define QK 32u
#define QBYTES 34u
#define QUNIT 8u
#define QUNIT_HAS_HI 1
float dequant_element(uint b, uint j) { return quant_half(b) * float(int(quant_byte(b + 2u + j) << 24) >> 24); }
void dequant_unit(uint b, uint unit, out vec4 lo, out vec4 hi, out uvec2 at) {
  const float d = quant_half(b);
  // The unit's 8 bytes start word-aligned in every other block, else half-way into a word: three words cover them.
  const uint o = b + 2u + 8u * unit, w = o >> 2;
  uint first = WEIGHT_WORDS[w], second = WEIGHT_WORDS[w + 1u];
  if ((o & 2u) != 0u) {
    const uint third = WEIGHT_WORDS[w + 2u];
    first = (first >> 16) | (second << 16);
    second = (second >> 16) | (third << 16);
  }
  lo = d * vec4(signed_bytes(first));
  hi = d * vec4(signed_bytes(second));
  at = uvec2(8u * unit, 8u * unit + 4u);
}
// The whole block at byte b: its scale d and its 32 int8 q as 8 words (4 to a word, element 4i in word i's low byte).
// Nine word reads cover a block at either alignment (blocks alternate between starting on a word and half-way into
// one), against 14 for its four units read one by one: the one-thread-per-row layout of CPU drivers walks rows a
// block at a time with this and multiplies by d once a block.
#define QBLOCK_WORDS 8u
void dequant_block(uint b, out float d, out uint qs[QBLOCK_WORDS]) {
  const uint w = b >> 2;
  const uint first = WEIGHT_WORDS[w];
  if ((b & 2u) != 0u) {  // d in the high half of the first word, the q word-aligned after it
    d = unpackHalf2x16(first >> 16).x;
    for (uint i = 0u; i < 8u; ++i) qs[i] = WEIGHT_WORDS[w + 1u + i];
  } else {  // d in the low half, each q word straddling two words
    d = unpackHalf2x16(first).x;
    uint low = first;
    for (uint i = 0u; i < 8u; ++i) {
      const uint high = WEIGHT_WORDS[w + 1u + i];
      qs[i] = (low >> 16) | (high << 16);
      low = high;
    }
  }
}

#elif defined(WEIGHT_Q4_0) || defined(WEIGHT_Q4_1)
// block_q4_0 { half d; uint8 qs[16]; }: w = d · (q − 8); block_q4_1 { half d, m; uint8 qs[16]; }: w = d · q + m.
// Byte j of qs holds element j in its low nibble and element j + 16 in its high nibble.
#define QK 32u
#define QUNIT 8u
#define QUNIT_HAS_HI 1
#if defined(WEIGHT_Q4_0)
#define QBYTES 18u
#define Q4_QS 2u
#else
#define QBYTES 20u
#define Q4_QS 4u
#endif
float dequant_element(uint b, uint j) {
  const uint q = (quant_byte(b + Q4_QS + (j & 15u)) >> (j < 16u ? 0u : 4u)) & 15u;
#if defined(WEIGHT_Q4_0)
  return quant_half(b) * float(int(q) - 8);
#else
  return quant_half(b) * float(q) + quant_half(b + 2u);
#endif
}
void dequant_unit(uint b, uint unit, out vec4 lo, out vec4 hi, out uvec2 at) {
  const float d = quant_half(b);
  const uint w = quant_word(b + Q4_QS + 4u * unit);
#if defined(WEIGHT_Q4_0)
  lo = d * (low_nibbles(w) - 8.0);
  hi = d * (high_nibbles(w) - 8.0);
#else
  const float m = quant_half(b + 2u);
  lo = d * low_nibbles(w) + m;
  hi = d * high_nibbles(w) + m;
#endif
  at = uvec2(4u * unit, 16u + 4u * unit);
}

#elif defined(WEIGHT_Q5_0) || defined(WEIGHT_Q5_1)
// block_q5_0 { half d; uint8 qh[4]; uint8 qs[16]; }: w = d · (q − 16); block_q5_1 { half d, m; qh[4]; qs[16]; }:
// w = d · q + m. The low 4 bits of q as in Q4_0; bit j of the 32-bit qh is the fifth bit of element j.
#define QK 32u
#define QUNIT 8u
#define QUNIT_HAS_HI 1
#if defined(WEIGHT_Q5_0)
#define QBYTES 22u
#define Q5_QH 2u
#else
#define QBYTES 24u
#define Q5_QH 4u
#endif
float dequant_element(uint b, uint j) {
  const uint low = (quant_byte(b + Q5_QH + 4u + (j & 15u)) >> (j < 16u ? 0u : 4u)) & 15u;
  const uint q = low | (((quant_word(b + Q5_QH) >> j) & 1u) << 4);
#if defined(WEIGHT_Q5_0)
  return quant_half(b) * float(int(q) - 16);
#else
  return quant_half(b) * float(q) + quant_half(b + 2u);
#endif
}
void dequant_unit(uint b, uint unit, out vec4 lo, out vec4 hi, out uvec2 at) {
  const float d = quant_half(b);
  const uint qh = quant_word(b + Q5_QH);
  const uint w = quant_word(b + Q5_QH + 4u + 4u * unit);
  const vec4 q_lo = low_nibbles(w) + 16.0 * four_bits(qh, 4u * unit);
  const vec4 q_hi = high_nibbles(w) + 16.0 * four_bits(qh, 16u + 4u * unit);
#if defined(WEIGHT_Q5_0)
  lo = d * (q_lo - 16.0);
  hi = d * (q_hi - 16.0);
#else
  const float m = quant_half(b + 2u);
  lo = d * q_lo + m;
  hi = d * q_hi + m;
#endif
  at = uvec2(4u * unit, 16u + 4u * unit);
}

#elif defined(WEIGHT_Q4_K) || defined(WEIGHT_Q5_K)
// block_q4_K { half d, dmin; uint8 scales[12]; uint8 qs[128]; }, block_q5_K the same with uint8 qh[32] before qs.
// 8 sub-blocks of 32 elements, w = d · scale_j · q − dmin · min_j. Elements 64c .. 64c+31 are the low nibbles of
// qs[32c .. 32c+31] (sub-block 2c), elements 64c+32 .. 64c+63 their high nibbles (sub-block 2c+1). Q5_K adds the
// fifth bit of element 64c + l (and 64c + 32 + l) as bit 2c (2c+1) of qh[l].
#define QK 256u
#define QUNIT 8u
#define QUNIT_HAS_HI 1
#if defined(WEIGHT_Q4_K)
#define QBYTES 144u
#define K_QS 16u
#else
#define QBYTES 176u
#define K_QH 16u
#define K_QS 48u
#endif
float dequant_element(uint b, uint j) {
  const uint c = j >> 6, l = j & 31u, high = (j >> 5) & 1u;
  uint q = (quant_byte(b + K_QS + 32u * c + l) >> (4u * high)) & 15u;
#if defined(WEIGHT_Q5_K)
  q |= ((quant_byte(b + K_QH + l) >> (2u * c + high)) & 1u) << 4;
#endif
  const uint w0 = b >> 2;  // K-quant blocks are word-aligned: d and dmin, then the scales in words 1-3
  const vec2 d = unpackHalf2x16(WEIGHT_WORDS[w0]);
  const uvec2 sm = k_scale_min(uvec3(WEIGHT_WORDS[w0 + 1u], WEIGHT_WORDS[w0 + 2u], WEIGHT_WORDS[w0 + 3u]), 2u * c + high);
  return d.x * float(sm.x) * float(q) - d.y * float(sm.y);
}
void dequant_unit(uint b, uint unit, out vec4 lo, out vec4 hi, out uvec2 at) {
  const uint c = unit >> 3, l = 4u * (unit & 7u);
  const uint w0 = b >> 2;
  const vec2 d = unpackHalf2x16(WEIGHT_WORDS[w0]);
  const uvec3 scale_words = uvec3(WEIGHT_WORDS[w0 + 1u], WEIGHT_WORDS[w0 + 2u], WEIGHT_WORDS[w0 + 3u]);
  const uvec2 sm_lo = k_scale_min(scale_words, 2u * c), sm_hi = k_scale_min(scale_words, 2u * c + 1u);
  const uint w = WEIGHT_WORDS[(b + K_QS + 32u * c + l) >> 2];
  vec4 q_lo = low_nibbles(w), q_hi = high_nibbles(w);
#if defined(WEIGHT_Q5_K)
  const uvec4 qh = bytes_of(WEIGHT_WORDS[(b + K_QH + l) >> 2]);
  q_lo += 16.0 * vec4((qh >> (2u * c)) & 1u);
  q_hi += 16.0 * vec4((qh >> (2u * c + 1u)) & 1u);
#endif
  lo = (d.x * float(sm_lo.x)) * q_lo - d.y * float(sm_lo.y);
  hi = (d.x * float(sm_hi.x)) * q_hi - d.y * float(sm_hi.y);
  at = uvec2(64u * c + l, 64u * c + 32u + l);
}

#elif defined(WEIGHT_Q6_K)
// block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }: two halves of 128 elements, w = d · scale ·
// (q − 32) with 16 sub-blocks of 16. In half h, with l in 0..31 and quarter k in 0..3, element 128h + 32k + l takes
// its low 4 bits from ql[64h + 32(k & 1) + l] (low nibble for k < 2, high for k ≥ 2), its top 2 bits from bits 2k,
// 2k+1 of qh[32h + l], and scale scales[8h + l/16 + 2k].
#define QK 256u
#define QBYTES 210u
#define QUNIT 8u
#define QUNIT_HAS_HI 1
float q6_scale(uint b, uint i) { return float(int(quant_byte(b + 192u + i) << 24) >> 24); }
float dequant_element(uint b, uint j) {
  const uint h = j >> 7, k = (j >> 5) & 3u, l = j & 31u;
  const uint low = (quant_byte(b + 64u * h + 32u * (k & 1u) + l) >> (4u * (k >> 1))) & 15u;
  const uint top = (quant_byte(b + 128u + 32u * h + l) >> (2u * k)) & 3u;
  return quant_half(b + 208u) * q6_scale(b, 8u * h + l / 16u + 2u * k) * float(int(low | (top << 4)) - 32);
}
// A unit is 4 consecutive l of one ql half-row: quarter k = (unit >> 3) & 1 in the low nibbles and k + 2 in the high.
void dequant_unit(uint b, uint unit, out vec4 lo, out vec4 hi, out uvec2 at) {
  const uint h = unit >> 4, k = (unit >> 3) & 1u, l = 4u * (unit & 7u);
  const float d = quant_half(b + 208u);
  const uint w = quant_word(b + 64u * h + 32u * k + l);
  const uvec4 qh = bytes_of(quant_word(b + 128u + 32u * h + l));
  const vec4 q_lo = low_nibbles(w) + 16.0 * vec4((qh >> (2u * k)) & 3u) - 32.0;
  const vec4 q_hi = high_nibbles(w) + 16.0 * vec4((qh >> (2u * k + 4u)) & 3u) - 32.0;
  const uint s = 8u * h + l / 16u + 2u * k;
  lo = (d * q6_scale(b, s)) * q_lo;
  hi = (d * q6_scale(b, s + 4u)) * q_hi;
  at = uvec2(128u * h + 32u * k + l, 128u * h + 32u * k + 64u + l);
}

#elif defined(WEIGHT_I8)
// int8 weights, 4 to a word; rows are whole words. The per-row scale is applied to whole dot products by the caller.
#define QK 4u
#define QBYTES 4u
#define QUNIT 4u
#define QUNIT_HAS_HI 0
float dequant_element(uint b, uint j) { return float(int(quant_byte(b + j) << 24) >> 24); }
void dequant_unit(uint b, uint unit, out vec4 lo, out vec4 hi, out uvec2 at) {
  lo = vec4(signed_bytes(WEIGHT_WORDS[b >> 2]));
  hi = vec4(0.0);
  at = uvec2(0u, 0u);
}

#else
#error "dequant.glsl: no WEIGHT_* block format defined"
#endif

#define QUNITS_PER_BLOCK (QK / QUNIT)

float load_weight(uint i) { return dequant_element((i / QK) * QBYTES, i % QK); }

#endif  // DEQUANT_GLSL

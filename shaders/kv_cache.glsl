// The KV cache of one layer as the attention kernels see it: K and V each [batch, kv_heads, capacity, head_dim] in the
// cache dtype chosen by -DKV_F32, -DKV_F16, -DKV_BF16 or -DKV_Q8. A "plane" is the [capacity, head_dim] block of one
// (sequence, kv head); a dispatch binds a window of whole planes. 16-bit caches hold two values per 32-bit word, and
// head_dim is even, so a pair (d, d + 1) with even d always shares one word.
// Q8 (int8 with a scale per 32 values): element e lies in block e / 32 of 9 words, 8 of int8 values (element e in
// byte e % 4 of word e % 32 / 4, little-endian as bytes in memory) and the f32 scale absmax / 127 of the block.
// head_dim is a multiple of 32, so a block is 32 consecutive values of one key's head and never straddles keys.
#ifndef INFERNO_KV_CACHE_GLSL
#define INFERNO_KV_CACHE_GLSL
#include "dtype_load.glsl"

#if defined(KV_F32)
#define KV_WORD float
#elif defined(KV_F16) || defined(KV_BF16) || defined(KV_Q8)
#define KV_WORD uint
#else
#error "define KV_F32, KV_F16, KV_BF16 or KV_Q8"
#endif

// Elements the cache write handles per invocation: a pair, or a whole Q8 block (its scale needs all 32 values).
#if defined(KV_Q8)
#define KV_WRITE_VALUES 32u
#else
#define KV_WRITE_VALUES 2u
#endif

#if defined(KV_Q8)
const uint Q8_BLOCK = 32u, Q8_BLOCK_WORDS = 9u;
uint q8_word(uint element) { return (element >> 5) * Q8_BLOCK_WORDS + ((element & 31u) >> 2); }
uint q8_scale_word(uint element) { return (element >> 5) * Q8_BLOCK_WORDS + 8u; }
// The signed byte `which` (0..3) of a word, as a float.
float q8_byte(uint word, uint which) { return float(bitfieldExtract(int(word), int(which * 8u), 8)); }
vec2 q8_pair(uint word, uint which) { return vec2(q8_byte(word, which), q8_byte(word, which + 1u)); }

// Quantizes one block: words[i] packs values 4i .. 4i + 3 as round-to-nearest-even(value / scale) in -127..127, and
// the returned scale is absmax / 127 (0 for an all-zero block, NaN when a value is NaN: the NaN reaches every value
// read back, as a float cache would keep it).
float q8_quantize(float values[32], out uint words[8]) {
  float absmax = 0.0;
  bool nan_seen = false;
  for (uint i = 0u; i < Q8_BLOCK; ++i) {
    absmax = max(absmax, abs(values[i]));
    nan_seen = nan_seen || isnan(values[i]);
  }
  const float scale = absmax / 127.0;
  const float inverse = absmax > 0.0 ? 127.0 / absmax : 0.0;
  for (uint w = 0u; w < 8u; ++w) {
    uint word = 0u;
    for (uint b = 0u; b < 4u; ++b) {
      const int level = int(clamp(roundEven(values[4u * w + b] * inverse), -127.0, 127.0));
      word |= uint(level & 0xff) << (8u * b);
    }
    words[w] = word;
  }
  return nan_seen ? quiet_nan() : scale;
}

// Stores a quantized block of 32 values at `element` (a multiple of 32) of a cache binding.
#define KV_STORE_BLOCK(cache, element, values) {                                  \
    uint q8_words_[8];                                                            \
    const float q8_scale_ = q8_quantize(values, q8_words_);                       \
    const uint q8_first_ = q8_word(element);                                      \
    for (uint q8_i_ = 0u; q8_i_ < 8u; ++q8_i_) cache[q8_first_ + q8_i_] = q8_words_[q8_i_]; \
    cache[q8_first_ + 8u] = floatBitsToUint(q8_scale_);                           \
  }
#endif

// The elements at `element` and `element + 1` (element even) of a cache binding.
#if defined(KV_F32)
#define KV_LOAD_PAIR(cache, element) vec2(cache[(element)], cache[(element) + 1u])
#elif defined(KV_F16)
#define KV_LOAD_PAIR(cache, element) f16x2_from_word(cache[(element) >> 1])
#elif defined(KV_BF16)
#define KV_LOAD_PAIR(cache, element) bf16x2_from_word(cache[(element) >> 1])
#else
#define KV_LOAD_PAIR(cache, element) \
  (q8_pair(cache[q8_word(element)], (element) & 3u) * uintBitsToFloat(cache[q8_scale_word(element)]))
#endif

// One element of a cache binding.
#if defined(KV_F32)
#define KV_LOAD(cache, element) cache[(element)]
#elif defined(KV_F16)
#define KV_LOAD(cache, element) f16_from_word(cache[(element) >> 1], (element) & 1u)
#elif defined(KV_BF16)
#define KV_LOAD(cache, element) bf16_from_word(cache[(element) >> 1], (element) & 1u)
#else
#define KV_LOAD(cache, element) \
  (q8_byte(cache[q8_word(element)], (element) & 3u) * uintBitsToFloat(cache[q8_scale_word(element)]))
#endif

// Stores a pair (element even), rounding to the cache dtype (Q8 stores whole blocks: KV_STORE_BLOCK).
#if defined(KV_F32)
#define KV_STORE_PAIR(cache, element, value) { cache[(element)] = (value).x; cache[(element) + 1u] = (value).y; }
#elif defined(KV_F16)
#define KV_STORE_PAIR(cache, element, value) cache[(element) >> 1] = pack_f16x2((value).x, (value).y)
#elif defined(KV_BF16)
#define KV_STORE_PAIR(cache, element, value) cache[(element) >> 1] = pack_bf16x2((value).x, (value).y)
#endif

#endif

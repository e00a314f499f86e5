// The KV cache of one layer as the attention kernels see it: K and V each [batch, kv_heads, capacity, head_dim] in the
// cache dtype chosen by -DKV_F32, -DKV_F16 or -DKV_BF16. A "plane" is the [capacity, head_dim] block of one
// (sequence, kv head); a dispatch binds a window of whole planes. 16-bit caches hold two values per 32-bit word, and
// head_dim is even, so a pair (d, d + 1) with even d always shares one word.
#ifndef INFERNO_KV_CACHE_GLSL
#define INFERNO_KV_CACHE_GLSL
#include "dtype_load.glsl"

#if defined(KV_F32)
#define KV_WORD float
#elif defined(KV_F16) || defined(KV_BF16)
#define KV_WORD uint
#else
#error "define KV_F32, KV_F16 or KV_BF16"
#endif

// The elements at `element` and `element + 1` (element even) of a cache binding.
#if defined(KV_F32)
#define KV_LOAD_PAIR(cache, element) vec2(cache[(element)], cache[(element) + 1u])
#elif defined(KV_F16)
#define KV_LOAD_PAIR(cache, element) f16x2_from_word(cache[(element) >> 1])
#else
#define KV_LOAD_PAIR(cache, element) bf16x2_from_word(cache[(element) >> 1])
#endif

// One element of a cache binding.
#if defined(KV_F32)
#define KV_LOAD(cache, element) cache[(element)]
#elif defined(KV_F16)
#define KV_LOAD(cache, element) f16_from_word(cache[(element) >> 1], (element) & 1u)
#else
#define KV_LOAD(cache, element) bf16_from_word(cache[(element) >> 1], (element) & 1u)
#endif

// Stores a pair (element even), rounding to the cache dtype.
#if defined(KV_F32)
#define KV_STORE_PAIR(cache, element, value) { cache[(element)] = (value).x; cache[(element) + 1u] = (value).y; }
#elif defined(KV_F16)
#define KV_STORE_PAIR(cache, element, value) cache[(element) >> 1] = pack_f16x2((value).x, (value).y)
#else
#define KV_STORE_PAIR(cache, element, value) cache[(element) >> 1] = pack_bf16x2((value).x, (value).y)
#endif

#endif

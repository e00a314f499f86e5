// The rotate_half turn of RoPE (transformers' x·cos + rotate_half(x)·sin) for one pair of a head: element i of the
// first half and element i + d/2, turned by the angle whose (cos, sin) is `cs`. Shared by rope.comp and the fused
// RoPE of kv_write.comp, which must agree bit for bit.
#ifndef ROPE_TURN_GLSL
#define ROPE_TURN_GLSL

// (x[i], x[i + d/2]) turned: x'[i] = x[i]·cos − x[i + d/2]·sin, x'[i + d/2] = x[i + d/2]·cos + x[i]·sin.
vec2 rope_turn(float first, float second, vec2 cs) {
  return vec2(first * cs.x - second * cs.y, second * cs.x + first * cs.y);
}

#endif

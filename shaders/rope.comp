#version 450
// Rotary position embedding, rotate_half layout, in place on f32 rows of [heads, head_dim]: dims i and i + d/2 of a
// head turn together by the angle of pair i at the row's position,
//   x'[i] = x[i]·cos − x[i + d/2]·sin,  x'[i + d/2] = x[i + d/2]·cos + x[i]·sin
// (transformers' q·cos + rotate_half(q)·sin). cos/sin come from a host table [positions, d/2, 2].
// One invocation per pair. A position outside the table gives NaN: a visible error rather than a wrong rotation
// or a read past the table.
#extension GL_GOOGLE_include_directive : require
#include "dtype_load.glsl"
#include "rope_turn.glsl"

layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Positions { int positions[]; };
layout(std430, binding = 2) readonly buffer Table { vec2 cos_sin[]; };
layout(push_constant) uniform Push {
  uint rows, heads, head_dim, row_stride;
  uint x_first;          // where row 0 starts in the x binding, in floats
  uint positions_first;  // where row 0's position is in the positions binding
  uint table_positions;
} pc;

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint index = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint half_dim = pc.head_dim / 2u;
  const uint pairs_per_row = pc.heads * half_dim;
  if (index >= pc.rows * pairs_per_row) return;
  const uint row = index / pairs_per_row, in_row = index % pairs_per_row;
  const uint head = in_row / half_dim, i = in_row % half_dim;
  const int position = positions[pc.positions_first + row];
  const uint first = pc.x_first + row * pc.row_stride + head * pc.head_dim + i;
  if (position < 0 || uint(position) >= pc.table_positions) {
    x[first] = quiet_nan();
    x[first + half_dim] = quiet_nan();
    return;
  }
  const vec2 turned = rope_turn(x[first], x[first + half_dim], cos_sin[uint(position) * half_dim + i]);
  x[first] = turned.x;
  x[first + half_dim] = turned.y;
}

#version 450
// Embedding gather from one chunk of the table: out[m, c] = E[ids[m], c] as f32 for the ids that fall in this chunk's
// rows; other rows are left to the dispatches of their own chunks (and ids outside the vocabulary untouched).
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Table { uint weight_words[]; };  // one chunk of E [rows, hidden]
layout(std430, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_rows[]; };
#if defined(WEIGHT_I8)
layout(std430, binding = 3) readonly buffer RowScales { uint scale_words[]; };  // int8 tables: one scale a row
#endif

#include "weight_load.glsl"

layout(push_constant) uniform Push {
  uint hidden;      // columns of the table
  uint first_row;   // the chunk's first row within the table
  uint rows;        // rows of the chunk
  uint m;           // ids (output rows) of this dispatch
  uint ids_offset;  // element of the dispatch's first id within the bound range
  uint out_offset;  // element of its first output within the bound range
  uint scale_offset;  // int8 tables: element of the chunk's first row scale within the bound range
  uint scale_dtype;   // int8 tables: DTYPE_* of the row scales
} pc;

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint i = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= pc.m * pc.hidden) return;
  const uint row = i / pc.hidden, c = i % pc.hidden;
  const int id = ids[pc.ids_offset + row];
  if (id < int(pc.first_row) || id - int(pc.first_row) >= int(pc.rows)) return;
  const uint local_row = uint(id - int(pc.first_row));
  float value = load_weight(local_row * pc.hidden + c);  // block formats: dequantized (dequant.glsl)
#if defined(WEIGHT_I8)
  const uint s = pc.scale_offset + local_row;
  value *= unpack_element(scale_words[element_word(s, pc.scale_dtype)], s, pc.scale_dtype);
#endif
  out_rows[pc.out_offset + i] = value;
}

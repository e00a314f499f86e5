#include "kernels/attention_paged.hpp"

#include <algorithm>
#include <string>

#include "kernels/data_window.hpp"
#include "kernels/shader_registry.hpp"

namespace inferno::kernels {

namespace {

constexpr uint32_t kAttentionGroup = 64;  // keys per chunk, as attention.comp (bit-equal results need the same)
constexpr uint32_t kWriteGroup = 64;
constexpr uint32_t kCombineGroup = 64;
constexpr uint32_t kMaxHeadDim = 256;

void check_shape(const char* kernel, const PagedShape& s) {
  const std::string k = kernel;
  if (s.rows == 0) throw Error(k + ": a step needs at least one row");
  if (s.heads == 0 || s.kv_heads == 0 || s.heads % s.kv_heads != 0)
    throw Error(k + ": heads " + std::to_string(s.heads) + " is not a multiple of kv_heads " + std::to_string(s.kv_heads));
  if (s.head_dim == 0 || s.head_dim % 2 != 0 || s.head_dim > kMaxHeadDim)
    throw Error(k + ": head_dim " + std::to_string(s.head_dim) + " is not an even number from 2 to " +
                std::to_string(kMaxHeadDim));
  if (s.block_size == 0 || s.blocks == 0 || s.table_width == 0 || s.sequences == 0)
    throw Error(k + ": block size, pool blocks, table width and sequences must be positive");
  if (s.table_first < s.rows) throw Error(k + ": the block tables overlap the rows' sequence indices");
}

void check_stride(const char* kernel, const char* what, uint32_t stride, uint64_t width) {
  if (stride < width)
    throw Error(std::string(kernel) + ": " + what + " row stride " + std::to_string(stride) + " is shorter than its " +
                std::to_string(width) + " values");
}

std::string variant(const char* family, KvType type) { return std::string(family) + "_" + kv_type_name(type); }

DataWindow rows_window(const vk::Device& device, const char* kernel, const vk::Buffer& b, uint32_t rows,
                       uint32_t stride, uint32_t column, uint64_t width, bool writes) {
  return data_window(device, kernel, b, uint64_t(column) * 4, ((uint64_t(rows) - 1) * stride + column + width) * 4,
                     writes);
}

vk::Binding whole(const vk::Device& device, const char* kernel, const vk::Buffer& b, uint64_t bytes, bool writes) {
  return data_window(device, kernel, b, 0, bytes, writes).binding;
}

}  // namespace

uint64_t paged_pool_bytes(const PagedShape& s, KvType type) {
  return kv_bytes(type, uint64_t(s.blocks) * s.kv_heads * s.block_size * s.head_dim);
}

uint64_t paged_partial_floats(const PagedShape& s) {
  return s.splits > 1 ? uint64_t(s.rows) * s.heads * s.splits * (s.head_dim + 2) : 0;
}

void record_kv_write_paged(vk::Device& device, vk::Recorder& rec, KvType type, const PagedShape& s,
                           const vk::Buffer& k, uint32_t k_stride, uint32_t k_column, const vk::Buffer& v,
                           uint32_t v_stride, uint32_t v_column, const vk::Buffer& k_pool, const vk::Buffer& v_pool,
                           const vk::Buffer& paging, const vk::Buffer& positions, const KvWriteRope& rope) {
  const char* kernel = "kv_write_paged";
  check_shape(kernel, s);
  check_kv_head_dim(kernel, type, s.head_dim);
  const uint64_t width = uint64_t(s.kv_heads) * s.head_dim, q_width = uint64_t(s.heads) * s.head_dim;
  check_stride(kernel, "k", k_stride, k_column + width);
  check_stride(kernel, "v", v_stride, v_column + width);
  check_stride(kernel, "q", rope.q_stride, rope.q_column + q_width);
  if (rope.table_positions == 0)
    throw Error(std::string(kernel) + ": the cos/sin table '" + rope.cos_sin_table.name() + "' is empty");
  const DataWindow kw = rows_window(device, kernel, k, s.rows, k_stride, k_column, width, false);
  const DataWindow vw = rows_window(device, kernel, v, s.rows, v_stride, v_column, width, false);
  const DataWindow qw = rows_window(device, kernel, rope.q, s.rows, rope.q_stride, rope.q_column, q_width, true);
  const uint64_t pool = paged_pool_bytes(s, type);
  const uint64_t paging_bytes = (uint64_t(s.table_first) + uint64_t(s.sequences) * s.table_width) * 4;
  const uint32_t group_size = s.heads / s.kv_heads;
  struct Push {
    uint32_t rows, kv_heads, head_dim, block_size, table_width, table_first, k_stride, v_stride, q_stride;
    uint32_t k_first, v_first, q_first, group_size, table_positions;
  } push{s.rows, s.kv_heads, s.head_dim, s.block_size, s.table_width, s.table_first, k_stride, v_stride,
         rope.q_stride, kw.first_word, vw.first_word, qw.first_word, group_size, rope.table_positions};
  const uint64_t invocations =
      uint64_t(s.rows) * s.kv_heads * (s.head_dim / kv_write_values(type) + uint64_t(group_size) * (s.head_dim / 2));
  const Grid grid = grid_1d(device, groups_for(invocations, kWriteGroup));
  rec.dispatch(pipeline(device, variant(kernel, type), {kWriteGroup}),
               {kw.binding, vw.binding, whole(device, kernel, k_pool, pool, true),
                whole(device, kernel, v_pool, pool, true), whole(device, kernel, paging, paging_bytes, false),
                whole(device, kernel, positions, uint64_t(s.rows) * 4, false), qw.binding,
                whole(device, kernel, rope.cos_sin_table, uint64_t(rope.table_positions) * s.head_dim * 4, false)},
               push, grid.x, grid.y);
}

void record_attention_paged(vk::Device& device, vk::Recorder& rec, KvType type, const PagedShape& s,
                            const vk::Buffer& q, uint32_t q_stride, const vk::Buffer& k_pool, const vk::Buffer& v_pool,
                            const vk::Buffer& paging, const vk::Buffer& positions, const vk::Buffer& out,
                            const vk::Buffer* partials) {
  const char* kernel = "attention_paged";
  check_shape(kernel, s);
  check_kv_head_dim(kernel, type, s.head_dim);
  if (s.splits == 0) throw Error(std::string(kernel) + ": splits must be at least 1");
  if (s.splits > 1 && (!partials || partials == &out || s.split_keys == 0))
    throw Error(std::string(kernel) + ": split-K needs a partials buffer of its own and keys per split");
  const uint64_t width = uint64_t(s.heads) * s.head_dim;
  check_stride(kernel, "q", q_stride, width);
  const uint32_t out_stride = uint32_t(width);
  const DataWindow qw = rows_window(device, kernel, q, s.rows, q_stride, 0, width, false);
  const DataWindow ow = rows_window(device, kernel, out, s.rows, out_stride, 0, width, true);
  const uint64_t pool = paged_pool_bytes(s, type);
  const uint64_t paging_bytes = (uint64_t(s.table_first) + uint64_t(s.sequences) * s.table_width) * 4;
  const uint64_t partial_floats = paged_partial_floats(s);
  const DataWindow pw = s.splits > 1 ? data_window(device, kernel, *partials, 0, partial_floats * 4, true) : ow;
  struct Push {
    uint32_t rows, kv_heads, head_dim, block_size, table_width, table_first, group_size, q_stride, out_stride;
    uint32_t q_first, out_first;
    float scale;
    uint32_t split_keys, partial_first;
  } push{s.rows, s.kv_heads, s.head_dim, s.block_size, s.table_width, s.table_first, s.heads / s.kv_heads, q_stride,
         out_stride, qw.first_word, ow.first_word, s.scale, s.split_keys, pw.first_word};
  const uint32_t dims_per_invocation = (s.head_dim + kAttentionGroup - 1) / kAttentionGroup;
  const Grid grid = grid_1d(device, uint64_t(s.rows) * s.heads * s.splits);
  rec.dispatch(pipeline(device, variant(kernel, type), {kAttentionGroup, dims_per_invocation, s.splits}),
               {qw.binding, whole(device, kernel, k_pool, pool, false), whole(device, kernel, v_pool, pool, false),
                whole(device, kernel, paging, paging_bytes, false),
                whole(device, kernel, positions, uint64_t(s.rows) * 4, false), ow.binding, pw.binding},
               push, grid.x, grid.y);
  if (s.splits == 1) return;
  vk::Binding partials_in = pw.binding;
  partials_in.writes = false;
  struct CombinePush {
    uint32_t rows, heads, head_dim, splits, out_stride, out_first, partial_first;
  } combine{s.rows, s.heads, s.head_dim, s.splits, out_stride, ow.first_word, pw.first_word};
  const Grid cg = grid_1d(device, groups_for(uint64_t(s.rows) * s.heads * s.head_dim, kCombineGroup));
  rec.dispatch(pipeline(device, "attention_combine", {kCombineGroup}), {partials_in, ow.binding}, combine, cg.x, cg.y);
}

}  // namespace inferno::kernels

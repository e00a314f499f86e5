#include "kernels/attention.hpp"

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/data_window.hpp"
#include "kernels/shader_registry.hpp"

namespace inferno::kernels {

const char* kv_type_name(KvType type) {
  switch (type) {
    case KvType::F32: return "f32";
    case KvType::F16: return "f16";
    case KvType::BF16: return "bf16";
    case KvType::Q8: return "q8";
  }
  return "?";
}

uint64_t kv_bytes(KvType type, uint64_t elements) {
  switch (type) {
    case KvType::F32: return elements * 4;
    case KvType::F16:
    case KvType::BF16: return elements * 2;
    case KvType::Q8: return (elements + 31) / 32 * 36;
  }
  return elements * 4;
}

uint32_t kv_write_values(KvType type) { return type == KvType::Q8 ? 32 : 2; }

void check_kv_head_dim(const char* what, KvType type, uint32_t head_dim) {
  if (type == KvType::Q8 && head_dim % 32 != 0)
    throw Error(std::string(what) + ": the q8 KV cache needs head_dim to be a multiple of 32 (its scale blocks); " +
                "head_dim is " + std::to_string(head_dim) + ", use --kv-dtype f16 or f32");
}

namespace {

constexpr uint32_t kMaxHeadDim = 256;     // attention.comp's q_shared
constexpr uint32_t kAttentionGroup = 64;  // keys per chunk
constexpr uint32_t kWriteGroup = 64;

void check_shape(const char* kernel, const AttentionShape& s) {
  const std::string k = kernel;
  if (s.batch == 0 || s.tokens == 0) throw Error(k + ": batch and tokens must be at least 1");
  if (s.heads == 0 || s.kv_heads == 0 || s.heads % s.kv_heads != 0)
    throw Error(k + ": heads " + std::to_string(s.heads) + " is not a multiple of kv_heads " +
                std::to_string(s.kv_heads));
  if (s.head_dim == 0 || s.head_dim % 2 != 0 || s.head_dim > kMaxHeadDim)
    throw Error(k + ": head_dim " + std::to_string(s.head_dim) + " is not an even number from 2 to " +
                std::to_string(kMaxHeadDim));
  if (uint64_t(s.past) + s.tokens > s.capacity)
    throw Error(k + ": past " + std::to_string(s.past) + " + tokens " + std::to_string(s.tokens) +
                " exceeds the cache capacity " + std::to_string(s.capacity));
}

void check_stride(const char* kernel, const char* what, uint32_t stride, uint64_t width) {
  if (stride < width)
    throw Error(std::string(kernel) + ": " + what + " row stride " + std::to_string(stride) + " is shorter than its " +
                std::to_string(width) + " values");
}

// The shader variant of a family for a cache dtype, e.g. "attention_bf16".
std::string variant(const char* family, KvType type) { return std::string(family) + "_" + kv_type_name(type); }

// The bytes a cache binding starts at a multiple of: the device's offset alignment, and for Q8 also its 36-byte blocks.
uint64_t cache_granule(const vk::Device& device, KvType type) {
  const uint64_t align = device.caps().min_storage_offset_alignment;
  return type == KvType::Q8 ? std::lcm<uint64_t>(align, 36) : align;
}

// Planes of plane_bytes that one cache binding holds wherever it starts (cache_window may put up to granule − 4
// bytes in front of them).
uint64_t cache_planes_per_window(const vk::Device& device, const char* kernel, KvType type, uint64_t plane_bytes) {
  const uint64_t granule = cache_granule(device, type), range = device.caps().max_storage_buffer_range;
  if (granule - 4 + plane_bytes > range)
    throw Error(std::string(kernel) + ": one cache plane of " + std::to_string(plane_bytes) +
                " bytes does not fit one binding (maxStorageBufferRange " + std::to_string(range) + ")");
  return (range - (granule - 4)) / plane_bytes;
}

// A dispatch's share of the cache: planes [first, first + count), each plane the [capacity, head_dim] block of one
// (sequence, kv head), numbered b · kv_heads + kv_head. Whole sequences go together while the cache window and the
// row windows of their activations fit one binding; a sequence whose planes do not fit is split by kv heads.
struct PlaneRange {
  uint32_t first = 0, count = 0;
  uint32_t first_sequence = 0, sequences = 0;
};

std::vector<PlaneRange> plane_ranges(const vk::Device& device, const char* kernel, const AttentionShape& s, KvType type,
                                     uint32_t widest_stride) {
  const uint64_t plane_bytes = kv_bytes(type, uint64_t(s.capacity) * s.head_dim);
  const uint64_t planes_fit = cache_planes_per_window(device, kernel, type, plane_bytes);
  const uint64_t sequences_fit = items_per_window(device, kernel, uint64_t(s.tokens) * widest_stride * 4);
  std::vector<PlaneRange> ranges;
  const uint32_t total = s.batch * s.kv_heads;
  for (uint32_t p = 0; p < total;) {
    uint64_t count;
    if (p % s.kv_heads == 0 && planes_fit >= s.kv_heads)
      count = std::min<uint64_t>({planes_fit / s.kv_heads, sequences_fit, s.batch - p / s.kv_heads}) * s.kv_heads;
    else
      count = std::min<uint64_t>(planes_fit, s.kv_heads - p % s.kv_heads);
    const uint32_t b0 = p / s.kv_heads, b1 = uint32_t((p + count - 1) / s.kv_heads);
    ranges.push_back({p, uint32_t(count), b0, b1 - b0 + 1});
    p += uint32_t(count);
  }
  return ranges;
}

// The rows of the sequences of a range in an activation [batch · tokens, stride] whose rows hold `width` values.
DataWindow row_window(const vk::Device& device, const char* kernel, const vk::Buffer& buffer, const AttentionShape& s,
                      const PlaneRange& r, uint32_t stride, uint64_t width, bool writes, uint32_t column = 0) {
  const uint64_t first_row = uint64_t(r.first_sequence) * s.tokens;
  const uint64_t end_row = first_row + uint64_t(r.sequences) * s.tokens;
  return data_window(device, kernel, buffer, (first_row * stride + column) * 4,
                     ((end_row - 1) * stride + column + width) * 4, writes);
}

DataWindow cache_window(const vk::Device& device, const char* kernel, const vk::Buffer& cache, const AttentionShape& s,
                        KvType type, const PlaneRange& r, bool writes) {
  const uint64_t plane_bytes = kv_bytes(type, uint64_t(s.capacity) * s.head_dim);
  const uint64_t first = r.first * plane_bytes, end = (r.first + uint64_t(r.count)) * plane_bytes;
  // Q8 addresses its 36-byte blocks from the binding's start: the binding begins on a block boundary too.
  const uint64_t granule = cache_granule(device, type);
  DataWindow w = data_window(device, kernel, cache, first / granule * granule, end, writes);
  w.first_word += uint32_t(first % granule / 4);
  return w;
}

// The window's start in cache elements (two per word for 16-bit caches, 32 per 9 words for Q8).
uint32_t cache_first_element(const DataWindow& w, KvType type) {
  switch (type) {
    case KvType::F32: return w.first_word;
    case KvType::F16:
    case KvType::BF16: return w.first_word * 2;
    case KvType::Q8: return w.first_word / 9 * 32;
  }
  return w.first_word;
}

// The push constants of kv_write.comp and attention.comp, field for field.
struct KvWritePush {
  uint32_t tokens, past, kv_heads, head_dim, capacity, k_stride, v_stride;
  uint32_t first_plane, planes, first_row, k_first, v_first, cache_first;
  uint32_t past_slot;
};
struct KvWriteRopePush {  // kv_write.comp with -DROPE
  KvWritePush write;
  uint32_t group_size, q_stride, q_first, positions_first, table_positions;
};
struct AttentionPush {
  uint32_t tokens, past, kv_heads, group_size, head_dim, capacity, q_stride, out_stride;
  uint32_t first_plane, planes, first_row, q_first, out_first, cache_first;
  float scale;
  uint32_t past_slot;
  uint32_t split_keys, partial_first;
};
struct CombinePush {
  uint32_t rows, heads, head_dim, splits, out_stride, out_first, partial_first;
};
constexpr uint32_t kCombineGroup = 64;
constexpr uint32_t kPrefillGroup = 64;  // attention_prefill.comp's workgroup

// attention_prefill.comp's tile: BR query rows and BC keys a chunk, smaller for wide heads so that its shared memory
// (q, k and v tiles in f32, the chunk's weights) stays within 32 KB, the least a device offers.
struct PrefillTile {
  uint32_t rows, keys;
};
PrefillTile prefill_tile(uint32_t head_dim) { return head_dim <= 128 ? PrefillTile{16, 16} : PrefillTile{8, 8}; }

bool use_tiles(const AttentionShape& s) {
  if (s.kernel == AttentionShape::Kernel::Rows) return false;
  if (s.kernel == AttentionShape::Kernel::Tiles) return true;
  return s.splits == 1 && s.tokens > 1;
}

constexpr uint32_t kPastInPush = ~0u;

// kv_start's binding: the batch's first slots, and past after them when it is read at run time.
vk::Binding kv_start_binding(const vk::Device& device, const char* kernel, const vk::Buffer& kv_start,
                             const AttentionShape& s) {
  return data_window(device, kernel, kv_start, 0, (uint64_t(s.batch) + (s.past_at_run_time ? 1 : 0)) * 4, false).binding;
}

}  // namespace

void record_kv_write(vk::Device& device, vk::Recorder& rec, KvType type, const AttentionShape& shape,
                     const vk::Buffer& k, uint32_t k_stride, const vk::Buffer& v, uint32_t v_stride,
                     const vk::Buffer& k_cache, const vk::Buffer& v_cache, const vk::Buffer& kv_start,
                     uint32_t k_column, uint32_t v_column, const KvWriteRope* rope) {
  const char* kernel = rope ? "kv_write_rope" : "kv_write";
  check_shape(kernel, shape);
  check_kv_head_dim(kernel, type, shape.head_dim);
  const uint64_t width = uint64_t(shape.kv_heads) * shape.head_dim;
  check_stride(kernel, "k", k_stride, k_column + width);
  check_stride(kernel, "v", v_stride, v_column + width);
  const uint64_t q_width = uint64_t(shape.heads) * shape.head_dim;
  if (rope) {
    check_stride(kernel, "q", rope->q_stride, rope->q_column + q_width);
    if (rope->table_positions == 0) throw Error(std::string(kernel) + ": the cos/sin table '" +
                                                rope->cos_sin_table.name() + "' is empty");
  }
  const auto& pipe = pipeline(device, variant(kernel, type), {kWriteGroup});
  const vk::Binding starts = kv_start_binding(device, kernel, kv_start, shape);
  const uint32_t widest = std::max({k_stride, v_stride, rope ? rope->q_stride : 0u});
  for (const PlaneRange& r : plane_ranges(device, kernel, shape, type, widest)) {
    const DataWindow kw = row_window(device, kernel, k, shape, r, k_stride, width, false, k_column);
    const DataWindow vw = row_window(device, kernel, v, shape, r, v_stride, width, false, v_column);
    const DataWindow kc = cache_window(device, kernel, k_cache, shape, type, r, true);
    const DataWindow vc = cache_window(device, kernel, v_cache, shape, type, r, true);
    const KvWritePush push{.tokens = shape.tokens,
                           .past = shape.past,
                           .kv_heads = shape.kv_heads,
                           .head_dim = shape.head_dim,
                           .capacity = shape.capacity,
                           .k_stride = k_stride,
                           .v_stride = v_stride,
                           .first_plane = r.first,
                           .planes = r.count,
                           .first_row = r.first_sequence * shape.tokens,
                           .k_first = kw.first_word,
                           .v_first = vw.first_word,
                           .cache_first = cache_first_element(kc, type),
                           .past_slot = shape.past_at_run_time ? shape.batch : kPastInPush};
    const uint64_t rows = uint64_t(r.count) * shape.tokens;
    const uint64_t items = rows * (shape.head_dim / kv_write_values(type));  // cache invocations
    if (!rope) {
      const Grid grid = grid_1d(device, groups_for(items, kWriteGroup));
      rec.dispatch(pipe, {kw.binding, vw.binding, kc.binding, vc.binding, starts}, push, grid.x, grid.y);
      continue;
    }
    // The query heads of this range's planes: every query head is turned by exactly one of the dispatches.
    const uint32_t group_size = shape.heads / shape.kv_heads;
    const DataWindow qw = row_window(device, kernel, rope->q, shape, r, rope->q_stride, q_width, true, rope->q_column);
    const uint64_t first_row = uint64_t(r.first_sequence) * shape.tokens;
    const DataWindow pw = data_window(device, kernel, rope->positions, first_row * 4,
                                      (first_row + uint64_t(r.sequences) * shape.tokens) * 4, false);
    const DataWindow tw = data_window(device, kernel, rope->cos_sin_table, 0,
                                      uint64_t(rope->table_positions) * (shape.head_dim / 2) * 2 * 4, false);
    const KvWriteRopePush rope_push{push, group_size, rope->q_stride, qw.first_word, pw.first_word,
                                    rope->table_positions};
    const Grid grid = grid_1d(device, groups_for(items + rows * group_size * (shape.head_dim / 2), kWriteGroup));
    rec.dispatch(pipe, {kw.binding, vw.binding, kc.binding, vc.binding, starts, qw.binding, pw.binding, tw.binding},
                 rope_push, grid.x, grid.y);
  }
}

uint32_t attention_chunk_keys(const AttentionShape& shape) {
  return use_tiles(shape) ? prefill_tile(shape.head_dim).keys : kAttentionGroup;
}

uint64_t attention_partial_floats(const AttentionShape& shape, uint32_t rows) {
  return shape.splits > 1 ? uint64_t(rows) * shape.heads * shape.splits * (shape.head_dim + 2) : 0;
}

void record_attention(vk::Device& device, vk::Recorder& rec, KvType type, const AttentionShape& shape,
                      const vk::Buffer& q, uint32_t q_stride, const vk::Buffer& k_cache, const vk::Buffer& v_cache,
                      const vk::Buffer& kv_start, const vk::Buffer& out, const vk::Buffer* partials) {
  const char* kernel = "attention";
  check_shape(kernel, shape);
  check_kv_head_dim(kernel, type, shape.head_dim);
  const uint32_t splits = shape.splits;
  if (splits == 0 || splits > shape.capacity)
    throw Error(std::string(kernel) + ": splits " + std::to_string(splits) + " must be 1 .. the capacity " +
                std::to_string(shape.capacity));
  if (splits > 1 && (!partials || partials == &out))
    throw Error(std::string(kernel) + ": split-K needs a partials buffer of its own");
  const uint32_t split_keys = (shape.capacity + splits - 1) / splits;
  const uint64_t partial_row_floats = uint64_t(shape.heads) * splits * (shape.head_dim + 2);
  const uint64_t width = uint64_t(shape.heads) * shape.head_dim;
  check_stride(kernel, "q", q_stride, width);
  const uint32_t out_stride = uint32_t(width);
  const uint32_t group_size = shape.heads / shape.kv_heads;
  const bool tiles = use_tiles(shape);
  if (tiles && splits > 1) throw Error(std::string(kernel) + ": the tiled kernel does not split keys");
  const PrefillTile tile = prefill_tile(shape.head_dim);
  const uint32_t dims_per_invocation = (shape.head_dim + kAttentionGroup - 1) / kAttentionGroup;
  const auto& pipe =
      tiles ? pipeline(device, variant("attention_prefill", type),
                       {kPrefillGroup, tile.rows, tile.keys, shape.head_dim,
                        (tile.rows * shape.head_dim + kPrefillGroup - 1) / kPrefillGroup})
            : pipeline(device, variant(kernel, type), {kAttentionGroup, dims_per_invocation, splits});
  const vk::Binding starts = kv_start_binding(device, kernel, kv_start, shape);
  for (const PlaneRange& r : plane_ranges(device, kernel, shape, type, std::max(q_stride, out_stride))) {
    const DataWindow qw = row_window(device, kernel, q, shape, r, q_stride, width, false);
    const DataWindow ow = row_window(device, kernel, out, shape, r, out_stride, width, true);
    const DataWindow kc = cache_window(device, kernel, k_cache, shape, type, r, false);
    const DataWindow vc = cache_window(device, kernel, v_cache, shape, type, r, false);
    const AttentionPush push{.tokens = shape.tokens,
                             .past = shape.past,
                             .kv_heads = shape.kv_heads,
                             .group_size = group_size,
                             .head_dim = shape.head_dim,
                             .capacity = shape.capacity,
                             .q_stride = q_stride,
                             .out_stride = out_stride,
                             .first_plane = r.first,
                             .planes = r.count,
                             .first_row = r.first_sequence * shape.tokens,
                             .q_first = qw.first_word,
                             .out_first = ow.first_word,
                             .cache_first = cache_first_element(kc, type),
                             .scale = shape.scale,
                             .past_slot = shape.past_at_run_time ? shape.batch : kPastInPush,
                             .split_keys = split_keys,
                             .partial_first = 0};
    if (tiles) {
      const Grid grid = grid_1d(device, uint64_t(r.count) * group_size * groups_for(shape.tokens, tile.rows));
      rec.dispatch(pipe, {qw.binding, kc.binding, vc.binding, starts, ow.binding}, push, grid.x, grid.y);
      continue;
    }
    const Grid grid = grid_1d(device, uint64_t(r.count) * group_size * shape.tokens * splits);
    if (splits == 1) {
      rec.dispatch(pipe, {qw.binding, kc.binding, vc.binding, starts, ow.binding, ow.binding}, push, grid.x, grid.y);
      continue;
    }
    // The range's rows of partials, written by the split workgroups, then merged into out.
    const uint64_t first_row = uint64_t(r.first_sequence) * shape.tokens, rows = uint64_t(r.sequences) * shape.tokens;
    const DataWindow pw = data_window(device, kernel, *partials, first_row * partial_row_floats * 4,
                                      (first_row + rows) * partial_row_floats * 4, true);
    AttentionPush split_push = push;
    split_push.partial_first = pw.first_word;
    rec.dispatch(pipe, {qw.binding, kc.binding, vc.binding, starts, ow.binding, pw.binding}, split_push, grid.x, grid.y);
    vk::Binding partials_in = pw.binding;  // the same window, read by the combine
    partials_in.writes = false;
    const CombinePush combine{uint32_t(rows), shape.heads, shape.head_dim, splits, out_stride, ow.first_word, pw.first_word};
    const Grid cg = grid_1d(device, groups_for(rows * shape.heads * shape.head_dim, kCombineGroup));
    rec.dispatch(pipeline(device, "attention_combine", {kCombineGroup}), {partials_in, ow.binding}, combine, cg.x, cg.y);
  }
}

}  // namespace inferno::kernels

#include "model/paged_kv_cache.hpp"

#include <algorithm>
#include <array>
#include <numeric>
#include <string>

#include "util/error.hpp"

namespace inferno::model {

uint64_t PagedKvCache::bytes_per_block(const LlamaHyper& h, uint32_t block_size, kernels::KvType type) {
  return 2ull * h.layers * kernels::kv_bytes(type, uint64_t(h.kv_heads) * block_size * h.head_dim);
}

PagedKvCache::PagedKvCache(vk::Device& device, const LlamaHyper& h, uint32_t blocks, uint32_t block_size,
                           kernels::KvType type)
    : PagedKvCache(std::span<vk::Device* const>(std::array<vk::Device*, 1>{&device}),
                   std::span<const uint32_t>(std::array<uint32_t, 1>{h.layers}), h, blocks, block_size, type) {}

PagedKvCache::PagedKvCache(std::span<vk::Device* const> devices, std::span<const uint32_t> layers_per_device,
                           const LlamaHyper& h, uint32_t blocks, uint32_t block_size, kernels::KvType type)
    : block_size_(block_size), type_(type), refs_(blocks, 0), entries_(blocks) {
  if (blocks == 0 || block_size == 0) throw Error("paged KV cache: blocks and block size must be positive");
  if (devices.size() != layers_per_device.size() ||
      std::accumulate(layers_per_device.begin(), layers_per_device.end(), uint64_t(0)) != h.layers)
    throw Error("paged KV cache: the layers per device do not add up to the model's " + std::to_string(h.layers));
  kernels::check_kv_head_dim("paged KV cache", type, h.head_dim);
  const uint64_t per_layer = kernels::kv_bytes(type, uint64_t(blocks) * h.kv_heads * block_size * h.head_dim);
  for (size_t d = 0; d < devices.size(); ++d) {
    vk::Device& device = *devices[d];
    if (layers_per_device[d] > 0 && per_layer > device.caps().max_storage_buffer_range)
      throw Error("paged KV cache: " + std::to_string(per_layer) + " bytes per layer for " + std::to_string(blocks) +
                  " blocks exceed the " + std::to_string(device.caps().max_storage_buffer_range) +
                  "-byte storage buffer range of " + device.label() + "; use a smaller --kv-budget");
    for (uint32_t i = 0; i < layers_per_device[d]; ++i) {
      const std::string l = std::to_string(k_.size());
      k_.emplace_back(device, per_layer, vk::MemoryKind::Device, "kv_pool.k." + l);
      v_.emplace_back(device, per_layer, vk::MemoryKind::Device, "kv_pool.v." + l);
    }
  }
  free_.reserve(blocks);
  for (uint32_t b = blocks; b-- > 0;) free_.push_back(b);  // handed out from block 0 up
}

uint64_t PagedKvCache::bytes() const {
  uint64_t total = 0;
  for (size_t i = 0; i < k_.size(); ++i) total += k_[i].allocated_bytes() + v_[i].allocated_bytes();
  return total;
}

std::optional<uint32_t> PagedKvCache::allocate() {
  uint32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (cached_unused_ > 0) {
    // The least recently used published block nobody references.
    uint64_t oldest = UINT64_MAX;
    block = 0;
    for (uint32_t b = 0; b < blocks(); ++b)
      if (refs_[b] == 0 && !entries_[b].tokens.empty() && entries_[b].last_used < oldest) {
        oldest = entries_[b].last_used;
        block = b;
      }
    forget(block);
    --cached_unused_;
  } else {
    return std::nullopt;
  }
  refs_[block] = 1;
  entries_[block].last_used = ++clock_;
  return block;
}

void PagedKvCache::release(uint32_t block) {
  if (block >= blocks() || refs_[block] == 0) throw Error("paged KV cache: block " + std::to_string(block) + " released twice");
  entries_[block].last_used = ++clock_;
  if (--refs_[block] > 0) return;
  if (entries_[block].tokens.empty())
    free_.push_back(block);
  else
    ++cached_unused_;
}

uint64_t PagedKvCache::chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
  // FNV-1a over the parent hash and the tokens, then a final mix (splitmix64's) so that chains spread in the map.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](uint64_t word) {
    for (int i = 0; i < 8; ++i) {
      h ^= (word >> (8 * i)) & 0xff;
      h *= 0x100000001b3ull;
    }
  };
  mix(parent);
  for (int32_t t : tokens) mix(uint32_t(t));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h == 0 ? 1 : h;  // 0 is "no parent"
}

std::optional<uint32_t> PagedKvCache::lookup(uint64_t parent, std::span<const int32_t> tokens) {
  const auto it = by_hash_.find(chain_hash(parent, tokens));
  if (it == by_hash_.end()) return std::nullopt;
  const uint32_t block = it->second;
  Entry& e = entries_[block];
  if (e.parent != parent || !std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin(), tokens.end()))
    return std::nullopt;
  if (refs_[block]++ == 0) --cached_unused_;
  e.last_used = ++clock_;
  return block;
}

void PagedKvCache::publish(uint32_t block, uint64_t parent, std::span<const int32_t> tokens) {
  if (block >= blocks() || refs_[block] == 0) throw Error("paged KV cache: publishing a block nobody holds");
  if (tokens.size() != block_size_) throw Error("paged KV cache: only full blocks can be published");
  Entry& e = entries_[block];
  if (!e.tokens.empty()) return;
  const uint64_t hash = chain_hash(parent, tokens);
  if (by_hash_.count(hash)) return;  // the same chain computed twice (two sequences prefilled it together)
  e.hash = hash;
  e.parent = parent;
  e.tokens.assign(tokens.begin(), tokens.end());
  by_hash_.emplace(hash, block);
}

void PagedKvCache::forget(uint32_t block) {
  Entry& e = entries_[block];
  by_hash_.erase(e.hash);
  e = {};
}

}  // namespace inferno::model

#pragma once
// The paged KV cache: one device pool of fixed-size blocks per layer (K and V), shared by every sequence, and the
// host's bookkeeping of those blocks: reference counts, a free list, and the prefix cache.
//
// Prefix cache: a full block whose K/V are computed can be published under the hash of its tokens and of everything
// before them (the parent block's hash). A new sequence whose prompt starts with published blocks takes references to
// them instead of prefilling those tokens again. A block nobody references stays cached until the pool is short;
// then the least recently used one is evicted. A lookup compares the block's tokens and its parent hash, so a hash
// collision can never hand out wrong K/V.
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "kernels/attention.hpp"
#include "model/llama.hpp"
#include "vk/buffer.hpp"

namespace inferno::model {

class PagedKvCache {
 public:
  static constexpr uint32_t kDefaultBlockSize = 16;

  PagedKvCache(vk::Device& device, const LlamaHyper& hyper, uint32_t blocks, uint32_t block_size, kernels::KvType type);
  // A pool whose layers lie on several devices (a model split over them): layers_per_device[i] consecutive layers on
  // devices[i], summing to hyper.layers. Every device holds the same blocks of its own layers, so one block table
  // (and this one bookkeeping) serves them all.
  PagedKvCache(std::span<vk::Device* const> devices, std::span<const uint32_t> layers_per_device,
               const LlamaHyper& hyper, uint32_t blocks, uint32_t block_size, kernels::KvType type);

  // Device bytes one block takes over all layers (K and V).
  static uint64_t bytes_per_block(const LlamaHyper& hyper, uint32_t block_size, kernels::KvType type);

  uint32_t blocks() const { return uint32_t(refs_.size()); }
  uint32_t block_size() const { return block_size_; }
  kernels::KvType type() const { return type_; }
  // Layer `layer` of the model (not of a stage), on the device that holds it.
  const vk::Buffer& k(uint32_t layer) const { return k_[layer]; }
  const vk::Buffer& v(uint32_t layer) const { return v_[layer]; }
  uint64_t bytes() const;  // device bytes held

  // Blocks a new sequence could take now: free ones and cached ones nobody references.
  uint32_t available() const { return uint32_t(free_.size()) + cached_unused_; }
  // Blocks referenced by some sequence.
  uint32_t in_use() const { return blocks() - available(); }
  // A block for a sequence (reference count 1): a free one, else the least recently used cached one (evicted from
  // the prefix cache). nullopt when every block is in use.
  std::optional<uint32_t> allocate();
  // Drops a reference. A block nobody references goes back to the free list, or stays in the prefix cache when it
  // was published there.
  void release(uint32_t block);

  // The hash of a full block of tokens after the blocks whose hash is `parent` (0 for the first block).
  static uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens);
  // The published block with this parent and these tokens, with a reference taken; nullopt when there is none.
  std::optional<uint32_t> lookup(uint64_t parent, std::span<const int32_t> tokens);
  // Publishes a full block whose K/V are computed (the caller holds a reference). A block already published, or a
  // chain already held by another block, is left as it is.
  void publish(uint32_t block, uint64_t parent, std::span<const int32_t> tokens);
  uint32_t cached_blocks() const { return uint32_t(by_hash_.size()); }  // published blocks, referenced or not

 private:
  struct Entry {
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;  // empty: not published
    uint64_t last_used = 0;
  };
  void forget(uint32_t block);  // takes a published block out of the prefix cache

  uint32_t block_size_;
  kernels::KvType type_;
  std::vector<vk::Buffer> k_, v_;
  std::vector<uint32_t> refs_;
  std::vector<uint32_t> free_;  // unreferenced, unpublished
  std::vector<Entry> entries_;
  std::unordered_map<uint64_t, uint32_t> by_hash_;
  uint32_t cached_unused_ = 0;  // published blocks nobody references
  uint64_t clock_ = 0;
};

}  // namespace inferno::model

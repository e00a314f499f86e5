#pragma once
// Where a model's parts go when its layers are split across devices, and whether they fit: pure arithmetic on byte
// counts read from the checkpoint's headers, so a model can be planned (and refused) before any weight is read.
// Layers are contiguous per device: the embedding sits on the first device, the final norm and lm_head on the last,
// and each device holds its layers' weights, their KV cache, and activations for the rows of one step.
#include <cstdint>
#include <string>
#include <vector>

namespace inferno::model {

struct PlanCosts {
  std::vector<uint64_t> layer_bytes;  // weights of each layer
  uint64_t embedding_bytes = 0;       // the embedding (and any tensor of no layer)
  uint64_t head_bytes = 0;            // final norm + lm_head (a tied lm_head: the embedding matrix, counted here too)
  bool tied = false;                  // lm_head is the embedding: one matrix when both sit on the same device
  uint64_t tied_matrix_bytes = 0;     // that matrix, not counted twice on one device
  uint64_t kv_bytes_per_layer = 0;    // K and V of one layer for the planned context and batch
  uint64_t kv_bytes_per_token = 0;    // K and V of one token over all layers (q8: 1.125 bytes a value, f16: 2)
  uint64_t per_device_bytes = 0;      // activations scratch + RoPE table + hidden-state transfer buffers, each device
  uint64_t logits_bytes = 0;          // logits on the device with the head
};

struct StagePlan {
  uint32_t first = 0, last = 0;  // layers [first, last)
  bool embedding = false, head = false;
  uint64_t weight_bytes = 0, kv_bytes = 0, activation_bytes = 0;
  uint64_t available = 0;
  uint64_t total() const { return weight_bytes + kv_bytes + activation_bytes; }
  bool fits() const { return total() <= available; }
};

// Layers per device in proportion to what each has left after its fixed parts (embedding, head, activations): every
// device then fills about the same share of its memory. Sums to the layer count.
std::vector<uint32_t> auto_split(const PlanCosts& costs, const std::vector<uint64_t>& available);
// The stages of a split (layers per device, summing to the layer count; a device may hold 0 layers).
std::vector<StagePlan> plan_stages(const PlanCosts& costs, const std::vector<uint32_t>& split,
                                   const std::vector<uint64_t>& available);
bool all_fit(const std::vector<StagePlan>& stages);

// "40,40"
std::string split_text(const std::vector<uint32_t>& split);
// "auto" → empty; "N1,N2,..." → the counts. Throws naming --split on anything else.
std::vector<uint32_t> parse_split(const std::string& text);
// "80G,80G" (K, M, G, T: powers of 1024; a plain number: bytes) → bytes. Throws naming --device-memory.
std::vector<uint64_t> parse_memory_sizes(const std::string& text);

}  // namespace inferno::model

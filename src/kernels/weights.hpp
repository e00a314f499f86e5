#pragma once
// A weight matrix on the device, in the dtype or block format it had on disk, split by rows into chunks so that each
// chunk fits one storage-buffer binding (maxStorageBufferRange: 128 MiB on lavapipe; a 128K-vocabulary embedding is
// larger) and one allocation. Kernels that read weights loop over the chunks.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vk/buffer.hpp"
#include "vk/device.hpp"
#include "vk/recorder.hpp"

namespace inferno::kernels {

// F32/F16/BF16: plain floats. Q8_0 ... Q6_K: ggml's block formats (ggml-common.h), each block a fixed number of
// elements along a row with its own scales. I8: int8 weights with one scale per row (DeviceMatrix::row_scales).
enum class WeightType { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, I8 };
const char* weight_type_name(WeightType);  // "f32", "q4_k", "i8", ...: also the suffix of the kernel variants
bool is_float_type(WeightType);            // F32, F16, BF16
// Bytes of one element of a float dtype. Throws for block formats and I8, whose rows are sized by weight_row_bytes.
uint32_t weight_type_bytes(WeightType);
// Elements and bytes of one block: 1 and the element size for floats; 32 or 256 elements for ggml's formats; I8 is
// kept in words of 4 elements (rows must be whole words so that kernels read them as packed 32-bit words).
uint32_t weight_block_elements(WeightType);
uint32_t weight_block_bytes(WeightType);
// Bytes of one row of `cols` elements. Throws, naming `tensor` when given, when cols is not a whole number of blocks.
uint64_t weight_row_bytes(WeightType type, uint64_t cols, std::string_view tensor = {});

struct WeightChunk {
  vk::Buffer buffer;
  uint32_t first_row = 0;
  uint32_t rows = 0;
  // Where the chunk's first row starts inside `buffer`: 0 for memory of its own; for a chunk imported in place from a
  // file mapping, its distance from the imported page boundary (a multiple of the storage-buffer offset alignment).
  uint64_t offset = 0;
  // The chunk's rows bound to a kernel (the binding starts at `offset`).
  vk::Binding binding() const { return vk::in(buffer, offset); }
};

// A 1-D weight vector (norm weights, biases, per-row scales) in its own float dtype.
struct DeviceVector {
  std::string name;
  WeightType type = WeightType::F32;
  uint32_t size = 0;
  vk::Buffer buffer;
};

struct DeviceMatrix {
  std::string name;
  WeightType type = WeightType::F32;
  uint32_t rows = 0, cols = 0;  // HF layout [out, in], row-major
  std::vector<WeightChunk> chunks;
  std::optional<DeviceVector> row_scales;  // I8 only: w[r][c] = q[r][c] · row_scales[r], in F32, F16 or BF16
  uint64_t row_bytes() const { return weight_row_bytes(type, cols, name); }
  // The bytes the device holds: rows · row_bytes (the on-disk bytes of the weight), plus the row scales if any.
  uint64_t bytes() const;
};

// Uploads a row-major [rows, cols] matrix of `type` from host memory (e.g. a memory-mapped file), chunked by rows so
// that every chunk fits a binding; block formats keep whole blocks (a row is a whole number of blocks). I8 weights
// need their scales: use upload_int8_matrix. `max_chunk_bytes` 0 = the device's limits; tests pass a small value to
// force chunks. `on_bytes` is told of each uploaded piece (progress bars).
DeviceMatrix upload_matrix(vk::Device& device, std::string name, WeightType type, uint32_t rows, uint32_t cols,
                           std::span<const std::byte> data, uint64_t max_chunk_bytes = 0,
                           const std::function<void(uint64_t)>& on_bytes = {});
// Int8 weights [rows, cols] (cols a multiple of 4) with one scale per row in `scale_type` (F32, F16 or BF16), as
// compressed-tensors stores them (`weight` I8 [N, K], `weight_scale` BF16 [N, 1]).
DeviceMatrix upload_int8_matrix(vk::Device& device, std::string name, uint32_t rows, uint32_t cols,
                                std::span<const std::byte> weights, WeightType scale_type,
                                std::span<const std::byte> scales, uint64_t max_chunk_bytes = 0,
                                const std::function<void(uint64_t)>& on_bytes = {});

DeviceVector upload_vector(vk::Device& device, std::string name, WeightType type, uint32_t size,
                           std::span<const std::byte> data);

// The bytes of part `i` of a stacked upload, asked for in order; the span must stay valid until the next call (a part
// made on the host, such as GGUF's reordered Q rows, is then held one at a time).
using PartBytes = std::function<std::span<const std::byte>(size_t i)>;
// One matrix holding the rows of parts [part_rows[i], cols] of one type one after the other (q | k | v), each part
// uploaded straight into its rows of the stacked chunks: no part is ever on the device on its own. Chunked as
// upload_matrix chunks. I8 parts need their scales stacked beside them (upload_stacked_vector).
DeviceMatrix upload_stacked_matrix(vk::Device& device, std::string name, WeightType type, uint32_t cols,
                                   std::span<const uint32_t> part_rows, const PartBytes& part_bytes,
                                   uint64_t max_chunk_bytes = 0, const std::function<void(uint64_t)>& on_bytes = {});
// One vector of the parts' elements one after the other (all of `type`), uploaded straight into place.
DeviceVector upload_stacked_vector(vk::Device& device, std::string name, WeightType type,
                                   std::span<const uint32_t> part_sizes, const PartBytes& part_bytes);

// Bytes of a file mapping that the device may read in place.
struct MappedBytes {
  std::span<const std::byte> bytes;    // the tensor's bytes
  std::span<const std::byte> mapping;  // the whole mapping they lie in (it starts on a page)
  std::shared_ptr<const void> owner;   // keeps the mapping alive while the device reads it
};
// The matrix whose rows are those of `parts` one after the other, each [part_rows[i], cols] of `type`, read by the
// kernels in place from the mappings (VK_EXT_external_memory_host): each chunk imports the pages under its rows, and
// parts that follow one another in a file share chunks as one range. Nothing is copied. nullopt (and nothing held)
// when a chunk cannot be imported: its rows do not start on the device's storage-buffer offset alignment from a page
// boundary (kernels read whole 32-bit words from a binding's start), its pages lie outside the mapping, or the driver
// refuses. Chunked as upload_matrix chunks; the I8 row scales are for the caller to add.
std::optional<DeviceMatrix> import_matrix(vk::Device& device, std::string name, WeightType type, uint32_t cols,
                                          std::span<const uint32_t> part_rows, std::span<const MappedBytes> parts,
                                          uint64_t max_chunk_bytes = 0);

// Whether matrices can be stacked by rows into one: the same type and columns (and row-scale dtype for I8).
bool can_stack_rows(std::span<const DeviceMatrix* const> parts);
// One matrix holding the rows of `parts` one after the other, copied on the device (the parts are freed after): the
// projections that read one input (q, k, v; gate, up) then take one dispatch instead of several. Chunked by rows as
// upload_matrix chunks; I8 row scales are stacked too. Throws unless can_stack_rows.
DeviceMatrix stack_rows(vk::Device& device, std::string name, std::vector<DeviceMatrix> parts,
                        uint64_t max_chunk_bytes = 0);
// One vector holding `parts` one after the other (all of one dtype), copied on the device.
DeviceVector stack_vectors(vk::Device& device, std::string name, std::span<const DeviceVector* const> parts);

// How many rows of `row_bytes` one chunk of a matrix with `cols` columns holds: within one binding and one allocation
// (and `max_chunk_bytes` when nonzero), and few enough that kernels index its elements with 32-bit integers. Throws
// naming the weight when not even one row fits.
uint32_t matrix_rows_per_chunk(const vk::Device& device, const std::string& name, uint64_t row_bytes, uint32_t cols,
                               uint64_t max_chunk_bytes);

// For kernel wrappers: the DTYPE_* code (shaders/weight_load.glsl) of a float dtype, read at run time (biases, norm
// weights, row scales); throws for other types.
uint32_t dtype_code(WeightType type);
// Throws naming `what` unless an I8 matrix has one float scale per row (other types pass).
void check_row_scales(const DeviceMatrix& w, const std::string& what);
// The push-constant dtype code of "no bias" in the linear kernels (shaders/linear_common.glsl's NO_BIAS).
inline constexpr uint32_t kNoBias = 0xffffffffu;
// The binding of the bias entries of one chunk's rows; `first_element` and `dtype` (a DTYPE_* code) are set for the
// kernel. Without a bias the kernels still declare the binding: the chunk's weights stand in, unread, and `dtype`
// becomes kNoBias.
vk::Binding bias_binding(const vk::Device& device, const DeviceVector* bias, const WeightChunk& chunk,
                         uint32_t& first_element, uint32_t& dtype);
// The binding of the row scales of one chunk of an I8 matrix; `first_element` is set to the chunk's first scale
// within the bound range.
vk::Binding row_scale_binding(const vk::Device& device, const DeviceMatrix& w, const WeightChunk& chunk,
                              uint32_t& first_element);

// Part of a buffer bound to a kernel: bindings must start at a multiple of the device's storage offset alignment, so
// the binding starts at or before the first byte wanted and the kernel skips `first_element` elements of it.
struct BindingWindow {
  uint64_t offset = 0, range = 0;
  uint32_t first_element = 0;
};
// Bytes [first_byte, end_byte) of `buffer`, seen as elements of `element_bytes` (the range rounded up to whole words).
BindingWindow binding_window(const vk::Device& device, const vk::Buffer& buffer, uint64_t first_byte, uint64_t end_byte,
                             uint32_t element_bytes);
// How many rows of an activation (rows `stride_bytes` apart, each `row_bytes` long) one binding of at most
// `max_binding_bytes` (0 = the device's maxStorageBufferRange) can hold whatever its alignment; throws naming `what`
// when not even one row fits.
uint32_t rows_per_binding(const vk::Device& device, uint64_t max_binding_bytes, uint64_t stride_bytes, uint64_t row_bytes,
                          const std::string& what);

}  // namespace inferno::kernels

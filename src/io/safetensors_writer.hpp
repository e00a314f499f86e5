#pragma once
// Writing safetensors files in the layout Hugging Face's own writer uses: header padded with spaces so the data
// section starts on an 8-byte boundary, offsets relative to the data section. Tensors are stored in the order given.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "io/dtype.hpp"

namespace inferno::io {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;  // exactly elements × dtype_size bytes, little-endian
  // Instead of `bytes`: fills the tensor's bytes when it is written, so that a large checkpoint can be made one tensor
  // at a time (the random-checkpoint maker) without ever holding all of it.
  std::function<void(std::span<std::byte>)> produce;
  // Instead of either: leave the bytes unwritten, a hole of the file that reads as zeros and takes no disk space on
  // file systems with sparse files (headers of a real checkpoint's size, for planning without the weights).
  bool hole = false;
};

// Throws inferno::Error naming the file or the tensor on a bad tensor (size mismatch, duplicate or reserved name,
// negative dimension) or a failed write. The file appears complete or not at all: it is written beside the target
// and renamed over it.
// `data_alignment` (a multiple of 8): where the data section starts; 64 puts every tensor whose offset is a multiple
// of 64 on 64 bytes in the file, where a device sharing memory with the host can read it in place.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {}, uint64_t data_alignment = 8);

}  // namespace inferno::io

#pragma once
// A whole file mapped read-only into memory. Weights are read straight from the mapping (the page cache), so loading
// a model never holds a second copy of it in host memory.
#include <cstddef>
#include <filesystem>
#include <span>

namespace inferno::io {

class MappedFile {
 public:
  // Throws inferno::Error naming the path when the file is missing, unreadable, not a regular file, or empty.
  explicit MappedFile(std::filesystem::path path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void unmap() noexcept;

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace inferno::io

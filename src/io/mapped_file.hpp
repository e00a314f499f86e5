#pragma once
// A whole file mapped read-only into memory. Weights are read straight from the mapping (the page cache), so loading
// a model never holds a second copy of it in host memory.
//
// A file truncated while it is mapped turns reads of the lost pages into SIGBUS. Every mapping is registered with
// a SIGBUS handler that maps zero pages over the lost part and marks the mapping as cut short, so the read that
// faulted completes (reading zeros) and check_whole() then reports the file by name. See mapped_file.cpp for why
// this rather than a copy through pread() or a sigsetjmp around the copy.
#include <cstddef>
#include <filesystem>
#include <span>

#include "io/regular_file.hpp"

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

  // Throws inferno::Error naming the file when it is shorter now than when it was mapped, or when a read of the
  // mapping already ran past its new end (those bytes read as zeros). Call it before handing out bytes and after
  // they have been copied away, so that what was copied is known to be the file's.
  void check_whole() const;

 private:
  void unmap() noexcept;

  std::filesystem::path path_;
  int fd_ = -1;  // kept open to fstat the file again
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  int guard_slot_ = -1;  // this mapping's entry in the SIGBUS handler's table; -1: not guarded
};

}  // namespace inferno::io

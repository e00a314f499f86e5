#pragma once
// Opening a file the engine reads (weights, configs, tokenizers, text): only a regular file is opened. A FIFO would
// block open() until a writer comes and a device such as /dev/zero never ends, so both are refused by name before a
// single byte is read, and every read is bounded.
#include <cstdint>
#include <filesystem>
#include <string>

namespace inferno::io {

// Text and JSON side files the engine reads whole (tokenizer.json is ~10 MB for a 128k vocabulary, an index of a
// 405B model ~100 KB): anything larger is not what it claims to be.
inline constexpr uint64_t kMaxTextFileBytes = 100'000'000;

// An open descriptor of a regular file, closed when it goes.
class RegularFile {
 public:
  // Opens with O_NONBLOCK (so a FIFO cannot block the open), then refuses anything fstat does not call a regular
  // file. Throws inferno::Error "PATH: cannot open: REASON" or "PATH: not a regular file (a FIFO)".
  explicit RegularFile(const std::filesystem::path& path);
  ~RegularFile();
  RegularFile(RegularFile&& other) noexcept;
  RegularFile& operator=(RegularFile&&) = delete;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }  // at open time
  // The size now (fstat again): a file truncated under a reader shows here first.
  uint64_t current_size() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The whole file as bytes, refused (naming the path) when it is not a regular file or holds more than max_bytes.
std::string read_regular_file(const std::filesystem::path& path, uint64_t max_bytes = kMaxTextFileBytes);

// A name taken from a file (a tensor name, a JSON key) as it appears in messages: in quotes, cut to 200 bytes (on
// a UTF-8 character boundary) with "…", so a hostile 5 MB name cannot flood the terminal or a log.
std::string quoted_name(std::string_view name);

}  // namespace inferno::io

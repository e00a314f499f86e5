#include "io/safetensors_writer.hpp"

#include <simdjson.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "io/safetensors.hpp"
#include "util/error.hpp"

namespace inferno::io {

namespace {

// A JSON string literal. Names must be valid UTF-8, which JSON (and the reader) requires.
std::string json_quote(std::string_view text, const std::string& what) {
  if (!simdjson::validate_utf8(text.data(), text.size())) fail(what + " is not valid UTF-8");
  std::string out = "\"";
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", unsigned(byte));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Removes the half-written file unless the write got to the end.
struct PartialFile {
  std::filesystem::path path;
  std::FILE* file = nullptr;
  bool done = false;
  ~PartialFile() {
    if (file) std::fclose(file);
    if (!done) {
      std::error_code ignored;
      std::filesystem::remove(path, ignored);
    }
  }
};

// The file is written beside the target and renamed over it, which replaces whatever the name stands for: only a
// regular file (or nothing) may be replaced, so that a symlink, a FIFO or a device node (as root, /dev/full) is
// refused by name instead. lstat, not stat: a symlink is refused even when it points at a regular file.
void refuse_unless_regular_or_absent(const std::filesystem::path& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return;
    fail(path.string() + ": cannot stat: " + std::strerror(errno));
  }
  if (S_ISREG(info.st_mode)) return;
  const char* kind = S_ISLNK(info.st_mode) ? "a symbolic link" : S_ISDIR(info.st_mode) ? "a directory"
                   : S_ISFIFO(info.st_mode) ? "a FIFO" : S_ISCHR(info.st_mode) || S_ISBLK(info.st_mode) ? "a device"
                   : "not a regular file";
  fail(path.string() + ": exists and is " + kind + "; refusing to replace it (only a regular file is overwritten)");
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata, uint64_t data_alignment) {
  const std::string file = path.string();
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      header += json_quote(key, file + ": metadata key '" + key + "'") + ":" +
                json_quote(value, file + ": metadata value of '" + key + "'");
    }
    header += "}";
  }

  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    const std::string where = file + ": tensor '" + tensor.name + "': ";
    if (tensor.name == "__metadata__") fail(where + "the name is reserved for the metadata");
    if (dtype_block_elements(tensor.dtype) != 1)
      fail(where + "dtype " + std::string(dtype_name(tensor.dtype)) + " is a block format, which safetensors cannot hold");
    if (!names.insert(tensor.name).second) fail(where + "given twice");
    uint64_t elements = 1;
    std::string shape = "[";
    for (size_t i = 0; i < tensor.shape.size(); ++i) {
      const int64_t dim = tensor.shape[i];
      if (dim < 0) fail(where + "negative dimension " + std::to_string(dim));
      if (__builtin_mul_overflow(elements, uint64_t(dim), &elements) || elements > uint64_t(INT64_MAX))
        fail(where + "shape has too many elements");
      shape += (i ? "," : "") + std::to_string(dim);
    }
    shape += "]";
    uint64_t expected_bytes = 0;
    if (__builtin_mul_overflow(elements, uint64_t(dtype_size(tensor.dtype)), &expected_bytes) ||
        (!tensor.produce && !tensor.hole && expected_bytes != tensor.bytes.size()))
      fail(where + "shape " + shape + " of " + std::string(dtype_name(tensor.dtype)) + " needs " +
           std::to_string(elements) + " elements but " + std::to_string(tensor.bytes.size()) + " bytes were given");
    header += (header.size() > 1 ? "," : "") + json_quote(tensor.name, where + "name") + ":{\"dtype\":\"" +
              std::string(dtype_name(tensor.dtype)) + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + expected_bytes) + "]}";
    offset += expected_bytes;
  }
  header += "}";
  // Spaces after the JSON are allowed by the format; they align the data section to 8 bytes, as HF's writer does, or
  // to the alignment asked for.
  if (data_alignment == 0 || data_alignment % 8) fail(file + ": data alignment must be a multiple of 8");
  header.append((data_alignment - (8 + header.size()) % data_alignment) % data_alignment, ' ');
  if (header.size() > kMaxSafetensorsHeaderBytes)
    fail(file + ": header of " + std::to_string(header.size()) + " bytes exceeds the format's limit");

  refuse_unless_regular_or_absent(path);
  const std::filesystem::path partial_path(file + ".partial");
  refuse_unless_regular_or_absent(partial_path);
  // O_NOFOLLOW and O_NONBLOCK: should a symlink or a FIFO appear at that name after the check, the open fails
  // instead of following the link or waiting for a reader.
  const int fd = ::open(partial_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd < 0) fail(partial_path.string() + ": cannot create: " + std::strerror(errno));
  struct stat opened {};
  if (::fstat(fd, &opened) != 0 || !S_ISREG(opened.st_mode)) {
    ::close(fd);
    fail(partial_path.string() + ": not a regular file; refusing to write to it");
  }
  PartialFile partial{partial_path};
  partial.file = ::fdopen(fd, "wb");
  if (!partial.file) {
    ::close(fd);
    fail(partial.path.string() + ": cannot create: " + std::strerror(errno));
  }
  auto write = [&](const void* data, size_t size) {
    if (size && std::fwrite(data, 1, size, partial.file) != size)
      fail(partial.path.string() + ": write failed: " + std::strerror(errno));
  };
  uint8_t length_le[8];
  for (int i = 0; i < 8; ++i) length_le[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  write(length_le, sizeof length_le);
  write(header.data(), header.size());
  uint64_t holes = 0;  // bytes skipped since the last write
  for (const TensorToWrite& tensor : tensors) {
    if (tensor.hole) {
      uint64_t bytes = dtype_size(tensor.dtype);
      for (int64_t dim : tensor.shape) bytes *= uint64_t(dim);
      holes += bytes;
      continue;
    }
    if (holes) {
      if (fseeko(partial.file, off_t(holes), SEEK_CUR) != 0)
        fail(partial.path.string() + ": seek failed: " + std::strerror(errno));
      holes = 0;
    }
    if (!tensor.produce) {
      write(tensor.bytes.data(), tensor.bytes.size());
      continue;
    }
    uint64_t bytes = dtype_size(tensor.dtype);
    for (int64_t dim : tensor.shape) bytes *= uint64_t(dim);
    std::vector<std::byte> buffer(bytes);
    tensor.produce(buffer);
    write(buffer.data(), buffer.size());
  }
  if (holes) {
    // A hole at the end: the file gets its full length without a byte written there.
    if (std::fflush(partial.file) != 0 || ftello(partial.file) < 0 ||
        ftruncate(fileno(partial.file), ftello(partial.file) + off_t(holes)) != 0)
      fail(partial.path.string() + ": cannot extend the file: " + std::strerror(errno));
  }
  const int close_status = std::fclose(partial.file);
  partial.file = nullptr;
  if (close_status != 0) fail(partial.path.string() + ": write failed: " + std::strerror(errno));
  refuse_unless_regular_or_absent(path);  // again: something may have appeared there while the file was written
  std::error_code error;
  std::filesystem::rename(partial.path, path, error);
  if (error) fail(file + ": cannot move the written file into place: " + error.message());
  partial.done = true;
}

}  // namespace inferno::io

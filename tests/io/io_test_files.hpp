#pragma once
// Shared code for the io tests: a temporary directory, writing raw bytes, safetensors files assembled by hand (to break
// them in exactly one way), and checks that an error message names what it must.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "util/error.hpp"

namespace inferno::testing {

// A fresh directory under the system temp folder, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "inferno-io-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::vector<std::byte> as_bytes(const std::string& text) {
  std::vector<std::byte> bytes(text.size());
  if (!text.empty()) std::memcpy(bytes.data(), text.data(), text.size());  // an empty vector's data() may be null
  return bytes;
}

inline void write_file(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}
inline void write_file(const std::filesystem::path& path, const std::string& text) { write_file(path, as_bytes(text)); }

inline std::vector<std::byte> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  if (!chars.empty()) std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

// A safetensors file from a header length (as written in the first 8 bytes), header text and data bytes.
inline std::vector<std::byte> safetensors_bytes(uint64_t header_length, const std::string& header,
                                                size_t data_bytes) {
  std::vector<std::byte> bytes(8);
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = std::byte(header_length >> (8 * i));
  const auto header_bytes = as_bytes(header);
  bytes.insert(bytes.end(), header_bytes.begin(), header_bytes.end());
  bytes.resize(bytes.size() + data_bytes, std::byte{0x5a});
  return bytes;
}
// The usual case: the header length is the header's own.
inline std::vector<std::byte> safetensors_bytes(const std::string& header, size_t data_bytes) {
  return safetensors_bytes(header.size(), header, data_bytes);
}

// The message of the inferno::Error that `action` throws; fails the test when it throws nothing (or another type).
inline std::string error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const inferno::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected inferno::Error, got another exception: " << e.what());
  }
  FAIL("expected inferno::Error, nothing was thrown");
  return {};
}

// The error of `action` mentions each of `needles` (the file, the tensor or field, the problem).
inline void check_error_mentions(const std::function<void()>& action, std::initializer_list<std::string> needles) {
  const std::string message = error_message(action);
  INFO("error message: " << message);
  for (const std::string& needle : needles) CHECK_MESSAGE(message.find(needle) != std::string::npos, needle);
}

}  // namespace inferno::testing

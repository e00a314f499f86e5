#include "io/model_path.hpp"

#include <unistd.h>

#include <cctype>
#include <cstring>
#include <string>

#include "io/regular_file.hpp"

namespace inferno::io {

ModelPath resolve_model_path(const std::filesystem::path& given) {
  std::error_code error;
  const auto status = std::filesystem::status(given, error);
  if (error || status.type() == std::filesystem::file_type::not_found || std::filesystem::is_directory(status))
    return {given, false};
  const RegularFile file(given);  // refuses a FIFO or a device by name
  char magic[4] = {};
  const bool gguf = ::pread(file.fd(), magic, sizeof magic, 0) == ssize_t(sizeof magic) &&
                    std::memcmp(magic, "GGUF", sizeof magic) == 0;
  // The extension in any case also says GGUF, so that a file named so but broken is refused by the GGUF reader
  // ("not a GGUF file") rather than taken for a file in a checkpoint.
  std::string extension = given.extension().string();
  for (char& c : extension) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (gguf || extension == ".gguf") return {given, true};
  // Any other file stands for the checkpoint directory that holds it.
  std::filesystem::path directory = given.parent_path();
  if (directory.empty()) directory = ".";
  return {directory, false};
}

}  // namespace inferno::io

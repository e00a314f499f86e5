#include "io/regular_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "util/error.hpp"

namespace inferno::io {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "of an unknown kind";
}

}  // namespace

RegularFile::RegularFile(const std::filesystem::path& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It has no effect on regular
  // files, and it is cleared below all the same so that reads behave as usual.
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) fail(path_.string() + ": cannot open: " + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd_, &info) != 0) {
    const int error = errno;
    ::close(fd_);
    fail(path_.string() + ": cannot stat: " + std::strerror(error));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd_);
    fail(path_.string() + ": not a regular file (" + kind_of(info.st_mode) + ")");
  }
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
  size_ = uint64_t(info.st_size);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

RegularFile::RegularFile(RegularFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

uint64_t RegularFile::current_size() const {
  struct stat info {};
  if (::fstat(fd_, &info) != 0) fail(path_.string() + ": cannot stat: " + std::strerror(errno));
  return uint64_t(info.st_size);
}

std::string read_regular_file(const std::filesystem::path& path, uint64_t max_bytes) {
  const RegularFile file(path);
  if (file.size() > max_bytes)
    fail(path.string() + ": " + std::to_string(file.size()) + " bytes is more than the " +
         std::to_string(max_bytes) + " bytes this file may hold");
  std::string text(size_t(file.size()), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(file.fd(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path.string() + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;  // shrank since fstat: keep what is there
    done += size_t(n);
  }
  text.resize(done);
  // A file that grew since fstat (still being written): whatever came beyond the size read is not taken.
  return text;
}

std::string quoted_name(std::string_view name) {
  constexpr size_t kMaxShown = 200;
  if (name.size() <= kMaxShown) return "'" + std::string(name) + "'";
  size_t cut = kMaxShown;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
  return "'" + std::string(name.substr(0, cut)) + "…' (" + std::to_string(name.size()) + " bytes)";
}

}  // namespace inferno::io

#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "util/error.hpp"

namespace inferno::io {

// Why zero pages from a SIGBUS handler. The bytes of a mapping are read far from here: by the model's uploads into
// device staging memory, by conversions, by worker threads. The alternatives were:
//  - pread() into a host buffer and hand that out: a second copy of every tensor in host memory (up to 1 GB for one
//    embedding), against the point of mapping.
//  - sigsetjmp/siglongjmp around the copy: the copy happens inside upload code with C++ objects alive (vectors,
//    locks, command recorders); jumping over their destructors is undefined behaviour, and a guard would have to sit
//    around every reader of the span.
//  - fstat before each tensor alone: narrows the window, does not close it.
// Mapping anonymous zero pages over the lost range (MAP_FIXED, from the faulting page to the end of the mapping)
// lets the faulting instruction complete, on whatever thread it runs; the mapping is marked, and check_whole(),
// called after each tensor is consumed, turns the mark into an error naming the file. Nothing is unwound by force.
// fstat before each tensor (also in check_whole) still refuses the common case before any byte is read.
namespace {

struct GuardedRange {
  std::atomic<uintptr_t> begin{0};  // 0: free; 1: being set up or torn down; otherwise the mapping's start
  std::atomic<uintptr_t> end{0};
  std::atomic<bool> cut_short{false};
};
// One slot per live mapping (a shard, a GGUF file, a JSON file while it is parsed); a model of 191 shards uses 191.
// A mapping that finds no free slot is simply not guarded.
constexpr int kGuardSlots = 4096;
GuardedRange guarded[kGuardSlots];
struct sigaction previous_sigbus {};
std::once_flag install_once;
size_t page_bytes = 4096;

void on_sigbus(int signal, siginfo_t* info, void* context) {
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (GuardedRange& range : guarded) {
    const uintptr_t begin = range.begin.load(std::memory_order_acquire);
    if (begin <= 1) continue;
    const uintptr_t end = range.end.load(std::memory_order_acquire);
    if (address < begin || address >= end) continue;
    const uintptr_t page = address & ~uintptr_t(page_bytes - 1);
    // mmap is a plain system call on Linux, safe in a handler. Zero pages from the fault to the end of the mapping:
    // the rest of the file is gone as well, and one fault covers it.
    void* replaced = ::mmap(reinterpret_cast<void*>(page), end - page, PROT_READ,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (replaced != MAP_FAILED) {
      range.cut_short.store(true, std::memory_order_release);
      return;  // the read is retried and now finds zeros
    }
    break;
  }
  // Not a mapping of ours (or the replacement failed): whatever handled SIGBUS before does so now.
  if (previous_sigbus.sa_flags & SA_SIGINFO) {
    previous_sigbus.sa_sigaction(signal, info, context);
    return;
  }
  if (previous_sigbus.sa_handler != SIG_DFL && previous_sigbus.sa_handler != SIG_IGN) {
    previous_sigbus.sa_handler(signal);
    return;
  }
  // Default action: restore it and return; the fault repeats and ends the process with SIGBUS as it would have.
  ::signal(SIGBUS, SIG_DFL);
}

void install_sigbus_handler() {
  page_bytes = size_t(::sysconf(_SC_PAGESIZE));
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGBUS, &action, &previous_sigbus);
}

int guard_range(const std::byte* data, size_t size) {
  std::call_once(install_once, install_sigbus_handler);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + ((size + page_bytes - 1) & ~(page_bytes - 1));
  for (int slot = 0; slot < kGuardSlots; ++slot) {
    uintptr_t free = 0;
    if (!guarded[slot].begin.compare_exchange_strong(free, 1, std::memory_order_acq_rel)) continue;
    guarded[slot].cut_short.store(false, std::memory_order_relaxed);
    guarded[slot].end.store(end, std::memory_order_release);
    guarded[slot].begin.store(begin, std::memory_order_release);
    return slot;
  }
  return -1;
}

void unguard_range(int slot) {
  if (slot < 0) return;
  guarded[slot].begin.store(1, std::memory_order_release);
  guarded[slot].end.store(0, std::memory_order_release);
  guarded[slot].begin.store(0, std::memory_order_release);
}

}  // namespace

MappedFile::MappedFile(std::filesystem::path path) : path_(std::move(path)) {
  RegularFile file(path_);
  if (file.size() == 0) fail(path_.string() + ": file is empty");
  size_ = size_t(file.size());
  void* mapping = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
  if (mapping == MAP_FAILED) fail(path_.string() + ": cannot map into memory: " + std::strerror(errno));
  data_ = static_cast<const std::byte*>(mapping);
  guard_slot_ = guard_range(data_, size_);
  fd_ = ::dup(file.fd());  // RegularFile closes its own; this one lives as long as the mapping
}

MappedFile::~MappedFile() { unmap(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      guard_slot_(std::exchange(other.guard_slot_, -1)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    guard_slot_ = std::exchange(other.guard_slot_, -1);
  }
  return *this;
}

void MappedFile::check_whole() const {
  if (guard_slot_ >= 0 && guarded[guard_slot_].cut_short.load(std::memory_order_acquire))
    fail(path_.string() + ": the file was truncated while it was being read (bytes past its new end read as zeros)");
  struct stat info {};
  if (fd_ >= 0 && ::fstat(fd_, &info) == 0 && uint64_t(info.st_size) < size_)
    fail(path_.string() + ": the file shrank from " + std::to_string(size_) + " to " + std::to_string(info.st_size) +
         " bytes while it was being read");
}

void MappedFile::unmap() noexcept {
  unguard_range(guard_slot_);
  guard_slot_ = -1;
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  data_ = nullptr;
  size_ = 0;
}

}  // namespace inferno::io

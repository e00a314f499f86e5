#pragma once
// The one exception type inside the engine. Messages name the file, tensor or field at fault; the CLI prints
// them as one line and exits 1, the C API turns them into an error code and a thread-local message.
#include <stdexcept>
#include <string>

#include "inferno/error.hpp"

namespace inferno {

// Thrown for a device out of memory, so callers can tell it from bad input.
struct OutOfDeviceMemory : Error {
  using Error::Error;
};

[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

}  // namespace inferno

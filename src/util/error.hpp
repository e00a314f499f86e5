#pragma once
// The one exception type inside the engine. Messages name the file, tensor or field at fault; the CLI prints
// them as one line and exits 1, the C API turns them into an error code and a thread-local message.
#include <stdexcept>
#include <string>

#include "inferno/error.hpp"

namespace inferno {

// inferno::OutOfDeviceMemory (inferno/error.hpp) is thrown for memory that ran out, so callers can tell it from bad
// input.

[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

}  // namespace inferno

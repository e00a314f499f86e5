#pragma once
// The exception every inferno C++ call throws: a one-line message naming the file, tensor or field at fault.
#include <stdexcept>

namespace inferno {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Memory ran out: the device's (VK_ERROR_OUT_OF_DEVICE_MEMORY), the driver's host memory, or a buffer larger than the
// device allows in one allocation (e.g. a KV cache for too long a context). The request may fit with less: a smaller
// context or batch, a quantized model, or another device. The C API reports it as INFERNO_ERROR_OUT_OF_MEMORY.
struct OutOfDeviceMemory : Error {
  using Error::Error;
};

}  // namespace inferno

// libFuzzer target: any bytes as a safetensors file. The reader must refuse bad input with inferno::Error only:
// any other exception, crash, sanitizer report or leak is a bug. Accepted files are then read in full, so every
// range the validation let through is touched.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "io/safetensors.hpp"
#include "util/error.hpp"

using namespace inferno::io;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  try {
    const SafetensorsFile file = SafetensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const TensorInfo& tensor : file.tensors()) {
      if (&file.at(tensor.name) != &tensor) __builtin_trap();  // names must find their own tensor
      const auto span = file.data(tensor);
      if (span.size() != tensor.bytes) __builtin_trap();
      if (!span.empty()) sink = sink ^ uint8_t(span.front()) ^ uint8_t(span.back());
      switch (tensor.dtype) {
        case DType::F32:
        case DType::F16:
        case DType::BF16:
        case DType::F64:
          if (file.read_f32(tensor.name).size() != size_t(tensor.elements())) __builtin_trap();
          break;
        case DType::I64:
        case DType::I32:
        case DType::I16:
        case DType::I8:
        case DType::U8:
          if (file.read_i64(tensor.name).size() != size_t(tensor.elements())) __builtin_trap();
          break;
        default:
          break;
      }
    }
  } catch (const inferno::Error&) {
    // refused with a message: the expected outcome for almost every input
  }
  return 0;
}

#pragma once
// The exception every inferno C++ call throws: a one-line message naming the file, tensor or field at fault.
#include <stdexcept>

namespace inferno {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace inferno

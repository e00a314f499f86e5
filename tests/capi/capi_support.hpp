#pragma once
// What the C API suites share: the demo checkpoint, loaded once per executable through the C API.
#include <string>

#include "inferno/inferno.h"
#include "test_support.hpp"

namespace inferno::testing {

inline std::string brown_dir() { return (root_dir() / "models/brown-8m-bf16").string(); }

// One C model of the demo checkpoint for the whole executable (loading is the slow part), freed at exit.
inline inferno_model* brown_c() {
  static struct Holder {
    inferno_model* model = nullptr;
    ~Holder() { inferno_model_free(model); }
  } holder;
  if (!holder.model)
    REQUIRE_MESSAGE(inferno_model_load(brown_dir().c_str(), nullptr, &holder.model) == INFERNO_OK, inferno_last_error());
  return holder.model;
}

}  // namespace inferno::testing

#pragma once
// What the tokenizer tests share: reading their JSON case files (simdjson) and the message of an expected error.
#include <simdjson.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "test_support.hpp"
#include "util/error.hpp"

namespace inferno::testing {

struct JsonFile {
  simdjson::padded_string text;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
};

inline std::unique_ptr<JsonFile> load_json(const std::filesystem::path& path) {
  auto file = std::make_unique<JsonFile>();
  REQUIRE_MESSAGE(std::filesystem::exists(path), "missing test file " << path.string());
  REQUIRE_MESSAGE(!simdjson::padded_string::load(path.string()).get(file->text), "cannot read " << path.string());
  REQUIRE_MESSAGE(!file->parser.parse(file->text).get(file->root), "bad JSON in " << path.string());
  return file;
}

inline std::vector<int32_t> ints(simdjson::dom::element array) {
  std::vector<int32_t> out;
  for (simdjson::dom::element e : simdjson::dom::array(array)) out.push_back(int32_t(int64_t(e)));
  return out;
}

inline std::string str(simdjson::dom::element e) { return std::string(std::string_view(e)); }

// The message of the inferno::Error that `f` throws, or a note that none was thrown.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const inferno::Error& e) {
    return e.what();
  }
  return "(no inferno::Error thrown)";
}

}  // namespace inferno::testing

#pragma once
// Two Vulkan devices from one lavapipe, for the tests of a model split over devices: the loader lists one physical
// device per ICD manifest, so two copies of lavapipe's manifest give two devices on the same driver.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace inferno::testing {

inline const std::filesystem::path kLavapipeIcd = "/usr/share/vulkan/icd.d/lvp_icd.json";

// Writes the two manifests into `dir`; the VK_DRIVER_FILES value that names them, "" when lavapipe is not installed.
inline std::string two_lavapipe_driver_files(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::exists(kLavapipeIcd)) return "";
  fs::create_directories(dir);
  fs::copy_file(kLavapipeIcd, dir / "lvp_a.json", fs::copy_options::overwrite_existing);
  fs::copy_file(kLavapipeIcd, dir / "lvp_b.json", fs::copy_options::overwrite_existing);
  return (dir / "lvp_a.json").string() + ":" + (dir / "lvp_b.json").string();
}

// This process's VK_DRIVER_FILES set to two lavapipes while it lives (in a folder of /tmp named `name` and the pid);
// a static one is set before the Vulkan loader first looks, before any test runs.
struct TwoLavapipes {
  std::filesystem::path dir;
  explicit TwoLavapipes(const std::string& name)
      : dir(std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))) {
    const std::string files = two_lavapipe_driver_files(dir);
    if (!files.empty()) ::setenv("VK_DRIVER_FILES", files.c_str(), 1);
  }
  ~TwoLavapipes() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

}  // namespace inferno::testing

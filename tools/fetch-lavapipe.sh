#!/usr/bin/env bash
# Fetches a newer lavapipe (Mesa's Vulkan driver on the CPU) from Debian 13's backports into
# third_party/lavapipe-trixie/ (git-ignored), with trixie's C runtime, LLVM and the other libraries it needs, and
# writes `run`, a wrapper that runs a program (built here, against Debian 12) with that driver as the only Vulkan
# device and trixie's validation layer:
#   third_party/lavapipe-trixie/run build-glslc-trixie/tests/kernels/test_kernels_linear
# Mesa 25.0 (Debian 12's backports) has no VK_KHR_cooperative_matrix; Mesa 26.1 does, so the cooperative-matrix
# kernels (built by a glslc that compiles them: tools/fetch-glslc.sh) run and are tested on the CPU. A program runs
# under trixie's loader and glibc, which are newer than, and compatible with, the ones it was built against. Nothing is
# installed into / (tools/debian-prefix.sh). Idempotent: a prefix whose driver already answers is left alone (pass
# --force to fetch again).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix="$root/third_party/lavapipe-trixie"
source "$root/tools/debian-prefix.sh"

if [ "${1:-}" != "--force" ] && [ -x "$prefix/run" ] && [ -f "$prefix/lvp_icd.json" ]; then
  echo "third_party/lavapipe-trixie is already there"
  exit 0
fi

fetch_debian_prefix "$prefix" "trixie trixie-backports" mesa-vulkan-drivers/trixie-backports libvulkan1 \
  vulkan-validationlayers
# The ICD file names the driver by file name only; the wrapper's environment points the loader at this one.
lib="$prefix/usr/lib/x86_64-linux-gnu"
[ -f "$lib/libvulkan_lvp.so" ] || { echo "fetch-lavapipe: mesa-vulkan-drivers has no libvulkan_lvp.so" >&2; exit 1; }
cat > "$prefix/lvp_icd.json" <<'EOF'
{ "file_format_version": "1.0.1", "ICD": { "library_path": "usr/lib/x86_64-linux-gnu/libvulkan_lvp.so", "api_version": "1.4.0" } }
EOF
# A relative library_path in an ICD file is taken relative to the file itself. The validation layer the tests turn on
# must know the extensions this driver offers (Debian 12's knows Vulkan 1.3.239, before cooperative matrices): the
# prefix's own layer replaces the system's.
write_prefix_wrapper "$prefix" run "" "VK_DRIVER_FILES=@PREFIX@/lvp_icd.json" "VK_ICD_FILENAMES=@PREFIX@/lvp_icd.json" \
  "VK_LAYER_PATH=@PREFIX@/usr/share/vulkan/explicit_layer.d"
echo "lavapipe: $(dpkg-deb -f "$prefix"/apt/debs/mesa-vulkan-drivers_*.deb Version)"

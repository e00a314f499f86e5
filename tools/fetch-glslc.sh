#!/usr/bin/env bash
# Fetches Debian 13 (trixie)'s glslc and spirv-tools into third_party/glslc-trixie/ (git-ignored), with the C and C++
# runtimes they need, and writes wrappers `glslc`, `spirv-val` and `spirv-dis` there that run them through trixie's
# own dynamic loader. Debian 12's glslc lacks GL_EXT_integer_dot_product and GL_KHR_cooperative_matrix; trixie's has
# both, so
#   meson setup build-new -Dglslc=$PWD/third_party/glslc-trixie/glslc -Dspirv_val=$PWD/third_party/glslc-trixie/spirv-val
# builds the kernels that need them as well. The default build never depends on this. Nothing is installed into /
# (tools/debian-prefix.sh). Idempotent: a prefix whose wrapper already runs is left alone (pass --force to fetch again).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix="$root/third_party/glslc-trixie"
source "$root/tools/debian-prefix.sh"

if [ "${1:-}" != "--force" ] && [ -x "$prefix/glslc" ] && "$prefix/glslc" --version >/dev/null 2>&1; then
  echo "third_party/glslc-trixie already holds a working glslc:"
  "$prefix/glslc" --version | sed -n 1p
  exit 0
fi

fetch_debian_prefix "$prefix" trixie glslc spirv-tools
for tool in glslc spirv-val spirv-dis; do write_prefix_wrapper "$prefix" $tool usr/bin/$tool; done
"$prefix/glslc" --version | sed -n 1p
"$prefix/spirv-val" --version | sed -n 1p
echo "features: $(python3 "$root/tools/probe_glslc.py" "$prefix/glslc" | tr '\n' ' ')"

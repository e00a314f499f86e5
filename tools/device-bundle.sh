#!/usr/bin/env bash
# Gathers what tools/device-check.sh needs on a lent GPU machine (see the device tool's README) into .device/
# (git-ignored): stripped copies of the command, the checkpoint maker and the kernel and parity test programs of a
# build, and every shared library they load beyond the C and C++ runtimes (the Vulkan loader among them: that machine
# has none). Build with a glslc that compiles the cooperative-matrix and integer-dot kernels (tools/fetch-glslc.sh),
# so that the GPU runs them:
#   tools/device-bundle.sh build-glslc-trixie      then, on the device: tools/device-check.sh (carry .device)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: tools/device-bundle.sh BUILD_DIR}
out="$root/.device"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
programs=(src/cli/inferno tools/inferno-make-checkpoint tests/kernels/test_kernels_linear tests/kernels/test_kernels_quant
          tests/kernels/test_kernels_ops tests/model/test_parity tests/model/test_quantized)
for p in "${programs[@]}"; do
  [ -x "$build/$p" ] || { echo "device-bundle: $build/$p is missing (build it first)" >&2; exit 1; }
  strip -o "$out/bin/$(basename "$p")" "$build/$p"
done
# Libraries: what ldd resolves, less the C/C++ runtimes and the dynamic loader, which the device's own system has.
for p in "${programs[@]}"; do
  ldd_output=$(ldd "$build/$p")
  while read -r path; do
    case "$(basename "$path")" in
      libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*) continue ;;
    esac
    [ -e "$out/lib/$(basename "$path")" ] || cp -L "$path" "$out/lib/"
  done < <(printf '%s\n' "$ldd_output" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
done
strip "$out"/lib/*.so* 2>/dev/null || true
du -sh "$out"

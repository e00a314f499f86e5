#!/usr/bin/env bash
# The checks and measurements that need a real GPU, in one run (the device tool lends a machine for minutes): run from
# the repository root on the device machine, with .device/ carried (tools/device-bundle.sh). Writes its log and the
# benchmarks' JSON to $OUT (or ./device-out). Steps:
#   1. the device as inferno sees it (cooperative-matrix shapes, subgroup sizes);
#   2. the kernel suites with the cooperative-matrix and packed int8 kernels required (a skip would fail), the
#      parity suite with every prefill projection on matrix cores, and again with RMSNorm folded into decode, and
#      the quantized-model suite with the defaults;
#   3. inferno bench on random-weight Llama-3.2-1B (BF16 and w8a8) checkpoints: the default kernels, the tiled
#      prefill kernel instead of matrix cores, and RMSNorm folded (the A/B for the defaults); Llama-3.1-8B BF16 too
#      unless DEVICE_CHECK_8B=0.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/device-out}
mkdir -p "$out"
exec > >(tee "$out/device-check.log") 2>&1
export LD_LIBRARY_PATH="$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nvidia_icd" ] && export VK_DRIVER_FILES="$nvidia_icd"
export INFERNO_TEST_DATA="$PWD/tests/data" INFERNO_ROOT="$PWD"
bin=.device/bin
status=0
run() {  # name command...: runs, times and records the exit status of one step
  local name=$1
  shift
  echo "== $name"
  local start=$SECONDS
  "$@"
  local rc=$?
  echo "== $name: exit $rc, $((SECONDS - start)) s"
  [ $rc = 0 ] || status=1
}

run devices $bin/inferno devices
run kernels_linear env INFERNO_EXPECT_COOPMAT=1 $bin/test_kernels_linear
run kernels_quant env INFERNO_EXPECT_COOPMAT=1 INFERNO_EXPECT_PACKED_DOT=1 $bin/test_kernels_quant
run kernels_ops $bin/test_kernels_ops
run parity_coopmat env INFERNO_MATMUL=coopmat $bin/test_parity
run parity_norm_fold env INFERNO_NORM_FOLD=1 $bin/test_parity
run quantized $bin/test_quantized  # the defaults: w8a8 on int8 matrix cores, block formats on the tiled kernel

models=/tmp/inferno-device-models
mkdir -p "$models"
bench_json() {  # label model [environment...]: the JSON to $out/bench-LABEL.json and the log
  local label=$1 model=$2
  shift 2
  env "$@" $bin/inferno bench -m "$model" -p "${DEVICE_CHECK_PROMPT:-512}" -n "${DEVICE_CHECK_NEW:-128}" --json \
    > "$out/bench-$label.json" && cat "$out/bench-$label.json"
}
bench() { run "bench $1" bench_json "$@"; }
# DEVICE_CHECK_LAYERS: fewer layers, for a dry run of this script on a CPU driver.
layers=()
[ -n "${DEVICE_CHECK_LAYERS:-}" ] && layers=(--layers "$DEVICE_CHECK_LAYERS")
run "checkpoint 1b bf16" $bin/inferno-make-checkpoint --preset llama-3.2-1b --dtype bf16 "${layers[@]}" -o "$models/1b-bf16"
run "checkpoint 1b w8a8" $bin/inferno-make-checkpoint --preset llama-3.2-1b --w8a8 "${layers[@]}" -o "$models/1b-w8a8"
bench 1b-bf16 "$models/1b-bf16"
bench 1b-bf16-tiled "$models/1b-bf16" INFERNO_MATMUL=tiled
bench 1b-bf16-norm-fold "$models/1b-bf16" INFERNO_NORM_FOLD=1
bench 1b-w8a8 "$models/1b-w8a8"
if [ "${DEVICE_CHECK_8B:-1}" != 0 ]; then
  run "checkpoint 8b bf16" $bin/inferno-make-checkpoint --preset llama-3.1-8b --dtype bf16 "${layers[@]}" -o "$models/8b-bf16"
  bench 8b-bf16 "$models/8b-bf16"
fi
echo "== device-check: $([ $status = 0 ] && echo all steps passed || echo some steps FAILED)"
exit $status

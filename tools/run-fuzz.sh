#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time on a seed corpus made from the
# test fixtures. Exits non-zero when any target crashes, leaks, times out or trips a sanitizer; the input that did it
# is left in $BUILD_DIR/fuzz-artifacts/.
#   tools/run-fuzz.sh [SECONDS_PER_TARGET]      (default 20; BUILD_DIR defaults to build-fuzz)
# Needs clang and its runtime libraries (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds_per_target="${1:-20}"
build_dir="${BUILD_DIR:-build-fuzz}"
targets=(fuzz_safetensors_header fuzz_llama_config)

if [ ! -f "$build_dir/build.ninja" ]; then
  CXX="${FUZZ_CXX:-clang++}" meson setup "$build_dir" -Dfuzz=true -Dtests=false
else
  meson configure "$build_dir" -Dfuzz=true -Dtests=false
fi
ninja -C "$build_dir" "${targets[@]/#/tests/fuzz/}"

# Seeds: every fixture JSON for the config target; for the safetensors target, the small fixture files whole and the
# large ones cut after their header plus a little data (libFuzzer slows down with big inputs), and a few tiny files
# covering the dtypes and corners (metadata, scalar, empty tensor) that the fixtures lack.
corpus="$build_dir/fuzz-corpus"
rm -rf "$corpus/seeds"
mkdir -p "$corpus/seeds/fuzz_llama_config" "$corpus/seeds/fuzz_safetensors_header" \
         "$corpus/fuzz_llama_config" "$corpus/fuzz_safetensors_header" "$build_dir/fuzz-artifacts"
python3 - "$corpus/seeds" <<'PY'
import glob, json, os, struct, sys
seeds = sys.argv[1]
fixtures = sorted(glob.glob("tests/data/hf-llama/*/"))
for d in fixtures:
    case = os.path.basename(os.path.dirname(d))
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json"):
        path = os.path.join(d, name)
        if os.path.exists(path):
            with open(path, "rb") as f, open(os.path.join(seeds, "fuzz_llama_config", case + "-" + name), "wb") as out:
                out.write(f.read())
for path in sorted(glob.glob("tests/data/hf-llama/**/*.safetensors", recursive=True)):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) > 70000:
        header_length = struct.unpack("<Q", data[:8])[0]
        data = data[:8 + header_length + 256]
    name = path.replace("tests/data/hf-llama/", "").replace("/", "-")
    with open(os.path.join(seeds, "fuzz_safetensors_header", name), "wb") as out:
        out.write(data)

def tiny(name, tensors, metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for tensor_name, dtype, shape, payload in tensors:
        header[tensor_name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(payload)]}
        blob += payload
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(seeds, "fuzz_safetensors_header", name), "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text + blob)

tiny("tiny-mixed.safetensors", [("a", "F16", [2, 3], bytes(range(12))), ("b", "BF16", [3], bytes(6)),
                                ("c", "I32", [2], bytes(8)), ("d", "F8_E4M3", [5], bytes(5)),
                                ("e", "F32", [], bytes(4)), ("f", "I64", [0, 4], b""), ("g", "BOOL", [1], b"\x01")],
     {"format": "pt"})
tiny("tiny-f64-u8.safetensors", [("x", "F64", [1], bytes(8)), ("y", "U8", [3], b"abc"), ("z", "I8", [1], b"\xff")])
PY

status=0
for target in "${targets[@]}"; do
  echo "== $target: ${seconds_per_target}s"
  # The first corpus folder collects what the fuzzer finds (kept between runs); seeds are read from the second.
  if ! "$build_dir/tests/fuzz/$target" -max_total_time="$seconds_per_target" -timeout=10 -rss_limit_mb=2048 \
      -dict=tests/fuzz/json.dict -artifact_prefix="$build_dir/fuzz-artifacts/$target-" -print_final_stats=1 \
      "$corpus/$target" "$corpus/seeds/$target"; then
    echo "run-fuzz: $target FAILED (the failing input is in $build_dir/fuzz-artifacts/)" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "run-fuzz: no failures"
exit "$status"

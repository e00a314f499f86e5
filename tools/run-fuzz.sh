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
targets=(fuzz_safetensors_header fuzz_llama_config fuzz_gguf fuzz_chat_template)

if [ ! -f "$build_dir/build.ninja" ]; then
  CXX="${FUZZ_CXX:-clang++}" meson setup "$build_dir" -Dfuzz=true -Dtests=false
else
  meson configure "$build_dir" -Dfuzz=true -Dtests=false
fi
ninja -C "$build_dir" "${targets[@]/#/tests/fuzz/}"

# Seeds: every fixture JSON for the config target; for the safetensors target, the small fixture files whole and the
# large ones cut after their header plus a little data (libFuzzer slows down with big inputs), and a few tiny files
# covering the dtypes and corners (metadata, scalar, empty tensor) that the fixtures lack; for the GGUF target, the
# fixtures cut short and tiny whole files (see below).
corpus="$build_dir/fuzz-corpus"
rm -rf "$corpus/seeds"
mkdir -p "$corpus/seeds/fuzz_llama_config" "$corpus/seeds/fuzz_safetensors_header" "$corpus/seeds/fuzz_gguf" \
         "$corpus/seeds/fuzz_chat_template" "$corpus/fuzz_llama_config" "$corpus/fuzz_safetensors_header" \
         "$corpus/fuzz_gguf" "$corpus/fuzz_chat_template" "$build_dir/fuzz-artifacts"
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

# GGUF: each fixture cut after its first 16 KB (its metadata and usually its tensor infos: refused as truncated,
# but every parser path up to there is covered), and tiny whole files with every metadata type, nested arrays and
# a tensor of each block format, which parse.
for path in sorted(glob.glob("tests/data/gguf/**/*.gguf", recursive=True)):
    with open(path, "rb") as f:
        data = f.read(16384)
    name = path.replace("tests/data/gguf/", "").replace("/", "-")
    with open(os.path.join(seeds, "fuzz_gguf", name), "wb") as out:
        out.write(data)

def gguf_string(s):
    return struct.pack("<Q", len(s)) + s
def gguf_file(name, entries, tensors, version=3, alignment=32):
    body = b""
    for key, type_number, value in entries:
        body += gguf_string(key) + struct.pack("<I", type_number) + value
    infos, blob = b"", b""
    for tensor_name, ne, ggml_type, payload in tensors:
        blob += b"\0" * ((alignment - len(blob) % alignment) % alignment)
        infos += gguf_string(tensor_name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", ggml_type, len(blob))
        blob += payload
    header = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(entries)) + body + infos
    header += b"\0" * ((alignment - len(header) % alignment) % alignment)
    with open(os.path.join(seeds, "fuzz_gguf", name), "wb") as out:
        out.write(header + blob)

scalars = [(b"u8", 0, b"\x07"), (b"i8", 1, b"\xf9"), (b"u16", 2, struct.pack("<H", 60000)),
           (b"i16", 3, struct.pack("<h", -3)), (b"u32", 4, struct.pack("<I", 7)), (b"i32", 5, struct.pack("<i", -7)),
           (b"f32", 6, struct.pack("<f", 0.5)), (b"bool", 7, b"\x01"), (b"str", 8, gguf_string(b"llama")),
           (b"u64", 10, struct.pack("<Q", 1 << 40)), (b"i64", 11, struct.pack("<q", -(1 << 40))),
           (b"f64", 12, struct.pack("<d", 1e-5))]
arrays = [(b"tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + gguf_string(b"<s>") + gguf_string(b"a") + gguf_string(b"b")),
          (b"tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0, -1, -2)),
          (b"tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, 3) + struct.pack("<3i", 3, 1, 1)),
          (b"flags", 9, struct.pack("<IQ", 7, 2) + b"\x00\x01"),
          (b"nested", 9, struct.pack("<IQ", 9, 2) + struct.pack("<IQ", 4, 1) + struct.pack("<I", 5) + struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 0, 0))]
gguf_file("tiny-metadata.gguf", scalars + arrays, [])
block_types = [(0, 1, 4), (1, 1, 2), (30, 1, 2), (2, 32, 18), (3, 32, 20), (6, 32, 22), (7, 32, 24), (8, 32, 34),
               (10, 256, 84), (11, 256, 110), (12, 256, 144), (13, 256, 176), (14, 256, 210), (15, 256, 292),
               (24, 1, 1), (25, 1, 2), (26, 1, 4), (27, 1, 8), (28, 1, 8)]
gguf_file("tiny-tensors.gguf", [(b"general.architecture", 8, gguf_string(b"llama"))],
          [(b"t%d.weight" % i, [block, 2], t, bytes(range(256)) * (2 * size // 256) + bytes(2 * size % 256))
           for i, (t, block, size) in enumerate(block_types)])
# Chat templates: the tokenizers' own and the fixture cases' templates, each with its messages after a NUL, and
# small templates that use every kind of construct.
def chat_seed(name, template, messages):
    with open(os.path.join(seeds, "fuzz_chat_template", name), "wb") as out:
        out.write(template.encode() + b"\0" + json.dumps(messages).encode())
conversation = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
                {"role": "tool", "content": "{\"ok\": true}"}, {"role": "user", "content": "Bye"}]
for path in sorted(glob.glob("third_party/tokenizers/*/tokenizer_config.json")):
    template = json.load(open(path)).get("chat_template")
    if isinstance(template, str):
        chat_seed(path.split("/")[-2] + ".jinja", template, conversation)
cases = json.load(open("tests/data/hf-llama/chat_template_cases.json"))
for family, family_cases in cases.items():
    for i, case in enumerate(family_cases):
        if "chat_template" in case:
            chat_seed("%s-%d.jinja" % (family, i), case["chat_template"], case["messages"])
constructs = [
    "{% for m in messages %}{{ loop.index }}{{ m.role | upper }}: {{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}",
    "{% set ns = namespace(n=0, s='') %}{% for m in messages if m.role == 'user' %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.content %}{% endfor %}{{ ns.n }}{{ ns.s[::-1] }}",
    "{% macro show(x, sep=', ') %}{{ x | tojson(indent=2) }}{{ sep }}{{ caller() if caller else '' }}{% endmacro %}{% call show(messages) %}body{% endcall %}",
    "{{ messages | map(attribute='role') | unique | list | join(',') }}{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ '%s-%d' | format('a', 3) }}",
    "{%- if messages[0]['role'] == 'system' -%}{{ raise_exception('no system: ' ~ messages[0].content) }}{%- else -%}{{ (messages | last).content.split(' ') }}{%- endif -%}",
    "{{ [1, 2, 3] * 2 + [4] }}{{ {'a': [1, {'b': none}]} | dictsort }}{{ range(3, 10, 2) | list | sum }}{{ 7 // 2 ** 2 % 3 }}{{ 'x' in 'xyz' and not false or none is none }}",
]
for i, template in enumerate(constructs):
    chat_seed("constructs-%d.jinja" % i, template, conversation)
# A Llama header as the model reads it (every llama.* key, a token embedding): the seed that reaches the
# hyper-parameter checks, for the fuzzer to vary each value.
llama_keys = [(b"general.architecture", 8, gguf_string(b"llama")), (b"llama.embedding_length", 4, struct.pack("<I", 64)),
              (b"llama.feed_forward_length", 4, struct.pack("<I", 160)), (b"llama.block_count", 4, struct.pack("<I", 2)),
              (b"llama.attention.head_count", 4, struct.pack("<I", 4)),
              (b"llama.attention.head_count_kv", 4, struct.pack("<I", 2)),
              (b"llama.attention.key_length", 4, struct.pack("<I", 16)),
              (b"llama.attention.value_length", 4, struct.pack("<I", 16)),
              (b"llama.rope.dimension_count", 4, struct.pack("<I", 16)),
              (b"llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
              (b"llama.rope.freq_base", 6, struct.pack("<f", 500000.0)), (b"llama.context_length", 4, struct.pack("<I", 256)),
              (b"llama.rope.scaling.type", 8, gguf_string(b"linear")), (b"llama.rope.scaling.factor", 6, struct.pack("<f", 2.0)),
              (b"llama.vocab_size", 4, struct.pack("<I", 8)), (b"tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)),
              (b"tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))]
gguf_file("tiny-llama-config.gguf", llama_keys, [(b"token_embd.weight", [64, 8], 0, bytes(64 * 8 * 4))])
gguf_file("tiny-aligned-v2.gguf", [(b"general.alignment", 4, struct.pack("<I", 64))],
          [(b"a", [4, 3, 2, 1], 0, bytes(96)), (b"b", [0], 0, b""), (b"c", [32], 8, bytes(34))], version=2, alignment=64)
PY
# A dictionary for the GGUF target: the magic, type numbers and the keys a Llama file holds.
printf '%s\n' '"GGUF"' '"\x03\x00\x00\x00"' '"\x09\x00\x00\x00"' '"\x08\x00\x00\x00"' \
  '"general.alignment"' '"general.architecture"' '"tokenizer.ggml.tokens"' '"llama.block_count"' '".weight"' \
  '"llama.attention.head_count_kv"' '"llama.attention.key_length"' '"llama.rope.freq_base"' '"llama.context_length"' \
  '"llama.attention.layer_norm_rms_epsilon"' '"llama.rope.scaling.factor"' '"token_embd.weight"' '"\x00\x00\xc0\x7f"' \
  > "$corpus/gguf.dict"

# A dictionary for the chat-template target: its tags, operators, filters and names.
printf '%s\n' '"{{"' '"}}"' '"{%"' '"%}"' '"{%-"' '"-%}"' '"{#"' '"#}"' '"for "' '" in "' '"endfor"' '"if "' '"elif "' \
  '"else"' '"endif"' '"set "' '"endset"' '"macro "' '"endmacro"' '"call"' '"endcall"' '"filter "' '"endfilter"' \
  '"namespace("' '"range("' '"loop."' '"messages"' '"raise_exception("' '"|tojson"' '"|join"' '"|map("' '"|list"' \
  '"|length"' '"|replace("' '"|indent("' '"|format("' '"is defined"' '" ~ "' '" ** "' '" // "' '"[::-1]"' \
  '".append("' '".split("' '"\x00"' > "$corpus/chat_template.dict"

status=0
for target in "${targets[@]}"; do
  echo "== $target: ${seconds_per_target}s"
  # The first corpus folder collects what the fuzzer finds (kept between runs); seeds are read from the second.
  dict=tests/fuzz/json.dict
  [ "$target" = fuzz_gguf ] && dict="$corpus/gguf.dict"
  [ "$target" = fuzz_chat_template ] && dict="$corpus/chat_template.dict"
  if ! "$build_dir/tests/fuzz/$target" -max_total_time="$seconds_per_target" -timeout=10 -rss_limit_mb=2048 \
      -dict="$dict" -artifact_prefix="$build_dir/fuzz-artifacts/$target-" -print_final_stats=1 \
      "$corpus/$target" "$corpus/seeds/$target"; then
    echo "run-fuzz: $target FAILED (the failing input is in $build_dir/fuzz-artifacts/)" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "run-fuzz: no failures"
exit "$status"

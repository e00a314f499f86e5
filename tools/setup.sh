#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for inferno and builds it: distribution packages (tools/install-deps.sh),
# the real tokenizer files used by the tests (tools/fetch-tokenizers.sh), OpenAI's Node client for the server test
# (tools/fetch-openai-client.sh), then a Meson build in ./build.
# Idempotent: run it again after pulling.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
./tools/fetch-tokenizers.sh
./tools/fetch-openai-client.sh
if [ ! -f build/build.ninja ]; then
  meson setup build "$@"
fi
ninja -C build

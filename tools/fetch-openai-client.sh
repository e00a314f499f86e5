#!/usr/bin/env bash
# Fetches OpenAI's official Node client (the `openai` npm package, pinned) into third_party/node_modules/, for the
# server test that talks to `inferno serve` through it (tests/server/openai_client.mjs). It has no dependencies of
# its own and needs Node.js 18 or newer. Idempotent: an installed copy of the pinned version is left alone.
set -euo pipefail
version=6.30.1
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/third_party"
installed=$(node -p "require('$dest/node_modules/openai/package.json').version" 2>/dev/null || true)
if [ "$installed" = "$version" ]; then exit 0; fi
mkdir -p "$dest"
# --legacy-peer-deps: the optional peers (ws for realtime, zod for schemas) are not needed for HTTP calls.
npm install --silent --no-save --no-package-lock --no-audit --no-fund --legacy-peer-deps --prefix "$dest" "openai@$version"
echo "fetched openai@$version -> third_party/node_modules/openai"

#!/usr/bin/env bash
# Installs inferno's build and test dependencies from Debian's packages. Idempotent; needs root or sudo.
# On Debian 12 (bookworm) Mesa's lavapipe comes from bookworm-backports (Mesa 25: Vulkan 1.4, a large heap);
# bookworm's own Mesa 22 works too but is slower and has a 2 GiB heap.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

. /etc/os-release
BACKPORTS=()
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/inferno-backports.list >/dev/null
  fi
  BACKPORTS=(-t bookworm-backports)
fi

PKGS=(build-essential pkg-config meson ninja-build git ca-certificates
      libvulkan-dev vulkan-tools glslc glslang-tools spirv-tools vulkan-validationlayers
      libsimdjson-dev doctest-dev libpcre2-dev libutf8proc-dev libcli11-dev libcpp-httplib-dev
      python3 clang libclang-rt-14-dev
      haproxy prometheus curl)  # the scale-out test: a router, promtool, a client

missing=()
for p in "${PKGS[@]}" mesa-vulkan-drivers; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
mesa_ok=1
if [ ${#BACKPORTS[@]} -gt 0 ]; then
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  case "$v" in 2[3-9].*) ;; *) mesa_ok=0 ;; esac
fi
if [ ${#missing[@]} -eq 0 ] && [ $mesa_ok = 1 ]; then
  echo "install-deps: everything is installed"; exit 0
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"
$SUDO apt-get install -y -q --no-install-recommends "${BACKPORTS[@]}" mesa-vulkan-drivers
# npm fetches the real tokenizer files and OpenAI's Node client, which node runs in the server tests; a machine with
# Node.js from elsewhere already has both.
command -v npm >/dev/null && command -v node >/dev/null || $SUDO apt-get install -y -q --no-install-recommends nodejs npm

#!/usr/bin/env bash
# Checks what `meson install` delivers: installs a configured build folder into a temporary DESTDIR, builds the
# examples there against the installed copy with pkg-config alone (examples/Makefile: the C and C++ examples on
# libinferno.so, the C example again on libinferno.a), runs them on the bundled demo model, and compares their
# greedy ids and text with the installed `inferno generate --greedy`. Exit status 0 only when everything holds.
#
# Usage: tools/test-install.sh [BUILD_DIR]    (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/inferno-test-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

say() { echo "test-install: $*"; }
fail() {
  echo "test-install: FAILED: $*" >&2
  exit 1
}
trim() {  # spaces and newlines off both ends, as the command-line checks compare
  local s="$1"
  s="${s#"${s%%[![:space:]]*}"}"
  s="${s%"${s##*[![:space:]]}"}"
  printf '%s' "$s"
}

say "meson install -C $build into $work/dest"
meson install -C "$build" --destdir "$work/dest" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "meson install"; }
prefix=$(meson introspect "$build" --buildoptions |
  python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
version=$(meson introspect "$build" --projectinfo | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
installed="$work/dest$prefix"

pc=$(find "$installed" -name inferno.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "no inferno.pc under $installed"
libdir=$(dirname "$(dirname "$pc")")
for f in include/inferno/inferno.h include/inferno/inferno.hpp include/inferno/error.hpp bin/inferno; do
  [ -f "$installed/$f" ] || fail "$prefix/$f is not installed"
done
[ -f "$libdir/libinferno.a" ] || fail "libinferno.a is not installed in ${libdir#"$work/dest"}"
[ -e "$libdir/libinferno.so" ] || fail "libinferno.so is not installed in ${libdir#"$work/dest"}"

# pkg-config finds the installed inferno.pc; the .pc names the final prefix, so the sysroot points it at DESTDIR.
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$work/dest"
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ "$(pkg-config --modversion inferno)" = "$version" ] || fail "pkg-config --modversion inferno is not $version"
say "pkg-config: $(pkg-config --cflags --libs inferno)"
say "pkg-config --static: $(pkg-config --static --libs inferno)"

say "building the examples with pkg-config alone"
mkdir "$work/examples"
cp "$root/examples/simple.c" "$root/examples/simple.cpp" "$root/examples/Makefile" "$work/examples/"
make -s -C "$work/examples" all static CFLAGS="-O2 -Wall -Wextra -Werror" CXXFLAGS="-O2 -Wall -Wextra -Werror" ||
  fail "the examples do not build against the installed inferno"
# ldd's output is taken whole before it is searched: `ldd | grep -q` under pipefail fails whenever grep's early exit
# makes ldd die of SIGPIPE.
loads=$(ldd "$work/examples/simple")
grep -q "$libdir/libinferno.so" <<<"$loads" ||
  fail "simple does not load the installed libinferno.so: $(grep inferno <<<"$loads")"
if grep -q libinferno <<<"$(ldd "$work/examples/simple-static")"; then fail "simple-static still needs libinferno.so"; fi

model="$root/models/brown-8m-bf16"
prompt="The jury said"
n=8
want_ids=$("$installed/bin/inferno" generate --quiet -m "$model" -p "$prompt" -n $n --greedy --print-ids 2>"$work/cli.err") ||
  { cat "$work/cli.err" >&2; fail "the installed inferno generate"; }
want_text=$("$installed/bin/inferno" generate --quiet -m "$model" -p "$prompt" -n $n --greedy 2>"$work/cli.err") ||
  { cat "$work/cli.err" >&2; fail "the installed inferno generate"; }
[ "$(wc -w <<<"$want_ids")" -ge 1 ] || fail "inferno generate --print-ids printed no ids"

for example in simple simple-cpp simple-static; do
  text=$("$work/examples/$example" "$model" "$prompt" $n 2>"$work/$example.err") ||
    { cat "$work/$example.err" >&2; fail "$example exited with an error"; }
  ids=$(sed -n 's/^ids: //p' "$work/$example.err")
  [ "$ids" = "$want_ids" ] || fail "$example ids '$ids' differ from inferno generate --print-ids '$want_ids'"
  [ "$(trim "$text")" = "$(trim "$want_text")" ] ||
    fail "$example text '$(trim "$text")' differs from inferno generate's '$(trim "$want_text")'"
  say "$example: '$(trim "$text")' ($ids) as inferno generate --greedy"
done
say "ok"

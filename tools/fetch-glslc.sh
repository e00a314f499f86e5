#!/usr/bin/env bash
# Fetches Debian 13 (trixie)'s glslc and spirv-tools into third_party/glslc-trixie/ (git-ignored), with the C and C++
# runtimes they need, and writes wrappers `glslc` and `spirv-val` there that run them through trixie's own dynamic
# loader. Debian 12's glslc lacks GL_EXT_integer_dot_product and GL_KHR_cooperative_matrix; trixie's has both, so
#   meson setup build-new -Dglslc=$PWD/third_party/glslc-trixie/glslc -Dspirv_val=$PWD/third_party/glslc-trixie/spirv-val
# builds the kernels that need them as well. The default build never depends on this.
#
# Nothing is installed into /: apt works from a private configuration (a trixie sources file, its own package lists,
# cache and an empty dpkg status under the target folder) and only downloads the .debs, which `dpkg -x` unpacks into
# the prefix. Idempotent: a prefix whose wrapper already runs is left alone (pass --force to fetch again).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix="$root/third_party/glslc-trixie"
packages=(glslc libshaderc1 spirv-tools libc6 libstdc++6 libgcc-s1)

if [ "${1:-}" != "--force" ] && [ -x "$prefix/glslc" ] && "$prefix/glslc" --version >/dev/null 2>&1; then
  echo "third_party/glslc-trixie already holds a working glslc:"
  "$prefix/glslc" --version | sed -n 1p
  exit 0
fi

apt_root="$prefix/apt"
rm -rf "$prefix"
mkdir -p "$apt_root/lists/partial" "$apt_root/cache/archives/partial" "$apt_root/etc/sources.list.d" \
         "$apt_root/etc/preferences.d" "$apt_root/debs"
: > "$apt_root/status"
cat > "$apt_root/etc/sources.list.d/trixie.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-trixie-stable.gpg /usr/share/keyrings/debian-archive-trixie-automatic.gpg
EOF
: > "$apt_root/etc/sources.list"

# Every path apt would otherwise take from the system points into the private tree; the system's sources, lists,
# preferences and dpkg database are neither read nor written.
apt_options=(
  -o "Dir::Etc::SourceList=$apt_root/etc/sources.list"
  -o "Dir::Etc::SourceParts=$apt_root/etc/sources.list.d"
  -o "Dir::Etc::Preferences=$apt_root/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$apt_root/etc/preferences.d"
  -o "Dir::State::Lists=$apt_root/lists"
  -o "Dir::State::status=$apt_root/status"
  -o "Dir::Cache=$apt_root/cache"
  -o "Dir::Cache::archives=$apt_root/cache/archives"
  -o "APT::Architecture=amd64"
  -o "APT::Architectures=amd64"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
)
apt-get "${apt_options[@]}" update
(cd "$apt_root/debs" && apt-get "${apt_options[@]}" download "${packages[@]}")

for deb in "$apt_root"/debs/*.deb; do
  dpkg -x "$deb" "$prefix"
done

lib1="$prefix/usr/lib/x86_64-linux-gnu"
lib2="$prefix/lib/x86_64-linux-gnu"
loader="$lib1/ld-linux-x86-64.so.2"
[ -e "$loader" ] || loader="$lib2/ld-linux-x86-64.so.2"
[ -e "$loader" ] || { echo "fetch-glslc: trixie's libc6 did not provide ld-linux-x86-64.so.2" >&2; exit 1; }

# The wrappers find the prefix from their own location, so the folder may be moved.
write_wrapper() {  # name binary
  cat > "$prefix/$1" <<EOF
#!/bin/sh
# Runs trixie's $2 with trixie's loader and libraries (written by tools/fetch-glslc.sh).
here=\$(CDPATH= cd -- "\$(dirname -- "\$0")" && pwd)
exec "\$here/${loader#"$prefix/"}" --library-path "\$here/usr/lib/x86_64-linux-gnu:\$here/lib/x86_64-linux-gnu" \\
  "\$here/usr/bin/$2" "\$@"
EOF
  chmod +x "$prefix/$1"
}
write_wrapper glslc glslc
write_wrapper spirv-val spirv-val
write_wrapper spirv-dis spirv-dis

rm -rf "$apt_root/lists" "$apt_root/cache"
"$prefix/glslc" --version | sed -n 1p
"$prefix/spirv-val" --version | sed -n 1p
echo "features: $(python3 "$root/tools/probe_glslc.py" "$prefix/glslc" | tr '\n' ' ')"

# Sourced by tools/fetch-glslc.sh and tools/fetch-lavapipe.sh: unpacks packages of a newer Debian suite, with every
# package they depend on, into a private prefix, and writes wrappers that run its programs through that suite's own
# dynamic loader and libraries. Nothing is installed into /: apt works from a private configuration (its own sources
# file, package lists, cache and an empty dpkg status under the prefix) and only downloads the .debs, which
# `dpkg -x` unpacks into the prefix.

# fetch_debian_prefix PREFIX "SUITE..." PACKAGE[/SUITE]...
# Each package with its dependencies, recursively (Depends only), from the given suites.
fetch_debian_prefix() {
  local prefix=$1 suites=$2
  shift 2
  local apt_root="$prefix/apt"
  rm -rf "$prefix"
  mkdir -p "$apt_root/lists/partial" "$apt_root/cache/archives/partial" "$apt_root/etc/sources.list.d" \
           "$apt_root/etc/preferences.d" "$apt_root/debs"
  : > "$apt_root/status"
  cat > "$apt_root/etc/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suites
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg /usr/share/keyrings/debian-archive-trixie-stable.gpg /usr/share/keyrings/debian-archive-trixie-automatic.gpg
EOF
  : > "$apt_root/etc/sources.list"
  # Every path apt would otherwise take from the system points into the private tree; the system's sources, lists,
  # preferences and dpkg database are neither read nor written.
  local apt_options=(
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
  # The dependency closure, resolved against the suites' own package lists (so a newer suite's renamed libraries
  # are followed); virtual names (<...>) are provided by real packages that are in the list too.
  local closure
  closure=$(apt-cache "${apt_options[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "$@")
  local names=() spec base
  for spec in "$@"; do names+=("$spec"); done
  while read -r base; do
    case "$base" in ""|" "*|"<"*) continue ;; esac
    local asked=0
    for spec in "$@"; do [ "${spec%%/*}" = "$base" ] && asked=1; done
    [ $asked = 1 ] || names+=("$base")
  done < <(printf '%s\n' "$closure" | grep -v '^ ' | sort -u)
  (cd "$apt_root/debs" && apt-get "${apt_options[@]}" download "${names[@]}")
  local deb
  for deb in "$apt_root"/debs/*.deb; do
    dpkg -x "$deb" "$prefix"
  done
  rm -rf "$apt_root/lists" "$apt_root/cache"
  [ -e "$prefix/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] ||
    { echo "debian-prefix: libc6 did not provide usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" >&2; return 1; }
}

# write_prefix_wrapper PREFIX NAME COMMAND [ENVIRONMENT...]
# PREFIX/NAME runs COMMAND (a path inside the prefix, or "" for the program given as the wrapper's first argument)
# with the prefix's loader and libraries first on the library path, after exporting ENVIRONMENT (lines of
# VAR=value, where @PREFIX@ stands for the prefix). The wrapper finds the prefix from its own location, so the folder
# may be moved.
write_prefix_wrapper() {
  local prefix=$1 name=$2 command=$3
  shift 3
  {
    echo '#!/bin/sh'
    echo "# Written by tools/debian-prefix.sh: runs ${command:-a program} with this folder's loader and libraries."
    echo 'here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)'
    local line
    for line in "$@"; do echo "export ${line//@PREFIX@/\$here}"; done
    if [ -n "$command" ]; then
      echo 'exec "$here/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$here/usr/lib/x86_64-linux-gnu:$here/lib/x86_64-linux-gnu" \'
      echo "  \"\$here/$command\" \"\$@\""
    else
      echo 'program=$1; shift'
      echo 'exec "$here/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$here/usr/lib/x86_64-linux-gnu:$here/lib/x86_64-linux-gnu" \'
      echo '  "$program" "$@"'
    fi
  } > "$prefix/$name"
  chmod +x "$prefix/$name"
}

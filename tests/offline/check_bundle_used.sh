#!/usr/bin/env bash
# A build against the offline bundle (-DSAGEVID_DEPS_PREFIX) must take from the bundle every header and shared
# library the bundle has, even where the system has its own copy (as on the machine that makes the bundle):
# the GPU host has no such copies, so one used here would break the build there. Checks the headers each
# object was compiled with (ninja's dependency log) and the libraries the binaries load (ldd).
#   tests/offline/check_bundle_used.sh BUILD_DIR PREFIX NINJA
set -euo pipefail
build=$(realpath "${1:?usage: check_bundle_used.sh BUILD_DIR PREFIX NINJA}")
prefix=$(realpath "${2:?}")
ninja=${3:?}
libdir=$prefix/lib/x86_64-linux-gnu
problems=0

headers=0
while read -r header; do
  headers=$((headers + 1))
  relative=${header#/usr/include/}
  relative=${relative#x86_64-linux-gnu/}
  if [ -e "$prefix/include/$relative" ]; then
    echo "system header used where the bundle has one: $header"
    problems=$((problems + 1))
  fi
done < <("$ninja" -C "$build" -t deps | awk '$1 ~ /^\/usr\/include\// {print $1}' | sort -u)

bundle_loads=0
for binary in "$build/server/sagevid" "$build/clients/sagevid-client"; do
  while read -r soname path; do
    [ -e "$libdir/$soname" ] || continue
    case $(realpath "$path") in
      "$libdir"/*) bundle_loads=$((bundle_loads + 1)) ;;
      *) echo "$(basename "$binary") loads $soname from $path, not from the bundle"; problems=$((problems + 1)) ;;
    esac
  done < <(ldd "$binary" | awk '$2 == "=>" {print $1, $3}')
done

# Guards against a check that looked at nothing: the server loads gRPC, FFmpeg and the rest from the bundle.
[ "$bundle_loads" -ge 20 ] || { echo "only $bundle_loads libraries loaded from the bundle"; exit 1; }
[ "$problems" = 0 ] || exit 1
echo "bundle used: $bundle_loads library loads from $libdir; $headers system headers, none the bundle has"

#!/usr/bin/env bash
# Checks that every program and library of an offline bundle (scripts/make-offline-deps.sh) finds the shared
# libraries it needs, in the bundle or else on this host, and names each one missing and who needs it.
# --strict, where the bundle is made: a library found outside the bundle must also be one that every host has
# (docker/runtime-base-libraries.txt), so a library the bundle lacks fails here rather than on the GPU host.
# CMake runs it without --strict when it configures against the bundle (cmake/OfflineDeps.cmake).
#   scripts/check-offline-deps.sh [--strict] PREFIX
set -euo pipefail
strict=0
[ "${1:-}" = --strict ] && { strict=1; shift; }
prefix=$(realpath "${1:?usage: check-offline-deps.sh [--strict] PREFIX}")
base_list=$(dirname "$0")/../docker/runtime-base-libraries.txt
base=$(grep -v '^#' "$base_list")

problems=0 checked=0
while read -r elf; do
  head -c 4 "$elf" | grep -q ELF || continue
  checked=$((checked + 1))
  while read -r soname arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = not ]; then
      echo "check-offline-deps: $soname (needed by ${elf#"$prefix"/}) is neither in the bundle nor on this host"
      problems=$((problems + 1))
    elif [ "$strict" = 1 ] && [[ $path != "$prefix"/* ]] && ! grep -qxF "$soname" <<< "$base"; then
      echo "check-offline-deps: $soname (needed by ${elf#"$prefix"/}) comes from this host ($path), which a" \
           "host may lack: add its package to scripts/make-offline-deps.sh"
      problems=$((problems + 1))
    fi
  done < <(ldd "$elf" 2>/dev/null)
done < <(find "$prefix/bin" "$prefix/lib" -type f \( -perm -u+x -o -name '*.so*' \) 2>/dev/null)

[ "$checked" -gt 0 ] || { echo "check-offline-deps: no programs or libraries under $prefix"; exit 1; }
[ "$problems" = 0 ] || exit 1
echo "check-offline-deps: $checked programs and libraries in $prefix find every library they need"

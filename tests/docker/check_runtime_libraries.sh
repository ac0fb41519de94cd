#!/usr/bin/env bash
# The runtime image's libraries against what the binaries need: stages a build the way docker/Dockerfile does
# (scripts/stage-runtime.sh) and fails naming every library a staged binary or library would look for outside
# the stage that the runtime image does not provide (docker/runtime-base-libraries.txt).
#   tests/docker/check_runtime_libraries.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: check_runtime_libraries.sh BUILD_DIR}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
STAGE_LINK=1 scripts/stage-runtime.sh "$build" "$stage" > /dev/null
base=$(grep -v '^#' docker/runtime-base-libraries.txt)

missing=0 checked=0
for elf in "$stage"/bin/* "$stage"/lib/*; do
  checked=$((checked + 1))
  while read -r soname path; do
    grep -qxF "$soname" <<< "$base" && continue
    case "$path" in
      "$stage"/lib/*) ;;
      *) echo "missing from the image: $soname (needed by $(basename "$elf"), found here at $path)"; missing=1 ;;
    esac
  done < <(LD_LIBRARY_PATH="$stage/lib" ldd "$elf" 2>/dev/null | awk '$2 == "=>" {print $1, $3}')
done
[ -x "$stage/bin/sagevid" ] && [ -x "$stage/bin/sagevid-client" ] || { echo "binaries not staged"; exit 1; }
[ "$checked" -gt 2 ] || { echo "nothing staged besides the binaries"; exit 1; }
[ "$missing" = 0 ] || exit 1
echo "runtime libraries: $checked staged files, every dependency in the stage or the base image"

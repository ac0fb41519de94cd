#!/usr/bin/env bash
# Formats the C++ and CUDA sources in place (.clang-format has the style) with the clang-format that
# scripts/setup.sh pins into .venv; CLANG_FORMAT names another binary of that version.
#   scripts/format.sh           format every source file
#   scripts/format.sh --check   change nothing; list the files that differ and exit 1 if there are any
# Exit 2: clang-format is missing, of another version, or failed.
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=${CLANG_FORMAT:-.venv/bin/clang-format}
pinned=$(grep -o 'clang-format==[0-9.]*' scripts/setup.sh | cut -d= -f3)

fail() { echo "format: $*" >&2; exit 2; }

# Another version formats some lines differently, so its verdict would not be this tree's.
check_version() {
  [ -x "$clang_format" ] || fail "no $clang_format: run scripts/setup.sh"
  local version
  version=$("$clang_format" --version)
  [[ "$version" == *"version $pinned" ]] || fail "$clang_format is '$version', not $pinned: run scripts/setup.sh"
}

# Our sources: every .h/.cpp/.cu/.cuh of the C++ parts, test fixtures left out.
sources() {
  find kernels models server clients/cpp tests tools -type f \
    \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -not -path '*/fixtures/*' -print0 | sort -z
}

# One clang-format process over all files (a second of work; one process per file takes ten times longer).
# --dry-run reports each difference as "FILE:LINE:COL: warning: code should be clang-formatted".
check() {
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  sources | xargs -0 "$clang_format" --dry-run 2>"$log" || { cat "$log" >&2; fail "clang-format failed"; }
  local differ
  differ=$(sed -n 's/^\(.*\):[0-9]*:[0-9]*: warning: code should be clang-formatted.*/\1/p' "$log" | sort -u)
  if [ -n "$differ" ]; then
    echo "$differ"
    echo "format: $(wc -l <<<"$differ") file(s) differ from .clang-format's style: run scripts/format.sh" >&2
    exit 1
  fi
}

check_version
case "${1:-}" in
  --check) check ;;
  "") sources | xargs -0 "$clang_format" -i || fail "clang-format failed" ;;
  *) fail "usage: scripts/format.sh [--check]" ;;
esac

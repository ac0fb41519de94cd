#!/usr/bin/env bash
# The first of STEM.EXT, STEM-2.EXT, STEM-3.EXT... that does not exist: where a second run of a GPU-host step in
# the same device call writes beside the first's file instead of over it.
#   scripts/free-name.sh STEM EXT
set -u
stem=$1 ext=$2
path="$stem.$ext"
for n in $(seq 2 99); do [ -e "$path" ] || break; path="$stem-$n.$ext"; done
echo "$path"

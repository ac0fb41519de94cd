#!/usr/bin/env bash
# The device tool brings back at most 8 files from $OUT: a GPU-host script packs its logs (everything in the
# folder but the .md tables and earlier packs) into one archive, so that the tables and every log come back.
#   scripts/pack-logs.sh FOLDER NAME      (writes FOLDER/logs-NAME.tar.gz, or logs-NAME-2.tar.gz... beside it)
set -uo pipefail
folder=$1 name=$2
archive=$(basename "$("$(dirname "$0")/free-name.sh" "$folder/logs-$name" tar.gz)")  # beside an earlier pack
cd "$folder" || exit 1
mapfile -t logs < <(find . -maxdepth 1 -type f ! -name '*.md' ! -name 'logs-*.tar.gz' -printf '%P\n' | sort)
[ ${#logs[@]} -gt 0 ] || exit 0
tar -czf "$archive" "${logs[@]}" && rm -f "${logs[@]}"

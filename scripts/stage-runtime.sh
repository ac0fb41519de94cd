#!/usr/bin/env bash
# Collects what the runtime image needs from a build into STAGE_DIR: bin/ (sagevid, sagevid-client),
# configs/, and lib/ with every shared library they need that the runtime image does not provide itself
# (docker/runtime-base-libraries.txt). Libtorch's folder and the CUDA libraries of the torch wheel are copied
# whole, since torch and cuDNN load parts of them at run time (dlopen) that ldd does not list, except the
# multi-node transports (NVSHMEM's bootstrap/transport plugins, cuFile's RDMA), which need MPI/UCX/InfiniBand
# libraries a one-host server neither has nor loads.
#   scripts/stage-runtime.sh BUILD_DIR STAGE_DIR
# STAGE_LINK=1 hard-links instead of copying where it can (the test does; the image build copies).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: stage-runtime.sh BUILD_DIR STAGE_DIR}
stage=${2:?usage: stage-runtime.sh BUILD_DIR STAGE_DIR}
base_list=docker/runtime-base-libraries.txt
mkdir -p "$stage/bin" "$stage/lib"

put() {  # put FILE DIR: the file behind any links, under its own name
  if [ "${STAGE_LINK:-0}" = 1 ]; then cp -fL --link "$1" "$2/" 2>/dev/null || cp -fL "$1" "$2/"; else cp -fL "$1" "$2/"; fi
}
provided_by_image() { grep -qxF "$1" <(grep -v '^#' "$base_list"); }

put "$build/server/sagevid" "$stage/bin"
put "$build/clients/sagevid-client" "$stage/bin"
cp -r configs "$stage/"

torch_lib=$(.venv/bin/python -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
for dir in "$torch_lib" "$torch_lib"/../../nvidia/*/lib; do
  [ -d "$dir" ] || continue
  for lib in "$dir"/*.so*; do
    case $(basename "$lib") in nvshmem_bootstrap_* | nvshmem_transport_* | libcufile_rdma*) continue ;; esac
    [ -f "$lib" ] && put "$lib" "$stage/lib"
  done
done

# The ldd closure of the binaries and of everything copied so far, minus what the image provides.
changed=1
while [ "$changed" = 1 ]; do
  changed=0
  for elf in "$stage"/bin/* "$stage"/lib/*; do
    while read -r soname path; do
      [ -n "$path" ] && [ -f "$path" ] || continue
      provided_by_image "$soname" && continue
      [ -e "$stage/lib/$soname" ] && continue
      put "$path" "$stage/lib"
      changed=1
    done < <(LD_LIBRARY_PATH="$stage/lib" ldd "$elf" 2>/dev/null | awk '$2 == "=>" {print $1, $3}')
  done
done
echo "stage-runtime: $(find "$stage" -type f | wc -l) files in $stage"

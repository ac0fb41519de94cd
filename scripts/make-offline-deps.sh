#!/usr/bin/env bash
# Makes the offline bundle of the server's system dependencies, for a host that has none of them and no network
# (the GPU host: Ubuntu 24.04). Run on Debian 12; needs no root. The bundle holds
#   - from Debian's binary packages (apt-get download + dpkg -x): gRPC C++ with grpc_cpp_plugin and its CMake
#     config, protobuf with protoc (gRPC's own, so the two always match), Abseil, re2, c-ares, OpenSSL, zlib,
#     cpp-httplib with brotli, libx264, and pkgconf (the host may have no pkg-config);
#   - FFmpeg's libav* (5.1, Debian's source package with its patches), built here with only what sagevid uses:
#     the libx264 encoder, the MP4 muxer, swscale, the PNG (with the bundle's zlib) and JPEG decoders for
#     image-to-video requests, and the H.264 decoder and MP4 demuxer the tests read videos back with. Debian's
#     own libavcodec59 links every codec Debian has (x265, aom, codec2, rsvg, cairo, ICU, X11...), a closure
#     far too large to carry (README: air-gapped install).
# Every library the bundle's programs and libraries need is in the bundle (found through RUNPATH $ORIGIN)
# or in docker/runtime-base-libraries.txt, the minimal Ubuntu 24.04 + CUDA system; scripts/check-offline-deps.sh
# enforces it here and again when CMake configures against the bundle. Build with
# `cmake -DSAGEVID_DEPS_PREFIX=/path/to/sagevid-deps`.
#   scripts/make-offline-deps.sh [OUTPUT]      (default .carry/sagevid-deps.tar.xz; unpacks to sagevid-deps/)
# Downloads and the FFmpeg build are kept in $SAGEVID_DEPS_WORK (default /tmp/sagevid-deps-work) for reruns.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
output=$(realpath -m "${1:-.carry/sagevid-deps.tar.xz}")
work=${SAGEVID_DEPS_WORK:-/tmp/sagevid-deps-work}
multiarch=x86_64-linux-gnu
ffmpeg_version=$(apt-cache policy libavcodec59 | awk '/Candidate:/ {print $2}')  # the FFmpeg apt would install here
[ -n "$ffmpeg_version" ] && [ "$ffmpeg_version" != "(none)" ] ||
  { echo "make-offline-deps: apt knows no libavcodec59 (not Debian 12, or no apt-get update yet)"; exit 1; }

packages=(
  libgrpc++1.51 libgrpc++-dev libgrpc29 libgrpc-dev protobuf-compiler-grpc
  libprotobuf32 libprotobuf-lite32 libprotoc32 libprotobuf-dev protobuf-compiler
  libabsl20220623 libabsl-dev libre2-9 libre2-dev libc-ares2 libc-ares-dev
  libssl3 libssl-dev zlib1g zlib1g-dev libcpp-httplib0.11 libcpp-httplib-dev libbrotli1 libbrotli-dev
  libx264-164 libx264-dev pkgconf-bin libpkgconf3
)
tools=(nasm patchelf)  # only to make the bundle: FFmpeg's assembly, and the RUNPATH of Debian's binaries

mkdir -p "$work/debs" "$work/tools" "$work/apt/lists/partial" "$work/src"
# apt-get's own configuration, but with lists of its own: deb-src for FFmpeg's source package.
apt_src=(-o Dir::Etc::SourceList="$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
         -o Dir::State::Lists="$work/apt/lists")

download() {
  echo "make-offline-deps: downloading ${#packages[@]} packages and the tools"
  rm -f "$work"/debs/*.deb  # a version left from an earlier run would be unpacked too
  (cd "$work/debs" && apt-get download -q "${packages[@]}" > "$work/download.log" 2>&1) ||
    { tail -20 "$work/download.log"; exit 1; }
  (cd "$work/tools" && apt-get download -q "${tools[@]}" > "$work/tools.log" 2>&1 &&
     for deb in ./*.deb; do dpkg -x "$deb" .; done) || { tail -20 "$work/tools.log"; exit 1; }
  if [ ! -f "$dsc" ]; then
    printf 'deb-src http://deb.debian.org/debian bookworm main\ndeb-src http://deb.debian.org/debian-security bookworm-security main\n' \
      > "$work/apt/sources.list"
    apt-get "${apt_src[@]}" update -q > "$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; exit 1; }
    (cd "$work/src" && apt-get "${apt_src[@]}" source --download-only "ffmpeg=$ffmpeg_version" >> "$work/apt.log" 2>&1) ||
      { tail -20 "$work/apt.log"; exit 1; }
  fi
}

# Debian's /usr (and the /lib of packages not yet moved to /usr) becomes the bundle's root.
unpack() {
  local root=$work/root
  rm -rf "$root" "$stage"
  mkdir -p "$root" "$stage"
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  cp -a "$root/usr/." "$stage/"
  [ -d "$root/lib" ] && cp -a "$root/lib/." "$stage/lib/"
  rm -rf "$stage/share/doc" "$stage/share/man" "$stage/share/lintian" "$stage/share/bug"
  find "$stage" -name '*.a' -delete
  rm -rf "$stage/lib/$multiarch/engines-3" "$stage/lib/$multiarch/ossl-modules"  # OpenSSL plugins we never load
  # Links that point at /usr/lib or /lib (zlib's libz.so) would leave the bundle: make them relative.
  find "$stage" -type l -lname '/*' | while read -r link; do
    ln -sfn "$(basename "$(readlink "$link")")" "$link"
  done
}

# pkg-config files name /usr (Debian's) or the stage (FFmpeg's); ${pcfiledir} makes them point into the bundle
# wherever it is unpacked. Debian's gRPC files say libdir=${exec_prefix}/lib, where the libraries are not.
relocate_pkgconfig() {
  local pc up
  for pc in "$stage"/lib/$multiarch/pkgconfig/*.pc "$stage"/share/pkgconfig/*.pc; do
    [ -f "$pc" ] || continue
    up='${pcfiledir}/../..'
    case $pc in */lib/$multiarch/pkgconfig/*) up='${pcfiledir}/../../..' ;; esac
    sed -i -e "s#$stage#/usr#g" -e "s#^prefix=.*#prefix=$up#" -e 's#\([=IL ]\)/usr/#\1${prefix}/#g' \
      -e 's#\([=IL ]\)/usr$#\1${prefix}#g' -e "s#^libdir=\${exec_prefix}/lib\$#libdir=\${exec_prefix}/lib/$multiarch#" "$pc"
  done
}

build_ffmpeg() {
  if [ ! -f "$src/.built" ]; then
    rm -rf "$src"
    dpkg-source --no-check -x "$dsc" "$src" > "$work/ffmpeg-source.log" 2>&1 ||
      { tail -20 "$work/ffmpeg-source.log"; exit 1; }
  fi
  if [ -f "$src/.built" ]; then  # same prefix as last time: only install again
    make -C "$src" install > "$work/ffmpeg-install.log" 2>&1 || { tail -20 "$work/ffmpeg-install.log"; exit 1; }
    return
  fi
  echo "make-offline-deps: building FFmpeg (the parts sagevid uses; a few minutes)"
  # --disable-autodetect: nothing this machine happens to have (VAAPI, X11...) gets linked in; zlib (the PNG
  # decoder's inflate) is asked for, and found in the stage like x264.
  (cd "$src" && export PATH="$work/tools/usr/bin:$PATH" PKG_CONFIG_LIBDIR="$stage/lib/$multiarch/pkgconfig" &&
   ./configure --prefix="$stage" --libdir="$stage/lib/$multiarch" --incdir="$stage/include" \
     --enable-shared --disable-static --enable-gpl --enable-libx264 --disable-autodetect \
     --disable-programs --disable-doc --disable-avdevice --disable-avfilter --disable-postproc --disable-network \
     --extra-cflags="-I$stage/include" --extra-ldflags="-L$stage/lib/$multiarch" --enable-zlib \
     --disable-debug --disable-everything --enable-encoder=libx264 --enable-decoder=h264,png,mjpeg \
     --enable-parser=h264 \
     --enable-muxer=mp4,mov --enable-demuxer=mov --enable-protocol=file &&
   make -j "${SAGEVID_JOBS:-2}" && make install && touch .built) > "$work/ffmpeg-build.log" 2>&1 ||
    { tail -30 "$work/ffmpeg-build.log"; exit 1; }
}

# Debian's binaries look for their libraries in the system's folders only; the bundle's find each other.
set_runpaths() {
  local patchelf=$work/tools/usr/bin/patchelf file
  find "$stage/lib/$multiarch" -maxdepth 1 -type f -name '*.so*' | while read -r file; do
    "$patchelf" --set-rpath '$ORIGIN' "$file" || exit 1
  done
  for file in "$stage"/bin/*; do
    "$patchelf" --set-rpath "\$ORIGIN/../lib/$multiarch" "$file" || exit 1
  done
}

manifest() {
  {
    echo "sagevid offline dependencies, made $(date -u +%Y-%m-%dT%H:%MZ) by scripts/make-offline-deps.sh"
    echo "Debian packages:"
    for deb in "$work"/debs/*.deb; do dpkg-deb --show --showformat='  ${Package} ${Version}\n' "$deb"; done
    echo "FFmpeg: Debian source package ffmpeg $ffmpeg_version, built with:"
    sed -n 's/^#define FFMPEG_CONFIGURATION /  /p' "$src/config.h"
    echo "Libraries expected from the host (docker/runtime-base-libraries.txt):"
    grep -v '^#' docker/runtime-base-libraries.txt | sed 's/^/  /'
  } > "$stage/MANIFEST.txt"
}

stage=$work/sagevid-deps
dsc=$work/src/ffmpeg_${ffmpeg_version#*:}.dsc  # Debian's file names leave out the epoch
src=$work/src/ffmpeg-${ffmpeg_version#*:}    # built once per version
download
unpack
relocate_pkgconfig  # x264's, for FFmpeg's configure
build_ffmpeg
relocate_pkgconfig  # FFmpeg's
set_runpaths
manifest
"$repo/scripts/check-offline-deps.sh" --strict "$stage"
mkdir -p "$(dirname "$output")"
echo "make-offline-deps: packing $output"
tar -C "$work" -cf - sagevid-deps | xz -9 -T "${SAGEVID_JOBS:-2}" > "$output.tmp"
mv "$output.tmp" "$output"
echo "make-offline-deps: $(du -k "$output" | cut -f1) KiB in $output ($(du -sk "$stage" | cut -f1) KiB unpacked)"

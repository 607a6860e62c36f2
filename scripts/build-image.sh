#!/usr/bin/env bash
# Builds the treecache node image.
#
#   scripts/build-image.sh [TAG]                 (default TAG: treecache:local)
#       builds static binaries on this machine with cargo, then the image from
#       them (Dockerfile target "runtime-prebuilt"); needs no base image.
#   scripts/build-image.sh --from-source [TAG]
#       builds the whole Dockerfile (target "runtime"): compiles inside the
#       official Rust image, which Docker must be able to pull.
#
# Prints the image's tag and size on the last line. --force-rm: the classic
# builder otherwise keeps the container of a failed step.
set -euo pipefail
cd "$(dirname "$0")/.."

target_triple=x86_64-unknown-linux-gnu
bin_dir=target/$target_triple/release

from_source=false
if [ "${1:-}" = "--from-source" ]; then
  from_source=true
  shift
fi
if [ $# -gt 1 ] || [[ ${1:-} == -* ]]; then
  echo "usage: $0 [--from-source] [TAG]" >&2
  exit 2
fi
tag=${1:-treecache:local}
# The image's org.opencontainers.image.version label: the package's version.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)

if $from_source; then
  docker build --force-rm --target runtime --build-arg "VERSION=$version" -t "$tag" .
else
  RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --workspace --target "$target_triple"
  for bin in treecache treecache-cli; do
    # A dynamically linked binary names its loader in a PT_INTERP header and
    # would not start on the empty base image.
    if readelf --program-headers "$bin_dir/$bin" | grep -q INTERP; then
      echo "build-image: $bin_dir/$bin is not statically linked" >&2
      exit 1
    fi
  done
  docker build --force-rm --target runtime-prebuilt --build-arg "BIN_DIR=$bin_dir" \
    --build-arg "VERSION=$version" -t "$tag" .
fi

size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "build-image: built $tag, $size bytes ($(( (size + 524288) / 1048576 )) MiB)"

#!/usr/bin/env bash
# Builds swarmnode:local, a FROM-scratch image holding only our statically linked release binary. Needs no base
# image and no registry: the binary is linked against glibc statically (+crt-static on the gnu target, the one
# toolchain target this machine has), so the image has nothing else in it.
# Usage: scripts/docker-image.sh [TAG]   (default swarmnode:local)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-swarmnode:local}
target=x86_64-unknown-linux-gnu
# A separate target directory keeps the static build from invalidating the normal one.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" cargo build --release --locked --target "$target" \
    --target-dir target/static
binary=target/static/$target/release/swarmnode
# A dynamic executable lists the libraries it needs ("libc.so.6 => ..."); a static one lists none.
if ldd "$binary" 2>&1 | grep -q "=>"; then
    echo "error: $binary is dynamically linked" >&2
    exit 1
fi
context=target/docker-context
rm -rf "$context"
mkdir -p "$context/data"
cp "$binary" "$context/swarmnode"
cp Dockerfile "$context/Dockerfile"
docker build --quiet --tag "$tag" "$context" >/dev/null
size=$(docker image inspect "$tag" --format '{{.Size}}')
echo "built $tag ($((size / 1024 / 1024)) MiB)"

#!/usr/bin/env bash
# Gossip latency and delivery benchmark on loopback (release build, mDNS off).
# Usage: scripts/bench-gossip.sh [NODES] [MESSAGES] [BYTES]   (defaults: 10 200 1024)
# Prints one markdown row for docs/benchmarks.md:
# | nodes | messages | bytes | delivered | duplicates | p50 ms | p99 ms | max ms | publish s | RSS mean | RSS max |
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-10}
messages=${2:-200}
bytes=${3:-1024}
# Each node holds a few sockets per peer; 50 nodes need more than the common 1024 descriptors in total.
ulimit -n 65536 2>/dev/null || true
cargo bench --quiet --bench gossip -- "$nodes" "$messages" "$bytes"

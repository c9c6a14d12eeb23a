#!/usr/bin/env bash
# API publish throughput to 10 nodes on loopback (release build, mDNS off), with or without batching.
# Usage: scripts/bench-api.sh [BATCH_WINDOW] [MESSAGES] [CONCURRENCY]   (defaults: off 5000 32)
# Prints one markdown row for docs/benchmarks.md:
# | batch window | messages | concurrency | failed requests | requests/s | delivered | skipped by stdout | deliveries/s |
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
cargo bench --quiet --bench api -- "${1:-off}" "${2:-5000}" "${3:-32}"

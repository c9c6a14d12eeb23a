#!/usr/bin/env bash
# Failure-detection and re-activation times of the liveness policy, two nodes on loopback (release build, mDNS off).
# Usage: scripts/bench-liveness.sh [SETTING] [TRANSPORT] [SAMPLES]   (defaults: fast tcp 5)
#   SETTING: default (heartbeat 10s, timeout 30s) or fast (heartbeat 1s, timeout 3s); TRANSPORT: tcp or quic.
# Prints markdown rows for docs/benchmarks.md:
# | setting | transport | scenario | samples | min ms | median ms | max ms |
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --quiet --bench liveness -- "${1:-fast}" "${2:-tcp}" "${3:-5}"

#!/usr/bin/env bash
# Churn: one hub node and PEERS short-lived peer processes (at most CONCURRENT alive at once) that connect, publish
# one message and vanish (SIGKILL one in three, SIGTERM the rest), with --forget-after 30s on the hub. Prints the
# hub's RSS and table sizes at start, at the peak and after the churn (markdown rows for docs/benchmarks.md).
# With BASELINE (another swarmnode binary, e.g. the build before --forget-after), it runs as a second hub that every
# peer also bootstraps from, so both hubs see the same churn in the same run.
# Usage: scripts/bench-churn.sh [PEERS] [CONCURRENT] [BASELINE]   (defaults: 3000 50 none; release build, loopback, mDNS off)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --quiet --bench churn -- "${1:-3000}" "${2:-50}" ${3:+"$3"}

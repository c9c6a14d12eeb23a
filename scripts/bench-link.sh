#!/usr/bin/env bash
# Link throughput with /perf/1.0.0 between two nodes on loopback (TCP+Noise, TCP+TLS, QUIC), as a share of iperf3
# over the same loopback and of one core's chacha20-poly1305, all in the same run (release build).
# Usage: scripts/bench-link.sh [SIZE] [RUNS]   (defaults: 1GiB 3). Needs iperf3 and openssl (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v iperf3 >/dev/null || ! command -v openssl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 openssl
fi
BENCH_COMMAND=scripts/bench-link.sh cargo bench --quiet --bench link -- "${1:-1GiB}" "${2:-3}"

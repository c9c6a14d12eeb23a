#!/usr/bin/env bash
# swarmnode against the bare rust-libp2p node of benches/baseline, in the same run, interleaved (release builds,
# loopback, mDNS off). Prints markdown rows and writes JSON to docs/benchmarks/ (VERSUS_OUT=FILE for another place).
# Usage: scripts/bench-versus.sh gossip N MESSAGES BYTES RATE RUNS [SWARMNODE FLAGS...]
#        scripts/bench-versus.sh memory PEERS RUNS
#        scripts/bench-versus.sh throughput N BYTES RUNS BATCH_WINDOW
# e.g.   scripts/bench-versus.sh gossip 10 100 1024 50 3
set -euo pipefail
cd "$(dirname "$0")/.."
# Each node holds a few sockets per peer; 50 nodes need more than the common 1024 descriptors in total.
ulimit -n 65536 2>/dev/null || true
cargo build --quiet --release -p swarmnode-baseline
BENCH_COMMAND=scripts/bench-versus.sh cargo bench --quiet --bench versus -- "$@"

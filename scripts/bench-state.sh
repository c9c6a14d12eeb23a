#!/usr/bin/env bash
# Replicated state: in-process nodes on loopback (release build, mDNS off, one tokio runtime with 2 workers; source:
# benches/state.rs and benches/state_bench/), each figure against a baseline measured in the same run.
# Usage: scripts/bench-state.sh MODE ARGS
#   visibility N SAMPLES   put → state_changed on every other node of an N-node star, against a gossip publish
#   catchup KEYS [RUNS]    a fresh node catching up KEYS keys from one peer (RUNS fresh nodes, default 3)
#   writes ROUNDS          durable puts per second, sequential and 32 callers, against bare redb commits
#   partition [RUNS]       2 + 2 nodes split for 30 s with writes on both sides, then healed (default 1 run)
# Prints markdown rows for docs/benchmarks.md on stdout; progress goes to stderr (no log subscriber: the nodes are
# silent).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    sed -n '4,8p' "$0" >&2
    exit 2
fi
# 50 in-process nodes hold a few sockets per peer each.
ulimit -n 65536 2>/dev/null || true
cargo bench --quiet --bench state -- "$@"

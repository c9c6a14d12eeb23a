#!/usr/bin/env bash
# Membership: how long until every node of an N-node swarm sees a new member alive, and a SIGKILLed member suspect
# and failed, against the node's own liveness detection in the same run; and member-record bytes per node against
# its whole libp2p traffic in the same window (release build, loopback, mDNS off; source: benches/members.rs).
# Usage: scripts/bench-members.sh [SETTING] [N] [SAMPLES]   (defaults: fast 10 5)
#   SETTING: default (member interval 10s, ttl 30s, failed at 90s) or fast (--member-interval 500ms --member-ttl 1500ms)
# Prints markdown rows for docs/benchmarks.md. Each node runs one tokio worker thread and logs only errors: N
# processes share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKIO_WORKER_THREADS=1 RUST_LOG=error
cargo bench --quiet --bench members -- "${1:-fast}" "${2:-10}" "${3:-5}"

#!/usr/bin/env bash
# What tokenless and stalled API clients cost a token-protected node, this build beside a baseline build in the same
# run (release builds, loopback, mDNS off): resident memory and /metrics size at rest, after 20 000 and 40 000
# tokenless requests (a connection each) with made-up 4 000-character methods, with 2 000 half-sent connections held
# 15 s, and 5 s after they close; min / median / max over RUNS runs, each also as a ratio to the receiver's own figure at rest.
# Usage: scripts/bench-api-flood.sh RUNS BASELINE_BINARY
#   BASELINE_BINARY: e.g. a release build of the commit before the API was bounded (git worktree add ../base e0761bf;
#   cargo build --release there).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:?usage: scripts/bench-api-flood.sh RUNS BASELINE_BINARY}"
baseline="${2:?usage: scripts/bench-api-flood.sh RUNS BASELINE_BINARY}"
cargo bench --quiet --bench api_flood -- "$runs" "$(realpath "$baseline")"

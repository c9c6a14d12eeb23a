#!/usr/bin/env bash
# Route lookups per second over 1 000 members (weighted rendezvous hashing, policy::route::owners) against a
# consistent-hash ring with 100 points a member, interleaved in one run, for 1 and 3 owners (release build, one thread).
# Usage: scripts/bench-route.sh [RUNS]   (default 5)
# Prints markdown rows for docs/benchmarks.md, min / median / max over the runs:
# | owners | members | runs | rendezvous lookups/s | ring (100 points a member) lookups/s | ring ÷ rendezvous |
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --quiet --bench route -- "${1:-5}"

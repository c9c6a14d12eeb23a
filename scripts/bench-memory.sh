#!/usr/bin/env bash
# Resident memory of a node flooded with large messages while nobody reads its events (release build, loopback,
# mDNS off): before, at the peak, and 10 s and 65 s after the flood, min / median / max over RUNS runs.
# Usage: scripts/bench-memory.sh [MODE] [BUDGET] [RUNS] [MESSAGES] [BYTES]   (defaults: unread 64MiB 3 2000 524288)
#   MODE: devnull (the receiver's stdout printer reads every event) or unread (its stdout is a pipe nobody reads);
#   BUDGET: its --event-buffer-bytes, or `default` to pass no flag. SWARMNODE_BINARY=PATH runs another build as the
#   receiver (e.g. one from before the flag, with BUDGET `default`).
# Prints a line per run (deliveries, flood time, KiB) and one markdown row for docs/benchmarks.md:
# | receiver | stdout | budget | RSS before | peak | 10 s after | 65 s after | event buffer |
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --quiet --bench memory -- "${1:-unread}" "${2:-64MiB}" "${3:-3}" "${4:-2000}" "${5:-524288}"

#!/usr/bin/env bash
# Every benchmark of the comparison with the bare rust-libp2p node, in one command (release builds, loopback, mDNS
# off, each step bounded by `timeout`): gossip latency/CPU/RSS at N = 10, 20, 50; memory while 200 peers connect;
# sustained throughput at 1 KiB and 64 KiB with and without --batch-window; link throughput with /perf/1.0.0 against
# iperf3 and the cipher; the in-process simulation when it is there. Writes JSON and PNG plots to docs/benchmarks/
# and regenerates the summary in docs/benchmarks.md.
#
#   scripts/bench.sh           the full run (about 40 minutes on 2 cores)
#   scripts/bench.sh --quick   tiny sizes, one run each, results in target/bench-quick/ (docs/ untouched): it only
#                              proves that every benchmark still runs, and asserts nothing about speed (CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
[ "${1:-}" = --quick ] && quick=true

need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v openssl >/dev/null || need+=(openssl)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
ulimit -n 65536 2>/dev/null || true

cargo build --quiet --release -p swarmnode-baseline
cargo bench --quiet --no-run --bench versus --bench link --bench plots

if $quick; then
    out=target/bench-quick
    mkdir -p "$out"
    cp docs/benchmarks.md "$out/summary.md"
else
    out=docs/benchmarks
fi
export BENCH_COMMAND
step() { # NAME TIMEOUT BENCH ARGS...: one benchmark, its JSON to $out/NAME.json
    local name=$1 limit=$2 bench=$3
    shift 3
    echo "== $name: $bench $*" >&2
    BENCH_COMMAND="scripts/bench.sh$($quick && echo ' --quick') ($bench)" VERSUS_OUT="$out/$name.json" \
        timeout "$limit" cargo bench --quiet --bench "$bench" -- "$@"
}

if $quick; then
    step gossip-3 300 versus gossip 3 20 1024 50 1
    step memory 300 versus memory 10 1
    step throughput-1024 300 versus throughput 3 1024 1 5ms
    step link 300 link 8MiB 1
else
    step gossip-10 900 versus gossip 10 100 1024 50 5
    step gossip-20 900 versus gossip 20 100 1024 50 5
    step gossip-50 1500 versus gossip 50 100 1024 50 3
    step memory 900 versus memory 200 3
    step throughput-1024 1200 versus throughput 10 1024 3 5ms
    step throughput-65536 1200 versus throughput 10 65536 3 5ms
    step link 900 link 1GiB 3
fi
if [ -f benches/sim.rs ]; then
    if $quick; then step sim-30 300 sim 30 5; else step sim-1000 1800 sim 1000 20; fi
fi
summary=$($quick && echo "$out/summary.md" || echo docs/benchmarks.md)
cargo bench --quiet --bench plots -- "$out" "$summary"

#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of every decoder that reads bytes from peers or files:
# the envelope, whole gossip messages (envelopes and batches), membership certificates, admission requests, swarm
# keys and peer lists. Installs cargo-fuzz into target/tools when missing. The stable toolchain builds the targets
# with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags) and without a sanitizer (Rust code here is safe).
#
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]   (RUNS defaults to 1000000 executions per target; all targets)
# Prints one line per target with its executions and corpus size; a crash stops with the input in fuzz/artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-1000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(envelope gossip_message certificate admission_request swarm_key peer_list)
fi

tools="$PWD/target/tools"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH" RUSTC_BOOTSTRAP=1

cd fuzz
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  cargo fuzz run --sanitizer none --release "$target" "corpus/$target" -- \
    -runs="$runs" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || { tail -40 "$log"; exit 1; }
  executions="$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')"
  seconds="$(grep -m1 'Done [0-9]* runs in' "$log" | sed -E 's/.* in ([0-9]+) second.*/\1/')"
  corpus="$(find "corpus/$target" -type f | wc -l)"
  echo "$target: $executions executions in ${seconds:-?} s, corpus $corpus inputs, no crash"
  rm -f "$log"
done

//! Replicated-state benchmark: in-process nodes (`swarmnode::node::spawn`) on 127.0.0.1 in one tokio runtime with
//! two workers, mDNS off, each with its own data directory on the same disk. Four modes, each measured against a
//! baseline taken in the same run, interleaved with it:
//! 1. `visibility N SAMPLES`: put → `state_changed` on every other node of an N-node star, against a gossip publish
//!    → `message` of the same size in the same swarm (`state_bench/visibility.rs`);
//! 2. `catchup KEYS [RUNS]`: a fresh node's catch-up of KEYS keys from one peer, its time and bytes against the raw
//!    size of the data (`state_bench/catchup.rs`);
//! 3. `writes ROUNDS`: durable puts per second, sequential and 32 callers at once, against bare redb commits of one
//!    write each through the same `Store` (`state_bench/writes.rs`);
//! 4. `partition [RUNS]`: four nodes split two and two for 30 s with writes on both sides, then healed: the time
//!    until all four maps are identical, against the sync interval, and a check that no acknowledged write is lost
//!    (`state_bench/partition.rs`).
//!
//! Run through `scripts/bench-state.sh MODE ARGS` (release build). Every mode prints markdown rows for
//! docs/benchmarks.md on stdout and its progress on stderr.

mod state_bench;
#[allow(dead_code)]
mod stats;

use std::time::Duration;

const USAGE: &str = "usage: state visibility N SAMPLES | catchup KEYS [RUNS] | writes ROUNDS | partition [RUNS]";

fn number(args: &[String], at: usize, default: Option<usize>) -> usize {
    match args.get(at) {
        Some(text) => text.parse().expect(USAGE),
        None => default.expect(USAGE),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; every argument of ours is positional.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mode = args.first().map(String::as_str).unwrap_or_default();
    let began = std::time::Instant::now();
    match mode {
        "visibility" => {
            let (n, samples) = (number(&args, 1, None), number(&args, 2, None));
            assert!(n >= 2 && samples >= 1, "{USAGE}: N >= 2, SAMPLES >= 1");
            runtime.block_on(state_bench::visibility::run(n, samples));
        }
        "catchup" => {
            let (keys, runs) = (number(&args, 1, None), number(&args, 2, Some(3)));
            assert!(keys >= 1 && runs >= 1, "{USAGE}: KEYS >= 1, RUNS >= 1");
            runtime.block_on(state_bench::catchup::run(keys, runs));
        }
        "writes" => {
            let rounds = number(&args, 1, None);
            assert!(rounds >= 1, "{USAGE}: ROUNDS >= 1");
            runtime.block_on(state_bench::writes::run(rounds));
        }
        "partition" => {
            let runs = number(&args, 1, Some(1));
            assert!(runs >= 1, "{USAGE}: RUNS >= 1");
            runtime.block_on(state_bench::partition::run(runs));
        }
        _ => panic!("{USAGE}"),
    }
    eprintln!("{mode}: {:.1} s in all", began.elapsed().as_secs_f64());
    // Nodes left running stop with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(10));
}

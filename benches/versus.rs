//! swarmnode against a bare rust-libp2p node (benches/baseline), measured in the same run, interleaved, so every
//! figure is a ratio that means something on a shared, noisy machine. Run through `scripts/bench-versus.sh`, which
//! builds both in release first.
//!
//! - `gossip N M S RATE RUNS [SWARMNODE FLAGS...]`: latency, delivery, CPU per delivered message and RSS per node
//!   (versus/gossip.rs); JSON to `docs/benchmarks/gossip-N.json` unless `VERSUS_OUT` names another file.
//! - `memory PEERS RUNS`: idle RSS and the per-connection slope while PEERS peers connect (versus/memory.rs).
//! - `throughput N BYTES RUNS BATCH_WINDOW`: the highest sustained rate with every message delivered and p99 ≤ 1 s,
//!   swarmnode with and without `--batch-window BATCH_WINDOW` (versus/throughput.rs).

#[path = "versus/compared.rs"]
mod compared;
#[path = "versus/gossip.rs"]
mod gossip;
// Only its `status_kib`: every node picks its own port (port 0) and reports it in its events.
#[allow(dead_code)]
mod host;
#[path = "versus/memory.rs"]
mod memory;
#[path = "../tests/support/process.rs"]
mod process;
#[path = "versus/report.rs"]
mod report;
mod stats;
#[path = "versus/swarm.rs"]
mod swarm;
#[path = "versus/throughput.rs"]
mod throughput;

const USAGE: &str = "usage: versus gossip N MESSAGES BYTES RATE RUNS [SWARMNODE FLAGS...] | versus memory PEERS RUNS \
                     | versus throughput N BYTES RUNS BATCH_WINDOW";

fn number<T: std::str::FromStr>(args: &[String], at: usize) -> T {
    args.get(at)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{USAGE}"))
}

fn main() {
    // `cargo bench` appends `--bench`; it is not ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    assert!(
        swarm::baseline_binary().exists(),
        "no baseline at {}: cargo build --release -p swarmnode-baseline",
        swarm::baseline_binary().display()
    );
    match args.first().map(String::as_str) {
        Some("gossip") => {
            let load = gossip::Load {
                nodes: number(&args, 1),
                messages: number(&args, 2),
                bytes: number(&args, 3),
                rate: number(&args, 4),
                drain: std::time::Duration::from_secs(20),
            };
            let runs: usize = number(&args, 5);
            assert!(
                load.nodes >= 2 && load.messages >= 1 && load.bytes >= 64 && load.rate > 0.0,
                "{USAGE}"
            );
            let extra: Vec<&str> = args[6..].iter().map(String::as_str).collect();
            let result = gossip::compare(&load, runs, &extra);
            let out =
                std::env::var("VERSUS_OUT").unwrap_or_else(|_| format!("docs/benchmarks/gossip-{}.json", load.nodes));
            report::write_json(&out, &result);
        }
        Some("memory") => {
            let result = memory::compare(number(&args, 1), number(&args, 2));
            let out = std::env::var("VERSUS_OUT").unwrap_or_else(|_| "docs/benchmarks/memory.json".into());
            report::write_json(&out, &result);
        }
        Some("throughput") => {
            let (nodes, bytes): (usize, usize) = (number(&args, 1), number(&args, 2));
            let batch_window = args.get(4).unwrap_or_else(|| panic!("{USAGE}"));
            let result = throughput::compare(nodes, bytes, number(&args, 3), batch_window);
            let out =
                std::env::var("VERSUS_OUT").unwrap_or_else(|_| format!("docs/benchmarks/throughput-{bytes}.json"));
            report::write_json(&out, &result);
        }
        _ => panic!("{USAGE}"),
    }
}

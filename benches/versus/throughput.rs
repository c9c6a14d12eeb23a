//! Sustained gossip throughput, swarmnode (with and without `--batch-window`) against the bare node: on a formed
//! swarm of N nodes, the last one publishes at a rising rate, each step for STEP seconds; a step passes when every
//! other node receives every message and the p99 latency stays within 1 s. The figure is the highest rate passed
//! before the first failure, min / median / max over the runs (each run forms fresh swarms, the kinds in rotating
//! order). The harness reads every node's JSON event lines, payloads included, as an application would: at large
//! sizes its own parsing shares the two cores with the nodes, alike for both kinds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    gossip::{Load, formed, measure},
    report::Spread,
    swarm::Kind,
};

const STEP: Duration = Duration::from_secs(2);
const P99_LIMIT_MS: f64 = 1000.0;

/// The rates tried for a message size: doubling, from a rate any node sustains.
fn ladder(bytes: usize) -> Vec<f64> {
    let first = if bytes >= 16 * 1024 { 25.0 } else { 100.0 };
    (0..8).map(|i| first * f64::from(1u32 << i)).collect()
}

/// The highest rate of the ladder that a fresh swarm sustained, with every step's figures.
fn sustained(kind: Kind, nodes: usize, bytes: usize, extra: &[&str]) -> (f64, Vec<Value>) {
    let mut swarm = formed(kind, nodes, extra);
    let mut best = 0.0;
    let mut steps = Vec::new();
    for rate in ladder(bytes) {
        let load = Load {
            nodes,
            messages: ((rate * STEP.as_secs_f64()) as usize).max(10),
            bytes,
            rate,
            drain: Duration::from_secs(3),
        };
        let r = measure(&mut swarm, &load);
        let passed = r.delivered >= 1.0 && r.p99_ms <= P99_LIMIT_MS && r.sent_rate >= 0.9 * rate;
        eprintln!(
            "  {:>9} {bytes} B @ {rate}/s (sent {:.0}/s): delivered {:.2} % p99 {} ms {}",
            kind.name(),
            r.sent_rate,
            r.delivered * 100.0,
            r.p99_ms,
            if passed { "ok" } else { "FAIL" }
        );
        steps.push(json!({"rate": rate, "sent_rate": r.sent_rate, "delivered": r.delivered, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms}));
        if !passed {
            break;
        }
        best = rate;
    }
    (best, steps)
}

/// Every configuration at `bytes`, `runs` times in rotating order.
pub fn compare(nodes: usize, bytes: usize, runs: usize, batch_window: &str) -> Value {
    let batch = ["--batch-window", batch_window];
    let configurations: [(&str, Kind, &[&str]); 3] = [
        ("baseline", Kind::Baseline, &[]),
        ("swarmnode", Kind::Swarmnode, &[]),
        ("swarmnode --batch-window", Kind::Swarmnode, &batch),
    ];
    let mut rates = vec![Vec::new(); configurations.len()];
    let mut steps = vec![Vec::new(); configurations.len()];
    for run in 0..runs {
        for offset in 0..configurations.len() {
            let which = (run + offset) % configurations.len();
            let (name, kind, extra) = configurations[which];
            eprintln!("run {run}: {name}");
            let (best, detail) = sustained(kind, nodes, bytes, extra);
            rates[which].push(best);
            steps[which].push(json!(detail));
        }
    }
    let mut figures = serde_json::Map::new();
    for (i, (name, _, _)) in configurations.iter().enumerate() {
        let spread = Spread::of(&rates[i]);
        let ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(s, b)| s / b).collect();
        println!(
            "| {nodes} | {bytes} | {name} | {} msg/s | {:.2}× |",
            spread.text(0),
            Spread::of(&ratios).median
        );
        figures.insert(
            (*name).into(),
            json!({"sustained_rate": spread.json(), "ratio": Spread::of(&ratios).json(), "runs": rates[i], "steps": steps[i]}),
        );
    }
    json!({"nodes": nodes, "bytes": bytes, "runs": runs, "batch_window": batch_window, "step_s": STEP.as_secs_f64(),
           "p99_limit_ms": P99_LIMIT_MS, "figures": figures})
}

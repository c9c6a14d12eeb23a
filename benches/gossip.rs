//! Gossip benchmark: N `swarmnode run` processes on loopback (mDNS off), all bootstrapped from node 0; the last node
//! publishes M messages of S bytes (from its `--stdin`, as a user would), and every other node's `message` events
//! give publish→deliver latency (`ts - sent_at`, one clock) and the delivery ratio. Also reports each process's
//! resident memory at the end. Run through `scripts/bench-gossip.sh N M S` (release build).

#[path = "../tests/support/process.rs"]
mod process;
mod stats;

use std::{
    collections::HashMap,
    io::Write,
    path::Path,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use process::NodeProcess;
use serde_json::Value;
use stats::percentile;

/// Gap between two publishes: bounded traffic, and a publisher that is not simply flooding its own queue.
const PUBLISH_GAP: Duration = Duration::from_millis(20);
/// `--max-pending-per-ip` and `--max-established-per-ip`: every node is on 127.0.0.1, so one address holds all of a
/// node's connections; past any node count the benchmark runs.
const LOOPBACK_PER_IP_LIMIT: &str = "1024";

/// Node `index` (no API: many nodes share the machine), with its data directory under `data`, whose event lines
/// arrive on `lines` tagged with its index.
fn start(data: &Path, index: usize, bootstrap: Option<&str>, lines: mpsc::Sender<(usize, Value)>) -> NodeProcess {
    let mut args = vec![
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--stdin",
        "--api",
        "off",
        "--max-pending-per-ip",
        LOOPBACK_PER_IP_LIMIT,
        "--max-established-per-ip",
        LOOPBACK_PER_IP_LIMIT,
    ];
    if let Some(address) = bootstrap {
        args.extend(["--bootstrap", address]);
    }
    let data_dir = data.join(format!("node-{index}"));
    NodeProcess::start(&[], &data_dir, &args, move |line| lines.send((index, line)).is_ok())
}

/// Resident memory of process `pid`, in KiB (0 if unknown).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("usage: gossip N M S"))
        .collect();
    let [n, m, size] = args[..] else {
        panic!("usage: gossip N M S (nodes, messages, bytes per message)");
    };
    assert!(n >= 2 && m >= 1 && size >= 16, "need N >= 2, M >= 1, S >= 16");

    let data = tempfile::tempdir().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let mut nodes = vec![start(data.path(), 0, None, lines_tx.clone())];
    let (_, listening) = process::wait_for(&lines, "node 0 to listen", Duration::from_secs(30), |(_, l)| {
        l["event"] == "listening"
    });
    let bootstrap = format!("{}/p2p/{}", listening["address"].as_str().unwrap(), nodes[0].peer_id);
    let started = Instant::now();
    for index in 1..n {
        nodes.push(start(data.path(), index, Some(&bootstrap), lines_tx.clone()));
    }
    let publisher = n - 1;
    let mut stdin = nodes[publisher].child.stdin.take().unwrap();

    // Warm-up: publish until every other node has received one, so the measured messages see a formed mesh.
    let mut warmed = vec![false; n];
    warmed[publisher] = true;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next_warmup = Instant::now();
    while warmed.iter().any(|w| !w) {
        assert!(Instant::now() < deadline, "swarm did not form within 60 s");
        if Instant::now() >= next_warmup {
            writeln!(stdin, "warmup").unwrap();
            next_warmup = Instant::now() + Duration::from_millis(500);
        }
        if let Ok((index, line)) = lines.recv_timeout(Duration::from_millis(50))
            && line["event"] == "message"
        {
            warmed[index] = true;
        }
    }
    let formed = started.elapsed();

    let padding = "x".repeat(size - 16);
    let publish_start = Instant::now();
    for i in 0..m {
        writeln!(stdin, "bench-{i:08}-{padding}").unwrap();
        thread::sleep(PUBLISH_GAP);
    }
    let expected = (n - 1) * m;
    let mut latencies = Vec::with_capacity(expected);
    let mut copies: HashMap<(usize, String), u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.len() < expected && Instant::now() < deadline {
        let Ok((index, line)) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let Some(data) = line["data"]
            .as_str()
            .filter(|d| line["event"] == "message" && d.starts_with("bench-"))
        else {
            continue;
        };
        let count = copies.entry((index, data[..14].to_owned())).or_default();
        *count += 1;
        if *count == 1 {
            latencies.push(
                line["ts"]
                    .as_u64()
                    .unwrap()
                    .saturating_sub(line["sent_at"].as_u64().unwrap()),
            );
        }
    }
    let duplicates: u32 = copies.values().map(|c| c - 1).sum();
    latencies.sort_unstable();
    let rss: Vec<u64> = nodes.iter().map(|node| rss_kib(node.child.id())).collect();
    let rss_mean = rss.iter().sum::<u64>() / rss.len() as u64;
    let rss_max = rss.iter().max().copied().unwrap_or(0);

    println!(
        "nodes={n} messages={m} size={size}B swarm_formed_in={:.1}s",
        formed.as_secs_f64()
    );
    println!(
        "| {n} | {m} | {size} | {} / {expected} ({:.2}%) | {duplicates} | {} | {} | {} | {:.1} | {} MiB | {} MiB |",
        latencies.len(),
        100.0 * latencies.len() as f64 / expected as f64,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0),
        publish_start.elapsed().as_secs_f64(),
        rss_mean / 1024,
        rss_max / 1024,
    );
}

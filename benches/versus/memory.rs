//! Memory, swarmnode against the bare node, interleaved: one node of each kind alone on loopback, its resident
//! memory once settled (idle RSS), then PEERS bare peers (one load process, benches/baseline `--peers`) connecting one
//! every 20 ms; its RSS is sampled as the connections come up and once they have settled, and the per-connection
//! slope is (settled − idle) ÷ PEERS. Every figure is min / median / max over RUNS runs, and so is each run's ratio.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    compared::Compared,
    host::status_kib,
    swarm::{Killed, Kind, Swarm, baseline_binary},
};

/// How long a node is left alone (and the connections left to settle) before its memory is read.
const SETTLE: Duration = Duration::from_secs(5);

struct MemoryRun {
    idle_mib: f64,
    /// Of the idle RSS, the anonymous part: the heap and stacks, what the node itself holds. The rest is mapped
    /// file pages, mostly the binary's code, shared by every process running it.
    idle_anon_mib: f64,
    settled_mib: f64,
    slope_kib: f64,
    samples: Vec<(usize, f64)>,
}

fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") as f64 / 1024.0
}

fn run_once(kind: Kind, peers: usize) -> MemoryRun {
    let max_peers = (peers + 16).to_string();
    let extra: &[&str] = match kind {
        Kind::Swarmnode => &["--max-peers", &max_peers],
        Kind::Baseline => &[],
    };
    let swarm = Swarm::start(kind, 1, extra);
    let node = &swarm.nodes[0];
    std::thread::sleep(SETTLE);
    let idle_mib = rss_mib(node.pid);
    let idle_anon_mib = status_kib(node.pid, "RssAnon:") as f64 / 1024.0;
    let target = &swarm.bootstrap;
    let _load = Killed(
        Command::new(baseline_binary())
            .args(["--peers", &peers.to_string(), "--dial", target, "--every", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the load starts"),
    );
    let mut connected = 0;
    let mut samples = vec![(0, idle_mib)];
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(40 * peers as u64);
    while connected < peers && Instant::now() < deadline {
        let Ok((_, line)) = swarm.lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line["event"] == "connected" {
            connected += 1;
            if connected % 25 == 0 {
                samples.push((connected, rss_mib(node.pid)));
            }
        }
    }
    assert_eq!(
        connected,
        peers,
        "{} saw only {connected} of {peers} peers connect",
        kind.name()
    );
    std::thread::sleep(SETTLE);
    let settled_mib = rss_mib(node.pid);
    MemoryRun {
        idle_mib,
        idle_anon_mib,
        settled_mib,
        slope_kib: (settled_mib - idle_mib) * 1024.0 / peers as f64,
        samples,
    }
}

pub fn compare(peers: usize, runs: usize) -> Value {
    let mut idle = Compared::new("idle RSS", "MiB");
    let mut idle_anon = Compared::new("idle RSS, anonymous", "MiB");
    let mut settled = Compared::new("RSS with the peers", "MiB");
    let mut slope = Compared::new("memory per connection", "KiB");
    let mut samples = json!({"baseline": [], "swarmnode": []});
    for run in 0..runs {
        for kind in Kind::interleaved(run) {
            let r = run_once(kind, peers);
            eprintln!(
                "run {run} {:>9}: idle {:.1} MiB, with {peers} peers {:.1} MiB, {:.1} KiB per connection",
                kind.name(),
                r.idle_mib,
                r.settled_mib,
                r.slope_kib
            );
            let list = match kind {
                Kind::Baseline => [
                    &mut idle.baseline,
                    &mut idle_anon.baseline,
                    &mut settled.baseline,
                    &mut slope.baseline,
                ],
                Kind::Swarmnode => [
                    &mut idle.swarmnode,
                    &mut idle_anon.swarmnode,
                    &mut settled.swarmnode,
                    &mut slope.swarmnode,
                ],
            };
            for (values, value) in list
                .into_iter()
                .zip([r.idle_mib, r.idle_anon_mib, r.settled_mib, r.slope_kib])
            {
                values.push(value);
            }
            if let Some(runs) = samples[kind.name()].as_array_mut() {
                runs.push(json!(r.samples));
            }
        }
    }
    println!("| idle RSS | {} |", idle.text(1));
    println!("| idle RSS, anonymous | {} |", idle_anon.text(1));
    println!("| RSS with {peers} peers | {} |", settled.text(1));
    println!("| per connection | {} |", slope.text(1));
    json!({
        "peers": peers,
        "runs": runs,
        "figures": {"idle_mib": idle.json(), "idle_anon_mib": idle_anon.json(), "settled_mib": settled.json(), "per_connection_kib": slope.json()},
        "samples": samples,
    })
}

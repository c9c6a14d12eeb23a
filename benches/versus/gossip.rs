//! Gossip latency, CPU and memory, swarmnode against the bare node, interleaved: for each run, a swarm of N of one
//! kind, then N of the other (the order alternating between runs), each formed from node 0, warmed up until every
//! node has received a message, then M messages of S bytes from the last node at RATE per second. Measured per run:
//! publish → deliver latency (the harness's send time, carried in the payload, against the receiver's `ts`: one
//! clock), the share delivered, duplicates, the CPU time of all N processes over the measured phase per delivered
//! message, and the mean resident memory per node after it.

use std::{
    collections::HashSet,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

use crate::{
    compared::Compared,
    stats::percentile,
    swarm::{Kind, Swarm, total_cpu},
};

pub struct GossipRun {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub delivered: f64,
    pub duplicates: u64,
    pub cpu_ms_per_message: f64,
    pub rss_mib: f64,
    pub formed_s: f64,
    /// CPU use per node while the formed swarm carries no messages, in % of one core.
    pub idle_cpu_percent: f64,
    /// The rate the harness managed to publish at (it falls behind the asked rate when a node stops reading stdin).
    pub sent_rate: f64,
}

pub struct Load {
    pub nodes: usize,
    pub messages: usize,
    pub bytes: usize,
    pub rate: f64,
    /// How long deliveries are waited for after the last publish.
    pub drain: Duration,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Publishes until every node but the publisher has received one message (the mesh is formed), bounded.
fn warm_up(swarm: &mut Swarm, publisher: usize) -> bool {
    let mut warmed: HashSet<usize> = HashSet::from([publisher]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut next = Instant::now();
    while warmed.len() < swarm.nodes.len() {
        if Instant::now() > deadline {
            return false;
        }
        if Instant::now() >= next {
            swarm.nodes[publisher].publish(&format!("warmup-{}", unix_ms()));
            next = Instant::now() + Duration::from_millis(500);
        }
        if let Ok((index, line)) = swarm.lines.recv_timeout(Duration::from_millis(20))
            && line["event"] == "message"
        {
            warmed.insert(index);
        }
    }
    true
}

/// How long a formed swarm is left without messages to measure its background CPU.
const IDLE: Duration = Duration::from_secs(5);

/// A swarm of `kind` and `load.nodes` nodes, formed and warmed up.
pub fn formed(kind: Kind, nodes: usize, extra: &[&str]) -> Swarm {
    let mut swarm = Swarm::start(kind, nodes, extra);
    assert!(
        warm_up(&mut swarm, nodes - 1),
        "{} swarm of {nodes} did not form within 90 s",
        kind.name()
    );
    swarm
}

/// One swarm of `kind` under `load`.
pub fn run_once(kind: Kind, load: &Load, extra: &[&str]) -> GossipRun {
    let mut swarm = formed(kind, load.nodes, extra);
    let formed_s = swarm.started.elapsed().as_secs_f64();
    while swarm.lines.recv_timeout(Duration::from_millis(300)).is_ok() {}
    let pids = swarm.pids();
    let before = total_cpu(&pids);
    std::thread::sleep(IDLE);
    let idle = total_cpu(&pids).saturating_sub(before);
    let idle_cpu_percent = idle.as_secs_f64() * 100.0 / IDLE.as_secs_f64() / load.nodes as f64;
    GossipRun {
        formed_s,
        idle_cpu_percent,
        ..measure(&mut swarm, load)
    }
}

/// `load` on a formed swarm, from its last node: publish at the load's rate, then wait for every delivery (at most
/// `load.drain` after the last publish).
pub fn measure(swarm: &mut Swarm, load: &Load) -> GossipRun {
    // Messages of the warm-up or an earlier load still in flight must not count as duplicates or load.
    while swarm.lines.recv_timeout(Duration::from_millis(300)).is_ok() {}
    let publisher = load.nodes - 1;
    let pids = swarm.pids();
    let cpu_before = total_cpu(&pids);
    let gap = Duration::from_secs_f64(1.0 / load.rate);
    let padding = "x".repeat(load.bytes.saturating_sub(40));
    let expected = (load.nodes - 1) * load.messages;
    let mut latencies = Vec::with_capacity(expected);
    let mut seen: HashSet<(usize, u64)> = HashSet::new();
    let mut duplicates = 0;
    let start = Instant::now();
    let mut sent = 0;
    let mut receive = |line: &Value, index: usize, latencies: &mut Vec<u64>| {
        let Some(data) = line["data"]
            .as_str()
            .filter(|d| line["event"] == "message" && d.starts_with("bench-"))
        else {
            return;
        };
        let mut fields = data.split('-').skip(1);
        let (Some(Ok(seq)), Some(Ok(sent_ms))) = (
            fields.next().map(str::parse::<u64>),
            fields.next().map(str::parse::<u64>),
        ) else {
            return;
        };
        if seen.insert((index, seq)) {
            latencies.push(line["ts"].as_u64().unwrap_or(0).saturating_sub(sent_ms));
        } else {
            duplicates += 1;
        }
    };
    let mut last_sent = start;
    while latencies.len() < expected {
        let due = start + gap.mul_f64(sent as f64);
        if sent < load.messages && Instant::now() >= due {
            let tag = format!("bench-{sent}-{}-", unix_ms());
            swarm.nodes[publisher].publish(&(tag + &padding));
            sent += 1;
            last_sent = Instant::now();
            continue;
        }
        if sent == load.messages && last_sent.elapsed() > load.drain {
            break;
        }
        let wait = if sent < load.messages {
            due.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(100)
        };
        if let Ok((index, line)) = swarm.lines.recv_timeout(wait.max(Duration::from_micros(100))) {
            receive(&line, index, &mut latencies);
        }
    }
    let cpu = total_cpu(&pids).saturating_sub(cpu_before);
    let rss_kib: u64 = pids.iter().map(|&pid| crate::host::status_kib(pid, "VmRSS:")).sum();
    latencies.sort_unstable();
    let delivered = latencies.len().max(1);
    GossipRun {
        p50_ms: percentile(&latencies, 50.0) as f64,
        p99_ms: percentile(&latencies, 99.0) as f64,
        delivered: latencies.len() as f64 / expected as f64,
        duplicates,
        cpu_ms_per_message: cpu.as_secs_f64() * 1000.0 / delivered as f64,
        rss_mib: rss_kib as f64 / 1024.0 / load.nodes as f64,
        formed_s: 0.0,
        idle_cpu_percent: 0.0,
        sent_rate: sent as f64 / last_sent.duration_since(start).as_secs_f64().max(gap.as_secs_f64()),
    }
}

/// `runs` interleaved pairs at this load; returns the JSON document of the comparison.
pub fn compare(load: &Load, runs: usize, swarmnode_extra: &[&str]) -> Value {
    let mut p50 = Compared::new("p50 latency", "ms");
    let mut p99 = Compared::new("p99 latency", "ms");
    let mut cpu = Compared::new("CPU per delivered message", "ms");
    let mut rss = Compared::new("RSS per node", "MiB");
    let mut delivered = Compared::new("delivered", "share");
    let mut formed = Compared::new("swarm formed", "s");
    let mut idle = Compared::new("idle CPU per node", "% of a core");
    for run in 0..runs {
        for kind in Kind::interleaved(run) {
            let extra: &[&str] = if kind == Kind::Swarmnode { swarmnode_extra } else { &[] };
            let r = run_once(kind, load, extra);
            eprintln!(
                "run {run} {:>9}: p50 {} ms p99 {} ms delivered {:.1} % dup {} cpu {:.3} ms/msg rss {:.1} MiB formed {:.1} s idle cpu {:.2} %",
                kind.name(),
                r.p50_ms,
                r.p99_ms,
                r.delivered * 100.0,
                r.duplicates,
                r.cpu_ms_per_message,
                r.rss_mib,
                r.formed_s,
                r.idle_cpu_percent
            );
            for (figure, value) in [
                (&mut p50, r.p50_ms),
                (&mut p99, r.p99_ms),
                (&mut cpu, r.cpu_ms_per_message),
                (&mut rss, r.rss_mib),
                (&mut delivered, r.delivered),
                (&mut formed, r.formed_s),
                (&mut idle, r.idle_cpu_percent),
            ] {
                match kind {
                    Kind::Baseline => figure.baseline.push(value),
                    Kind::Swarmnode => figure.swarmnode.push(value),
                }
            }
        }
    }
    println!(
        "| {} | {} × {} B @ {}/s | {} | {} | {} | {} |",
        load.nodes,
        load.messages,
        load.bytes,
        load.rate,
        p50.text(1),
        p99.text(1),
        cpu.text(3),
        rss.text(1)
    );
    json!({
        "nodes": load.nodes,
        "messages": load.messages,
        "bytes": load.bytes,
        "rate": load.rate,
        "runs": runs,
        "swarmnode_flags": swarmnode_extra,
        "figures": {
            "p50_ms": p50.json(),
            "p99_ms": p99.json(),
            "cpu_ms_per_message": cpu.json(),
            "rss_mib_per_node": rss.json(),
            "delivered": delivered.json(),
            "formed_s": formed.json(),
            "idle_cpu_percent_per_node": idle.json(),
        },
    })
}

//! Membership benchmark: how fast every node of a swarm learns that a member died or joined, and what member records
//! cost on the wire, from `swarmnode run` processes on loopback (release build, mDNS off). N − 1 nodes bootstrap
//! from node 0 (a star; Kademlia adds a few more connections); once every node sees every other `alive`, each
//! sample starts one more node (the N-th), and then SIGKILLs it:
//! 1. join: from its start to the last of the N − 1 others' `member … → alive` event for it; baseline, in the same
//!    sample: from its start to node 0's `peer_state → active` for it (its connection to its bootstrap peer);
//! 2. kill: a random moment within one member interval after the join (so the kill falls anywhere between two of
//!    its announcements), SIGKILL, then the last of the others' `member … → suspect` and `→ failed`; baseline, in
//!    the same sample: the last `peer_state active → disconnected` for it on the nodes that had a connection to it
//!    (the node's own liveness detection), and the timers themselves (ttl, 3 × ttl).
//!
//! Times are event `ts` (unix ms, the nodes' clock, which is this machine's) minus the moment this program acted.
//!
//! Traffic, in the formed swarm before the samples: `swarmnode_member_bytes_total` (sent, received) and the libp2p
//! bandwidth counters of the nodes with an API (node 0, the hub, and nodes 1–3), read at the start and the end of a
//! fixed window. There is no swarm without member records to compare with, so the in-run reference is each node's
//! whole libp2p traffic in the same window.
//!
//! Run through `scripts/bench-members.sh SETTING N SAMPLES`; SETTING is `default` (heartbeat 10 s, so member
//! interval 10 s, ttl 30 s, failed after 90 s) or `fast` (`--member-interval 500ms --member-ttl 1500ms`).

#[path = "../tests/support/process.rs"]
mod process;
#[path = "../tests/support/signal.rs"]
mod signal;
// Only its `status_kib`: here every node picks its own ports (port 0) and reports them in its events.
#[allow(dead_code)]
mod host;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use host::status_kib;
use process::NodeProcess;
use rand::Rng;
use serde_json::Value;
use swarmnode::time::now_unix_ms;

/// Every process is on 127.0.0.1, so one address holds all of the hub's inbound connections.
const LOOPBACK_PER_IP_LIMITS: [&str; 4] = ["--max-pending-per-ip", "1024", "--max-established-per-ip", "1024"];
/// Connections a node other than the hub may hold: enough for Kademlia's few, and it keeps each process small.
const LEAF_MAX_PEERS: &str = "16";
/// Nodes 0..API_NODES serve the API, for `/metrics`; the others run with `--api off`.
const API_NODES: usize = 4;
/// Longest the swarm may take to form (every node sees every other alive): 50 processes on 2 shared cores.
const FORM_DEADLINE: Duration = Duration::from_secs(300);
/// Slack past a timer before a step is given up: a loaded machine delays ticks and gossip.
const SLACK: Duration = Duration::from_secs(60);

struct Setting {
    flags: &'static [&'static str],
    interval: Duration,
    ttl: Duration,
    /// How long traffic is counted for.
    window: Duration,
}

fn setting(name: &str) -> Setting {
    match name {
        "default" => Setting {
            flags: &[],
            interval: Duration::from_secs(10),
            ttl: Duration::from_secs(30),
            window: Duration::from_secs(30),
        },
        "fast" => Setting {
            flags: &["--member-interval", "500ms", "--member-ttl", "1500ms"],
            interval: Duration::from_millis(500),
            ttl: Duration::from_millis(1500),
            window: Duration::from_secs(10),
        },
        other => panic!("unknown setting {other:?}: default or fast"),
    }
}

/// The first `ts` of each (peer, event kind, state entered) on each node (every peer id here is used once; what
/// happened before a kill is forgotten at the kill), and each node's latest liveness state of each peer.
#[derive(Default)]
struct Seen {
    first: HashMap<(String, &'static str, String), HashMap<usize, u64>>,
    /// Where each node with an API serves it.
    apis: std::collections::BTreeMap<usize, String>,
    /// Each node's latest `peer_state` of each peer.
    state: HashMap<(usize, String), String>,
    /// `member … → suspect` events about members that were never killed: false suspicions under load.
    false_suspects: usize,
}

impl Seen {
    fn take(&mut self, node: usize, line: &Value, killed: &[String]) {
        if line["event"] == "api_listening" {
            self.apis
                .insert(node, line["address"].as_str().unwrap_or_default().to_owned());
            return;
        }
        let kind = match line["event"].as_str() {
            Some("member") => "member",
            Some("peer_state") => "peer_state",
            _ => return,
        };
        let (Some(peer), Some(to), Some(ts)) = (line["peer"].as_str(), line["to"].as_str(), line["ts"].as_u64()) else {
            return;
        };
        if kind == "member" && to == "suspect" && !killed.iter().any(|k| k == peer) {
            self.false_suspects += 1;
        }
        if kind == "peer_state" {
            self.state.insert((node, peer.to_owned()), to.to_owned());
        }
        self.first
            .entry((peer.to_owned(), kind, to.to_owned()))
            .or_default()
            .entry(node)
            .or_insert(ts);
    }

    /// `node`'s current liveness state of `peer`.
    fn state(&self, node: usize, peer: &str) -> Option<&str> {
        self.state.get(&(node, peer.to_owned())).map(String::as_str)
    }

    /// On which nodes, and when, `peer` entered `to`.
    fn at(&self, peer: &str, kind: &'static str, to: &str) -> Option<&HashMap<usize, u64>> {
        self.first.get(&(peer.to_owned(), kind, to.to_owned()))
    }

    /// The latest `ts` at which each of `nodes` saw `peer` enter `to`, once all have.
    fn all(&self, peer: &str, kind: &'static str, to: &str, nodes: &[usize]) -> Option<u64> {
        let seen = self.at(peer, kind, to)?;
        nodes
            .iter()
            .map(|n| seen.get(n).copied())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

/// The running swarm: its processes, and every event they printed that the measures need.
struct Swarm {
    nodes: Vec<NodeProcess>,
    events: mpsc::Receiver<(usize, Value)>,
    sender: mpsc::Sender<(usize, Value)>,
    seen: Seen,
    killed: Vec<String>,
    root: tempfile::TempDir,
    started: usize,
}

impl Swarm {
    /// Starts node number `self.started` with `args`; only `listening`, `api_listening`, `member` and `peer_state`
    /// events are kept.
    fn start(&mut self, args: &[String]) -> usize {
        let index = self.started;
        self.started += 1;
        let sender = self.sender.clone();
        let data_dir: PathBuf = self.root.path().join(format!("node-{index}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = NodeProcess::start(&[], &data_dir, &args, move |line| {
            let wanted = matches!(
                line["event"].as_str(),
                Some("listening" | "api_listening" | "member" | "peer_state")
            );
            !wanted || sender.send((index, line)).is_ok()
        });
        self.nodes.push(node);
        index
    }

    /// Reads events until `done` holds; panics when it does not within `within`.
    fn wait(&mut self, what: &str, within: Duration, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (node, line) = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{what}: not within {within:?}"));
            self.seen.take(node, &line, &self.killed);
        }
    }

    /// Reads events for `duration`, whatever they are.
    fn read_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if let Ok((node, line)) = self.events.recv_timeout(left) {
                self.seen.take(node, &line, &self.killed);
            }
        }
    }

    /// Forgets when `peer` entered `to`, so that only what happens from now on is measured.
    fn forget(&mut self, peer: &str, kind: &'static str, to: &str) {
        self.seen.first.remove(&(peer.to_owned(), kind, to.to_owned()));
    }

    fn peer(&self, index: usize) -> &str {
        &self.nodes[index].peer_id
    }
}

/// One node's counters, from its `/metrics`.
#[derive(Clone, Copy, Default)]
struct Counters {
    member_sent: u64,
    member_received: u64,
    libp2p_in: u64,
    libp2p_out: u64,
}

fn scrape(runtime: &tokio::runtime::Runtime, client: &reqwest::Client, api: &str) -> Counters {
    let text = runtime
        .block_on(async { client.get(format!("{api}/metrics")).send().await?.text().await })
        .unwrap_or_else(|e| panic!("GET {api}/metrics: {e:?}"));
    let mut counters = Counters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        // libp2p-metrics names its counter `…bandwidth_bytes_total`, under whatever prefix the node registers.
        let slot = if series.starts_with("swarmnode_member_bytes_total{") {
            if series.contains("direction=\"sent\"") {
                &mut counters.member_sent
            } else {
                &mut counters.member_received
            }
        } else if series.contains("bandwidth_bytes_total{") {
            if series.contains("direction=\"Inbound\"") {
                &mut counters.libp2p_in
            } else {
                &mut counters.libp2p_out
            }
        } else {
            continue;
        };
        *slot += value;
    }
    counters
}

/// Min, median (nearest rank, the upper one of two) and max.
fn spread<T: PartialOrd + Copy>(values: &[T]) -> (T, T, T) {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    (sorted[0], sorted[sorted.len() / 2], sorted[sorted.len() - 1])
}

/// One sample of each measure, in ms.
#[derive(Default)]
struct Samples {
    join_all: Vec<u64>,
    join_first: Vec<u64>,
    join_connected: Vec<u64>,
    suspect_all: Vec<u64>,
    suspect_first: Vec<u64>,
    disconnected_all: Vec<u64>,
    connected_to_victim: Vec<usize>,
    failed_all: Vec<u64>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [name, nodes, samples] = &args[..] else {
        panic!("usage: members default|fast N SAMPLES");
    };
    let setting = setting(name);
    let n: usize = nodes.parse().expect("N is a number");
    assert!(n > API_NODES, "N must be more than {API_NODES}");
    let samples: usize = samples.parse().expect("SAMPLES is a number");

    let node_args = |api: bool, bootstrap: Option<&str>| -> Vec<String> {
        let api = if api { "127.0.0.1:0" } else { "off" };
        let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", api];
        args.extend(LOOPBACK_PER_IP_LIMITS);
        args.extend(setting.flags);
        if let Some(bootstrap) = bootstrap {
            args.extend(["--bootstrap", bootstrap, "--max-peers", LEAF_MAX_PEERS]);
        }
        args.into_iter().map(str::to_owned).collect()
    };

    let (sender, events) = mpsc::channel();
    let mut swarm = Swarm {
        nodes: Vec::new(),
        events,
        sender,
        seen: Seen::default(),
        killed: Vec::new(),
        root: tempfile::tempdir().expect("a temporary directory"),
        started: 0,
    };
    let began = Instant::now();
    swarm.start(&node_args(true, None));
    let (_, listening) = process::wait_for(&swarm.events, "the hub listening", SLACK, |(node, line)| {
        swarm.seen.take(*node, line, &swarm.killed);
        line["event"] == "listening"
    });
    let hub = format!("{}/p2p/{}", listening["address"].as_str().unwrap(), swarm.peer(0));
    for index in 1..n - 1 {
        swarm.start(&node_args(index < API_NODES, Some(&hub)));
    }
    let base: Vec<usize> = (0..n - 1).collect();
    let base_peers: Vec<String> = base.iter().map(|&i| swarm.peer(i).to_owned()).collect();
    swarm.wait("every node seeing every other alive", FORM_DEADLINE, |seen| {
        base.iter().zip(&base_peers).all(|(&i, peer)| {
            let others: Vec<usize> = base.iter().copied().filter(|&j| j != i).collect();
            seen.all(peer, "member", "alive", &others).is_some()
        }) && seen.apis.len() == API_NODES
    });
    let formed = began.elapsed();
    eprintln!("{} nodes formed in {:.1} s", n - 1, formed.as_secs_f64());

    // Traffic over the window, on the nodes with an API; events keep being read meanwhile.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // A fresh connection per scrape: the node closes a keep-alive connection idle for its header timeout (10 s),
    // the length of a fast window, and a reused one could be closed under the request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    for (index, node) in swarm.nodes.iter_mut().enumerate() {
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("node {index} ended: {status}");
        }
    }
    let apis: Vec<String> = swarm.seen.apis.values().cloned().collect();
    let before: Vec<Counters> = apis.iter().map(|api| scrape(&runtime, &client, api)).collect();
    let window_start = Instant::now();
    swarm.read_for(setting.window);
    let after: Vec<Counters> = apis.iter().map(|api| scrape(&runtime, &client, api)).collect();
    let window = window_start.elapsed().as_secs_f64();
    let rss_mib: Vec<f64> = base
        .iter()
        .map(|&i| status_kib(swarm.nodes[i].child.id(), "VmRSS:") as f64 / 1024.0)
        .collect();

    println!(
        "| setting | nodes | node | window s | member sent B/s | member received B/s | libp2p in B/s | libp2p out B/s | member share of libp2p |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut shares = Vec::new();
    let mut member_rates = Vec::new();
    for (index, (before, after)) in before.iter().zip(&after).enumerate() {
        let rate = |b: u64, a: u64| a.saturating_sub(b) as f64 / window;
        let sent = rate(before.member_sent, after.member_sent);
        let received = rate(before.member_received, after.member_received);
        let inbound = rate(before.libp2p_in, after.libp2p_in);
        let outbound = rate(before.libp2p_out, after.libp2p_out);
        let share = (sent + received) / (inbound + outbound).max(f64::MIN_POSITIVE);
        if index > 0 {
            shares.push(share);
            member_rates.push(sent + received);
        }
        let role = if index == 0 {
            "0 (hub)".to_owned()
        } else {
            index.to_string()
        };
        println!(
            "| {name} | {n} | {role} | {window:.1} | {sent:.0} | {received:.0} | {inbound:.0} | {outbound:.0} | {:.1} % |",
            share * 100.0
        );
    }
    let (share_min, share_median, share_max) = spread(&shares);
    let (rate_min, rate_median, rate_max) = spread(&member_rates);
    let (rss_min, rss_median, rss_max) = spread(&rss_mib);
    println!();
    println!(
        "{name}, N={n}: formed in {:.1} s; leaves' member bytes (sent + received) {rate_min:.0} / {rate_median:.0} / \
         {rate_max:.0} B/s, {:.1} / {:.1} / {:.1} % of their libp2p traffic; RSS {rss_min:.1} / {rss_median:.1} / \
         {rss_max:.1} MiB",
        formed.as_secs_f64(),
        share_min * 100.0,
        share_median * 100.0,
        share_max * 100.0,
    );
    println!();

    let mut measured = Samples::default();
    let mut rng = rand::thread_rng();
    for sample in 1..=samples {
        // Join: the N-th node, bootstrapped from the hub.
        let at = now_unix_ms();
        let newcomer = swarm.start(&node_args(false, Some(&hub)));
        let id = swarm.peer(newcomer).to_owned();
        swarm.wait(
            "every node seeing the newcomer alive",
            setting.interval + SLACK,
            |seen| {
                seen.all(&id, "member", "alive", &base).is_some()
                    && seen.at(&id, "peer_state", "active").is_some_and(|s| s.contains_key(&0))
            },
        );
        let alive = swarm.seen.at(&id, "member", "alive").unwrap();
        measured.join_all.push(alive.values().max().unwrap().saturating_sub(at));
        measured
            .join_first
            .push(alive.values().min().unwrap().saturating_sub(at));
        let connected = swarm.seen.at(&id, "peer_state", "active").unwrap()[&0];
        measured.join_connected.push(connected.saturating_sub(at));

        // Kill it at a random phase of its announcements.
        swarm.read_for(setting.interval.mul_f64(rng.gen_range(0.0..1.0)));
        let linked: Vec<usize> = base
            .iter()
            .copied()
            .filter(|&n| swarm.seen.state(n, &id) == Some("active"))
            .collect();
        swarm.killed.push(id.clone());
        swarm.forget(&id, "peer_state", "disconnected");
        swarm.forget(&id, "member", "suspect");
        let at = now_unix_ms();
        signal::send(&swarm.nodes[newcomer].child, "KILL");
        swarm.wait(
            "every node marking the killed member suspect",
            setting.ttl + SLACK,
            |seen| {
                seen.all(&id, "member", "suspect", &base).is_some()
                    && seen.all(&id, "peer_state", "disconnected", &linked).is_some()
            },
        );
        let suspect = swarm.seen.at(&id, "member", "suspect").unwrap();
        measured
            .suspect_all
            .push(suspect.values().max().unwrap().saturating_sub(at));
        measured
            .suspect_first
            .push(suspect.values().min().unwrap().saturating_sub(at));
        let disconnected = swarm.seen.all(&id, "peer_state", "disconnected", &linked).unwrap();
        measured.disconnected_all.push(disconnected.saturating_sub(at));
        measured.connected_to_victim.push(linked.len());
        swarm.wait(
            "every node marking the killed member failed",
            setting.ttl * 3 + SLACK,
            |seen| seen.all(&id, "member", "failed", &base).is_some(),
        );
        measured.failed_all.push(
            swarm
                .seen
                .all(&id, "member", "failed", &base)
                .unwrap()
                .saturating_sub(at),
        );
        eprintln!(
            "sample {sample}/{samples}: join {} ms, suspect {} ms (disconnected on {} linked nodes {} ms), failed {} ms",
            measured.join_all.last().unwrap(),
            measured.suspect_all.last().unwrap(),
            linked.len(),
            measured.disconnected_all.last().unwrap(),
            measured.failed_all.last().unwrap(),
        );
    }

    report(name, n, &setting, &measured);
    println!();
    println!(
        "false suspicions (a member never killed marked suspect by some node): {}",
        swarm.seen.false_suspects
    );
}

/// The detection and join rows: each figure's min / median / max, its baseline's median, and the ratio per sample.
fn report(name: &str, n: usize, setting: &Setting, m: &Samples) {
    println!(
        "| setting | nodes | measure | samples | min ms | median ms | max ms | baseline | baseline median ms | ratio min / median / max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let ttl = setting.ttl.as_millis() as u64;
    let same = |value: u64| vec![value; m.suspect_all.len()];
    let (linked_min, _, linked_max) = spread(&m.connected_to_victim);
    let rows: [(&str, &[u64], String, Vec<u64>); 5] = [
        (
            "new member alive on every node",
            &m.join_all,
            "its connection to node 0".into(),
            m.join_connected.clone(),
        ),
        (
            "new member alive on the first node",
            &m.join_first,
            "its connection to node 0".into(),
            m.join_connected.clone(),
        ),
        (
            "killed member suspect on every node",
            &m.suspect_all,
            format!("disconnected on the {linked_min}–{linked_max} nodes linked to it"),
            m.disconnected_all.clone(),
        ),
        (
            "killed member suspect on every node",
            &m.suspect_all,
            "ttl".into(),
            same(ttl),
        ),
        (
            "killed member failed on every node",
            &m.failed_all,
            "3 × ttl".into(),
            same(3 * ttl),
        ),
    ];
    for (measure, values, baseline, base) in rows {
        let ratios: Vec<f64> = values
            .iter()
            .zip(&base)
            .map(|(v, b)| *v as f64 / (*b).max(1) as f64)
            .collect();
        let (min, median, max) = spread(values);
        let (_, base_median, _) = spread(&base);
        let (r_min, r_median, r_max) = spread(&ratios);
        let precision = if r_max >= 100.0 { 0 } else { 2 };
        println!(
            "| {name} | {n} | {measure} | {} | {min} | {median} | {max} | {baseline} | {base_median} | \
             {r_min:.precision$} / {r_median:.precision$} / {r_max:.precision$} |",
            values.len()
        );
    }
    let (first_min, first_median, first_max) = spread(&m.suspect_first);
    println!(
        "| {name} | {n} | killed member suspect on the first node | {} | {first_min} | {first_median} | {first_max} | — | — | — |",
        m.suspect_first.len()
    );
}

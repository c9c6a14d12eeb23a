//! Churn benchmark: does a long-running node's memory follow the peers it knows now, or every peer it ever saw?
//! One hub (`swarmnode run`, release build, `--forget-after 30s`) and PEERS short-lived peers, each a real process
//! with its own key, at most CONCURRENT alive at once: each bootstraps from the hub, publishes one line on the
//! default topic after a moment, and vanishes — one in three by SIGKILL (the hub redials it until it is `removed`),
//! the others by SIGTERM (a leave notice: `left`). The hub's resident memory (VmRSS, /proc) and every table-size
//! gauge of its `/metrics` are read at start, every second while the churn runs (the peak), and after the churn
//! once the forget delay and the redials are over (the end). The end against the start, in the same run, is the
//! figure: near 1 when nothing is kept for peers that are gone.
//!
//! With a third argument, the path of another `swarmnode` binary (the build before this feature, say), that binary
//! runs as a second hub beside the first, with the same flags but `--forget-after`, and every peer bootstraps from
//! both: the two hubs see the same churn at the same time, so their figures compare within one run.
//!
//! Run through `scripts/bench-churn.sh [PEERS] [CONCURRENT] [BASELINE_BINARY]` (defaults 3000 and 50, no baseline).

mod host;

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use host::{free_port, status_kib};

const BINARY: &str = env!("CARGO_BIN_EXE_swarmnode");
/// How long each peer lives, from start to its end: with 50 alive, about 17 peers start (and as many end) a second,
/// which two cores carry beside the hub.
const PEER_LIFETIME: Duration = Duration::from_secs(3);
/// When a peer publishes its line, after it starts.
const PUBLISH_AFTER: Duration = Duration::from_millis(1500);
/// The hub's forget delay, and how long after the churn the end is read: the delay, the last redials (1 + 2 + 4 s
/// with jitter) and a few housekeeping ticks.
const FORGET_AFTER: &str = "30s";
const SETTLE: Duration = Duration::from_secs(45);
/// Every process is on 127.0.0.1, so one address holds all of a node's inbound connections: this build's nodes get
/// per-address limits past CONCURRENT (a baseline binary may predate the flags, and gets none).
const LOOPBACK_PER_IP_LIMITS: [&str; 4] = ["--max-pending-per-ip", "1024", "--max-established-per-ip", "1024"];

struct Peer {
    child: Child,
    _dir: tempfile::TempDir,
    started: Instant,
    published: bool,
    kill: bool,
}

/// The hub's table sizes and peers by state, from its Prometheus text.
async fn tables(client: &reqwest::Client, api: &str) -> BTreeMap<String, i64> {
    let text = match client.get(format!("{api}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut sizes = BTreeMap::new();
    for line in text.lines() {
        let parsed = line
            .strip_prefix("swarmnode_table_entries{table=\"")
            .map(|rest| ("", rest))
            .or_else(|| {
                line.strip_prefix("swarmnode_peers{state=\"")
                    .map(|rest| ("peers_", rest))
            });
        let Some((prefix, rest)) = parsed else { continue };
        let Some((name, value)) = rest.split_once("\"} ") else {
            continue;
        };
        if let Ok(value) = value.trim().parse::<i64>() {
            sizes.insert(format!("{prefix}{name}"), value);
        }
    }
    sizes
}

fn spawn_peer(hubs: &[Hub], kill: bool) -> Peer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(BINARY);
    command.args([
        "run",
        "--no-mdns",
        "--api",
        "off",
        "--stdin",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    command.args(LOOPBACK_PER_IP_LIMITS);
    for hub in hubs {
        command.args(["--bootstrap", &hub.address]);
    }
    let child = command
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "error")
        // One worker thread per peer: fifty of them share two cores with the hubs.
        .env("TOKIO_WORKER_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the swarmnode binary starts");
    Peer {
        child,
        _dir: dir,
        started: Instant::now(),
        published: false,
        kill,
    }
}

fn end_peer(mut peer: Peer) {
    let signal = if peer.kill { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .args([signal, &peer.child.id().to_string()])
        .status();
    let _ = peer.child.wait();
}

/// A hub node and what was read of it.
struct Hub {
    name: String,
    child: Child,
    _dir: tempfile::TempDir,
    address: String,
    api: String,
    start: (u64, BTreeMap<String, i64>),
    peak: (u64, BTreeMap<String, i64>),
}

impl Hub {
    fn start(name: &str, binary: &str, extra: &[&str]) -> Hub {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (p2p_port, api_port) = (free_port(), free_port());
        let address = format!("/ip4/127.0.0.1/tcp/{p2p_port}");
        let child = Command::new(binary)
            .args(["run", "--no-mdns", "--listen", &address])
            .args(["--api", &format!("127.0.0.1:{api_port}")])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the hub starts");
        Hub {
            name: name.to_owned(),
            child,
            _dir: dir,
            address,
            api: format!("http://127.0.0.1:{api_port}"),
            start: (0, BTreeMap::new()),
            peak: (0, BTreeMap::new()),
        }
    }

    async fn read(&self, client: &reqwest::Client) -> (u64, BTreeMap<String, i64>) {
        (status_kib(self.child.id(), "VmRSS:"), tables(client, &self.api).await)
    }

    async fn sample(&mut self, client: &reqwest::Client) {
        let (rss, sizes) = self.read(client).await;
        self.peak.0 = self.peak.0.max(rss);
        for (name, size) in sizes {
            let peak = self.peak.1.entry(name).or_insert(size);
            *peak = (*peak).max(size);
        }
    }

    fn row(&self, moment: &str, (rss, sizes): &(u64, BTreeMap<String, i64>)) {
        let tables: Vec<String> = sizes.iter().map(|(name, size)| format!("{name}={size}")).collect();
        println!(
            "| {} | {moment} | {:.1} | {} |",
            self.name,
            *rss as f64 / 1024.0,
            tables.join(" ")
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let total: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let concurrent: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let mut this_build = vec!["--forget-after", FORGET_AFTER];
    this_build.extend(LOOPBACK_PER_IP_LIMITS);
    let mut hubs = vec![Hub::start("this build", BINARY, &this_build)];
    if let Some(baseline) = args.get(2) {
        hubs.push(Hub::start("baseline", baseline, &[]));
    }
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("| hub | moment | RSS MiB | tables |");
    println!("|---|---|---|---|");
    for hub in hubs.iter_mut() {
        hub.start = hub.read(&client).await;
        hub.peak = hub.start.clone();
        hub.row("start", &hub.start);
    }

    let began = Instant::now();
    let mut alive: Vec<Peer> = Vec::new();
    let mut spawned = 0usize;
    let mut next_sample = Instant::now();
    while spawned < total || !alive.is_empty() {
        while spawned < total && alive.len() < concurrent {
            alive.push(spawn_peer(&hubs, spawned.is_multiple_of(3)));
            spawned += 1;
            if spawned.is_multiple_of(500) {
                eprintln!("{spawned} peers started, {:.0} s", began.elapsed().as_secs_f64());
            }
        }
        for peer in alive
            .iter_mut()
            .filter(|p| !p.published && p.started.elapsed() >= PUBLISH_AFTER)
        {
            if let Some(stdin) = peer.child.stdin.as_mut() {
                let _ = writeln!(stdin, "hello from a short-lived peer");
            }
            peer.published = true;
        }
        let (done, living): (Vec<Peer>, Vec<Peer>) =
            alive.into_iter().partition(|p| p.started.elapsed() >= PEER_LIFETIME);
        alive = living;
        done.into_iter().for_each(end_peer);
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            for hub in hubs.iter_mut() {
                hub.sample(&client).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let churn = began.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let mut summary = Vec::new();
    for hub in hubs.iter_mut() {
        let end = hub.read(&client).await;
        hub.row(&format!("peak (during {total} peers, {churn:.0} s)"), &hub.peak);
        hub.row(&format!("end ({} s after the churn)", SETTLE.as_secs()), &end);
        let start_rss = hub.start.0.max(1) as f64;
        let peers_at = |sizes: &BTreeMap<String, i64>| -> i64 {
            sizes
                .iter()
                .filter(|(name, _)| name.starts_with("peers_"))
                .map(|(_, n)| n)
                .sum()
        };
        summary.push(format!(
            "{}: end/start RSS {:.2}, peak/start {:.2}; peers in the table at the end {} (at the peak {})",
            hub.name,
            end.0 as f64 / start_rss,
            hub.peak.0 as f64 / start_rss,
            peers_at(&end.1),
            peers_at(&hub.peak.1),
        ));
        let _ = hub.child.kill();
        let _ = hub.child.wait();
    }
    println!();
    for line in summary {
        println!("{line}");
    }
}

//! Churn benchmark: does a long-running node's memory follow the peers it knows now, or every peer it ever saw?
//! One hub (`swarmnode run`, release build, `--forget-after 30s`) and PEERS short-lived peers, each a real process
//! with its own key, at most CONCURRENT alive at once: each bootstraps from the hub, publishes one line on the
//! default topic after a moment, and vanishes — one in three by SIGKILL (the hub redials it until it is `removed`),
//! the others by SIGTERM (a leave notice: `left`). The hub's resident memory (VmRSS, /proc) and every table-size
//! gauge of its `/metrics` are read at start, every second while the churn runs (the peak), and after the churn
//! once the forget delay and the redials are over (the end). The end against the start, in the same run, is the
//! figure: near 1 when nothing is kept for peers that are gone.
//!
//! Run through `scripts/bench-churn.sh [PEERS] [CONCURRENT]` (defaults 3000 and 50).

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

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

struct Peer {
    child: Child,
    _dir: tempfile::TempDir,
    started: Instant,
    published: bool,
    kill: bool,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
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

fn spawn_peer(hub: &str, kill: bool) -> Peer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let child = Command::new(BINARY)
        .args([
            "run",
            "--no-mdns",
            "--api",
            "off",
            "--stdin",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(["--bootstrap", hub])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "error")
        // One worker thread per peer: fifty of them share two cores with the hub.
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

fn print_row(moment: &str, rss: u64, sizes: &BTreeMap<String, i64>) {
    let tables: Vec<String> = sizes.iter().map(|(name, size)| format!("{name}={size}")).collect();
    println!("| {moment} | {:.1} | {} |", rss as f64 / 1024.0, tables.join(" "));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let total: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let concurrent: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let hub_dir = tempfile::tempdir().expect("a temporary directory");
    let (p2p_port, api_port) = (free_port(), free_port());
    let mut hub = Command::new(BINARY)
        .args(["run", "--no-mdns", "--forget-after", FORGET_AFTER])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")])
        .args(["--api", &format!("127.0.0.1:{api_port}")])
        .arg("--data-dir")
        .arg(hub_dir.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the hub starts");
    let hub_address = format!("/ip4/127.0.0.1/tcp/{p2p_port}");
    let api = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start_rss = rss_kib(hub.id());
    let start_tables = tables(&client, &api).await;
    println!("| moment | hub RSS MiB | hub tables |");
    println!("|---|---|---|");
    print_row("start", start_rss, &start_tables);

    let began = Instant::now();
    let mut alive: Vec<Peer> = Vec::new();
    let (mut spawned, mut peak_rss) = (0usize, start_rss);
    let mut peak_tables: BTreeMap<String, i64> = BTreeMap::new();
    let mut next_sample = Instant::now();
    while spawned < total || !alive.is_empty() {
        while spawned < total && alive.len() < concurrent {
            alive.push(spawn_peer(&hub_address, spawned % 3 == 0));
            spawned += 1;
            if spawned % 500 == 0 {
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
            peak_rss = peak_rss.max(rss_kib(hub.id()));
            for (name, size) in tables(&client, &api).await {
                let peak = peak_tables.entry(name).or_insert(size);
                *peak = (*peak).max(size);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let churn = began.elapsed();
    print_row(
        &format!("peak (during {total} peers, {:.0} s)", churn.as_secs_f64()),
        peak_rss,
        &peak_tables,
    );
    tokio::time::sleep(SETTLE).await;
    let end_rss = rss_kib(hub.id());
    let end_tables = tables(&client, &api).await;
    print_row(
        &format!("end ({} s after the churn)", SETTLE.as_secs()),
        end_rss,
        &end_tables,
    );
    println!();
    println!(
        "end/start RSS {:.2}, peak/start {:.2}; peers at the end {} (at the peak {})",
        end_rss as f64 / start_rss.max(1) as f64,
        peak_rss as f64 / start_rss.max(1) as f64,
        end_tables.get("peers").copied().unwrap_or(-1),
        peak_tables.get("peers").copied().unwrap_or(-1),
    );
    let _ = hub.kill();
    let _ = hub.wait();
}

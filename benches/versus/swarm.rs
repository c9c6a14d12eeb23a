//! The two kinds of node a comparison runs side by side — `swarmnode run` and the bare rust-libp2p node of
//! benches/baseline — started the same way (loopback TCP, mDNS off, star bootstrap from node 0, stdin publishing on
//! the `swarmnode` topic) and read the same way (one JSON event line each, tagged with the node's index). Also what
//! the harness reads of a process: CPU time and resident memory from /proc.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::process::{self, NodeProcess};

/// Every node is on 127.0.0.1, so swarmnode's per-address limits must not cap the swarm.
const LOOPBACK_PER_IP_LIMIT: &str = "4096";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Baseline,
    Swarmnode,
}

impl Kind {
    /// The two kinds in the order run `run` starts them: alternating, so neither always runs on a machine the other
    /// has just warmed (or loaded).
    pub fn interleaved(run: usize) -> [Kind; 2] {
        if run.is_multiple_of(2) {
            [Kind::Baseline, Kind::Swarmnode]
        } else {
            [Kind::Swarmnode, Kind::Baseline]
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::Swarmnode => "swarmnode",
        }
    }
}

/// The baseline binary: `SWARMNODE_BASELINE`, else the workspace's release build of benches/baseline.
pub fn baseline_binary() -> PathBuf {
    std::env::var_os("SWARMNODE_BASELINE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/swarmnode-baseline"),
        PathBuf::from,
    )
}

/// One running node of either kind; killed when dropped.
pub struct Node {
    pub pid: u32,
    pub peer_id: String,
    stdin: Option<ChildStdin>,
    /// The process, killed when this is dropped.
    _process: Box<dyn std::any::Any + Send>,
}

/// A child process, killed (and waited for) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Node {
    /// Writes one line to the node's stdin: published on the `swarmnode` topic.
    pub fn publish(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("the node reads its stdin");
    }
}

/// Starts node `index` of `kind`; its event lines arrive on `lines` as `(index, line)`.
pub fn start(
    kind: Kind,
    data: &Path,
    index: usize,
    bootstrap: Option<&str>,
    extra: &[&str],
    lines: mpsc::Sender<(usize, Value)>,
) -> Node {
    let mut args: Vec<&str> = vec!["--listen", "/ip4/127.0.0.1/tcp/0"];
    if let Some(address) = bootstrap {
        args.extend(["--bootstrap", address]);
    }
    match kind {
        Kind::Swarmnode => {
            args.extend([
                "--no-mdns",
                "--stdin",
                "--api",
                "off",
                "--max-pending-per-ip",
                LOOPBACK_PER_IP_LIMIT,
                "--max-established-per-ip",
                LOOPBACK_PER_IP_LIMIT,
            ]);
            args.extend(extra);
            let data_dir = data.join(format!("node-{index}"));
            let mut process = NodeProcess::start(&[], &data_dir, &args, move |line| lines.send((index, line)).is_ok());
            Node {
                pid: process.child.id(),
                peer_id: process.peer_id.clone(),
                stdin: process.child.stdin.take(),
                _process: Box::new(process),
            }
        }
        Kind::Baseline => {
            args.extend(extra);
            let mut child = Command::new(baseline_binary())
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("the baseline starts (cargo build --release -p swarmnode-baseline)");
            let stdout = child.stdout.take().expect("stdout is piped");
            let (first_tx, first) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    if value["event"] == "listening" {
                        let _ = first_tx.send(value["peer_id"].as_str().unwrap_or_default().to_owned());
                    }
                    if lines.send((index, value)).is_err() {
                        return;
                    }
                }
            });
            let peer_id = first
                .recv_timeout(Duration::from_secs(30))
                .expect("the baseline listens within 30 s");
            Node {
                pid: child.id(),
                peer_id,
                stdin: child.stdin.take(),
                _process: Box::new(Killed(child)),
            }
        }
    }
}

/// N nodes of `kind`, all bootstrapped from node 0, each given `extra` flags.
pub struct Swarm {
    pub nodes: Vec<Node>,
    /// Node 0's address, `/p2p/` included.
    pub bootstrap: String,
    pub lines: mpsc::Receiver<(usize, Value)>,
    pub started: Instant,
    _data: tempfile::TempDir,
}

impl Swarm {
    pub fn start(kind: Kind, n: usize, extra: &[&str]) -> Swarm {
        let data = tempfile::tempdir().expect("a temporary directory");
        let (tx, lines) = mpsc::channel();
        let started = Instant::now();
        let mut nodes = vec![start(kind, data.path(), 0, None, extra, tx.clone())];
        let (_, listening) = process::wait_for(&lines, "node 0 to listen", Duration::from_secs(30), |(_, l)| {
            l["event"] == "listening"
        });
        let bootstrap = format!(
            "{}/p2p/{}",
            listening["address"].as_str().expect("an address"),
            nodes[0].peer_id
        );
        for index in 1..n {
            nodes.push(start(kind, data.path(), index, Some(&bootstrap), extra, tx.clone()));
        }
        Swarm {
            nodes,
            bootstrap,
            lines,
            started,
            _data: data,
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }
}

/// User + system CPU time the process has used so far (`/proc/PID/stat`), 0 when it is gone.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields counted here start after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// The CPU time all of `pids` have used so far.
pub fn total_cpu(pids: &[u32]) -> Duration {
    pids.iter().map(|&pid| cpu_time(pid)).sum()
}

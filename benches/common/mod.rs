//! What the benchmarks share: `swarmnode run` processes (the real binary, as a user runs it) whose stdout JSON lines
//! go to a callback, and small statistics. Each benchmark is its own program (`harness = false`).

#![allow(dead_code)] // Each benchmark uses its own subset.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
};

use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_swarmnode");

/// A running node; killed when dropped. Its data directory (and so its key) outlives restarts through `dir`.
pub struct Node {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub peer_id: String,
}

impl Node {
    /// `swarmnode run ARGS --data-dir DIR`; every stdout JSON line goes to `sink` until it returns false. The key
    /// is created first, so the peer id is known before the node starts.
    pub fn start(dir: tempfile::TempDir, args: &[&str], mut sink: impl FnMut(Value) -> bool + Send + 'static) -> Node {
        let peer_id = peer_id(dir.path());
        // Many nodes share the machine: no API unless the benchmark asks for one.
        let api_off: &[&str] = if args.contains(&"--api") {
            &[]
        } else {
            &["--api", "off"]
        };
        let mut child = Command::new(BINARY)
            .arg("run")
            .args(args)
            .args(api_off)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("swarmnode starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line)
                    && !sink(value)
                {
                    return;
                }
            }
        });
        Node { child, dir, peer_id }
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} failed");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer id of the key in `data_dir`, creating the key if there is none.
fn peer_id(data_dir: &Path) -> String {
    let key = data_dir.join("identity.key");
    let output = if key.exists() {
        Command::new(BINARY).arg("id").arg("--key").arg(&key).output()
    } else {
        Command::new(BINARY)
            .args(["key", "generate", "--out"])
            .arg(&key)
            .output()
    }
    .expect("swarmnode runs");
    assert!(
        output.status.success(),
        "cannot prepare a key in {}",
        data_dir.display()
    );
    String::from_utf8(output.stdout)
        .expect("a peer id is text")
        .trim()
        .to_owned()
}

/// Resident memory of process `pid`, in KiB (0 if unknown).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The `p`th percentile (nearest rank) of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

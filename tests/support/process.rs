//! A `swarmnode run` process, the real binary as a user runs it, shared by the integration tests (through
//! `binary.rs`) and the benchmarks (which include this file by path): its key is made before it starts, so its peer
//! id is known without racing its first write; every stdout line is one JSON event, handed to a callback.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_swarmnode");

/// A running node; killed (and waited for) when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub peer_id: String,
}

impl NodeProcess {
    /// `PREFIX... swarmnode run ARGS --data-dir DATA_DIR` (a prefix such as `ip netns exec NS`, or none), with stdin
    /// piped; every stdout line goes to `sink` until it returns false. A line that is not JSON is a bug of the node:
    /// the reader panics on it, and `sink` hears nothing more.
    pub fn start(
        prefix: &[&str],
        data_dir: &Path,
        args: &[&str],
        mut sink: impl FnMut(Value) -> bool + Send + 'static,
    ) -> NodeProcess {
        let peer_id = prepare_key(data_dir);
        let mut command = match prefix {
            [] => Command::new(BINARY),
            [program, rest @ ..] => {
                let mut command = Command::new(program);
                command.args(rest).arg(BINARY);
                command
            }
        };
        let mut child = command
            .arg("run")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("swarmnode starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if !sink(value) {
                    return;
                }
            }
        });
        NodeProcess { child, peer_id }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer id of the key in `data_dir`, creating the key (and the directory) if there is none.
fn prepare_key(data_dir: &Path) -> String {
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

/// The next item from `lines` for which `matches` is true, failing with `what` when none comes `within` this long.
pub fn wait_for<T>(lines: &mpsc::Receiver<T>, what: &str, within: Duration, mut matches: impl FnMut(&T) -> bool) -> T {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} within {within:?}"));
        if matches(&line) {
            return line;
        }
    }
}

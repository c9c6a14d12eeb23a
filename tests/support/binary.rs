//! The real `swarmnode` binary as a user runs it: a `run` process whose stdout JSON lines arrive on a channel.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    process::{Child, ChildStdin, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::DEADLINE;

pub const BINARY: &str = env!("CARGO_BIN_EXE_swarmnode");

/// Runs a short `swarmnode` command to completion.
pub fn swarmnode(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().expect("binary runs")
}

pub struct RunningBinary {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    pub dir: tempfile::TempDir,
    pub peer_id: String,
    /// The control API's URL (`http://127.0.0.1:PORT`), unless started with `--api off`.
    pub api: Option<String>,
}

impl RunningBinary {
    /// `swarmnode run` on 127.0.0.1 (port 0, mDNS off, 1 s heartbeat) with `extra` flags.
    pub fn loopback(extra: &[&str]) -> RunningBinary {
        let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--heartbeat", "1s"];
        args.extend_from_slice(extra);
        RunningBinary::spawn(BINARY, &[], &args)
    }

    /// `swarmnode run ARGS --data-dir <temporary>` started through `program PREFIX...` (e.g. `ip netns exec NS`).
    pub fn spawn(program: &str, prefix: &[&str], args: &[&str]) -> RunningBinary {
        RunningBinary::spawn_in(tempfile::tempdir().unwrap(), program, prefix, args)
    }

    /// Starts the node again on the same data directory (same key), after it exited or was killed.
    pub fn restart(mut self, args: &[&str]) -> RunningBinary {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        RunningBinary::spawn_in(dir, BINARY, &[], args)
    }

    /// Unless `args` choose otherwise, the API listens on a free loopback port (many nodes share the machine).
    fn spawn_in(dir: tempfile::TempDir, program: &str, prefix: &[&str], args: &[&str]) -> RunningBinary {
        let mut args = args.to_vec();
        if !args.contains(&"--api") {
            args.extend(["--api", "127.0.0.1:0"]);
        }
        let api_on = args.windows(2).all(|pair| pair != ["--api", "off"]);
        // The key exists before the node starts, so the peer id is known without racing its first write.
        let key = dir.path().join("identity.key");
        let key = path(key.as_os_str());
        let output = if std::path::Path::new(key).exists() {
            swarmnode(&["id", "--key", key])
        } else {
            swarmnode(&["key", "generate", "--out", key])
        };
        assert!(output.status.success(), "cannot prepare the key");
        let peer_id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        let mut command = Command::new(program);
        if program != BINARY {
            command.args(prefix).arg(BINARY);
        }
        let mut child = command
            .arg("run")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        // The API's address is the first line, before any event.
        let api = api_on.then(|| {
            let line = lines.recv_timeout(DEADLINE).expect("the API address line");
            assert_eq!(line["event"], "api_listening", "{line}");
            line["address"].as_str().unwrap().to_owned()
        });
        RunningBinary {
            stdin: child.stdin.take(),
            child,
            lines,
            dir,
            peer_id,
            api,
        }
    }

    /// The next event line for which `matches` is true; every line must carry a `ts`.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"));
            assert!(line["ts"].as_u64().is_some(), "every event has a ts: {line}");
            if matches(&line) {
                return line;
            }
        }
    }

    /// The first listen address, with `/p2p/<id>`.
    pub fn address(&self) -> String {
        let listening = self.wait_for("listening event", |l| l["event"] == "listening");
        format!("{}/p2p/{}", listening["address"].as_str().unwrap(), self.peer_id)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM")
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) and waits for the exit status.
    pub fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn path(os: &OsStr) -> &str {
    os.to_str().expect("temporary paths are UTF-8")
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

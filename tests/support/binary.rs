//! The real `swarmnode` binary as a test runs it: short commands run to completion, and `run` processes
//! (`process.rs`) whose JSON event lines arrive on a channel and each carry a `ts`.

use std::{
    process::{ChildStdin, Command, ExitStatus, Output},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

use super::{
    DEADLINE,
    process::{self, BINARY, NodeProcess},
    signal,
};

/// Runs a short `swarmnode` command to completion.
pub fn swarmnode(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().expect("binary runs")
}

pub struct RunningBinary {
    pub process: NodeProcess,
    pub stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    dir: TempDir,
    /// The control API's URL (`http://127.0.0.1:PORT`), unless started with `--api off`.
    pub api: Option<String>,
}

impl RunningBinary {
    /// `swarmnode run` on 127.0.0.1 (port 0, mDNS off, 1 s heartbeat) with `extra` flags.
    pub fn loopback(extra: &[&str]) -> RunningBinary {
        let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--heartbeat", "1s"];
        args.extend_from_slice(extra);
        RunningBinary::spawn(&[], &args)
    }

    /// `PREFIX... swarmnode run ARGS --data-dir <temporary>`, the prefix being e.g. `ip netns exec NS`, or none.
    pub fn spawn(prefix: &[&str], args: &[&str]) -> RunningBinary {
        RunningBinary::spawn_in(tempfile::tempdir().unwrap(), prefix, args)
    }

    /// Starts the node again on the same data directory (same key), after it exited or was killed.
    pub fn restart(self, args: &[&str]) -> RunningBinary {
        let RunningBinary { process, dir, .. } = self;
        drop(process);
        RunningBinary::spawn_in(dir, &[], args)
    }

    /// Unless `args` choose otherwise, the API listens on a free loopback port (many nodes share the machine).
    fn spawn_in(dir: TempDir, prefix: &[&str], args: &[&str]) -> RunningBinary {
        let mut args = args.to_vec();
        if !args.contains(&"--api") {
            args.extend(["--api", "127.0.0.1:0"]);
        }
        let api_on = args.windows(2).all(|pair| pair != ["--api", "off"]);
        let (sender, lines) = mpsc::channel();
        let mut process = NodeProcess::start(prefix, dir.path(), &args, move |line| sender.send(line).is_ok());
        // The API's address is the first line, before any event.
        let api = api_on.then(|| {
            let line = lines.recv_timeout(DEADLINE).expect("the API address line");
            assert_eq!(line["event"], "api_listening", "{line}");
            line["address"].as_str().unwrap().to_owned()
        });
        RunningBinary {
            stdin: process.child.stdin.take(),
            process,
            lines,
            dir,
            api,
        }
    }

    pub fn peer_id(&self) -> &str {
        &self.process.peer_id
    }

    /// The next event line for which `matches` is true; every line must carry a `ts`.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        process::wait_for(&self.lines, what, DEADLINE, |line| {
            assert!(line["ts"].as_u64().is_some(), "every event has a ts: {line}");
            matches(line)
        })
    }

    /// The first listen address, with `/p2p/<id>`.
    pub fn address(&self) -> String {
        let listening = self.wait_for("listening event", |l| l["event"] == "listening");
        format!("{}/p2p/{}", listening["address"].as_str().unwrap(), self.peer_id())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_and_wait("TERM")
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) and waits for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        signal::send(&self.process.child, signal);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not exit after SIG{signal}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

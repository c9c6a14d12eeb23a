//! Liveness benchmark: how long a watcher node takes to notice that a peer died or fell silent, and to see a restarted
//! peer active again, as the `peer_state` events of `swarmnode run` report it. Two real processes on loopback (mDNS
//! off): a watcher, and a victim on a fixed port that bootstraps from it. Each sample, on the watcher's clock (its
//! events' `ts`) against the moment this program sent the signal (same machine, same clock, ms resolution):
//! 1. kill: SIGKILL the victim → the watcher's `active → disconnected`;
//! 2. restart (victim dials): start it again on the same port and key → the watcher's `→ active`;
//! 3. silent: right after it answered a ping, SIGSTOP the victim (its kernel keeps the connection open; nothing
//!    answers) → `disconnected` (timeout), then SIGCONT → `active` again (recovery);
//! 4. restart (watcher redials): kill it, restart it without `--bootstrap`, so only the watcher's backoff brings it
//!    back.
//!
//! Run through `scripts/bench-liveness.sh SETTING TRANSPORT SAMPLES` (release build); SETTING is `default`
//! (heartbeat 10 s, timeout 30 s) or `fast` (heartbeat 1 s, timeout 3 s), TRANSPORT `tcp` or `quic`.

#[path = "../tests/support/process.rs"]
mod process;
#[path = "../tests/support/signal.rs"]
mod signal;
mod stats;

use std::{path::Path, sync::mpsc, time::Duration};

use process::NodeProcess;
use serde_json::Value;
use stats::percentile;
use swarmnode::time::now_unix_ms;

/// Longest any one step may take before the benchmark gives up (a default-setting silent peer needs up to 30 s).
const STEP_DEADLINE: Duration = Duration::from_secs(90);

fn free_port(quic: bool) -> u16 {
    if quic {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// A node whose events arrive on its own channel.
struct Watched {
    node: NodeProcess,
    lines: mpsc::Receiver<Value>,
}

/// `swarmnode run ARGS` on `data_dir`, which keeps its key (so its peer id) across restarts.
fn start(data_dir: &Path, args: &[String]) -> Watched {
    let (tx, lines) = mpsc::channel();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = NodeProcess::start(&[], data_dir, &args, move |line| tx.send(line).is_ok());
    Watched { node, lines }
}

impl Watched {
    /// The next line matching `matches`.
    fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        process::wait_for(&self.lines, what, STEP_DEADLINE, matches)
    }

    /// Milliseconds from `since` (unix ms) to the watcher's next `peer_state` of `peer` into `to`.
    fn state_after(&self, peer: &str, to: &str, since: u64) -> u64 {
        let line = self.wait_for(&format!("{peer} → {to}"), |l| {
            l["event"] == "peer_state" && l["peer"] == peer && l["to"] == to
        });
        line["ts"].as_u64().unwrap().saturating_sub(since)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [setting, transport, samples] = &args[..] else {
        panic!("usage: liveness default|fast tcp|quic SAMPLES");
    };
    let samples: usize = samples.parse().expect("SAMPLES is a number");
    let setting_flags = match setting.as_str() {
        "default" => vec![],
        "fast" => vec!["--heartbeat", "1s", "--peer-timeout", "3s"],
        other => panic!("unknown setting {other:?}: default or fast"),
    };
    let quic = match transport.as_str() {
        "tcp" => false,
        "quic" => true,
        other => panic!("unknown transport {other:?}: tcp or quic"),
    };
    let address = |port: u16| {
        if quic {
            format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
        } else {
            format!("/ip4/127.0.0.1/tcp/{port}")
        }
    };
    let (listen_watcher, listen_victim) = (address(0), address(free_port(quic)));
    let node_args = |listen: &str, extra: &[&str]| -> Vec<String> {
        // No API: the benchmark reads only the event lines.
        let mut args = vec!["--no-mdns", "--api", "off", "--listen", listen];
        args.extend(&setting_flags);
        args.extend(extra);
        args.into_iter().map(str::to_owned).collect()
    };

    let data = tempfile::tempdir().unwrap();
    let (watcher_dir, victim_dir) = (data.path().join("watcher"), data.path().join("victim"));
    let watcher = start(&watcher_dir, &node_args(&listen_watcher, &[]));
    let listening = watcher.wait_for("the watcher to listen", |l| l["event"] == "listening");
    let watcher_address = format!(
        "{}/p2p/{}",
        listening["address"].as_str().unwrap(),
        watcher.node.peer_id
    );
    let with_bootstrap = node_args(&listen_victim, &["--bootstrap", &watcher_address]);
    let without_bootstrap = node_args(&listen_victim, &[]);

    let mut victim = start(&victim_dir, &with_bootstrap);
    let id = victim.node.peer_id.clone();
    watcher.state_after(&id, "active", 0);

    let (mut kill, mut restart_dial, mut silent, mut recover, mut restart_redial) =
        (vec![], vec![], vec![], vec![], vec![]);
    // Dropping the victim kills it and waits for it; the new process has the same data directory, so the same key.
    let restart = |victim: Watched, args: &[String]| -> (Watched, u64) {
        drop(victim);
        let at = now_unix_ms();
        (start(&victim_dir, args), at)
    };
    for sample in 1..=samples {
        let at = now_unix_ms();
        signal::send(&victim.node.child, "KILL");
        kill.push(watcher.state_after(&id, "disconnected", at));
        let (restarted, at) = restart(victim, &with_bootstrap);
        victim = restarted;
        restart_dial.push(watcher.state_after(&id, "active", at));

        // Freeze it right after it answered a ping: the worst case, a whole timeout of silence to wait out.
        watcher.wait_for("a ping of the victim", |l| {
            l["event"] == "ping" && l["peer"] == id.as_str()
        });
        let at = now_unix_ms();
        signal::send(&victim.node.child, "STOP");
        silent.push(watcher.state_after(&id, "disconnected", at));
        let at = now_unix_ms();
        signal::send(&victim.node.child, "CONT");
        recover.push(watcher.state_after(&id, "active", at));

        let at = now_unix_ms();
        signal::send(&victim.node.child, "KILL");
        watcher.state_after(&id, "disconnected", at);
        let (restarted, at) = restart(victim, &without_bootstrap);
        victim = restarted;
        restart_redial.push(watcher.state_after(&id, "active", at));
        // Back to the starting shape: the victim knows the watcher again. Over QUIC the watcher may not have noticed
        // this kill yet (no FIN) and so sees no state change; a ping on the new connection is the sign it is up.
        let (restarted, at) = restart(victim, &with_bootstrap);
        victim = restarted;
        watcher.wait_for("a ping of the restarted victim", |l| {
            l["event"] == "ping" && l["peer"] == id.as_str() && l["ts"].as_u64().is_some_and(|ts| ts >= at)
        });
        eprintln!("sample {sample}/{samples} done");
    }

    for (scenario, mut values) in [
        ("killed process → disconnected", kill),
        ("restarted (it dials) → active", restart_dial),
        ("silent (SIGSTOP) → disconnected", silent),
        ("resumed (SIGCONT) → active", recover),
        ("restarted (watcher redials) → active", restart_redial),
    ] {
        values.sort_unstable();
        println!(
            "| {setting} | {transport} | {scenario} | {} | {} | {} | {} |",
            values.len(),
            values.first().copied().unwrap_or(0),
            percentile(&values, 50.0),
            values.last().copied().unwrap_or(0),
        );
    }
}

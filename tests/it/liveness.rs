//! The liveness policy as an operator watching `swarmnode run` sees it, with short timings: a killed peer goes
//! disconnected → reconnecting (one event per attempt) → removed after exactly the configured attempts, and a peer
//! restarted on the same address and key within the backoff window becomes active again, one that shuts down
//! gracefully is `left` and never redialled, and a frozen one is disconnected after the timeout.

use std::cell::RefCell;

use serde_json::Value;

use crate::support::{binary::RunningBinary, signal};

const FAST: [&str; 8] = [
    "--heartbeat",
    "200ms",
    "--peer-timeout",
    "1s",
    "--reconnect-attempts",
    "3",
    "--reconnect-backoff-max",
    "5s",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `watcher`'s peer_state events about `peer`, as (from, to, attempt), until one reaches `last`.
fn states_until(watcher: &RunningBinary, peer: &str, last: &str) -> Vec<(String, String, u64)> {
    let seen = RefCell::new(Vec::new());
    watcher.wait_for(&format!("{peer} to become {last}"), |l: &Value| {
        if l["event"] != "peer_state" || l["peer"] != peer {
            return false;
        }
        let (from, to) = (l["from"].as_str().unwrap(), l["to"].as_str().unwrap());
        seen.borrow_mut()
            .push((from.to_owned(), to.to_owned(), l["attempt"].as_u64().unwrap()));
        to == last
    });
    seen.into_inner()
}

fn args<'a>(listen: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--no-mdns", "--listen", listen];
    args.extend_from_slice(&FAST);
    args.extend_from_slice(extra);
    args
}

/// A watcher, and a victim on a fixed port (so it can be restarted there) that bootstraps from it; returned once the
/// watcher reports the victim active, with the victim's arguments for a restart.
struct Watched {
    watcher: RunningBinary,
    watcher_address: String,
    victim: RunningBinary,
    victim_id: String,
    victim_args: Vec<String>,
}

fn watched(watcher_backoff: &str, victim_backoff: &str) -> Watched {
    let watcher = RunningBinary::spawn(
        &[],
        &args("/ip4/127.0.0.1/tcp/0", &["--reconnect-backoff", watcher_backoff]),
    );
    let watcher_address = watcher.address();
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let victim_args: Vec<String> = args(
        &listen,
        &["--reconnect-backoff", victim_backoff, "--bootstrap", &watcher_address],
    )
    .into_iter()
    .map(str::to_owned)
    .collect();
    let victim = RunningBinary::spawn(&[], &victim_args.iter().map(String::as_str).collect::<Vec<_>>());
    let victim_id = victim.peer_id().to_owned();
    let joined = states_until(&watcher, &victim_id, "active");
    assert_eq!(joined.last().unwrap().0, "new");
    Watched {
        watcher,
        watcher_address,
        victim,
        victim_id,
        victim_args,
    }
}

#[test]
fn a_killed_peer_is_redialled_the_configured_number_of_times_then_removed() {
    let Watched {
        watcher,
        mut victim,
        victim_id,
        ..
    } = watched("100ms", "100ms");
    victim.signal_and_wait("KILL");
    let states = states_until(&watcher, &victim_id, "removed");
    let expected: Vec<(String, String, u64)> = [
        ("active", "disconnected", 0),
        ("disconnected", "reconnecting", 1),
        ("reconnecting", "reconnecting", 2),
        ("reconnecting", "reconnecting", 3),
        ("reconnecting", "removed", 0),
    ]
    .iter()
    .map(|(f, t, a)| (f.to_string(), t.to_string(), *a))
    .collect();
    assert_eq!(states, expected);
}

#[test]
fn a_peer_restarted_within_the_backoff_window_becomes_active_again() {
    let Watched {
        watcher,
        mut victim,
        victim_id,
        victim_args,
        ..
    } = watched("1s", "1s");
    victim.signal_and_wait("KILL");
    states_until(&watcher, &victim_id, "reconnecting");
    let restarted = victim.restart(&victim_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(restarted.peer_id(), victim_id, "same key, same peer id");
    let back = states_until(&watcher, &victim_id, "active");
    assert_eq!(back.last().unwrap().0, "reconnecting");
    assert!(!back.iter().any(|(_, to, _)| to == "removed"), "{back:?}");
}

#[test]
fn a_peer_that_stays_connected_but_stops_answering_is_disconnected_after_the_timeout() {
    let Watched {
        watcher,
        mut victim,
        victim_id,
        ..
    } = watched("5s", "1s");
    // A frozen process: the kernel keeps its TCP connection open, but nothing answers a ping.
    let frozen_at = swarmnode::time::now_unix_ms();
    signal::send(&victim.process.child, "STOP");
    let timed_out = watcher.wait_for("the silent peer to time out", |l| {
        l["event"] == "peer_state" && l["peer"] == victim_id.as_str() && l["to"] == "disconnected"
    });
    assert_eq!(timed_out["reason"], "timeout");
    let detected_after = timed_out["ts"].as_u64().unwrap() - frozen_at;
    // Not a timing assertion (the machine is noisy): a timeout can only fire after the configured second of silence.
    // The silence starts at the last thing heard from the peer, which can precede the STOP by a little (a ping or
    // gossip answered just before it), and both stamps are whole milliseconds: hence the 100 ms of slack.
    assert!(
        detected_after >= 900,
        "disconnected after only {detected_after} ms of silence"
    );

    signal::send(&victim.process.child, "CONT");
    states_until(&watcher, &victim_id, "active");
    victim.terminate();
}

#[test]
fn a_peer_that_shuts_down_gracefully_is_left_and_not_redialled() {
    let Watched {
        watcher,
        watcher_address,
        mut victim,
        victim_id,
        ..
    } = watched("100ms", "100ms");
    assert!(victim.terminate().success());
    let left = watcher.wait_for("the leave to be reported", |l| {
        l["event"] == "peer_state" && l["peer"] == victim_id.as_str()
    });
    assert_eq!(
        (&left["from"], &left["to"]),
        (&"active".into(), &"left".into()),
        "{left}"
    );
    assert_eq!(left["reason"], "announced leave");

    // Any redial would be scheduled the moment the connection closes, so every event about the victim is out before
    // the watcher reports a later connection: a newcomer's arrival fences them.
    let newcomer = RunningBinary::spawn(&[], &args("/ip4/127.0.0.1/tcp/0", &["--bootstrap", &watcher_address]));
    let after_leave = RefCell::new(Vec::new());
    watcher.wait_for("the newcomer to connect", |l| {
        if l["peer"] == victim_id.as_str() {
            after_leave.borrow_mut().push(l.clone());
        }
        l["event"] == "connected" && l["peer"] == newcomer.peer_id()
    });
    let after_leave = after_leave.into_inner();
    assert!(
        after_leave.iter().all(|l| l["event"] != "peer_state"),
        "no state change after leaving: {after_leave:?}"
    );
}

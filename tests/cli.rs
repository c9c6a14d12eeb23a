//! The `swarmnode` binary as a user runs it: key commands, bad flags, the JSON event lines of `run`, a graceful exit
//! on SIGTERM, and the README's three-node chat on loopback.

mod support;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use support::binary::{RunningBinary, swarmnode};

#[test]
fn key_generate_writes_a_key_that_id_reads_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    let key = key.to_str().unwrap();
    let generated = swarmnode(&["key", "generate", "--out", key]);
    assert!(generated.status.success());
    let peer_id = String::from_utf8(generated.stdout).unwrap();
    assert!(peer_id.trim().starts_with("12D3KooW"), "{peer_id}");

    let id = swarmnode(&["id", "--key", key]);
    assert_eq!(String::from_utf8(id.stdout).unwrap(), peer_id);

    let again = swarmnode(&["key", "generate", "--out", key]);
    assert!(!again.status.success());
    assert!(String::from_utf8(again.stderr).unwrap().contains("--force"));
    assert_eq!(
        String::from_utf8(swarmnode(&["id", "--key", key]).stdout).unwrap(),
        peer_id
    );

    let forced = swarmnode(&["key", "generate", "--out", key, "--force"]);
    assert!(forced.status.success());
    assert_ne!(String::from_utf8(forced.stdout).unwrap(), peer_id);
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["run", "--heartbeat", "often"], "--heartbeat"),
        (&["run", "--data-dir", data_dir, "--no-mdns", "--topic", ""], "topic"),
        (
            &["run", "--data-dir", data_dir, "--no-mdns", "--listen", "/ip4/127.0.0.1"],
            "no transport",
        ),
        (&["id", "--key", "/nonexistent/identity.key"], "swarmnode key generate"),
    ];
    for (args, expected) in cases {
        let output = swarmnode(args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn run_prints_json_events_and_exits_zero_promptly_on_sigterm() {
    let mut node = RunningBinary::loopback(&[]);
    let listening = node.wait_for("listening event", |l| l["event"] == "listening");
    assert!(
        listening["address"]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/")
    );
    let asked = Instant::now();
    let status = node.terminate();
    assert!(status.success(), "exit status {status}");
    // The graceful shutdown is bounded at 2 s; anything near the test deadline would mean it is not.
    assert!(asked.elapsed() < Duration::from_secs(10), "took {:?}", asked.elapsed());
}

#[test]
fn three_node_chat_a_typed_line_arrives_at_the_other_two() {
    let first = RunningBinary::loopback(&[]);
    let bootstrap = first.address();
    let second = RunningBinary::loopback(&["--bootstrap", &bootstrap]);
    let mut third = RunningBinary::loopback(&["--bootstrap", &bootstrap, "--stdin"]);
    // Typing before anyone has joined the topic would only log "not published": wait as a user would.
    third.wait_for("a subscriber", |l| l["event"] == "subscribed");
    second.wait_for("a subscriber", |l| l["event"] == "subscribed");

    let stdin = third.stdin.as_mut().unwrap();
    writeln!(stdin, "hello from the third terminal").unwrap();
    stdin.flush().unwrap();
    for node in [&first, &second] {
        let message = node.wait_for("the chat line", |l| l["event"] == "message");
        assert_eq!(message["data"], "hello from the third terminal");
        assert_eq!(message["content_type"], "text/plain; charset=utf-8");
        assert_eq!(message["topic"], "swarmnode");
    }
    // End of input does not stop the node: it keeps printing events (a closed stdout would end the wait).
    drop(third.stdin.take());
    let closed_ms = swarmnode::time::now_unix_ms();
    let ping = third.wait_for("a ping 1.5 s after stdin closed", |l| {
        l["event"] == "ping" && l["ts"].as_u64().unwrap_or(0) > closed_ms + 1500
    });
    assert!(ping["rtt_ms"].as_f64().is_some());
    assert!(third.terminate().success());
}

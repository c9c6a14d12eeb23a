//! The `swarmnode` binary as a user runs it: key commands (which never replace a device, a FIFO or a directory, and
//! leave no temporary file when a write fails), bad flags and boolean variables, the JSON event lines of `run`, a
//! graceful exit on SIGTERM, and the README's three-node chat on loopback.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use crate::support::{
    DEADLINE,
    binary::{RunningBinary, swarmnode},
    process::BINARY,
};

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

/// `swarmnode ARGS --api URL`, returning (success, stdout, stderr).
fn client(api: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = args.to_vec();
    all.extend(["--api", api]);
    let output = swarmnode(&all);
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn client_commands_drive_a_running_node() {
    let node = RunningBinary::loopback(&[]);
    let api = node.api.clone().unwrap();
    let other = RunningBinary::loopback(&[]);
    let other_address = other.address();

    let (ok, out, _) = client(&api, &["status"]);
    assert!(ok);
    assert!(out.contains(node.peer_id()) && out.contains("swarmnode/"), "{out}");

    let (ok, out, err) = client(&api, &["publish", "swarmnode", "too early"]);
    assert!(!ok, "{out}");
    assert!(err.contains("no connected peer") && err.contains("HTTP 409"), "{err}");

    let (ok, out, err) = client(&api, &["connect", &other_address]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("connected to {}\n", other.peer_id()));
    other.wait_for("the node to join the topic", |l| l["event"] == "subscribed");

    let (ok, out, _) = client(&api, &["peers"]);
    assert!(ok);
    let row = out
        .lines()
        .find(|l| l.starts_with(other.peer_id()))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("active") && row.contains("outbound"), "{row}");
    let (ok, out, _) = client(&api, &["peers", "--json"]);
    assert!(ok);
    let peers: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(peers[0]["peer"], other.peer_id());

    node.wait_for("the other node's subscription", |l| l["event"] == "subscribed");
    let (ok, out, err) = client(&api, &["publish", "swarmnode", "from the cli", "--id", "cli-1"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("published id cli-1 to 1 peer(s)"), "{out}");
    let (_, out, _) = client(
        &api,
        &["publish", "swarmnode", "from the cli", "--id", "cli-1", "--json"],
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["duplicate"],
        true
    );
    let message = other.wait_for("the published message", |l| l["event"] == "message");
    assert_eq!(
        (&message["data"], &message["id"]),
        (&"from the cli".into(), &"cli-1".into())
    );

    let (ok, out, _) = client(&api, &["diagnose"]);
    assert!(ok && out.contains("routing table"), "{out}");
    let (ok, out, _) = client(&api, &["disconnect", other.peer_id()]);
    assert!(ok);
    assert_eq!(out, format!("disconnected {}; blocked for 10m\n", other.peer_id()));
    let (ok, _, err) = client(&api, &["disconnect", "nonsense"]);
    assert!(!ok && err.contains("not a peer id"), "{err}");
}

#[test]
fn client_commands_without_a_node_say_so_in_one_line() {
    // Port 1 on loopback: nothing listens there.
    for args in [
        &["status"][..],
        &["peers", "--json"],
        &["publish", "t", "x"],
        &["events"],
    ] {
        let (ok, out, err) = client("http://127.0.0.1:1", args);
        assert!(!ok, "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("no swarmnode API at http://127.0.0.1:1"), "{err}");
    }
}

#[test]
fn subscribe_prints_each_message_of_the_topic_as_a_json_line() {
    let node = RunningBinary::loopback(&[]);
    let api = node.api.clone().unwrap();
    let mut publisher = RunningBinary::loopback(&["--topic", "news", "--stdin", "--bootstrap", &node.address()]);
    let mut subscriber = std::process::Command::new(BINARY)
        .args(["subscribe", "news", "--api", &api])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    publisher.wait_for("the node to join news", |l| {
        l["event"] == "subscribed" && l["topic"] == "news"
    });
    writeln!(publisher.stdin.as_mut().unwrap(), "extra, extra").unwrap();
    let stdout = subscriber.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = sender.send(line);
    });
    let line = lines.recv_timeout(DEADLINE);
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    let line = line.expect("a line from subscribe");
    let message: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&message["event"], &message["topic"]),
        (&"message".into(), &"news".into())
    );
    assert_eq!(message["data"], "extra, extra");
    assert!(publisher.terminate().success());
}

/// Every name in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn secret_writers_refuse_devices_fifos_and_directories_even_with_force() {
    use std::os::unix::fs::FileTypeExt;

    let full = std::path::Path::new("/dev/full");
    let dev_before = names(std::path::Path::new("/dev"));
    for args in [
        &["key", "generate", "--out", "/dev/full", "--force"][..],
        &["key", "swarm-key", "--out", "/dev/full", "--force"],
    ] {
        let output = swarmnode(args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("/dev/full is not a regular file (it is a character device)"),
            "{args:?}: {stderr}"
        );
        assert!(
            std::fs::metadata(full).unwrap().file_type().is_char_device(),
            "still a device"
        );
    }
    assert_eq!(names(std::path::Path::new("/dev")), dev_before, "nothing left in /dev");

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let directory = dir.path().join("directory");
    std::fs::create_dir(&directory).unwrap();
    for (target, kind) in [(&fifo, "FIFO"), (&directory, "directory")] {
        let output = swarmnode(&["key", "generate", "--out", target.to_str().unwrap(), "--force"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(&format!("(it is a {kind})")),
            "{stderr}"
        );
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(directory.is_dir());
    assert_eq!(names(dir.path()), ["directory", "fifo"], "no temporary file left");
}

#[test]
fn a_write_that_fails_halfway_leaves_no_temporary_file_and_no_target() {
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    for args in [
        vec![
            "key".to_owned(),
            "generate".into(),
            "--out".into(),
            path("identity.key"),
        ],
        vec!["key".to_owned(), "swarm-key".into(), "--out".into(), path("swarm.key")],
        vec!["ca".to_owned(), "init".into(), "--out".into(), path("ca")],
    ] {
        let mut command = std::process::Command::new(BINARY);
        command.args(&args);
        // SAFETY: between fork and exec the child only calls async-signal-safe functions (signal, setrlimit). Files
        // may then grow to 16 bytes: every secret is longer, so its write fails halfway (EFBIG, with SIGXFSZ
        // ignored), whoever runs the test, root included.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: 16,
                    rlim_max: 16,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains("cannot write key file") && stderr.contains("too large"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        names(dir.path()),
        ["ca"],
        "no key, no temporary file: only the CA's directory"
    );
    assert!(names(&dir.path().join("ca")).is_empty(), "nothing inside it either");
}

#[test]
fn boolean_variables_take_1_0_yes_no_and_refuse_anything_else() {
    use std::{
        io::BufRead,
        process::{Command, Stdio},
    };

    let run = |value: &str, extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(BINARY);
        command
            .env("SWARMNODE_NO_MDNS", value)
            .args([
                "run",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra);
        (command, dir)
    };
    // mDNS must stay off in these tests: only the values that turn it off start a node.
    for value in ["1", "yes", "TRUE"] {
        let (mut command, _dir) = run(value, &[]);
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let diagnosis = swarmnode(&["diagnose", "--json", "--api", address["address"].as_str().unwrap()]);
        let _ = child.kill();
        let _ = child.wait();
        let diagnosis: serde_json::Value = serde_json::from_slice(&diagnosis.stdout).unwrap();
        assert_eq!(diagnosis["mdns_enabled"], false, "SWARMNODE_NO_MDNS={value}");
    }
    // The others are accepted too: the node then stops at a later, deliberate error (a 0 s heartbeat), before any
    // network traffic.
    for value in ["0", "false", "No", "off"] {
        let (mut command, _dir) = run(value, &["--heartbeat", "0s"]);
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains("invalid --heartbeat") && !stderr.contains("no-mdns"),
            "{value}: {stderr}"
        );
    }
    let (mut command, _dir) = run("maybe", &[]);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'maybe'") && stderr.contains("--no-mdns"), "{stderr}");
}

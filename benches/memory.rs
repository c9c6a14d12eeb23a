//! Memory benchmark: a receiving `swarmnode run` process flooded with M messages of S bytes by a second node (its
//! `--stdin`, as fast as it takes them) while nobody reads the receiver's events, and the receiver's resident memory
//! (`/proc/PID/status`: VmRSS, and VmHWM for the peak) before the flood, at its peak, and 10 s and 65 s after the last
//! delivery (the second past the event channel's 60 s age limit). Two loopback processes, mDNS off.
//!
//! The receiver's stdout printer is itself an event reader, so the receiver runs in one of two ways:
//! - `devnull`: stdout is /dev/null, the printer reads and discards every event at once;
//! - `unread`: stdout is a pipe nobody reads, so the printer blocks on its first full pipe and reads nothing more.
//!
//! Either way the event channel keeps events up to its byte budget (`--event-buffer-bytes`, BUDGET, or `default` to
//! pass no flag: the only choice for a build that predates the flag). Deliveries and the channel's bytes are read
//! from the receiver's `/metrics`. `SWARMNODE_BINARY` runs another build as the receiver (e.g. the commit before the
//! budget); the publisher is always this build.
//!
//! Run through `scripts/bench-memory.sh MODE BUDGET RUNS [MESSAGES] [BYTES]` (release build). Prints one line per
//! run (with the deliveries and the flood's duration) and one markdown row, min / median / max MiB over the runs.

mod host;
#[path = "../tests/support/process.rs"]
mod process;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use host::{free_port, status_kib};
use process::{BINARY, NodeProcess};

/// How long the flood may make no progress before the run ends with what arrived.
const STALL: Duration = Duration::from_secs(20);
/// When, after the last delivery, the resident memory is read again.
const AFTER: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(65)];

/// One metric's value from the receiver's `/metrics`, if the API answers and has it.
fn metric(api_port: u16, name: &str) -> Option<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", api_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .map(|value| value as u64)
}

/// The receiver, with its stdout as the mode says; killed when dropped.
struct Receiver {
    child: Child,
    api_port: u16,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(binary: &str, mode: &str, budget: &str, p2p_port: u16) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let api_port = free_port();
        let stdout = match mode {
            "devnull" => Stdio::null(),
            "unread" => Stdio::piped(),
            other => panic!("MODE is devnull or unread, not {other}"),
        };
        let mut command = Command::new(binary);
        command
            .args(["run", "--no-mdns", "--listen"])
            .arg(format!("/ip4/127.0.0.1/tcp/{p2p_port}"))
            .arg("--api")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--data-dir")
            .arg(dir.path());
        if budget != "default" {
            command.args(["--event-buffer-bytes", budget]);
        }
        // The pipe of `unread` stays open and unread in `child.stdout` until the receiver is killed.
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .expect("the receiver starts");
        Receiver {
            child,
            api_port,
            _dir: dir,
        }
    }

    fn delivered(&self) -> u64 {
        metric(self.api_port, "swarmnode_messages_delivered_total").unwrap_or(0)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run measured, in KiB (RSS) and bytes (event buffer).
struct Run {
    before: u64,
    peak: u64,
    after: [u64; 2],
    delivered: u64,
    /// The event channel's bytes at the end of the flood and at the last reading.
    event_buffer: [Option<u64>; 2],
    flood: Duration,
}

fn run(binary: &str, mode: &str, budget: &str, messages: u64, size: usize) -> Run {
    let p2p_port = free_port();
    let receiver = Receiver::start(binary, mode, budget, p2p_port);
    let pid = receiver.child.id();
    let (lines_tx, lines) = mpsc::channel();
    let bootstrap = format!("/ip4/127.0.0.1/tcp/{p2p_port}");
    let publisher_dir = tempfile::tempdir().unwrap();
    let mut publisher = NodeProcess::start(
        &[],
        publisher_dir.path(),
        &[
            "--api",
            "off",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--stdin",
            "--bootstrap",
            &bootstrap,
        ],
        move |line| lines_tx.send(line).is_ok(),
    );
    process::wait_for(
        &lines,
        &format!(
            "the receiver's subscription to reach the publisher {}",
            publisher.peer_id
        ),
        Duration::from_secs(60),
        |line| line["event"] == "subscribed",
    );
    let mut stdin = publisher.child.stdin.take().unwrap();
    // Warm-up: until one message arrives, so the flood meets a formed mesh and a running API.
    let mut warmups = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.delivered() == 0 {
        assert!(Instant::now() < deadline, "no warm-up message arrived within 60 s");
        writeln!(stdin, "warmup").unwrap();
        warmups += 1;
        thread::sleep(Duration::from_millis(300));
    }
    // Later warm-ups may still be on their way; they count as deliveries too.
    thread::sleep(Duration::from_millis(500));
    let before = status_kib(pid, "VmRSS:");

    let started = Instant::now();
    let writer = thread::spawn(move || {
        let line = "x".repeat(size);
        for i in 0..messages {
            if writeln!(stdin, "{i:08}{}", &line[8..]).is_err() {
                return stdin;
            }
        }
        stdin
    });
    let expected = warmups + messages;
    let (mut delivered, mut progress) = (0, Instant::now());
    let mut peak = 0;
    while delivered < expected && progress.elapsed() < STALL {
        peak = peak.max(status_kib(pid, "VmRSS:"));
        let now = receiver.delivered();
        if now > delivered {
            (delivered, progress) = (now, Instant::now());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let flood = started.elapsed();
    let last_delivery = progress;
    let event_buffer_at_end = metric(receiver.api_port, "swarmnode_event_buffer_bytes");
    let mut after = [0; 2];
    for (slot, delay) in after.iter_mut().zip(AFTER) {
        thread::sleep((last_delivery + delay).saturating_duration_since(Instant::now()));
        *slot = status_kib(pid, "VmRSS:");
    }
    let event_buffer = [
        event_buffer_at_end,
        metric(receiver.api_port, "swarmnode_event_buffer_bytes"),
    ];
    peak = peak.max(status_kib(pid, "VmHWM:"));
    drop(writer.join());
    Run {
        before,
        peak,
        after,
        delivered: delivered.saturating_sub(warmups),
        event_buffer,
        flood,
    }
}

/// min / median / max of `values`, in MiB.
fn spread(mut values: Vec<u64>) -> String {
    values.sort_unstable();
    let mib = |kib: u64| kib / 1024;
    format!(
        "{} / {} / {}",
        mib(values[0]),
        mib(values[values.len() / 2]),
        mib(values[values.len() - 1])
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let (mode, budget, runs) = match &args[..] {
        [mode, budget, runs, ..] => (mode.as_str(), budget.as_str(), runs.parse::<usize>().expect("RUNS")),
        _ => panic!("usage: memory MODE BUDGET RUNS [MESSAGES] [BYTES]"),
    };
    let messages: u64 = args.get(3).map_or(2000, |m| m.parse().expect("MESSAGES"));
    let size: usize = args.get(4).map_or(512 << 10, |s| s.parse().expect("BYTES"));
    assert!(runs >= 1 && size >= 16);
    let binary = std::env::var("SWARMNODE_BINARY").unwrap_or_else(|_| BINARY.to_owned());
    let results: Vec<Run> = (0..runs)
        .map(|i| {
            let run = run(&binary, mode, budget, messages, size);
            println!(
                "run {i}: delivered {}/{messages} in {:.1}s, RSS before {} KiB, peak {} KiB, after 10s {} KiB, \
                 after 65s {} KiB, event buffer at the end {:?} B, 65s after {:?} B",
                run.delivered,
                run.flood.as_secs_f64(),
                run.before,
                run.peak,
                run.after[0],
                run.after[1],
                run.event_buffer[0],
                run.event_buffer[1],
            );
            run
        })
        .collect();
    let event_buffer = results
        .iter()
        .filter_map(|r| r.event_buffer[0])
        .max()
        .map_or("—".to_owned(), |bytes| {
            format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
        });
    println!(
        "| {} | {mode} | {budget} | {} | {} | {} | {} | {event_buffer} |",
        if binary == BINARY {
            "this build"
        } else {
            binary.as_str()
        },
        spread(results.iter().map(|r| r.before).collect()),
        spread(results.iter().map(|r| r.peak).collect()),
        spread(results.iter().map(|r| r.after[0]).collect()),
        spread(results.iter().map(|r| r.after[1]).collect()),
    );
}

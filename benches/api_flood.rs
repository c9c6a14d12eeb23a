//! API flood benchmark: what tokenless and stalled clients cost a token-protected `swarmnode run`. Two receivers run
//! side by side, this build and a baseline build (`BASELINE` binary, e.g. the commit before the API was bounded), and
//! each phase hits both, in alternating order, with the same traffic:
//! 1. `junk`: 20 000 requests without the token, from 8 threads, each on its own connection with a made-up
//!    4 000-character method and its own path and `Host` (the report's reproduction, which pipelined them), twice;
//! 2. `held`: 2 000 connections that send half a request line and then nothing, held 15 s, then closed.
//!
//! After each phase: the receiver's resident memory (`/proc/PID/status` VmRSS) and the size of its `/metrics` (read
//! with the token); and whether it still answers. Prints a line per run and markdown rows, min / median / max over
//! the runs, with each figure also as a ratio to the same receiver's own figure at rest in the same run.
//!
//! Run through `scripts/bench-api-flood.sh RUNS BASELINE` (release build, loopback, mDNS off).

mod host;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use host::{free_port, status_kib};

const TOKEN: &str = "bench-token";
const JUNK_SENDERS: usize = 8;
const JUNK_PER_SENDER: usize = 2_500;
const HELD: usize = 2_000;
const HOLD: Duration = Duration::from_secs(15);

/// A receiver: `BINARY run` with its API behind a token; killed when dropped.
struct Receiver {
    child: Child,
    api_port: u16,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(binary: &str) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let api_port = free_port();
        let child = Command::new(binary)
            .args(["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--api"])
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--api-token-file")
            .arg(&token_file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the receiver starts");
        let receiver = Receiver {
            child,
            api_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while receiver.metrics_bytes().is_none() {
            assert!(Instant::now() < deadline, "{binary} did not serve its API");
            thread::sleep(Duration::from_millis(100));
        }
        receiver
    }

    /// The size of `/metrics` read with the token, if the API answers.
    fn metrics_bytes(&self) -> Option<u64> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.api_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        text.starts_with("HTTP/1.1 200")
            .then(|| text.split_once("\r\n\r\n").map_or(0, |(_, body)| body.len() as u64))
    }

    fn reading(&self) -> Reading {
        Reading {
            rss_kib: status_kib(self.child.id(), "VmRSS:"),
            metrics: self.metrics_bytes(),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kib: u64,
    /// `None`: the API did not answer.
    metrics: Option<u64>,
}

/// The junk flood against one receiver, every request's method unique within the run (`round` tells the rounds
/// apart), each on a connection of its own (this build closes the connection with its 401, so pipelining more gets
/// nothing parsed); returns how many answers came back.
fn junk(port: u16, round: usize) -> usize {
    let method = format!("M{}", "X".repeat(4000));
    let senders: Vec<_> = (0..JUNK_SENDERS)
        .map(|sender| {
            let method = method.clone();
            thread::spawn(move || {
                let mut answered = 0;
                for i in 0..JUNK_PER_SENDER {
                    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let request = format!(
                        "{method}{round}x{sender}x{i} /x/{sender}/{i} HTTP/1.1\r\nHost: h{sender}-{i}.example\r\n\
                         Connection: close\r\n\r\n"
                    );
                    let mut answer = Vec::new();
                    if stream.write_all(request.as_bytes()).is_ok() && stream.read_to_end(&mut answer).is_ok() {
                        answered += usize::from(answer.starts_with(b"HTTP/1.1 "));
                    }
                }
                answered
            })
        })
        .collect();
    senders.into_iter().map(|sender| sender.join().unwrap_or(0)).sum()
}

/// Opens `HELD` connections that send half a request line; they stay open until dropped.
fn hold(port: u16) -> Vec<TcpStream> {
    (0..HELD)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream.write_all(b"GET /v1/no").ok()?;
            Some(stream)
        })
        .collect()
}

/// One run: both receivers through every phase; the readings of each, in phase order.
fn run(binaries: [&str; 2], baseline_first: bool) -> [Vec<Reading>; 2] {
    let receivers = binaries.map(Receiver::start);
    thread::sleep(Duration::from_secs(2));
    let order: [usize; 2] = if baseline_first { [1, 0] } else { [0, 1] };
    let mut readings: [Vec<Reading>; 2] = [vec![receivers[0].reading()], vec![receivers[1].reading()]];
    for round in 0..2 {
        for &i in &order {
            let answered = junk(receivers[i].api_port, round);
            println!("  {} junk round {round}: {answered} answers", binaries[i]);
            readings[i].push(receivers[i].reading());
        }
    }
    let mut held: Vec<Vec<TcpStream>> = vec![Vec::new(), Vec::new()];
    for &i in &order {
        held[i] = hold(receivers[i].api_port);
    }
    thread::sleep(HOLD);
    for &i in &order {
        let open = held[i].len();
        let still_open = held[i]
            .iter()
            .filter(|stream| {
                let _ = stream.set_nonblocking(true);
                let mut byte = [0u8; 1];
                matches!((&**stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        println!(
            "  {}: {open} held connections opened, {still_open} still open after {HOLD:?}",
            binaries[i]
        );
        readings[i].push(receivers[i].reading());
    }
    drop(held);
    thread::sleep(Duration::from_secs(5));
    for i in order {
        readings[i].push(receivers[i].reading());
    }
    readings
}

/// min / median / max of `values`.
fn spread(mut values: Vec<f64>, decimals: usize) -> String {
    values.sort_by(f64::total_cmp);
    let at = |i: usize| format!("{:.*}", decimals, values[i]);
    format!("{} / {} / {}", at(0), at(values.len() / 2), at(values.len() - 1))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let (runs, baseline) = match &args[..] {
        [runs, baseline, ..] => (runs.parse::<usize>().expect("RUNS"), baseline.clone()),
        _ => panic!("usage: api_flood RUNS BASELINE_BINARY"),
    };
    let this = env!("CARGO_BIN_EXE_swarmnode");
    let binaries = [this, baseline.as_str()];
    let results: Vec<[Vec<Reading>; 2]> = (0..runs)
        .map(|run_index| {
            println!("run {run_index}");
            let readings = run(binaries, run_index % 2 == 1);
            for (binary, readings) in binaries.iter().zip(&readings) {
                println!("  {binary}: {readings:?}");
            }
            readings
        })
        .collect();
    let phases = [
        "at rest",
        "after 20 000 junk",
        "after 40 000 junk",
        "2 000 held 15 s",
        "5 s after closing",
    ];
    println!("| receiver | moment | RSS MiB | × at rest | /metrics KiB | × at rest |");
    println!("|---|---|---|---|---|---|");
    for (b, name) in ["this build", "baseline"].iter().enumerate() {
        for (p, phase) in phases.iter().enumerate() {
            let rss: Vec<f64> = results.iter().map(|r| r[b][p].rss_kib as f64 / 1024.0).collect();
            let rss_ratio: Vec<f64> = results
                .iter()
                .map(|r| r[b][p].rss_kib as f64 / r[b][0].rss_kib.max(1) as f64)
                .collect();
            let metrics: Vec<Option<f64>> = results
                .iter()
                .map(|r| r[b][p].metrics.map(|m| m as f64 / 1024.0))
                .collect();
            let (metrics_cell, metrics_ratio) = if metrics.iter().all(Option::is_some) {
                let ratio = results
                    .iter()
                    .map(|r| r[b][p].metrics.unwrap_or(0) as f64 / r[b][0].metrics.unwrap_or(1).max(1) as f64)
                    .collect();
                (spread(metrics.into_iter().flatten().collect(), 1), spread(ratio, 2))
            } else {
                ("no answer in some runs".to_owned(), "—".to_owned())
            };
            println!(
                "| {name} | {phase} | {} | {} | {metrics_cell} | {metrics_ratio} |",
                spread(rss, 1),
                spread(rss_ratio, 2)
            );
        }
    }
}

//! Link throughput with `/perf/1.0.0` between two `swarmnode run` processes on loopback, over TCP+Noise+Yamux,
//! TCP+TLS+Yamux and QUIC, each as a share of its ceiling measured in the same run: `iperf3` over the same
//! loopback (TCP, one stream) for the link, and `openssl speed -evp chacha20-poly1305` (one core) for the cipher.
//! Each run takes a fresh pair of nodes per transport, the transports in rotating order, and `swarmnode perf` (the
//! CLI, through the first node's API) moves SIZE each way; the two nodes' peak resident memory (VmHWM) after it shows
//! that a transfer of any size runs in fixed buffers. Run through `scripts/bench-link.sh SIZE RUNS`.

mod host;
#[path = "../tests/support/process.rs"]
mod process;
#[path = "versus/report.rs"]
mod report;

use std::{
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use process::{BINARY, NodeProcess};
use report::Spread;
use serde_json::{Value, json};

struct Node {
    process: NodeProcess,
    _dir: tempfile::TempDir,
    api: String,
    peer_id: String,
    listening: Vec<String>,
}

/// A node with its API on a free port, listening on TCP and QUIC, offering `security`.
fn node(security: &str) -> Node {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (tx, lines) = mpsc::channel();
    let args = [
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1",
        "--security",
        security,
        "--api",
        "127.0.0.1:0",
    ];
    let process = NodeProcess::start(&[], dir.path(), &args, move |line| tx.send(line).is_ok());
    let api_line = process::wait_for(&lines, "the API address", Duration::from_secs(30), |l| {
        l["event"] == "api_listening"
    });
    let mut listening = Vec::new();
    while listening.len() < 2 {
        let line = process::wait_for(&lines, "both listen addresses", Duration::from_secs(30), |l| {
            l["event"] == "listening"
        });
        listening.push(line["address"].as_str().expect("an address").to_owned());
    }
    Node {
        api: api_line["address"].as_str().expect("an address").to_owned(),
        peer_id: process.peer_id.clone(),
        process,
        _dir: dir,
        listening,
    }
}

/// One perf run from a fresh node to another over `transport` ("tcp" or "quic" addresses), `security` on both:
/// (upload, download) in Gbit/s, the time to first byte in ms, and the larger peak RSS of the two nodes in MiB.
fn perf_run(security: &str, transport: &str, size: &str) -> (f64, f64, f64, f64) {
    let server = node(security);
    let client = node(security);
    let address = server
        .listening
        .iter()
        .find(|a| a.contains(transport))
        .unwrap_or_else(|| panic!("no {transport} address in {:?}", server.listening));
    let target = format!("{address}/p2p/{}", server.peer_id);
    let output = Command::new(BINARY)
        .args([
            "perf",
            &target,
            "--upload",
            size,
            "--download",
            size,
            "--api",
            &client.api,
            "--json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("swarmnode perf runs");
    assert!(
        output.status.success(),
        "swarmnode perf failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let gbit = |field: &str| report[field].as_f64().unwrap_or(f64::NAN) / 1e9;
    let peak_kib = [&server, &client]
        .iter()
        .map(|n| host::status_kib(n.process.child.id(), "VmHWM:"))
        .max()
        .unwrap_or(0);
    (
        gbit("upload_bits_per_second"),
        gbit("download_bits_per_second"),
        report["time_to_first_byte_ms"].as_f64().unwrap_or(f64::NAN),
        peak_kib as f64 / 1024.0,
    )
}

/// iperf3 over loopback, one TCP stream for `seconds`: Gbit/s received.
fn iperf3(seconds: u32) -> f64 {
    let port = host::free_port().to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 runs (apt-get install iperf3)");
    let mut report = None;
    for _ in 0..50 {
        let output = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port, "-t", &seconds.to_string(), "-J"])
            .output()
            .expect("iperf3 runs");
        if output.status.success() {
            report = serde_json::from_slice::<Value>(&output.stdout).ok();
            break;
        }
        eprintln!(
            "iperf3: {}",
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find(|l| l.contains("error"))
                .unwrap_or("failed")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    report
        .and_then(|r| r["end"]["sum_received"]["bits_per_second"].as_f64())
        .map_or(f64::NAN, |b| b / 1e9)
}

/// `openssl speed -evp chacha20-poly1305` on 16 KiB blocks, one core: Gbit/s.
fn cipher_ceiling(seconds: u32) -> f64 {
    let output = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "chacha20-poly1305",
            "-bytes",
            "16384",
            "-seconds",
            &seconds.to_string(),
            "-mr",
        ])
        .output()
        .expect("openssl runs");
    // Machine-readable: `+F:N:ChaCha20-Poly1305:BYTES_PER_SECOND`.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("+F:")?.rsplit(':').next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |bytes_per_second| bytes_per_second * 8.0 / 1e9)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [size, runs] = &args[..] else {
        panic!("usage: link SIZE RUNS (e.g. 1GiB 3)")
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let quick = size.ends_with("MiB") || size.ends_with("KiB");
    let ceiling_seconds = if quick { 1 } else { 3 };
    let transports = [
        ("TCP+Noise+Yamux", "noise", "tcp"),
        ("TCP+TLS+Yamux", "tls", "tcp"),
        ("QUIC v1", "tls", "quic"),
    ];
    let mut figures: Vec<[Vec<f64>; 4]> = vec![Default::default(); transports.len()];
    let (mut link, mut cipher) = (Vec::new(), Vec::new());
    for run in 0..runs {
        link.push(iperf3(ceiling_seconds));
        cipher.push(cipher_ceiling(ceiling_seconds));
        for offset in 0..transports.len() {
            let which = (run + offset) % transports.len();
            let (name, security, transport) = transports[which];
            let (up, down, first_byte, peak) = perf_run(security, transport, size);
            eprintln!(
                "run {run} {name}: upload {up:.2} Gbit/s, download {down:.2} Gbit/s, first byte {first_byte:.1} ms, peak RSS {peak:.1} MiB"
            );
            for (values, value) in figures[which].iter_mut().zip([up, down, first_byte, peak]) {
                values.push(value);
            }
        }
        eprintln!(
            "run {run} ceilings: iperf3 {:.1} Gbit/s, chacha20-poly1305 {:.1} Gbit/s",
            link[run], cipher[run]
        );
    }
    let (link_spread, cipher_spread) = (Spread::of(&link), Spread::of(&cipher));
    println!(
        "| ceiling | iperf3 TCP loopback {} Gbit/s | chacha20-poly1305 one core {} Gbit/s |",
        link_spread.text(1),
        cipher_spread.text(1)
    );
    let mut rows = serde_json::Map::new();
    for (i, (name, _, _)) in transports.iter().enumerate() {
        let [up, down, first, peak] = &figures[i];
        let share = |values: &[f64], ceiling: &[f64]| {
            Spread::of(&values.iter().zip(ceiling).map(|(v, c)| v / c).collect::<Vec<_>>())
        };
        println!(
            "| {name} | {} | {} | {} ms | {:.0} % | {:.0} % | {} MiB |",
            Spread::of(up).text(2),
            Spread::of(down).text(2),
            Spread::of(first).text(1),
            share(down, &link).median * 100.0,
            share(down, &cipher).median * 100.0,
            Spread::of(peak).text(1)
        );
        rows.insert(
            (*name).into(),
            json!({
                "upload_gbit_s": Spread::of(up).json(),
                "download_gbit_s": Spread::of(down).json(),
                "first_byte_ms": Spread::of(first).json(),
                "peak_rss_mib": Spread::of(peak).json(),
                "download_share_of_iperf3": share(down, &link).json(),
                "download_share_of_cipher": share(down, &cipher).json(),
                "runs": {"upload": up, "download": down, "first_byte_ms": first, "peak_rss_mib": peak},
            }),
        );
    }
    let result = json!({
        "size": size,
        "runs": runs,
        "ceilings": {"iperf3_gbit_s": link_spread.json(), "chacha20_poly1305_gbit_s": cipher_spread.json(), "runs": {"iperf3": link, "cipher": cipher}},
        "transports": rows,
    });
    let out = std::env::var("VERSUS_OUT").unwrap_or_else(|_| "docs/benchmarks/link.json".into());
    report::write_json(&out, &result);
}

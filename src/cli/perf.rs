//! `swarmnode perf PEER|ADDR [--upload SIZE] [--download SIZE]`: one perf run from the running node to a peer, asked
//! of its API (`POST /v1/perf`), printed as totals, throughput and time to first byte, or with `--json` as the API's
//! report.

use std::fmt::Write as _;

use super::{
    ClientArgs,
    client::{Answer, ApiClient, print},
};
use crate::{
    api::perf::{ByteCount, PerfBody},
    node::PerfReport,
};

/// Runs the perf command.
pub async fn run(client: &ClientArgs, peer: String, upload: u64, download: u64) -> anyhow::Result<()> {
    let body = PerfBody {
        peer,
        upload: Some(ByteCount::Bytes(upload)),
        download: Some(ByteCount::Bytes(download)),
    };
    let report: Answer<PerfReport> = ApiClient::new(client)?.post("/v1/perf", &body).await?;
    print(client, &report, report_text)
}

/// The report for a person: each direction's bytes, time and throughput, then the time to the first byte.
fn report_text(report: &PerfReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "peer             {}", report.peer);
    let directions = [
        (
            "upload",
            report.upload_bytes,
            report.upload_seconds,
            report.upload_bits_per_second,
        ),
        (
            "download",
            report.download_bytes,
            report.download_seconds,
            report.download_bits_per_second,
        ),
    ];
    for (name, bytes, seconds, bits_per_second) in directions {
        let _ = writeln!(
            out,
            "{name:<16} {} in {seconds:.3} s: {}",
            mebibytes(bytes),
            throughput(bits_per_second)
        );
    }
    let first_byte = report
        .time_to_first_byte_ms
        .map_or("-".to_owned(), |ms| format!("{ms:.2} ms"));
    let _ = writeln!(out, "first byte after {first_byte}");
    out
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Gbit/s (decimal, as links are rated) with MiB/s beside it.
fn throughput(bits_per_second: f64) -> String {
    format!(
        "{:.2} Gbit/s ({:.1} MiB/s)",
        bits_per_second / 1e9,
        bits_per_second / 8.0 / f64::from(1 << 20)
    )
}

#[cfg(test)]
mod tests {
    use libp2p::PeerId;

    use super::*;

    #[test]
    fn the_report_shows_totals_throughput_and_first_byte() {
        let peer = PeerId::random();
        let report = PerfReport {
            peer,
            upload_bytes: 1 << 30,
            download_bytes: 0,
            upload_seconds: 0.5,
            download_seconds: 0.0,
            time_to_first_byte_ms: None,
            upload_bits_per_second: 8.0 * f64::from(1 << 30) * 2.0,
            download_bits_per_second: 0.0,
        };
        let text = report_text(&report);
        assert!(text.contains(&peer.to_string()), "{text}");
        assert!(
            text.contains("upload           1024.0 MiB in 0.500 s: 17.18 Gbit/s (2048.0 MiB/s)"),
            "{text}"
        );
        assert!(
            text.contains("download         0.0 MiB in 0.000 s: 0.00 Gbit/s"),
            "{text}"
        );
        assert!(text.contains("first byte after -"), "{text}");
    }
}

//! Catch-up: node A alone is loaded with KEYS keys of 100-byte values (`k/000123`, at most 64 puts in flight, the
//! load rate reported too); then, RUNS times, a fresh node B dials A and the time from the dial until B's summary
//! counts KEYS keys is taken, with what B received: `swarmnode_state_sync_bytes_total{direction="received"}` (the
//! changes' own size as the node counts it: key, value and a fixed overhead each) and libp2p's inbound bandwidth
//! counter (every byte on B's connections, every protocol). The in-run reference is the raw data itself,
//! Σ (key length + value length): bytes ÷ raw is what the protocol and its framing cost.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{Node, show, value_of};

const SIZE: usize = 100;
const LOADERS: usize = 64;
/// How often B's summary is read.
const POLL: Duration = Duration::from_millis(20);
/// Longest a catch-up may take before the run is given up.
const DEADLINE: Duration = Duration::from_secs(300);

pub async fn run(keys: usize, runs: usize) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let a = Node::start(root.path(), |_| {}).await;
    let value = value_of("value", SIZE);
    let key = |i: usize| format!("k/{i:06}");
    let raw: usize = (0..keys).map(|i| key(i).len() + SIZE).sum();

    // Loaded in tenths, each one's rate and mean commit time kept: how the write path scales with the map's size.
    let started = Instant::now();
    let mut tenths = Vec::new();
    let step = keys.div_ceil(10);
    for first in (0..keys).step_by(step) {
        let before = a.metrics();
        let began = Instant::now();
        let last = (first + step).min(keys);
        futures::stream::iter(first..last)
            .map(|i| {
                let (handle, value, key) = (a.handle.clone(), value.clone(), key(i));
                async move { handle.state_put(&key, value, None).await.map(|_| ()) }
            })
            .buffer_unordered(LOADERS)
            .for_each(|result| async move { result.expect("a load put") })
            .await;
        let after = a.metrics();
        let commits = (after.commits - before.commits).max(1) as f64;
        tenths.push((
            (last - first) as f64 / began.elapsed().as_secs_f64(),
            (after.commit_seconds_sum - before.commit_seconds_sum) * 1e3 / commits,
        ));
    }
    let load = started.elapsed();
    let summary = a.handle.state_summary().await.expect("a summary");
    assert_eq!(summary.keys, keys, "A holds every key it was given");
    let commits = a.metrics();
    let trend: Vec<String> = tenths
        .iter()
        .map(|(rate, ms)| format!("{rate:.0}/s ({ms:.1} ms)"))
        .collect();
    eprintln!(
        "loaded {keys} keys in {:.1} s; by tenths: {}",
        load.as_secs_f64(),
        trend.join(", ")
    );

    let mut seconds = Vec::new();
    let mut rates = Vec::new();
    let mut sync_ratio = Vec::new();
    let mut wire_ratio = Vec::new();
    let mut rows = Vec::new();
    for run in 1..=runs {
        let b = Node::start(root.path(), |_| {}).await;
        let before = b.metrics();
        let started = Instant::now();
        b.dial(&a).await;
        loop {
            let held = b.handle.state_summary().await.expect("a summary").keys;
            if held >= keys {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "run {run}: B holds {held} of {keys} keys after {DEADLINE:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        let took = started.elapsed();
        let after = b.metrics();
        let synced = after.sync_received - before.sync_received;
        let wire = after.libp2p_in - before.libp2p_in;
        seconds.push(took.as_secs_f64());
        rates.push(keys as f64 / took.as_secs_f64());
        sync_ratio.push(synced as f64 / raw as f64);
        wire_ratio.push(wire as f64 / raw as f64);
        rows.push(format!(
            "| {keys} | {run} | {:.2} | {:.0} | {raw} | {synced} | {:.2} | {wire} | {:.2} |",
            took.as_secs_f64(),
            keys as f64 / took.as_secs_f64(),
            synced as f64 / raw as f64,
            wire as f64 / raw as f64,
        ));
        eprintln!("run {run}/{runs}: {:.2} s", took.as_secs_f64());
        b.stop().await;
    }
    let (first, last) = (tenths[0], tenths[tenths.len() - 1]);
    println!(
        "load: {keys} puts of {SIZE} B with {LOADERS} in flight in {:.1} s: {:.0} puts/s, {:.1} writes per commit, \
         {:.2} ms per commit; first tenth {:.0} puts/s ({:.2} ms per commit), last tenth {:.0} puts/s ({:.2} ms)",
        load.as_secs_f64(),
        keys as f64 / load.as_secs_f64(),
        commits.commit_writes_sum / commits.commits.max(1) as f64,
        commits.commit_seconds_sum * 1e3 / commits.commits.max(1) as f64,
        first.0,
        first.1,
        last.0,
        last.1,
    );
    println!();
    println!(
        "| keys | run | catch-up s | keys/s | raw bytes (Σ key + value) | sync bytes received | ÷ raw | libp2p bytes in | ÷ raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "| {keys} | min / median / max of {runs} | {} | {} | {raw} | — | {} | — | {} |",
        show(&seconds, 2),
        show(&rates, 0),
        show(&sync_ratio, 2),
        show(&wire_ratio, 2),
    );
    a.stop().await;
}

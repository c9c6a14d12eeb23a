//! Routing benchmark: lookups per second of `policy::route::owners` (weighted rendezvous hashing, every member scored
//! for every key) over MEMBERS members, for the single owner and for three owners, against the classic alternative
//! in the same run: a consistent-hash ring with VIRTUAL_NODES points per member (a sorted `Vec<(u64, usize)>` and a
//! binary search, the next distinct members clockwise for n > 1), built here only. Both hash with xxh3 and look up
//! the same keys; the figures are one thread's, each measured for MEASURE, the two interleaved and in alternating
//! order from run to run, so a busy moment of the machine falls on both. Reports min / median / max over the runs,
//! with the ring's rate over rendezvous's in each run.
//!
//! Run through `scripts/bench-route.sh RUNS` (release build).

mod stats;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use libp2p::identity::Keypair;
use rand::{Rng, SeedableRng, rngs::StdRng};
use stats::percentile;
use swarmnode::policy::route::{Candidate, owners};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

const MEMBERS: usize = 1_000;
/// Points per member on the ring: the usual order of magnitude, which keeps each member's share within about ±10 %.
const VIRTUAL_NODES: usize = 100;
const KEYS: usize = 4_096;
/// How long each figure is measured in each run.
const MEASURE: Duration = Duration::from_millis(500);
/// Lookups between two looks at the clock.
const BATCH: usize = 64;

/// The baseline: each member at VIRTUAL_NODES points of a 64-bit circle; a key belongs to the first points at or
/// after its hash.
struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn new(peers: &[Vec<u8>]) -> Self {
        let mut points: Vec<(u64, usize)> = peers
            .iter()
            .enumerate()
            .flat_map(|(member, peer)| {
                (0..VIRTUAL_NODES as u32).map(move |point| (xxh3_64_with_seed(peer, u64::from(point)), member))
            })
            .collect();
        points.sort_unstable();
        Ring { points }
    }

    /// The `n` distinct members clockwise from `key`'s hash, into `found`.
    fn owners(&self, key: &[u8], n: usize, found: &mut Vec<usize>) {
        found.clear();
        let start = self.points.partition_point(|&(point, _)| point < xxh3_64(key));
        let clockwise = self.points[start..].iter().chain(&self.points[..start]);
        for &(_, member) in clockwise {
            if !found.contains(&member) {
                found.push(member);
                if found.len() == n {
                    break;
                }
            }
        }
    }
}

/// Lookups per second of `lookup` over `keys`, cycling through them for MEASURE.
fn rate(keys: &[Vec<u8>], mut lookup: impl FnMut(&[u8]) -> usize) -> u64 {
    let started = Instant::now();
    let (mut done, mut sink) = (0usize, 0usize);
    for batch in keys.chunks(BATCH).cycle() {
        if started.elapsed() >= MEASURE {
            break;
        }
        for key in batch {
            sink = sink.wrapping_add(lookup(key));
        }
        done += batch.len();
    }
    black_box(sink);
    (done as f64 / started.elapsed().as_secs_f64()) as u64
}

/// min / median / max of `values`, formatted by `show`.
fn spread(mut values: Vec<u64>, show: impl Fn(u64) -> String) -> String {
    values.sort_unstable();
    let (first, last) = (
        values.first().copied().unwrap_or(0),
        values.last().copied().unwrap_or(0),
    );
    format!("{} / {} / {}", show(first), show(percentile(&values, 50.0)), show(last))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let runs: usize = match &args[..] {
        [runs, ..] => runs.parse().expect("usage: route RUNS"),
        [] => panic!("usage: route RUNS"),
    };
    let mut rng = StdRng::seed_from_u64(13);
    let peers: Vec<Vec<u8>> = (0..MEMBERS)
        .map(|_| {
            let key = Keypair::ed25519_from_bytes(rng.r#gen::<[u8; 32]>()).expect("32 bytes are an ed25519 secret");
            key.public().to_peer_id().to_bytes()
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = peers.iter().map(|peer| Candidate { peer, weight: 1.0 }).collect();
    let ring = Ring::new(&peers);
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("service/web/session-{i}").into_bytes())
        .collect();

    let mut found = Vec::with_capacity(3);
    let mut measure = |n: usize, ring_first: bool| -> (u64, u64) {
        let rendezvous = || rate(&keys, |key| owners(&candidates, key, n)[0]);
        let mut baseline = || {
            rate(&keys, |key| {
                ring.owners(key, n, &mut found);
                found[0]
            })
        };
        if ring_first {
            let ring_rate = baseline();
            (rendezvous(), ring_rate)
        } else {
            let rendezvous_rate = rendezvous();
            (rendezvous_rate, baseline())
        }
    };
    let mut results: Vec<[(u64, u64); 2]> = Vec::with_capacity(runs);
    for run in 0..runs {
        let ring_first = run % 2 == 1;
        let figures = [measure(1, ring_first), measure(3, ring_first)];
        eprintln!(
            "run {}/{runs}: (rendezvous, ring) lookups/s for n = 1 and 3: {figures:?}",
            run + 1
        );
        results.push(figures);
    }

    println!(
        "| owners | members | runs | rendezvous lookups/s | ring ({VIRTUAL_NODES} points a member) lookups/s | ring ÷ \
         rendezvous |"
    );
    println!("|---|---|---|---|---|---|");
    for (column, n) in [1, 3].into_iter().enumerate() {
        let rendezvous: Vec<u64> = results.iter().map(|r| r[column].0).collect();
        let ring: Vec<u64> = results.iter().map(|r| r[column].1).collect();
        // In hundredths, so that the percentile helper over integers serves the ratio too.
        let ratio: Vec<u64> = results
            .iter()
            .map(|r| (100.0 * r[column].1 as f64 / r[column].0.max(1) as f64).round() as u64)
            .collect();
        println!(
            "| {n} | {MEMBERS} | {runs} | {} | {} | {} |",
            spread(rendezvous, |v| v.to_string()),
            spread(ring, |v| v.to_string()),
            spread(ratio, |v| format!("{}.{:02}×", v / 100, v % 100)),
        );
    }
}

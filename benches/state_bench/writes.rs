//! Durable writes per second on one node alone, against the bare database in the same run: (a) the baseline, a loop
//! of `Store::commit` of one write each (`Map::write` then `take_dirty`) into a redb database of its own on the same
//! disk, on one blocking thread, so one fsync per write with nothing of swarmnode around it — and the same commits
//! each handed to a blocking task of its own from async code, which is how the node runs its commits; (b)
//! `state_put` calls one after the other; (c) puts from `CALLERS` callers at once, where group commit gathers the
//! writes that arrive during one commit into the next (the mean writes per commit comes from
//! `swarmnode_state_commit_writes`). The disk is shared with other work and its speed drifts within seconds, so each
//! round is cut into `SLICES` slices that run the four, in a rotated order, and each rate is a round's writes over
//! the time spent on them in all its slices.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::PeerId;
use swarmnode::{
    state::{
        Map, MapLimits,
        store::{STATE_FILE, Store},
    },
    wire::state::Actor,
};
use tempfile::TempDir;

use super::{Counters, Node, show, spread, value_of};

const SIZE: usize = 100;
const SLICES: usize = 10;
/// Writes per slice: bare and sequential, then concurrent.
const SEQUENTIAL: usize = 50;
const CALLERS: usize = 32;
const CONCURRENT: usize = 200;

/// The bare baseline's database and map, moved to a blocking thread for each slice.
struct Bare {
    store: Store,
    map: Map,
    written: u64,
    _dir: TempDir,
}

impl Bare {
    fn open(root: &std::path::Path) -> Bare {
        let dir = tempfile::tempdir_in(root).expect("a directory for the bare database");
        let (store, loaded) = Store::open(&dir.path().join(STATE_FILE)).expect("a bare database");
        let actor = loaded.actor.unwrap_or(Actor([1; 16]));
        let map = Map::new(actor, PeerId::random(), MapLimits::default());
        Bare {
            store,
            map,
            written: 0,
            _dir: dir,
        }
    }

    /// One write in a commit of its own; the time inside `Store::commit`.
    fn one(&mut self, value: &bytes::Bytes) -> Duration {
        self.written += 1;
        let key = format!("bare/{:06}", self.written);
        self.map
            .write(&key, Some(value.clone()), self.written, None)
            .expect("a bare write");
        self.store.commit(&self.map.take_dirty()).expect("a bare commit")
    }

    /// `SEQUENTIAL` commits of one write each; the time they took, and the time inside `Store::commit`.
    fn slice(&mut self, value: &bytes::Bytes) -> (Duration, Duration) {
        let started = Instant::now();
        let committing = (0..SEQUENTIAL).map(|_| self.one(value)).sum();
        (started.elapsed(), committing)
    }
}

/// One round's time spent per kind, and the node's commit counters over its concurrent slices.
#[derive(Default)]
struct Round {
    bare: Duration,
    bare_committing: Duration,
    /// The same commits, each handed to a blocking task of its own from async code, as the node hands its commits.
    handed: Duration,
    handed_committing: Duration,
    sequential: Duration,
    sequential_commits: (u64, f64),
    concurrent: Duration,
    concurrent_commits: (u64, f64, f64),
}

/// Commits and seconds spent committing between two readings; and the writes they held.
fn delta(before: &Counters, after: &Counters) -> (u64, f64, f64) {
    (
        after.commits - before.commits,
        after.commit_seconds_sum - before.commit_seconds_sum,
        after.commit_writes_sum - before.commit_writes_sum,
    )
}

pub async fn run(rounds: usize) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let node = Node::start(root.path(), |_| {}).await;
    let value = value_of("node", SIZE);
    let mut measured: Vec<Round> = Vec::new();
    let mut written = 0usize;
    for round in 0..rounds {
        let mut r = Round::default();
        let mut bare = Some(Bare::open(root.path()));
        let mut handed = Some(Bare::open(root.path()));
        for slice in 0..SLICES {
            for step in 0..4 {
                match (round + slice + step) % 4 {
                    0 => {
                        let (mut b, value) = (bare.take().expect("the bare database"), value.clone());
                        let (b, (took, committing)) = tokio::task::spawn_blocking(move || {
                            let times = b.slice(&value);
                            (b, times)
                        })
                        .await
                        .expect("the bare loop");
                        bare = Some(b);
                        r.bare += took;
                        r.bare_committing += committing;
                    }
                    3 => {
                        let started = Instant::now();
                        for _ in 0..SEQUENTIAL {
                            let (mut b, value) = (handed.take().expect("the second bare database"), value.clone());
                            let (b, committing) = tokio::task::spawn_blocking(move || {
                                let committing = b.one(&value);
                                (b, committing)
                            })
                            .await
                            .expect("a bare commit");
                            handed = Some(b);
                            r.handed_committing += committing;
                        }
                        r.handed += started.elapsed();
                    }
                    1 => {
                        let before = node.metrics();
                        let started = Instant::now();
                        for _ in 0..SEQUENTIAL {
                            written += 1;
                            node.handle
                                .state_put(&format!("seq/{written:07}"), value.clone(), None)
                                .await
                                .expect("a sequential put");
                        }
                        r.sequential += started.elapsed();
                        let (commits, seconds, _) = delta(&before, &node.metrics());
                        r.sequential_commits.0 += commits;
                        r.sequential_commits.1 += seconds;
                    }
                    _ => {
                        let before = node.metrics();
                        let started = Instant::now();
                        let first = written;
                        written += CONCURRENT;
                        futures::stream::iter(first..written)
                            .map(|i| {
                                let (handle, value) = (node.handle.clone(), value.clone());
                                async move {
                                    handle
                                        .state_put(&format!("conc/{i:07}"), value, None)
                                        .await
                                        .expect("a concurrent put");
                                }
                            })
                            .buffer_unordered(CALLERS)
                            .for_each(|()| async {})
                            .await;
                        r.concurrent += started.elapsed();
                        let (commits, seconds, writes) = delta(&before, &node.metrics());
                        r.concurrent_commits.0 += commits;
                        r.concurrent_commits.1 += seconds;
                        r.concurrent_commits.2 += writes;
                    }
                }
            }
        }
        let rate = |writes: usize, took: Duration| (writes * SLICES) as f64 / took.as_secs_f64();
        eprintln!(
            "round {}/{rounds}: bare {:.0}/s (handed {:.0}/s), sequential {:.0}/s, {CALLERS} callers {:.0}/s ({:.1} writes per commit)",
            round + 1,
            rate(SEQUENTIAL, r.bare),
            rate(SEQUENTIAL, r.handed),
            rate(SEQUENTIAL, r.sequential),
            rate(CONCURRENT, r.concurrent),
            r.concurrent_commits.2 / r.concurrent_commits.0.max(1) as f64,
        );
        measured.push(r);
    }
    report(rounds, &measured);
    node.stop().await;
}

fn report(rounds: usize, measured: &[Round]) {
    let rates = |writes: usize, took: fn(&Round) -> Duration| -> Vec<f64> {
        measured
            .iter()
            .map(|r| (writes * SLICES) as f64 / took(r).as_secs_f64())
            .collect()
    };
    let bare = rates(SEQUENTIAL, |r| r.bare);
    let handed = rates(SEQUENTIAL, |r| r.handed);
    let sequential = rates(SEQUENTIAL, |r| r.sequential);
    let concurrent = rates(CONCURRENT, |r| r.concurrent);
    let ratios = |of: &[f64], to: &[f64]| -> String {
        let r: Vec<f64> = of.iter().zip(to).map(|(a, b)| a / b).collect();
        show(&r, 2)
    };
    println!(
        "| measure | rounds | writes a round | writes/s min / median / max | ÷ bare (same round) | ÷ bare handed (same \
         round) |"
    );
    println!("|---|---|---|---|---|---|");
    let rows: [(String, usize, &[f64]); 4] = [
        (
            "bare redb: `Store::commit` of one write, one thread (baseline)".into(),
            SEQUENTIAL,
            &bare,
        ),
        (
            "bare redb, each commit handed to a blocking task as the node does".into(),
            SEQUENTIAL,
            &handed,
        ),
        ("node: sequential `state_put`".into(), SEQUENTIAL, &sequential),
        (format!("node: {CALLERS} concurrent callers"), CONCURRENT, &concurrent),
    ];
    for (measure, writes, values) in rows {
        println!(
            "| {measure} | {rounds} | {} | {} | {} | {} |",
            writes * SLICES,
            show(values, 0),
            ratios(values, &bare),
            ratios(values, &handed),
        );
    }
    let per_commit: Vec<f64> = measured
        .iter()
        .map(|r| r.concurrent_commits.2 / r.concurrent_commits.0.max(1) as f64)
        .collect();
    let ms = |seconds: f64, commits: u64| seconds * 1e3 / commits.max(1) as f64;
    let bare_ms: Vec<f64> = measured
        .iter()
        .map(|r| ms(r.bare_committing.as_secs_f64(), (SEQUENTIAL * SLICES) as u64))
        .collect();
    let handed_ms: Vec<f64> = measured
        .iter()
        .map(|r| ms(r.handed_committing.as_secs_f64(), (SEQUENTIAL * SLICES) as u64))
        .collect();
    let sequential_ms: Vec<f64> = measured
        .iter()
        .map(|r| ms(r.sequential_commits.1, r.sequential_commits.0))
        .collect();
    let concurrent_ms: Vec<f64> = measured
        .iter()
        .map(|r| ms(r.concurrent_commits.1, r.concurrent_commits.0))
        .collect();
    let (min, median, max) = spread(&per_commit);
    println!();
    println!("mean writes per commit with {CALLERS} callers: {min:.1} / {median:.1} / {max:.1}");
    println!(
        "mean ms inside one `Store::commit`, min / median / max: bare {}; bare handed {}; node sequential {}; node \
         with {CALLERS} callers {}",
        show(&bare_ms, 2),
        show(&handed_ms, 2),
        show(&sequential_ms, 2),
        show(&concurrent_ms, 2),
    );
}

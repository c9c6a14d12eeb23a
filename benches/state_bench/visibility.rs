//! Visibility: how long a put takes to be seen on every other node of an N-node star (nodes 1..N dial node 0),
//! against a gossip publish of the same size in the same swarm — the path a delta takes, with nothing of the map
//! around it. Each sample does both, one after the other in alternating order, each from a random node: (a) publish
//! 100 bytes on the default user topic, timed from just before the call to each other node's `message` event;
//! (b) `state_put` of 100 bytes on a fresh key, timed from just before the call to each other node's remote
//! `state_changed` event for that key, and to the put's own answer (its commit). The sync interval is the default
//! (10 s), so a delivery later than `VIA_SYNC` came from anti-entropy, not from the delta.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use rand::Rng;
use swarmnode::{
    config::DEFAULT_TOPIC,
    node::{NodeError, PublishRequest},
};
use tokio::sync::mpsc;

use super::{Node, Seen, What, forward, percentile_ms, show, spread, value_of};

/// Envelope ids and keys of this mode start with it.
const PREFIX: &str = "vis/";
const SIZE: usize = 100;
/// A delivery later than this did not come with the delta.
const VIA_SYNC: Duration = Duration::from_secs(5);
/// Longest a sample waits for gossip (no anti-entropy behind it) and for a put (anti-entropy rounds are 10 s ± 20 %,
/// and a leaf's write may need two: to the hub, then from it).
const GOSSIP_DEADLINE: Duration = Duration::from_secs(15);
const STATE_DEADLINE: Duration = Duration::from_secs(30);
/// Longest the swarm may take to carry a first message and a first put from node 0 to every node.
const FORM_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between the warm-up and the first sample.
const SETTLE: Duration = Duration::from_secs(2);
/// Serf's simulator: 99.9 % of 100 nodes have an event after about this long.
const SERF_CONVERGENCE: Duration = Duration::from_millis(1600);

/// Deliveries seen so far, per thing published: node → when.
struct Deliveries {
    seen: mpsc::UnboundedReceiver<Seen>,
    at: HashMap<What, HashMap<usize, Instant>>,
}

impl Deliveries {
    /// Reads deliveries until `what` reached every node of `wanted` or `deadline` passed; returns when each did.
    async fn wait(&mut self, what: &What, wanted: &[usize], deadline: Instant) -> HashMap<usize, Instant> {
        let done = |at: &HashMap<What, HashMap<usize, Instant>>| {
            at.get(what)
                .is_some_and(|nodes| wanted.iter().all(|n| nodes.contains_key(n)))
        };
        while !done(&self.at) {
            match tokio::time::timeout_at(deadline.into(), self.seen.recv()).await {
                Ok(Some(seen)) => {
                    self.at
                        .entry(seen.what)
                        .or_default()
                        .entry(seen.node)
                        .or_insert(seen.at);
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.at.remove(what).unwrap_or_default()
    }
}

/// Latencies of one kind over every (node, sample) pair, and per sample the time until the last node.
#[derive(Default)]
struct Measured {
    each: Vec<Duration>,
    last: Vec<Duration>,
    missing: usize,
    via_sync: usize,
}

impl Measured {
    fn take(&mut self, started: Instant, got: &HashMap<usize, Instant>, expected: usize) {
        let mut latest = Duration::ZERO;
        for at in got.values() {
            let latency = at.saturating_duration_since(started);
            latest = latest.max(latency);
            if latency > VIA_SYNC {
                self.via_sync += 1;
            }
            self.each.push(latency);
        }
        self.missing += expected - got.len();
        if got.len() == expected {
            self.last.push(latest);
        }
    }
}

/// Publishes `id` from `node`; an error (no subscribed peer yet) is the caller's to judge.
async fn publish(node: &Node, id: &str) -> Result<(), NodeError> {
    let request = PublishRequest {
        topic: DEFAULT_TOPIC.to_owned(),
        payload: value_of(id, SIZE),
        content_type: None,
        id: Some(id.to_owned()),
    };
    node.handle.publish(request).await.map(|_| ())
}

pub async fn run(n: usize, samples: usize) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let began = Instant::now();
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(Node::start(root.path(), |_| {}).await);
    }
    let (sender, seen) = mpsc::unbounded_channel();
    let lagged = Arc::new(AtomicU64::new(0));
    for (index, node) in nodes.iter().enumerate() {
        forward(
            index,
            node.handle.subscribe_events(),
            PREFIX,
            sender.clone(),
            lagged.clone(),
        );
    }
    for node in &nodes[1..] {
        node.dial(&nodes[0]).await;
    }
    let dialled = began.elapsed();
    let mut deliveries = Deliveries {
        seen,
        at: HashMap::new(),
    };

    // Formed: a message and a put from node 0 reached every node; then one of each from every node did.
    let others = |from: usize| -> Vec<usize> { (0..n).filter(|&i| i != from).collect() };
    let deadline = Instant::now() + FORM_DEADLINE;
    let mut round = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the swarm did not form within {FORM_DEADLINE:?}"
        );
        let (id, key) = (format!("{PREFIX}warm/{round}"), format!("{PREFIX}warm/{round}"));
        // Refused until node 0 has heard a subscription: the next round tries again.
        let _ = publish(&nodes[0], &id).await;
        nodes[0]
            .handle
            .state_put(&key, value_of(&key, SIZE), None)
            .await
            .expect("a probe put");
        let until = Instant::now() + Duration::from_secs(1);
        let message = deliveries.wait(&What::Message(id), &others(0), until).await;
        let state = deliveries.wait(&What::State(key), &others(0), until).await;
        round += 1;
        if message.len() == n - 1 && state.len() == n - 1 {
            break;
        }
    }
    let mut all: Vec<What> = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let name = format!("{PREFIX}warm/from/{index}");
        publish(node, &name).await.expect("a warm-up publish");
        node.handle
            .state_put(&name, value_of(&name, SIZE), None)
            .await
            .expect("a probe put");
        all.extend([What::Message(name.clone()), What::State(name)]);
    }
    let until = Instant::now() + STATE_DEADLINE;
    let (mut short_messages, mut short_puts) = (0, 0);
    for (index, what) in all.iter().enumerate() {
        let short = n - 1 - deliveries.wait(what, &others(index / 2), until).await.len();
        match what {
            What::Message(_) => short_messages += short,
            What::State(_) => short_puts += short,
        }
    }
    // A formed mesh, quiet again after the warm-up traffic.
    tokio::time::sleep(SETTLE).await;
    eprintln!(
        "{n} nodes started and dialled in {:.1} s, formed in {:.1} s ({round} probe rounds from node 0; of one message \
         and one put from every node, {short_messages} message and {short_puts} put deliveries missing after \
         {STATE_DEADLINE:?})",
        dialled.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );

    let mut gossip = Measured::default();
    let mut state = Measured::default();
    let mut acks = Vec::with_capacity(samples);
    let mut rng = rand::thread_rng();
    for sample in 0..samples {
        for step in 0..2 {
            let from = rng.gen_range(0..n);
            let node = &nodes[from];
            if (sample + step) % 2 == 0 {
                let id = format!("{PREFIX}msg/{sample}");
                let started = Instant::now();
                publish(node, &id)
                    .await
                    .unwrap_or_else(|e| panic!("publishing {id}: {e}"));
                let got = deliveries
                    .wait(&What::Message(id), &others(from), started + GOSSIP_DEADLINE)
                    .await;
                gossip.take(started, &got, n - 1);
            } else {
                let key = format!("{PREFIX}key/{sample}");
                let started = Instant::now();
                node.handle
                    .state_put(&key, value_of(&key, SIZE), None)
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e}"));
                acks.push(started.elapsed());
                let got = deliveries
                    .wait(&What::State(key), &others(from), started + STATE_DEADLINE)
                    .await;
                state.take(started, &got, n - 1);
            }
        }
        eprintln!(
            "sample {}/{samples}: gossip last {:.1} ms, state last {:.1} ms",
            sample + 1,
            gossip.last.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            state.last.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        );
    }
    report(n, samples, &gossip, &state, &acks);
    println!(
        "events the benchmark fell behind on (not counted): {}",
        lagged.load(std::sync::atomic::Ordering::Relaxed)
    );
}

fn report(n: usize, samples: usize, gossip: &Measured, state: &Measured, acks: &[Duration]) {
    println!("| nodes | samples | measure | deliveries | p50 ms | p99 ms | max ms | after > 5 s | missing |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (measure, m) in [
        ("gossip publish → message (baseline)", gossip),
        ("state put → state_changed", state),
    ] {
        let max = m.each.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3);
        println!(
            "| {n} | {samples} | {measure} | {} | {:.2} | {:.2} | {max:.2} | {} | {} |",
            m.each.len(),
            percentile_ms(&m.each, 50.0),
            percentile_ms(&m.each, 99.0),
            m.via_sync,
            m.missing,
        );
    }
    let ack_max = acks.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "| {n} | {samples} | put acknowledged (its commit) | {} | {:.2} | {:.2} | {ack_max:.2} | — | — |",
        acks.len(),
        percentile_ms(acks, 50.0),
        percentile_ms(acks, 99.0),
    );
    println!();
    let ratio = |p: f64| percentile_ms(&state.each, p) / percentile_ms(&gossip.each, p).max(1e-3);
    println!(
        "N={n}: state ÷ gossip at p50 {:.2}×, at p99 {:.2}×; state p99 ÷ Serf's 99.9 % convergence at N=100 \
         (1.6 s) {:.4}×",
        ratio(50.0),
        ratio(99.0),
        percentile_ms(&state.each, 99.0) / SERF_CONVERGENCE.as_secs_f64() / 1e3,
    );
    let ms = |v: &[Duration]| -> Vec<f64> { v.iter().map(|d| d.as_secs_f64() * 1e3).collect() };
    if !gossip.last.is_empty() && !state.last.is_empty() {
        let (_, gossip_median, _) = spread(&ms(&gossip.last));
        println!(
            "N={n}: until the last node, min / median / max ms: gossip {} ({} samples), state {} ({} samples); \
             state median ÷ gossip median {:.2}×",
            show(&ms(&gossip.last), 2),
            gossip.last.len(),
            show(&ms(&state.last), 2),
            state.last.len(),
            spread(&ms(&state.last)).1 / gossip_median.max(1e-3),
        );
    }
}

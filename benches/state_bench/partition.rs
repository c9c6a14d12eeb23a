//! Partition and heal: four nodes, all connected, split into {0, 1} and {2, 3} by `disconnect(peer, BAN)` on both
//! ends of every cross pair (the ban makes both sides refuse the other). During the ban each side writes
//! `PER_SIDE` distinct keys (half from each of its nodes) and the `SHARED` keys that both sides write; after it,
//! the cross pairs are redialled and the four `state_list` outputs are compared every `POLL` until identical. The
//! reference is the sync interval (`SYNC_INTERVAL`, set for this mode): a new connection pulls at once, so healing
//! should take far less than one round. Then every acknowledged write is checked: each distinct key holds its
//! acknowledged version, each shared key the later of its two writes.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt;

use super::{Node, show, value_of};

const SYNC_INTERVAL: Duration = Duration::from_secs(2);
const BAN: Duration = Duration::from_secs(30);
const PER_SIDE: usize = 1000;
const SHARED: usize = 50;
/// Puts in flight per node while partitioned.
const WRITERS: usize = 8;
const POLL: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(120);
const SIDES: [[usize; 2]; 2] = [[0, 1], [2, 3]];

/// One acknowledged write: key, value, version, origin.
type Ack = (String, String, u64, String);

async fn cross_links(nodes: &[Node]) -> usize {
    let mut links = 0;
    for (side, other) in [(SIDES[0], SIDES[1]), (SIDES[1], SIDES[0])] {
        for a in side {
            let status = nodes[a].handle.status().await.expect("a status");
            links += other
                .iter()
                .filter(|b| status.connected_peers.contains(&nodes[**b].peer))
                .count();
        }
    }
    links
}

/// `writes` puts on `node`, `WRITERS` in flight; their acknowledgments.
async fn write_all(node: &Node, writes: Vec<String>) -> Vec<Ack> {
    futures::stream::iter(writes)
        .map(|key| {
            let handle = node.handle.clone();
            async move {
                let value = value_of(&format!("{key}@{}", handle.peer_id()), 100);
                let ack = handle
                    .state_put(&key, value.clone(), None)
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e}"));
                let text = String::from_utf8(value.to_vec()).expect("a text value");
                (key, text, ack.version.parse().expect("a decimal version"), ack.origin)
            }
        })
        .buffer_unordered(WRITERS)
        .collect()
        .await
}

/// One partition and heal: seconds from the redial to identical maps, seconds until every cross dial succeeded,
/// seconds one reading of the four maps takes, and the acknowledged writes missing or not the winner.
async fn once(run: usize) -> (f64, f64, f64, usize) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(Node::start(root.path(), |c| c.state.sync_interval = SYNC_INTERVAL).await);
    }
    for i in 0..4 {
        for j in i + 1..4 {
            nodes[i].dial(&nodes[j]).await;
        }
    }
    let ready: Vec<String> = (0..4).map(|i| format!("p/ready/{i}")).collect();
    for (node, key) in nodes.iter().zip(&ready) {
        node.handle
            .state_put(key, value_of(key, 100), None)
            .await
            .expect("a probe put");
    }
    let deadline = Instant::now() + DEADLINE;
    while futures::future::join_all(nodes.iter().map(|n| n.handle.state_summary()))
        .await
        .into_iter()
        .any(|s| s.expect("a summary").keys < ready.len())
    {
        assert!(
            Instant::now() < deadline,
            "run {run}: the probes did not reach every node"
        );
        tokio::time::sleep(POLL).await;
    }

    // Split: both ends of each cross pair at once, so each bans the other before the connection closes.
    let mut refused = 0;
    for a in SIDES[0] {
        for b in SIDES[1] {
            let (x, y) = futures::join!(
                nodes[a].handle.disconnect(nodes[b].peer, BAN),
                nodes[b].handle.disconnect(nodes[a].peer, BAN)
            );
            refused += usize::from(x.is_err()) + usize::from(y.is_err());
        }
    }
    let banned = Instant::now();
    while cross_links(&nodes).await > 0 {
        assert!(banned.elapsed() < BAN / 2, "run {run}: cross connections remain");
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "run {run}: partitioned in {:.2} s ({refused} of 8 disconnects answered `not connected`)",
        banned.elapsed().as_secs_f64()
    );

    // Writes on both sides: the distinct keys half from each node, the shared keys from the first node of each.
    let mut jobs = Vec::new();
    for (s, side) in SIDES.iter().enumerate() {
        for (k, &index) in side.iter().enumerate() {
            let mut keys: Vec<String> = (0..PER_SIDE / 2).map(|i| format!("p/side{s}/node{k}/{i:04}")).collect();
            if k == 0 {
                keys.extend((0..SHARED).map(|j| format!("p/shared/{j:02}")));
            }
            jobs.push(write_all(&nodes[index], keys));
        }
    }
    let acks: Vec<Ack> = futures::future::join_all(jobs).await.into_iter().flatten().collect();
    let written = banned.elapsed();
    assert!(written < BAN, "run {run}: the writes took longer than the ban");
    eprintln!(
        "run {run}: {} writes acknowledged in {:.1} s",
        acks.len(),
        written.as_secs_f64()
    );

    // Heal after the ban: redial each cross pair from the first side until it connects.
    tokio::time::sleep((BAN + Duration::from_millis(200)).saturating_sub(banned.elapsed())).await;
    // Nothing crossed during the ban: each node holds the probes, its own side's keys and the shared ones.
    for (index, node) in nodes.iter().enumerate() {
        let keys = node.handle.state_summary().await.expect("a summary").keys;
        assert_eq!(
            keys,
            ready.len() + PER_SIDE + SHARED,
            "run {run}: node {index} before the heal"
        );
    }
    let healing = Instant::now();
    let mut dials = Vec::new();
    for a in SIDES[0] {
        for b in SIDES[1] {
            let (from, to) = (&nodes[a], &nodes[b]);
            dials.push(async move {
                while from.handle.dial(to.address.clone()).await.is_err() {
                    assert!(
                        healing.elapsed() < DEADLINE,
                        "run {run}: a cross pair never reconnected"
                    );
                    tokio::time::sleep(POLL).await;
                }
            });
        }
    }
    futures::future::join_all(dials).await;
    let dialled = healing.elapsed();
    let map = loop {
        let maps = futures::future::join_all(nodes.iter().map(Node::everything)).await;
        if maps.iter().all(|m| *m == maps[0]) {
            break maps.into_iter().next().expect("four maps");
        }
        assert!(healing.elapsed() < DEADLINE, "run {run}: the maps did not converge");
        tokio::time::sleep(POLL).await;
    };
    let healed = healing.elapsed();
    // The resolution of that figure: one more reading and comparison of the four maps, now identical.
    let reading = Instant::now();
    let again = futures::future::join_all(nodes.iter().map(Node::everything)).await;
    assert!(
        again.iter().all(|m| *m == map),
        "run {run}: the maps changed after converging"
    );
    let reading = reading.elapsed();

    // Every acknowledged write: a distinct key holds its version, a shared key the later of its two.
    let mut winners: HashMap<&str, &Ack> = HashMap::new();
    for ack in &acks {
        let slot = winners.entry(ack.0.as_str()).or_insert(ack);
        if (ack.2, &ack.3) > (slot.2, &slot.3) {
            *slot = ack;
        }
    }
    let held: HashMap<&str, (&Option<String>, &String)> =
        map.iter().map(|(k, v, ver)| (k.as_str(), (v, ver))).collect();
    let wrong = winners
        .values()
        .filter(|(key, value, version, _)| {
            held.get(key.as_str()) != Some(&(&Some(value.clone()), &version.to_string()))
        })
        .count();
    eprintln!(
        "run {run}: dials up after {:.2} s, maps identical {:.2} s after the redial ({} keys; {wrong} acknowledged \
         writes missing or not the winner)",
        dialled.as_secs_f64(),
        healed.as_secs_f64(),
        map.len()
    );
    assert_eq!(
        map.len(),
        ready.len() + 2 * PER_SIDE + SHARED,
        "run {run}: the healed map's size"
    );
    for node in nodes {
        node.stop().await;
    }
    (
        healed.as_secs_f64(),
        dialled.as_secs_f64(),
        reading.as_secs_f64(),
        wrong,
    )
}

pub async fn run(runs: usize) {
    let (mut healed, mut dialled, mut readings, mut wrong) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for run in 1..=runs {
        let (h, d, r, w) = once(run).await;
        healed.push(h);
        dialled.push(d);
        readings.push(r * 1e3);
        wrong += w;
    }
    let ratio: Vec<f64> = healed.iter().map(|h| h / SYNC_INTERVAL.as_secs_f64()).collect();
    println!(
        "| runs | sync interval | writes per side (+ shared keys) | ban s | redial → all dials up s | redial → 4 maps \
         identical s | ÷ sync interval | acknowledged writes lost or not the winner |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {runs} | {} s | {PER_SIDE} (+ {SHARED} on both) | {} | {} | {} | {} | {wrong} |",
        SYNC_INTERVAL.as_secs(),
        BAN.as_secs(),
        show(&dialled, 2),
        show(&healed, 2),
        show(&ratio, 2),
    );
    println!();
    println!(
        "polled every {} ms; one reading and comparison of the four maps takes {} ms (min / median / max)",
        POLL.as_millis(),
        show(&readings, 1)
    );
}

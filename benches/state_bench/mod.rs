//! What every mode of the state benchmark shares: starting an in-process node on loopback (as
//! tests/support/mod.rs does, with the per-address limits raised, since every node is on 127.0.0.1), forwarding the
//! events a mode times with the moment they were read, reading counters from a node's Prometheus text, listing a
//! whole map, and the min / median / max and percentile arithmetic of the reports.

pub mod catchup;
pub mod partition;
pub mod visibility;
pub mod writes;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId};
use swarmnode::{
    config::NodeConfig,
    node::{self, EventKind, EventReceiver, NodeHandle, RecvError, RunningNode, StatePage},
};
use tempfile::TempDir;
use tokio::sync::mpsc;

/// Longest a node may take to start and report its listen address.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// `max_pending_per_ip` and `max_established_per_ip`: one address holds all of a node's connections here.
const LOOPBACK_PER_IP_LIMIT: u32 = 1024;

/// One running node with its data directory (removed when it is dropped).
pub struct Node {
    running: Option<RunningNode>,
    pub handle: NodeHandle,
    pub peer: PeerId,
    /// TCP listen address with `/p2p/<id>`.
    pub address: Multiaddr,
    _dir: TempDir,
}

impl Node {
    /// Starts a node with its data directory under `root`, the loopback settings, and `adjust`.
    pub async fn start(root: &Path, adjust: impl FnOnce(&mut NodeConfig)) -> Node {
        let dir = tempfile::tempdir_in(root).expect("a data directory");
        let mut config = NodeConfig::with_data_dir(dir.path().to_path_buf());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a listen address")];
        config.mdns = false;
        config.max_pending_per_ip = LOOPBACK_PER_IP_LIMIT;
        config.max_established_per_ip = LOOPBACK_PER_IP_LIMIT;
        adjust(&mut config);
        let mut running = node::spawn(config).await.expect("the node starts");
        let handle = running.handle.clone();
        let peer = handle.peer_id();
        let address = tokio::time::timeout(START_DEADLINE, async {
            loop {
                match running.events.recv().await {
                    Ok(event) => {
                        if let EventKind::Listening { address } = event.kind {
                            break address;
                        }
                    }
                    Err(e) => panic!("node {peer} before listening: {e}"),
                }
            }
        })
        .await
        .expect("the node listens within a minute");
        let address = address.with_p2p(peer).expect("an address without a peer id");
        Node {
            running: Some(running),
            handle,
            peer,
            address,
            _dir: dir,
        }
    }

    /// Stops the node and waits until it has (its last commit is on disk).
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// Connects to `other`.
    pub async fn dial(&self, other: &Node) {
        self.handle
            .dial(other.address.clone())
            .await
            .unwrap_or_else(|e| panic!("{} dialling {}: {e}", self.peer, other.peer));
    }

    /// Its metrics as Prometheus text.
    pub fn metrics(&self) -> Counters {
        Counters::of(&self.handle.metrics().encode())
    }

    /// Every live entry of its map as (key, value, version), in key order.
    pub async fn everything(&self) -> Vec<(String, Option<String>, String)> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let StatePage { entries, next_cursor } = self
                .handle
                .state_list("", cursor.as_deref(), node::MAX_PAGE)
                .await
                .expect("a listing");
            all.extend(entries.into_iter().map(|e| (e.key, e.value, e.version)));
            match next_cursor {
                Some(next) => cursor = Some(next),
                None => return all,
            }
        }
    }
}

/// The counters a mode reads from a node's `/metrics` text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// `swarmnode_state_sync_bytes_total{direction="received"}`, every kind.
    pub sync_received: u64,
    pub sync_sent: u64,
    /// libp2p's bandwidth counters, every protocol.
    pub libp2p_in: u64,
    pub libp2p_out: u64,
    /// `swarmnode_state_commit_writes` histogram: writes over commits.
    pub commit_writes_sum: f64,
    pub commits: u64,
    /// `swarmnode_state_commit_seconds` histogram: seconds over commits.
    pub commit_seconds_sum: f64,
}

impl Counters {
    pub fn of(text: &str) -> Self {
        let mut counters = Counters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let inbound = series.contains("direction=\"Inbound\"");
            if series.starts_with("swarmnode_state_sync_bytes_total{") {
                if series.contains("direction=\"received\"") {
                    counters.sync_received += value as u64;
                } else {
                    counters.sync_sent += value as u64;
                }
            } else if series.contains("bandwidth_bytes_total{") {
                if inbound {
                    counters.libp2p_in += value as u64;
                } else {
                    counters.libp2p_out += value as u64;
                }
            } else if series == "swarmnode_state_commit_writes_sum" {
                counters.commit_writes_sum = value;
            } else if series == "swarmnode_state_commit_writes_count" {
                counters.commits = value as u64;
            } else if series == "swarmnode_state_commit_seconds_sum" {
                counters.commit_seconds_sum = value;
            }
        }
        counters
    }
}

/// An event a mode times: a user message (by envelope id) or a remote state change (by key), on node `node`, read
/// at `at`.
#[derive(Debug)]
pub struct Seen {
    pub node: usize,
    pub what: What,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum What {
    Message(String),
    State(String),
}

/// Reads node `node`'s events for ever, forwarding messages whose envelope id and remote state changes whose key
/// starts with `prefix`; events it fell behind on are counted in `lagged`.
pub fn forward(
    node: usize,
    mut events: EventReceiver,
    prefix: &'static str,
    seen: mpsc::UnboundedSender<Seen>,
    lagged: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        loop {
            let what = match events.recv().await {
                Ok(event) => match event.kind {
                    EventKind::Message { id, .. } if id.starts_with(prefix) => What::Message(id),
                    EventKind::StateChanged { key, source, .. } if source == "remote" && key.starts_with(prefix) => {
                        What::State(key)
                    }
                    _ => continue,
                },
                Err(RecvError::Lagged(missed)) => {
                    lagged.fetch_add(missed, Ordering::Relaxed);
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let at = Instant::now();
            if seen.send(Seen { node, what, at }).is_err() {
                return;
            }
        }
    });
}

/// Min, median (nearest rank, the upper one of two) and max.
pub fn spread<T: PartialOrd + Copy>(values: &[T]) -> (T, T, T) {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    (sorted[0], sorted[sorted.len() / 2], sorted[sorted.len() - 1])
}

/// `min / median / max` with `precision` decimals.
pub fn show(values: &[f64], precision: usize) -> String {
    let (min, median, max) = spread(values);
    format!("{min:.precision$} / {median:.precision$} / {max:.precision$}")
}

/// The `p`th percentile (nearest rank) of durations, in ms.
pub fn percentile_ms(values: &[Duration], p: f64) -> f64 {
    let mut micros: Vec<u64> = values.iter().map(|d| d.as_micros() as u64).collect();
    micros.sort_unstable();
    crate::stats::percentile(&micros, p) as f64 / 1000.0
}

/// A value of `size` bytes that names `label` (text, so events show it plainly).
pub fn value_of(label: &str, size: usize) -> bytes::Bytes {
    let mut text = format!("{label}-");
    text.truncate(size);
    while text.len() < size {
        text.push('x');
    }
    bytes::Bytes::from(text)
}

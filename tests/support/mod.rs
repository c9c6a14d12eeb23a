//! Test support: in-process nodes on 127.0.0.1 with ephemeral ports and temporary data directories, and helpers that
//! wait for a condition with a generous deadline (never a fixed sleep: this machine is shared and noisy).

pub mod binary;
pub mod netns;
pub mod process;
pub mod raw_http;
pub mod raw_peer;
pub mod signal;

use std::{future::Future, time::Duration};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use swarmnode::{
    config::NodeConfig,
    node::{self, Event, EventKind, EventReceiver, NodeHandle, NodeStatus, RecvError, RunningNode},
};
use tempfile::TempDir;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A node under test, with its data directory (removed when the node is dropped).
pub struct TestNode {
    pub node: Option<RunningNode>,
    pub handle: NodeHandle,
    pub events: EventReceiver,
    pub peer_id: PeerId,
    /// TCP listen address with `/p2p/<id>`.
    pub tcp_address: Multiaddr,
    /// QUIC listen address with `/p2p/<id>`, when the node listens on QUIC.
    pub quic_address: Option<Multiaddr>,
    pub config: NodeConfig,
    pub dir: TempDir,
}

/// Loopback-only defaults for tests: TCP (and optionally QUIC) on port 0, no mDNS, a 1 s heartbeat.
pub fn test_config(dir: &TempDir) -> NodeConfig {
    let mut config = NodeConfig::with_data_dir(dir.path().to_path_buf());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.mdns = false;
    config.heartbeat = Duration::from_secs(1);
    config
}

impl TestNode {
    /// Starts a node with the test defaults changed by `adjust`.
    pub async fn start(adjust: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir);
        adjust(&mut config);
        TestNode::start_with(config, dir).await
    }

    /// Starts a node with exactly `config`, keeping `dir` alive for it.
    pub async fn start_with(config: NodeConfig, dir: TempDir) -> TestNode {
        let mut running = node::spawn(config.clone()).await.expect("node starts");
        let handle = running.handle.clone();
        let peer_id = handle.peer_id();
        let mut tcp_address = None;
        let mut quic_address = None;
        let wants_quic = config.listen.iter().any(|a| a.iter().any(|p| p == Protocol::QuicV1));
        while tcp_address.is_none() || (wants_quic && quic_address.is_none()) {
            let event = next_event(&mut running.events).await;
            if let EventKind::Listening { address } = event.kind {
                let address = address.with_p2p(peer_id).unwrap();
                if address.iter().any(|p| p == Protocol::QuicV1) {
                    quic_address = Some(address);
                } else {
                    tcp_address = Some(address);
                }
            }
        }
        // Keep the receiver that has seen everything since start; the node keeps a fresh one.
        let events = std::mem::replace(&mut running.events, handle.subscribe_events());
        TestNode {
            node: Some(running),
            handle,
            events,
            peer_id,
            tcp_address: tcp_address.unwrap(),
            quic_address,
            config,
            dir,
        }
    }

    pub async fn status(&self) -> NodeStatus {
        self.handle.status().await.expect("node is running")
    }

    /// Stops the node and waits until it has (connections closed, data directory unlocked).
    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }

    /// Waits for the next event matching `select`, returning what it extracts.
    pub async fn wait_for<T>(&mut self, what: &str, mut select: impl FnMut(&EventKind) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let event = tokio::time::timeout_at(deadline, next_event(&mut self.events))
                .await
                .unwrap_or_else(|_| panic!("{}: no {what} within {DEADLINE:?}", self.peer_id));
            if let Some(found) = select(&event.kind) {
                return found;
            }
        }
    }
}

async fn next_event(events: &mut EventReceiver) -> Event {
    match events.recv().await {
        Ok(event) => event,
        Err(RecvError::Lagged(n)) => panic!("test fell {n} events behind"),
        Err(RecvError::Closed) => panic!("node event channel closed"),
    }
}

/// Polls `check` until it returns true, failing the test with `what` after the deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node` knows at least `count` peers subscribed to `topic`.
pub async fn wait_for_subscribers(node: &TestNode, topic: &str, count: usize) {
    eventually(
        &format!("{count} subscribers of {topic} on {}", node.peer_id),
        || async { node.status().await.topics.get(topic).copied().unwrap_or(0) >= count },
    )
    .await;
}

//! A long-running node forgets peers that are gone: one that left (or was given up on) disappears from the peer table
//! and from every other table after `--forget-after`, so what the node holds follows the peers it knows now.

use std::time::Duration;

use crate::support::{TestNode, eventually};
use swarmnode::{node::EventKind, policy::liveness::PeerState};

/// The value of `swarmnode_table_entries{table="NAME"}` in the node's Prometheus text.
fn table_size(metrics: &str, table: &str) -> Option<i64> {
    let prefix = format!("swarmnode_table_entries{{table=\"{table}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn a_peer_that_left_is_forgotten_after_the_delay_with_its_discovery_record() {
    let mut watcher = TestNode::start(|c| c.liveness.forget_after = Duration::from_secs(1)).await;
    let watcher_address = watcher.tcp_address.clone();
    let mut leaver = TestNode::start(|c| c.bootstrap = vec![watcher_address]).await;
    let leaver_id = leaver.peer_id;
    watcher
        .wait_for("the leaver active", |kind| match kind {
            EventKind::PeerState { peer, to, .. } if *peer == leaver_id && *to == PeerState::Active => Some(()),
            _ => None,
        })
        .await;
    eventually(
        "identify reports the leaver: a discovery record, counted in the tables",
        || async {
            let peers = watcher.handle.peers().await.expect("running");
            let discovered = peers.iter().any(|p| p.peer == leaver_id && !p.sources.is_empty());
            let metrics = watcher.handle.metrics().encode();
            discovered && table_size(&metrics, "peers") == Some(1) && table_size(&metrics, "discoveries") == Some(1)
        },
    )
    .await;

    leaver.stop().await;
    watcher
        .wait_for("the leaver left", |kind| match kind {
            EventKind::PeerState { peer, to, .. } if *peer == leaver_id && *to == PeerState::Left => Some(()),
            _ => None,
        })
        .await;
    eventually("the leaver forgotten, with everything kept about it", || async {
        let peers = watcher.handle.peers().await.expect("running");
        let metrics = watcher.handle.metrics().encode();
        peers.is_empty()
            && table_size(&metrics, "peers") == Some(0)
            && table_size(&metrics, "discoveries") == Some(0)
            && table_size(&metrics, "identified") == Some(0)
            && table_size(&metrics, "directions") == Some(0)
    })
    .await;
    watcher.stop().await;
}

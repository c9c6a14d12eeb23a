//! Connection limits: a node at `--max-peers` refuses further connections, inbound and outbound, with a
//! `connection_refused` event, and keeps serving the peers it has.

use swarmnode::node::{Direction, EventKind, NodeError};

use crate::support::TestNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_new_connections_both_ways_and_keeps_its_peer() {
    let mut full = TestNode::start(|c| c.max_peers = 1).await;
    let member = TestNode::start(|c| c.bootstrap = vec![full.tcp_address.clone()]).await;
    let member_id = member.peer_id;
    full.wait_for("the member to connect", |e| {
        matches!(e, EventKind::Connected { peer, .. } if *peer == member_id).then_some(())
    })
    .await;

    let latecomer = TestNode::start(|_| {}).await;
    // The refusal happens on the full node once the handshake has authenticated the latecomer, so the latecomer's
    // own dial may briefly succeed; what counts is the full node's verdict.
    let _ = latecomer.handle.dial(full.tcp_address.clone()).await;
    let latecomer_id = latecomer.peer_id;
    let (direction, reason) = full
        .wait_for("the inbound refusal", |e| match e {
            EventKind::ConnectionRefused {
                direction,
                peer: Some(peer),
                reason,
                ..
            } if *peer == latecomer_id => Some((*direction, reason.clone())),
            _ => None,
        })
        .await;
    assert_eq!(direction, Direction::Inbound);
    assert!(reason.contains("at most 1"), "{reason}");

    let dialled = full.handle.dial(latecomer.tcp_address.clone()).await;
    let error = dialled.expect_err("a full node does not dial out");
    assert!(
        matches!(&error, NodeError::ConnectionRefused { reason } if reason.contains("limit")),
        "{error}"
    );
    full.wait_for("the outbound refusal", |e| {
        matches!(
            e,
            EventKind::ConnectionRefused {
                direction: Direction::Outbound,
                ..
            }
        )
        .then_some(())
    })
    .await;

    let status = full.status().await;
    assert_eq!(status.connected_peers, vec![member_id], "the existing peer is kept");
}

//! A peer flooding the state topic: the map never holds more than `--max-state-bytes`, what does not fit is refused
//! and counted, local writes are told the state is full, and the node keeps serving.

use std::time::Duration;

use bytes::Bytes;
use libp2p::{identity::Keypair, swarm::SwarmEvent};
use swarmnode::{
    node::NodeError,
    wire::state::{Actor, Change, Deltas, STATE_TOPIC, STATE_VERSION, encode},
};

use crate::support::{
    TestNode, eventually,
    raw_peer::{RawPeer, Signing},
};

const LIMIT: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_flood_stays_within_the_state_byte_bound() {
    let node = TestNode::start(|c| {
        c.state.max_state_bytes = LIMIT;
        c.peer_message_rate = 0;
    })
    .await;
    let mut raw = RawPeer::start(Keypair::generate_ed25519(), Signing::Signed);
    raw.dial(node.tcp_address.clone());
    raw.wait_for("the connection", |event| {
        matches!(event, SwarmEvent::ConnectionEstablished { .. }).then_some(())
    })
    .await;
    let peer = node.peer_id;
    raw.wait_for_subscription(peer, STATE_TOPIC).await;
    // 3 MiB of values in 48 deltas: three times what the node may hold.
    let now = uhlc::system_time_clock().0;
    for n in 0..48u64 {
        let change = Change {
            key: format!("flood/{n}"),
            value: Some(Bytes::from(vec![b'x'; 64_000])),
            time: now + n,
            origin: raw.peer_id.to_bytes(),
            actor: Actor([9; 16]),
            version: n + 1,
            expires: None,
        };
        raw.publish_on(
            STATE_TOPIC,
            encode(&Deltas {
                v: STATE_VERSION,
                changes: vec![change],
            }),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("the flood is refused once the state is full", || async {
        node.handle
            .metrics()
            .encode()
            .contains("swarmnode_state_refused_total{reason=\"full\"}")
    })
    .await;
    let summary = node.handle.state_summary().await.expect("the node still answers");
    assert!(
        summary.bytes <= LIMIT,
        "{} bytes held, the limit is {LIMIT}",
        summary.bytes
    );
    assert!(summary.keys >= 10, "what fits is taken: {} keys", summary.keys);
    let refused = node
        .handle
        .state_put("mine", Bytes::from(vec![b'y'; 60_000]), None)
        .await
        .expect_err("no room for a local write either");
    assert!(matches!(refused, NodeError::StateFull { .. }), "{refused}");
    // Small writes still fit in what is left, and deleting frees room.
    node.handle.state_delete("flood/0").await.expect("a delete fits");
    node.status().await;
}

//! A swarm on loopback: nodes that know only one bootstrap peer find everyone through Kademlia, and a message
//! published anywhere reaches every other node exactly once, intact.

use std::collections::HashMap;

use bytes::Bytes;
use libp2p::PeerId;
use swarmnode::node::{DiscoverySource, EventKind, NodeError, PublishRequest};

use crate::support::{TestNode, eventually, wait_for_subscribers};

const TOPIC: &str = "swarmnode";

/// Node 0 plus `others` nodes that bootstrap from node 0 only.
async fn swarm(others: usize, adjust: impl Fn(&mut swarmnode::config::NodeConfig)) -> Vec<TestNode> {
    let first = TestNode::start(&adjust).await;
    let bootstrap = first.tcp_address.clone();
    let mut nodes = vec![first];
    for _ in 0..others {
        let bootstrap = bootstrap.clone();
        nodes.push(
            TestNode::start(|c| {
                adjust(c);
                c.bootstrap = vec![bootstrap];
            })
            .await,
        );
    }
    nodes
}

fn text(request_topic: &str, payload: impl Into<Bytes>) -> PublishRequest {
    PublishRequest {
        topic: request_topic.into(),
        payload: payload.into(),
        content_type: None,
        id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_bootstrapped_from_one_find_each_other() {
    let nodes = swarm(5, |_| {}).await;
    let everyone: Vec<PeerId> = nodes.iter().map(|n| n.peer_id).collect();
    for node in &nodes {
        let others: Vec<PeerId> = everyone.iter().copied().filter(|p| *p != node.peer_id).collect();
        eventually(
            &format!(
                "{} has all 5 others in its routing table and 3+ connections",
                node.peer_id
            ),
            || async {
                let status = node.status().await;
                others.iter().all(|p| status.routing_table.contains(p)) && status.connected_peers.len() >= 3
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_found_only_through_kademlia_queries_are_reported_with_that_source() {
    let mut nodes = swarm(3, |_| {}).await;
    // The last node knows only node 0; nodes 1 and 2 reach it through its Kademlia lookups.
    let bootstrap_peer = nodes[0].peer_id;
    let found = nodes[3]
        .wait_for("a discovery through Kademlia", |kind| match kind {
            EventKind::Discovered {
                peer,
                source: DiscoverySource::Kademlia,
                addresses,
            } => Some((*peer, addresses.len())),
            _ => None,
        })
        .await;
    assert_ne!(
        found.0, bootstrap_peer,
        "the bootstrap peer is reported as such, not as a Kademlia find"
    );
    assert!(found.1 > 0, "a Kademlia discovery carries the addresses it found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_retrying_a_bootstrap_peer_that_starts_later() {
    // Reserve a port for the bootstrap node, which starts only after its joiner.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let joiner = TestNode::start(|c| c.bootstrap = vec![address.clone()]).await;
    eventually("the joiner has tried and failed at least once", || async {
        joiner.status().await.connected_peers.is_empty()
    })
    .await;
    let late = TestNode::start(|c| c.listen = vec![address.clone()]).await;
    eventually(
        "the joiner reaches the late bootstrap node and fills its routing table",
        || async { joiner.status().await.routing_table.contains(&late.peer_id) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_other_node_exactly_once_intact() {
    let mut nodes = swarm(4, |_| {}).await;
    for node in &nodes {
        wait_for_subscribers(node, TOPIC, 1).await;
    }
    wait_for_subscribers(&nodes[3], TOPIC, 3).await;

    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    let small = nodes[3]
        .handle
        .publish(PublishRequest {
            id: Some("greeting-1".into()),
            content_type: Some("text/plain".into()),
            ..text(TOPIC, "hello, swarm")
        })
        .await
        .expect("small message published");
    assert_eq!(small.id, "greeting-1");
    let large = nodes[3]
        .handle
        .publish(text(TOPIC, big.clone()))
        .await
        .expect("512 KiB message published");
    // Published last, it tells every receiver that nothing else is coming, so copies can be counted
    // without waiting an arbitrary time.
    let last = nodes[3]
        .handle
        .publish(text(TOPIC, "last"))
        .await
        .expect("last message published");

    let publisher = nodes[3].peer_id;
    for (index, node) in nodes.iter_mut().enumerate().filter(|(i, _)| *i != 3) {
        let mut copies: HashMap<String, usize> = HashMap::new();
        let mut received = HashMap::new();
        while !copies.contains_key(&last.id) || !copies.contains_key(&small.id) || !copies.contains_key(&large.id) {
            let (id, from, content_type, data) = node
                .wait_for(&format!("all three messages on node {index}"), |kind| match kind {
                    EventKind::Message {
                        id,
                        from,
                        content_type,
                        data,
                        topic,
                        ..
                    } if topic == TOPIC => Some((id.clone(), *from, content_type.clone(), data.0.clone())),
                    _ => None,
                })
                .await;
            assert_eq!(from, publisher);
            *copies.entry(id.clone()).or_default() += 1;
            received.insert(id, (content_type, data));
        }
        assert!(
            copies.values().all(|&n| n == 1),
            "node {index} got duplicates: {copies:?}"
        );
        assert_eq!(
            received[&small.id],
            ("text/plain".to_owned(), Bytes::from_static(b"hello, swarm"))
        );
        assert_eq!(received[&large.id].0, "application/octet-stream");
        assert_eq!(
            received[&large.id].1.as_ref(),
            big.as_slice(),
            "512 KiB payload intact on node {index}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_up_to_the_limit_are_delivered_and_larger_ones_refused_at_publish() {
    let mut nodes = swarm(1, |c| c.max_message_size = 64 * 1024).await;
    wait_for_subscribers(&nodes[0], TOPIC, 1).await;
    let limit = nodes[0].config.max_payload_size();

    let refused = nodes[0].handle.publish(text(TOPIC, vec![1u8; limit + 1])).await;
    assert_eq!(refused, Err(NodeError::PayloadTooLarge { size: limit + 1, limit }));
    assert!(refused.unwrap_err().to_string().contains("--max-message-size"));

    let published = nodes[0]
        .handle
        .publish(text(TOPIC, vec![2u8; limit]))
        .await
        .expect("limit-sized payload");
    let delivered = nodes[1]
        .wait_for("the limit-sized message", |kind| match kind {
            EventKind::Message { id, data, .. } if *id == published.id => Some(data.0.len()),
            _ => None,
        })
        .await;
    assert_eq!(delivered, limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publish_requests_are_refused_and_the_node_keeps_working() {
    let mut nodes = swarm(1, |_| {}).await;
    wait_for_subscribers(&nodes[0], TOPIC, 1).await;
    let handle = nodes[0].handle.clone();

    let empty_topic = handle.publish(text("", "x")).await;
    assert!(
        matches!(empty_topic, Err(NodeError::InvalidTopic { .. })),
        "{empty_topic:?}"
    );
    let long_id = handle
        .publish(PublishRequest {
            id: Some("i".repeat(65)),
            ..text(TOPIC, "x")
        })
        .await;
    assert!(matches!(long_id, Err(NodeError::InvalidMessage { .. })), "{long_id:?}");
    let nobody = handle.publish(text("a-topic-nobody-joined", "x")).await;
    assert_eq!(
        nobody,
        Err(NodeError::NoPeersSubscribed {
            topic: "a-topic-nobody-joined".into()
        })
    );

    let ok = handle
        .publish(text(TOPIC, "still fine"))
        .await
        .expect("publish after refusals");
    nodes[1]
        .wait_for("the message after the refusals", |kind| match kind {
            EventKind::Message { id, .. } if *id == ok.id => Some(()),
            _ => None,
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_given_by_id_alone_is_found_through_the_dht_and_dialled() {
    let nodes = swarm(2, |_| {}).await;
    let (seeker, sought) = (&nodes[1], &nodes[2]);
    eventually("the bootstrap node routes to both", || async {
        nodes[0].status().await.routing_table.len() >= 2
    })
    .await;
    let bare = |peer: PeerId| format!("/p2p/{peer}").parse().unwrap();
    assert_eq!(seeker.handle.dial(bare(sought.peer_id)).await, Ok(sought.peer_id));
    assert!(seeker.status().await.connected_peers.contains(&sought.peer_id));
    let unknown = PeerId::random();
    let error = seeker.handle.dial(bare(unknown)).await.unwrap_err();
    assert_eq!(error, NodeError::PeerNotFound { peer: unknown });
    assert!(error.to_string().contains("not found in the DHT"), "{error}");
}

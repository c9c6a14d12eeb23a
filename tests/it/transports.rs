//! Every transport a default node offers works with a peer that has only that one: TCP with TLS 1.3 only, TCP with
//! Noise only, and QUIC. A peer that shares no security protocol with another cannot connect to it at all.

use libp2p::{Multiaddr, multiaddr::Protocol};
use swarmnode::{
    config::SecurityProtocol,
    node::{EventKind, NodeError, PublishRequest},
};

use crate::support::{DEADLINE, TestNode, wait_for_subscribers};

const TOPIC: &str = "swarmnode";

async fn default_node() -> TestNode {
    TestNode::start(|c| {
        c.listen.push("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap());
    })
    .await
}

/// A message published on `from` arrives on `to`.
async fn deliver(from: &TestNode, to: &mut TestNode) {
    let sent = from
        .handle
        .publish(PublishRequest {
            topic: TOPIC.into(),
            payload: format!("from {}", from.peer_id).into(),
            content_type: None,
            id: None,
        })
        .await
        .expect("publish");
    to.wait_for("the other side's message", |kind| match kind {
        EventKind::Message { id, .. } if *id == sent.id => Some(()),
        _ => None,
    })
    .await;
}

/// `dialer` connects to `listener` at `address`, then each publishes and the other receives.
async fn connect_and_exchange(dialer: &mut TestNode, listener: &mut TestNode, address: Multiaddr) -> Multiaddr {
    let listener_id = listener.peer_id;
    assert_eq!(dialer.handle.dial(address).await, Ok(listener_id));
    let used = dialer
        .wait_for("connection", |kind| match kind {
            EventKind::Connected { peer, address, .. } if *peer == listener_id => Some(address.clone()),
            _ => None,
        })
        .await;
    wait_for_subscribers(dialer, TOPIC, 1).await;
    wait_for_subscribers(listener, TOPIC, 1).await;
    deliver(dialer, listener).await;
    deliver(listener, dialer).await;
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_node_and_a_noise_only_node_each_connect_to_a_default_node() {
    let mut default = default_node().await;
    for only in [SecurityProtocol::Tls, SecurityProtocol::Noise] {
        let mut single = TestNode::start(|c| c.security = vec![only]).await;
        let address = default.tcp_address.clone();
        connect_and_exchange(&mut single, &mut default, address).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dialling_over_quic_connects_to_a_default_node() {
    let mut default = default_node().await;
    let mut dialer = TestNode::start(|_| {}).await;
    let address = default.quic_address.clone().expect("default node listens on QUIC");
    let used = connect_and_exchange(&mut dialer, &mut default, address).await;
    assert!(used.iter().any(|p| p == Protocol::QuicV1), "connected over {used}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_no_security_protocol_in_common_cannot_connect() {
    let tls_only = TestNode::start(|c| c.security = vec![SecurityProtocol::Tls]).await;
    let noise_only = TestNode::start(|c| c.security = vec![SecurityProtocol::Noise]).await;
    let refused = noise_only.handle.dial(tls_only.tcp_address.clone()).await;
    let error = refused.expect_err("no common security protocol");
    assert!(
        matches!(&error, NodeError::DialFailed { reason } if reason.to_lowercase().contains("protocol negotiation")),
        "dial error names the failed negotiation: {error}"
    );
    assert!(!tls_only.status().await.connected_peers.contains(&noise_only.peer_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_to_a_listener_that_never_answers_fails_after_the_dial_timeout() {
    // Accepts TCP connections and then says nothing, like a frozen process: without a timeout the dial would wait
    // for ever.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let node = TestNode::start(|c| c.dial_timeout = std::time::Duration::from_millis(500)).await;
    let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    // libp2p gives up by itself after 10 s; only the configured 500 ms can end the dial well before that (the
    // bound is 10 times the setting, for a noisy machine).
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(DEADLINE, node.handle.dial(address))
        .await
        .expect("the dial ends")
        .expect_err("nobody answers");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let reason = error.to_string().to_lowercase();
    assert!(
        matches!(error, NodeError::DialFailed { .. }) && (reason.contains("timeout") || reason.contains("timed out")),
        "{error}"
    );
    assert!(node.status().await.connected_peers.is_empty());
    held.abort();
}

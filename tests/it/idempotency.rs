//! Idempotent publishing: a caller-chosen id published twice within the dedup window is sent once (the retry gets
//! the first result back), and receivers deliver an (origin, id) once even when the publisher forgot it (restarted)
//! and sent it again.

use bytes::Bytes;
use swarmnode::node::{EventKind, PublishRequest};

use crate::support::{TestNode, eventually, wait_for_subscribers};

const TOPIC: &str = "swarmnode";

fn with_id(id: &str, payload: &'static str) -> PublishRequest {
    PublishRequest {
        topic: TOPIC.into(),
        payload: Bytes::from_static(payload.as_bytes()),
        content_type: None,
        id: Some(id.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_id_is_sent_once_and_delivered_once() {
    let mut publisher = TestNode::start(|_| {}).await;
    let address = publisher.tcp_address.clone();
    let mut receiver = TestNode::start(|c| c.bootstrap = vec![address]).await;
    wait_for_subscribers(&publisher, TOPIC, 1).await;

    let first = publisher.handle.publish(with_id("order-1", "one")).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.recipients, 1);
    let retry = publisher
        .handle
        .publish(with_id("order-1", "one, again"))
        .await
        .unwrap();
    assert!(retry.duplicate, "{retry:?}");
    assert_eq!((&retry.id, &retry.message_id), (&first.id, &first.message_id));
    publisher.handle.publish(with_id("order-2", "two")).await.unwrap();

    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let (id, data) = receiver
            .wait_for("a message", |e| match e {
                EventKind::Message { id, data, .. } => Some((id.clone(), data.0.clone())),
                _ => None,
            })
            .await;
        delivered.push((id, data));
    }
    // order-2 was published after the retry, so a copy of the retry would have arrived before it.
    assert_eq!(
        delivered,
        vec![
            ("order-1".to_owned(), Bytes::from_static(b"one")),
            ("order-2".to_owned(), Bytes::from_static(b"two"))
        ]
    );

    // The publisher restarts with the same key and has forgotten its ids; the receiver has not.
    publisher.stop().await;
    let (config, dir) = (publisher.config.clone(), publisher.dir);
    let publisher = TestNode::start_with(config, dir).await;
    publisher.handle.dial(receiver.tcp_address.clone()).await.unwrap();
    wait_for_subscribers(&publisher, TOPIC, 1).await;
    let resent = publisher
        .handle
        .publish(with_id("order-1", "one, after restart"))
        .await
        .unwrap();
    assert!(!resent.duplicate, "a restarted publisher has forgotten the id");
    eventually("the receiver to drop the republished id", || async {
        receiver.status().await.duplicate_ids == 1
    })
    .await;
    // Had it been delivered, its event would be queued by now: the drop and the delivery are the same decision.
    while let Ok(event) = receiver.events.try_recv() {
        assert!(
            !matches!(event.kind, EventKind::Message { .. }),
            "delivered twice: {event:?}"
        );
    }
}

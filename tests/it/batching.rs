//! Batching (`--batch-window`): concurrent publishes within the window travel as few gossip messages, and the
//! receiver still delivers every message exactly once, each with its own id, in each publisher's order.

use std::{collections::HashSet, time::Duration};

use bytes::Bytes;
use futures::future::join_all;
use swarmnode::node::{EventKind, PublishRequest};

use crate::support::{TestNode, wait_for_subscribers};

const TOPIC: &str = "swarmnode";
const PER_PUBLISHER: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_publishes_are_delivered_once_each_in_publisher_order() {
    let mut receiver = TestNode::start(|_| {}).await;
    let address = receiver.tcp_address.clone();
    let mut publishers = Vec::new();
    for _ in 0..2 {
        let address = address.clone();
        publishers.push(
            TestNode::start(|c| {
                c.bootstrap = vec![address];
                c.batch_window = Some(Duration::from_millis(50));
            })
            .await,
        );
    }
    for publisher in &publishers {
        wait_for_subscribers(publisher, TOPIC, 1).await;
    }

    // All publishes of both publishers at once; each publisher's commands enter its node in index order.
    let sends = publishers.iter().enumerate().flat_map(|(p, publisher)| {
        (0..PER_PUBLISHER).map(move |i| {
            publisher.handle.publish(PublishRequest {
                topic: TOPIC.into(),
                payload: Bytes::from(format!("{p}:{i}")),
                content_type: None,
                id: Some(format!("p{p}-{i}")),
            })
        })
    });
    let results: Vec<_> = join_all(sends).await.into_iter().map(Result::unwrap).collect();
    let gossip_messages: HashSet<&str> = results.iter().map(|r| r.message_id.as_str()).collect();
    assert!(
        gossip_messages.len() < results.len(),
        "{} publishes went out as {} gossip messages: nothing was batched",
        results.len(),
        gossip_messages.len()
    );

    let mut next = [0usize; 2];
    while next.iter().sum::<usize>() < 2 * PER_PUBLISHER {
        let (id, data) = receiver
            .wait_for("a message", |e| match e {
                EventKind::Message { id, data, .. } => Some((id.clone(), data.0.clone())),
                _ => None,
            })
            .await;
        let text = String::from_utf8(data.to_vec()).unwrap();
        let (p, i) = text.split_once(':').unwrap();
        let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
        assert_eq!(
            i, next[p],
            "publisher {p}: message {i} arrived when {} was due",
            next[p]
        );
        assert_eq!(id, format!("p{p}-{i}"), "each message keeps its own id");
        next[p] += 1;
    }
    assert_eq!(receiver.status().await.duplicate_ids, 0);
}

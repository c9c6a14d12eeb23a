//! A node flooded with large messages while nobody reads its events keeps them within its byte budget
//! (`--event-buffer-bytes`), and a reader that was not reading learns how many it missed, then reads the newest.

use std::time::Duration;

use crate::support::{DEADLINE, TestNode, eventually, wait_for_subscribers};
use bytes::Bytes;
use swarmnode::node::{EVENT_OVERHEAD, EventKind, PublishRequest, RecvError, TryRecvError};

const BUDGET: usize = 16 << 20;
const MESSAGES: u64 = 2000;
const PAYLOAD: usize = 512 << 10;
/// Messages the publisher may be ahead of the receiver's deliveries: keeps gossipsub's send queue short (it drops
/// what waits there past 5 s, which a loaded machine would otherwise reach), so every message arrives.
const AHEAD: u64 = 8;

fn large_message(i: u64) -> PublishRequest {
    let mut payload = vec![b'x'; PAYLOAD];
    payload[..8].copy_from_slice(&i.to_be_bytes());
    PublishRequest {
        topic: "swarmnode".into(),
        payload: Bytes::from(payload),
        content_type: None,
        id: Some(format!("m{i}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_messages_stays_within_the_event_budget_and_a_stale_reader_gets_lagged_then_the_newest() {
    let receiver = TestNode::start(|c| c.event_buffer_bytes = BUDGET).await;
    let publisher = TestNode::start(|_| {}).await;
    publisher.handle.dial(receiver.tcp_address.clone()).await.unwrap();
    wait_for_subscribers(&publisher, "swarmnode", 1).await;
    wait_for_subscribers(&receiver, "swarmnode", 1).await;
    // Subscribed before the flood and not read until it is over, like the receiver's own `events`.
    let mut stale = receiver.handle.subscribe_events();
    let delivered = || receiver.handle.metrics().delivered.get();

    for i in 0..MESSAGES {
        publisher.handle.publish(large_message(i)).await.unwrap();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while i + 1 > delivered() + AHEAD {
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {i}: the receiver did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    eventually(&format!("{MESSAGES} deliveries"), || async { delivered() == MESSAGES }).await;

    let buffered = receiver.events.buffered();
    let largest_event = PAYLOAD + EVENT_OVERHEAD;
    assert!(
        buffered.peak_bytes <= BUDGET,
        "over the budget at some point: {buffered:?}"
    );
    assert!(
        buffered.bytes > BUDGET - largest_event,
        "the budget is used, not undercut: {buffered:?}"
    );
    let metrics = receiver.handle.metrics();
    assert_eq!(metrics.event_buffer_bytes.get(), buffered.bytes as i64);
    assert_eq!(metrics.event_buffer_events.get(), buffered.events as i64);

    let deadline = tokio::time::Instant::now() + DEADLINE;
    let missed = match tokio::time::timeout_at(deadline, stale.recv()).await {
        Ok(Err(RecvError::Lagged(missed))) => missed,
        other => panic!("a reader that did not read must be told it lagged, got {other:?}"),
    };
    let mut kept = Vec::new();
    loop {
        match stale.try_recv() {
            Ok(event) => {
                if let EventKind::Message { id, data, .. } = event.kind {
                    assert_eq!(data.0.len(), PAYLOAD);
                    kept.push(id);
                }
            }
            Err(TryRecvError::Empty) => break,
            Err(other) => panic!("after the lag notice the reader reads on, got {other}"),
        }
    }
    let fit = (BUDGET / largest_event) as u64;
    assert!(missed >= MESSAGES - fit, "missed {missed}");
    let newest: Vec<String> = (MESSAGES - kept.len() as u64..MESSAGES)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(kept, newest, "the newest messages, in order");
    assert!(kept.len() as u64 >= fit - 2, "only {} messages kept", kept.len());
}

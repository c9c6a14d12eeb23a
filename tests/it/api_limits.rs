//! What a slow, silent or greedy API client costs: each kind of stalled connection is closed on its timer, a
//! connection or event stream over its cap gets a quick 503 with `Retry-After` (never a hang) and the slot comes back
//! when the holder leaves, and an event-stream reader that falls behind is cut off with `lagged`.

use std::time::Duration;

use futures::StreamExt;
use libp2p::bytes::Bytes;
use reqwest::StatusCode;
use swarmnode::{api::limits::ApiLimits, node::PublishRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    DEADLINE, TestNode,
    raw_http::{LimitedApi, exchange, last_json, read_until_closed},
    wait_for_subscribers,
};

const TIMEOUT: Duration = Duration::from_millis(600);

fn short_timeouts() -> ApiLimits {
    ApiLimits {
        header_timeout: TIMEOUT,
        body_timeout: TIMEOUT,
        write_timeout: TIMEOUT,
        ..ApiLimits::default()
    }
}

/// Closed by the server after about `TIMEOUT`: not before, and long before a client would give up.
fn assert_closed_on_its_timer(what: &str, closed_after: Option<Duration>) {
    let after = closed_after.unwrap_or_else(|| panic!("{what}: still open after {DEADLINE:?}"));
    assert!(
        after >= TIMEOUT / 2 && after < TIMEOUT * 8,
        "{what}: closed after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_half_sent_trickling_and_idle_connections_are_closed_on_a_timer() {
    let api = LimitedApi::start(None, short_timeouts()).await;
    let silent = exchange(&api, b"").await;
    assert_closed_on_its_timer("a silent connection", silent.closed_after);
    let half_line = exchange(&api, b"GET /v1/no").await;
    assert_closed_on_its_timer("half a request line", half_line.closed_after);

    // Headers a byte at a time, each within the timeout of the last: the head as a whole is still due in time.
    let mut trickle = api.connect().await;
    let head = b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = std::time::Instant::now();
    for byte in head {
        if trickle.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trickled = read_until_closed(&mut trickle, DEADLINE).await;
    assert!(trickled.closed_after.is_some(), "trickled headers: still open");
    assert_closed_on_its_timer("trickled headers", Some(start.elapsed()));

    // Headers and part of the body: the body timeout answers 408 in the error shape and the connection ends.
    let partial_body = exchange(
        &api,
        b"POST /v1/peers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"addr",
    )
    .await;
    assert_eq!(partial_body.statuses(), [408], "{}", partial_body.text);
    assert_eq!(last_json(&partial_body.text)["error"]["code"], "request_timeout");
    assert_closed_on_its_timer("a body that stopped", partial_body.closed_after);

    // A keep-alive connection that made one request and then sits idle.
    let idle = exchange(&api, b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(idle.statuses(), [200]);
    assert_closed_on_its_timer("an idle keep-alive connection", idle.closed_after);

    let (status, _) = get(&api, "/v1/node").await;
    assert_eq!(status, StatusCode::OK, "the API still serves");
}

async fn get(api: &LimitedApi, path: &str) -> (StatusCode, reqwest::header::HeaderMap) {
    let response = reqwest::get(api.url(path)).await.unwrap();
    (response.status(), response.headers().clone())
}

/// `count` connections, each served one request (so the server has accepted it) and now idle, holding its slot until
/// the header timeout.
async fn hold_idle(api: &LimitedApi, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut holders = Vec::new();
    for _ in 0..count {
        let mut holder = api.connect().await;
        holder
            .write_all(b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        // The node's status is one JSON object: the answer is whole when it ends with its closing brace.
        while !answer.ends_with(b"}") {
            let read = tokio::time::timeout(DEADLINE, holder.read(&mut buffer))
                .await
                .expect("an answer")
                .unwrap();
            assert!(
                read > 0,
                "closed before answering: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buffer[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        holders.push(holder);
    }
    holders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_gets_503_with_retry_after_at_once_and_the_slot_comes_back() {
    let limits = ApiLimits {
        max_connections: 4,
        ..ApiLimits::default()
    };
    let api = LimitedApi::start(None, limits).await;
    let holders = hold_idle(&api, 4).await;
    let started = std::time::Instant::now();
    let over = exchange(&api, b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(over.statuses(), [503], "{}", over.text);
    assert!(
        over.text.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        over.text
    );
    assert_eq!(last_json(&over.text)["error"]["code"], "too_many_connections");

    drop(holders);
    crate::support::eventually("a slot to come back", || async {
        exchange(
            &api,
            b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await
        .statuses()
            == [200]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_its_share_of_connections_does_not_keep_another_out() {
    let limits = ApiLimits {
        max_connections_per_ip: 2,
        ..ApiLimits::default()
    };
    let api = LimitedApi::start(None, limits).await;
    let holders = hold_idle(&api, 2).await;
    let over = exchange(&api, b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(over.statuses(), [503], "{}", over.text);
    let message = last_json(&over.text)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(message.contains("--api-max-connections-per-ip"), "{message}");
    // Another address (Linux routes all of 127.0.0.0/8 to loopback) is still served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(api.api.address).await.unwrap();
    other
        .write_all(b"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_until_closed(&mut other, DEADLINE).await.statuses(), [200]);
    drop(holders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_over_the_cap_get_503_and_a_closed_stream_frees_its_slot() {
    let limits = ApiLimits {
        max_event_streams: 2,
        ..ApiLimits::default()
    };
    let api = LimitedApi::start(None, limits).await;
    let open = || async { reqwest::get(api.url("/v1/events")).await.unwrap() };
    let first = open().await;
    let second = open().await;
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = open().await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_event_streams");
    drop(first);
    crate::support::eventually("the closed stream's slot to come back", || async {
        open().await.status() == StatusCode::OK
    })
    .await;
    drop(second);
}

/// `peer` publishes `count` messages of `size` bytes, retrying (boundedly) while its send queues are full.
async fn publish(peer: &TestNode, count: usize, size: usize) {
    for i in 0..count {
        let request = PublishRequest {
            topic: "swarmnode".into(),
            payload: Bytes::from(vec![b'x'; size]),
            content_type: None,
            id: Some(format!("m{i}")),
        };
        let mut tries = 0;
        while let Err(e) = peer.handle.publish(request.clone()).await {
            tries += 1;
            assert!(tries < 100, "message {i} not published: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reader_further_behind_than_its_budget_is_cut_off_with_lagged() {
    let limits = ApiLimits {
        event_stream_bytes: 256 << 10,
        ..ApiLimits::default()
    };
    let api = LimitedApi::start(None, limits).await;
    let peer = TestNode::start(|c| c.bootstrap = vec![api.node.tcp_address.clone()]).await;
    wait_for_subscribers(&peer, "swarmnode", 1).await;
    let stream = reqwest::get(api.url("/v1/events?types=message")).await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = stream.bytes_stream();
    // 8 MiB of messages published while this reader reads nothing: far past its 256 KiB budget and what the socket
    // buffers between the two hold.
    publish(&peer, 64, 128 << 10).await;
    let delivered = || api.node.handle.metrics().delivered.get() >= 64;
    crate::support::eventually("the 64 messages to reach the node", || async { delivered() }).await;
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, body.next())
        .await
        .expect("the stream to end")
    {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(
        text.trim_end().ends_with('}') && text.contains("event: lagged"),
        "ends with lagged: …{}",
        tail(&text)
    );
    assert!(
        text.matches("event: message").count() < 64,
        "some messages were skipped"
    );
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(300);
    text.get(start..).unwrap_or(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reader_that_stops_reading_is_closed_by_the_write_timeout_and_frees_its_slot() {
    let limits = ApiLimits {
        max_event_streams: 1,
        ..short_timeouts()
    };
    let api = LimitedApi::start(None, limits).await;
    let peer = TestNode::start(|c| c.bootstrap = vec![api.node.tcp_address.clone()]).await;
    wait_for_subscribers(&peer, "swarmnode", 1).await;
    let mut stalled = api.connect().await;
    stalled
        .write_all(b"GET /v1/events?types=message HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // More than the kernel's socket buffers hold on loopback, so the server's writes stall.
    publish(&peer, 32, 256 << 10).await;
    crate::support::eventually("the stalled stream's slot to come back", || async {
        reqwest::get(api.url("/v1/events")).await.unwrap().status() == StatusCode::OK
    })
    .await;
    let rest = read_until_closed(&mut stalled, DEADLINE).await;
    assert!(rest.closed_after.is_some(), "the server closed the stalled connection");
}

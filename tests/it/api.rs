//! The HTTP API against in-process nodes: every route answers as documented, bad input gets the exact status and a
//! JSON error, a token-protected API refuses requests without the token, and the event stream carries a message
//! published on another node.

use std::net::SocketAddr;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use swarmnode::{
    api::{self, ApiConfig, RunningApi, limits::ApiLimits},
    node::{Direction, EventKind},
};

use crate::support::{DEADLINE, TestNode, eventually, wait_for_subscribers};

const TOPIC: &str = "swarmnode";

/// A node with its API on a free loopback port.
struct ApiNode {
    node: TestNode,
    api: RunningApi,
    http: reqwest::Client,
}

impl ApiNode {
    async fn start(adjust: impl FnOnce(&mut swarmnode::config::NodeConfig), token: Option<&str>) -> ApiNode {
        let node = TestNode::start(adjust).await;
        let config = ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: token.map(str::to_owned),
            limits: ApiLimits::default(),
        };
        let api = api::start(&config, node.handle.clone(), node.config.max_message_size)
            .await
            .unwrap();
        ApiNode {
            node,
            api,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api.address)
    }

    /// Sends a request and returns the status and the JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn raw(&self, method: Method, path: &str, body: &'static str) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an API error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_routes_describe_the_node_its_peers_and_topics() {
    let first = ApiNode::start(|_| {}, None).await;
    let address = first.node.tcp_address.clone();
    let second = ApiNode::start(|c| c.bootstrap = vec![address], None).await;
    wait_for_subscribers(&first.node, TOPIC, 1).await;

    let (status, node) = first.call(Method::GET, "/v1/node", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node["peer_id"], first.node.peer_id.to_string());
    assert!(node["agent"].as_str().unwrap().starts_with("swarmnode/"));
    assert!(
        node["protocols"]
            .as_array()
            .unwrap()
            .contains(&json!("/swarmnode/kad/1.0.0"))
    );
    assert_eq!(node["topics"][TOPIC], 1);

    let (status, peers) = first.call(Method::GET, "/v1/peers", None).await;
    assert_eq!(status, StatusCode::OK);
    let peer = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == second.node.peer_id.to_string())
        .unwrap_or_else(|| panic!("second node listed: {peers}"));
    assert_eq!(peer["state"], "active");
    assert_eq!(peer["direction"], "inbound");

    let (status, topics) = first.call(Method::GET, "/v1/topics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(topics[0]["topic"], TOPIC);
    assert_eq!(topics[0]["subscribed_peers"], json!([second.node.peer_id.to_string()]));

    let (status, diagnosis) = first.call(Method::GET, "/v1/diagnose", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(diagnosis["connections"]["established_incoming"], 1);
    assert_eq!(diagnosis["connections"]["max_peers"], 128);
    assert_eq!(diagnosis["mdns_enabled"], false);
    let interfaces = diagnosis["interfaces"].as_array().unwrap();
    let loopback = interfaces
        .iter()
        .find(|i| i["name"] == "lo")
        .unwrap_or_else(|| panic!("{interfaces:?}"));
    assert!(loopback["addresses"].as_array().unwrap().contains(&json!("127.0.0.1")));
    assert!(
        interfaces.iter().all(|i| i["mdns"] == false),
        "mDNS is off on this node"
    );
    let (_, diagnosis) = second.call(Method::GET, "/v1/diagnose", None).await;
    assert_eq!(diagnosis["bootstrap"][0]["connected"], true, "{diagnosis}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_idempotent_and_the_event_stream_carries_the_message() {
    let first = ApiNode::start(|_| {}, None).await;
    let address = first.node.tcp_address.clone();
    let second = ApiNode::start(|c| c.bootstrap = vec![address], None).await;
    wait_for_subscribers(&first.node, TOPIC, 1).await;

    let stream = second
        .http
        .get(second.url("/v1/events?types=message&topic=swarmnode"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut body = stream.bytes_stream();

    let publish = json!({"topic": TOPIC, "data": "hello over http", "id": "req-1"});
    let (status, first_result) = first.call(Method::POST, "/v1/publish", Some(publish.clone())).await;
    assert_eq!(status, StatusCode::OK, "{first_result}");
    assert_eq!(first_result["recipients"], 1);
    assert_eq!(first_result["duplicate"], false);
    let (status, repeat) = first.call(Method::POST, "/v1/publish", Some(publish)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeat["duplicate"], true);
    assert_eq!(repeat["message_id"], first_result["message_id"]);
    let binary = json!({"topic": TOPIC, "data_base64": "AP8=", "content_type": "application/x-test"});
    let (status, _) = first.call(Method::POST, "/v1/publish", Some(binary)).await;
    assert_eq!(status, StatusCode::OK);

    // The stream: the text message, then the binary one (the repeat was never sent).
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while text.matches("event: message").count() < 2 {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("two messages on the stream")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(messages[0]["data"], "hello over http");
    assert_eq!(messages[0]["id"], "req-1");
    assert_eq!(
        (&messages[1]["data"], &messages[1]["encoding"]),
        (&json!("AP8="), &json!("base64"))
    );

    // Prometheus sees the same: two published (the repeat answered from memory), two delivered.
    let published = metrics(&first).await;
    for line in [
        "swarmnode_messages_published_total 2",
        "swarmnode_publish_repeats_total 1",
        "swarmnode_peers{state=\"active\"} 1",
        "swarmnode_api_requests_total{route=\"/v1/publish\",method=\"POST\",status=\"2xx\"} 3",
    ] {
        assert!(published.contains(line), "{line} missing from:\n{published}");
    }
    let delivered = metrics(&second).await;
    assert!(
        delivered.contains("swarmnode_messages_delivered_total 2"),
        "{delivered}"
    );
    assert!(
        delivered.contains("swarmnode_delivery_latency_seconds_count 2"),
        "{delivered}"
    );
    for family in [
        "libp2p_swarm_connections_established",
        "libp2p_bandwidth_bytes",
        "libp2p_gossipsub",
    ] {
        assert!(delivered.contains(family), "{family} missing");
    }
}

async fn metrics(node: &ApiNode) -> String {
    let response = node.http.get(node.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_a_json_error_and_the_node_carries_on() {
    let node = ApiNode::start(|c| c.max_message_size = 4096, None).await;
    let big = "x".repeat(8000);
    let cases: Vec<(Method, &str, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/v1/publish",
            Some(json!({"topic": TOPIC})),
            StatusCode::BAD_REQUEST,
            "invalid_data",
        ),
        (
            Method::POST,
            "/v1/publish",
            Some(json!({"topic": TOPIC, "data": "a", "data_base64": "YQ=="})),
            StatusCode::BAD_REQUEST,
            "invalid_data",
        ),
        (
            Method::POST,
            "/v1/publish",
            Some(json!({"topic": TOPIC, "data_base64": "not base64!"})),
            StatusCode::BAD_REQUEST,
            "invalid_base64",
        ),
        (
            Method::POST,
            "/v1/publish",
            Some(json!({"topic": "", "data": "a"})),
            StatusCode::BAD_REQUEST,
            "invalid_topic",
        ),
        (
            Method::POST,
            "/v1/publish",
            Some(json!({"topic": TOPIC, "data": "a", "extra": 1})),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            "/v1/publish",
            Some(json!({"topic": TOPIC, "data": big})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            Method::POST,
            "/v1/publish",
            Some(json!({"topic": TOPIC, "data": "nobody listens"})),
            StatusCode::CONFLICT,
            "no_peers",
        ),
        (
            Method::POST,
            "/v1/peers",
            Some(json!({"address": "not a multiaddr"})),
            StatusCode::BAD_REQUEST,
            "invalid_address",
        ),
        (
            Method::POST,
            "/v1/peers",
            Some(json!({"address": "/ip4/127.0.0.1/udp/9"})),
            StatusCode::BAD_REQUEST,
            "invalid_address",
        ),
        (
            Method::POST,
            "/v1/peers",
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::DELETE,
            "/v1/peers/not-a-peer",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_peer_id",
        ),
        (
            Method::DELETE,
            "/v1/peers/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5",
            None,
            StatusCode::NOT_FOUND,
            "not_connected",
        ),
        (
            Method::DELETE,
            "/v1/topics/never-joined",
            None,
            StatusCode::NOT_FOUND,
            "not_subscribed",
        ),
        (
            Method::POST,
            "/v1/topics/%07bell",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_topic",
        ),
        (
            Method::GET,
            "/v1/events?types=gossip",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_event_type",
        ),
        (
            Method::GET,
            "/v1/events?colour=red",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/v1/nothing-here",
            None,
            StatusCode::NOT_FOUND,
            "no_such_route",
        ),
        (
            Method::PUT,
            "/v1/node",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, expected_status, expected_code) in cases {
        let (status, answer) = node.call(method.clone(), path, body).await;
        assert_eq!(
            (status, error_code(&answer)),
            (expected_status, expected_code),
            "{method} {path}: {answer}"
        );
    }
    let (status, answer) = node.raw(Method::POST, "/v1/publish", "{\"topic\": ").await;
    assert_eq!((status, error_code(&answer)), (StatusCode::BAD_REQUEST, "invalid_json"));
    let (status, answer) = node.raw(Method::POST, "/v1/peers", "[1, 2]").await;
    assert_eq!((status, error_code(&answer)), (StatusCode::BAD_REQUEST, "invalid_json"));
    let response = node
        .http
        .post(node.url("/v1/publish"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Still serving, and topics can be joined and left.
    let (status, joined) = node.call(Method::POST, "/v1/topics/extra", None).await;
    assert_eq!((status, &joined["subscribed"]), (StatusCode::OK, &json!(true)));
    let (status, left) = node.call(Method::DELETE, "/v1/topics/extra", None).await;
    assert_eq!((status, &left["subscribed"]), (StatusCode::OK, &json!(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_changes_the_node_refuses_say_why() {
    // The node starts in its one default topic; --max-topics 2 leaves room for one more.
    let node = ApiNode::start(|c| c.max_topics = 2, None).await;
    let (status, _) = node.call(Method::POST, "/v1/topics/second", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = node.call(Method::POST, "/v1/topics/third", None).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::CONFLICT, "too_many_topics"),
        "{answer}"
    );
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("--max-topics"),
        "{answer}"
    );
    let (status, _) = node.call(Method::POST, "/v1/topics/second", None).await;
    assert_eq!(status, StatusCode::OK, "a topic already joined is no new topic");
    let (status, answer) = node.call(Method::DELETE, "/v1/topics/third", None).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::NOT_FOUND, "not_subscribed"));
    let (status, answer) = node.call(Method::DELETE, "/v1/topics/%07bell", None).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, "invalid_topic")
    );
    let (status, _) = node.call(Method::DELETE, "/v1/topics/second", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = node.call(Method::POST, "/v1/topics/third", None).await;
    assert_eq!(status, StatusCode::OK, "room again once a topic is left");
}

/// The state and reason `GET /v1/peers` shows for `peer`, if it lists it.
async fn peer_state(node: &ApiNode, peer: libp2p::PeerId) -> Option<(String, String)> {
    let (_, peers) = node.call(Method::GET, "/v1/peers", None).await;
    let entry = peers
        .as_array()?
        .iter()
        .find(|p| p["peer"] == peer.to_string())?
        .clone();
    let text = |field: &str| entry[field].as_str().unwrap_or("").to_owned();
    Some((text("state"), text("reason")))
}

async fn is_in_state(node: &ApiNode, peer: libp2p::PeerId, state: &str) -> bool {
    peer_state(node, peer).await.is_some_and(|(now, _)| now == state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_disconnect_a_peer_through_the_api() {
    let mut node = ApiNode::start(|_| {}, None).await;
    let other = TestNode::start(|_| {}).await;
    let connect_other = json!({"address": other.tcp_address.to_string()});
    let (status, connected) = node.call(Method::POST, "/v1/peers", Some(connect_other.clone())).await;
    assert_eq!(
        (status, &connected["peer"]),
        (StatusCode::OK, &json!(other.peer_id.to_string()))
    );
    let nobody = json!({"address": "/ip4/127.0.0.1/tcp/1"});
    let (status, refused) = node.call(Method::POST, "/v1/peers", Some(nobody)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "nothing listens on port 1");
    assert_eq!(error_code(&refused), "dial_failed");

    let path = format!("/v1/peers/{}", other.peer_id);
    for bad in ["soon", "31days"] {
        let (status, refused) = node.call(Method::DELETE, &format!("{path}?for={bad}"), None).await;
        assert_eq!(
            (status, error_code(&refused)),
            (StatusCode::BAD_REQUEST, "invalid_query"),
            "{bad}"
        );
    }
    let (status, answer) = node.call(Method::DELETE, &path, None).await;
    assert_eq!(
        (status, &answer["disconnected"], &answer["blocked_for_ms"]),
        (StatusCode::OK, &json!(true), &json!(600_000)),
        "blocked for the default 10 minutes"
    );
    eventually("the peer to be removed, not redialled", || {
        is_in_state(&node, other.peer_id, "removed")
    })
    .await;
    // The disconnect sticks: the peer's own redials are refused (its handshake may finish, then the node closes the
    // connection), and so is ours.
    for _ in 0..5 {
        let _ = other.handle.dial(node.node.tcp_address.clone()).await;
        let blocked = other.peer_id;
        node.node
            .wait_for("the node to refuse the blocked peer", |kind| match kind {
                EventKind::ConnectionRefused {
                    direction: Direction::Inbound,
                    peer: Some(peer),
                    ..
                } => (*peer == blocked).then_some(()),
                _ => None,
            })
            .await;
        assert!(
            is_in_state(&node, other.peer_id, "removed").await,
            "the blocked peer got back in"
        );
    }
    let (status, refused) = node.call(Method::POST, "/v1/peers", Some(connect_other)).await;
    assert_eq!(
        (status, error_code(&refused)),
        (StatusCode::UNPROCESSABLE_ENTITY, "connection_refused")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_for_0s_lets_the_peer_straight_back() {
    let node = ApiNode::start(|_| {}, None).await;
    let other = TestNode::start(|_| {}).await;
    other.handle.dial(node.node.tcp_address.clone()).await.unwrap();
    eventually("the peer to be active", || is_in_state(&node, other.peer_id, "active")).await;
    let path = format!("/v1/peers/{}?for=0s", other.peer_id);
    let (status, answer) = node.call(Method::DELETE, &path, None).await;
    assert_eq!((status, &answer["blocked_for_ms"]), (StatusCode::OK, &json!(0)));
    eventually("the peer to be removed by the operator", || async {
        peer_state(&node, other.peer_id).await == Some(("removed".to_owned(), "disconnected by operator".to_owned()))
    })
    .await;
    other.handle.dial(node.node.tcp_address.clone()).await.unwrap();
    eventually("the peer to be back", || is_in_state(&node, other.peer_id, "active")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protected_api_refuses_requests_without_the_token() {
    let node = ApiNode::start(|_| {}, Some("s3cret")).await;
    for token in [None, Some("wrong"), Some("s3cret2")] {
        let mut request = node.http.get(node.url("/v1/node"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "token {token:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "unauthorized");
    }
    let response = node
        .http
        .get(node.url("/v1/node"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn a_non_loopback_api_needs_a_token_file() {
    let error = ApiConfig::from_flags("0.0.0.0:5100", None, ApiLimits::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("--api-token-file"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let error = ApiConfig::from_flags("0.0.0.0:5100", Some(&empty), ApiLimits::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("empty"), "{error}");
    let token = dir.path().join("token");
    std::fs::write(&token, "abc\n").unwrap();
    let config = ApiConfig::from_flags("0.0.0.0:5100", Some(&token), ApiLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(config.token.as_deref(), Some("abc"));
    assert_eq!(ApiConfig::from_flags("off", None, ApiLimits::default()).unwrap(), None);
    assert!(ApiConfig::from_flags("localhost", None, ApiLimits::default()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers() {
    let node = ApiNode::start(|_| {}, None).await;
    let (status, document) = node.call(Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    for (method, path) in api::openapi::documented_routes(&document) {
        let path = path.replace("{peer}", "not-a-peer").replace("{topic}", "probe");
        let method: Method = method.parse().unwrap();
        let response = node
            .http
            .request(method.clone(), node.url(&path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        // The body of a stream never ends; its headers are the answer.
        if path == "/v1/events" || path == "/v1/state/watch" {
            assert_eq!(status, StatusCode::OK);
            continue;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            !matches!(
                body["error"]["code"].as_str(),
                Some("no_such_route" | "method_not_allowed")
            ),
            "{method} {path} is documented but not served"
        );
        assert!(!status.is_server_error(), "{method} {path}: {status} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_disconnect_also_stops_the_redials_of_a_peer_that_dropped() {
    let node = ApiNode::start(|_| {}, None).await;
    // A process killed outright: a drop, not a graceful leave (which would make the peer `left`, not redialled).
    let mut dropped = crate::support::binary::RunningBinary::loopback(&[]);
    let other_peer: libp2p::PeerId = dropped.peer_id().parse().unwrap();
    let connect = json!({"address": dropped.address()});
    let (status, _) = node.call(Method::POST, "/v1/peers", Some(connect)).await;
    assert_eq!(status, StatusCode::OK);
    dropped.signal_and_wait("KILL");
    eventually("the dropped peer to be redialled", || async {
        matches!(
            peer_state(&node, other_peer).await,
            Some((state, _)) if state == "disconnected" || state == "reconnecting"
        )
    })
    .await;
    let (status, answer) = node
        .call(Method::DELETE, &format!("/v1/peers/{}", other_peer), None)
        .await;
    assert_eq!(
        (status, &answer["disconnected"], &answer["blocked_for_ms"]),
        (StatusCode::OK, &json!(false), &json!(600_000)),
        "{answer}"
    );
    eventually("the peer to be removed", || is_in_state(&node, other_peer, "removed")).await;
    // An absence, so watched for a while: twice the first redial delay (1 s), when a redial would be due.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        is_in_state(&node, other_peer, "removed").await,
        "no redials after the block"
    );
    let (status, _) = node
        .call(
            Method::DELETE,
            &format!("/v1/peers/{}?for=0s", libp2p::PeerId::random()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown peer is still not_connected");
}

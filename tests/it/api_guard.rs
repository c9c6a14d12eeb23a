//! Who may drive the API and what a refused request costs: a flood of tokenless junk leaves the metrics (and so the
//! memory they hold) as they were, a foreign `Host` or another origin's page cannot drive a tokenless API, the bearer
//! scheme is case-insensitive, and every error, whoever produced it, is one short JSON shape.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use swarmnode::api::limits::ApiLimits;

use crate::support::raw_http::{LimitedApi, exchange, last_json};

const TOKEN: &str = "s3cret";

async fn metrics_text(api: &LimitedApi) -> String {
    let response = reqwest::Client::new()
        .get(api.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tokenless_junk_leaves_the_metrics_as_they_were() {
    let api = LimitedApi::start(Some(TOKEN), ApiLimits::default()).await;
    let before = metrics_text(&api).await;
    let junk_method = format!("M{}", "X".repeat(4000));
    // Pipelined junk: the first request of each connection is refused 401 and the connection closed with it, so
    // what is pipelined behind it is never parsed; the attacker must open a connection per request.
    let connections = 500;
    for connection in 0..connections {
        let mut request = String::new();
        for i in 0..4 {
            let path = format!("/x/{connection}/{i}/{}", "p".repeat(200));
            request.push_str(&format!(
                "{junk_method}{connection}x{i} {path} HTTP/1.1\r\nHost: evil{i}.example\r\n\r\n"
            ));
        }
        let answers = exchange(&api, request.as_bytes()).await;
        assert_eq!(answers.statuses(), [401], "one answer, then closed");
        assert!(answers.text.to_ascii_lowercase().contains("www-authenticate: bearer"));
        assert!(answers.closed_after.is_some());
    }
    let after = metrics_text(&api).await;
    assert!(
        !after.contains("XXXX") && !after.contains("evil"),
        "request text in the metrics"
    );
    let refused = format!("swarmnode_api_refused_total{{reason=\"unauthorized\"}} {connections}");
    assert!(after.contains(&refused), "{refused} missing");
    // The same series (values aside) before and after: nothing was added per request.
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' ').map(|(name, _)| name.to_owned()))
            .filter(|name| !name.starts_with("swarmnode_api_refused") && !name.starts_with("swarmnode_api_requests"))
            .collect()
    };
    assert_eq!(series(&before), series(&after));
    assert!(
        after.len() < before.len() + 1024,
        "{} → {} bytes",
        before.len(),
        after.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenless_api_serves_only_loopback_host_names_and_refuses_other_origins_changes() {
    let api = LimitedApi::start(None, ApiLimits::default()).await;
    let rebound = exchange(
        &api,
        b"GET /v1/node HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(rebound.statuses(), [403]);
    assert_eq!(last_json(&rebound.text)["error"]["code"], "forbidden_host");
    let named = exchange(
        &api,
        b"GET /v1/node HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(named.statuses(), [200]);

    // A form on another site posting to the API: no preflight, no body read, and yet it must not join the topic.
    let port = api.api.address.port();
    let form = format!(
        "POST /v1/topics/evil HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=b"
    );
    let posted = exchange(&api, form.as_bytes()).await;
    assert_eq!(posted.statuses(), [403], "{}", posted.text);
    assert_eq!(last_json(&posted.text)["error"]["code"], "forbidden_origin");
    let fetched = exchange(
        &api,
        format!(
            "DELETE /v1/topics/swarmnode HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nSec-Fetch-Site: cross-site\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(fetched.statuses(), [403]);
    let cross_site_stream = exchange(
        &api,
        b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        cross_site_stream.statuses(),
        [403],
        "another origin cannot hold an event stream either"
    );
    let topics = api.node.status().await.topics;
    assert!(
        !topics.contains_key("evil") && topics.contains_key("swarmnode"),
        "{topics:?}"
    );

    // The API's own page (same origin) may.
    let own = format!(
        "POST /v1/topics/own HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(exchange(&api, own.as_bytes()).await.statuses(), [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_any_host_is_served_and_the_scheme_is_case_insensitive() {
    let api = LimitedApi::start(Some(TOKEN), ApiLimits::default()).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = format!(
            "GET /v1/node HTTP/1.1\r\nHost: node.example:5100\r\nAuthorization: {scheme} {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(exchange(&api, request.as_bytes()).await.statuses(), [200], "{scheme}");
    }
    let basic =
        format!("GET /v1/node HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {TOKEN}\r\nConnection: close\r\n\r\n");
    assert_eq!(exchange(&api, basic.as_bytes()).await.statuses(), [401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_one_short_json_shape() {
    let limits = ApiLimits {
        request_timeout: Duration::from_millis(300),
        ..ApiLimits::default()
    };
    let api = LimitedApi::start(None, limits).await;
    let http = reqwest::Client::new();
    let call = |method: Method, path: &str, body: Option<String>| {
        let mut request = http
            .request(method, api.url(path))
            .header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let json = response.headers()["content-type"] == "application/json";
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, json, body)
        }
    };
    let long = "x".repeat(5000);
    // A port that accepts and never answers: a dial to it outlasts the request timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = format!("/ip4/127.0.0.1/tcp/{}", silent.local_addr().unwrap().port());
    let cases = [
        (
            Method::DELETE,
            "/v1/peers/%FF%FE".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            format!("/v1/peers/{long}"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/peers".to_owned(),
            Some(json!({"address": long}).to_string()),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/publish".to_owned(),
            Some(format!("{{\"{long}\": 1}}")),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/v1/events?types={long}"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, format!("/v1/{long}"), None, StatusCode::NOT_FOUND),
        (Method::PUT, "/v1/node".to_owned(), None, StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::POST,
            "/v1/peers".to_owned(),
            Some(json!({"address": silent_address}).to_string()),
            StatusCode::REQUEST_TIMEOUT,
        ),
    ];
    for (method, path, body, expected) in cases {
        let shown = format!("{method} {}", &path[..path.len().min(40)]);
        let (status, json, answer) = call(method, &path, body).await;
        assert_eq!(status, expected, "{shown}: {answer}");
        assert!(json, "{shown}: not JSON");
        let code = answer["error"]["code"].as_str().unwrap_or("");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(!code.is_empty() && !message.is_empty(), "{shown}: {answer}");
        assert!(message.len() <= 600, "{shown}: a {}-byte message", message.len());
        assert!(
            !message.contains(&"x".repeat(161)),
            "{shown}: quotes more than 160 bytes: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_32_kib_is_refused_431_and_the_api_serves_on() {
    let api = LimitedApi::start(None, ApiLimits::default()).await;
    let huge = format!(
        "GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(40 << 10)
    );
    let refused = exchange(&api, huge.as_bytes()).await;
    assert_eq!(
        refused.statuses(),
        [431],
        "{}",
        &refused.text[..refused.text.len().min(200)]
    );
    assert!(refused.closed_after.is_some(), "the connection is closed");
    let fits = format!(
        "GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(16 << 10)
    );
    assert_eq!(exchange(&api, fits.as_bytes()).await.statuses(), [200]);
}

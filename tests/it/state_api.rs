//! The replicated map as a program and an operator use it, through the real binary's HTTP API and CLI: values written
//! as text or base64 read back with the version the write answered; keys span path segments, and the key named
//! `watch` is still a key; a listing comes in pages that chain by cursor; a watch streams the changes under its
//! prefix; a read can wait for a version; bad keys, TTLs, bodies and oversize values get a clear 4xx, a version that
//! never arrives a 504; `swarmnode state` puts, gets, lists and deletes.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use base64::Engine;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    DEADLINE,
    binary::{RunningBinary, swarmnode},
    process::BINARY,
};

/// Largest value by default (`--max-value-size`).
const MAX_VALUE: usize = 64 << 10;

async fn call(api: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{api}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Writes `body` under `key` and answers the write's version.
async fn put(api: &str, key: &str, body: Value) -> String {
    let (status, answer) = call(api, Method::PUT, &format!("/v1/state/{key}"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{key}: {answer}");
    answer["version"].as_str().expect("a version").to_owned()
}

fn code(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or("none"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_read_back_as_written_listings_come_in_pages_and_deletes_stick() {
    let node = RunningBinary::loopback(&[]);
    let api = node.api.clone().unwrap();
    let version = put(&api, "config/colour", json!({"value": "blue"})).await;
    let (status, entry) = call(&api, Method::GET, "/v1/state/config/colour", None).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!((&entry["value"], &entry["version"]), (&json!("blue"), &json!(version)));
    assert_eq!(entry["origin"], node.peer_id());
    assert!(entry.get("expires").is_none(), "{entry}");

    put(&api, "config%2Fbytes", json!({"value_base64": "AP8="})).await;
    let (_, entry) = call(&api, Method::GET, "/v1/state/config/bytes", None).await;
    assert_eq!(
        (&entry["value_base64"], entry.get("value")),
        (&json!("AP8="), None),
        "{entry}"
    );
    let (status, leased) = call(
        &api,
        Method::PUT,
        "/v1/state/lock/leader",
        Some(json!({"value": "me", "ttl": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{leased}");
    assert!(leased["expires"].as_str().is_some(), "{leased}");

    // The key named `watch`: written at its plain path (the watch route only takes GET), read percent-encoded.
    put(&api, "watch", json!({"value": "not a stream"})).await;
    let (status, entry) = call(&api, Method::GET, "/v1/state/%77atch", None).await;
    assert_eq!((status, &entry["value"]), (StatusCode::OK, &json!("not a stream")));
    let (status, _) = call(&api, Method::DELETE, "/v1/state/watch", None).await;
    assert_eq!(status, StatusCode::OK);

    for n in 0..5 {
        put(&api, &format!("page/{n}"), json!({"value": n.to_string()})).await;
    }
    let mut keys = Vec::new();
    let mut path = "/v1/state?prefix=page/&limit=2".to_owned();
    loop {
        let (status, page) = call(&api, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 2, "{page}");
        keys.extend(entries.iter().map(|e| e["key"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/state?prefix=page/&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(keys, ["page/0", "page/1", "page/2", "page/3", "page/4"]);

    let (status, deleted) = call(&api, Method::DELETE, "/v1/state/page/2", None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let newer = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap() > version.parse::<u64>().unwrap();
    assert!(
        newer(&deleted["version"]),
        "a later write has a higher version: {deleted}"
    );
    let gone = call(&api, Method::GET, "/v1/state/page/2", None).await;
    assert_eq!(code(&gone), (StatusCode::NOT_FOUND, "key_not_found"));
    let (_, page) = call(&api, Method::GET, "/v1/state?prefix=page/", None).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 4, "{page}");
    assert!(page.get("next_cursor").is_none(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_streams_the_changes_under_its_prefix_and_a_read_can_wait_for_a_version() {
    let node = RunningBinary::loopback(&[]);
    let api = node.api.clone().unwrap();
    let stream = reqwest::Client::new()
        .get(format!("{api}/v1/state/watch?prefix=w/"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut body = stream.bytes_stream();
    put(&api, "elsewhere", json!({"value": "unseen"})).await;
    let version = put(&api, "w/1", json!({"value": "one"})).await;
    call(&api, Method::DELETE, "/v1/state/w/1", None).await;

    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while text.matches("event: state_changed").count() < 2 {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("two changes on the stream")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let changes: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(changes.len(), 2, "only keys under the prefix: {text}");
    let first = &changes[0];
    assert_eq!(
        (&first["event"], &first["key"], &first["op"], &first["source"]),
        (&json!("state_changed"), &json!("w/1"), &json!("put"), &json!("local"))
    );
    assert_eq!((&first["version"], &first["data"]), (&json!(version), &json!("one")));
    assert_eq!((&changes[1]["op"], changes[1].get("data")), (&json!("delete"), None));

    // A read waiting for a version answers once a later write lands.
    let later = version.parse::<u64>().unwrap() + 1;
    let waiting = tokio::spawn({
        let api = api.clone();
        async move {
            call(
                &api,
                Method::GET,
                &format!("/v1/state/w/2?min_version={later}&wait=30s"),
                None,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&api, "w/2", json!({"value": "two"})).await;
    let (status, entry) = waiting.await.unwrap();
    assert_eq!((status, &entry["value"]), (StatusCode::OK, &json!("two")), "{entry}");
    // One that never comes: 504 after the wait.
    let future = version.parse::<u64>().unwrap() + (1 << 40);
    let path = format!("/v1/state/w/2?min_version={future}&wait=300ms");
    let never = call(&api, Method::GET, &path, None).await;
    assert_eq!(
        code(&never),
        (StatusCode::GATEWAY_TIMEOUT, "version_not_visible"),
        "{}",
        never.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_oversize_values_get_a_clear_4xx() {
    let node = RunningBinary::loopback(&[]);
    let api = node.api.clone().unwrap();
    let long_key = format!("/v1/state/{}", "k".repeat(513));
    let cases: [(Method, &str, Option<Value>, StatusCode, &str); 6] = [
        (
            Method::GET,
            "/v1/state/a%01b",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_key",
        ),
        (
            Method::PUT,
            &long_key,
            Some(json!({"value": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_key",
        ),
        (
            Method::PUT,
            "/v1/state/k",
            Some(json!({"value": "x", "ttl": "10ms"})),
            StatusCode::BAD_REQUEST,
            "invalid_state_request",
        ),
        (
            Method::PUT,
            "/v1/state/k",
            Some(json!({"value": "x", "value_base64": "eA=="})),
            StatusCode::BAD_REQUEST,
            "invalid_value",
        ),
        (
            Method::GET,
            "/v1/state/missing",
            None,
            StatusCode::NOT_FOUND,
            "key_not_found",
        ),
        (
            Method::GET,
            "/v1/state?limit=1001",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_state_request",
        ),
    ];
    for (method, path, body, status, expected) in cases {
        let answer = call(&api, method.clone(), path, body).await;
        assert_eq!(code(&answer), (status, expected), "{method} {path}: {}", answer.1);
        assert!(answer.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // The largest value fits, as text and as base64; one byte more is refused, naming the flag.
    put(&api, "big/text", json!({"value": "x".repeat(MAX_VALUE)})).await;
    let encoded = base64::engine::general_purpose::STANDARD.encode(vec![0xffu8; MAX_VALUE]);
    put(&api, "big/bytes", json!({"value_base64": encoded})).await;
    let (_, entry) = call(&api, Method::GET, "/v1/state/big/bytes", None).await;
    assert_eq!(entry["value_base64"], json!(encoded));
    let over = call(
        &api,
        Method::PUT,
        "/v1/state/big/over",
        Some(json!({"value": "x".repeat(MAX_VALUE + 1)})),
    )
    .await;
    assert_eq!(
        code(&over),
        (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"),
        "{}",
        over.1
    );
    let message = over.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--max-value-size") && message.contains("65536"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_puts_gets_lists_and_deletes() {
    let node = RunningBinary::loopback(&[]);
    let api = node.api.clone().unwrap();
    let run = |args: &[&str]| {
        let output = swarmnode(&[args, &["--api", &api]].concat());
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };
    let (ok, wrote, stderr) = run(&["state", "put", "cli/colour", "blue", "--ttl", "1h"]);
    assert!(ok, "{stderr}");
    assert!(
        wrote.starts_with("wrote cli/colour (version ") && wrote.contains("expires"),
        "{wrote}"
    );
    assert_eq!(run(&["state", "get", "cli/colour"]).1, "blue\n");
    let (_, json, _) = run(&["state", "get", "cli/colour", "--json"]);
    let entry: Value = serde_json::from_str(&json).unwrap();
    let version = entry["version"].as_str().unwrap().to_owned();
    let (ok, waited, stderr) = run(&["state", "get", "cli/colour", "--min-version", &version, "--wait", "2s"]);
    assert!(ok && waited == "blue\n", "{waited} {stderr}");

    // Stdin: text loses its line end.
    let mut put = Command::new(BINARY)
        .args(["state", "put", "cli/note", "-", "--api", &api])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(b"from stdin\n").unwrap();
    assert!(put.wait().unwrap().success());
    assert_eq!(run(&["state", "get", "cli/note"]).1, "from stdin\n");

    let (_, listed, _) = run(&["state", "list", "--prefix", "cli/", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["cli/colour", "cli/note"]);
    let (_, table, _) = run(&["state", "list", "--prefix", "cli/", "--limit", "1"]);
    assert!(
        table.starts_with("KEY") && table.contains("cli/colour") && !table.contains("cli/note"),
        "{table}"
    );

    let (ok, deleted, _) = run(&["state", "del", "cli/colour"]);
    assert!(ok && deleted.starts_with("deleted cli/colour"), "{deleted}");
    let (ok, _, stderr) = run(&["state", "get", "cli/colour"]);
    assert!(!ok && stderr.contains("key_not_found"), "{stderr}");
    let (ok, _, stderr) = run(&["state", "get", ""]);
    assert!(!ok && stderr.contains("invalid key"), "{stderr}");
}

//! The service registry as an operator drives it, through the real binary's API and CLI: a TTL-checked service
//! registered over HTTP goes critical until the application reports it, passing with its note, and critical again
//! when the TTL runs out; bad registrations get a clear 4xx and change nothing; services registered through the API
//! survive a restart and a deregistration sticks; `swarmnode service`, `members`, `services` and `route` print what
//! the node knows.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    binary::{RunningBinary, swarmnode},
    eventually,
};

const FLAGS: [&str; 6] = ["--member-interval", "300ms", "--member-ttl", "1s", "--name", "svc-node"];

async fn call(api: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{api}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The catalog entry of service `id` on this node.
async fn instance(api: &str, id: &str) -> Option<Value> {
    let (status, listed) = call(api, Method::GET, "/v1/services", None).await;
    assert_eq!(status, StatusCode::OK);
    listed.as_array().unwrap().iter().find(|s| s["id"] == id).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_service_is_critical_until_reported_passing_and_again_when_its_ttl_runs_out() {
    let node = RunningBinary::loopback(&FLAGS);
    let api = node.api.clone().unwrap();
    let body = json!({"name": "worker", "port": 7000, "tags": ["v1"], "check": {"ttl": "1s"}});
    let (status, answer) = call(&api, Method::PUT, "/v1/services/worker", Some(body)).await;
    assert_eq!(
        (status, &answer["result"]),
        (StatusCode::OK, &json!("registered")),
        "{answer}"
    );
    let fresh = instance(&api, "worker").await.unwrap();
    assert_eq!(
        (&fresh["status"], &fresh["output"]),
        (&json!("critical"), &json!("not checked yet"))
    );
    assert_eq!(fresh["tags"], json!(["v1"]));

    let (status, _) = call(&api, Method::PUT, "/v1/services/worker/pass?note=queue%20drained", None).await;
    assert_eq!(status, StatusCode::OK);
    let passing = instance(&api, "worker").await.unwrap();
    assert_eq!(
        (&passing["status"], &passing["output"]),
        (&json!("passing"), &json!("queue drained"))
    );
    node.wait_for("a service_health event", |line| {
        line["event"] == "service_health" && line["service"] == "worker" && line["to"] == "passing"
    });
    eventually("the TTL runs out", || async {
        instance(&api, "worker").await.unwrap()["output"] == "TTL expired"
    })
    .await;
    assert_eq!(instance(&api, "worker").await.unwrap()["status"], "critical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_and_updates_are_refused_with_the_reason() {
    let node = RunningBinary::loopback(&FLAGS);
    let api = node.api.clone().unwrap();
    let cases = [
        (
            json!({"name": "web", "port": 80, "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            json!({"name": "web", "port": 80, "check": {"http": "http://10.0.0.1/health"}}),
            StatusCode::BAD_REQUEST,
            "probes no other host",
        ),
        (
            json!({"name": "web", "port": 80, "check": {"http": "http://127.0.0.1/", "ttl": "1s"}}),
            StatusCode::BAD_REQUEST,
            "exactly one of http, tcp and ttl",
        ),
        (json!({"name": "", "port": 80}), StatusCode::BAD_REQUEST, "name"),
    ];
    for (body, expected, mention) in cases {
        let (status, answer) = call(&api, Method::PUT, "/v1/services/web", Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(mention), "{body}: {message} should mention {mention}");
    }
    let (status, answer) = call(
        &api,
        Method::PUT,
        "/v1/services/a%20b",
        Some(json!({"name": "x", "port": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = call(&api, Method::PUT, "/v1/services/nothing/pass", None).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("service_not_found"))
    );
    call(
        &api,
        Method::PUT,
        "/v1/services/plain",
        Some(json!({"name": "plain", "port": 1})),
    )
    .await;
    let (status, answer) = call(&api, Method::PUT, "/v1/services/plain/fail", None).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (StatusCode::CONFLICT, &json!("service_conflict"))
    );
    let (status, _) = call(&api, Method::PUT, "/v1/services/plain/maybe", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let listed = call(&api, Method::GET, "/v1/services", None).await.1;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["plain"], "nothing refused was registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_registered_through_the_api_survive_a_restart_and_deregistration_sticks() {
    let mut node = RunningBinary::loopback(&FLAGS);
    let api = node.api.clone().unwrap();
    let register = swarmnode(&[
        "service",
        "register",
        "cache=6379,tag=redis,check=ttl:30s",
        "--api",
        &api,
    ]);
    assert!(
        register.status.success(),
        "{}",
        String::from_utf8_lossy(&register.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&register.stdout), "cache: registered\n");
    node.terminate();

    let mut node = node.restart(&FLAGS);
    let api = node.api.clone().unwrap();
    let kept = instance(&api, "cache")
        .await
        .expect("the service is back after a restart");
    assert_eq!((&kept["port"], &kept["tags"]), (&json!(6379), &json!(["redis"])));
    let pass = swarmnode(&["service", "pass", "cache", "--note", "warm", "--api", &api]);
    assert!(pass.status.success(), "{}", String::from_utf8_lossy(&pass.stderr));

    let members = swarmnode(&["members", "--api", &api]);
    let table = String::from_utf8_lossy(&members.stdout);
    assert!(
        table.contains("svc-node (this node)") && table.contains("cache:passing"),
        "{table}"
    );
    let services = String::from_utf8_lossy(&swarmnode(&["services", "--api", &api]).stdout).into_owned();
    assert!(
        services.contains("cache") && services.contains("passing") && services.contains("warm"),
        "{services}"
    );
    let route = String::from_utf8_lossy(&swarmnode(&["route", "user:42", "--service", "cache", "--api", &api]).stdout)
        .into_owned();
    assert!(route.contains("svc-node") && route.contains(":6379"), "{route}");

    let gone = swarmnode(&["service", "deregister", "cache", "--api", &api]);
    assert!(gone.status.success());
    node.terminate();
    let node = node.restart(&FLAGS);
    let api = node.api.clone().unwrap();
    assert!(
        instance(&api, "cache").await.is_none(),
        "a deregistered service stays gone"
    );
}

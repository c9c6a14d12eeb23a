//! The real binary's promise on disk: every write the API acknowledged during a burst of concurrent writes is there
//! after `kill -9` and a restart, with the version it was acknowledged with; and a state database that cannot be
//! opened stops `swarmnode run` with a message naming the file, leaving it untouched.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::binary::{RunningBinary, swarmnode};

/// Writers hammering the API at once.
const WRITERS: usize = 8;

async fn all_keys(client: &reqwest::Client, api: &str, prefix: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{api}/v1/state?prefix={prefix}&limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        for entry in page["entries"].as_array().unwrap() {
            keys.insert(
                entry["key"].as_str().unwrap().to_owned(),
                entry["version"].as_str().unwrap().to_owned(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return keys,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_write_burst_loses_nothing_acknowledged() {
    let node = RunningBinary::loopback(&[]);
    let api = node.api.clone().unwrap();
    let client = reqwest::Client::new();
    let acknowledged: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, api, acknowledged) = (client.clone(), api.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let key = format!("burst-{writer}-{n:05}");
                let answer = client
                    .put(format!("{api}/v1/state/{key}"))
                    .json(&json!({"value": format!("value {n}")}))
                    .send()
                    .await;
                // Once the node is killed, requests fail: the writer stops.
                let Ok(answer) = answer else { return };
                if !answer.status().is_success() {
                    return;
                }
                let Ok(body) = answer.json::<Value>().await else { return };
                let version = body["version"].as_str().expect("a version").to_owned();
                acknowledged.lock().unwrap().insert(key, version);
            }
        }));
    }
    // Kill in the middle of the burst, once a few hundred writes are acknowledged.
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(started.elapsed() < Duration::from_secs(60), "the burst is too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut node = node;
    node.signal_and_wait("KILL");
    for writer in writers {
        let _ = writer.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let node = node.restart(&["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--heartbeat", "1s"]);
    let api = node.api.clone().unwrap();
    let stored = all_keys(&client, &api, "burst-").await;
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(key, version)| stored.get(*key) != Some(version))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

#[test]
fn a_corrupt_state_database_stops_the_binary_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let garbage = b"not a database, just some bytes".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let output = swarmnode(&[
        "run",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "off",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("state.redb") && stderr.contains("cannot be opened"),
        "{stderr}"
    );
    assert!(stderr.contains("move it away"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

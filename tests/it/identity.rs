//! A node's identity survives restarts, a damaged key stops it with a clear error, and two nodes cannot share one
//! data directory or one key (wherever it lives), nor can a running node's key be replaced under it.

use std::time::{Duration, Instant};

use swarmnode::{
    config::NodeConfig,
    node::{self, RunningNode},
};

use crate::support::{DEADLINE, TestNode, binary::swarmnode, test_config};

/// Polls `attempt` until it succeeds. A lock just released may still be held for a moment: another test's child
/// process, between its fork and its exec, holds a copy of every descriptor, the lock's too (the node itself spawns
/// no processes, so this only ever happens in tests).
async fn once_unlocked<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(mut attempt: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(e) if Instant::now() >= deadline => panic!("the lock is released when the node stops: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn spawn_once_unlocked(config: &NodeConfig) -> RunningNode {
    once_unlocked(|| node::spawn(config.clone())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_with_the_same_key_keeps_the_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let mut first = TestNode::start_with(config.clone(), dir).await;
    let peer_id = first.peer_id;
    first.stop().await;
    let second = spawn_once_unlocked(&config).await;
    assert_eq!(second.handle.peer_id(), peer_id);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_key_file_stops_the_node_with_a_clear_error_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    std::fs::write(&config.key_path, b"\x08\x01\x12\x40truncated").unwrap();
    let error = node::spawn(config.clone())
        .await
        .err()
        .expect("a corrupt key is refused");
    let message = format!("{error:#}");
    assert!(message.contains("corrupt"), "{message}");
    assert!(message.contains(&config.key_path.display().to_string()), "{message}");
    assert_eq!(std::fs::read(&config.key_path).unwrap(), b"\x08\x01\x12\x40truncated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_data_dir_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let mut running = TestNode::start_with(config.clone(), tempfile::tempdir().unwrap()).await;
    let error = node::spawn(config.clone()).await.err().expect("the data dir is locked");
    assert!(format!("{error:#}").contains("pass another --data-dir"), "{error:#}");
    running.stop().await;
    spawn_once_unlocked(&config).await.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_use_refuses_a_second_node_and_key_generate_force_until_released() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("shared.key");
    let first_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&first_dir);
    config.key_path = key.clone();
    let mut running = TestNode::start_with(config, first_dir).await;

    let other_dir = tempfile::tempdir().unwrap();
    let mut second = test_config(&other_dir);
    second.key_path = key.clone();
    let error = format!(
        "{:#}",
        node::spawn(second.clone()).await.err().expect("the key is locked")
    );
    assert!(
        error.contains(&format!("key file {} is in use by a running swarmnode", key.display())),
        "{error}"
    );

    let key_arg = key.to_str().unwrap();
    let replaced = swarmnode(&["key", "generate", "--out", key_arg, "--force"]);
    assert!(!replaced.status.success());
    let stderr = String::from_utf8_lossy(&replaced.stderr);
    assert!(stderr.contains("in use by a running swarmnode"), "{stderr}");
    let id = swarmnode(&["id", "--key", key_arg]);
    assert_eq!(
        String::from_utf8(id.stdout).unwrap().trim(),
        running.peer_id.to_string(),
        "the key is unchanged, and `id` may still read it"
    );
    let mut names: Vec<_> = std::fs::read_dir(keys.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["shared.key"], "no temporary file left");

    running.stop().await;
    spawn_once_unlocked(&second).await.shutdown().await;
    once_unlocked(|| async {
        let output = swarmnode(&["key", "generate", "--out", key_arg, "--force"]);
        match output.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_special_key_file_is_refused_in_our_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    std::fs::write(&config.key_path, b"").unwrap();
    let error = format!("{:#}", node::spawn(config.clone()).await.err().expect("refused"));
    assert!(
        error.contains(&format!("key file {} is empty", config.key_path.display())),
        "{error}"
    );
    assert!(!error.contains("cargo feature"), "{error}");

    config.key_path = "/dev/zero".into();
    let error = format!("{:#}", node::spawn(config).await.err().expect("refused"));
    assert!(
        error.contains("key file /dev/zero is not a regular file (it is a character device)"),
        "{error}"
    );
}

//! A node's identity survives restarts, a damaged key stops it with a clear error, and two nodes cannot share one
//! data directory.

use swarmnode::node;

use crate::support::{TestNode, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_with_the_same_key_keeps_the_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let mut first = TestNode::start_with(config.clone(), dir).await;
    let peer_id = first.peer_id;
    first.stop().await;
    let dir = first.dir;
    let second = TestNode::start_with(config, dir).await;
    assert_eq!(second.peer_id, peer_id);
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
    let restarted = node::spawn(config)
        .await
        .expect("the lock is released when the node stops");
    restarted.shutdown().await;
}

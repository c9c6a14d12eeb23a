//! Private swarms (`--swarm-key`): nodes sharing the key connect and gossip; a node without it, or with another
//! key, cannot connect at all, either way; QUIC is left out; a malformed key file stops the node with the line at
//! fault.

use std::path::PathBuf;

use bytes::Bytes;
use swarmnode::node::{EventKind, PublishRequest};

use crate::support::{
    TestNode,
    binary::{RunningBinary, swarmnode},
    wait_for_subscribers,
};

fn new_key(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let path = dir.path().join(name);
    let output = swarmnode(&["key", "swarm-key", "--out", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    path
}

async fn keyed(key: Option<&PathBuf>) -> TestNode {
    let key = key.cloned();
    TestNode::start(move |c| {
        c.swarm_key = key;
        // An outsider's dial stalls in the pnet handshake until this ends it.
        c.dial_timeout = std::time::Duration::from_secs(2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_same_swarm_key_connect() {
    let keys = tempfile::tempdir().unwrap();
    let (ours, theirs) = (new_key(&keys, "swarm.key"), new_key(&keys, "other.key"));

    let first = keyed(Some(&ours)).await;
    let mut second = keyed(Some(&ours)).await;
    second
        .handle
        .dial(first.tcp_address.clone())
        .await
        .expect("members connect");
    wait_for_subscribers(&first, "swarmnode", 1).await;
    first
        .handle
        .publish(PublishRequest {
            topic: "swarmnode".into(),
            payload: Bytes::from_static(b"members only"),
            content_type: None,
            id: None,
        })
        .await
        .unwrap();
    let data = second
        .wait_for("the members' message", |e| match e {
            EventKind::Message { data, .. } => Some(data.0.clone()),
            _ => None,
        })
        .await;
    assert_eq!(data, Bytes::from_static(b"members only"));

    for outsider in [keyed(None).await, keyed(Some(&theirs)).await] {
        assert!(
            outsider.handle.dial(first.tcp_address.clone()).await.is_err(),
            "an outsider got in"
        );
        assert!(
            first.handle.dial(outsider.tcp_address.clone()).await.is_err(),
            "a member reached out"
        );
        assert!(outsider.status().await.connected_peers.is_empty());
    }
    assert_eq!(first.status().await.connected_peers, vec![second.peer_id]);
}

#[test]
fn a_malformed_swarm_key_stops_the_node_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("swarm.key");
    std::fs::write(&key, "/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n").unwrap();
    let output = swarmnode(&[
        "run",
        "--no-mdns",
        "--api",
        "off",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--swarm-key",
        key.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("line 3") && stderr.contains("hexadecimal"), "{stderr}");
}

#[test]
fn a_private_node_does_not_listen_on_quic() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(&dir, "swarm.key");
    let node = RunningBinary::loopback(&[
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--swarm-key",
        key.to_str().unwrap(),
    ]);
    let listening = node.wait_for("a listen address", |l| l["event"] == "listening");
    assert!(listening["address"].as_str().unwrap().contains("/tcp/"), "{listening}");
    // QUIC is never listened on, so no QUIC address can show up in status, whenever it is asked.
    let status = swarmnode(&["status", "--json", "--api", node.api.as_deref().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let addresses = status["listen_addresses"].as_array().unwrap();
    assert!(
        addresses.iter().all(|a| !a.as_str().unwrap().contains("quic")),
        "{addresses:?}"
    );
}

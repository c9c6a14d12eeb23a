//! The replicated map across in-process nodes on loopback: concurrent writes of one key converge everywhere, a late
//! joiner and a restarted node catch up with no new write, both sides of a partition keep every acknowledged write
//! that no later write superseded, leases expire everywhere, a deleted key never comes back (even after its tombstone
//! is collected), a write from a clock far ahead is refused, and a database that cannot be opened stops the node.

use std::time::Duration;

use bytes::Bytes;
use libp2p::identity::Keypair;
use swarmnode::{
    config::NodeConfig,
    node::{StateEntry, StatePage},
    wire::state::{Actor, Change, Deltas, STATE_TOPIC, STATE_VERSION, encode},
};

use crate::support::{
    TestNode, eventually,
    raw_peer::{RawPeer, Signing},
};

/// Fast members and sync rounds, so tests wait seconds, not minutes.
fn fast(config: &mut NodeConfig) {
    config.members.interval = Some(Duration::from_millis(300));
    config.members.ttl = Some(Duration::from_secs(1));
    config.state.sync_interval = Duration::from_millis(500);
}

/// No periodic rounds: only what a connection's own sync (or gossip) brings can arrive.
fn no_rounds(config: &mut NodeConfig) {
    fast(config);
    config.state.sync_interval = Duration::from_secs(3600);
}

async fn connect(a: &TestNode, b: &TestNode) {
    a.handle.dial(b.tcp_address.clone()).await.expect("dial");
}

async fn put(node: &TestNode, key: &str, value: &str) -> u64 {
    let write = node
        .handle
        .state_put(key, Bytes::copy_from_slice(value.as_bytes()), None)
        .await
        .expect("put");
    write.version.parse().expect("a decimal version")
}

async fn get(node: &TestNode, key: &str) -> Option<StateEntry> {
    node.handle.state_get(key, None, Duration::ZERO).await.ok()
}

async fn value(node: &TestNode, key: &str) -> Option<String> {
    get(node, key).await.and_then(|e| e.value)
}

async fn everything(node: &TestNode) -> Vec<(String, Option<String>, String)> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let StatePage { entries, next_cursor } =
            node.handle.state_list("", cursor.as_deref(), 1000).await.expect("list");
        all.extend(entries.into_iter().map(|e| (e.key, e.value, e.version)));
        match next_cursor {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

async fn same_map(nodes: &[&TestNode]) -> bool {
    let first = everything(nodes[0]).await;
    for node in &nodes[1..] {
        if everything(node).await != first {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_key_converge_to_the_same_value_everywhere() {
    let a = TestNode::start(fast).await;
    let b = TestNode::start(fast).await;
    let c = TestNode::start(fast).await;
    connect(&b, &a).await;
    connect(&c, &a).await;
    let (va, vb, vc) = tokio::join!(put(&a, "leader", "a"), put(&b, "leader", "b"), put(&c, "leader", "c"));
    let winner = [(va, "a"), (vb, "b"), (vc, "c")]
        .into_iter()
        .max()
        .map(|(_, v)| v.to_owned());
    eventually("every node holds the same value of the key", || async {
        let values = [
            value(&a, "leader").await,
            value(&b, "leader").await,
            value(&c, "leader").await,
        ];
        values.iter().all(|v| v.is_some() && *v == values[0])
    })
    .await;
    let held = value(&a, "leader").await;
    // Versions are the writes' clock times: the highest wins (a tie would fall to the peer id).
    if [va, vb, vc].iter().filter(|v| **v == va.max(vb).max(vc)).count() == 1 {
        assert_eq!(held, winner);
    }
    eventually("the maps are identical", || async { same_map(&[&a, &b, &c]).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_and_a_restarted_node_catch_up_with_no_new_write() {
    let a = TestNode::start(no_rounds).await;
    for i in 0..200 {
        put(&a, &format!("config/{i:03}"), &format!("value {i}")).await;
    }
    a.handle.state_delete("config/007").await.expect("delete");
    // The joiner connects after every write: only the sync on connecting can bring them.
    let mut late = TestNode::start(no_rounds).await;
    connect(&late, &a).await;
    eventually("the late joiner holds everything", || async {
        everything(&late).await.len() == 199
    })
    .await;
    assert_eq!(value(&late, "config/042").await.as_deref(), Some("value 42"));
    assert_eq!(get(&late, "config/007").await, None);

    // Restarted: what it had is on disk; what was written while it was down comes by sync.
    late.stop().await;
    put(&a, "config/new", "while you were away").await;
    let (config, dir) = (
        late.config.clone(),
        std::mem::replace(&mut late.dir, tempfile::tempdir().unwrap()),
    );
    let restarted = TestNode::start_with(config, dir).await;
    assert_eq!(
        everything(&restarted).await.len(),
        199,
        "its state is back from its database before any sync"
    );
    connect(&restarted, &a).await;
    eventually("the restarted node caught up", || async {
        value(&restarted, "config/new").await.as_deref() == Some("while you were away")
    })
    .await;
    eventually("the maps are identical", || async { same_map(&[&a, &restarted]).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_a_partition_keep_their_writes_and_converge_after_healing() {
    let a = TestNode::start(fast).await;
    let b = TestNode::start(fast).await;
    connect(&a, &b).await;
    put(&a, "shared", "before").await;
    eventually("b has the first write", || async {
        value(&b, "shared").await.is_some()
    })
    .await;
    // Partition: neither may connect for 3 s.
    a.handle
        .disconnect(b.peer_id, Duration::from_secs(3))
        .await
        .expect("disconnect");
    eventually("b sees the partition", || async {
        !b.status().await.connected_peers.contains(&a.peer_id)
    })
    .await;
    for i in 0..50 {
        put(&a, &format!("a/{i}"), "from a").await;
        put(&b, &format!("b/{i}"), "from b").await;
    }
    put(&a, "shared", "a, during the partition").await;
    let last = put(&b, "shared", "b, later during the partition").await;
    assert_eq!(value(&a, "b/0").await, None, "nothing crosses the partition");
    // Heal: a redials until the ban is over.
    eventually("the partition heals", || async {
        a.handle.dial(b.tcp_address.clone()).await.is_ok()
    })
    .await;
    eventually("the maps are identical", || async { same_map(&[&a, &b]).await }).await;
    let map = everything(&a).await;
    assert_eq!(
        map.len(),
        101,
        "every acknowledged write is there: 50 + 50 + the shared key"
    );
    assert_eq!(
        value(&a, "shared").await.as_deref(),
        Some("b, later during the partition")
    );
    assert_eq!(get(&a, "shared").await.unwrap().version, last.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expires_everywhere_and_a_deleted_key_stays_deleted() {
    let a = TestNode::start(fast).await;
    let b = TestNode::start(fast).await;
    connect(&a, &b).await;
    a.handle
        .state_put("lock/leader", Bytes::from_static(b"a"), Some(Duration::from_secs(2)))
        .await
        .expect("put with a ttl");
    put(&a, "gone", "soon deleted").await;
    eventually("b sees the lease", || async {
        value(&b, "lock/leader").await.is_some()
    })
    .await;
    eventually("b sees the key", || async { value(&b, "gone").await.is_some() }).await;
    a.handle.state_delete("gone").await.expect("delete");
    eventually("the delete reaches b", || async { get(&b, "gone").await.is_none() }).await;
    eventually("the lease ran out on both", || async {
        get(&a, "lock/leader").await.is_none() && get(&b, "lock/leader").await.is_none()
    })
    .await;
    // Both hold each other's digests: the tombstones are collected, and still nothing comes back.
    eventually("the tombstones are collected on a", || async {
        a.handle.state_summary().await.unwrap().tombstones == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get(&a, "gone").await, None);
    assert_eq!(get(&b, "gone").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_its_tombstones_were_collected_is_resynced_not_resurrecting() {
    let tombstones_short = |c: &mut NodeConfig| {
        fast(c);
        c.state.tombstone_ttl = Duration::from_secs(1);
    };
    let a = TestNode::start(tombstones_short).await;
    let mut b = TestNode::start(tombstones_short).await;
    connect(&b, &a).await;
    put(&a, "doomed", "v").await;
    put(&a, "kept", "v").await;
    eventually("b has both keys", || async { everything(&b).await.len() == 2 }).await;
    b.stop().await;
    a.handle.state_delete("doomed").await.expect("delete");
    eventually("a collected the tombstone", || async {
        a.handle.state_summary().await.unwrap().tombstones == 0
    })
    .await;
    let (config, dir) = (
        b.config.clone(),
        std::mem::replace(&mut b.dir, tempfile::tempdir().unwrap()),
    );
    let back = TestNode::start_with(config, dir).await;
    assert!(
        value(&back, "doomed").await.is_some(),
        "the stale value is still on b's disk"
    );
    connect(&back, &a).await;
    eventually("the full resync drops the deleted key on b", || async {
        get(&back, "doomed").await.is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get(&a, "doomed").await, None, "and it does not come back to a");
    assert!(value(&a, "kept").await.is_some());
    eventually("the maps are identical", || async { same_map(&[&a, &back]).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_from_a_clock_far_ahead_is_refused() {
    let node = TestNode::start(fast).await;
    let key = Keypair::generate_ed25519();
    let mut raw = RawPeer::start(key.clone(), Signing::Signed);
    raw.dial(node.tcp_address.clone());
    raw.wait_for("the connection", |event| {
        matches!(event, libp2p::swarm::SwarmEvent::ConnectionEstablished { .. }).then_some(())
    })
    .await;
    let peer = node.peer_id;
    raw.wait_for_subscription(peer, STATE_TOPIC).await;
    let now = uhlc::system_time_clock().0;
    let change = |key_name: &str, time: u64, version: u64| Change {
        key: key_name.into(),
        value: Some(Bytes::from_static(b"from the raw peer")),
        time,
        origin: raw.peer_id.to_bytes(),
        actor: Actor([7; 16]),
        version,
        expires: None,
    };
    let hour_ahead = now + uhlc::NTP64::from(Duration::from_secs(3600)).0;
    let deltas = Deltas {
        v: STATE_VERSION,
        changes: vec![change("future", hour_ahead, 1), change("present", now, 2)],
    };
    raw.publish_on(STATE_TOPIC, encode(&deltas));
    eventually("the present change is taken", || async {
        value(&node, "present").await.is_some()
    })
    .await;
    assert_eq!(
        get(&node, "future").await,
        None,
        "a change an hour ahead is never applied"
    );
    let metrics = node.handle.metrics().encode();
    assert!(
        metrics.contains("swarmnode_state_refused_total{reason=\"drift\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_opened_stops_the_node_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let garbage = vec![0x42; 8192];
    std::fs::write(&path, &garbage).unwrap();
    let config = crate::support::test_config(&dir);
    let error = match swarmnode::node::spawn(config).await {
        Ok(_) => panic!("a node started on a corrupt state database"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("state.redb") && error.contains("cannot be opened"),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "the file is left as it was");
}

//! Member records from a raw peer: one that publishes junk or forged records on the members topic is refused record
//! by record (and its own valid record still taken), a view exchange stuffed with thousands of validly signed
//! records of made-up members leaves the view within its count bound, shrinking back once they are reaped, and a
//! peer whose signed `left` record arrives with no leave notice is `left` in the peer table and never redialled.

use std::{collections::BTreeMap, time::Duration};

use libp2p::{identity::Keypair, swarm::SwarmEvent};
use swarmnode::{
    config::NodeConfig,
    node::{EventKind, MemberFilter},
    policy::liveness::PeerState,
    policy::members::{MemberLimits, MemberStatus},
    wire::members::{ExchangedRecord, Load, MEMBERS_TOPIC, MEMBERS_VERSION, MemberRecord, MembersExchange},
};

use crate::support::{
    TestNode, eventually,
    raw_peer::{RawPeer, Signing},
};

fn record(name: &str, seq: u64) -> MemberRecord {
    MemberRecord {
        v: MEMBERS_VERSION,
        incarnation: 1,
        seq,
        name: name.into(),
        tags: BTreeMap::from([("lang".into(), "rust".into())]),
        services: Vec::new(),
        weight: 1.0,
        load: Load::default(),
        addrs: Vec::new(),
        left: false,
    }
}

fn quick_reaping(config: &mut NodeConfig) {
    config.members.interval = Some(Duration::from_millis(300));
    config.members.ttl = Some(Duration::from_secs(1));
    config.members.reap_after = Duration::from_secs(1);
}

async fn connected(node: &TestNode, raw: &mut RawPeer) {
    raw.dial(node.tcp_address.clone());
    raw.wait_for("the connection", |event| {
        matches!(event, SwarmEvent::ConnectionEstablished { .. }).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_forged_records_are_refused_and_a_valid_one_taken() {
    let node = TestNode::start(quick_reaping).await;
    let key = Keypair::generate_ed25519();
    let mut raw = RawPeer::start(key.clone(), Signing::Signed);
    connected(&node, &mut raw).await;
    let someone_else = Keypair::generate_ed25519();
    let forged = record("forged", 1).seal(&someone_else).unwrap();
    let junk = vec![0xff; 64];
    let author = raw.peer_id;
    let own = record("raw", 1);
    // The node subscribes to the members topic; wait until the raw peer knows, or the publishes go nowhere.
    raw.wait_for_subscription(node.peer_id, MEMBERS_TOPIC).await;
    raw.publish_on(MEMBERS_TOPIC, junk);
    raw.publish_on(MEMBERS_TOPIC, forged);
    raw.publish_on(MEMBERS_TOPIC, own.seal(&key).unwrap());
    eventually("the raw peer's own record is taken", || async {
        let members = node.handle.members(MemberFilter::default()).await.unwrap();
        members
            .iter()
            .any(|m| m.peer == author && m.name == "raw" && m.status == MemberStatus::Alive)
    })
    .await;
    let members = node.handle.members(MemberFilter::default()).await.unwrap();
    assert!(
        members.iter().all(|m| m.name != "forged"),
        "a record about another peer is not taken from this one"
    );
    eventually("both bad records are counted", || async {
        node.status()
            .await
            .rejected_messages
            .get("member_record")
            .copied()
            .unwrap_or(0)
            >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuffed_view_exchange_stays_within_the_view_bound_and_is_reaped() {
    let node = TestNode::start(quick_reaping).await;
    let mut raw = RawPeer::start(Keypair::generate_ed25519(), Signing::Signed);
    connected(&node, &mut raw).await;
    let limit = MemberLimits::default().max_members;
    let records: Vec<ExchangedRecord> = (0..limit + 200)
        .map(|i| ExchangedRecord {
            envelope: record(&format!("fake-{i}"), 1)
                .seal(&Keypair::generate_ed25519())
                .unwrap(),
            age_ms: 0,
        })
        .collect();
    let exchange = MembersExchange {
        v: MEMBERS_VERSION,
        records,
    };
    let target = node.peer_id;
    raw.run(move |swarm| {
        swarm.behaviour_mut().members.send_request(&target, exchange);
    });
    eventually("the view fills up to its bound", || async {
        node.handle.members(MemberFilter::default()).await.unwrap().len() == limit
    })
    .await;
    eventually("the made-up members fail and are reaped", || async {
        let members = node.handle.members(MemberFilter::default()).await.unwrap();
        members.len() == 1 && members[0].local
    })
    .await;
    assert!(node.handle.status().await.is_ok(), "the node carries on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_record_without_a_leave_notice_marks_the_peer_left_and_it_is_not_redialled() {
    let mut node = TestNode::start(|_| {}).await;
    let key = Keypair::generate_ed25519();
    let mut raw = RawPeer::start(key.clone(), Signing::Signed);
    let author = raw.peer_id;
    connected(&node, &mut raw).await;
    raw.wait_for_subscription(node.peer_id, MEMBERS_TOPIC).await;
    raw.publish_on(MEMBERS_TOPIC, record("raw", 1).seal(&key).unwrap());
    eventually("the raw peer a member", || async {
        let members = node.handle.members(MemberFilter::default()).await.unwrap();
        members
            .iter()
            .any(|m| m.peer == author && m.status == MemberStatus::Alive)
    })
    .await;
    let leaving = MemberRecord {
        left: true,
        ..record("raw", 2)
    };
    raw.publish_on(MEMBERS_TOPIC, leaving.seal(&key).unwrap());
    node.wait_for("the raw peer left", |kind| match kind {
        EventKind::PeerState { peer, to, .. } if *peer == author && *to == PeerState::Left => Some(()),
        EventKind::PeerState { peer, to, .. } if *peer == author && *to != PeerState::Active => {
            panic!("the raw peer went {to:?} before it was left")
        }
        _ => None,
    })
    .await;
    // Its connection closing now is a departure the node was told of: no redial.
    drop(raw);
    node.wait_for("the connection closed", |kind| match kind {
        EventKind::Disconnected { peer, .. } if *peer == author => Some(()),
        EventKind::PeerState { peer, to, .. } if *peer == author && *to == PeerState::Reconnecting => {
            panic!("a peer that left was redialled")
        }
        _ => None,
    })
    .await;
    let peers = node.handle.peers().await.unwrap();
    let state = peers.iter().find(|p| p.peer == author).map(|p| p.state);
    assert!(matches!(state, Some(PeerState::Left) | None), "the peer is {state:?}");
}

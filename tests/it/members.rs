//! Members across a swarm on loopback: a late joiner sees every member at once (the view exchange, not the next
//! announcements), a graceful leave is `left` everywhere, a killed member goes suspect then failed on every other
//! node and comes back alive with a higher incarnation, a failing health check shows critical on every node and drops
//! out of routing, and every node routes a key to the same owners.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use libp2p::PeerId;
use swarmnode::{
    config::NodeConfig,
    node::{EventKind, MemberFilter, MemberInfo, RouteRequest, ServiceFilter},
    policy::members::MemberStatus,
    wire::members::Health,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestNode, binary::RunningBinary, eventually};

/// Records every 300 ms, suspect after 1 s unrenewed, failed after 3 s.
fn fast_members(config: &mut NodeConfig) {
    config.members.interval = Some(Duration::from_millis(300));
    config.members.ttl = Some(Duration::from_secs(1));
}

async fn members(node: &TestNode) -> Vec<MemberInfo> {
    node.handle
        .members(MemberFilter::default())
        .await
        .expect("node is running")
}

async fn status_of(node: &TestNode, peer: PeerId) -> Option<MemberStatus> {
    members(node)
        .await
        .into_iter()
        .find(|m| m.peer == peer)
        .map(|m| m.status)
}

async fn sees_alive(node: &TestNode, peers: &[PeerId]) -> bool {
    let listed = members(node).await;
    peers.iter().all(|peer| {
        listed
            .iter()
            .any(|m| m.peer == *peer && m.status == MemberStatus::Alive)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_sees_every_member_at_once() {
    // Announcements an hour apart: only the view exchange on connecting can tell the joiner about the others.
    let slow = |c: &mut NodeConfig| {
        c.members.interval = Some(Duration::from_secs(3600));
        c.members.ttl = Some(Duration::from_secs(3 * 3600));
    };
    let first = TestNode::start(slow).await;
    let bootstrap = first.tcp_address.clone();
    let mut others = Vec::new();
    for name in ["b", "c"] {
        let bootstrap = bootstrap.clone();
        others.push(
            TestNode::start(|c| {
                slow(c);
                c.members.name = name.into();
                c.bootstrap = vec![bootstrap];
            })
            .await,
        );
    }
    let peers: Vec<PeerId> = others.iter().map(|n| n.peer_id).collect();
    eventually("the first node sees b and c", || sees_alive(&first, &peers)).await;

    let joiner = TestNode::start(|c| {
        slow(c);
        c.bootstrap = vec![bootstrap];
    })
    .await;
    let everyone = [first.peer_id, peers[0], peers[1], joiner.peer_id];
    eventually("the joiner sees all four members", || sees_alive(&joiner, &everyone)).await;
    let listed = members(&joiner).await;
    let names: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"b") && names.contains(&"c"), "{names:?}");
    assert!(
        listed[0].local && listed[0].peer == joiner.peer_id,
        "the node itself is listed first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_is_left_on_every_other_node() {
    let a = TestNode::start(fast_members).await;
    let bootstrap = a.tcp_address.clone();
    let b = TestNode::start(|c| {
        fast_members(c);
        c.bootstrap = vec![bootstrap.clone()];
    })
    .await;
    let mut leaving = TestNode::start(|c| {
        fast_members(c);
        c.bootstrap = vec![bootstrap.clone()];
    })
    .await;
    let gone = leaving.peer_id;
    for node in [&a, &b] {
        let alive = [gone];
        eventually("everyone alive", || sees_alive(node, &alive)).await;
    }
    leaving.stop().await;
    for node in [&a, &b] {
        eventually("the leaver is left", || async {
            status_of(node, gone).await == Some(MemberStatus::Left)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_goes_suspect_then_failed_everywhere_and_returns_with_a_higher_incarnation() {
    let mut a = TestNode::start(fast_members).await;
    let bootstrap = a.tcp_address.to_string();
    let b = TestNode::start(|c| {
        fast_members(c);
        c.bootstrap = vec![bootstrap.parse().unwrap()];
    })
    .await;
    let flags = [
        "--bootstrap",
        bootstrap.as_str(),
        "--member-interval",
        "300ms",
        "--member-ttl",
        "1s",
    ];
    let mut victim = RunningBinary::loopback(&flags);
    let peer: PeerId = victim.peer_id().parse().unwrap();
    for node in [&a, &b] {
        let alive = [peer];
        eventually("the victim is alive", || sees_alive(node, &alive)).await;
    }
    let before = members(&a)
        .await
        .into_iter()
        .find(|m| m.peer == peer)
        .unwrap()
        .incarnation;

    victim.signal_and_wait("KILL");
    a.wait_for("the victim suspect", |kind| match kind {
        EventKind::Member {
            peer: p,
            to: Some(MemberStatus::Suspect),
            ..
        } if *p == peer => Some(()),
        _ => None,
    })
    .await;
    a.wait_for("the victim failed", |kind| match kind {
        EventKind::Member {
            peer: p,
            from: Some(MemberStatus::Suspect),
            to: Some(MemberStatus::Failed),
            ..
        } if *p == peer => Some(()),
        _ => None,
    })
    .await;
    eventually("the victim failed on b too", || async {
        status_of(&b, peer).await == Some(MemberStatus::Failed)
    })
    .await;
    let services = a.handle.services(ServiceFilter::default()).await.unwrap();
    assert!(services.iter().all(|s| s.peer != peer || s.status == Health::Critical));

    let _victim = victim.restart(&flags);
    for node in [&a, &b] {
        let alive = [peer];
        eventually("the victim alive again", || sees_alive(node, &alive)).await;
    }
    let after = members(&a)
        .await
        .into_iter()
        .find(|m| m.peer == peer)
        .unwrap()
        .incarnation;
    assert_eq!(after, before + 1, "a restart raises the incarnation");
}

/// An HTTP server on loopback answering every request with the status in `status`.
async fn health_server(status: Arc<AtomicU16>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let code = status.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_is_critical_on_every_node_and_leaves_the_route() {
    let status = Arc::new(AtomicU16::new(200));
    let port = health_server(status.clone()).await;
    let a = TestNode::start(fast_members).await;
    let bootstrap = a.tcp_address.clone();
    let service = format!("web=8080,check=http://127.0.0.1:{port}/health,interval=200ms,timeout=150ms");
    let web = TestNode::start(|c| {
        fast_members(c);
        c.bootstrap = vec![bootstrap.clone()];
        c.members.services = vec![service.parse().unwrap()];
    })
    .await;
    let c = TestNode::start(|c| {
        fast_members(c);
        c.bootstrap = vec![bootstrap.clone()];
    })
    .await;
    let web_health = |node: &TestNode| {
        let handle = node.handle.clone();
        let peer = web.peer_id;
        async move {
            let listed = handle.services(ServiceFilter::default()).await.unwrap();
            listed
                .into_iter()
                .find(|s| s.peer == peer && s.name == "web")
                .map(|s| s.status)
        }
    };
    let route = |node: &TestNode| {
        let handle = node.handle.clone();
        async move {
            let request = RouteRequest {
                key: "user:42".into(),
                n: 3,
                service: Some("web".into()),
                tag: None,
            };
            handle.route(request).await.unwrap()
        }
    };
    for node in [&a, &web, &c] {
        eventually("web passing", || async {
            web_health(node).await == Some(Health::Passing)
        })
        .await;
        let answer = route(node).await;
        assert_eq!(answer.owners.len(), 1, "only the web node has the service");
        assert_eq!(answer.owners[0].peer, web.peer_id);
        assert_eq!(answer.owners[0].port, Some(8080));
    }

    status.store(500, Ordering::SeqCst);
    for node in [&a, &web, &c] {
        eventually("web critical", || async {
            web_health(node).await == Some(Health::Critical)
        })
        .await;
        assert!(route(node).await.owners.is_empty(), "a critical instance owns no keys");
    }
    let listed = a.handle.services(ServiceFilter::default()).await.unwrap();
    let instance = listed.iter().find(|s| s.peer == web.peer_id).unwrap();
    assert!(instance.output.contains("500"), "{}", instance.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_routes_a_key_to_the_same_owners() {
    // Answers agree when views agree: a TTL long enough that no member turns suspect on this busy machine meanwhile.
    let steady = |c: &mut NodeConfig| {
        c.members.interval = Some(Duration::from_millis(300));
        c.members.ttl = Some(Duration::from_secs(20));
    };
    let first = TestNode::start(steady).await;
    let bootstrap = first.tcp_address.clone();
    let mut nodes = vec![first];
    for weight in [1.0, 2.0, 0.5] {
        let bootstrap = bootstrap.clone();
        nodes.push(
            TestNode::start(|c| {
                steady(c);
                c.members.weight = weight;
                c.bootstrap = vec![bootstrap];
            })
            .await,
        );
    }
    let everyone: Vec<PeerId> = nodes.iter().map(|n| n.peer_id).collect();
    for node in &nodes {
        eventually("every node sees all four alive", || sees_alive(node, &everyone)).await;
    }
    for i in 0..50 {
        let request = RouteRequest {
            key: format!("user:{i}"),
            n: 2,
            service: None,
            tag: None,
        };
        let mut answers = Vec::new();
        for node in &nodes {
            let answer = node.handle.route(request.clone()).await.unwrap();
            answers.push(answer.owners.iter().map(|o| o.peer).collect::<Vec<_>>());
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "key user:{i}: {answers:?}");
        assert_eq!(answers[0].len(), 2);
    }
}

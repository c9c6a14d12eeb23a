//! Membership certificates across nodes: members admit each other and gossip; an outsider (no certificate, an
//! expired one, one from another CA, one issued for another peer, garbage, or a node that does not speak the
//! protocol) is refused, banned, never hears a message and never enters a member's routing table or becomes active;
//! a node whose own certificate is invalid does not start. Allow and deny lists refuse peers at connection.

use std::{path::PathBuf, time::Duration};

use bytes::Bytes;
use libp2p::{PeerId, identity::Keypair, request_response, swarm::SwarmEvent};
use swarmnode::{
    node::{self, EventKind, NodeError, PublishRequest, RefusedBy},
    policy::liveness::PeerState,
    security::certificate::{self, Certificate},
    security::identity,
    time::now_unix_ms,
    wire::admission::{AdmissionRequest, AdmissionResponse},
};
use tempfile::TempDir;

use crate::support::{
    TestNode, eventually,
    raw_peer::{RawBehaviourEvent, RawPeer, Signing},
    test_config, wait_for_subscribers,
};

const HOUR: u64 = 3600;

/// A CA with its files, and a place for members' keys and certificates.
struct Ca {
    key: Keypair,
    dir: TempDir,
}

impl Ca {
    fn new() -> Ca {
        let dir = tempfile::tempdir().unwrap();
        let key = certificate::write_new_ca(dir.path(), false).unwrap();
        Ca { key, dir }
    }

    fn public_key(&self) -> PathBuf {
        self.dir.path().join("ca.pub")
    }

    /// A new identity key and a certificate for it from `issuer`, valid `from..until` (unix seconds); returns the
    /// key and certificate paths.
    fn enrol(&self, issuer: &Keypair, name: &str, from: u64, until: u64) -> (PathBuf, PathBuf) {
        let key_path = self.dir.path().join(format!("{name}.key"));
        let keypair = identity::generate(&key_path, false).unwrap();
        let certificate = Certificate::issue(issuer, keypair.public().to_peer_id(), Some(name), from, until).unwrap();
        let cert_path = self.dir.path().join(format!("{name}.cert"));
        std::fs::write(&cert_path, certificate.encode()).unwrap();
        (key_path, cert_path)
    }
}

fn now() -> u64 {
    now_unix_ms() / 1000
}

async fn member(ca: &Ca, name: &str) -> TestNode {
    let (key_path, cert_path) = ca.enrol(&ca.key, name, now() - 60, now() + HOUR);
    let ca_cert = ca.public_key();
    TestNode::start(move |c| {
        c.key_path = key_path;
        c.ca_cert = Some(ca_cert);
        c.cert = Some(cert_path);
        c.admission_timeout = Duration::from_secs(2);
    })
    .await
}

fn publish_request(text: &'static str) -> PublishRequest {
    PublishRequest {
        topic: "swarmnode".into(),
        payload: Bytes::from_static(text.as_bytes()),
        content_type: None,
        id: None,
    }
}

/// Two members, connected, admitted both ways and meshed.
async fn two_members(ca: &Ca) -> (TestNode, TestNode) {
    let mut a = member(ca, "a").await;
    let mut b = member(ca, "b").await;
    b.handle.dial(a.tcp_address.clone()).await.expect("members connect");
    let (a_id, b_id) = (a.peer_id, b.peer_id);
    for (node, other, name) in [(&mut a, b_id, "b"), (&mut b, a_id, "a")] {
        let admitted = node
            .wait_for("the other member's admission", |e| match e {
                EventKind::PeerAdmitted { peer, name, .. } if *peer == other => Some(name.clone()),
                _ => None,
            })
            .await;
        assert_eq!(admitted.as_deref(), Some(name));
    }
    wait_for_subscribers(&a, "swarmnode", 1).await;
    wait_for_subscribers(&b, "swarmnode", 1).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_admit_each_other_route_and_gossip() {
    let ca = Ca::new();
    let (a, mut b) = two_members(&ca).await;
    a.handle.publish(publish_request("members only")).await.unwrap();
    let data = b
        .wait_for("the member's message", |e| match e {
            EventKind::Message { data, .. } => Some(data.0.clone()),
            _ => None,
        })
        .await;
    assert_eq!(data, Bytes::from_static(b"members only"));

    let peers = a.handle.peers().await.unwrap();
    let row = peers.iter().find(|p| p.peer == b.peer_id).expect("b in a's table");
    assert_eq!(row.state, PeerState::Active);
    assert_eq!(row.admitted, Some(true));
    assert_eq!(row.member_name.as_deref(), Some("b"));
    eventually("identify's report in the peer table", || async {
        a.handle.peers().await.unwrap().iter().any(|p| {
            p.peer == b.peer_id
                && p.agent_version.as_deref() == Some(swarmnode::node::agent_version().as_str())
                && p.protocols.iter().any(|p| p == "/swarmnode/admission/1.0.0")
        })
    })
    .await;
    eventually("each member in the other's routing table", || async {
        a.status().await.routing_table.contains(&b.peer_id) && b.status().await.routing_table.contains(&a.peer_id)
    })
    .await;
}

/// What an outsider presents, and what the member's refusal must say.
struct Outsider {
    what: &'static str,
    certificate: Option<Vec<u8>>,
    expected: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_are_refused_banned_and_never_hear_the_swarm() {
    let ca = Ca::new();
    let other_ca = Keypair::generate_ed25519();
    let (mut a, mut b) = two_members(&ca).await;
    let issue = |issuer: &Keypair, peer: PeerId, from: u64, until: u64| {
        Certificate::issue(issuer, peer, None, from, until).unwrap().encode()
    };

    for round in 0..5 {
        let keypair = Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        let outsider = match round {
            0 => Outsider {
                what: "no certificate at all",
                certificate: None,
                expected: "no valid certificate within",
            },
            1 => Outsider {
                what: "an expired certificate",
                certificate: Some(issue(&ca.key, peer, now() - 2 * HOUR, now() - HOUR)),
                expected: "expired",
            },
            2 => Outsider {
                what: "a certificate from another CA",
                certificate: Some(issue(&other_ca, peer, now() - 60, now() + HOUR)),
                expected: "another CA",
            },
            3 => Outsider {
                what: "a certificate for another peer",
                certificate: Some(issue(&ca.key, PeerId::random(), now() - 60, now() + HOUR)),
                expected: "is for peer",
            },
            _ => Outsider {
                what: "garbage instead of a certificate",
                certificate: Some(b"let me in".to_vec()),
                expected: "not valid CBOR",
            },
        };
        let what = outsider.what;
        let mut raw = RawPeer::start(keypair, Signing::Signed);
        raw.dial(a.tcp_address.clone());
        raw.wait_for("its connection to a member", |e| {
            matches!(e, SwarmEvent::ConnectionEstablished { .. }).then_some(())
        })
        .await;
        match outsider.certificate {
            Some(certificate) => {
                let member = a.peer_id;
                raw.run(move |swarm| {
                    swarm
                        .behaviour_mut()
                        .admission
                        .send_request(&member, AdmissionRequest { v: 1, certificate });
                });
                let answer: AdmissionResponse = raw
                    .wait_for("the member's answer", |e| match e {
                        SwarmEvent::Behaviour(RawBehaviourEvent::Admission(request_response::Event::Message {
                            message: request_response::Message::Response { response, .. },
                            ..
                        })) => Some(response.clone()),
                        _ => None,
                    })
                    .await;
                assert!(!answer.admitted, "{what}: admitted");
                let reason = answer.reason.unwrap_or_default();
                assert!(reason.contains(outsider.expected), "{what}: answer {reason:?}");
            }
            None => {
                // The swarm keeps talking while the outsider waits to be admitted: it must hear none of it, though
                // it is subscribed to the topic.
                a.wait_for("the outsider's subscription", |e| {
                    matches!(e, EventKind::Subscribed { peer: p, .. } if *p == peer).then_some(())
                })
                .await;
                a.handle.publish(publish_request("not for outsiders")).await.unwrap();
                b.wait_for("the member's message", |e| {
                    matches!(e, EventKind::Message { .. }).then_some(())
                })
                .await;
            }
        }
        let (by, reason) = a
            .wait_for("the refusal", |e| match e {
                EventKind::PeerRefused { peer: p, by, reason } if *p == peer => Some((*by, reason.clone())),
                _ => None,
            })
            .await;
        assert_eq!(by, RefusedBy::Us, "{what}");
        assert!(reason.contains(outsider.expected), "{what}: {reason}");
        a.wait_for("the ban", |e| {
            matches!(e, EventKind::PeerBanned { peer: p, .. } if *p == peer).then_some(())
        })
        .await;
        raw.wait_for("its disconnection", |e| {
            matches!(e, SwarmEvent::ConnectionClosed { .. }).then_some(())
        })
        .await;
        assert_eq!(raw.gossip_received(), 0, "{what}: the outsider heard the swarm");

        // Banned: coming back is refused at once.
        raw.dial(a.tcp_address.clone());
        let refusal = a
            .wait_for("the banned peer's refused connection", |e| match e {
                EventKind::ConnectionRefused {
                    peer: Some(p), reason, ..
                } if *p == peer => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert!(refusal.contains("banned"), "{what}: {refusal}");

        // Never a member anywhere.
        for node in [&a, &b] {
            assert!(!node.status().await.routing_table.contains(&peer), "{what}: routed");
            let peers = node.handle.peers().await.unwrap();
            assert!(
                peers
                    .iter()
                    .all(|p| p.peer != peer || (p.state != PeerState::Active && p.admitted != Some(true))),
                "{what}: {peers:?}"
            );
        }
    }

    // A swarmnode without a CA does not speak the admission protocol: refused as soon as that is clear.
    let plain = TestNode::start(|_| {}).await;
    let _ = plain.handle.dial(a.tcp_address.clone()).await;
    let reason = a
        .wait_for("the plain node's refusal", |e| match e {
            EventKind::PeerRefused { peer, reason, .. } if *peer == plain.peer_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("does not speak /swarmnode/admission/1.0.0"), "{reason}");

    // The members are still together.
    assert!(a.status().await.connected_peers.contains(&b.peer_id));
    let metrics = a.handle.metrics().encode();
    for reason in [
        "timeout",
        "expired",
        "wrong_ca",
        "wrong_peer",
        "malformed",
        "unsupported",
    ] {
        assert!(
            metrics.contains(&format!("swarmnode_admissions_refused_total{{reason=\"{reason}\"}} 1")),
            "{reason} not counted:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_own_certificate_cannot_admit_it_does_not_start() {
    let ca = Ca::new();
    let other_ca = Keypair::generate_ed25519();
    let (expired_key, expired) = ca.enrol(&ca.key, "expired", now() - 2 * HOUR, now() - HOUR);
    let (foreign_key, foreign) = ca.enrol(&other_ca, "foreign", now() - 60, now() + HOUR);
    let (_, someone_elses) = ca.enrol(&ca.key, "someone", now() - 60, now() + HOUR);
    for (key, cert, expected) in [
        (expired_key, expired, "expired"),
        (foreign_key.clone(), foreign, "another CA"),
        (foreign_key, someone_elses, "is for peer"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir);
        config.key_path = key;
        config.ca_cert = Some(ca.public_key());
        config.cert = Some(cert);
        let error = format!("{:#}", node::spawn(config).await.err().expect("refuses to start"));
        assert!(
            error.contains("does not admit it") && error.contains(expected),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_allow_lists_refuse_peers_at_connection() {
    let stranger = TestNode::start(|_| {}).await;
    let friend = TestNode::start(|_| {}).await;

    let stranger_id = stranger.peer_id;
    let mut denying = TestNode::start(move |c| c.deny_peers = vec![stranger_id]).await;
    let _ = stranger.handle.dial(denying.tcp_address.clone()).await;
    let reason = denying
        .wait_for("the denied peer's refusal", |e| match e {
            EventKind::ConnectionRefused {
                peer: Some(p), reason, ..
            } if *p == stranger_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, "on the deny list");
    let outbound = denying.handle.dial(stranger.tcp_address.clone()).await.unwrap_err();
    assert!(
        matches!(&outbound, NodeError::ConnectionRefused { reason } if reason.contains("deny list")),
        "{outbound}"
    );
    friend
        .handle
        .dial(denying.tcp_address.clone())
        .await
        .expect("others connect");

    let friend_id = friend.peer_id;
    let mut allowing = TestNode::start(move |c| c.allow_peers = Some(vec![friend_id])).await;
    let _ = stranger.handle.dial(allowing.tcp_address.clone()).await;
    let reason = allowing
        .wait_for("the unlisted peer's refusal", |e| match e {
            EventKind::ConnectionRefused {
                peer: Some(p), reason, ..
            } if *p == stranger_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, "not on the allow list");
    friend
        .handle
        .dial(allowing.tcp_address.clone())
        .await
        .expect("the listed peer connects");

    eventually("only the allowed peers stay connected", || async {
        denying.status().await.connected_peers == vec![friend_id]
            && allowing.status().await.connected_peers == vec![friend_id]
    })
    .await;
}

#[test]
fn the_ca_commands_issue_certificates_that_running_nodes_accept() {
    use std::os::unix::fs::PermissionsExt;

    use crate::support::binary::{RunningBinary, swarmnode};

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let init = swarmnode(&["ca", "init", "--out", &path("ca")]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let mode = std::fs::metadata(path("ca/ca.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    assert!(
        !swarmnode(&["ca", "init", "--out", &path("ca")]).status.success(),
        "never overwritten silently"
    );

    let mut nodes = Vec::new();
    for name in ["alpha", "beta"] {
        let key = path(&format!("{name}.key"));
        let generated = swarmnode(&["key", "generate", "--out", &key]);
        let peer = String::from_utf8(generated.stdout).unwrap().trim().to_owned();
        let cert = path(&format!("{name}.cert"));
        let signed = swarmnode(&[
            "ca",
            "sign",
            "--ca",
            &path("ca"),
            "--peer",
            &peer,
            "--name",
            name,
            "--valid-for",
            "1h",
            "--out",
            &cert,
        ]);
        assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
        let shown = swarmnode(&["ca", "show", &cert, "--json"]);
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        assert_eq!(shown["peer"], peer.as_str());
        assert_eq!(shown["name"], name);
        assert_eq!(shown["status"], "valid");
        assert_eq!(
            shown["not_after"].as_u64().unwrap() - shown["not_before"].as_u64().unwrap(),
            3600
        );
        nodes.push((key, cert));
    }

    // Bad input: a clear error, nothing written.
    let bad_peer = swarmnode(&[
        "ca",
        "sign",
        "--ca",
        &path("ca"),
        "--peer",
        "nobody",
        "--out",
        &path("x.cert"),
    ]);
    assert!(!bad_peer.status.success());
    assert!(!dir.path().join("x.cert").exists());
    std::fs::write(path("garbage.cert"), b"not a certificate").unwrap();
    let garbage = swarmnode(&["ca", "show", &path("garbage.cert")]);
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("not valid CBOR"));
    let half = swarmnode(&["run", "--no-mdns", "--ca-cert", &path("ca/ca.pub")]);
    assert!(String::from_utf8_lossy(&half.stderr).contains("--cert"));

    let ca_pub = path("ca/ca.pub");
    let flags = |(key, cert): &(String, String)| {
        vec![
            "--key".to_owned(),
            key.clone(),
            "--ca-cert".to_owned(),
            ca_pub.clone(),
            "--cert".to_owned(),
            cert.clone(),
        ]
    };
    let alpha_flags = flags(&nodes[0]);
    let alpha = RunningBinary::loopback(&alpha_flags.iter().map(String::as_str).collect::<Vec<_>>());
    let listening = alpha.wait_for("a listen address", |l| l["event"] == "listening");
    let alpha_address = listening["address"].as_str().unwrap().to_owned();
    let mut beta_flags = flags(&nodes[1]);
    beta_flags.extend(["--bootstrap".to_owned(), alpha_address]);
    let beta = RunningBinary::loopback(&beta_flags.iter().map(String::as_str).collect::<Vec<_>>());
    let admitted = alpha.wait_for("beta's admission", |l| l["event"] == "peer_admitted");
    assert_eq!(admitted["name"], "beta");
    let admitted = beta.wait_for("alpha's admission", |l| l["event"] == "peer_admitted");
    assert_eq!(admitted["name"], "alpha");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_swarm_key_too_key_holders_without_a_valid_certificate_are_refused() {
    let ca = Ca::new();
    let other_ca = Ca::new();
    let key_file = ca.dir.path().join("swarm.key");
    let (_, text) = swarmnode::security::swarm_key::generate();
    std::fs::write(&key_file, text).unwrap();
    let private = |ca: &Ca, name: &str| {
        let (key_path, cert_path) = ca.enrol(&ca.key, name, now() - 60, now() + HOUR);
        let (ca_cert, swarm_key) = (ca.public_key(), key_file.clone());
        move |c: &mut swarmnode::config::NodeConfig| {
            c.key_path = key_path;
            c.ca_cert = Some(ca_cert);
            c.cert = Some(cert_path);
            c.swarm_key = Some(swarm_key);
        }
    };
    let mut member = TestNode::start(private(&ca, "member")).await;
    let other = TestNode::start(private(&ca, "other")).await;
    other
        .handle
        .dial(member.tcp_address.clone())
        .await
        .expect("members with the key connect");
    member
        .wait_for("the other member's admission", |e| {
            matches!(e, EventKind::PeerAdmitted { peer, .. } if *peer == other.peer_id).then_some(())
        })
        .await;

    let key_only = {
        let swarm_key = key_file.clone();
        TestNode::start(move |c| c.swarm_key = Some(swarm_key)).await
    };
    let foreign = TestNode::start(private(&other_ca, "foreign")).await;
    for (outsider, expected) in [(&key_only, "does not speak"), (&foreign, "another CA")] {
        let _ = outsider.handle.dial(member.tcp_address.clone()).await;
        // Whichever side refuses first: a node with another CA may refuse our certificate (and close the
        // connection) before ours has read its own.
        let reason = member
            .wait_for("the key holder's refusal", |e| match e {
                EventKind::PeerRefused { peer, reason, .. } if *peer == outsider.peer_id => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert!(reason.contains(expected), "{reason}");
        eventually("the key holder is disconnected", || async {
            !member.status().await.connected_peers.contains(&outsider.peer_id)
        })
        .await;
    }
    assert!(member.status().await.connected_peers.contains(&other.peer_id));
}

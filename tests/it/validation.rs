//! Bytes from the network are never trusted: a plain libp2p gossipsub peer (not a swarmnode) joins a node's topic
//! and publishes garbage and a forged envelope, which are rejected and counted by reason, then a valid envelope,
//! which is delivered — the node keeps serving throughout.

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, gossipsub, noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use swarmnode::{
    node::{EventKind, message_id},
    time::now_unix_ms,
    wire::envelope::Envelope,
};
use tokio::sync::mpsc;

use crate::support::{TestNode, eventually};

const TOPIC: &str = "swarmnode";

#[derive(NetworkBehaviour)]
struct PlainPeer {
    gossipsub: gossipsub::Behaviour,
}

fn plain_peer() -> Swarm<PlainPeer> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .message_id_fn(|message: &gossipsub::Message| message_id(&message.data))
                .build()
                .unwrap();
            PlainPeer {
                gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
                    .unwrap(),
            }
        })
        .unwrap()
        .build()
}

/// Runs the plain peer: dials `address`, joins the topic, reports when the node has joined it too, and publishes
/// whatever bytes arrive on the returned sender.
fn run_plain_peer(address: Multiaddr) -> (PeerId, mpsc::Receiver<()>, mpsc::Sender<Vec<u8>>) {
    let mut swarm = plain_peer();
    let peer_id = *swarm.local_peer_id();
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&gossipsub::IdentTopic::new(TOPIC))
        .unwrap();
    swarm.dial(address).unwrap();
    let (ready_tx, ready) = mpsc::channel(1);
    let (publish, mut to_publish) = mpsc::channel::<Vec<u8>>(8);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(PlainPeerEvent::Gossipsub(gossipsub::Event::Subscribed { .. })) = event {
                        let _ = ready_tx.try_send(());
                    }
                }
                bytes = to_publish.recv() => match bytes {
                    Some(bytes) => {
                        swarm.behaviour_mut().gossipsub.publish(gossipsub::IdentTopic::new(TOPIC), bytes).unwrap();
                    }
                    None => return,
                },
            }
        }
    });
    (peer_id, ready, publish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_forged_envelopes_are_rejected_and_counted_and_valid_ones_delivered() {
    let mut node = TestNode::start(|_| {}).await;
    let (plain_id, mut ready, publish) = run_plain_peer(node.tcp_address.clone());
    ready.recv().await.expect("the node joins the topic");

    let limit = node.config.max_message_size;
    let forged = Envelope::new(
        PeerId::random(),
        "text/plain",
        b"I am someone else".to_vec(),
        now_unix_ms(),
    );
    let genuine = Envelope::new(
        plain_id,
        "text/plain",
        b"hello from plain libp2p".to_vec(),
        now_unix_ms(),
    );
    publish.send(b"this is not an envelope".to_vec()).await.unwrap();
    publish.send(forged.encode(limit).unwrap()).await.unwrap();
    publish.send(genuine.encode(limit).unwrap()).await.unwrap();

    let (id, from, data) = node
        .wait_for("the genuine envelope", |kind| match kind {
            EventKind::Message { id, from, data, .. } => Some((id.clone(), *from, data.0.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        (id, from, data.as_ref()),
        (genuine.id.clone(), plain_id, &b"hello from plain libp2p"[..])
    );

    eventually("both bad messages counted by reason", || async {
        let rejected = node.status().await.rejected_messages;
        rejected.get("malformed") == Some(&1) && rejected.get("origin_mismatch") == Some(&1)
    })
    .await;
}

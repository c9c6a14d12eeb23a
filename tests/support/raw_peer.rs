//! A bare libp2p peer that is not a swarmnode: TCP + Noise + Yamux, gossipsub, our admission protocol and the
//! members view exchange, so a test can present any certificate bytes, publish anything (signed or not) on any
//! topic, send any view, and see what a swarmnode sends it. It runs in
//! its own task; the test sends it closures to run on its swarm and reads its events from a channel.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, gossipsub,
    identity::Keypair,
    noise,
    request_response::{self, ProtocolSupport, cbor},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use swarmnode::wire::{
    admission::{ADMISSION_PROTOCOL, AdmissionRequest, AdmissionResponse},
    members::{MAX_EXCHANGE_BYTES, MEMBERS_PROTOCOL, MembersExchange},
};
use tokio::sync::mpsc;

use super::DEADLINE;

#[derive(NetworkBehaviour)]
pub struct RawBehaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub admission: cbor::Behaviour<AdmissionRequest, AdmissionResponse>,
    pub members: cbor::Behaviour<MembersExchange, MembersExchange>,
}

type Job = Box<dyn FnOnce(&mut Swarm<RawBehaviour>) + Send>;

pub struct RawPeer {
    pub peer_id: PeerId,
    /// Gossip messages delivered to it since start.
    gossip_received: Arc<AtomicUsize>,
    jobs: mpsc::UnboundedSender<Job>,
    pub events: mpsc::UnboundedReceiver<SwarmEvent<RawBehaviourEvent>>,
}

/// How the raw peer's gossipsub signs what it publishes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// Signed with its key, as every honest libp2p peer does.
    Signed,
    /// No signature, source or sequence number: what strict validators must refuse.
    Unsigned,
}

impl RawPeer {
    pub fn start(keypair: Keypair, signing: Signing) -> RawPeer {
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .expect("tcp")
            .with_behaviour(|key| {
                let (authenticity, mode) = match signing {
                    Signing::Signed => (
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        gossipsub::ValidationMode::Strict,
                    ),
                    Signing::Unsigned => (
                        gossipsub::MessageAuthenticity::Anonymous,
                        gossipsub::ValidationMode::None,
                    ),
                };
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(mode)
                    // Content-addressed as swarmnode's, so unsigned messages (no source, no sequence number) differ.
                    .message_id_fn(|message: &gossipsub::Message| swarmnode::node::message_id(&message.data))
                    .heartbeat_interval(Duration::from_millis(200))
                    .build()
                    .expect("gossipsub config");
                RawBehaviour {
                    gossipsub: gossipsub::Behaviour::new(authenticity, config).expect("gossipsub"),
                    admission: cbor::Behaviour::new(
                        [(ADMISSION_PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default(),
                    ),
                    members: cbor::Behaviour::with_codec(
                        cbor::codec::Codec::default()
                            .set_request_size_maximum(MAX_EXCHANGE_BYTES as u64)
                            .set_response_size_maximum(MAX_EXCHANGE_BYTES as u64),
                        [(MEMBERS_PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default(),
                    ),
                }
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new("swarmnode"))
            .expect("subscribe");
        let (jobs, mut job_rx) = mpsc::unbounded_channel::<Job>();
        let (event_tx, events) = mpsc::unbounded_channel();
        let gossip_received = Arc::new(AtomicUsize::new(0));
        let counter = gossip_received.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                tokio::select! {
                    job = job_rx.recv() => match job {
                        Some(job) => job(&mut swarm),
                        None => return,
                    },
                    event = swarm.select_next_some() => {
                        if is_gossip_message(&event) {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        if event_tx.send(event).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        RawPeer {
            peer_id,
            gossip_received,
            jobs,
            events,
        }
    }

    pub fn gossip_received(&self) -> usize {
        self.gossip_received.load(Ordering::SeqCst)
    }

    /// Runs `job` on the swarm, in its task.
    pub fn run(&self, job: impl FnOnce(&mut Swarm<RawBehaviour>) + Send + 'static) {
        self.jobs.send(Box::new(job)).expect("raw peer task is running");
    }

    pub fn dial(&self, address: Multiaddr) {
        self.run(move |swarm| swarm.dial(address).expect("dial starts"));
    }

    /// Publishes `data` on the `swarmnode` topic (errors, e.g. no peers yet, are ignored: tests look at effects).
    pub fn publish(&self, data: Vec<u8>) {
        self.publish_on("swarmnode", data);
    }

    /// Publishes `data` on `topic`, ignoring errors as `publish` does.
    pub fn publish_on(&self, topic: &'static str, data: Vec<u8>) {
        self.run(move |swarm| {
            let _ = swarm
                .behaviour_mut()
                .gossipsub
                .publish(gossipsub::IdentTopic::new(topic), data);
        });
    }

    /// Waits until this peer knows that `node` is subscribed to `topic` (publishing before that reaches nobody).
    pub async fn wait_for_subscription(&self, node: PeerId, topic: &'static str) {
        super::eventually(
            &format!("{node}'s {topic} subscription reaches the raw peer"),
            || async {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.run(move |swarm| {
                    let subscribed = swarm
                        .behaviour()
                        .gossipsub
                        .all_peers()
                        .any(|(p, topics)| *p == node && topics.iter().any(|t| t.as_str() == topic));
                    let _ = tx.send(subscribed);
                });
                rx.await.unwrap_or(false)
            },
        )
        .await;
    }

    /// Waits for the next event `select` picks, failing the test after the deadline.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut select: impl FnMut(&SwarmEvent<RawBehaviourEvent>) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("raw peer: no {what} within {DEADLINE:?}"))
                .expect("raw peer task is running");
            if let Some(found) = select(&event) {
                return found;
            }
        }
    }
}

/// Whether `event` is a gossip message delivered to the raw peer.
pub fn is_gossip_message(event: &SwarmEvent<RawBehaviourEvent>) -> bool {
    matches!(
        event,
        SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(gossipsub::Event::Message { .. }))
    )
}

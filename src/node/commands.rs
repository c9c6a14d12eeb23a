//! The event loop's answers to `NodeHandle` commands: publish (with the idempotency window), subscriptions, dials
//! and disconnections, and the read-only views (status, peers, topics, diagnosis) the CLI and the API show.

use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

use libp2p::{
    Multiaddr, PeerId,
    gossipsub::{self, IdentTopic, TopicHash},
    kad::{self, QueryId},
    swarm::{DialError, dial_opts::DialOpts},
};
use tokio::sync::oneshot;

use super::{
    EventLoop,
    behaviour::{MAX_CONNECTIONS_PER_PEER, agent_version, protocols},
    error::PublishError,
    handle::Command,
    swarm_events,
    views::{
        BootstrapStatus, ConnectionCounts, Diagnosis, InterfaceStatus, NodeStatus, PeerInfo, PublishRequest, Published,
        TopicInfo,
    },
};
use crate::{
    config::{bare_peer_id, check_topic},
    policy::publish::Flush,
    time::now_unix_ms,
    wire::envelope::{DEFAULT_CONTENT_TYPE, Envelope},
};

/// A publish waiting for its gossip message to go out.
#[derive(Debug)]
pub(super) struct PendingPublish {
    id: String,
    /// The caller chose the id, so the result is remembered for repeats.
    idempotent: bool,
    reply: oneshot::Sender<Result<Published, PublishError>>,
}

impl EventLoop {
    /// Serves one command; `Break` means stop the node.
    pub(super) fn on_command(&mut self, command: Command) -> ControlFlow<()> {
        // A caller that stopped waiting dropped its receiver; there is nobody left to tell.
        match command {
            Command::Publish { request, reply } => self.publish(request, reply),
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(&topic));
            }
            Command::Dial { address, reply } => self.dial(address, reply),
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Disconnect { peer, reply } => {
                let connected = self.swarm.is_connected(&peer);
                if connected {
                    let decisions = self.peers.dismissed(peer, "disconnected by operator");
                    self.apply(decisions);
                }
                let _ = reply.send(connected);
            }
            Command::Unsubscribe { topic, reply } => {
                let result = check_topic(&topic).map(|()| {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .unsubscribe(&IdentTopic::new(&topic))
                });
                let _ = reply.send(result);
            }
            Command::Topics { reply } => {
                let _ = reply.send(self.topic_infos());
            }
            Command::Diagnose { reply } => {
                let _ = reply.send(self.diagnose());
            }
            Command::Shutdown => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// Publishes one envelope, or queues it for the current batch of its topic (`--batch-window`); the reply goes
    /// out when the gossip message does. A caller-chosen id seen within the dedup window gets the first result back,
    /// marked duplicate, and nothing is sent.
    fn publish(&mut self, request: PublishRequest, reply: oneshot::Sender<Result<Published, PublishError>>) {
        let (topic, bytes, pending) = match self.prepare(request, reply) {
            Some(prepared) => prepared,
            None => return,
        };
        match &mut self.batcher {
            Some(batcher) => {
                for flush in batcher.add(&topic, bytes, pending, Instant::now()) {
                    self.send(flush);
                }
            }
            None => self.send(Flush {
                topic,
                message: bytes,
                entries: vec![pending],
            }),
        }
    }

    /// Checks and encodes a publish; `None` when it has already been answered (refused, or a repeated id).
    fn prepare(
        &mut self,
        request: PublishRequest,
        reply: oneshot::Sender<Result<Published, PublishError>>,
    ) -> Option<(String, Vec<u8>, PendingPublish)> {
        if let Err(why) = check_topic(&request.topic) {
            let _ = reply.send(Err(PublishError::InvalidTopic(why)));
            return None;
        }
        if let Some(id) = &request.id
            && let Some(first) = self.published_ids.get(id, Instant::now())
        {
            self.metrics.publish_repeats.inc();
            let _ = reply.send(Ok(Published {
                duplicate: true,
                ..first.clone()
            }));
            return None;
        }
        let limit = self.config.max_payload_size();
        if request.payload.len() > limit {
            let size = request.payload.len();
            let _ = reply.send(Err(PublishError::TooLarge { size, limit }));
            return None;
        }
        let content_type = request.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE);
        let mut envelope = Envelope::new(
            *self.swarm.local_peer_id(),
            content_type,
            request.payload.to_vec(),
            now_unix_ms(),
        );
        let idempotent = request.id.is_some();
        if let Some(id) = request.id {
            envelope.id = id;
        }
        match envelope.encode(self.config.max_message_size) {
            Ok(bytes) => Some((
                request.topic,
                bytes,
                PendingPublish {
                    id: envelope.id,
                    idempotent,
                    reply,
                },
            )),
            Err(e) => {
                let _ = reply.send(Err(PublishError::InvalidEnvelope(e.to_string())));
                None
            }
        }
    }

    /// Sends one gossip message (an envelope or a batch) and answers every publish it carries.
    pub(super) fn send(&mut self, flush: Flush<PendingPublish>) {
        let topic = IdentTopic::new(&flush.topic);
        let recipients = self.subscribers(&topic.hash()).len();
        let sent = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, flush.message)
            .map_err(|e| match e {
                gossipsub::PublishError::NoPeersSubscribedToTopic => PublishError::NoPeers(flush.topic.clone()),
                gossipsub::PublishError::Duplicate => {
                    PublishError::Gossip("this exact envelope was already published".into())
                }
                other => PublishError::Gossip(format!("{other:?}")),
            });
        for pending in flush.entries {
            let result = sent.clone().map(|message_id| Published {
                id: pending.id,
                message_id: hex::encode(&message_id.0),
                recipients,
                duplicate: false,
            });
            if let Ok(published) = &result {
                self.metrics.published.inc();
                if pending.idempotent {
                    self.published_ids
                        .insert(published.id.clone(), published.clone(), Instant::now());
                }
            }
            let _ = pending.reply.send(result);
        }
    }

    /// Sends every batch whose window has closed.
    pub(super) fn send_due_batches(&mut self) {
        let due = match &mut self.batcher {
            Some(batcher) => batcher.due(Instant::now()),
            None => return,
        };
        for flush in due {
            self.send(flush);
        }
    }

    fn subscribe(&mut self, topic: &str) -> Result<(), String> {
        check_topic(topic)?;
        let max_topics = self.config.max_topics;
        self.swarm.behaviour_mut().join(topic, max_topics).map(|_| ())
    }

    fn dial(&mut self, address: Multiaddr, reply: oneshot::Sender<Result<PeerId, String>>) {
        if let Some(peer) = bare_peer_id(&address) {
            if self.swarm.is_connected(&peer) {
                let _ = reply.send(Ok(peer));
                return;
            }
            // Only an id: ask the DHT where the peer is, then dial what it says (`on_lookup_progress`).
            let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.pending_lookups.insert(query, (peer, reply));
            return;
        }
        self.dial_for_caller(DialOpts::from(address), reply);
    }

    /// Starts a dial whose outcome `reply` awaits: answered when the connection is up or has failed.
    fn dial_for_caller(&mut self, opts: DialOpts, reply: oneshot::Sender<Result<PeerId, String>>) {
        let connection = opts.connection_id();
        match self.start_dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(swarm_events::dial_error_text(&e)));
            }
        }
    }

    /// A DHT lookup started by `dial` progressed: dial the peer once some step reports its addresses; fail the dial
    /// when the lookup ends without them.
    pub(super) fn on_lookup_progress(&mut self, query: QueryId, peers: &[kad::PeerInfo], last: bool) {
        let Some((wanted, _)) = self.pending_lookups.get(&query) else {
            return;
        };
        let wanted = *wanted;
        let found = peers
            .iter()
            .find(|info| info.peer_id == wanted && !info.addrs.is_empty())
            .map(|info| info.addrs.clone());
        if found.is_none() && !last {
            return;
        }
        let Some((_, reply)) = self.pending_lookups.remove(&query) else {
            return;
        };
        if let Some(mut running) = self.swarm.behaviour_mut().kad.query_mut(&query) {
            running.finish();
        }
        match found {
            Some(_) if self.swarm.is_connected(&wanted) => {
                let _ = reply.send(Ok(wanted));
            }
            Some(addresses) => {
                let opts = DialOpts::peer_id(wanted).addresses(addresses).build();
                let connection = opts.connection_id();
                match self.start_dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(connection, reply);
                    }
                    // The lookup itself is dialling the peer (it asks the closest peers, and the wanted one is
                    // closest of all): its outcome answers the caller.
                    Err(DialError::DialPeerConditionFalse(_)) => {
                        self.awaiting_connection.entry(wanted).or_default().push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(swarm_events::dial_error_text(&e)));
                    }
                }
            }
            None => {
                let _ = reply.send(Err(format!("peer {wanted} was not found in the DHT")));
            }
        }
    }

    fn status(&mut self) -> NodeStatus {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let topics = gossipsub
            .topics()
            .map(|topic| (topic.to_string(), self.subscribers(topic).len()))
            .collect();
        NodeStatus {
            peer_id: *self.swarm.local_peer_id(),
            agent: agent_version(),
            listen_addresses: self.swarm.listeners().cloned().collect(),
            external_addresses: self.swarm.external_addresses().cloned().collect(),
            protocols: protocols(&self.config),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            connected_peers: self.swarm.connected_peers().copied().collect(),
            routing_table: self.swarm.behaviour_mut().routing_table_peers(),
            topics,
            rejected_messages: self.rejected.clone(),
            duplicate_ids: self.metrics.duplicates.get(),
        }
    }

    /// Connected peers known to be subscribed to `topic`.
    fn subscribers(&self, topic: &TopicHash) -> Vec<PeerId> {
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(peer, topics)| topics.contains(&topic) && self.swarm.is_connected(peer))
            .map(|(peer, _)| *peer)
            .collect()
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let now_ms = now_unix_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let rtt = |d: Option<Duration>| d.map(|d| d.as_micros() as f64 / 1000.0);
        let mut infos: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, entry)| PeerInfo {
                peer: *peer,
                state: entry.state,
                addresses: entry.addresses.clone(),
                direction: self.directions.get(peer).copied(),
                rtt_ms: rtt(entry.last_rtt),
                smoothed_rtt_ms: rtt(entry.smoothed_rtt),
                last_seen: now_ms.saturating_sub(ms(now.duration_since(entry.last_seen))),
                attempt: entry.attempt,
                next_retry_ms: entry.next_retry.map(|at| ms(at.saturating_duration_since(now))),
                sources: self.discoveries.sources(peer),
                reason: entry.removed_because,
                bootstrap: entry.bootstrap,
                admitted: self.membership.as_ref().map(|m| m.admissions.is_member(peer)),
                member_name: self
                    .membership
                    .as_ref()
                    .and_then(|m| m.admissions.member(peer))
                    .and_then(|member| member.name.clone()),
                gossip_score: self
                    .swarm
                    .is_connected(peer)
                    .then(|| self.swarm.behaviour().gossipsub.peer_score(peer))
                    .flatten(),
                agent_version: self.identified.get(peer).map(|i| i.agent_version.clone()),
                protocols: self
                    .identified
                    .get(peer)
                    .map(|i| i.protocols.clone())
                    .unwrap_or_default(),
            })
            .collect();
        infos.sort_by_key(|info| info.peer.to_string());
        infos
    }

    fn topic_infos(&self) -> Vec<TopicInfo> {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let mut infos: Vec<TopicInfo> = gossipsub
            .topics()
            .map(|topic| TopicInfo {
                topic: topic.to_string(),
                mesh_peers: gossipsub.mesh_peers(topic).copied().collect(),
                subscribed_peers: self.subscribers(topic),
            })
            .collect();
        infos.sort_by(|a, b| a.topic.cmp(&b.topic));
        infos
    }

    fn diagnose(&mut self) -> Diagnosis {
        let info = self.swarm.network_info();
        let counters = info.connection_counters();
        let connections = ConnectionCounts {
            established_incoming: counters.num_established_incoming(),
            established_outgoing: counters.num_established_outgoing(),
            pending_incoming: counters.num_pending_incoming(),
            pending_outgoing: counters.num_pending_outgoing(),
            connected_peers: info.num_peers(),
            max_peers: self.config.max_peers,
            max_pending_incoming: self.config.max_pending_incoming,
            max_pending_outgoing: self.config.max_pending_outgoing,
            max_per_peer: MAX_CONNECTIONS_PER_PEER,
        };
        let bootstrap = self
            .bootstrap
            .dial_targets()
            .into_iter()
            .map(|(peer, address)| BootstrapStatus {
                connected: peer.is_some_and(|peer| self.swarm.is_connected(&peer)),
                address,
                peer,
            })
            .collect();
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let mesh_sizes = gossipsub
            .topics()
            .map(|topic| (topic.to_string(), gossipsub.mesh_peers(topic).count()))
            .collect();
        Diagnosis {
            listen_addresses: self.swarm.listeners().cloned().collect(),
            external_addresses: self.swarm.external_addresses().cloned().collect(),
            mdns_enabled: self.config.mdns,
            interfaces: interfaces(self.config.mdns),
            routing_table_size: self.swarm.behaviour_mut().routing_table_peers().len(),
            bootstrap,
            mesh_sizes,
            connections,
        }
    }
}

/// The machine's interfaces by name with their addresses; mDNS runs where it is on and an interface has a
/// non-loopback IPv4 address (what libp2p's mDNS binds to). An error listing them is reported as no interfaces.
fn interfaces(mdns_enabled: bool) -> Vec<InterfaceStatus> {
    let mut interfaces: Vec<InterfaceStatus> = Vec::new();
    let listed = if_addrs::get_if_addrs().unwrap_or_else(|e| {
        tracing::warn!("cannot list network interfaces: {e}");
        Vec::new()
    });
    for interface in listed {
        let ip = interface.ip();
        let mdns = mdns_enabled && ip.is_ipv4() && !ip.is_loopback();
        match interfaces.iter_mut().find(|i| i.name == interface.name) {
            Some(known) => {
                known.addresses.push(ip.to_string());
                known.mdns |= mdns;
            }
            None => interfaces.push(InterfaceStatus {
                name: interface.name,
                addresses: vec![ip.to_string()],
                mdns,
            }),
        }
    }
    interfaces
}

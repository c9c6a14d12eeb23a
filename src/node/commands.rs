//! The event loop's answers to `NodeHandle` commands: publish (checked by `policy::publish`), subscriptions, dials
//! (kept by `policy::dials`) and disconnections, and the read-only views (status, peers, topics, diagnosis) the CLI and the API show.

use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

use super::{
    EventLoop,
    behaviour::{MAX_CONNECTIONS_PER_PEER, agent_version, is_internal_topic, protocols},
    error::NodeError,
    handle::{Command, Reply},
    views::{
        BootstrapStatus, ConnectionCounts, Diagnosis, InterfaceStatus, NodeStatus, PeerInfo, PublishRequest, Published,
        TopicInfo,
    },
};
use crate::{
    config::{bare_peer_id, check_topic},
    policy::{
        dials::LookupStep,
        publish::{Flush, Prepared, Publish, PublishRefusal},
    },
    time::now_unix_ms,
};
use libp2p::{
    Multiaddr, PeerId,
    gossipsub::{IdentTopic, TopicHash},
    kad::{self, QueryId},
    swarm::{
        DialError,
        dial_opts::{DialOpts, PeerCondition},
    },
};

/// A publish waiting for its gossip message to go out.
#[derive(Debug)]
pub(super) struct PendingPublish {
    id: String,
    /// The caller chose the id, so the result is remembered for repeats.
    idempotent: bool,
    reply: Reply<Published>,
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
            Command::Disconnect { peer, block_for, reply } => {
                let connected = self.swarm.is_connected(&peer);
                // A peer between redials is blocked too (that is what stops our redials), but only with a block:
                // disconnecting a peer that is not connected is otherwise nothing to do.
                let redialling = self.peers.awaits_dial(&peer);
                let answer = if block_for.is_zero() && connected {
                    let decisions = self.peers.dismissed(peer, "disconnected by operator");
                    self.apply(decisions);
                    Ok(true)
                } else if !block_for.is_zero() && (connected || redialling) {
                    let reason = format!(
                        "disconnected by the operator, blocked for {}",
                        humantime::format_duration(block_for)
                    );
                    self.ban_for(peer, "operator", reason, block_for);
                    Ok(connected)
                } else {
                    Err(NodeError::NotConnected { peer })
                };
                let _ = reply.send(answer);
            }
            Command::Unsubscribe { topic, reply } => {
                let result = check_topic(&topic).map_err(NodeError::invalid_topic).and_then(|()| {
                    let left = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .unsubscribe(&IdentTopic::new(&topic));
                    if left {
                        Ok(())
                    } else {
                        Err(NodeError::NotSubscribed { topic })
                    }
                });
                let _ = reply.send(result);
            }
            Command::Topics { reply } => {
                let _ = reply.send(self.topic_infos());
            }
            Command::Diagnose { reply } => {
                let _ = reply.send(self.diagnose());
            }
            Command::Members { filter, reply } => {
                let _ = reply.send(self.member_infos(&filter));
            }
            Command::Services { filter, reply } => {
                let _ = reply.send(self.catalog(&filter));
            }
            Command::Route { request, reply } => {
                let _ = reply.send(self.route(&request));
            }
            Command::RegisterService { definition, reply } => {
                let _ = reply.send(self.register_service(definition));
            }
            Command::DeregisterService { id, reply } => {
                let _ = reply.send(self.deregister_service(&id));
            }
            Command::UpdateTtl {
                id,
                health,
                note,
                reply,
            } => {
                let _ = reply.send(self.update_ttl(&id, health, note));
            }
            Command::State(command) => self.on_state_command(command),
            Command::Perf(command) => self.on_perf_command(command),
            Command::Shutdown => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// Publishes one envelope, or queues it for the current batch of its topic (`--batch-window`); the reply goes
    /// out when the gossip message does. What may go out, and a repeated caller id, are `Publisher`'s decisions.
    fn publish(&mut self, request: PublishRequest, reply: Reply<Published>) {
        let publish = Publish {
            topic: &request.topic,
            payload: &request.payload,
            content_type: request.content_type.as_deref(),
            id: request.id.as_deref(),
        };
        let local = *self.swarm.local_peer_id();
        let outgoing = match self.publisher.prepare(local, &publish, now_unix_ms(), Instant::now()) {
            Ok(Prepared::Send(outgoing)) => outgoing,
            Ok(Prepared::Repeat(first)) => {
                self.metrics.publish_repeats.inc();
                let _ = reply.send(Ok(Published {
                    duplicate: true,
                    ..first
                }));
                return;
            }
            Err(refusal) => {
                let _ = reply.send(Err(publish_error(refusal)));
                return;
            }
        };
        let pending = PendingPublish {
            id: outgoing.id,
            idempotent: outgoing.idempotent,
            reply,
        };
        match &mut self.batcher {
            Some(batcher) => {
                for flush in batcher.add(&outgoing.topic, outgoing.message, pending, Instant::now()) {
                    self.send(flush);
                }
            }
            None => self.send(Flush {
                topic: outgoing.topic,
                message: outgoing.message,
                entries: vec![pending],
            }),
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
            .map_err(|e| NodeError::from_publish(e, &flush.topic));
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
                    self.publisher
                        .remember(published.id.clone(), published.clone(), Instant::now());
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

    fn subscribe(&mut self, topic: &str) -> Result<(), NodeError> {
        check_topic(topic).map_err(NodeError::invalid_topic)?;
        let max_topics = self.config.max_topics;
        self.swarm.behaviour_mut().join(topic, max_topics).map(|_| ())
    }

    pub(super) fn dial(&mut self, address: Multiaddr, reply: Reply<PeerId>) {
        if let Some(peer) = bare_peer_id(&address) {
            if self.swarm.is_connected(&peer) {
                let _ = reply.send(Ok(peer));
                return;
            }
            // Only an id: ask the DHT where the peer is, then dial what it says (`on_lookup_progress`).
            let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.dials.lookup_started(query, peer, reply);
            return;
        }
        self.dial_for_caller(DialOpts::from(address), reply);
    }

    /// Starts a dial whose outcome `reply` awaits: answered when the connection is up or has failed. A peer that
    /// another dial is already reaching answers from that dial's outcome.
    fn dial_for_caller(&mut self, opts: DialOpts, reply: Reply<PeerId>) {
        let peer = opts.get_peer_id();
        match (self.start_dial(opts), peer) {
            (Ok(connection), _) => self.dials.answer_with(connection, reply),
            (Err(DialError::DialPeerConditionFalse(_)), Some(peer)) => self.dials.already_dialling(peer, reply),
            (Err(e), _) => {
                let _ = reply.send(Err(NodeError::from_dial(&e)));
            }
        }
    }

    /// A DHT lookup progressed: `Dials` says whether one of our callers' dials can go ahead, is answered, or waits.
    pub(super) fn on_lookup_progress(&mut self, query: QueryId, peers: &[kad::PeerInfo], last: bool) {
        let Some(wanted) = self.dials.is_lookup(&query) else {
            return;
        };
        let found = peers
            .iter()
            .find(|info| info.peer_id == wanted && !info.addrs.is_empty())
            .map(|info| info.addrs.clone());
        let step = self
            .dials
            .lookup_progress(&query, found, last, self.swarm.is_connected(&wanted));
        if matches!(step, LookupStep::Wait) {
            return;
        }
        if let Some(mut running) = self.swarm.behaviour_mut().kad.query_mut(&query) {
            running.finish();
        }
        match step {
            LookupStep::Wait => {}
            LookupStep::Connected { peer, reply } => {
                let _ = reply.send(Ok(peer));
            }
            // The lookup itself may be dialling the peer (it asks the closest peers, and the wanted one is closest
            // of all): then its outcome answers the caller.
            LookupStep::Dial { peer, addresses, reply } => {
                let opts = DialOpts::peer_id(peer)
                    .addresses(addresses)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                self.dial_for_caller(opts, reply);
            }
            LookupStep::NotFound { peer, reply } => {
                let _ = reply.send(Err(NodeError::PeerNotFound { peer }));
            }
        }
    }

    fn status(&mut self) -> NodeStatus {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let topics = gossipsub
            .topics()
            .filter(|topic| !is_internal_topic(topic))
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
            rejected_messages: self
                .rejected
                .iter()
                .map(|(reason, n)| ((*reason).to_owned(), *n))
                .collect(),
            duplicate_ids: self.metrics.duplicates.get(),
            state: self.state_summary(),
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
                reason: entry.removed_because.map(str::to_owned),
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
            .filter(|topic| !is_internal_topic(topic))
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
            .filter(|topic| !is_internal_topic(topic))
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

/// A refused publish as the caller reads it.
fn publish_error(refusal: PublishRefusal) -> NodeError {
    match refusal {
        PublishRefusal::InvalidTopic(why) => NodeError::invalid_topic(why),
        PublishRefusal::TooLarge { size, limit } => NodeError::PayloadTooLarge { size, limit },
        PublishRefusal::InvalidEnvelope(reason) => NodeError::InvalidMessage { reason },
    }
}

//! The event loop's reaction to each swarm event: feed discoveries into Kademlia and the peer table, carry out the
//! gossip verdict, settle dials, and report what happened as `Event`s. One function per behaviour keeps each arm
//! short; what to decide is asked of the pure modules in `crate::policy`.

use std::{collections::HashMap, time::Instant};

use libp2p::{
    Multiaddr, PeerId, allow_block_list, connection_limits,
    core::ConnectedPoint,
    gossipsub::{self, MessageAcceptance},
    identify, kad, mdns,
    metrics::Recorder,
    ping,
    request_response::{self, OutboundRequestId},
    swarm::{
        ConnectionDenied, DialError, ListenError, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};

use super::{
    EventLoop, Identified,
    behaviour::{BehaviourEvent, is_internal_topic, is_members_topic, is_state_topic},
    error::NodeError,
    event::{Direction, DiscoverySource, EventKind, MessageData},
};
use crate::{
    metrics::ReasonLabel,
    policy::{
        gossip::{IgnoreReason, InboundMessage, Verdict},
        inbound,
    },
    time::now_unix_ms,
    wire::leave::{LeaveAck, LeaveNotice},
};

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.cluster.mark_changed();
                self.emit(EventKind::Listening { address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let established = self.dials.established(connection_id, peer_id);
                for reply in established.connected {
                    let _ = reply.send(Ok(peer_id));
                }
                self.on_connection_established(peer_id, &endpoint, num_established.get(), established.dialled_by_us);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                let cause = cause.map_or_else(|| "closed".to_owned(), |e| e.to_string());
                tracing::debug!(peer = %peer_id, %cause, "disconnected");
                self.directions.remove(&peer_id);
                self.identified.remove(&peer_id);
                if let Some(membership) = self.membership.as_mut() {
                    membership.admissions.disconnected(&peer_id);
                }
                self.gossip_gate.forget(&peer_id);
                self.cluster.disconnected(&peer_id);
                self.replica.sync_rate.forget(&peer_id);
                // The policy's verdict first: whoever sees `disconnected` has already seen any redial it caused.
                let decisions = self.peers.disconnected(peer_id, Instant::now());
                self.apply(decisions);
                self.emit(EventKind::Disconnected { peer: peer_id, cause });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                if let DialError::Denied { cause } = &error {
                    self.refused(Direction::Outbound, peer_id, None, cause);
                } else {
                    tracing::debug!(peer = ?peer_id, "outgoing connection failed: {error}");
                }
                for reply in self.dials.failed(connection_id, peer_id) {
                    let _ = reply.send(Err(NodeError::from_dial(&error)));
                }
                if let Some(peer) = peer_id {
                    let decisions = self.peers.dial_failed(peer, Instant::now());
                    self.apply(decisions);
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                peer_id,
                ..
            } => match &error {
                ListenError::Denied { cause } => self.refused(Direction::Inbound, peer_id, Some(send_back_addr), cause),
                _ => tracing::debug!(from = %send_back_addr, "incoming connection failed: {error}"),
            },
            SwarmEvent::ExpiredListenAddr { .. } => self.cluster.mark_changed(),
            SwarmEvent::ListenerError { error, .. } => tracing::warn!("listener error: {error}"),
            SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
                self.cluster.mark_changed();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(event)) => self.on_mdns(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossipsub(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.on_ping(event),
            SwarmEvent::Behaviour(BehaviourEvent::Leave(event)) => self.on_leave(event),
            SwarmEvent::Behaviour(BehaviourEvent::Members(event)) => self.on_members_exchange(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Admission(event)) => self.on_admission(event),
            _ => {}
        }
    }

    /// A connection was refused before it was up: over a connection limit, not on the allow list, on the deny list,
    /// or banned. Worth an operator's attention, and the node carries on.
    pub(super) fn refused(
        &mut self,
        direction: Direction,
        peer: Option<PeerId>,
        address: Option<Multiaddr>,
        cause: &ConnectionDenied,
    ) {
        let ban = peer.and_then(|peer| self.bans.reason(&peer).map(str::to_owned));
        let (label, reason) = match (denial_label(cause), ban) {
            ("blocked", Some(ban)) => ("banned", format!("banned ({ban})")),
            ("blocked", None) => ("deny_list", "on the deny list".to_owned()),
            (label, _) => (label, denial_reason(cause)),
        };
        self.metrics
            .connections_refused
            .get_or_create(&ReasonLabel { reason: label })
            .inc();
        let address_text = address.as_ref().map(ToString::to_string);
        let repeated = cause.downcast_ref::<inbound::Refusal>().is_some_and(|r| r.repeated);
        if label == "banned" || repeated {
            // The ban itself was logged, as was a host's first refusal at its per-address limit: a peer that keeps
            // redialling, or a host that keeps reopening sockets, must not flood the log (each refusal is counted).
            tracing::debug!(?direction, ?peer, address = ?address_text, "connection refused: {reason}");
        } else {
            tracing::warn!(?direction, ?peer, address = ?address_text, "connection refused: {reason}");
        }
        self.emit(EventKind::ConnectionRefused {
            direction,
            peer,
            address,
            reason,
        });
    }

    fn on_connection_established(
        &mut self,
        peer: PeerId,
        endpoint: &ConnectedPoint,
        num_established: u32,
        dialled_by_us: bool,
    ) {
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            if let Some(bootstrap_address) = self.bootstrap.on_connected(peer, address) {
                let routed = self.add_to_routing(peer, bootstrap_address.clone());
                self.announce_discovery(peer, DiscoverySource::Bootstrap, vec![bootstrap_address]);
                // With a CA, the lookup starts once the bootstrap peer is admitted.
                if routed {
                    self.kad_bootstrap();
                }
            } else if !dialled_by_us && !self.discoveries.knows(&peer) {
                // Kademlia dialled a peer that a lookup returned.
                self.announce_discovery(peer, DiscoverySource::Kademlia, vec![address.clone()]);
            }
        }
        if num_established == 1 {
            self.start_admission(peer, endpoint.get_remote_address());
            // One side asks (the lower peer id, whoever dialled: simultaneous dials must not skip it); with a CA the
            // exchange waits for the admission.
            if self.membership.is_none() && *self.swarm.local_peer_id() < peer {
                self.exchange_views(peer);
            }
            // Each side pulls what it lacks; with a CA, once the peer is admitted.
            if self.membership.is_none() {
                self.start_sync(peer);
            }
            let direction = if endpoint.is_dialer() {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            tracing::debug!(%peer, address = %endpoint.get_remote_address(), ?direction, "connected");
            self.directions.insert(peer, direction);
            self.emit(EventKind::Connected {
                peer,
                address: endpoint.get_remote_address().clone(),
                direction,
            });
        }
    }

    fn announce_discovery(&mut self, peer: PeerId, source: DiscoverySource, addresses: Vec<Multiaddr>) {
        let decisions = self
            .peers
            .discovered(peer, &addresses, source == DiscoverySource::Bootstrap, Instant::now());
        self.apply(decisions);
        if self.discoveries.record(peer, source, &addresses) {
            tracing::debug!(%peer, ?source, ?addresses, "discovered");
            self.emit(EventKind::Discovered {
                peer,
                source,
                addresses,
            });
        }
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        let mdns::Event::Discovered(found) = event else {
            return;
        };
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, address) in found {
            by_peer.entry(peer).or_default().push(address);
        }
        for (peer, addresses) in by_peer {
            for address in &addresses {
                self.add_to_routing(peer, address.clone());
            }
            let dial = DialOpts::peer_id(peer)
                .addresses(addresses.clone())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.start_dial(dial) {
                tracing::debug!(%peer, "not dialling mDNS peer: {e}");
            }
            self.announce_discovery(peer, DiscoverySource::Mdns, addresses);
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        self.libp2p_metrics.record(&event);
        // With a CA, Kademlia inserts nobody itself (manual inserts): a connected peer goes in once admitted.
        if let kad::Event::RoutablePeer { peer, address } | kad::Event::PendingRoutablePeer { peer, address } = event {
            self.add_to_routing(peer, address);
            return;
        }
        if let kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetClosestPeers(result),
            step,
            ..
        } = &event
        {
            let peers = match result {
                Ok(ok) => &ok.peers,
                Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
            };
            self.on_lookup_progress(*id, peers, step.last);
            return;
        }
        let kad::Event::OutboundQueryProgressed {
            result: kad::QueryResult::Bootstrap(result),
            step,
            ..
        } = event
        else {
            return;
        };
        match result {
            Ok(ok) if step.last => tracing::debug!(remaining = ok.num_remaining, "kademlia bootstrap finished"),
            Ok(_) => {}
            Err(e) => tracing::debug!("kademlia bootstrap: {e}"),
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        self.libp2p_metrics.record(&event);
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
        let mut protocols: Vec<String> = info.protocols.iter().map(ToString::to_string).collect();
        protocols.sort();
        self.identified.insert(
            peer_id,
            Identified {
                agent_version: info.agent_version.clone(),
                protocols,
            },
        );
        if !info.protocols.contains(&self.config.kad_protocol) {
            return;
        }
        for address in &info.listen_addrs {
            self.add_to_routing(peer_id, address.clone());
        }
        self.announce_discovery(peer_id, DiscoverySource::Identify, info.listen_addrs);
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        self.libp2p_metrics.record(&event);
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.peers.heard_from(propagation_source, None, Instant::now());
                if is_members_topic(&message.topic) {
                    self.on_member_gossip(propagation_source, &message_id, message);
                } else if is_state_topic(&message.topic) {
                    self.on_state_gossip(propagation_source, &message_id, message);
                } else {
                    self.on_gossip_message(propagation_source, &message_id, message);
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } if !is_internal_topic(&topic) => {
                self.emit(EventKind::Subscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::Subscribed { topic, .. } if is_members_topic(&topic) => self.cluster.someone_listens(),
            gossipsub::Event::Subscribed { .. } => {}
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            _ => {}
        }
    }

    /// The verdict on one gossip message (`policy::gossip`), reported to gossipsub: accepted (forwarded, and each
    /// fresh envelope delivered), ignored (dropped quietly, not forwarded) or rejected (dropped, counted, and held
    /// against the peer that sent it).
    fn on_gossip_message(&mut self, source: PeerId, message_id: &gossipsub::MessageId, message: gossipsub::Message) {
        let inbound = InboundMessage {
            source,
            publisher: message.source,
            data: &message.data,
        };
        let verdict = self
            .gossip_gate
            .judge(&inbound, self.is_member(&source), Instant::now());
        let fresh = match verdict {
            Verdict::Accept { fresh, repeats } => {
                self.count_repeats(repeats);
                self.report(message_id, &source, MessageAcceptance::Accept);
                fresh
            }
            Verdict::Reject { reason, detail } => {
                tracing::warn!(from = %source, publisher = ?message.source, reason, "rejected message: {detail}");
                self.report(message_id, &source, MessageAcceptance::Reject);
                self.count_rejection(reason);
                return;
            }
            Verdict::Ignore {
                reason: IgnoreReason::RateLimited,
            } => {
                // Dropped, not queued and not held against the peer's score: it may be relaying someone's burst.
                tracing::debug!(from = %source, "message over the peer's rate limit dropped");
                self.report(message_id, &source, MessageAcceptance::Ignore);
                self.count_rejection("rate_limited");
                return;
            }
            Verdict::Ignore {
                reason: IgnoreReason::AllRepeats { repeats },
            } => {
                tracing::debug!(from = %source, repeats, "dropping a message whose ids were all delivered already");
                self.count_repeats(repeats);
                self.report(message_id, &source, MessageAcceptance::Ignore);
                return;
            }
        };
        let topic = message.topic.into_string();
        for envelope in fresh {
            self.metrics.delivered.inc();
            let latency_ms = now_unix_ms().saturating_sub(envelope.sent_at_ms);
            self.metrics.delivery_latency.observe(latency_ms as f64 / 1000.0);
            self.emit(EventKind::Message {
                topic: topic.clone(),
                from: envelope.origin,
                id: envelope.id,
                content_type: envelope.content_type,
                sent_at: envelope.sent_at_ms,
                data: MessageData(envelope.payload.into()),
            });
        }
    }

    fn count_repeats(&mut self, repeats: usize) {
        self.metrics.duplicates.inc_by(repeats as u64);
    }

    pub(super) fn count_rejection(&mut self, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
        self.metrics.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(super) fn report(&mut self, message_id: &gossipsub::MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, source, acceptance);
    }

    fn on_ping(&mut self, event: ping::Event) {
        self.libp2p_metrics.record(&event);
        match event.result {
            Ok(rtt) => {
                self.metrics.ping_rtt.observe(rtt.as_secs_f64());
                self.peers.heard_from(event.peer, Some(rtt), Instant::now());
                self.emit(EventKind::Ping {
                    peer: event.peer,
                    // Microsecond precision: finer digits are noise.
                    rtt_ms: rtt.as_micros() as f64 / 1000.0,
                });
            }
            Err(e) => {
                self.peers.ping_failed(event.peer);
                tracing::warn!(peer = %event.peer, "ping failed: {e}");
            }
        }
    }

    /// A peer announced its departure: acknowledge, and let the peer table mark it `left`. Our own notices' outcomes
    /// matter only while we are shutting down (`leave_outcome`).
    fn on_leave(&mut self, event: request_response::Event<LeaveNotice, LeaveAck>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => {
                // The ack only says "heard"; a peer that is already gone cannot be told, which is fine.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .leave
                    .send_response(channel, LeaveAck::CURRENT);
                if !request.is_supported() {
                    tracing::warn!(%peer, version = request.v, "ignoring a leave notice of an unknown version");
                    return;
                }
                tracing::info!(%peer, "peer announced it is leaving");
                let decisions = self.peers.left(peer, Instant::now());
                self.apply(decisions);
                self.member_left(peer);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "bad leave notice: {error}");
            }
            _ => {}
        }
    }
}

/// Why a connection was denied. The limit itself says which one was hit ("at most 128 established connections");
/// `ConnectionDenied`'s own text is just "connection denied".
pub(super) fn denial_reason(cause: &ConnectionDenied) -> String {
    if let Some(exceeded) = cause.downcast_ref::<connection_limits::Exceeded>() {
        return exceeded.to_string();
    }
    if let Some(refusal) = cause.downcast_ref::<inbound::Refusal>() {
        return refusal.to_string();
    }
    match denial_label(cause) {
        "not_allowed" => "not on the allow list".to_owned(),
        "blocked" => "on the deny list or banned".to_owned(),
        _ => cause.to_string(),
    }
}

/// Which gate denied a connection, as a metrics label.
fn denial_label(cause: &ConnectionDenied) -> &'static str {
    if cause.downcast_ref::<connection_limits::Exceeded>().is_some() {
        "limit"
    } else if cause.downcast_ref::<inbound::Refusal>().is_some() {
        "address_limit"
    } else if cause.downcast_ref::<allow_block_list::NotAllowed>().is_some() {
        "not_allowed"
    } else if cause.downcast_ref::<allow_block_list::Blocked>().is_some() {
        "blocked"
    } else {
        "other"
    }
}

/// The request id of one of our leave notices that this event settles (acknowledged or failed), if any.
pub(super) fn leave_outcome(event: &SwarmEvent<BehaviourEvent>) -> Option<OutboundRequestId> {
    match event {
        SwarmEvent::Behaviour(BehaviourEvent::Leave(request_response::Event::Message {
            message: request_response::Message::Response { request_id, .. },
            ..
        }))
        | SwarmEvent::Behaviour(BehaviourEvent::Leave(request_response::Event::OutboundFailure {
            request_id, ..
        })) => Some(*request_id),
        _ => None,
    }
}

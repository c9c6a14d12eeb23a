//! The event loop's reaction to each swarm event: feed discoveries into Kademlia and the dialer, validate gossip
//! against the envelope rules, and report what happened as `Event`s. One function per behaviour keeps each arm
//! short; what to decide is asked of the pure modules.

use std::{collections::HashMap, time::Instant};

use libp2p::{
    Multiaddr, PeerId,
    core::ConnectedPoint,
    gossipsub::{self, MessageAcceptance},
    identify, kad, mdns, ping,
    swarm::{
        SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};

use super::{
    EventLoop,
    behaviour::BehaviourEvent,
    handle::{Direction, DiscoverySource, EventKind, MessageData},
};
use crate::envelope::Envelope;

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.emit(EventKind::Listening { address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                let dialled_by_us = self.own_dials.remove(&connection_id);
                self.on_connection_established(peer_id, &endpoint, num_established.get(), dialled_by_us);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                let cause = cause.map_or_else(|| "closed".to_owned(), |e| e.to_string());
                tracing::debug!(peer = %peer_id, %cause, "disconnected");
                self.emit(EventKind::Disconnected { peer: peer_id, cause });
                let decisions = self.peers.disconnected(peer_id, Instant::now());
                self.apply(decisions);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, "outgoing connection failed: {error}");
                self.own_dials.remove(&connection_id);
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
                if let Some(peer) = peer_id {
                    let decisions = self.peers.dial_failed(peer, Instant::now());
                    self.apply(decisions);
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr, error, ..
            } => {
                tracing::debug!(from = %send_back_addr, "incoming connection failed: {error}");
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!("listener error: {error}"),
            SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(event)) => self.on_mdns(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossipsub(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.on_ping(event),
            _ => {}
        }
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
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, bootstrap_address.clone());
                self.announce_discovery(peer, DiscoverySource::Bootstrap, vec![bootstrap_address]);
                self.kad_bootstrap();
            } else if !dialled_by_us && !self.discoveries.knows(&peer) {
                // Kademlia dialled a peer that a lookup returned.
                self.announce_discovery(peer, DiscoverySource::Kademlia, vec![address.clone()]);
            }
        }
        if num_established == 1 {
            let decisions = self
                .peers
                .connected(peer, endpoint.get_remote_address(), Instant::now());
            self.apply(decisions);
            let direction = if endpoint.is_dialer() {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            tracing::debug!(%peer, address = %endpoint.get_remote_address(), ?direction, "connected");
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
                self.swarm.behaviour_mut().kad.add_address(&peer, address.clone());
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
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
        if !info.protocols.contains(&self.config.kad_protocol) {
            return;
        }
        for address in &info.listen_addrs {
            self.swarm.behaviour_mut().kad.add_address(&peer_id, address.clone());
        }
        self.announce_discovery(peer_id, DiscoverySource::Identify, info.listen_addrs);
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.peers.heard_from(propagation_source, None, Instant::now());
                self.on_gossip_message(propagation_source, &message_id, message);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                self.emit(EventKind::Subscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            _ => {}
        }
    }

    /// Every message is decoded and reported to gossipsub as accepted (then forwarded and delivered) or rejected
    /// (dropped, counted, and held against the peer that sent it).
    fn on_gossip_message(&mut self, source: PeerId, message_id: &gossipsub::MessageId, message: gossipsub::Message) {
        let verdict = match Envelope::decode(&message.data, self.config.max_message_size) {
            Ok(envelope) if Some(envelope.origin) == message.source => Ok(envelope),
            Ok(_) => Err((
                "origin_mismatch",
                "envelope origin is not the signed publisher".to_owned(),
            )),
            Err(e) => Err((e.reason(), e.to_string())),
        };
        let acceptance = if verdict.is_ok() {
            MessageAcceptance::Accept
        } else {
            MessageAcceptance::Reject
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, &source, acceptance);
        match verdict {
            Ok(envelope) => self.emit(EventKind::Message {
                topic: message.topic.into_string(),
                from: envelope.origin,
                id: envelope.id,
                content_type: envelope.content_type,
                sent_at: envelope.sent_at_ms,
                data: MessageData(envelope.payload.into()),
            }),
            Err((reason, detail)) => {
                *self.rejected.entry(reason).or_default() += 1;
                tracing::warn!(from = %source, publisher = ?message.source, reason, "rejected message: {detail}");
            }
        }
    }

    fn on_ping(&mut self, event: ping::Event) {
        match event.result {
            Ok(rtt) => {
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
}

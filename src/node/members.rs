//! The event loop's membership glue: member records heard on the members topic or in a view exchange go through
//! their wire checks (signature, size, the author being the gossipsub signer) into the view (`policy::members`);
//! every housekeeping tick ages the view, runs the service registry's timers and due checks (`policy::checks`, the
//! probes themselves in `probe.rs` on tasks of their own) and announces our record when it is due or changed. Each
//! status change becomes a `member` or `service_health` event and a metric.

use std::time::{Duration, Instant};

use libp2p::{
    PeerId,
    gossipsub::{self, IdentTopic, MessageAcceptance},
    request_response,
};

use super::{EventLoop, cluster::MIN_PUBLISH_GAP, event::EventKind, probe};
use crate::{
    config::services::CheckKind,
    metrics::ClusterMetrics,
    policy::{
        checks::{HealthChange, ProbeRequest},
        members::{MemberStatus, Offer, Transition},
    },
    wire::members::{
        EXCHANGE_RECORDS_BYTES, Health, MAX_EXCHANGE_RECORDS, MEMBERS_TOPIC, MemberRecord, MembersExchange,
    },
};

/// A finished health check, as its task reports it to the loop.
pub(super) struct ProbeDone {
    request: ProbeRequest,
    outcome: crate::policy::checks::ProbeOutcome,
    took: Duration,
}

impl EventLoop {
    /// A record on the members topic. Forged or malformed records are rejected (and held against the relaying peer's
    /// gossip score); stale ones ignored, so they are not forwarded either.
    pub(super) fn on_member_gossip(
        &mut self,
        source: PeerId,
        message_id: &gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        self.metrics
            .cluster
            .count_bytes("received", "gossip", message.data.len());
        let opened = MemberRecord::open(&message.data).and_then(|(author, record)| {
            if Some(author) == message.source {
                Ok((author, record))
            } else {
                Err(crate::wire::members::RecordError::Invalid(format!(
                    "a record signed by {author} published by {:?}",
                    message.source
                )))
            }
        });
        let (author, record) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(from = %source, publisher = ?message.source, "rejected member record: {e}");
                self.report(message_id, &source, MessageAcceptance::Reject);
                self.count_rejection("member_record");
                return;
            }
        };
        // Records come every interval, and at most every MIN_PUBLISH_GAP from an honest node: faster ones are dropped
        // (not forwarded), so one peer cannot make the whole swarm verify records at line rate.
        // A member's final `left` record comes right after its last regular one (it leaves when it leaves): it is let
        // through once, or members that only hear it relayed would never learn that the member left.
        let first_leave = record.left
            && self
                .cluster
                .members
                .get(&author)
                .is_none_or(|m| m.status != MemberStatus::Left);
        if !first_leave
            && self
                .cluster
                .members
                .too_soon(&author, MIN_PUBLISH_GAP / 2, Instant::now())
        {
            self.report(message_id, &source, MessageAcceptance::Ignore);
            self.count_rejection("member_rate");
            return;
        }
        let leaving = record.left;
        let accepted = self.offer_member(author, record, message.data.into(), Duration::ZERO);
        if accepted && leaving {
            // Its signed `left` record is the second word of a member that leaves, beside the leave notice: either
            // one is enough for the peer table not to redial it (the notice may lose the race with the close).
            let decisions = self.peers.left(author, Instant::now());
            self.apply(decisions);
        }
        let acceptance = if accepted {
            MessageAcceptance::Accept
        } else {
            MessageAcceptance::Ignore
        };
        self.report(message_id, &source, acceptance);
    }

    /// Hands a checked record to the view and reports what changed; whether the view took it.
    fn offer_member(
        &mut self,
        author: PeerId,
        record: MemberRecord,
        envelope: std::sync::Arc<[u8]>,
        age: Duration,
    ) -> bool {
        let now = Instant::now();
        let before: Vec<(String, Health)> = self
            .cluster
            .members
            .get(&author)
            .map(|member| services_health(&member.record))
            .unwrap_or_default();
        match self.cluster.members.offer(author, record, envelope, age, now) {
            Offer::Accepted(transition) => {
                if let Some(transition) = transition {
                    self.on_member_transition(transition);
                }
                let after = self
                    .cluster
                    .members
                    .get(&author)
                    .map(|member| member.record.services.clone())
                    .unwrap_or_default();
                for service in after {
                    let from = before
                        .iter()
                        .find(|(id, _)| *id == service.id)
                        .map(|(_, health)| *health);
                    if from != Some(service.status) {
                        self.emit(EventKind::ServiceHealth {
                            peer: author,
                            service: service.id,
                            from,
                            to: service.status,
                            output: service.output,
                        });
                    }
                }
                true
            }
            Offer::Stale | Offer::OwnRecord => false,
            Offer::Full => {
                tracing::debug!(peer = %author, "member view full: record of a new member not kept");
                self.count_rejection("members_full");
                false
            }
        }
    }

    fn on_member_transition(&mut self, transition: Transition) {
        if transition.from.is_some() && transition.to.is_some() {
            self.metrics.cluster.member_flaps.inc();
        }
        tracing::info!(peer = %transition.peer, name = %transition.name, from = ?transition.from, to = ?transition.to,
            flapping = transition.flapping, "member");
        // A member that fails or leaves takes its services' health with it (and gives it back when it returns).
        if let (Some(from), Some(to)) = (transition.from, transition.to)
            && let Some(member) = self.cluster.members.get(&transition.peer)
        {
            let changes: Vec<EventKind> = member
                .record
                .services
                .iter()
                .filter_map(|service| {
                    let (before, after) = (
                        effective_health(from, service.status),
                        effective_health(to, service.status),
                    );
                    (before != after).then(|| EventKind::ServiceHealth {
                        peer: transition.peer,
                        service: service.id.clone(),
                        from: Some(before),
                        to: after,
                        output: if after == service.status {
                            service.output.clone()
                        } else {
                            format!("member {to}")
                        },
                    })
                })
                .collect();
            for change in changes {
                self.emit(change);
            }
        }
        self.emit(EventKind::Member {
            peer: transition.peer,
            name: transition.name,
            from: transition.from,
            to: transition.to,
            flapping: transition.flapping,
        });
    }

    /// A new connection: one side sends its view, the other answers with its own, so both know every member at
    /// once. In a swarm with a CA both sides send once they admitted the other (see `admit`).
    pub(super) fn exchange_views(&mut self, peer: PeerId) {
        let exchange = self.our_view();
        self.metrics
            .cluster
            .count_bytes("sent", "exchange", exchange_bytes(&exchange));
        self.swarm.behaviour_mut().members.send_request(&peer, exchange);
    }

    pub(super) fn on_members_exchange(&mut self, event: request_response::Event<MembersExchange, MembersExchange>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => {
                // Served once per connection, and only to an admitted peer; other requests get an empty view.
                let serve = self.is_member(&peer) && self.cluster.first_exchange(peer);
                let ours = if serve {
                    self.our_view()
                } else {
                    tracing::debug!(%peer, "members exchange not served (not admitted, or served already)");
                    MembersExchange::fitting(std::iter::empty())
                };
                self.metrics
                    .cluster
                    .count_bytes("sent", "exchange", exchange_bytes(&ours));
                // A peer gone meanwhile cannot be answered, which is fine.
                let _ = self.swarm.behaviour_mut().members.send_response(channel, ours);
                if serve {
                    self.take_view(peer, request);
                }
            }
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            } => self.take_view(peer, response),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "members exchange failed: {error}");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "bad members exchange: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// The records of a peer's view: each checked on its own, so one bad record spoils only itself.
    fn take_view(&mut self, peer: PeerId, exchange: MembersExchange) {
        self.metrics
            .cluster
            .count_bytes("received", "exchange", exchange_bytes(&exchange));
        if !self.is_member(&peer) {
            tracing::debug!(%peer, "ignoring the view of a peer not admitted");
            return;
        }
        if exchange.v != crate::wire::members::MEMBERS_VERSION {
            tracing::debug!(%peer, version = exchange.v, "ignoring a members exchange of an unknown version");
            return;
        }
        let offered = exchange.records.len();
        let mut refused = offered.saturating_sub(MAX_EXCHANGE_RECORDS);
        for entry in exchange.records.into_iter().take(MAX_EXCHANGE_RECORDS) {
            match MemberRecord::open(&entry.envelope) {
                Ok((author, record)) => {
                    self.offer_member(
                        author,
                        record,
                        entry.envelope.into(),
                        Duration::from_millis(entry.age_ms),
                    );
                }
                Err(e) => {
                    refused += 1;
                    tracing::debug!(%peer, "bad record in a members exchange: {e}");
                }
            }
        }
        if refused > 0 {
            tracing::warn!(%peer, offered, refused, "records refused in a members exchange");
            self.count_rejection("member_record");
        }
    }

    /// Our view as an exchange message: the freshest records that fit, nothing else copied.
    fn our_view(&self) -> MembersExchange {
        MembersExchange::fitting(self.cluster.members.exchange(Instant::now(), EXCHANGE_RECORDS_BYTES))
    }

    /// A peer's leave notice: it is `left` in the view at once.
    pub(super) fn member_left(&mut self, peer: PeerId) {
        if let Some(transition) = self.cluster.members.left(peer, Instant::now()) {
            self.on_member_transition(transition);
        }
    }

    /// The membership part of housekeeping: age the view, run the registry's timers and due checks, announce.
    pub(super) fn on_cluster_tick(&mut self) {
        let now = Instant::now();
        for transition in self.cluster.members.tick(now) {
            self.on_member_transition(transition);
        }
        let tick = self.cluster.services.tick(now);
        for change in tick.changes {
            self.on_local_health(change);
        }
        if !tick.deregistered.is_empty() {
            for definition in &tick.deregistered {
                tracing::warn!(service = %definition.id, "service critical for longer than deregister_after: deregistered");
                self.cluster.set_api_service(&definition.id, false);
            }
            self.save_services();
            self.cluster.mark_changed();
        }
        for request in self.cluster.services.due(now) {
            let done = self.probe_results.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = probe::probe(&request.kind, request.timeout).await;
                let took = started.elapsed();
                // The loop may be gone (shutting down): then nobody needs the result.
                let _ = done.send(ProbeDone { request, outcome, took }).await;
            });
        }
        if self.cluster.announce_due(now) {
            self.announce_record(false);
        }
        if self.cluster.gauges_due(now) {
            self.set_cluster_gauges();
        }
    }

    /// A health check finished.
    pub(super) fn on_probe_done(&mut self, done: ProbeDone) {
        let kind = match done.request.kind {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Ttl { .. } => "ttl",
        };
        self.metrics
            .cluster
            .check_duration
            .get_or_create(&crate::metrics::CheckLabel { kind })
            .observe(done.took.as_secs_f64());
        if let Some(change) = self
            .cluster
            .services
            .probe_finished(&done.request, done.outcome, Instant::now())
        {
            self.on_local_health(change);
        }
    }

    /// One of our services changed health: everyone learns it from our next record, announced at once.
    pub(super) fn on_local_health(&mut self, change: HealthChange) {
        tracing::info!(service = %change.id, from = %change.from, to = %change.to, output = %change.output, "service health");
        self.emit(EventKind::ServiceHealth {
            peer: *self.swarm.local_peer_id(),
            service: change.id,
            from: Some(change.from),
            to: change.to,
            output: change.output,
        });
        self.cluster.mark_changed();
    }

    /// Signs our record, makes it our own entry, and publishes it (`left` once, when shutting down, always goes
    /// out). Alone in the swarm, gossipsub has nobody to send it to; that is not an error.
    pub(super) fn announce_record(&mut self, left: bool) {
        let listen: Vec<_> = self.swarm.listeners().cloned().collect();
        let connections = self.swarm.connected_peers().count();
        let now = Instant::now();
        let envelope = match self.cluster.announce(&listen, connections, left, now) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::error!("cannot announce our member record: {e:#}");
                return;
            }
        };
        if !left && !self.cluster.may_publish(now) {
            return;
        }
        let bytes = envelope.len();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(MEMBERS_TOPIC), envelope.to_vec())
        {
            Ok(_) => {
                self.cluster.heard();
                self.metrics.cluster.count_bytes("sent", "gossip", bytes);
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::warn!("member record not published: {e}"),
        }
    }

    /// Writes the services registered through the API; a failure is logged (the registry itself is unchanged).
    pub(super) fn save_services(&self) {
        if let Err(e) = self.cluster.persist_services() {
            tracing::error!("{e:#}");
        }
    }

    fn set_cluster_gauges(&self) {
        let counts = self.cluster.members.counts();
        ClusterMetrics::set_counts(
            &self.metrics.cluster.members,
            counts.iter().map(|(status, n)| (<&'static str>::from(*status), *n)),
        );
        let mut by_health = [(Health::Passing, 0usize), (Health::Warning, 0), (Health::Critical, 0)];
        for member in self.cluster.members.iter() {
            for service in &member.record.services {
                let health = effective_health(member.status, service.status);
                if let Some(slot) = by_health.iter_mut().find(|(h, _)| *h == health) {
                    slot.1 += 1;
                }
            }
        }
        ClusterMetrics::set_counts(
            &self.metrics.cluster.services,
            by_health.iter().map(|(health, n)| (health_label(*health), *n)),
        );
    }
}

/// A service's health as the swarm should take it: a failed or left member's services are critical whatever its
/// last record said.
pub(super) fn effective_health(member: MemberStatus, reported: Health) -> Health {
    match member {
        MemberStatus::Failed | MemberStatus::Left => Health::Critical,
        MemberStatus::Alive | MemberStatus::Suspect => reported,
    }
}

fn health_label(health: Health) -> &'static str {
    match health {
        Health::Passing => "passing",
        Health::Warning => "warning",
        Health::Critical => "critical",
    }
}

fn services_health(record: &MemberRecord) -> Vec<(String, Health)> {
    record.services.iter().map(|s| (s.id.clone(), s.status)).collect()
}

fn exchange_bytes(exchange: &MembersExchange) -> usize {
    exchange.records.iter().map(|r| r.envelope.len() + 16).sum()
}

//! The event loop's replicated-map glue, remote side: deltas heard on the state topic (checked, the writer must be
//! the gossipsub signer), anti-entropy over `/swarmnode/sync/1.0.0` (each side pulls what it lacks on every new
//! connection, and every `--sync-interval` with jitter from a few random alive members; a full resync when the
//! answerer says only that is safe, resumed where it stopped if the connection drops), expiry of leases and
//! collection of tombstones every alive member holds. Decisions are `state::sync`'s; this file moves bytes.

use std::time::{Duration, Instant};

use libp2p::{
    PeerId,
    gossipsub::{self, MessageAcceptance},
    request_response,
};
use rand::{Rng, seq::SliceRandom};

use super::{
    EventLoop,
    event::StateOp,
    state::{Resync, Session, now_ntp, ntp},
};
use crate::{
    metrics::StateSourceLabel,
    policy::members::MemberStatus,
    state::{
        Merged, StateError,
        map::too_far_ahead,
        sync::{adopt_books, answer, apply_response, digest, resync_page},
    },
    wire::state::{
        Change, ChangeError, DeltasError, STATE_VERSION, SYNC_CHUNK_BYTES, SyncRequest, SyncResponse, decode_deltas,
    },
};

/// How far a periodic round may move from `--sync-interval`, either way, so rounds of many nodes do not align.
const ROUND_JITTER: f64 = 0.2;

impl EventLoop {
    /// Deltas on the state topic. Malformed ones, and changes whose writer is not the message's signer, are
    /// rejected (held against the relaying peer's score); changes too far in the future are refused one by one.
    pub(super) fn on_state_gossip(
        &mut self,
        source: PeerId,
        message_id: &gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        self.metrics
            .state
            .delta_bytes
            .get_or_create(&StateSourceLabel { source: "remote" })
            .inc_by(message.data.len() as u64);
        let deltas = match decode_deltas(&message.data) {
            Ok(deltas) => deltas,
            Err(DeltasError::Version(v)) => {
                // A later version of ours, not an attack: dropped quietly, the sender's score untouched.
                tracing::debug!(from = %source, version = v, "ignored state deltas of another version");
                self.report(message_id, &source, MessageAcceptance::Ignore);
                return;
            }
            Err(DeltasError::Malformed(e)) => {
                tracing::warn!(from = %source, publisher = ?message.source, "rejected state delta: {e}");
                self.report(message_id, &source, MessageAcceptance::Reject);
                self.metrics.state.refuse("invalid");
                return;
            }
        };
        let max_value = self.replica.config.max_value_size;
        let mut taken = Vec::with_capacity(deltas.changes.len());
        for change in deltas.changes {
            match change.check(max_value) {
                Ok(origin) if Some(origin) == message.source => taken.push(change),
                // Larger than our --max-value-size but maybe not the sender's: refused here, nobody's fault.
                Err(ChangeError::ValueTooLarge { .. }) => self.metrics.state.refuse("size"),
                checked => {
                    let why = checked.map_or_else(
                        |e| e.to_string(),
                        |origin| format!("a change by {origin} published by {:?}", message.source),
                    );
                    tracing::warn!(from = %source, publisher = ?message.source, "rejected state delta: {why}");
                    self.report(message_id, &source, MessageAcceptance::Reject);
                    self.metrics.state.refuse("forged");
                    return;
                }
            }
        }
        self.report(message_id, &source, MessageAcceptance::Accept);
        let now = now_ntp();
        for change in taken {
            self.take_remote(change, now);
        }
        self.commit_if_idle();
    }

    /// Merges one checked remote change unless its time is too far ahead of our clock.
    fn take_remote(&mut self, change: Change, now: u64) {
        if too_far_ahead(change.time, now, ntp(self.replica.config.max_clock_drift)) {
            self.metrics.state.refuse("drift");
            tracing::warn!(
                key = %change.key,
                ahead_ms = uhlc::NTP64(change.time - now).to_duration().as_millis() as u64,
                "refused a state change from the future (--max-clock-drift)"
            );
            return;
        }
        let timestamp = uhlc::Timestamp::new(uhlc::NTP64(change.time), *self.replica.hlc.get_id());
        // Never fails: the clock's own bound is far beyond --max-clock-drift.
        let _ = self.replica.hlc.update_with_timestamp(&timestamp);
        match self.replica.map.merge(change.clone(), now) {
            Ok(Merged::Won { .. }) => {
                self.metrics.state.wrote("remote");
                self.emit_state_change(&change, "remote");
            }
            Ok(Merged::Lost | Merged::Duplicate) => {}
            Err(error) => self.refuse_remote(&error),
        }
    }

    fn refuse_remote(&self, error: &StateError) {
        let reason = match error {
            StateError::Full { .. } => "full",
            StateError::TooManyWriters(_) => "writers",
            StateError::Invalid(ChangeError::ValueTooLarge { .. }) => "size",
            StateError::Invalid(_) => "invalid",
            StateError::Forged { .. } => "forged",
        };
        self.metrics.state.refuse(reason);
        tracing::debug!("refused a remote state change: {error}");
    }

    /// Pulls from `peer` what we lack (or the next page of a full resync), unless a request is in flight already or
    /// the peer is not admitted.
    pub(super) fn start_sync(&mut self, peer: PeerId) {
        if !self.is_member(&peer) || self.replica.sessions.contains_key(&peer) {
            return;
        }
        let after = self.replica.resume.get(&peer).map(|resync| resync.after.clone());
        let request = SyncRequest {
            v: STATE_VERSION,
            digest: digest(&self.replica.map),
            resync_after: after.clone(),
        };
        self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.replica.sessions.insert(peer, Session { after });
    }

    pub(super) fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => {
                let response = self.answer_sync(peer, request);
                // A peer gone meanwhile cannot be answered, which is fine.
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
            }
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            } => {
                let session = self.replica.sessions.remove(&peer);
                self.take_sync(peer, session.and_then(|s| s.after), response);
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                self.replica.sessions.remove(&peer);
                tracing::debug!(%peer, "state sync failed: {error}");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "bad state sync request: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Our answer to a peer's sync request: nothing for a peer not admitted or of another version.
    fn answer_sync(&mut self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        let within_rate = self.replica.sync_rate.allow(peer, Instant::now());
        if !within_rate {
            self.metrics.state.refuse("sync_rate");
        }
        if !within_rate || !self.is_member(&peer) || request.v != STATE_VERSION {
            tracing::debug!(%peer, version = request.v, "state sync not served (too fast, not admitted, or another version)");
            return SyncResponse {
                v: STATE_VERSION,
                changes: Vec::new(),
                cleared: Vec::new(),
                more: false,
                resync_needed: false,
                digest: Vec::new(),
                page: None,
            };
        }
        self.replica.coverage.record(peer, &request.digest);
        let (kind, response) = match &request.resync_after {
            Some(after) => ("resync", resync_page(&self.replica.map, after, SYNC_CHUNK_BYTES)),
            None => ("pull", answer(&self.replica.map, &request.digest, SYNC_CHUNK_BYTES)),
        };
        let bytes = response.changes.iter().map(Change::cost).sum();
        self.metrics.state.synced(kind, "sent", bytes);
        response
    }

    /// A peer's answer to our pull: its changes checked one by one and merged, then the next request if more is
    /// missing (and this chunk brought something new) or a full resync is needed or under way.
    fn take_sync(&mut self, peer: PeerId, after: Option<String>, response: SyncResponse) {
        if !self.is_member(&peer) || response.v != STATE_VERSION {
            return;
        }
        self.replica.coverage.record(peer, &response.digest);
        if response.resync_needed {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.replica.resume.entry(peer) {
                tracing::info!(%peer, "versions we lack were collected there: full state resync");
                entry.insert(Resync::default());
            }
            self.start_sync(peer);
            return;
        }
        let kind = if after.is_some() { "resync" } else { "pull" };
        let bytes = response.changes.iter().map(Change::cost).sum();
        self.metrics.state.synced(kind, "received", bytes);
        let now = now_ntp();
        let max_value = self.replica.config.max_value_size;
        let drift = ntp(self.replica.config.max_clock_drift);
        let mut refused: Vec<&'static str> = Vec::new();
        for change in &response.changes {
            let reason = match change.check(max_value) {
                Err(ChangeError::ValueTooLarge { .. }) => Some("size"),
                Err(_) => Some("invalid"),
                Ok(_) if too_far_ahead(change.time, now, drift) => Some("drift"),
                Ok(_) => {
                    let timestamp = uhlc::Timestamp::new(uhlc::NTP64(change.time), *self.replica.hlc.get_id());
                    // Never fails: the clock's own bound is far beyond --max-clock-drift.
                    let _ = self.replica.hlc.update_with_timestamp(&timestamp);
                    None
                }
            };
            refused.extend(reason);
        }
        for reason in &refused {
            self.metrics.state.refuse(reason);
        }
        if !refused.is_empty() {
            tracing::warn!(%peer, refused = refused.len(), reasons = ?refused, "state changes from sync refused");
        }
        let more = response.more;
        let page = response
            .page
            .as_ref()
            .map(|page| (page.through.clone(), page.books.clone()));
        let accept = |change: &Change| change.check(max_value).is_ok() && !too_far_ahead(change.time, now, drift);
        let applied = apply_response(&mut self.replica.map, response, after.as_deref(), now, accept);
        for (change, _) in &applied.won {
            self.metrics.state.wrote("remote");
            self.emit_state_change(change, "remote");
        }
        for change in &applied.dropped {
            self.emit_state_event(change, StateOp::Delete, "remote");
        }
        for error in &applied.refused {
            self.refuse_remote(error);
        }
        // A chunk that brought nothing new would come again the same: the next round retries instead.
        let mut next = more && applied.progress;
        if let Some((through, books)) = page
            && let Some(resync) = self.replica.resume.get_mut(&peer)
        {
            resync.books.get_or_insert(books);
            resync.not_taken.extend(applied.not_taken);
            next = true;
            match through {
                Some(last) => resync.after = last,
                None => {
                    if let Some(resync) = self.replica.resume.remove(&peer) {
                        adopt_books(
                            &mut self.replica.map,
                            &resync.books.unwrap_or_default(),
                            &resync.not_taken,
                        );
                    }
                    // What the answerer learned while the pages went by follows by an ordinary pull.
                    tracing::info!(%peer, dropped = applied.dropped.len(), "full state resync done");
                }
            }
        }
        self.commit_if_idle();
        if next {
            self.start_sync(peer);
        }
    }

    /// Every housekeeping tick: leases that ran out become tombstones; every round (`--sync-interval` with jitter),
    /// a pull from a few random alive members and the collection of tombstones every alive member holds.
    pub(super) fn on_state_tick(&mut self, now: Instant) {
        let clock = now_ntp();
        for change in self.replica.map.expire(clock) {
            self.emit_state_event(&change, StateOp::Expire, "local");
        }
        if now >= self.replica.next_round {
            let jitter = rand::thread_rng().gen_range(1.0 - ROUND_JITTER..=1.0 + ROUND_JITTER);
            self.replica.next_round = now + self.replica.config.sync_interval.mul_f64(jitter);
            self.sync_round(clock);
        }
        self.commit_if_idle();
    }

    fn sync_round(&mut self, clock: u64) {
        let local = *self.swarm.local_peer_id();
        let members = &self.cluster.members;
        let others = || members.iter().filter(move |m| m.peer != local);
        // Tombstones wait for every member that has not left, suspect and failed ones included: a member cut off by
        // a partition must not lose a delete that raced its writes (it is reaped after --reap-after, and
        // --tombstone-ttl bounds the wait in any case).
        let holders: Vec<PeerId> = others()
            .filter(|m| m.status != MemberStatus::Left)
            .map(|m| m.peer)
            .collect();
        let mut connected: Vec<PeerId> = others()
            .filter(|m| m.status == MemberStatus::Alive && self.swarm.is_connected(&m.peer))
            .map(|m| m.peer)
            .collect();
        connected.shuffle(&mut rand::thread_rng());
        for peer in connected.into_iter().take(self.replica.config.sync_peers) {
            self.start_sync(peer);
        }
        let members = &self.cluster.members;
        self.replica.coverage.retain(|peer| members.get(peer).is_some());
        self.replica.resume.retain(|peer, _| members.get(peer).is_some());
        let replica = &mut self.replica;
        let ttl = ntp(replica.config.tombstone_ttl);
        let coverage = &replica.coverage;
        let collected = replica
            .map
            .collect(clock, ttl, |actor| coverage.covered(actor, holders.iter()));
        if collected > 0 {
            tracing::debug!(collected, "tombstones collected");
        }
    }

    /// The map's gauges, from its own counts.
    pub(super) fn set_state_gauges(&self) {
        let counts = self.replica.map.counts();
        let state = &self.metrics.state;
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        state.keys.set(gauge(counts.keys));
        state.tombstones.set(gauge(counts.tombstones));
        state.bytes.set(gauge(counts.bytes));
        state.writers.set(gauge(counts.writers));
    }
}

/// How long a node waits for its in-flight commit when it stops.
pub(super) const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(1);

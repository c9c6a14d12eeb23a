//! `Members`: the swarm-wide member view, as a pure state machine. The event loop hands it every verified member
//! record (from gossip, or relayed in a view exchange with the age the sender saw it at) and ticks it; it answers
//! which members changed status. Each node ages records on its own clock, so no two clocks need agree: alive →
//! suspect (not renewed for `ttl`) → failed (not renewed for `fail_after`), left at once on a leave record or notice,
//! and failed or left members are reaped after `reap_after`. Only a higher (incarnation, seq) renews a member, so
//! relays cannot keep a dead member alive. The view is bounded by a member count and an envelope byte budget; a live
//! member is never thrown out for a newcomer.
//!
//! A member's `changed_at` is when its status became true on our clock, derived from when it was last renewed (a
//! record renewed at `r` is suspect from `r + ttl`, failed from `r + fail_after`) rather than from when we happened
//! to notice. A failed member relayed to a joiner therefore keeps its reap time instead of living another
//! `reap_after` on every node it reaches, which is how dead members get gossiped for ever.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::{
    time::deadline,
    wire::members::{EXCHANGE_ENTRY_OVERHEAD, ExchangedRecord, MemberRecord},
};

/// Where a member stands in our view. The API and the members-by-status metric name it in lowercase.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum MemberStatus {
    /// Renewed within `ttl`.
    Alive,
    /// Not renewed for `ttl`: probably gone, or cut off from us; still routed to by nobody careful.
    Suspect,
    /// Not renewed for `fail_after`: taken for dead until it is heard again.
    Failed,
    /// Announced a graceful departure; only a later incarnation (a restart) brings it back.
    Left,
}

impl MemberStatus {
    /// Every status, in the order `Members::counts` reports them.
    pub const ALL: [MemberStatus; 4] = [
        MemberStatus::Alive,
        MemberStatus::Suspect,
        MemberStatus::Failed,
        MemberStatus::Left,
    ];
}

/// How fast records age, and what counts as flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberTimers {
    /// Not renewed for this long: suspect. Three publish intervals, so one or two lost records are no alarm.
    pub ttl: Duration,
    /// Not renewed for this long: failed.
    pub fail_after: Duration,
    /// A failed or left member is forgotten this long after it got there, so the dead are not kept for ever.
    pub reap_after: Duration,
    /// Status changes are counted over this window to tell a flapping member from one that failed once.
    pub flap_window: Duration,
    /// More changes than this within `flap_window`: flapping.
    pub flap_limit: u32,
}

impl MemberTimers {
    /// Timers with failure at three `ttl`s, flapping at more than 4 changes in 10 minutes.
    pub fn new(ttl: Duration, reap_after: Duration) -> Self {
        MemberTimers {
            ttl,
            fail_after: ttl.saturating_mul(3),
            reap_after,
            flap_window: Duration::from_secs(600),
            flap_limit: 4,
        }
    }
}

impl Default for MemberTimers {
    /// A 30 s ttl (three 10 s publish intervals) and reaping after an hour.
    fn default() -> Self {
        MemberTimers::new(Duration::from_secs(30), Duration::from_secs(3600))
    }
}

/// The view's memory bounds: records come from the network, so both their number and their bytes are capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLimits {
    /// Members at most, our own included.
    pub max_members: usize,
    /// Sum of the members' signed envelopes, in bytes, at most.
    pub max_bytes: usize,
}

impl Default for MemberLimits {
    fn default() -> Self {
        MemberLimits {
            max_members: 4096,
            max_bytes: 32 << 20,
        }
    }
}

/// One member as we see it.
#[derive(Debug, Clone)]
pub struct Member {
    pub peer: PeerId,
    /// Its latest record, highest (incarnation, seq) so far.
    pub record: MemberRecord,
    /// The signed bytes of `record`, relayed as they are in view exchanges.
    pub envelope: Arc<[u8]>,
    pub status: MemberStatus,
    /// When the member last renewed its record, on our clock (earlier than we heard it when it came relayed).
    pub renewed_at: Instant,
    /// When `status` became true, on our clock.
    pub changed_at: Instant,
    /// Status changes since we first heard of it (joining and being reaped are not changes).
    pub flaps: u64,
    /// When the latest changes happened, oldest first; `flap_limit + 1` at most.
    recent: VecDeque<Instant>,
}

impl Member {
    /// Whether more than `flap_limit` status changes fell within the last `flap_window`.
    pub fn is_flapping(&self, now: Instant, timers: &MemberTimers) -> bool {
        let within = self
            .recent
            .iter()
            .filter(|at| now.saturating_duration_since(**at) < timers.flap_window)
            .count();
        within > timers.flap_limit as usize
    }

    /// How long ago the member last renewed its record.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.renewed_at)
    }

    fn change(&mut self, to: MemberStatus, at: Instant, timers: &MemberTimers) {
        self.status = to;
        self.changed_at = self.changed_at.max(at);
        self.flaps += 1;
        self.recent.push_back(self.changed_at);
        while self.recent.len() > timers.flap_limit as usize + 1 {
            self.recent.pop_front();
        }
    }
}

/// A member's status change, to report as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub peer: PeerId,
    pub name: String,
    /// `None`: a member we had not heard of.
    pub from: Option<MemberStatus>,
    /// `None`: the member was reaped (or evicted to make room) and is forgotten.
    pub to: Option<MemberStatus>,
    /// Whether the member is flapping after this change.
    pub flapping: bool,
}

/// What became of an offered record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Taken as the member's latest record, with the status change it caused, if any.
    Accepted(Option<Transition>),
    /// Not newer than what we hold (a relayed copy, a reordered older one, one from before the member left), or
    /// about a member unknown here that would already be reaped: ignored, and renews nothing.
    Stale,
    /// A record of ours relayed back to us: ignored.
    OwnRecord,
    /// The view is at its bounds and nothing reapable is left to make room: refused.
    Full,
}

/// The member view.
#[derive(Debug)]
pub struct Members {
    local: PeerId,
    timers: MemberTimers,
    limits: MemberLimits,
    members: BTreeMap<PeerId, Member>,
    bytes: usize,
    /// Members evicted to make room since the last tick, reported as reaped by the next one (`max_members` at most).
    evicted: Vec<Transition>,
}

impl Members {
    pub fn new(local: PeerId, timers: MemberTimers, limits: MemberLimits) -> Self {
        Members {
            local,
            timers,
            limits,
            members: BTreeMap::new(),
            bytes: 0,
            evicted: Vec::new(),
        }
    }

    /// Our own record: always alive, part of the view and of every exchange (age 0). It is never refused, even past
    /// the bounds (which then refuse newcomers sooner).
    pub fn set_local(&mut self, record: MemberRecord, envelope: Arc<[u8]>, now: Instant) {
        match self.members.get_mut(&self.local) {
            Some(member) => {
                self.bytes = self.bytes - member.envelope.len() + envelope.len();
                member.record = record;
                member.envelope = envelope;
                member.renewed_at = now;
            }
            None => {
                self.bytes += envelope.len();
                let member = new_member(self.local, record, envelope, MemberStatus::Alive, now, now);
                self.members.insert(self.local, member);
            }
        }
    }

    /// A verified record by `author`, heard on gossip (`age` zero) or relayed in a view exchange (`age`: how long
    /// ago the sender saw it renewed).
    pub fn offer(
        &mut self,
        author: PeerId,
        record: MemberRecord,
        envelope: Arc<[u8]>,
        age: Duration,
        now: Instant,
    ) -> Offer {
        if author == self.local {
            return Offer::OwnRecord;
        }
        let renewed = before(now, age);
        let Some(member) = self.members.get(&author) else {
            let status = status_at(&record, now.saturating_duration_since(renewed), &self.timers);
            let changed_at = became(status, renewed, now, &self.timers);
            if is_reapable(status) && now.saturating_duration_since(changed_at) >= self.timers.reap_after {
                return Offer::Stale;
            }
            if !self.make_room(1, envelope.len(), None) {
                return Offer::Full;
            }
            self.bytes += envelope.len();
            self.evicted.retain(|evicted| evicted.peer != author);
            let member = new_member(author, record, envelope, status, renewed, changed_at);
            let transition = transition(&member, None, now, &self.timers);
            self.members.insert(author, member);
            return Offer::Accepted(Some(transition));
        };
        let held = (member.record.incarnation, member.record.seq);
        // Left stays left within an incarnation, but the signed `left` record itself is taken (it may arrive after
        // the leave notice), so it is kept and relayed.
        let left_before =
            member.status == MemberStatus::Left && record.incarnation == member.record.incarnation && !record.left;
        if (record.incarnation, record.seq) <= held || left_before {
            return Offer::Stale;
        }
        let held_bytes = member.envelope.len();
        if envelope.len() > held_bytes && !self.make_room(0, envelope.len() - held_bytes, Some(author)) {
            return Offer::Full;
        }
        let timers = self.timers;
        let member = self
            .members
            .get_mut(&author)
            .expect("make_room keeps the member it makes room for");
        self.bytes = self.bytes - held_bytes + envelope.len();
        member.renewed_at = member.renewed_at.max(renewed);
        let status = status_at(&record, member.age(now), &timers);
        member.record = record;
        member.envelope = envelope;
        if status == member.status {
            return Offer::Accepted(None);
        }
        let from = member.status;
        member.change(status, became(status, member.renewed_at, now, &timers), &timers);
        Offer::Accepted(Some(transition(member, Some(from), now, &timers)))
    }

    /// The leave notice (request-response) from a connected peer: it is left at once.
    pub fn left(&mut self, peer: PeerId, now: Instant) -> Option<Transition> {
        if peer == self.local {
            return None;
        }
        let member = self.members.get_mut(&peer)?;
        if member.status == MemberStatus::Left {
            return None;
        }
        let from = member.status;
        member.change(MemberStatus::Left, now, &self.timers);
        Some(transition(member, Some(from), now, &self.timers))
    }

    /// Ages every member and reaps; transitions in a stable order (by peer). A member found late past two
    /// thresholds changes once (alive to failed); members evicted since the last tick are reported here as reaped.
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let timers = self.timers;
        let mut transitions = std::mem::take(&mut self.evicted);
        let mut reaped = Vec::new();
        for (peer, member) in self.members.iter_mut() {
            if *peer == self.local {
                continue;
            }
            if matches!(member.status, MemberStatus::Alive | MemberStatus::Suspect) {
                let status = status_at(&member.record, member.age(now), &timers);
                if status > member.status {
                    let from = member.status;
                    member.change(status, became(status, member.renewed_at, now, &timers), &timers);
                    transitions.push(transition(member, Some(from), now, &timers));
                }
            }
            if is_reapable(member.status) && now.saturating_duration_since(member.changed_at) >= timers.reap_after {
                reaped.push(*peer);
            }
        }
        for peer in reaped {
            if let Some(member) = self.remove(&peer) {
                transitions.push(gone(member));
            }
        }
        transitions.sort_by_key(|transition| transition.peer);
        transitions
    }

    /// Whether a record from `author` arrives sooner than `gap` after its last renewal: an honest node sends at most
    /// one per gap, so a faster one is dropped (not forwarded) rather than verified and relayed at line rate.
    pub fn too_soon(&self, author: &PeerId, gap: Duration, now: Instant) -> bool {
        self.members
            .get(author)
            .is_some_and(|member| now.saturating_duration_since(member.renewed_at) < gap)
    }

    pub fn get(&self, peer: &PeerId) -> Option<&Member> {
        self.members.get(peer)
    }

    /// Every member, ours included, by peer id.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Members held, ours included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Bytes of envelopes held, ours included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many members are in each status, in `MemberStatus::ALL` order (for the members-by-status metric).
    pub fn counts(&self) -> [(MemberStatus, usize); 4] {
        MemberStatus::ALL.map(|status| (status, self.iter().filter(|m| m.status == status).count()))
    }

    /// What we send in a view exchange: every member's envelope with its age, freshest first (ours first, age 0).
    /// Failed and left members are included, so a joiner learns they are gone; reaped ones are not.
    /// At most `limit` records, and no copy of those left out. A member known to have left only from its notice is
    /// left out: its last record does not say so, and would arrive elsewhere as alive.
    pub fn exchange(&self, now: Instant, limit: usize) -> Vec<ExchangedRecord> {
        let age = |m: &Member| {
            if m.peer == self.local {
                Duration::ZERO
            } else {
                m.age(now)
            }
        };
        let mut members: Vec<&Member> = self
            .iter()
            .filter(|m| m.status != MemberStatus::Left || m.record.left)
            .collect();
        members.sort_by_key(|m| (m.peer != self.local, age(m), m.peer));
        let mut budget = limit;
        members
            .into_iter()
            .take_while(|m| {
                let cost = m.envelope.len() + EXCHANGE_ENTRY_OVERHEAD;
                let fits = cost <= budget;
                budget = budget.saturating_sub(cost);
                fits
            })
            .map(|m| ExchangedRecord {
                envelope: m.envelope.to_vec(),
                age_ms: u64::try_from(age(m).as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    pub fn timers(&self) -> &MemberTimers {
        &self.timers
    }

    /// Makes room for `count` more members and `extra` more bytes by evicting failed and left members (not `keep`),
    /// the longest in their status first; evicts nothing and answers false when even all of them would not do.
    fn make_room(&mut self, count: usize, extra: usize, keep: Option<PeerId>) -> bool {
        let limits = self.limits;
        let fits = |members: usize, bytes: usize| {
            members.saturating_add(count) <= limits.max_members && bytes.saturating_add(extra) <= limits.max_bytes
        };
        let (mut members, mut bytes) = (self.members.len(), self.bytes);
        if fits(members, bytes) {
            return true;
        }
        let mut candidates: Vec<(Instant, PeerId, usize)> = self
            .iter()
            .filter(|m| is_reapable(m.status) && m.peer != self.local && Some(m.peer) != keep)
            .map(|m| (m.changed_at, m.peer, m.envelope.len()))
            .collect();
        candidates.sort();
        let mut evict = Vec::new();
        for (_, peer, size) in candidates {
            if fits(members, bytes) {
                break;
            }
            members -= 1;
            bytes -= size;
            evict.push(peer);
        }
        if !fits(members, bytes) {
            return false;
        }
        for peer in evict {
            if let Some(member) = self.remove(&peer)
                && self.evicted.len() < self.limits.max_members
            {
                self.evicted.push(gone(member));
            }
        }
        true
    }

    fn remove(&mut self, peer: &PeerId) -> Option<Member> {
        let member = self.members.remove(peer)?;
        self.bytes -= member.envelope.len();
        Some(member)
    }
}

fn new_member(
    peer: PeerId,
    record: MemberRecord,
    envelope: Arc<[u8]>,
    status: MemberStatus,
    renewed_at: Instant,
    changed_at: Instant,
) -> Member {
    Member {
        peer,
        record,
        envelope,
        status,
        renewed_at,
        changed_at,
        flaps: 0,
        recent: VecDeque::new(),
    }
}

/// The status a record stands for when it was last renewed `age` ago.
fn status_at(record: &MemberRecord, age: Duration, timers: &MemberTimers) -> MemberStatus {
    if record.left {
        MemberStatus::Left
    } else if age >= timers.fail_after {
        MemberStatus::Failed
    } else if age >= timers.ttl {
        MemberStatus::Suspect
    } else {
        MemberStatus::Alive
    }
}

/// When a member renewed at `renewed` got to `status` (never later than `now`).
fn became(status: MemberStatus, renewed: Instant, now: Instant, timers: &MemberTimers) -> Instant {
    let after = match status {
        MemberStatus::Alive | MemberStatus::Left => Duration::ZERO,
        MemberStatus::Suspect => timers.ttl,
        MemberStatus::Failed => timers.fail_after,
    };
    deadline(renewed, after).min(now)
}

/// `now - age`, or, when that is before the clock's origin, as far back as it reaches (within a factor of two): a
/// record relayed as older than our clock is as old as anything can be.
fn before(now: Instant, age: Duration) -> Instant {
    let mut step = age;
    loop {
        if let Some(at) = now.checked_sub(step) {
            return at;
        }
        step /= 2;
    }
}

fn is_reapable(status: MemberStatus) -> bool {
    matches!(status, MemberStatus::Failed | MemberStatus::Left)
}

fn transition(member: &Member, from: Option<MemberStatus>, now: Instant, timers: &MemberTimers) -> Transition {
    Transition {
        peer: member.peer,
        name: member.record.name.clone(),
        from,
        to: Some(member.status),
        flapping: member.is_flapping(now, timers),
    }
}

fn gone(member: Member) -> Transition {
    Transition {
        peer: member.peer,
        name: member.record.name,
        from: Some(member.status),
        to: None,
        flapping: false,
    }
}

#[cfg(test)]
mod tests;

//! `PeerTable`: the liveness policy, as a pure state machine. It is fed what happened to a peer (discovered,
//! connected, heard from, disconnected, a redial failed) together with `now`, and answers with what to do (dial,
//! disconnect, forget) and which state changes to report. No I/O and no clock of its own, so every transition is
//! unit-tested with a fake clock; the event loop only carries events in and actions out.
//!
//! States follow the seed design: new → active → disconnected → reconnecting → active | removed. A peer silent for
//! longer than the timeout is disconnected; a dropped peer is redialled with exponential backoff and jitter, up to the
//! configured attempts, then removed. A peer that announced its departure is `left` and is not redialled. Bootstrap
//! peers are never given up on: past their attempts (or after leaving) they are retried at the capped backoff, for
//! ever.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::time::deadline;

/// Where a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Known (discovered), never connected yet.
    New,
    /// Connected and heard from within the timeout.
    Active,
    /// The connection is gone (or we closed it because the peer fell silent).
    Disconnected,
    /// Waiting to redial, or redialling.
    Reconnecting,
    /// Given up on; not redialled unless discovered again.
    Removed,
    /// Announced that it was shutting down; not redialled (unless it is a bootstrap peer, on the slow schedule).
    Left,
}

/// The policy's tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessPolicy {
    /// No successful ping or traffic for this long: disconnect.
    pub peer_timeout: Duration,
    /// Redials after a drop before the peer is removed.
    pub reconnect_attempts: u32,
    /// Delay before the first redial; doubled for each further attempt.
    pub reconnect_backoff: Duration,
    /// Upper bound of the redial delay.
    pub reconnect_backoff_max: Duration,
    /// A removed or left peer is forgotten this long after it got there (bootstrap peers never are).
    pub forget_after: Duration,
    /// Peers not connected that the table remembers at most; past it the longest unheard-of is forgotten first.
    pub max_known_peers: usize,
}

impl Default for LivenessPolicy {
    fn default() -> Self {
        LivenessPolicy {
            peer_timeout: Duration::from_secs(30),
            reconnect_attempts: 3,
            reconnect_backoff: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(30),
            forget_after: Duration::from_secs(600),
            max_known_peers: 1000,
        }
    }
}

/// Addresses remembered per peer at most: the most recently confirmed (by a connection) first, then the most
/// recently reported.
pub const MAX_ADDRESSES: usize = 8;

/// Something the event loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dial {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    },
    Disconnect {
        peer: PeerId,
    },
    /// Drop the peer from routing state (it was removed, or left).
    Unroute {
        peer: PeerId,
    },
    /// The table forgot the peer: drop everything else kept about it too.
    Forget {
        peer: PeerId,
    },
}

/// A state change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub peer: PeerId,
    pub from: PeerState,
    pub to: PeerState,
    pub reason: &'static str,
    /// The reconnect attempt this change belongs to (0 outside reconnecting).
    pub attempt: u32,
    /// Time until the next redial, when one is scheduled.
    pub next_retry: Option<Duration>,
}

/// What the table decided in response to one input or tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    pub actions: Vec<Action>,
    pub transitions: Vec<Transition>,
}

/// Everything the table keeps about one peer.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    pub state: PeerState,
    pub addresses: Vec<Multiaddr>,
    pub bootstrap: bool,
    pub first_seen: Instant,
    pub last_seen: Instant,
    pub last_rtt: Option<Duration>,
    pub smoothed_rtt: Option<Duration>,
    pub consecutive_failures: u32,
    pub attempt: u32,
    pub next_retry: Option<Instant>,
    /// Why the peer was removed or left, while it is.
    pub removed_because: Option<&'static str>,
    /// A redial is in flight; its outcome arrives as `connected` or `dial_failed`.
    dialling: bool,
    /// How many of `addresses`, from the front, a connection confirmed.
    confirmed: usize,
    /// When a removed or left peer is to be forgotten; set by the first tick that finds it there.
    forget_at: Option<Instant>,
}

impl PeerEntry {
    /// Remembers `address` as reported (after the confirmed ones) or, when `confirmed`, as the one a connection just
    /// reached (first); at most `MAX_ADDRESSES` are kept, the oldest report dropped first.
    fn note_address(&mut self, address: &Multiaddr, confirmed: bool) {
        let known = self.addresses.iter().position(|a| a == address);
        if let Some(index) = known {
            let first_confirmed = index == 0 && self.confirmed > 0;
            if !confirmed || first_confirmed {
                return;
            }
            self.addresses.remove(index);
            if index < self.confirmed {
                self.confirmed -= 1;
            }
        }
        if confirmed {
            self.addresses.insert(0, address.clone());
            self.confirmed += 1;
        } else {
            self.addresses
                .insert(self.confirmed.min(self.addresses.len()), address.clone());
        }
        self.addresses.truncate(MAX_ADDRESSES);
        self.confirmed = self.confirmed.min(self.addresses.len());
    }
}

/// The peer table.
#[derive(Debug)]
pub struct PeerTable {
    policy: LivenessPolicy,
    peers: HashMap<PeerId, PeerEntry>,
    rng: StdRng,
}

impl PeerTable {
    /// `seed` drives the backoff jitter (fixed in tests, random in the node).
    pub fn new(policy: LivenessPolicy, seed: u64) -> Self {
        PeerTable {
            policy,
            peers: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn get(&self, peer: &PeerId) -> Option<&PeerEntry> {
        self.peers.get(peer)
    }

    /// Whether `peer` is not connected but will be dialled: known and never connected, or dropped and waiting for
    /// (or in) a redial.
    pub fn awaits_dial(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|entry| {
            matches!(
                entry.state,
                PeerState::New | PeerState::Disconnected | PeerState::Reconnecting
            )
        })
    }

    /// A peer became known (or known again) at `addresses`; `bootstrap` marks a configured bootstrap peer. A removed
    /// peer becomes new again; one that left stays left until it connects (its old records linger in mDNS caches and
    /// routing tables of others, which is no sign that it is back).
    pub fn discovered(&mut self, peer: PeerId, addresses: &[Multiaddr], bootstrap: bool, now: Instant) -> Decisions {
        let mut decisions = Decisions::default();
        let entry = self.peers.entry(peer).or_insert_with(|| PeerEntry {
            state: PeerState::New,
            addresses: Vec::new(),
            bootstrap,
            first_seen: now,
            last_seen: now,
            last_rtt: None,
            smoothed_rtt: None,
            consecutive_failures: 0,
            attempt: 0,
            next_retry: None,
            removed_because: None,
            dialling: false,
            confirmed: 0,
            forget_at: None,
        });
        entry.bootstrap |= bootstrap;
        for address in addresses {
            entry.note_address(address, false);
        }
        if entry.state == PeerState::Removed {
            entry.removed_because = None;
            change(&mut decisions, peer, entry, PeerState::New, "rediscovered", None);
        }
        decisions
    }

    /// A connection to `peer` is up.
    pub fn connected(&mut self, peer: PeerId, address: &Multiaddr, now: Instant) -> Decisions {
        let mut decisions = self.discovered(peer, std::slice::from_ref(address), false, now);
        let entry = self.peers.get_mut(&peer).expect("inserted by discovered");
        entry.note_address(address, true);
        entry.last_seen = now;
        entry.dialling = false;
        if entry.state != PeerState::Active {
            let reason = match entry.state {
                PeerState::Reconnecting => "reconnected",
                PeerState::Left => "returned",
                _ => "connected",
            };
            entry.attempt = 0;
            entry.next_retry = None;
            entry.consecutive_failures = 0;
            entry.removed_because = None;
            change(&mut decisions, peer, entry, PeerState::Active, reason, None);
        }
        decisions
    }

    /// We heard from `peer`: a ping came back (with its round-trip time) or it sent us something.
    pub fn heard_from(&mut self, peer: PeerId, rtt: Option<Duration>, now: Instant) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.last_seen = now;
            entry.consecutive_failures = 0;
            if let Some(rtt) = rtt {
                entry.last_rtt = Some(rtt);
                // The TCP estimator (RFC 6298): srtt = 7/8 srtt + 1/8 rtt.
                entry.smoothed_rtt = Some(
                    entry
                        .smoothed_rtt
                        .map_or(rtt, |srtt| srtt.saturating_mul(7).saturating_add(rtt) / 8),
                );
            }
        }
    }

    /// A ping to `peer` failed; the timeout, not a single failure, decides when it is dead.
    pub fn ping_failed(&mut self, peer: PeerId) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.consecutive_failures += 1;
        }
    }

    /// `peer` announced that it is shutting down: it is `left`, and its coming disconnection is expected. It is
    /// dropped from routing (so nothing dials it), except a bootstrap peer, which is retried on the slow schedule.
    pub fn left(&mut self, peer: PeerId, now: Instant) -> Decisions {
        let mut decisions = Decisions::default();
        let Some(entry) = self.peers.get_mut(&peer) else {
            return decisions;
        };
        if matches!(entry.state, PeerState::Left | PeerState::Removed) {
            return decisions;
        }
        entry.dialling = false;
        entry.removed_because = Some("announced leave");
        let retry = if entry.bootstrap {
            entry.attempt = self.policy.reconnect_attempts;
            entry.next_retry = Some(deadline(now, self.policy.reconnect_backoff_max));
            Some(self.policy.reconnect_backoff_max)
        } else {
            entry.attempt = 0;
            entry.next_retry = None;
            decisions.actions.push(Action::Unroute { peer });
            None
        };
        change(&mut decisions, peer, entry, PeerState::Left, "announced leave", retry);
        decisions
    }

    /// We closed the connection to `peer` on purpose (`reason`: an operator's request, a ban): `removed`, so its
    /// closing schedules no redial.
    pub fn dismissed(&mut self, peer: PeerId, reason: &'static str) -> Decisions {
        let mut decisions = Decisions::default();
        let Some(entry) = self.peers.get_mut(&peer) else {
            return decisions;
        };
        decisions.actions.push(Action::Disconnect { peer });
        if entry.state != PeerState::Removed {
            entry.dialling = false;
            entry.next_retry = None;
            entry.attempt = 0;
            entry.removed_because = Some(reason);
            change(&mut decisions, peer, entry, PeerState::Removed, reason, None);
        }
        decisions
    }

    /// Every peer the table knows, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerEntry)> {
        self.peers.iter()
    }

    /// The last connection to `peer` closed, for whatever reason: schedule the first redial.
    pub fn disconnected(&mut self, peer: PeerId, now: Instant) -> Decisions {
        let mut decisions = Decisions::default();
        let Some(entry) = self.peers.get_mut(&peer) else {
            return decisions;
        };
        if entry.state == PeerState::Active {
            change(
                &mut decisions,
                peer,
                entry,
                PeerState::Disconnected,
                "connection closed",
                None,
            );
        }
        if entry.state == PeerState::Disconnected {
            self.schedule_retry(peer, now, &mut decisions);
        }
        decisions
    }

    /// A dial of `peer` failed. A redial schedules the next attempt, or gives up; so does the first dial of a peer
    /// that was discovered but never reached (mDNS answers once, so a single failed dial would otherwise leave two
    /// LAN neighbours apart until the next query, minutes later).
    pub fn dial_failed(&mut self, peer: PeerId, now: Instant) -> Decisions {
        let mut decisions = Decisions::default();
        let Some(entry) = self.peers.get_mut(&peer) else {
            return decisions;
        };
        let redial = entry.state == PeerState::Reconnecting && entry.dialling;
        let first_dial = entry.state == PeerState::New;
        if redial || first_dial {
            entry.dialling = false;
            self.schedule_retry(peer, now, &mut decisions);
        }
        decisions
    }

    /// Time passes: disconnect silent peers and start redials that are due.
    pub fn tick(&mut self, now: Instant) -> Decisions {
        let mut decisions = Decisions::default();
        for (peer, entry) in self.peers.iter_mut() {
            match entry.state {
                PeerState::Active if now.duration_since(entry.last_seen) > self.policy.peer_timeout => {
                    decisions.actions.push(Action::Disconnect { peer: *peer });
                    change(&mut decisions, *peer, entry, PeerState::Disconnected, "timeout", None);
                }
                PeerState::Left if entry.bootstrap && entry.next_retry.is_some_and(|at| at <= now) => {
                    entry.dialling = true;
                    entry.next_retry = None;
                    decisions.actions.push(Action::Dial {
                        peer: *peer,
                        addresses: entry.addresses.clone(),
                    });
                    change(
                        &mut decisions,
                        *peer,
                        entry,
                        PeerState::Reconnecting,
                        "bootstrap peer: slow retry",
                        None,
                    );
                }
                PeerState::Reconnecting if !entry.dialling && entry.next_retry.is_some_and(|at| at <= now) => {
                    entry.dialling = true;
                    entry.next_retry = None;
                    decisions.actions.push(Action::Dial {
                        peer: *peer,
                        addresses: entry.addresses.clone(),
                    });
                }
                _ => {}
            }
        }
        // Timed-out peers move on to reconnecting at once; their connection close then finds nothing to do.
        let timed_out: Vec<PeerId> = decisions
            .transitions
            .iter()
            .filter(|t| t.to == PeerState::Disconnected)
            .map(|t| t.peer)
            .collect();
        for peer in timed_out {
            self.schedule_retry(peer, now, &mut decisions);
        }
        self.forget_due(now, &mut decisions);
        decisions
    }

    /// The state of every peer, for counting (no allocation).
    pub fn states(&self) -> impl Iterator<Item = PeerState> + '_ {
        self.peers.values().map(|entry| entry.state)
    }

    /// Peers the table holds now.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Forgets removed and left peers `forget_after` after they got there, then, past `max_known_peers` peers not
    /// connected, the ones heard from longest ago. Bootstrap peers are never forgotten.
    fn forget_due(&mut self, now: Instant, decisions: &mut Decisions) {
        let forget_after = self.policy.forget_after;
        let mut forgotten = Vec::new();
        for (peer, entry) in self.peers.iter_mut() {
            if entry.bootstrap || !matches!(entry.state, PeerState::Removed | PeerState::Left) {
                entry.forget_at = None;
                continue;
            }
            let at = *entry.forget_at.get_or_insert_with(|| deadline(now, forget_after));
            if at <= now {
                forgotten.push(*peer);
            }
        }
        let mut idle: Vec<(Instant, PeerId)> = self
            .peers
            .iter()
            .filter(|(peer, entry)| !entry.bootstrap && entry.state != PeerState::Active && !forgotten.contains(peer))
            .map(|(peer, entry)| (entry.last_seen, *peer))
            .collect();
        if idle.len() > self.policy.max_known_peers {
            idle.sort();
            let excess = idle.len() - self.policy.max_known_peers;
            forgotten.extend(idle.into_iter().take(excess).map(|(_, peer)| peer));
        }
        for peer in forgotten {
            self.peers.remove(&peer);
            decisions.actions.push(Action::Forget { peer });
        }
    }

    /// The delay before attempt `attempt` (1-based): base × 2^(attempt−1), ±25 % jitter, capped.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let doubled = self
            .policy
            .reconnect_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        // `mul_f64` panics past `Duration::MAX`, which a doubled (saturated) delay may already be.
        let jitter = self.rng.gen_range(0.75..=1.25);
        let jittered = Duration::try_from_secs_f64(doubled.as_secs_f64() * jitter).unwrap_or(Duration::MAX);
        jittered.min(self.policy.reconnect_backoff_max)
    }

    fn schedule_retry(&mut self, peer: PeerId, now: Instant, decisions: &mut Decisions) {
        let Some(entry) = self.peers.get(&peer) else {
            return;
        };
        let attempt = entry.attempt + 1;
        let exhausted = attempt > self.policy.reconnect_attempts;
        if exhausted && !entry.bootstrap {
            let entry = self.peers.get_mut(&peer).expect("checked above");
            entry.removed_because = Some("reconnect attempts exhausted");
            entry.next_retry = None;
            change(
                decisions,
                peer,
                entry,
                PeerState::Removed,
                "reconnect attempts exhausted",
                None,
            );
            decisions.actions.push(Action::Unroute { peer });
            return;
        }
        let delay = if exhausted {
            self.policy.reconnect_backoff_max
        } else {
            self.backoff(attempt)
        };
        let entry = self.peers.get_mut(&peer).expect("checked above");
        entry.attempt = attempt;
        entry.next_retry = Some(deadline(now, delay));
        let reason = if exhausted {
            "bootstrap peer: slow retry"
        } else if entry.state == PeerState::New {
            "dial failed: redial scheduled"
        } else {
            "redial scheduled"
        };
        change(decisions, peer, entry, PeerState::Reconnecting, reason, Some(delay));
    }
}

fn change(
    decisions: &mut Decisions,
    peer: PeerId,
    entry: &mut PeerEntry,
    to: PeerState,
    reason: &'static str,
    next_retry: Option<Duration>,
) {
    decisions.transitions.push(Transition {
        peer,
        from: entry.state,
        to,
        reason,
        attempt: if to == PeerState::Reconnecting {
            entry.attempt
        } else {
            0
        },
        next_retry,
    });
    entry.state = to;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn policy() -> LivenessPolicy {
        LivenessPolicy {
            peer_timeout: 3 * SEC,
            reconnect_attempts: 3,
            reconnect_backoff: SEC,
            reconnect_backoff_max: 30 * SEC,
            forget_after: 60 * SEC,
            max_known_peers: 3,
        }
    }

    fn addr() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/4100".parse().unwrap()
    }

    fn states(decisions: &Decisions) -> Vec<(PeerState, PeerState, &'static str)> {
        decisions.transitions.iter().map(|t| (t.from, t.to, t.reason)).collect()
    }

    /// A table with one active peer, connected at `start`.
    fn active(bootstrap: bool) -> (PeerTable, PeerId, Instant) {
        let mut table = PeerTable::new(policy(), 7);
        let peer = PeerId::random();
        let start = Instant::now();
        table.discovered(peer, &[addr()], bootstrap, start);
        table.connected(peer, &addr(), start);
        (table, peer, start)
    }

    /// Drives a dropped peer through every redial until it is removed (or, for bootstrap peers, past its attempts),
    /// returning every retry delay scheduled.
    fn fail_every_redial(
        table: &mut PeerTable,
        peer: PeerId,
        mut now: Instant,
        redials: u32,
    ) -> (Vec<Duration>, Instant) {
        let mut delays = Vec::new();
        for _ in 0..redials {
            let entry = table.get(&peer).unwrap();
            let at = entry.next_retry.expect("a redial is scheduled");
            delays.push(at - now);
            assert!(
                table.tick(at - Duration::from_millis(1)).actions.is_empty(),
                "no redial before it is due"
            );
            now = at;
            let due = table.tick(now);
            assert_eq!(
                due.actions,
                vec![Action::Dial {
                    peer,
                    addresses: vec![addr()]
                }]
            );
            let failed = table.dial_failed(peer, now);
            if table.get(&peer).unwrap().state == PeerState::Removed {
                assert_eq!(failed.actions, vec![Action::Unroute { peer }]);
                break;
            }
        }
        (delays, now)
    }

    #[test]
    fn a_peer_awaits_a_dial_while_new_or_dropped_not_while_connected_or_given_up_on() {
        let (mut table, peer, start) = active(false);
        assert!(!table.awaits_dial(&peer), "connected");
        table.disconnected(peer, start + SEC);
        assert!(table.awaits_dial(&peer), "dropped: to be redialled");
        table.dismissed(peer, "operator");
        assert!(!table.awaits_dial(&peer), "removed");
        assert!(!table.awaits_dial(&PeerId::random()), "unknown");
        let fresh = PeerId::random();
        table.discovered(fresh, &[addr()], false, start);
        assert!(table.awaits_dial(&fresh), "new");
    }

    #[test]
    fn new_then_active_on_connect() {
        let mut table = PeerTable::new(policy(), 1);
        let peer = PeerId::random();
        let now = Instant::now();
        assert!(table.discovered(peer, &[addr()], false, now).transitions.is_empty());
        assert_eq!(table.get(&peer).unwrap().state, PeerState::New);
        let up = table.connected(peer, &addr(), now);
        assert_eq!(states(&up), vec![(PeerState::New, PeerState::Active, "connected")]);
    }

    #[test]
    fn active_peers_heard_from_stay_active_and_silent_ones_time_out() {
        let (mut table, peer, start) = active(false);
        table.heard_from(peer, Some(Duration::from_millis(4)), start + 2 * SEC);
        assert!(
            table.tick(start + 4 * SEC).transitions.is_empty(),
            "heard from 2 s ago, timeout 3 s"
        );
        let silent = table.tick(start + 5 * SEC + Duration::from_millis(1));
        assert_eq!(silent.actions, vec![Action::Disconnect { peer }]);
        assert_eq!(
            states(&silent),
            vec![
                (PeerState::Active, PeerState::Disconnected, "timeout"),
                (PeerState::Disconnected, PeerState::Reconnecting, "redial scheduled"),
            ]
        );
        // The connection close that our disconnect causes changes nothing more.
        assert!(table.disconnected(peer, start + 6 * SEC).transitions.is_empty());
    }

    #[test]
    fn ping_failures_alone_do_not_disconnect_before_the_timeout() {
        let (mut table, peer, start) = active(false);
        table.ping_failed(peer);
        table.ping_failed(peer);
        assert_eq!(table.get(&peer).unwrap().consecutive_failures, 2);
        assert!(table.tick(start + 2 * SEC).actions.is_empty());
        table.heard_from(peer, None, start + 2 * SEC);
        assert_eq!(table.get(&peer).unwrap().consecutive_failures, 0);
    }

    #[test]
    fn a_drop_goes_disconnected_then_reconnecting_with_the_first_attempt_scheduled() {
        let (mut table, peer, start) = active(false);
        let dropped = table.disconnected(peer, start + SEC);
        assert_eq!(
            states(&dropped),
            vec![
                (PeerState::Active, PeerState::Disconnected, "connection closed"),
                (PeerState::Disconnected, PeerState::Reconnecting, "redial scheduled"),
            ]
        );
        let scheduled = &dropped.transitions[1];
        assert_eq!(scheduled.attempt, 1);
        let delay = scheduled.next_retry.unwrap();
        assert!(
            (Duration::from_millis(750)..=Duration::from_millis(1250)).contains(&delay),
            "{delay:?}"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_the_peer_is_removed_after_exactly_the_configured_attempts() {
        let (mut table, peer, start) = active(false);
        table.disconnected(peer, start);
        let (delays, _) = fail_every_redial(&mut table, peer, start, 10);
        assert_eq!(delays.len(), 3, "three redials, then removed");
        for (attempt, delay) in delays.iter().enumerate() {
            let base = SEC * 2u32.pow(attempt as u32);
            assert!(
                delay.as_secs_f64() >= base.as_secs_f64() * 0.75 && delay.as_secs_f64() <= base.as_secs_f64() * 1.25
            );
        }
        let entry = table.get(&peer).unwrap();
        assert_eq!(entry.state, PeerState::Removed);
        assert_eq!(entry.removed_because, Some("reconnect attempts exhausted"));
        assert!(
            table.tick(start + 3600 * SEC).actions.is_empty(),
            "a removed peer is not redialled"
        );
    }

    #[test]
    fn backoff_is_capped() {
        let mut table = PeerTable::new(
            LivenessPolicy {
                reconnect_attempts: 20,
                reconnect_backoff_max: 5 * SEC,
                ..policy()
            },
            3,
        );
        for attempt in 1..=20 {
            assert!(table.backoff(attempt) <= 5 * SEC);
        }
    }

    #[test]
    fn a_successful_redial_makes_the_peer_active_again_and_resets_the_attempts() {
        let (mut table, peer, start) = active(false);
        table.disconnected(peer, start);
        let (_, now) = fail_every_redial(&mut table, peer, start, 2);
        let entry = table.get(&peer).unwrap();
        assert_eq!((entry.state, entry.attempt), (PeerState::Reconnecting, 3));
        let back = table.connected(peer, &addr(), now + 10 * SEC);
        assert_eq!(
            states(&back),
            vec![(PeerState::Reconnecting, PeerState::Active, "reconnected")]
        );
        assert_eq!(table.get(&peer).unwrap().attempt, 0);
        // A later drop starts again at attempt 1.
        assert_eq!(table.disconnected(peer, now + 20 * SEC).transitions[1].attempt, 1);
    }

    #[test]
    fn a_removed_peer_discovered_again_is_new_again() {
        let (mut table, peer, start) = active(false);
        table.disconnected(peer, start);
        let (_, now) = fail_every_redial(&mut table, peer, start, 10);
        let again = table.discovered(peer, &[addr()], false, now + SEC);
        assert_eq!(
            states(&again),
            vec![(PeerState::Removed, PeerState::New, "rediscovered")]
        );
        assert_eq!(table.get(&peer).unwrap().removed_because, None);
    }

    #[test]
    fn bootstrap_peers_are_never_removed_and_are_retried_at_the_capped_backoff() {
        let (mut table, peer, start) = active(true);
        table.disconnected(peer, start);
        let (delays, _) = fail_every_redial(&mut table, peer, start, 6);
        assert_eq!(delays.len(), 6);
        assert_eq!(table.get(&peer).unwrap().state, PeerState::Reconnecting);
        assert_eq!(
            delays[4..],
            [30 * SEC, 30 * SEC],
            "past its attempts: the slow schedule"
        );
    }

    #[test]
    fn a_dial_failure_for_a_peer_not_being_redialled_changes_nothing() {
        let (mut table, peer, start) = active(false);
        assert_eq!(table.dial_failed(peer, start), Decisions::default());
        assert_eq!(table.dial_failed(PeerId::random(), start), Decisions::default());
        assert_eq!(table.get(&peer).unwrap().state, PeerState::Active);
    }

    #[test]
    fn a_discovered_peer_whose_first_dial_fails_is_redialled_like_a_dropped_one() {
        let mut table = PeerTable::new(policy(), 5);
        let peer = PeerId::random();
        let start = Instant::now();
        table.discovered(peer, &[addr()], false, start);
        let failed = table.dial_failed(peer, start);
        assert_eq!(
            states(&failed),
            vec![(PeerState::New, PeerState::Reconnecting, "dial failed: redial scheduled")]
        );
        assert_eq!(failed.transitions[0].attempt, 1);
        let (delays, _) = fail_every_redial(&mut table, peer, start, 10);
        assert_eq!(delays.len(), 3, "the configured attempts, then removed");
        assert_eq!(table.get(&peer).unwrap().state, PeerState::Removed);
    }

    #[test]
    fn a_peer_that_announces_its_leave_is_left_forgotten_and_never_redialled() {
        let (mut table, peer, start) = active(false);
        let leaving = table.left(peer, start + SEC);
        assert_eq!(
            states(&leaving),
            vec![(PeerState::Active, PeerState::Left, "announced leave")]
        );
        assert_eq!(leaving.actions, vec![Action::Unroute { peer }]);
        assert_eq!(table.get(&peer).unwrap().removed_because, Some("announced leave"));
        // Its connection then closes: expected, so no redial is scheduled, now or ever.
        assert_eq!(table.disconnected(peer, start + SEC), Decisions::default());
        assert_eq!(table.tick(start + 3600 * SEC), Decisions::default());
        // Stale discoveries do not revive it; a new connection does.
        assert!(
            table
                .discovered(peer, &[addr()], false, start + 2 * SEC)
                .transitions
                .is_empty()
        );
        assert_eq!(table.get(&peer).unwrap().state, PeerState::Left);
        let back = table.connected(peer, &addr(), start + 3 * SEC);
        assert_eq!(states(&back), vec![(PeerState::Left, PeerState::Active, "returned")]);
        assert_eq!(table.get(&peer).unwrap().removed_because, None);
    }

    #[test]
    fn a_leave_announced_twice_or_by_an_unknown_peer_changes_nothing() {
        let (mut table, peer, start) = active(false);
        table.left(peer, start);
        assert_eq!(table.left(peer, start), Decisions::default());
        assert_eq!(table.left(PeerId::random(), start), Decisions::default());
    }

    #[test]
    fn a_bootstrap_peer_that_left_is_retried_on_the_slow_schedule() {
        let (mut table, peer, start) = active(true);
        let leaving = table.left(peer, start);
        assert!(leaving.actions.is_empty(), "a bootstrap peer stays in routing");
        assert_eq!(leaving.transitions[0].next_retry, Some(30 * SEC));
        table.disconnected(peer, start);
        assert_eq!(table.tick(start + 29 * SEC), Decisions::default());
        let due = table.tick(start + 30 * SEC);
        assert_eq!(
            states(&due),
            vec![(PeerState::Left, PeerState::Reconnecting, "bootstrap peer: slow retry")]
        );
        assert_eq!(
            due.actions,
            vec![Action::Dial {
                peer,
                addresses: vec![addr()]
            }]
        );
        let failed = table.dial_failed(peer, start + 30 * SEC);
        assert_eq!(failed.transitions[0].next_retry, Some(30 * SEC));
        assert_eq!(table.get(&peer).unwrap().state, PeerState::Reconnecting);
    }

    #[test]
    fn a_peer_removed_for_silence_reports_why() {
        let (mut table, peer, start) = active(false);
        table.tick(start + 4 * SEC);
        fail_every_redial(&mut table, peer, start + 4 * SEC, 10);
        assert_eq!(
            table.get(&peer).unwrap().removed_because,
            Some("reconnect attempts exhausted")
        );
    }

    #[test]
    fn a_peer_the_operator_disconnects_is_removed_and_not_redialled() {
        let (mut table, peer, start) = active(false);
        let dismissed = table.dismissed(peer, "disconnected by operator");
        assert_eq!(dismissed.actions, vec![Action::Disconnect { peer }]);
        assert_eq!(
            states(&dismissed),
            vec![(PeerState::Active, PeerState::Removed, "disconnected by operator")]
        );
        assert_eq!(table.disconnected(peer, start), Decisions::default());
        assert_eq!(table.tick(start + 3600 * SEC), Decisions::default());
        let back = table.connected(peer, &addr(), start + SEC);
        assert_eq!(
            states(&back),
            vec![
                (PeerState::Removed, PeerState::New, "rediscovered"),
                (PeerState::New, PeerState::Active, "connected")
            ]
        );
    }

    #[test]
    fn round_trip_times_are_smoothed() {
        let (mut table, peer, start) = active(false);
        table.heard_from(peer, Some(Duration::from_millis(8)), start);
        table.heard_from(peer, Some(Duration::from_millis(16)), start);
        let entry = table.get(&peer).unwrap();
        assert_eq!(entry.last_rtt, Some(Duration::from_millis(16)));
        assert_eq!(entry.smoothed_rtt, Some(Duration::from_millis(9)));
    }

    fn forgotten(decisions: &Decisions) -> Vec<PeerId> {
        decisions
            .actions
            .iter()
            .filter_map(|action| match action {
                Action::Forget { peer } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn removed_and_left_peers_are_forgotten_after_the_delay_but_bootstrap_peers_never() {
        let mut table = PeerTable::new(policy(), 1);
        let now = Instant::now();
        let (removed, left, bootstrap) = (PeerId::random(), PeerId::random(), PeerId::random());
        for (peer, is_bootstrap) in [(removed, false), (left, false), (bootstrap, true)] {
            table.discovered(peer, &[addr()], is_bootstrap, now);
            table.connected(peer, &addr(), now);
        }
        table.dismissed(removed, "disconnected by operator");
        table.left(left, now);
        table.left(bootstrap, now);
        assert!(forgotten(&table.tick(now)).is_empty(), "the delay starts now");
        assert!(forgotten(&table.tick(now + 59 * SEC)).is_empty());
        let mut due = forgotten(&table.tick(now + 60 * SEC));
        due.sort();
        let mut expected = vec![removed, left];
        expected.sort();
        assert_eq!(due, expected);
        assert!(table.get(&removed).is_none() && table.get(&left).is_none());
        assert!(table.get(&bootstrap).is_some(), "bootstrap peers are never forgotten");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_removed_peer_that_comes_back_is_not_forgotten() {
        let mut table = PeerTable::new(policy(), 1);
        let now = Instant::now();
        let peer = PeerId::random();
        table.discovered(peer, &[addr()], false, now);
        table.connected(peer, &addr(), now);
        table.dismissed(peer, "banned");
        table.tick(now);
        table.connected(peer, &addr(), now + 30 * SEC);
        table.heard_from(peer, None, now + 120 * SEC);
        assert!(forgotten(&table.tick(now + 120 * SEC)).is_empty());
        assert_eq!(table.get(&peer).unwrap().state, PeerState::Active);
    }

    #[test]
    fn past_the_cap_the_peers_heard_from_longest_ago_are_forgotten_first_and_connected_ones_never() {
        let mut table = PeerTable::new(policy(), 1);
        let start = Instant::now();
        let connected = PeerId::random();
        table.discovered(connected, &[addr()], false, start);
        table.connected(connected, &addr(), start);
        let known: Vec<PeerId> = (0..5u32)
            .map(|i| {
                let peer = PeerId::random();
                table.discovered(peer, &[addr()], false, start + i * SEC);
                peer
            })
            .collect();
        table.heard_from(connected, None, start + 10 * SEC);
        let due = forgotten(&table.tick(start + 10 * SEC));
        assert_eq!(due.len(), 2, "five known, three allowed");
        assert!(due.contains(&known[0]) && due.contains(&known[1]), "the two oldest go");
        assert_eq!(table.len(), 4, "three known and the connected one");
        assert!(table.get(&connected).is_some());
    }

    #[test]
    fn addresses_are_bounded_and_the_confirmed_one_comes_first() {
        let mut table = PeerTable::new(policy(), 1);
        let now = Instant::now();
        let peer = PeerId::random();
        let address = |port: u16| -> Multiaddr { format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap() };
        table.discovered(peer, &[address(1)], false, now);
        table.connected(peer, &address(1), now);
        let reported: Vec<Multiaddr> = (2..40).map(address).collect();
        table.discovered(peer, &reported, false, now);
        let addresses = &table.get(&peer).unwrap().addresses;
        assert_eq!(addresses.len(), MAX_ADDRESSES);
        assert_eq!(
            addresses[0],
            address(1),
            "a flood of reports never pushes out the confirmed address"
        );
        assert_eq!(addresses[1], address(39), "then the latest report");
        table.connected(peer, &address(39), now);
        let addresses = &table.get(&peer).unwrap().addresses;
        assert_eq!(
            &addresses[..2],
            &[address(39), address(1)],
            "most recently confirmed first"
        );
        assert_eq!(addresses.len(), MAX_ADDRESSES);
    }

    #[test]
    fn extreme_durations_and_attempts_saturate_instead_of_panicking() {
        let policy = LivenessPolicy {
            peer_timeout: Duration::MAX,
            reconnect_attempts: u32::MAX,
            reconnect_backoff: Duration::MAX,
            reconnect_backoff_max: Duration::MAX,
            forget_after: Duration::MAX,
            max_known_peers: usize::MAX,
        };
        let mut table = PeerTable::new(policy, 1);
        let (peer, boot) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        table.discovered(boot, &[addr()], true, now);
        for peer in [peer, boot] {
            table.connected(peer, &addr(), now);
            table.heard_from(peer, Some(Duration::MAX), now);
            table.heard_from(peer, Some(Duration::MAX), now);
        }
        let dropped = table.disconnected(peer, now);
        assert!(
            dropped.transitions[1].next_retry.unwrap() >= Duration::MAX / 2,
            "jittered, capped"
        );
        assert!(table.get(&peer).unwrap().next_retry.unwrap() > now);
        let left = table.left(boot, now);
        assert_eq!(left.transitions[0].next_retry, Some(Duration::MAX));
        table.dismissed(peer, "operator");
        let later = now + Duration::from_secs(10 * 365 * 24 * 3600);
        assert!(table.tick(later).actions.is_empty(), "nothing is due in a decade");
        assert_eq!(
            table.get(&peer).unwrap().state,
            PeerState::Removed,
            "and nothing forgotten"
        );
    }
}

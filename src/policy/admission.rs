//! Who may be a member, decided without I/O:
//! - `Admissions`: peers waiting for a valid certificate (with their deadline and the routing addresses held back
//!   until then), admitted members with the end of their certificate's validity, and refusals waiting for our answer
//!   to reach the peer before it is banned;
//! - `Bans`: peers refused for a while (a failed admission, a gossip score below the graylist), with their expiry.
//!
//! The event loop feeds them connections, certificates and `now`, and carries out the verdicts (disconnect, block,
//! insert into Kademlia). The bytes of the exchange are in `wire::admission`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId, identity::PublicKey};

use super::liveness::MAX_ADDRESSES;
use crate::{
    security::certificate::Certificate,
    time::deadline,
    wire::admission::{ADMISSION_VERSION, AdmissionRequest, REFUSAL_LINGER},
};

/// Whether `request` carries a certificate from `ca` that admits `peer` at `now_unix` (seconds); on refusal, a
/// metrics label and the reason to tell the peer.
pub fn check_certificate(
    ca: &PublicKey,
    peer: &PeerId,
    request: &AdmissionRequest,
    now_unix: u64,
) -> Result<Certificate, (&'static str, String)> {
    if request.v != ADMISSION_VERSION {
        return Err((
            "unsupported_version",
            format!("admission version {} is not supported", request.v),
        ));
    }
    let certificate = Certificate::decode(&request.certificate).map_err(|e| (e.reason(), e.to_string()))?;
    certificate
        .verify(ca, peer, now_unix)
        .map_err(|e| (e.reason(), e.to_string()))?;
    Ok(certificate)
}

/// The members whose gossip score is below `threshold`, with their score: to be banned.
pub fn below_graylist(scores: impl IntoIterator<Item = (PeerId, f64)>, threshold: f64) -> Vec<(PeerId, f64)> {
    scores.into_iter().filter(|(_, score)| *score < threshold).collect()
}

/// When the next comparison of members' scores with the graylist is due: at most once per `interval` (each
/// comparison asks gossipsub for every connected peer's score).
#[derive(Debug)]
pub struct GraylistChecks {
    interval: Duration,
    next: Option<Instant>,
}

impl GraylistChecks {
    pub fn new(interval: Duration) -> Self {
        GraylistChecks { interval, next: None }
    }

    /// True when a check is due at `now` (the first call always is); the next one is then `interval` later.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|next| now < next) {
            return false;
        }
        self.next = Some(deadline(now, self.interval));
        true
    }
}

/// An admitted peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: Option<String>,
    /// When its certificate ends, unix seconds (plus the allowed clock skew, as checked).
    pub valid_until: u64,
}

#[derive(Debug)]
struct Pending {
    /// When the wait ends: `timeout` after the first connection, or after the first held address of a peer that has
    /// not connected (that wait ends quietly, its addresses dropped: only a connection can make them useful).
    deadline: Instant,
    /// The address of the connection that started the wait.
    connected_at: Option<Multiaddr>,
    /// Addresses to put in the routing table once (if) the peer is admitted.
    held_addresses: Vec<Multiaddr>,
}

/// A peer just admitted: where it is connected, and the addresses held back for the routing table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    pub connected_at: Option<Multiaddr>,
    pub held_addresses: Vec<Multiaddr>,
}

/// A refusal answered, to be carried out once the answer has had time to arrive.
#[derive(Debug)]
struct Refusal {
    reason: &'static str,
    detail: String,
    at: Instant,
}

/// Admission state per connected peer.
#[derive(Debug)]
pub struct Admissions {
    timeout: Duration,
    pending: HashMap<PeerId, Pending>,
    members: HashMap<PeerId, Member>,
    refusals: HashMap<PeerId, Refusal>,
}

/// What became due at a tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AdmissionsDue {
    /// Connected for longer than the timeout without a valid certificate.
    pub timed_out: Vec<PeerId>,
    /// Admitted, but their certificate has now ended.
    pub expired: Vec<PeerId>,
    /// Refused (metrics label, reason) at least `REFUSAL_LINGER` ago: to ban now.
    pub refused: Vec<(PeerId, &'static str, String)>,
}

impl Admissions {
    pub fn new(timeout: Duration) -> Self {
        Admissions {
            timeout,
            pending: HashMap::new(),
            members: HashMap::new(),
            refusals: HashMap::new(),
        }
    }

    /// A first connection to `peer`, at `address`, is up: it must prove membership before `now + timeout`. False
    /// when it is already a member or already waiting (nothing new to start).
    pub fn connected(&mut self, peer: PeerId, address: &Multiaddr, now: Instant) -> bool {
        if self.members.contains_key(&peer) {
            return false;
        }
        let until = deadline(now, self.timeout);
        let pending = self.pending.entry(peer).or_insert(Pending {
            deadline: until,
            connected_at: None,
            held_addresses: Vec::new(),
        });
        if pending.connected_at.is_some() {
            return false;
        }
        pending.deadline = until;
        pending.connected_at = Some(address.clone());
        true
    }

    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.members.contains_key(peer)
    }

    /// Whether `peer` is connected and still has time to show a certificate.
    pub fn is_waiting(&self, peer: &PeerId) -> bool {
        self.pending
            .get(peer)
            .is_some_and(|pending| pending.connected_at.is_some())
    }

    pub fn member(&self, peer: &PeerId) -> Option<&Member> {
        self.members.get(peer)
    }

    /// Holds `address` back from the routing table while `peer` is not a member (at most `MAX_ADDRESSES` per peer,
    /// the latest kept). True when the caller may insert it now (the peer is a member).
    pub fn route_or_hold(&mut self, peer: PeerId, address: Multiaddr, now: Instant) -> bool {
        if self.members.contains_key(&peer) {
            return true;
        }
        let pending = self.pending.entry(peer).or_insert(Pending {
            deadline: deadline(now, self.timeout),
            connected_at: None,
            held_addresses: Vec::new(),
        });
        if !pending.held_addresses.contains(&address) {
            if pending.held_addresses.len() == MAX_ADDRESSES {
                pending.held_addresses.remove(0);
            }
            pending.held_addresses.push(address);
        }
        false
    }

    /// Peers waiting to be admitted, members, and refusals waiting to be carried out, for the table-size gauges.
    pub fn len(&self) -> usize {
        self.pending.len() + self.members.len() + self.refusals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `peer` showed a valid certificate: it is a member. Returns where it is connected and the addresses held
    /// back for it, to insert into the routing table now; `None` when it was already a member.
    pub fn admit(&mut self, peer: PeerId, member: Member) -> Option<Admitted> {
        let admitted = self
            .pending
            .remove(&peer)
            .map(|p| Admitted {
                connected_at: p.connected_at,
                held_addresses: p.held_addresses,
            })
            .unwrap_or_default();
        match self.members.insert(peer, member) {
            Some(_) => None,
            None => Some(admitted),
        }
    }

    /// We refused `peer`'s certificate at `now` (`reason` is the metrics label): it is reported by `tick` as
    /// refused once `REFUSAL_LINGER` has passed, even if it disconnects meanwhile, and no longer waits to be admitted.
    pub fn refuse_later(&mut self, peer: PeerId, reason: &'static str, detail: String, now: Instant) {
        self.pending.remove(&peer);
        self.members.remove(&peer);
        let at = deadline(now, REFUSAL_LINGER);
        self.refusals.insert(peer, Refusal { reason, detail, at });
    }

    /// The last connection to `peer` closed: it must be admitted again on the next one. Held addresses are
    /// forgotten too: only a connection can make them useful. A refusal still stands.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.pending.remove(peer);
        self.members.remove(peer);
    }

    /// `peer` is banned: nothing about it is left to decide.
    pub fn banned(&mut self, peer: &PeerId) {
        self.disconnected(peer);
        self.refusals.remove(peer);
    }

    /// Peers whose time to be admitted is up, and members whose certificate has ended (`now_unix`, seconds).
    pub fn tick(&mut self, now: Instant, now_unix: u64) -> AdmissionsDue {
        let mut due = AdmissionsDue::default();
        self.pending.retain(|peer, pending| {
            let late = pending.deadline <= now;
            if late && pending.connected_at.is_some() {
                due.timed_out.push(*peer);
            }
            !late
        });
        self.members.retain(|peer, member| {
            let ended = member.valid_until < now_unix;
            if ended {
                due.expired.push(*peer);
            }
            !ended
        });
        self.refusals.retain(|peer, refusal| {
            let due_now = refusal.at <= now;
            if due_now {
                due.refused
                    .push((*peer, refusal.reason, std::mem::take(&mut refusal.detail)));
            }
            !due_now
        });
        due.timed_out.sort();
        due.expired.sort();
        due.refused.sort_by_key(|(peer, _, _)| *peer);
        due
    }
}

/// Most peers banned at once. Peer ids cost nothing to make, so a peer that fails admission with a new key each time
/// could otherwise grow the table (and libp2p's block list beside it) for as long as `--ban-duration`; past the cap
/// the ban that would end soonest makes room.
pub const MAX_BANS: usize = 10_000;

/// Peers refused for a while, and why; at most `MAX_BANS` of them.
#[derive(Debug)]
pub struct Bans {
    duration: Duration,
    until: HashMap<PeerId, (Instant, String)>,
}

impl Bans {
    pub fn new(duration: Duration) -> Self {
        Bans {
            duration,
            until: HashMap::new(),
        }
    }

    /// Before banning `peer`: when the table is full and `peer` is not in it, lifts the ban that would end soonest and
    /// returns that peer (to unblock it).
    pub fn make_room_for(&mut self, peer: &PeerId) -> Option<PeerId> {
        if self.until.len() < MAX_BANS || self.until.contains_key(peer) {
            return None;
        }
        let soonest = self
            .until
            .iter()
            .min_by_key(|(_, (until, _))| *until)
            .map(|(peer, _)| *peer)?;
        self.until.remove(&soonest);
        Some(soonest)
    }

    /// Bans `peer` from `now` for the configured duration (extending a ban it is under). Returns how long.
    pub fn ban(&mut self, peer: PeerId, reason: String, now: Instant) -> Duration {
        self.ban_for(peer, reason, now, self.duration)
    }

    /// Bans `peer` from `now` for `duration`, or until the ban it is under ends if that is later; the reason is the
    /// latest. Returns how long from now the ban lasts. A duration past `Instant`'s range bans until far off
    /// (the deadline saturates).
    pub fn ban_for(&mut self, peer: PeerId, reason: String, now: Instant, duration: Duration) -> Duration {
        let wanted = deadline(now, duration);
        match self.until.get(&peer) {
            Some(&(current, _)) if current > wanted => {
                self.until.insert(peer, (current, reason));
                current.saturating_duration_since(now)
            }
            _ => {
                self.until.insert(peer, (wanted, reason));
                duration
            }
        }
    }

    /// Peers banned now.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Why `peer` is banned, if it is.
    pub fn reason(&self, peer: &PeerId) -> Option<&str> {
        self.until.get(peer).map(|(_, reason)| reason.as_str())
    }

    /// Bans that are over at `now`: these peers may connect again.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let mut over = Vec::new();
        self.until.retain(|peer, (until, _)| {
            let done = *until <= now;
            if done {
                over.push(*peer);
            }
            !done
        });
        over.sort();
        over
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn a_certificate_admits_only_its_peer_from_our_ca_in_its_window() {
        let ca = libp2p::identity::Keypair::generate_ed25519();
        let peer = PeerId::random();
        let now = 1_800_000_000;
        let certificate = Certificate::issue(&ca, peer, Some("a1"), now, now + 3600).unwrap();
        let request = |certificate: Vec<u8>, v| AdmissionRequest { v, certificate };
        let check = |request: &AdmissionRequest, peer: &PeerId, at| check_certificate(&ca.public(), peer, request, at);
        let good = request(certificate.encode(), ADMISSION_VERSION);
        assert_eq!(check(&good, &peer, now).unwrap().name.as_deref(), Some("a1"));
        let reason = |result: Result<Certificate, (&'static str, String)>| result.unwrap_err().0;
        assert_eq!(reason(check(&good, &PeerId::random(), now)), "wrong_peer");
        assert_eq!(reason(check(&good, &peer, now + 7200)), "expired");
        assert_eq!(
            reason(check(&request(certificate.encode(), 2), &peer, now)),
            "unsupported_version"
        );
        assert_eq!(reason(check(&request(vec![1, 2, 3], 1), &peer, now)), "malformed");
        let other_ca = libp2p::identity::Keypair::generate_ed25519();
        let foreign = Certificate::issue(&other_ca, peer, None, now, now + 3600).unwrap();
        assert_eq!(reason(check(&request(foreign.encode(), 1), &peer, now)), "wrong_ca");
    }

    #[test]
    fn members_below_the_graylist_are_found_once_per_interval() {
        let (low, high) = (PeerId::random(), PeerId::random());
        assert_eq!(below_graylist([(low, -90.0), (high, 3.0)], -80.0), vec![(low, -90.0)]);
        let mut checks = GraylistChecks::new(Duration::from_secs(1));
        let now = Instant::now();
        assert!(checks.due(now));
        assert!(!checks.due(now + Duration::from_millis(999)));
        assert!(checks.due(now + Duration::from_secs(1)));
    }

    fn member(valid_until: u64) -> Member {
        Member {
            name: None,
            valid_until,
        }
    }

    #[test]
    fn a_connected_peer_must_be_admitted_within_the_timeout() {
        let start = Instant::now();
        let mut admissions = Admissions::new(TIMEOUT);
        let (slow, quick) = (PeerId::random(), PeerId::random());
        assert!(admissions.connected(slow, &addr(9), start));
        assert!(admissions.connected(quick, &addr(9), start));
        assert!(
            !admissions.connected(slow, &addr(9), start),
            "a second connection starts nothing"
        );
        assert_eq!(
            admissions.admit(quick, member(100)),
            Some(Admitted {
                connected_at: Some(addr(9)),
                held_addresses: vec![]
            })
        );
        assert_eq!(
            admissions.tick(start + TIMEOUT - Duration::from_millis(1), 0),
            AdmissionsDue::default()
        );
        assert!(admissions.is_waiting(&slow) && !admissions.is_waiting(&quick));
        let due = admissions.tick(start + TIMEOUT, 0);
        assert_eq!(due.timed_out, vec![slow]);
        assert!(admissions.is_member(&quick));
        assert!(!admissions.is_member(&slow));
        assert!(!admissions.is_waiting(&slow), "its time is up");
    }

    #[test]
    fn routing_addresses_are_held_until_admission_and_dropped_on_disconnect() {
        let now = Instant::now();
        let mut admissions = Admissions::new(TIMEOUT);
        let peer = PeerId::random();
        assert!(!admissions.route_or_hold(peer, addr(1), now));
        assert!(!admissions.route_or_hold(peer, addr(1), now));
        assert!(
            admissions.connected(peer, &addr(2), now),
            "held addresses do not count as a connection"
        );
        assert!(!admissions.route_or_hold(peer, addr(2), now));
        assert_eq!(
            admissions.admit(peer, member(100)),
            Some(Admitted {
                connected_at: Some(addr(2)),
                held_addresses: vec![addr(1), addr(2)]
            })
        );
        assert!(
            admissions.route_or_hold(peer, addr(3), now),
            "a member's addresses go straight in"
        );
        assert_eq!(admissions.admit(peer, member(100)), None, "admitted once");

        let other = PeerId::random();
        admissions.route_or_hold(other, addr(4), now);
        admissions.disconnected(&other);
        admissions.connected(other, &addr(5), now);
        assert_eq!(
            admissions.admit(other, member(100)).map(|a| a.held_addresses),
            Some(vec![])
        );
    }

    #[test]
    fn an_address_known_before_connecting_gets_a_deadline_once_connected() {
        let start = Instant::now();
        let mut admissions = Admissions::new(TIMEOUT);
        let peer = PeerId::random();
        admissions.route_or_hold(peer, addr(1), start);
        assert!(admissions.tick(start + TIMEOUT * 10, 0).timed_out.is_empty());
        let connected_at = start + TIMEOUT * 10;
        assert!(admissions.connected(peer, &addr(1), connected_at));
        assert_eq!(admissions.tick(connected_at + TIMEOUT, 0).timed_out, vec![peer]);
    }

    #[test]
    fn members_whose_certificate_ends_are_reported_once() {
        let now = Instant::now();
        let mut admissions = Admissions::new(TIMEOUT);
        let peer = PeerId::random();
        admissions.connected(peer, &addr(1), now);
        admissions.admit(peer, member(1_000));
        assert!(admissions.tick(now, 1_000).expired.is_empty());
        assert_eq!(admissions.tick(now, 1_001).expired, vec![peer]);
        assert!(admissions.tick(now, 1_002).expired.is_empty());
        assert!(!admissions.is_member(&peer));
    }

    #[test]
    fn a_disconnected_member_must_be_admitted_again() {
        let now = Instant::now();
        let mut admissions = Admissions::new(TIMEOUT);
        let peer = PeerId::random();
        admissions.connected(peer, &addr(1), now);
        admissions.admit(peer, member(100));
        admissions.disconnected(&peer);
        assert!(!admissions.is_member(&peer));
        assert!(admissions.connected(peer, &addr(1), now));
    }

    #[test]
    fn a_refusal_is_carried_out_after_the_linger_even_if_the_peer_left_meanwhile() {
        let start = Instant::now();
        let mut admissions = Admissions::new(TIMEOUT);
        let peer = PeerId::random();
        admissions.connected(peer, &addr(1), start);
        admissions.refuse_later(peer, "expired", "its certificate expired".into(), start);
        admissions.disconnected(&peer);
        assert!(admissions.tick(start + REFUSAL_LINGER / 2, 0).refused.is_empty());
        let due = admissions.tick(start + TIMEOUT, 0);
        assert_eq!(
            due.refused,
            vec![(peer, "expired", "its certificate expired".to_owned())]
        );
        assert!(
            due.timed_out.is_empty(),
            "a refused peer no longer waits to be admitted"
        );
        assert!(
            admissions.tick(start + TIMEOUT * 2, 0).refused.is_empty(),
            "refused once"
        );

        let banned_first = PeerId::random();
        admissions.refuse_later(banned_first, "wrong_ca", "another CA".into(), start);
        admissions.banned(&banned_first);
        assert!(admissions.tick(start + TIMEOUT, 0).refused.is_empty());
    }

    #[test]
    fn bans_last_their_duration_and_a_new_ban_extends_them() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut bans = Bans::new(minute);
        let peer = PeerId::random();
        assert_eq!(bans.ban(peer, "expired certificate".into(), start), minute);
        assert_eq!(bans.reason(&peer), Some("expired certificate"));
        bans.ban(peer, "gossip score".into(), start + minute / 2);
        assert!(bans.expire(start + minute).is_empty());
        assert_eq!(bans.expire(start + minute * 3 / 2), vec![peer]);
        assert_eq!(bans.reason(&peer), None);
    }

    #[test]
    fn a_flood_of_banned_peers_stays_within_the_cap_and_the_soonest_ban_makes_room() {
        let start = Instant::now();
        let mut bans = Bans::new(Duration::from_secs(60));
        let first = PeerId::random();
        bans.ban_for(first, "short".into(), start, Duration::from_secs(1));
        let mut evicted = Vec::new();
        for _ in 0..MAX_BANS + 50 {
            let peer = PeerId::random();
            evicted.extend(bans.make_room_for(&peer));
            bans.ban(peer, "admission".into(), start);
            assert!(bans.len() <= MAX_BANS);
        }
        assert_eq!(bans.len(), MAX_BANS);
        assert_eq!(evicted.len(), 51);
        assert_eq!(evicted[0], first, "the ban ending soonest goes first");
        let banned = PeerId::random();
        bans.make_room_for(&banned);
        bans.ban(banned, "again".into(), start);
        assert_eq!(bans.make_room_for(&banned), None, "a peer already banned needs no room");
    }

    #[test]
    fn a_ban_of_its_own_length_never_shortens_a_longer_one_and_any_length_is_safe() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut bans = Bans::new(minute);
        let peer = PeerId::random();
        assert_eq!(bans.ban_for(peer, "operator".into(), start, minute * 10), minute * 10);
        assert_eq!(
            bans.ban(peer, "gossip score".into(), start),
            minute * 10,
            "the longer ban stands"
        );
        assert_eq!(bans.reason(&peer), Some("gossip score"));
        assert!(bans.expire(start + minute * 9).is_empty());
        assert_eq!(bans.expire(start + minute * 10), vec![peer]);
        assert_eq!(
            bans.ban_for(peer, "operator".into(), start, Duration::MAX),
            Duration::MAX
        );
        assert!(bans.expire(start + minute * 60 * 24 * 365).is_empty());
    }

    #[test]
    fn a_wait_for_a_peer_that_never_connects_ends_quietly_and_holds_few_addresses() {
        let start = Instant::now();
        let mut admissions = Admissions::new(TIMEOUT);
        let peer = PeerId::random();
        for port in 0..20 {
            admissions.route_or_hold(peer, addr(port), start);
        }
        assert_eq!(admissions.len(), 1);
        let due = admissions.tick(start + TIMEOUT, 0);
        assert_eq!(due, AdmissionsDue::default(), "nobody to refuse: it never connected");
        assert!(admissions.is_empty(), "the wait and its addresses are gone");
        admissions.route_or_hold(peer, addr(1), start);
        admissions.connected(peer, &addr(2), start);
        let held = admissions.admit(peer, member(100)).unwrap().held_addresses;
        assert_eq!(held, vec![addr(1)], "only what was held since the expired wait");
        for port in 0..20 {
            admissions.route_or_hold(PeerId::random(), addr(port), start);
        }
        let other = PeerId::random();
        for port in 0..20 {
            admissions.route_or_hold(other, addr(port), start);
        }
        admissions.connected(other, &addr(99), start);
        let held = admissions.admit(other, member(100)).unwrap().held_addresses;
        assert_eq!(held.len(), MAX_ADDRESSES, "the latest addresses, no more");
        assert_eq!(held.last(), Some(&addr(19)));
    }

    #[test]
    fn extreme_timeouts_and_bans_saturate_instead_of_panicking() {
        let now = Instant::now();
        let decade = now + Duration::from_secs(10 * 365 * 24 * 3600);
        let mut admissions = Admissions::new(Duration::MAX);
        let peer = PeerId::random();
        assert!(!admissions.route_or_hold(PeerId::random(), addr(1), now));
        assert!(admissions.connected(peer, &addr(1), now));
        assert_eq!(admissions.tick(decade, 0), AdmissionsDue::default());
        let mut bans = Bans::new(Duration::MAX);
        assert_eq!(bans.ban(peer, "admission".into(), now), Duration::MAX);
        assert!(bans.expire(decade).is_empty());
        let mut checks = GraylistChecks::new(Duration::MAX);
        assert!(checks.due(now));
        assert!(!checks.due(decade));
    }
}

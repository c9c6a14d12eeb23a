//! Dial bookkeeping, as a pure state machine: which connections this loop dialled itself (any other outbound
//! connection was dialled by Kademlia, which is how a peer found by a lookup is told apart), which callers wait for a
//! dial's outcome, which wait for a DHT lookup to find a bare peer id's addresses, and which wait for a peer that
//! another dial is already reaching. Swarm events come in; the callers to answer (and how) come out. `R` is what
//! answers a caller (a one-shot sender in the node, a plain value in tests), `Q` the lookup's query id.
//!
//! The races it settles (the bug behind c71125d showed only under load): a lookup may find the peer already connected
//! (answer at once, dial nothing), or find that the lookup's own dial of the peer is under way (the caller waits for
//! that connection instead of opening a third one past the per-peer limit).

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use libp2p::{Multiaddr, PeerId, swarm::ConnectionId};

/// What became of a connection we may have been waiting for.
#[derive(Debug, PartialEq, Eq)]
pub struct Established<R> {
    /// This loop started the dial (bootstrap, mDNS, redial, a caller); false for Kademlia's own dials and inbound.
    pub dialled_by_us: bool,
    /// Callers to answer with the connected peer.
    pub connected: Vec<R>,
}

/// The next step of a dial that waits for a DHT lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum LookupStep<R> {
    /// Not our lookup, or not there yet: keep waiting.
    Wait,
    /// Done: the peer is connected already; answer `reply` with it (and finish the query).
    Connected { peer: PeerId, reply: R },
    /// Done: dial `peer` at `addresses` for `reply` (and finish the query), then tell `answer_with` or
    /// `already_dialling` how that went.
    Dial {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        reply: R,
    },
    /// Done: the lookup ended without the peer's addresses; answer `reply` that it was not found.
    NotFound { peer: PeerId, reply: R },
}

/// Every dial in flight that someone waits on.
#[derive(Debug)]
pub struct Dials<R, Q> {
    /// Dials this loop started, until their connection is up or has failed.
    own: HashSet<ConnectionId>,
    /// Callers answered by one connection's outcome.
    callers: HashMap<ConnectionId, R>,
    /// Callers answered by the outcome of whichever dial of the peer is under way.
    awaiting_peer: HashMap<PeerId, Vec<R>>,
    /// Callers of a bare peer id, waiting for the lookup that finds its addresses.
    lookups: HashMap<Q, (PeerId, R)>,
}

impl<R, Q: Hash + Eq> Default for Dials<R, Q> {
    fn default() -> Self {
        Dials {
            own: HashSet::new(),
            callers: HashMap::new(),
            awaiting_peer: HashMap::new(),
            lookups: HashMap::new(),
        }
    }
}

impl<R, Q: Hash + Eq> Dials<R, Q> {
    /// This loop started a dial on `connection` (nobody waits for it).
    pub fn started(&mut self, connection: ConnectionId) {
        self.own.insert(connection);
    }

    /// A caller is answered by the outcome of the dial this loop started on `connection`.
    pub fn answer_with(&mut self, connection: ConnectionId, reply: R) {
        self.callers.insert(connection, reply);
    }

    /// A dial of `peer` for a caller was not started because another dial of it is under way: the caller is
    /// answered by that dial's outcome.
    pub fn already_dialling(&mut self, peer: PeerId, reply: R) {
        self.awaiting_peer.entry(peer).or_default().push(reply);
    }

    /// A caller dials a bare peer id: `query` is the DHT lookup for its addresses.
    pub fn lookup_started(&mut self, query: Q, peer: PeerId, reply: R) {
        self.lookups.insert(query, (peer, reply));
    }

    /// Whether `query` is one of our lookups (its progress matters to `lookup_progress`).
    pub fn is_lookup(&self, query: &Q) -> Option<PeerId> {
        self.lookups.get(query).map(|(peer, _)| *peer)
    }

    /// A step of `query` reported `found` (the wanted peer's addresses, when this step had them); `last` when the
    /// query is over; `connected` whether the wanted peer is connected now.
    pub fn lookup_progress(
        &mut self,
        query: &Q,
        found: Option<Vec<Multiaddr>>,
        last: bool,
        connected: bool,
    ) -> LookupStep<R> {
        if !self.lookups.contains_key(query) || (found.is_none() && !last) {
            return LookupStep::Wait;
        }
        let Some((peer, reply)) = self.lookups.remove(query) else {
            return LookupStep::Wait;
        };
        match found {
            Some(_) if connected => LookupStep::Connected { peer, reply },
            Some(addresses) => LookupStep::Dial { peer, addresses, reply },
            None => LookupStep::NotFound { peer, reply },
        }
    }

    /// A connection to `peer` is up.
    pub fn established(&mut self, connection: ConnectionId, peer: PeerId) -> Established<R> {
        let mut connected: Vec<R> = self.callers.remove(&connection).into_iter().collect();
        connected.extend(self.awaiting_peer.remove(&peer).unwrap_or_default());
        Established {
            dialled_by_us: self.own.remove(&connection),
            connected,
        }
    }

    /// An outbound connection failed (to `peer`, when known): the callers to tell why.
    pub fn failed(&mut self, connection: ConnectionId, peer: Option<PeerId>) -> Vec<R> {
        self.own.remove(&connection);
        let mut failed: Vec<R> = self.callers.remove(&connection).into_iter().collect();
        if let Some(peer) = peer {
            failed.extend(self.awaiting_peer.remove(&peer).unwrap_or_default());
        }
        failed
    }

    /// Entries held now (own dials, waiting callers, lookups), for the table-size gauges.
    pub fn len(&self) -> usize {
        self.own.len()
            + self.callers.len()
            + self.awaiting_peer.values().map(Vec::len).sum::<usize>()
            + self.lookups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestDials = Dials<&'static str, u32>;

    fn connection(id: usize) -> ConnectionId {
        ConnectionId::new_unchecked(id)
    }

    fn address() -> Multiaddr {
        "/ip4/10.0.0.1/tcp/4100".parse().unwrap()
    }

    #[test]
    fn a_caller_is_answered_by_its_own_connection_only() {
        let mut dials = TestDials::default();
        let peer = PeerId::random();
        dials.started(connection(1));
        dials.answer_with(connection(1), "caller");
        dials.started(connection(2));
        assert_eq!(
            dials.established(connection(2), peer),
            Established {
                dialled_by_us: true,
                connected: vec![]
            }
        );
        assert_eq!(dials.established(connection(1), peer).connected, vec!["caller"]);
        assert!(dials.is_empty());
    }

    #[test]
    fn a_connection_we_did_not_dial_is_told_apart() {
        let mut dials = TestDials::default();
        let established = dials.established(connection(7), PeerId::random());
        assert!(!established.dialled_by_us, "Kademlia dialled it, or it is inbound");
    }

    #[test]
    fn a_failed_dial_answers_its_caller_and_whoever_awaited_the_peer() {
        let mut dials = TestDials::default();
        let peer = PeerId::random();
        dials.started(connection(1));
        dials.answer_with(connection(1), "first");
        dials.already_dialling(peer, "second");
        assert_eq!(dials.failed(connection(1), Some(peer)), vec!["first", "second"]);
        assert!(dials.is_empty());
        dials.started(connection(2));
        dials.answer_with(connection(2), "blind");
        assert_eq!(
            dials.failed(connection(2), None),
            vec!["blind"],
            "an address without a peer id"
        );
    }

    #[test]
    fn a_lookup_that_finds_the_peer_already_connected_dials_nothing() {
        let mut dials = TestDials::default();
        let peer = PeerId::random();
        dials.lookup_started(9, peer, "caller");
        assert_eq!(dials.is_lookup(&9), Some(peer));
        assert_eq!(
            dials.lookup_progress(&9, None, false, false),
            LookupStep::Wait,
            "no addresses yet"
        );
        assert_eq!(
            dials.lookup_progress(&9, Some(vec![address()]), false, true),
            LookupStep::Connected { peer, reply: "caller" }
        );
        assert_eq!(
            dials.lookup_progress(&9, Some(vec![address()]), true, true),
            LookupStep::Wait,
            "answered once"
        );
        assert!(dials.is_empty());
    }

    #[test]
    fn a_lookup_whose_own_dial_is_under_way_waits_for_that_connection() {
        let mut dials = TestDials::default();
        let peer = PeerId::random();
        dials.lookup_started(9, peer, "caller");
        let LookupStep::Dial { addresses, reply, .. } = dials.lookup_progress(&9, Some(vec![address()]), false, false)
        else {
            panic!("found and not connected: dial");
        };
        assert_eq!(addresses, vec![address()]);
        // Kademlia is dialling the peer itself (it is the closest to its own id): our dial is refused as redundant.
        dials.already_dialling(peer, reply);
        let kademlia_connection = dials.established(connection(5), peer);
        assert!(!kademlia_connection.dialled_by_us);
        assert_eq!(kademlia_connection.connected, vec!["caller"]);
        assert!(dials.is_empty());
    }

    #[test]
    fn a_lookup_that_ends_without_the_peer_says_not_found() {
        let mut dials = TestDials::default();
        let peer = PeerId::random();
        dials.lookup_started(9, peer, "caller");
        assert_eq!(
            dials.lookup_progress(&9, None, true, false),
            LookupStep::NotFound { peer, reply: "caller" }
        );
        assert_eq!(
            dials.lookup_progress(&8, None, true, false),
            LookupStep::Wait,
            "not our query"
        );
    }
}

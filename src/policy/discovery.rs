//! Discovery decisions, kept free of I/O so they can be tested with a fake clock:
//! - `BootstrapPeers`: the configured bootstrap addresses, the peer ids learned when an address given without
//!   `/p2p/<id>` answers, and when to try again while the Kademlia routing table is still empty (exponential backoff,
//!   1 s doubling to 30 s). Once the table has peers, Kademlia's own periodic refresh takes over.
//! - `Discoveries`: per peer, which sources reported it at which addresses, so `discovered` events say something new;
//!   forgotten with the peer.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

use super::liveness::MAX_ADDRESSES;
use crate::{node::DiscoverySource, time::deadline};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// One configured bootstrap address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BootstrapPeer {
    /// The address without any `/p2p/` suffix.
    address: Multiaddr,
    /// Known from the configuration, or learned on the first connection.
    peer: Option<PeerId>,
}

/// The bootstrap peers and the retry schedule.
#[derive(Debug)]
pub struct BootstrapPeers {
    peers: Vec<BootstrapPeer>,
    next_retry: Instant,
    retry_delay: Duration,
}

impl BootstrapPeers {
    pub fn new(addresses: &[Multiaddr], now: Instant) -> Self {
        let peers = addresses
            .iter()
            .map(|address| {
                let mut address = address.clone();
                let peer = match address.iter().last() {
                    Some(Protocol::P2p(peer)) => {
                        address.pop();
                        Some(peer)
                    }
                    _ => None,
                };
                BootstrapPeer { address, peer }
            })
            .collect();
        BootstrapPeers {
            peers,
            next_retry: deadline(now, FIRST_RETRY),
            retry_delay: FIRST_RETRY,
        }
    }

    /// What to dial: every bootstrap address, with its peer id when we know it.
    pub fn dial_targets(&self) -> Vec<(Option<PeerId>, Multiaddr)> {
        self.peers.iter().map(|p| (p.peer, p.address.clone())).collect()
    }

    /// Peers with a known id and their address, to seed the routing table.
    pub fn known(&self) -> Vec<(PeerId, Multiaddr)> {
        self.peers
            .iter()
            .filter_map(|p| p.peer.map(|peer| (peer, p.address.clone())))
            .collect()
    }

    /// An outbound connection to `peer` at `dialed` is up. If it is a bootstrap peer, returns its address (learning
    /// its id when the configuration did not give one) so the caller can add it to the routing table.
    pub fn on_connected(&mut self, peer: PeerId, dialed: &Multiaddr) -> Option<Multiaddr> {
        let dialed = without_p2p(dialed);
        let entry = self
            .peers
            .iter_mut()
            .find(|p| p.peer == Some(peer) || (p.peer.is_none() && p.address == dialed))?;
        if entry.peer.is_none() {
            tracing::info!(%peer, address = %entry.address, "learned the peer id of a bootstrap address");
            entry.peer = Some(peer);
        }
        Some(entry.address.clone())
    }

    /// Whether to redial the bootstrap peers and bootstrap Kademlia now. While the routing table is empty this
    /// returns true at 1 s, 2 s, 4 s … 30 s intervals; a non-empty table resets the schedule.
    pub fn retry_due(&mut self, now: Instant, routing_table_empty: bool) -> bool {
        if self.peers.is_empty() || !routing_table_empty {
            self.retry_delay = FIRST_RETRY;
            self.next_retry = deadline(now, FIRST_RETRY);
            return false;
        }
        if now < self.next_retry {
            return false;
        }
        self.retry_delay = self.retry_delay.saturating_mul(2).min(MAX_RETRY);
        self.next_retry = deadline(now, self.retry_delay);
        true
    }
}

fn without_p2p(address: &Multiaddr) -> Multiaddr {
    address.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()
}

/// The discoveries already announced, by peer and source: one record per known peer, forgotten with it.
#[derive(Debug, Default)]
pub struct Discoveries {
    announced: HashMap<PeerId, BTreeMap<DiscoverySource, Vec<Multiaddr>>>,
}

impl Discoveries {
    /// Records that `source` reports `peer` at `addresses` (at most `MAX_ADDRESSES` kept); true when that is news
    /// (a new peer for this source, or other addresses than last time) and so worth a `discovered` event.
    pub fn record(&mut self, peer: PeerId, source: DiscoverySource, addresses: &[Multiaddr]) -> bool {
        let mut sorted = addresses.to_vec();
        sorted.sort();
        sorted.dedup();
        sorted.truncate(MAX_ADDRESSES);
        match self.announced.entry(peer).or_default().insert(source, sorted.clone()) {
            Some(previous) => previous != sorted,
            None => true,
        }
    }

    /// Every source that has reported `peer`, in a fixed order.
    pub fn sources(&self, peer: &PeerId) -> Vec<DiscoverySource> {
        self.announced
            .get(peer)
            .map(|sources| sources.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether any source has reported `peer`.
    pub fn knows(&self, peer: &PeerId) -> bool {
        self.announced.contains_key(peer)
    }

    /// Drops everything recorded about `peer` (the peer table forgot it).
    pub fn forget(&mut self, peer: &PeerId) {
        self.announced.remove(peer);
    }

    /// Peers with a record now.
    pub fn len(&self) -> usize {
        self.announced.len()
    }

    pub fn is_empty(&self) -> bool {
        self.announced.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_without_a_peer_id_learns_it_on_first_connection() {
        let now = Instant::now();
        let mut bootstrap = BootstrapPeers::new(&[addr("/dns4/bootstrap/tcp/4100")], now);
        assert_eq!(bootstrap.known(), vec![]);
        let peer = PeerId::random();
        assert_eq!(
            bootstrap.on_connected(peer, &addr("/dns4/bootstrap/tcp/4100")),
            Some(addr("/dns4/bootstrap/tcp/4100"))
        );
        assert_eq!(bootstrap.known(), vec![(peer, addr("/dns4/bootstrap/tcp/4100"))]);
        assert_eq!(
            bootstrap.dial_targets(),
            vec![(Some(peer), addr("/dns4/bootstrap/tcp/4100"))]
        );
    }

    #[test]
    fn an_address_with_a_peer_id_is_known_from_the_start_and_matches_by_id() {
        let peer = PeerId::random();
        let mut bootstrap = BootstrapPeers::new(&[addr(&format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}"))], Instant::now());
        assert_eq!(bootstrap.known(), vec![(peer, addr("/ip4/127.0.0.1/tcp/1"))]);
        // Reached through another address (e.g. one learned from identify): still the bootstrap peer.
        assert_eq!(
            bootstrap.on_connected(peer, &addr("/ip4/10.0.0.9/tcp/1")),
            Some(addr("/ip4/127.0.0.1/tcp/1"))
        );
        assert_eq!(
            bootstrap.on_connected(PeerId::random(), &addr("/ip4/127.0.0.1/tcp/1")),
            None
        );
    }

    #[test]
    fn retries_back_off_while_the_table_is_empty_and_reset_once_it_fills() {
        let start = Instant::now();
        let mut bootstrap = BootstrapPeers::new(&[addr("/ip4/127.0.0.1/tcp/1")], start);
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert!(!bootstrap.retry_due(start, true));
        assert!(bootstrap.retry_due(at(1), true)); // next in 2 s
        assert!(!bootstrap.retry_due(at(2), true));
        assert!(bootstrap.retry_due(at(3), true)); // next in 4 s
        assert!(!bootstrap.retry_due(at(6), true));
        assert!(bootstrap.retry_due(at(7), true)); // next in 8 s
        assert!(bootstrap.retry_due(at(15), true)); // 16
        assert!(bootstrap.retry_due(at(31), true)); // 30 (capped)
        assert!(!bootstrap.retry_due(at(60), true));
        assert!(bootstrap.retry_due(at(61), true));
        assert!(!bootstrap.retry_due(at(62), false)); // table filled: schedule resets
        assert!(!bootstrap.retry_due(at(62), true));
        assert!(bootstrap.retry_due(at(63), true));
    }

    #[test]
    fn with_no_bootstrap_peers_there_is_nothing_to_retry() {
        let start = Instant::now();
        let mut bootstrap = BootstrapPeers::new(&[], start);
        assert!(!bootstrap.retry_due(start + Duration::from_secs(100), true));
    }

    #[test]
    fn discoveries_are_announced_once_per_source_until_addresses_change() {
        let mut discoveries = Discoveries::default();
        let peer = PeerId::random();
        let a = addr("/ip4/10.0.0.1/tcp/4100");
        let b = addr("/ip4/10.0.0.2/tcp/4100");
        assert!(!discoveries.knows(&peer));
        assert!(discoveries.record(peer, DiscoverySource::Mdns, std::slice::from_ref(&a)));
        assert!(discoveries.knows(&peer));
        assert!(!discoveries.record(peer, DiscoverySource::Mdns, &[a.clone(), a.clone()]));
        assert!(discoveries.record(peer, DiscoverySource::Identify, std::slice::from_ref(&a)));
        assert!(discoveries.record(peer, DiscoverySource::Mdns, &[b.clone(), a.clone()]));
        assert!(!discoveries.record(peer, DiscoverySource::Mdns, &[a, b]));
    }
}

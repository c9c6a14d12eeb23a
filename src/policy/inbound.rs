//! Per-address limits on inbound connections: how many connections one source address may have in their handshake
//! (pending) and how many it may hold up (established) at once. Without them a single host can fill the node-wide
//! `--max-pending-incoming` with sockets that never finish a handshake and keep every honest dialler out; with them
//! it needs `--max-pending-incoming / --max-pending-per-ip` addresses to do so.
//!
//! Connections are counted by their source: an IPv4 address, or the /64 prefix of an IPv6 address (the smallest block
//! one subscriber is normally given, so one host cannot step round the limit by changing the low bits). An
//! IPv4-mapped IPv6 address counts as its IPv4 address. Pure: the caller reports each connection's stage by
//! connection id, and the maps hold only sources with a live connection (an entry goes when its counts reach zero),
//! so they are bounded by the connections the swarm holds.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv6Addr},
};

use libp2p::{Multiaddr, multiaddr::Protocol, swarm::ConnectionId};

/// The per-address limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundLimits {
    /// Inbound connections one source may have in their handshake at once (`--max-pending-per-ip`).
    pub max_pending_per_ip: u32,
    /// Inbound connections one source may have established at once (`--max-established-per-ip`).
    pub max_established_per_ip: u32,
}

/// Which per-address limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PendingPerIp,
    EstablishedPerIp,
}

impl Limit {
    /// The flag that sets this limit.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::PendingPerIp => "--max-pending-per-ip",
            Limit::EstablishedPerIp => "--max-established-per-ip",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Limit::PendingPerIp => "inbound connections in their handshake",
            Limit::EstablishedPerIp => "established inbound connections",
        }
    }
}

/// An inbound connection refused because its source is at a per-address limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    pub limit: Limit,
    /// The limit's value.
    pub max: u32,
    /// The source, as counted (an IPv6 address is its /64 prefix).
    pub address: IpAddr,
    /// This source was refused before while it held connections: a host that keeps reopening is reported once
    /// loudly, then quietly (each refusal is still counted).
    pub repeated: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.address.is_ipv6() { "/64" } else { "" };
        write!(
            f,
            "per-address limit: at most {} {} from {}{prefix} ({})",
            self.max,
            self.limit.what(),
            self.address,
            self.limit.flag()
        )
    }
}

/// The source a remote address counts under: its IPv4 address or IPv6 /64 prefix; `None` for an address with no IP
/// (the memory transport), which is not counted.
pub fn source_of(remote: &Multiaddr) -> Option<IpAddr> {
    match remote.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => match ip.to_ipv4_mapped() {
            Some(ip) => Some(IpAddr::V4(ip)),
            None => {
                let prefix = u128::from(ip) & !(u128::from(u64::MAX));
                Some(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        },
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Pending,
    Established,
}

/// What one source holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u32,
    pub established: u32,
    /// Refusals since the source's entry was created (saturating).
    pub refused: u64,
}

impl Counts {
    fn is_empty(&self) -> bool {
        self.pending == 0 && self.established == 0
    }
}

/// Inbound connections by source, with their stage.
#[derive(Debug)]
pub struct InboundAccounts {
    limits: InboundLimits,
    connections: HashMap<ConnectionId, (IpAddr, Stage)>,
    sources: HashMap<IpAddr, Counts>,
}

impl InboundAccounts {
    /// Accounts under `limits`; a limit of 0 counts as 1 (`NodeConfig::validate` refuses 0), so a refused source
    /// always holds a connection and its entry never stays behind empty.
    pub fn new(limits: InboundLimits) -> Self {
        InboundAccounts {
            limits: InboundLimits {
                max_pending_per_ip: limits.max_pending_per_ip.max(1),
                max_established_per_ip: limits.max_established_per_ip.max(1),
            },
            connections: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// A connection from `source` was accepted and starts its handshake: counted, or refused when the source has
    /// `max_pending_per_ip` handshakes under way already. A connection id seen before is left as it is.
    pub fn admit_pending(&mut self, connection: ConnectionId, source: IpAddr) -> Result<(), Refusal> {
        if self.connections.contains_key(&connection) {
            return Ok(());
        }
        let max = self.limits.max_pending_per_ip;
        let counts = self.sources.entry(source).or_default();
        if counts.pending >= max {
            return Err(refuse(counts, Limit::PendingPerIp, max, source));
        }
        counts.pending += 1;
        self.connections.insert(connection, (source, Stage::Pending));
        Ok(())
    }

    /// A pending connection finished its handshake: it becomes established, or is refused (and forgotten) when its
    /// source has `max_established_per_ip` established connections already. A connection not counted (no IP, or
    /// unknown) passes.
    pub fn promote(&mut self, connection: ConnectionId) -> Result<(), Refusal> {
        let Some(&(source, stage)) = self.connections.get(&connection) else {
            return Ok(());
        };
        if stage == Stage::Established {
            return Ok(());
        }
        let max = self.limits.max_established_per_ip;
        let Some(counts) = self.sources.get_mut(&source) else {
            return Ok(());
        };
        if counts.established >= max {
            let refusal = refuse(counts, Limit::EstablishedPerIp, max, source);
            self.release(connection);
            return Err(refusal);
        }
        counts.pending = counts.pending.saturating_sub(1);
        counts.established += 1;
        self.connections.insert(connection, (source, Stage::Established));
        Ok(())
    }

    /// A connection ended, in whatever stage (handshake failed or timed out, refused by another gate, closed): its
    /// count is given back, and its source forgotten once it holds nothing. Unknown ids are ignored.
    pub fn release(&mut self, connection: ConnectionId) {
        let Some((source, stage)) = self.connections.remove(&connection) else {
            return;
        };
        let Some(counts) = self.sources.get_mut(&source) else {
            return;
        };
        match stage {
            Stage::Pending => counts.pending = counts.pending.saturating_sub(1),
            Stage::Established => counts.established = counts.established.saturating_sub(1),
        }
        if counts.is_empty() {
            self.sources.remove(&source);
        }
    }

    /// What `source` holds now (zeros when nothing).
    pub fn counts(&self, source: &IpAddr) -> Counts {
        self.sources.get(source).copied().unwrap_or_default()
    }

    /// Sources with a live connection.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// The refusal of one more connection from `source`, counted against its entry.
fn refuse(counts: &mut Counts, limit: Limit, max: u32, source: IpAddr) -> Refusal {
    let repeated = counts.refused > 0;
    counts.refused = counts.refused.saturating_add(1);
    Refusal {
        limit,
        max,
        address: source,
        repeated,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LIMITS: InboundLimits = InboundLimits {
        max_pending_per_ip: 8,
        max_established_per_ip: 4,
    };

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_prefixes() {
        let source = |text: &str| source_of(&text.parse().unwrap());
        assert_eq!(source("/ip4/10.0.0.1/tcp/4100"), Some(ip(1)));
        assert_eq!(
            source("/ip6/2001:db8:1:2:aaaa::1/udp/4100/quic-v1"),
            source("/ip6/2001:db8:1:2:bbbb::2/tcp/1"),
            "one /64 is one source"
        );
        assert_ne!(
            source("/ip6/2001:db8:1:2::1/tcp/1"),
            source("/ip6/2001:db8:1:3::1/tcp/1")
        );
        assert_eq!(source("/ip6/::ffff:10.0.0.1/tcp/1"), Some(ip(1)), "IPv4-mapped is IPv4");
        assert_eq!(source("/memory/1"), None);
        assert_eq!(source("/dns4/example.com/tcp/1"), None);
    }

    #[test]
    fn a_flood_from_one_address_gets_its_limit_and_nothing_more() {
        let mut accounts = InboundAccounts::new(LIMITS);
        let refusals: Vec<Refusal> = (0..1000)
            .filter_map(|n| accounts.admit_pending(id(n), ip(2)).err())
            .collect();
        assert_eq!(refusals.len(), 992);
        assert_eq!(accounts.counts(&ip(2)).pending, 8);
        assert_eq!(accounts.counts(&ip(2)).refused, 992);
        assert!(!refusals[0].repeated, "the first refusal is reported loudly");
        assert!(refusals[1..].iter().all(|r| r.repeated), "the rest quietly");
        assert_eq!(
            refusals[0].to_string(),
            "per-address limit: at most 8 inbound connections in their handshake from 10.0.0.2 (--max-pending-per-ip)"
        );
        assert_eq!(
            accounts.admit_pending(id(5000), ip(1)),
            Ok(()),
            "another address is not affected"
        );

        // A refused connection was never counted: releasing it changes nothing.
        accounts.release(id(999));
        assert_eq!(accounts.counts(&ip(2)).pending, 8);
        // A handshake timing out frees its slot for the next one.
        accounts.release(id(0));
        assert_eq!(accounts.admit_pending(id(1000), ip(2)), Ok(()));
        assert!(accounts.admit_pending(id(1001), ip(2)).is_err());
    }

    #[test]
    fn a_flood_from_many_addresses_is_limited_per_address_and_leaves_nothing_behind() {
        let mut accounts = InboundAccounts::new(LIMITS);
        let mut admitted = Vec::new();
        for n in 0..10_000 {
            let source = ip((n % 250) as u8);
            if accounts.admit_pending(id(n), source).is_ok() {
                admitted.push(id(n));
            }
        }
        assert_eq!(admitted.len(), 250 * 8);
        assert_eq!(accounts.len(), 250);
        for connection in admitted {
            accounts.release(connection);
        }
        assert!(accounts.is_empty(), "no source is kept once its connections are gone");
        assert!(accounts.connections.is_empty());
    }

    #[test]
    fn established_connections_have_their_own_limit() {
        let mut accounts = InboundAccounts::new(LIMITS);
        for n in 0..5 {
            accounts.admit_pending(id(n), ip(3)).unwrap();
        }
        for n in 0..4 {
            assert_eq!(accounts.promote(id(n)), Ok(()));
        }
        let refusal = accounts.promote(id(4)).unwrap_err();
        assert_eq!(refusal.limit, Limit::EstablishedPerIp);
        assert!(refusal.to_string().contains("--max-established-per-ip"), "{refusal}");
        assert_eq!(
            accounts.counts(&ip(3)),
            Counts {
                pending: 0,
                established: 4,
                refused: 1
            },
            "the refused connection is forgotten"
        );
        // Established connections do not take handshake slots.
        for n in 10..18 {
            assert_eq!(accounts.admit_pending(id(n), ip(3)), Ok(()));
        }
        // One closes: the next handshake may finish.
        accounts.release(id(0));
        assert_eq!(accounts.promote(id(10)), Ok(()));
        assert_eq!(accounts.counts(&ip(3)).established, 4);
        assert_eq!(accounts.counts(&ip(3)).pending, 7);
    }

    #[test]
    fn connections_without_an_address_and_repeated_reports_pass_through() {
        let mut accounts = InboundAccounts::new(LIMITS);
        assert_eq!(accounts.promote(id(1)), Ok(()), "never admitted (no IP): not counted");
        accounts.release(id(1));
        accounts.admit_pending(id(2), ip(4)).unwrap();
        accounts.admit_pending(id(2), ip(4)).unwrap();
        assert_eq!(accounts.counts(&ip(4)).pending, 1, "one id counts once");
        accounts.promote(id(2)).unwrap();
        accounts.promote(id(2)).unwrap();
        assert_eq!(accounts.counts(&ip(4)).established, 1);
        accounts.release(id(2));
        accounts.release(id(2));
        assert!(accounts.is_empty());
    }

    #[test]
    fn the_quiet_flag_resets_once_a_source_holds_nothing() {
        let limits = InboundLimits {
            max_pending_per_ip: 1,
            max_established_per_ip: 1,
        };
        let mut accounts = InboundAccounts::new(limits);
        accounts.admit_pending(id(1), ip(5)).unwrap();
        assert!(!accounts.admit_pending(id(2), ip(5)).unwrap_err().repeated);
        assert!(accounts.admit_pending(id(3), ip(5)).unwrap_err().repeated);
        accounts.release(id(1));
        accounts.admit_pending(id(4), ip(5)).unwrap();
        assert!(
            !accounts.admit_pending(id(5), ip(5)).unwrap_err().repeated,
            "a new episode is reported again"
        );
    }
}

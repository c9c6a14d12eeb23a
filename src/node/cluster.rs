//! This node's side of membership, kept by the event loop: the member view (`policy::members`), the local service
//! registry (`policy::checks`), and what it takes to announce our own record — the signing key, the incarnation
//! (raised at every start and kept in the data directory, so a restarted node's records supersede its old ones), the
//! sequence number, the announcement timer and the load sampler. The data-directory files (`incarnation`,
//! `services.json` for services registered through the API) are read and written here.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol};

use super::load::{LoadSampler, resident_bytes};
use crate::{
    config::{NodeConfig, members::MembersConfig, services::ServiceDefinition},
    files,
    policy::{
        checks::Services,
        members::{MemberLimits, MemberTimers, Members},
        route::dynamic_weight,
    },
    security::secret_file::write_secret,
    wire::members::{Load, MAX_ADDRESSES, MemberRecord, RecordError},
};

/// Health checks running at once at most.
pub const MAX_CHECKS_IN_FLIGHT: usize = 8;
/// How often the members and services gauges are recomputed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
/// Least time between two of our records on gossip.
pub const MIN_PUBLISH_GAP: Duration = Duration::from_millis(200);
/// Check outputs are cut to this many bytes when the full ones would not fit the record.
const SHORT_OUTPUT: usize = 48;
/// Largest `incarnation` or `services.json` file read back.
const MAX_STATE_FILE: usize = 1 << 20;

pub(super) struct Cluster {
    pub members: Members,
    pub services: Services,
    pub config: MembersConfig,
    keypair: Keypair,
    incarnation: u64,
    seq: u64,
    interval: Duration,
    next_announce: Instant,
    /// Something in our record changed since it was last announced: announce at the next tick.
    changed: bool,
    /// When our record last went out on gossip.
    last_published: Option<Instant>,
    /// Our record reached at least one peer: from then on the interval is soon enough.
    heard: bool,
    load: LoadSampler,
    services_file: PathBuf,
    /// Ids of the services registered through the API (persisted); the others come from `--service`.
    api_services: BTreeSet<String>,
    /// Connected peers whose view request we served: one per connection, so a peer cannot make us verify and send
    /// views in a loop. Bounded by the connected peers (cleared when the last connection closes).
    served_exchanges: HashSet<PeerId>,
    /// When the members and services gauges are next computed (they walk the whole view).
    next_gauges: Instant,
}

impl Cluster {
    /// Loads the incarnation (and raises it), the services registered through the API in an earlier run, and
    /// registers those of `--service` (which win over a persisted one of the same id).
    pub fn start(config: &NodeConfig, keypair: Keypair, now: Instant) -> anyhow::Result<Self> {
        let members_config = config.members.clone();
        let incarnation = next_incarnation(&config.data_dir.join("incarnation"))?;
        let interval = members_config.interval(config.heartbeat);
        let timers = MemberTimers::new(members_config.ttl(config.heartbeat), members_config.reap_after);
        let local = keypair.public().to_peer_id();
        let mut services = Services::new(MAX_CHECKS_IN_FLIGHT);
        let services_file = config.data_dir.join("services.json");
        let mut api_services = BTreeSet::new();
        for definition in load_services(&services_file)? {
            let id = definition.id.clone();
            if members_config.services.iter().any(|s| s.id == id) {
                continue;
            }
            services
                .register(definition, now)
                .with_context(|| format!("cannot register service {id:?} from {}", services_file.display()))?;
            api_services.insert(id);
        }
        for definition in &members_config.services {
            let id = definition.id.clone();
            services
                .register(definition.clone(), now)
                .with_context(|| format!("invalid --service {id:?}"))?;
        }
        let mut cluster = Cluster {
            members: Members::new(local, timers, MemberLimits::default()),
            services,
            config: members_config,
            keypair,
            incarnation,
            seq: 0,
            interval,
            next_announce: now,
            changed: true,
            last_published: None,
            heard: false,
            load: LoadSampler::default(),
            services_file,
            api_services,
            served_exchanges: HashSet::new(),
            next_gauges: now,
        };
        // Fails at start when tags and services do not fit a signed record. In the view at once, so the first view
        // exchange already carries it; announced (with the listen addresses) at the first tick.
        let (record, envelope) = cluster
            .next_record(&[], 0, false)
            .context("this node's member record")?;
        tracing::info!(incarnation, name = %record.name, services = record.services.len(), "member record ready");
        cluster.members.set_local(record, envelope, now);
        Ok(cluster)
    }

    /// Whether the gauges are due (once a second): they walk every service of every member.
    pub fn gauges_due(&mut self, now: Instant) -> bool {
        if now < self.next_gauges {
            return false;
        }
        self.next_gauges = now + GAUGE_INTERVAL;
        true
    }

    /// A peer joined the members topic. Until our record has reached someone, that is the moment to announce it: a
    /// node that just started would otherwise stay unknown, beyond its direct peers, for a whole interval.
    pub fn someone_listens(&mut self) {
        if !self.heard {
            self.changed = true;
        }
    }

    /// Our record went out to at least one peer.
    pub fn heard(&mut self) {
        self.heard = true;
    }

    /// Whether a view request from `peer` is the first on its current connection (then it is served, once).
    pub fn first_exchange(&mut self, peer: PeerId) -> bool {
        self.served_exchanges.insert(peer)
    }

    /// `peer`'s last connection closed: its next connection may exchange views again.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.served_exchanges.remove(peer);
    }

    /// Something in our record changed: announce it without waiting for the interval.
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Whether our record is due: the interval came round, or something changed.
    pub fn announce_due(&self, now: Instant) -> bool {
        self.changed || now >= self.next_announce
    }

    /// Whether a record may go out on gossip now: at most one per `MIN_PUBLISH_GAP`, however often an application
    /// reports its services, so the swarm's membership traffic stays bounded. A record held back is still our own
    /// entry at once, and goes out at a later tick.
    pub fn may_publish(&mut self, now: Instant) -> bool {
        if self
            .last_published
            .is_some_and(|at| now.saturating_duration_since(at) < MIN_PUBLISH_GAP)
        {
            self.changed = true;
            return false;
        }
        self.last_published = Some(now);
        true
    }

    /// Our next record (sequence raised), signed, and set as our own entry in the view.
    pub fn announce(
        &mut self,
        listen: &[Multiaddr],
        connections: usize,
        left: bool,
        now: Instant,
    ) -> anyhow::Result<Arc<[u8]>> {
        let (record, envelope) = self.next_record(listen, connections, left)?;
        self.members.set_local(record, envelope.clone(), now);
        self.changed = false;
        self.next_announce = now + self.interval;
        Ok(envelope)
    }

    fn next_record(
        &mut self,
        listen: &[Multiaddr],
        connections: usize,
        left: bool,
    ) -> anyhow::Result<(MemberRecord, Arc<[u8]>)> {
        self.seq += 1;
        let cpu = self.load.cpu();
        let load = Load {
            cpu,
            rss: resident_bytes(),
            connections: u32::try_from(connections).unwrap_or(u32::MAX),
        };
        let weight = if self.config.dynamic_weight {
            dynamic_weight(self.config.weight, cpu)
        } else {
            self.config.weight
        };
        let mut record = self
            .config
            .record(self.incarnation, self.seq, self.services.records(), load, weight);
        record.addrs = announced_addresses(listen);
        record.left = left;
        let envelope = seal_fitting(&mut record, &self.keypair)
            .map_err(|e| anyhow::anyhow!("{e}: fewer or shorter --tag and --service values would fit"))?;
        Ok((record, envelope.into()))
    }

    /// Whether our record with the services as registered now still fits its size limit (asked before a
    /// registration is kept, so the API cannot make the node's record unsendable).
    pub fn record_fits(&self) -> Result<(), RecordError> {
        let mut record = self.config.record(
            self.incarnation,
            self.seq,
            self.services.records(),
            Load::default(),
            self.config.weight,
        );
        record.addrs = vec!["/ip6/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/udp/65535/quic-v1".into(); MAX_ADDRESSES];
        seal_fitting(&mut record, &self.keypair).map(|_| ())
    }

    /// Writes the services registered through the API to the data directory (after each register or deregister).
    pub fn persist_services(&self) -> anyhow::Result<()> {
        let kept: Vec<&ServiceDefinition> = self
            .services
            .definitions()
            .filter(|definition| self.api_services.contains(&definition.id))
            .collect();
        let json = serde_json::to_vec_pretty(&kept)?;
        write_secret(&self.services_file, &json, true)
            .with_context(|| format!("cannot save services to {}", self.services_file.display()))
    }

    /// Records that `id` was registered (`true`) or deregistered through the API.
    pub fn set_api_service(&mut self, id: &str, registered: bool) {
        if registered {
            self.api_services.insert(id.to_owned());
        } else {
            self.api_services.remove(id);
        }
    }

    /// Whether `id` came from the API (and so lives in `services.json`).
    pub fn is_api_service(&self, id: &str) -> bool {
        self.api_services.contains(id)
    }
}

/// Seals `record`; when check outputs make it too large, they are shortened (then dropped) until it fits, since a
/// record that cannot be sent would make the node look dead.
fn seal_fitting(record: &mut MemberRecord, keypair: &Keypair) -> Result<Vec<u8>, RecordError> {
    let mut sealed = record.seal(keypair);
    for keep in [SHORT_OUTPUT, 0] {
        if !matches!(sealed, Err(RecordError::TooLarge(_))) {
            break;
        }
        for service in &mut record.services {
            let mut end = service.output.len().min(keep);
            while !service.output.is_char_boundary(end) {
                end -= 1;
            }
            service.output.truncate(end);
        }
        sealed = record.seal(keypair);
    }
    sealed
}

/// The addresses we announce: our listen addresses without loopback ones when there are others (services on
/// loopback are only reachable from this machine), and at most the record's limit.
fn announced_addresses(listen: &[Multiaddr]) -> Vec<String> {
    let loopback = |address: &Multiaddr| {
        address.iter().any(|p| match p {
            Protocol::Ip4(ip) => ip.is_loopback(),
            Protocol::Ip6(ip) => ip.is_loopback(),
            _ => false,
        })
    };
    let routable: Vec<&Multiaddr> = listen.iter().filter(|a| !loopback(a)).collect();
    let chosen: Vec<&Multiaddr> = if routable.is_empty() {
        listen.iter().collect()
    } else {
        routable
    };
    chosen
        .into_iter()
        .map(ToString::to_string)
        .filter(|text| text.len() <= crate::wire::members::MAX_ADDRESS)
        .take(MAX_ADDRESSES)
        .collect()
}

/// Reads the last incarnation (0 when there is none), writes the next and returns it.
fn next_incarnation(path: &Path) -> anyhow::Result<u64> {
    let previous = match files::read_text(path, "incarnation file", MAX_STATE_FILE) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{} does not hold a number; remove it to start over", path.display()))?,
        Err(e) if e.is_not_found() => 0,
        Err(e) => return Err(e.into()),
    };
    let next = previous.saturating_add(1);
    write_secret(path, format!("{next}\n").as_bytes(), true)
        .with_context(|| format!("cannot save the incarnation to {}", path.display()))?;
    Ok(next)
}

/// The services registered through the API in an earlier run.
fn load_services(path: &Path) -> anyhow::Result<Vec<ServiceDefinition>> {
    match files::read(path, "services file", MAX_STATE_FILE) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a list of services; fix or remove it", path.display())),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incarnation_rises_with_every_start_and_survives_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incarnation");
        assert_eq!(next_incarnation(&path).unwrap(), 1);
        assert_eq!(next_incarnation(&path).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "2\n");
        std::fs::write(&path, "junk").unwrap();
        let error = next_incarnation(&path).unwrap_err().to_string();
        assert!(error.contains("does not hold a number"), "{error}");
    }

    #[test]
    fn loopback_addresses_are_announced_only_when_there_is_nothing_else() {
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let lan: Multiaddr = "/ip4/10.1.2.3/tcp/1".parse().unwrap();
        assert_eq!(
            announced_addresses(&[local.clone(), lan.clone()]),
            vec![lan.to_string()]
        );
        assert_eq!(
            announced_addresses(std::slice::from_ref(&local)),
            vec![local.to_string()]
        );
    }
}

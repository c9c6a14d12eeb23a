//! `NodeConfig`: every tunable of a running node, its default, and the checks that turn a bad value into a clear
//! error before anything starts. The CLI fills it from flags and `SWARMNODE_*` variables; tests build it directly.

pub mod bounds;
pub mod members;
pub mod perf;
pub mod services;
pub mod state;
mod topic;

use std::{collections::HashSet, fmt, path::PathBuf, str::FromStr, time::Duration};

use libp2p::{Multiaddr, PeerId, StreamProtocol, multiaddr::Protocol};

pub use topic::{INVISIBLE_FORMAT, RESERVED_TOPIC_PREFIX, check_topic, is_invisible_format};

use crate::{files, policy::liveness::LivenessPolicy, wire::envelope::ENVELOPE_OVERHEAD};

/// The Kademlia protocol of a swarmnode swarm: our own, so that a swarm never merges into the public IPFS DHT.
pub const DEFAULT_KAD_PROTOCOL: &str = "/swarmnode/kad/1.0.0";
/// The topic a node joins when none is given.
pub const DEFAULT_TOPIC: &str = "swarmnode";
/// Longest topic name we accept, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// Smallest and largest `--max-message-size`.
pub const MIN_MESSAGE_SIZE: usize = 1024;
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Largest `--event-buffer-bytes` (the smallest is one largest message's event).
pub const MAX_EVENT_BUFFER_BYTES: usize = 1 << 30;

/// A security protocol offered on TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Tls,
    Noise,
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Tls => "tls",
            SecurityProtocol::Noise => "noise",
        })
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Holds the identity key (by default) and the lock that keeps two nodes off one identity.
    pub data_dir: PathBuf,
    /// The identity key file (protobuf-encoded ed25519), created on first start.
    pub key_path: PathBuf,
    pub listen: Vec<Multiaddr>,
    /// Peers to join the swarm through; `/p2p/<id>` is optional.
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub kad_protocol: StreamProtocol,
    /// How often Kademlia refreshes its routing table once it has peers.
    pub kad_refresh: Duration,
    /// Security protocols for TCP, most preferred first.
    pub security: Vec<SecurityProtocol>,
    /// Gossipsub topics joined at start; the first is the one `--stdin` publishes on.
    pub topics: Vec<String>,
    /// Largest envelope (payload plus at most `ENVELOPE_OVERHEAD` bytes) published or accepted.
    pub max_message_size: usize,
    /// Interval between pings to each connected peer.
    pub heartbeat: Duration,
    /// Most established connections at once (a peer normally has one), so never more peers than this.
    pub max_peers: u32,
    /// Most connections being set up at once, each way (a guard against handshake floods).
    pub max_pending_incoming: u32,
    pub max_pending_outgoing: u32,
    /// Most inbound connections in their handshake from one source address (an IPv4 address, an IPv6 /64).
    pub max_pending_per_ip: u32,
    /// Most established inbound connections from one source address.
    pub max_established_per_ip: u32,
    /// When a silent peer is disconnected and how dropped peers are redialled.
    pub liveness: LivenessPolicy,
    /// How long a caller-chosen message id is remembered: a publish repeating it returns the first result, and a
    /// receiver drops an envelope whose (origin, id) it delivered within this window.
    pub dedup_window: Duration,
    /// Publishes to one topic within this window travel as one gossip message (`None`: each on its own).
    pub batch_window: Option<Duration>,
    /// Longest a connection may take to be set up (connect, security, multiplexer), each way.
    pub dial_timeout: Duration,
    /// Longest an inbound connection may take from accept to upgraded (pnet, security, multiplexer); `None`: half of
    /// `dial_timeout` (see `inbound_handshake_timeout`).
    pub handshake_timeout: Option<Duration>,
    /// The private swarm's pre-shared key file, if the swarm is private.
    pub swarm_key: Option<PathBuf>,
    /// The CA public key (`ca.pub`) whose certificates admit members; admission is on when it is set.
    pub ca_cert: Option<PathBuf>,
    /// This node's membership certificate, required with `ca_cert`.
    pub cert: Option<PathBuf>,
    /// How long a connected peer has to show a valid certificate before it is disconnected and banned.
    pub admission_timeout: Duration,
    /// How long a refused peer (failed admission, graylisted gossip score) may not connect.
    pub ban_duration: Duration,
    /// When set, only these peers may connect.
    pub allow_peers: Option<Vec<PeerId>>,
    /// These peers may never connect.
    pub deny_peers: Vec<PeerId>,
    /// Peers on one IP address (other than loopback) beyond which gossipsub scores them down; 0 turns it off.
    pub gossip_ip_colocation_threshold: u32,
    /// Most gossipsub topics tracked per remote peer, and the most we join.
    pub max_topics: usize,
    /// Gossip messages accepted per second from one peer (bursts up to one second's worth); 0 is unlimited.
    pub peer_message_rate: u32,
    /// Most bytes of events kept for subscribers (each event's payload plus `EVENT_OVERHEAD`); past it the oldest
    /// are dropped and a subscriber that had not read them is told how many it missed.
    pub event_buffer_bytes: usize,
    /// What the node announces about itself to the swarm, and how records age.
    pub members: members::MembersConfig,
    /// The replicated map's limits and timers.
    pub state: state::StateConfig,
    /// Whether `/perf/1.0.0` is served, and its bounds.
    pub perf: perf::PerfConfig,
}

impl NodeConfig {
    /// The defaults, with the key at `data_dir/identity.key`.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        NodeConfig {
            key_path: data_dir.join("identity.key"),
            data_dir,
            listen: default_listen(),
            bootstrap: Vec::new(),
            mdns: true,
            kad_protocol: StreamProtocol::new(DEFAULT_KAD_PROTOCOL),
            kad_refresh: Duration::from_secs(300),
            security: vec![SecurityProtocol::Tls, SecurityProtocol::Noise],
            topics: vec![DEFAULT_TOPIC.to_owned()],
            max_message_size: 1 << 20,
            heartbeat: Duration::from_secs(10),
            max_peers: 128,
            max_pending_incoming: 64,
            max_pending_outgoing: 64,
            max_pending_per_ip: 8,
            max_established_per_ip: 16,
            liveness: LivenessPolicy::default(),
            dedup_window: Duration::from_secs(120),
            batch_window: None,
            dial_timeout: Duration::from_secs(10),
            handshake_timeout: None,
            swarm_key: None,
            ca_cert: None,
            cert: None,
            admission_timeout: Duration::from_secs(5),
            ban_duration: Duration::from_secs(600),
            allow_peers: None,
            deny_peers: Vec::new(),
            gossip_ip_colocation_threshold: 10,
            max_topics: 256,
            peer_message_rate: 2000,
            event_buffer_bytes: 64 << 20,
            members: members::MembersConfig::default(),
            state: state::StateConfig::default(),
            perf: perf::PerfConfig::default(),
        }
    }

    /// Whether peers must show a certificate from our CA to be members.
    pub fn admission_enabled(&self) -> bool {
        self.ca_cert.is_some()
    }

    /// How long an inbound connection has to finish its handshake: `--handshake-timeout`, else half of
    /// `--dial-timeout` (at most the longest `--handshake-timeout`). Shorter than our own dials' limit, so a silent socket holds
    /// a handshake slot for less time than an honest dialler is prepared to wait.
    pub fn inbound_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
            .unwrap_or_else(|| (self.dial_timeout / 2).min(*bounds::HANDSHAKE_TIMEOUT.end()))
    }

    /// The largest payload that fits `max_message_size` whatever the envelope's other fields hold.
    pub fn max_payload_size(&self) -> usize {
        self.max_message_size - ENVELOPE_OVERHEAD
    }

    /// Checks every field; the error names the setting and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::new("listen", "at least one listen address is required"));
        }
        for address in &self.listen {
            check_transport("listen", address)?;
        }
        for address in &self.bootstrap {
            check_transport("bootstrap", address)?;
        }
        if self.topics.is_empty() {
            return Err(ConfigError::new("topic", "at least one topic is required"));
        }
        for topic in &self.topics {
            check_topic(topic).map_err(|why| ConfigError::new("topic", why))?;
        }
        if self.security.is_empty() {
            return Err(ConfigError::new("security", "at least one of tls, noise is required"));
        }
        if self.security.len() == 2 && self.security[0] == self.security[1] {
            return Err(ConfigError::new("security", "a protocol is listed twice"));
        }
        bounds::check(self)?;
        self.members.validate(self.heartbeat)?;
        self.state.validate()?;
        if self.liveness.peer_timeout <= self.heartbeat {
            return Err(ConfigError::new(
                "peer-timeout",
                "must be longer than --heartbeat, or every peer would time out between two pings",
            ));
        }
        if self.liveness.reconnect_backoff_max < self.liveness.reconnect_backoff {
            return Err(ConfigError::new(
                "reconnect-backoff-max",
                "must be at least --reconnect-backoff",
            ));
        }
        if let Some(timeout) = self.handshake_timeout
            && timeout >= self.dial_timeout
        {
            return Err(ConfigError::new(
                "handshake-timeout",
                format!(
                    "must be shorter than --dial-timeout ({})",
                    humantime::format_duration(self.dial_timeout)
                ),
            ));
        }
        match (&self.ca_cert, &self.cert) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "cert",
                    "--ca-cert needs this node's certificate (--cert)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "ca-cert",
                    "--cert needs the CA's public key (--ca-cert)",
                ));
            }
            _ => {}
        }
        if self.max_topics < self.topics.len() {
            return Err(ConfigError::new(
                "max-topics",
                format!("is below the {} topics given with --topic", self.topics.len()),
            ));
        }
        let denied: HashSet<&PeerId> = self.deny_peers.iter().collect();
        if let Some(peer) = self.allow_peers.iter().flatten().find(|peer| denied.contains(peer)) {
            return Err(ConfigError::new(
                "deny-peer",
                format!("{peer} is on both the allow list and the deny list"),
            ));
        }
        Ok(())
    }
}

/// A setting whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --{setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            setting,
            reason: reason.into(),
        }
    }
}

/// `/ip4/0.0.0.0/tcp/4100` and `/ip4/0.0.0.0/udp/4100/quic-v1`.
pub fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/4100", "/ip4/0.0.0.0/udp/4100/quic-v1"]
        .iter()
        .map(|a| a.parse().expect("default listen addresses are valid"))
        .collect()
}

/// Addresses must name a transport this node has: TCP, or QUIC v1 over UDP.
fn check_transport(setting: &'static str, address: &Multiaddr) -> Result<(), ConfigError> {
    check_dialable(address).map_err(|reason| ConfigError::new(setting, reason))
}

/// The peer id of an address that is only `/p2p/<id>`: a peer to look up in the DHT rather than dial directly.
pub fn bare_peer_id(address: &Multiaddr) -> Option<PeerId> {
    let mut protocols = address.iter();
    match (protocols.next(), protocols.next()) {
        (Some(Protocol::P2p(peer)), None) => Some(peer),
        _ => None,
    }
}

/// Whether `address` names a transport this node speaks (TCP, or UDP with QUIC v1).
pub fn check_dialable(address: &Multiaddr) -> Result<(), String> {
    let mut tcp = false;
    let mut udp = false;
    let mut quic = false;
    for protocol in address.iter() {
        match protocol {
            Protocol::Tcp(_) => tcp = true,
            Protocol::Udp(_) => udp = true,
            Protocol::QuicV1 => quic = true,
            _ => {}
        }
    }
    if tcp || (udp && quic) {
        Ok(())
    } else {
        Err(format!(
            "{address} has no transport swarmnode speaks (…/tcp/PORT or …/udp/PORT/quic-v1)"
        ))
    }
}

/// Parses `tls,noise` (order = preference) into a list of protocols.
pub fn parse_security(list: &str) -> Result<Vec<SecurityProtocol>, String> {
    list.split(',')
        .map(|name| match name.trim().to_ascii_lowercase().as_str() {
            "tls" => Ok(SecurityProtocol::Tls),
            "noise" => Ok(SecurityProtocol::Noise),
            other => Err(format!(
                "unknown security protocol {other:?}: use tls, noise or both, e.g. tls,noise"
            )),
        })
        .collect()
}

/// Parses durations such as `500ms`, `10s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 500ms, 10s, 2m)"))
}

/// Parses `off` (or `0`) as `None`, anything else as a duration.
pub fn parse_optional_duration(text: &str) -> Result<Option<Duration>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let duration = parse_duration(text)?;
    Ok((!duration.is_zero()).then_some(duration))
}

/// Largest `--allow-file` or `--deny-file`: about 19 000 peer ids, one per line.
pub const MAX_PEER_LIST_FILE: usize = 1 << 20;

/// Parses a peer list: one peer id per line; blank lines and `#` comments (whole-line or trailing) are skipped. On
/// error, the 1-based line that is wrong and why.
pub fn parse_peer_list(text: &str) -> Result<Vec<PeerId>, (usize, String)> {
    let mut peers = Vec::new();
    let mut seen = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let peer = PeerId::from_str(entry).map_err(|e| (index + 1, format!("{entry:?} is not a peer id: {e}")))?;
        if seen.insert(peer) {
            peers.push(peer);
        }
    }
    Ok(peers)
}

/// Reads a peer list file (`--allow-file`, `--deny-file`): a regular file of at most `MAX_PEER_LIST_FILE` bytes.
pub fn load_peer_list(path: &std::path::Path) -> Result<Vec<PeerId>, String> {
    let text = files::read_text(path, "file", MAX_PEER_LIST_FILE).map_err(|e| e.to_string())?;
    parse_peer_list(&text).map_err(|(line, reason)| format!("{}, line {line}: {reason}", path.display()))
}

/// Parses sizes such as `1048576`, `512KiB`, `1MiB` (also `kb`/`mb` as binary multiples).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number =
        usize::from_str(digits).map_err(|_| format!("{text:?} is not a size (examples: 65536, 512KiB, 1MiB)"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        other => return Err(format!("unknown size unit {other:?} (use B, KiB or MiB)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig::with_data_dir(PathBuf::from("/tmp/swarmnode-test"))
    }

    #[test]
    fn defaults_are_valid_and_match_the_documented_values() {
        let config = config();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.key_path, PathBuf::from("/tmp/swarmnode-test/identity.key"));
        assert_eq!(config.heartbeat, Duration::from_secs(10));
        assert_eq!(config.max_message_size, 1 << 20);
        assert_eq!(config.event_buffer_bytes, 64 << 20);
        assert_eq!(config.kad_protocol.as_ref(), "/swarmnode/kad/1.0.0");
        assert_eq!(config.security, vec![SecurityProtocol::Tls, SecurityProtocol::Noise]);
        assert_eq!(config.topics, vec!["swarmnode".to_owned()]);
    }

    #[test]
    fn the_inbound_handshake_timeout_is_half_the_dial_timeout_unless_set() {
        let mut config = config();
        assert_eq!(config.inbound_handshake_timeout(), Duration::from_secs(5));
        config.dial_timeout = Duration::from_secs(2);
        assert_eq!(config.inbound_handshake_timeout(), Duration::from_secs(1));
        config.dial_timeout = Duration::from_secs(u64::MAX);
        assert_eq!(config.inbound_handshake_timeout(), *bounds::HANDSHAKE_TIMEOUT.end());
        config.handshake_timeout = Some(Duration::from_millis(300));
        assert_eq!(config.inbound_handshake_timeout(), Duration::from_millis(300));
        config.dial_timeout = Duration::from_secs(10);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_values_name_the_setting() {
        type Breakage = Box<dyn Fn(&mut NodeConfig)>;
        let cases: Vec<(&str, Breakage)> = vec![
            ("listen", Box::new(|c| c.listen.clear())),
            (
                "listen",
                Box::new(|c| c.listen = vec!["/ip4/127.0.0.1".parse().unwrap()]),
            ),
            (
                "bootstrap",
                Box::new(|c| c.bootstrap = vec!["/dns4/x/udp/1".parse().unwrap()]),
            ),
            ("topic", Box::new(|c| c.topics = vec![String::new()])),
            ("topic", Box::new(|c| c.topics = vec!["t".repeat(MAX_TOPIC_LEN + 1)])),
            ("security", Box::new(|c| c.security.clear())),
            ("security", Box::new(|c| c.security = vec![SecurityProtocol::Tls; 2])),
            ("max-message-size", Box::new(|c| c.max_message_size = 10)),
            (
                "event-buffer-bytes",
                Box::new(|c| c.event_buffer_bytes = MAX_EVENT_BUFFER_BYTES + 1),
            ),
            (
                "event-buffer-bytes",
                Box::new(|c| c.max_message_size = MAX_MESSAGE_SIZE),
            ),
            ("heartbeat", Box::new(|c| c.heartbeat = Duration::ZERO)),
            ("max-peers", Box::new(|c| c.max_peers = 0)),
            ("dial-timeout", Box::new(|c| c.dial_timeout = Duration::from_millis(5))),
            ("max-pending-incoming", Box::new(|c| c.max_pending_incoming = 0)),
            ("max-pending-outgoing", Box::new(|c| c.max_pending_outgoing = 0)),
            ("max-pending-per-ip", Box::new(|c| c.max_pending_per_ip = 0)),
            ("max-established-per-ip", Box::new(|c| c.max_established_per_ip = 0)),
            (
                "handshake-timeout",
                Box::new(|c| c.handshake_timeout = Some(Duration::from_millis(10))),
            ),
            (
                "handshake-timeout",
                Box::new(|c| c.handshake_timeout = Some(Duration::from_secs(u64::MAX))),
            ),
            (
                "handshake-timeout",
                Box::new(|c| c.handshake_timeout = Some(c.dial_timeout)),
            ),
            (
                "peer-timeout",
                Box::new(|c| c.liveness.peer_timeout = Duration::from_secs(10)),
            ),
            (
                "reconnect-backoff",
                Box::new(|c| c.liveness.reconnect_backoff = Duration::ZERO),
            ),
            (
                "reconnect-backoff-max",
                Box::new(|c| c.liveness.reconnect_backoff_max = Duration::from_millis(1)),
            ),
            (
                "forget-after",
                Box::new(|c| c.liveness.forget_after = Duration::from_secs(u64::MAX)),
            ),
            ("max-known-peers", Box::new(|c| c.liveness.max_known_peers = 0)),
            ("cert", Box::new(|c| c.ca_cert = Some("/ca.pub".into()))),
            ("ca-cert", Box::new(|c| c.cert = Some("/node.cert".into()))),
            (
                "admission-timeout",
                Box::new(|c| c.admission_timeout = Duration::from_millis(1)),
            ),
            ("ban-duration", Box::new(|c| c.ban_duration = Duration::ZERO)),
            ("max-topics", Box::new(|c| c.max_topics = 0)),
            (
                "deny-peer",
                Box::new(|c| {
                    let peer = PeerId::random();
                    c.allow_peers = Some(vec![peer]);
                    c.deny_peers = vec![peer];
                }),
            ),
        ];
        for (setting, break_it) in cases {
            let mut config = config();
            break_it(&mut config);
            assert_eq!(config.validate().unwrap_err().setting, setting);
        }
    }

    #[test]
    fn parsers_accept_documented_forms_and_explain_the_rest() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("examples"));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("3GB").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(
            parse_security("noise, TLS"),
            Ok(vec![SecurityProtocol::Noise, SecurityProtocol::Tls])
        );
        assert!(parse_security("ssl").unwrap_err().contains("unknown"));
    }

    #[test]
    fn peer_lists_skip_comments_and_name_the_bad_line() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let text = format!("# members\n{a}\n\n  {b}  # node-b\n{a}\n");
        assert_eq!(parse_peer_list(&text), Ok(vec![a, b]));
        let (line, reason) = parse_peer_list(&format!("{a}\n# ok\nnot-a-peer\n")).unwrap_err();
        assert_eq!(line, 3);
        assert!(reason.contains("not-a-peer"), "{reason}");
    }
}

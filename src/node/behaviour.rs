//! The one `NetworkBehaviour` of a swarmnode, composed by derive: the gates first (allow list, deny list, bans, the
//! per-address limits, then connection limits, so a refused connection never reaches another protocol), then mDNS,
//! Kademlia, gossipsub, identify and ping, each configured here from `NodeConfig`, our own protocols (the leave
//! announcement and, in a swarm with a CA, the admission exchange), and last the stream behaviour that carries
//! `/perf/1.0.0`. The standard protocols keep their standard ids and wire formats, so other implementations can join;
//! ours are versioned and optional for them (docs/protocol.md).
//!
//! Gossipsub runs with peer scoring (parameters below, documented in docs/security.md): invalid messages cost a peer
//! dearly, and a peer not yet admitted has an application score far below the graylist, so it gets nothing from us
//! and gossipsub ignores what it sends.

use std::time::Duration;

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use libp2p::{
    allow_block_list::{self, AllowedPeers, BlockedPeers},
    connection_limits, gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping,
    request_response::{self, ProtocolSupport, cbor},
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

use super::{error::NodeError, inbound_limits};
use crate::{
    config::NodeConfig,
    policy::inbound::InboundLimits,
    wire::admission::{ADMISSION_PROTOCOL, AdmissionRequest, AdmissionResponse, MAX_ADMISSION_MESSAGE},
    wire::leave::{LEAVE_PROTOCOL, LeaveAck, LeaveNotice, MAX_LEAVE_MESSAGE},
    wire::members::{MAX_EXCHANGE_BYTES, MAX_RECORD_BYTES, MEMBERS_PROTOCOL, MEMBERS_TOPIC, MembersExchange},
    wire::perf::PERF_PROTOCOL,
    wire::state::{MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE, STATE_TOPIC, SYNC_PROTOCOL, SyncRequest, SyncResponse},
};

/// What identify reports as our protocol family; informational only.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/swarmnode/1.0.0";
/// Bytes a gossipsub RPC adds around one message's data (signature, key, source, sequence number, topic,
/// framing). `max_transmit_size` is the message limit plus this, so a message of the full size always fits.
pub const GOSSIP_RPC_OVERHEAD: usize = 4096;
/// Connections kept to one peer at most: two, so a simultaneous dial from both sides is not refused.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// How long a node shutting down waits for its peers to acknowledge its leave notice. Short, because shutdown must
/// stay quick (SIGTERM to exit within 2 s); on loopback or a LAN an ack takes a millisecond or two.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long to wait for a peer's view in the members exchange (up to 4 MiB).
pub const MEMBERS_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a sync response (up to 8 MiB).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Our internal gossipsub topics, joined by every node and never listed among its topics.
pub const INTERNAL_TOPICS: [&str; 2] = [MEMBERS_TOPIC, STATE_TOPIC];

/// Scores below this: gossipsub sends the peer no gossip (IHAVE) and takes none from it.
pub const GOSSIP_THRESHOLD: f64 = -10.0;
/// Scores below this: our own messages are not flood-published to the peer.
pub const PUBLISH_THRESHOLD: f64 = -50.0;
/// Scores below this: gossipsub ignores everything the peer sends, and we disconnect and ban it.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Weight of an invalid message (bad signature, undecodable, forged origin), applied to the square of the count:
/// three within a few seconds take an otherwise neutral peer past the graylist.
pub const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
/// The application score of a connected peer that has not shown a valid certificate yet: far below the graylist.
pub const UNADMITTED_SCORE: f64 = -1_000_000.0;
/// Weight of the IP-colocation penalty, applied to the square of the peers beyond the threshold on one address.
pub const IP_COLOCATION_WEIGHT: f64 = -5.0;
/// How long to wait for a peer's answer to our admission request.
pub const ADMISSION_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Gossipsub with our subscription filter (a bound on the topics tracked per peer).
pub type Gossipsub = gossipsub::Behaviour<
    gossipsub::IdentityTransform,
    gossipsub::MaxCountSubscriptionFilter<gossipsub::AllowAllSubscriptionFilter>,
>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Present only with `--allow-peer`/`--allow-file`: then nobody else may connect.
    pub allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    /// The operator's deny list (`--deny-peer`/`--deny-file`), for as long as the node runs.
    pub deny: allow_block_list::Behaviour<BlockedPeers>,
    /// Peers banned for a while (a failed admission, a graylisted score); the event loop lifts each ban.
    pub bans: allow_block_list::Behaviour<BlockedPeers>,
    /// Inbound connections per source address (`--max-pending-per-ip`, `--max-established-per-ip`).
    pub inbound: inbound_limits::Behaviour,
    pub limits: connection_limits::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: Gossipsub,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub leave: cbor::Behaviour<LeaveNotice, LeaveAck>,
    /// The view exchange on every new connection.
    pub members: cbor::Behaviour<MembersExchange, MembersExchange>,
    /// Anti-entropy of the replicated map.
    pub sync: cbor::Behaviour<SyncRequest, SyncResponse>,
    /// Present only in a swarm with a CA (`--ca-cert`).
    pub admission: Toggle<cbor::Behaviour<AdmissionRequest, AdmissionResponse>>,
    /// Streams of protocols served outside the loop: `/perf/1.0.0` (`perf.rs`, `perf_server.rs`).
    pub stream: libp2p_stream::Behaviour,
}

/// Whether `topic` is the internal members topic.
pub fn is_members_topic(topic: &gossipsub::TopicHash) -> bool {
    topic.as_str() == MEMBERS_TOPIC
}

/// Whether `topic` is the internal state topic.
pub fn is_state_topic(topic: &gossipsub::TopicHash) -> bool {
    topic.as_str() == STATE_TOPIC
}

/// Whether `topic` is one of ours, which user-facing lists leave out.
pub fn is_internal_topic(topic: &gossipsub::TopicHash) -> bool {
    INTERNAL_TOPICS.contains(&topic.as_str())
}

/// Our agent version, as identify reports it.
pub fn agent_version() -> String {
    format!("swarmnode/{}", env!("CARGO_PKG_VERSION"))
}

/// The protocols a node with `config` speaks (what identify advertises), for status reports.
pub fn protocols(config: &NodeConfig) -> Vec<String> {
    let mut protocols = vec![
        "/ipfs/id/1.0.0".to_owned(),
        "/ipfs/id/push/1.0.0".to_owned(),
        "/ipfs/ping/1.0.0".to_owned(),
        config.kad_protocol.to_string(),
        "/meshsub/1.3.0".to_owned(),
        "/meshsub/1.2.0".to_owned(),
        "/meshsub/1.1.0".to_owned(),
        "/meshsub/1.0.0".to_owned(),
        LEAVE_PROTOCOL.to_string(),
        MEMBERS_PROTOCOL.to_string(),
        SYNC_PROTOCOL.to_string(),
    ];
    if config.admission_enabled() {
        protocols.push(ADMISSION_PROTOCOL.to_string());
    }
    if config.perf.serve {
        protocols.push(PERF_PROTOCOL.to_string());
    }
    protocols.sort();
    protocols
}

/// The gossipsub message id: SHA-256 of the message's data (the envelope bytes). Content-addressed, so the same
/// envelope is recognised as one message whoever relays it, and any implementation can compute it
/// (docs/protocol.md).
pub fn message_id(data: &[u8]) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&Sha256::digest(data))
}

/// Peer scoring for the whole node. Positive contributions are capped low (`topic_score_cap`), so a peer cannot bank
/// good behaviour to spend on a burst of invalid messages; the IP-colocation penalty is configurable because honest
/// nodes share one address on loopback, in a NAT or in a container host, and loopback itself is exempt. A
/// disconnected peer's score is kept as long as the peer table keeps the peer (`--forget-after`), not gossipsub's
/// hour, so per-peer memory follows the peers known now (a peer that misbehaved badly enough is banned meanwhile).
pub fn peer_score_params(config: &NodeConfig) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let ip_colocation_threshold = config.gossip_ip_colocation_threshold;
    let params = gossipsub::PeerScoreParams {
        topic_score_cap: 50.0,
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: if ip_colocation_threshold == 0 {
            0.0
        } else {
            IP_COLOCATION_WEIGHT
        },
        ip_colocation_factor_threshold: f64::from(ip_colocation_threshold.max(1)),
        ip_colocation_factor_whitelist: HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        retain_score: config.liveness.forget_after,
        ..gossipsub::PeerScoreParams::default()
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..gossipsub::PeerScoreThresholds::default()
    };
    (params, thresholds)
}

/// Scoring of one topic. Mesh-delivery deficits (P3, P3b) are off: on a quiet topic they punish honest peers for
/// the silence of publishers. What counts is time in the mesh and first deliveries (small, capped rewards) and
/// invalid messages (a heavy, slowly decaying penalty).
pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        // Per decay interval (1 s): about a minute to halve.
        invalid_message_deliveries_decay: 0.99,
        ..gossipsub::TopicScoreParams::default()
    }
}

impl Behaviour {
    /// The behaviour `config` describes; gossipsub's own metrics are registered in `registry`.
    pub fn new(keypair: &Keypair, config: &NodeConfig, registry: &mut Registry) -> anyhow::Result<Self> {
        let peer_id = keypair.public().to_peer_id();

        let allow = config.allow_peers.as_ref().map(|peers| {
            let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
            for peer in peers {
                allow.allow_peer(*peer);
            }
            allow
        });
        let mut deny = allow_block_list::Behaviour::<BlockedPeers>::default();
        for peer in &config.deny_peers {
            deny.block_peer(*peer);
        }

        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_peers))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(config.max_pending_incoming))
            .with_max_pending_outgoing(Some(config.max_pending_outgoing));

        let mdns = if config.mdns {
            Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?)
        } else {
            None
        };

        let mut kad_config = kad::Config::new(config.kad_protocol.clone());
        kad_config.set_periodic_bootstrap_interval(Some(config.kad_refresh));
        if config.admission_enabled() {
            // Only admitted members enter the routing table: the event loop inserts them itself.
            kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
        }
        let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Server mode on purpose: without it Kademlia waits for a confirmed external address, which nodes on a LAN
        // or loopback never get, and would then refuse to answer other peers' queries.
        kad.set_mode(Some(kad::Mode::Server));

        let gossipsub_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .message_id_fn(|message: &gossipsub::Message| message_id(&message.data))
            .max_transmit_size(
                config
                    .max_message_size
                    .max(MAX_RECORD_BYTES)
                    .max(config.state.max_delta_bytes())
                    + GOSSIP_RPC_OVERHEAD,
            )
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub configuration: {e}"))?;
        let subscription_filter = gossipsub::MaxCountSubscriptionFilter {
            filter: gossipsub::AllowAllSubscriptionFilter {},
            // Our internal topics come on top of the user topics.
            max_subscribed_topics: config.max_topics + INTERNAL_TOPICS.len(),
            max_subscriptions_per_request: config.max_topics + INTERNAL_TOPICS.len(),
        };
        let mut gossipsub = Gossipsub::new_with_subscription_filter(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            gossipsub_config,
            subscription_filter,
        )
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
        let (score_params, thresholds) = peer_score_params(config);
        let mut metrics_config = gossipsub::MetricsConfig::default();
        metrics_config.buckets_using_scoring_thresholds(&thresholds);
        gossipsub
            .with_peer_score(score_params, thresholds)
            .map_err(|e| anyhow::anyhow!("gossipsub scoring: {e}"))?;
        let gossipsub = gossipsub.with_metrics(registry.sub_registry_with_prefix("gossipsub"), metrics_config);

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
                .with_agent_version(agent_version())
                .with_push_listen_addr_updates(true),
        );

        let ping = ping::Behaviour::new(ping::Config::new().with_interval(config.heartbeat));

        let leave = cbor::Behaviour::with_codec(
            cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_LEAVE_MESSAGE)
                .set_response_size_maximum(MAX_LEAVE_MESSAGE),
            [(LEAVE_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(LEAVE_TIMEOUT),
        );

        let members = cbor::Behaviour::with_codec(
            cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_EXCHANGE_BYTES as u64)
                .set_response_size_maximum(MAX_EXCHANGE_BYTES as u64),
            [(MEMBERS_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(MEMBERS_EXCHANGE_TIMEOUT),
        );

        let sync = cbor::Behaviour::with_codec(
            cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_SYNC_REQUEST as u64)
                .set_response_size_maximum(MAX_SYNC_RESPONSE as u64),
            [(SYNC_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(SYNC_TIMEOUT),
        );

        let admission = config.admission_enabled().then(|| {
            cbor::Behaviour::with_codec(
                cbor::codec::Codec::default()
                    .set_request_size_maximum(MAX_ADMISSION_MESSAGE)
                    .set_response_size_maximum(MAX_ADMISSION_MESSAGE),
                [(ADMISSION_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(ADMISSION_REQUEST_TIMEOUT),
            )
        });

        Ok(Behaviour {
            allow: allow.into(),
            deny,
            bans: allow_block_list::Behaviour::default(),
            inbound: inbound_limits::Behaviour::new(InboundLimits {
                max_pending_per_ip: config.max_pending_per_ip,
                max_established_per_ip: config.max_established_per_ip,
            }),
            limits: connection_limits::Behaviour::new(limits),
            mdns: mdns.into(),
            kad,
            gossipsub,
            identify,
            ping,
            leave,
            members,
            sync,
            admission: admission.into(),
            stream: libp2p_stream::Behaviour::new(),
        })
    }

    /// Joins `topic` with our scoring parameters; false when already joined. At most `max_topics` user topics (the
    /// members topic is not one of them).
    pub fn join(&mut self, topic: &str, max_topics: usize) -> Result<bool, NodeError> {
        let name = topic;
        let topic = gossipsub::IdentTopic::new(name);
        let joined = self.gossipsub.topics().filter(|t| !is_internal_topic(t)).count();
        if joined >= max_topics && !self.gossipsub.topics().any(|t| *t == topic.hash()) {
            return Err(NodeError::TooManyTopics { limit: max_topics });
        }
        self.gossipsub
            .set_topic_params(topic.clone(), topic_score_params())
            .map_err(|reason| NodeError::Gossip {
                reason: format!("cannot score topic {name:?}: {reason}"),
            })?;
        self.gossipsub
            .subscribe(&topic)
            .map_err(|e| NodeError::from_subscription(e, name, max_topics))
    }

    /// Joins our internal topics: member records and state deltas.
    pub fn join_internal_topics(&mut self) -> Result<(), NodeError> {
        for name in INTERNAL_TOPICS {
            let topic = gossipsub::IdentTopic::new(name);
            self.gossipsub
                .set_topic_params(topic.clone(), topic_score_params())
                .map_err(|reason| NodeError::Gossip {
                    reason: format!("cannot score the internal topic {name}: {reason}"),
                })?;
            self.gossipsub.subscribe(&topic).map_err(|e| NodeError::Gossip {
                reason: format!("cannot join the internal topic {name}: {e}"),
            })?;
        }
        Ok(())
    }

    /// Peers currently in the Kademlia routing table.
    pub fn routing_table_peers(&mut self) -> Vec<libp2p::PeerId> {
        self.kad
            .kbuckets()
            .flat_map(|bucket| {
                bucket
                    .iter()
                    .map(|entry| *entry.node.key.preimage())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

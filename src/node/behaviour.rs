//! The one `NetworkBehaviour` of a swarmnode, composed by derive: connection limits first (so a refused connection
//! never reaches another protocol), then mDNS, Kademlia, gossipsub, identify and ping, each configured here from
//! `NodeConfig`, and our own leave announcement. The standard protocols keep their standard ids and wire formats, so
//! other implementations can join; ours are versioned and optional for them (docs/protocol.md).

use std::time::Duration;

use libp2p::{
    connection_limits, gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping,
    request_response::{self, ProtocolSupport, cbor},
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use sha2::{Digest, Sha256};

use crate::{
    config::NodeConfig,
    leave::{LEAVE_PROTOCOL, LeaveAck, LeaveNotice, MAX_LEAVE_MESSAGE},
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

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub leave: cbor::Behaviour<LeaveNotice, LeaveAck>,
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
    ];
    protocols.sort();
    protocols
}

/// The gossipsub message id: SHA-256 of the message's data (the envelope bytes). Content-addressed, so the same
/// envelope is recognised as one message whoever relays it, and any implementation can compute it
/// (docs/protocol.md).
pub fn message_id(data: &[u8]) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&Sha256::digest(data))
}

impl Behaviour {
    pub fn new(keypair: &Keypair, config: &NodeConfig) -> anyhow::Result<Self> {
        let peer_id = keypair.public().to_peer_id();

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
        let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Server mode on purpose: without it Kademlia waits for a confirmed external address, which nodes on a LAN
        // or loopback never get, and would then refuse to answer other peers' queries.
        kad.set_mode(Some(kad::Mode::Server));

        let gossipsub_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .message_id_fn(|message: &gossipsub::Message| message_id(&message.data))
            .max_transmit_size(config.max_message_size + GOSSIP_RPC_OVERHEAD)
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub configuration: {e}"))?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            gossipsub_config,
        )
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;

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

        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            mdns: mdns.into(),
            kad,
            gossipsub,
            identify,
            ping,
            leave,
        })
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

//! The one `NetworkBehaviour` of a swarmnode, composed by derive: connection limits first (so a refused connection
//! never reaches another protocol), then mDNS, Kademlia, gossipsub, identify and ping, each configured here from
//! `NodeConfig`. Only standard libp2p protocols and wire formats are used, so other implementations can join.

use libp2p::{
    connection_limits, gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use sha2::{Digest, Sha256};

use crate::config::NodeConfig;

/// What identify reports as our protocol family; informational only.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/swarmnode/1.0.0";
/// Bytes a gossipsub RPC adds around one message's data (signature, key, source, sequence number, topic,
/// framing). `max_transmit_size` is the message limit plus this, so a message of the full size always fits.
pub const GOSSIP_RPC_OVERHEAD: usize = 4096;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

/// Our agent version, as identify reports it.
pub fn agent_version() -> String {
    format!("swarmnode/{}", env!("CARGO_PKG_VERSION"))
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
            .with_max_established_per_peer(Some(2))
            .with_max_pending_incoming(Some(64))
            .with_max_pending_outgoing(Some(64));

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

        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            mdns: mdns.into(),
            kad,
            gossipsub,
            identify,
            ping,
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

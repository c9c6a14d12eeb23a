//! The read-only views of a node that the CLI and the API show (status, peers, topics, diagnosis), the publish
//! request and result, and a perf run's report. Serialised as the API's JSON, and read back from it by the CLI
//! client: the same types on both sides (a test holds the round trip).

use std::collections::BTreeMap;

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::event::{Direction, DiscoverySource, display, display_all, display_option, parse, parse_all, parse_option};
use crate::policy::liveness::PeerState;

/// A publish request: what the caller controls about the envelope.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub topic: String,
    pub payload: Bytes,
    /// `None` means `application/octet-stream`.
    pub content_type: Option<String>,
    /// The envelope id; `None` means a random one.
    pub id: Option<String>,
}

/// What a successful publish produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Published {
    /// The envelope id receivers see.
    pub id: String,
    /// The gossipsub message id (hex of SHA-256 of the envelope bytes).
    pub message_id: String,
    /// Connected peers subscribed to the topic when it was sent (gossipsub floods our own messages to all of them).
    pub recipients: usize,
    /// True when the caller's id was already published within the dedup window: this is that first result, and
    /// nothing was sent again.
    pub duplicate: bool,
}

/// What the node looks like right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    #[serde(serialize_with = "display", deserialize_with = "parse")]
    #[schema(value_type = String)]
    pub peer_id: PeerId,
    pub agent: String,
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub listen_addresses: Vec<Multiaddr>,
    /// Addresses other peers reported seeing us at (identify), confirmed or not.
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub external_addresses: Vec<Multiaddr>,
    /// The protocols this node speaks.
    pub protocols: Vec<String>,
    pub uptime_ms: u64,
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub connected_peers: Vec<PeerId>,
    /// Peers in the Kademlia routing table.
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub routing_table: Vec<PeerId>,
    /// Our topics and, for each, the peers known to be subscribed.
    pub topics: BTreeMap<String, usize>,
    /// Envelopes rejected in validation since start, by reason.
    pub rejected_messages: BTreeMap<String, u64>,
    /// Envelopes dropped since start because their publisher's id was already delivered within the dedup window.
    pub duplicate_ids: u64,
    /// What the replicated state holds.
    pub state: super::StateSummary,
}

/// One row of the peer table, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    #[serde(serialize_with = "display", deserialize_with = "parse")]
    #[schema(value_type = String)]
    pub peer: PeerId,
    pub state: PeerState,
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<Multiaddr>,
    /// Who opened the first current connection; null when not connected.
    #[schema(required)]
    pub direction: Option<Direction>,
    #[schema(required)]
    pub rtt_ms: Option<f64>,
    #[schema(required)]
    pub smoothed_rtt_ms: Option<f64>,
    /// When we last heard from the peer (unix ms).
    pub last_seen: u64,
    /// The reconnect attempt (0 outside reconnecting) and the time to the next redial.
    pub attempt: u32,
    #[schema(required)]
    pub next_retry_ms: Option<u64>,
    /// How the peer came to our attention, first source first.
    pub sources: Vec<DiscoverySource>,
    /// Why the peer was removed or left, while it is.
    #[schema(required)]
    pub reason: Option<String>,
    pub bootstrap: bool,
    /// With a CA: whether the peer showed a valid certificate (null without a CA).
    #[schema(required)]
    pub admitted: Option<bool>,
    /// The name in its certificate, when admitted with one.
    #[schema(required)]
    pub member_name: Option<String>,
    /// Its gossipsub score, while connected.
    #[schema(required)]
    pub gossip_score: Option<f64>,
    /// What it reported through identify, while connected: its agent (`swarmnode/0.1.0`, `py-libp2p/…`) and the
    /// protocols it speaks.
    #[schema(required)]
    pub agent_version: Option<String>,
    pub protocols: Vec<String>,
}

/// What one perf run (`/perf/1.0.0`) measured. Upload time runs from the header's first byte to our write side's
/// close; download time from that close to the last byte, so it includes the time to the first byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerfReport {
    /// The peer measured against.
    #[serde(serialize_with = "display", deserialize_with = "parse")]
    #[schema(value_type = String)]
    pub peer: PeerId,
    pub upload_bytes: u64,
    pub download_bytes: u64,
    pub upload_seconds: f64,
    pub download_seconds: f64,
    /// From the end of the upload to the first byte downloaded; null when nothing was asked for.
    #[schema(required)]
    pub time_to_first_byte_ms: Option<f64>,
    pub upload_bits_per_second: f64,
    pub download_bits_per_second: f64,
}

/// One of our topics: the peers gossipsub keeps in its mesh for it, and every peer known to be subscribed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopicInfo {
    pub topic: String,
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub mesh_peers: Vec<PeerId>,
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub subscribed_peers: Vec<PeerId>,
}

/// What an operator needs when peers do not find each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Diagnosis {
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub listen_addresses: Vec<Multiaddr>,
    #[serde(serialize_with = "display_all", deserialize_with = "parse_all")]
    #[schema(value_type = Vec<String>)]
    pub external_addresses: Vec<Multiaddr>,
    pub mdns_enabled: bool,
    /// This machine's network interfaces, and whether mDNS runs on each.
    pub interfaces: Vec<InterfaceStatus>,
    pub routing_table_size: usize,
    /// Configured bootstrap addresses and whether each one's peer is connected now.
    pub bootstrap: Vec<BootstrapStatus>,
    /// Gossipsub mesh size per topic of ours.
    pub mesh_sizes: BTreeMap<String, usize>,
    pub connections: ConnectionCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InterfaceStatus {
    pub name: String,
    pub addresses: Vec<String>,
    /// mDNS (when on) queries and answers on every non-loopback IPv4 address.
    pub mdns: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BootstrapStatus {
    #[serde(serialize_with = "display", deserialize_with = "parse")]
    #[schema(value_type = String)]
    pub address: Multiaddr,
    /// The peer id, when the address carried one or a connection taught it.
    #[serde(serialize_with = "display_option", deserialize_with = "parse_option")]
    #[schema(value_type = Option<String>, required)]
    pub peer: Option<PeerId>,
    pub connected: bool,
}

/// Connections now against the configured limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionCounts {
    pub established_incoming: u32,
    pub established_outgoing: u32,
    pub pending_incoming: u32,
    pub pending_outgoing: u32,
    pub connected_peers: usize,
    pub max_peers: u32,
    pub max_pending_incoming: u32,
    pub max_pending_outgoing: u32,
    pub max_per_peer: u32,
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;

    /// What the API serialises, the client reads back as the same value.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: T) {
        let json = serde_json::to_string(&value).unwrap();
        let read: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(read, value, "{json}");
    }

    fn address(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn every_view_reads_back_as_it_was_written() {
        let peer = PeerId::random();
        round_trip(NodeStatus {
            peer_id: peer,
            agent: "swarmnode/0.1.0".into(),
            listen_addresses: vec![address(1), "/ip4/127.0.0.1/udp/2/quic-v1".parse().unwrap()],
            external_addresses: vec![],
            protocols: vec!["/ipfs/ping/1.0.0".into()],
            uptime_ms: 5,
            connected_peers: vec![PeerId::random()],
            routing_table: vec![PeerId::random(), PeerId::random()],
            topics: BTreeMap::from([("chat".to_owned(), 2)]),
            rejected_messages: BTreeMap::from([("bad_origin".to_owned(), 3)]),
            duplicate_ids: 1,
            state: crate::node::StateSummary {
                keys: 4,
                tombstones: 1,
                bytes: 500,
                writers: 2,
            },
        });
        round_trip(vec![PeerInfo {
            peer,
            state: PeerState::Reconnecting,
            addresses: vec![address(3)],
            direction: Some(Direction::Outbound),
            rtt_ms: Some(1.25),
            smoothed_rtt_ms: None,
            last_seen: 1_700_000_000_000,
            attempt: 2,
            next_retry_ms: Some(400),
            sources: vec![DiscoverySource::Mdns, DiscoverySource::Kademlia],
            reason: Some("timeout".into()),
            bootstrap: true,
            admitted: Some(true),
            member_name: Some("alice".into()),
            gossip_score: Some(-0.5),
            agent_version: Some("py-libp2p/0.8.1".into()),
            protocols: vec!["/meshsub/1.1.0".into()],
        }]);
        round_trip(TopicInfo {
            topic: "chat".into(),
            mesh_peers: vec![peer],
            subscribed_peers: vec![peer, PeerId::random()],
        });
        round_trip(Diagnosis {
            listen_addresses: vec![address(4)],
            external_addresses: vec![address(5)],
            mdns_enabled: true,
            interfaces: vec![InterfaceStatus {
                name: "eth0".into(),
                addresses: vec!["10.0.0.2".into()],
                mdns: true,
            }],
            routing_table_size: 7,
            bootstrap: vec![
                BootstrapStatus {
                    address: address(6),
                    peer: Some(peer),
                    connected: true,
                },
                BootstrapStatus {
                    address: "/dns4/bootstrap/tcp/4100".parse().unwrap(),
                    peer: None,
                    connected: false,
                },
            ],
            mesh_sizes: BTreeMap::from([("chat".to_owned(), 1)]),
            connections: ConnectionCounts {
                established_incoming: 1,
                established_outgoing: 2,
                pending_incoming: 0,
                pending_outgoing: 1,
                connected_peers: 3,
                max_peers: 128,
                max_pending_incoming: 64,
                max_pending_outgoing: 64,
                max_per_peer: 2,
            },
        });
        round_trip(Published {
            id: "req-1".into(),
            message_id: "ab".repeat(32),
            recipients: 2,
            duplicate: false,
        });
        round_trip(PerfReport {
            peer,
            upload_bytes: 8 << 20,
            download_bytes: 0,
            upload_seconds: 0.25,
            download_seconds: 0.0,
            time_to_first_byte_ms: None,
            upload_bits_per_second: 268_435_456.0,
            download_bits_per_second: 0.0,
        });
    }

    #[test]
    fn a_peer_id_that_is_not_one_is_refused_naming_it() {
        let json = r#"{"topic": "t", "mesh_peers": ["nonsense"], "subscribed_peers": []}"#;
        let error = serde_json::from_str::<TopicInfo>(json).unwrap_err().to_string();
        assert!(error.contains("\"nonsense\""), "{error}");
    }
}

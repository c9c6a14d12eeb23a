//! The node's boundary: `NodeHandle` sends commands into the swarm task and awaits one-shot replies, and `Event` is
//! what the task reports on its broadcast channel. The CLI, the tests (and later the HTTP API) are all clients of
//! exactly this surface, so nothing outside the event loop ever touches the `Swarm`.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use serde::{Serialize, Serializer, ser::SerializeMap};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{metrics::Metrics, peers::PeerState, time::now_unix_ms};

/// Something that happened on the node, stamped with when it happened (unix ms).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub ts: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn now(kind: EventKind) -> Self {
        Event {
            ts: now_unix_ms(),
            kind,
        }
    }
}

/// How a peer came to our attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverySource {
    Mdns,
    Kademlia,
    Identify,
    Bootstrap,
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// The events of `swarmnode run`'s stdout, one JSON object per line, tagged by `"event"`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The node accepts connections on `address`.
    Listening {
        #[serde(serialize_with = "display")]
        address: Multiaddr,
    },
    /// A peer and its addresses became known through `source`.
    Discovered {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        source: DiscoverySource,
        #[serde(serialize_with = "display_all")]
        addresses: Vec<Multiaddr>,
    },
    /// The first connection to `peer` is up.
    Connected {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        #[serde(serialize_with = "display")]
        address: Multiaddr,
        direction: Direction,
    },
    /// A connection was refused before it was up (a connection limit, the allow or deny list, a ban); `peer` and
    /// `address` are null when not known yet.
    ConnectionRefused {
        direction: Direction,
        #[serde(serialize_with = "display_option")]
        peer: Option<PeerId>,
        #[serde(serialize_with = "display_option")]
        address: Option<Multiaddr>,
        reason: String,
    },
    /// The last connection to `peer` closed.
    Disconnected {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        cause: String,
    },
    /// `peer` joined `topic`.
    Subscribed {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        topic: String,
    },
    /// A valid envelope arrived on `topic` (delivered once per message id).
    Message {
        topic: String,
        #[serde(serialize_with = "display")]
        from: PeerId,
        id: String,
        content_type: String,
        sent_at: u64,
        #[serde(flatten)]
        data: MessageData,
    },
    /// The liveness policy moved `peer` from one state to another.
    PeerState {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        from: PeerState,
        to: PeerState,
        reason: &'static str,
        /// The reconnect attempt (0 outside reconnecting).
        attempt: u32,
        /// Milliseconds until the next redial, when one is scheduled.
        next_retry_ms: Option<u64>,
    },
    /// A ping to `peer` came back after `rtt_ms`.
    Ping {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        rtt_ms: f64,
    },
    /// `peer` showed a valid membership certificate (named `name`, valid until `valid_until`, unix seconds).
    PeerAdmitted {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        name: Option<String>,
        valid_until: u64,
    },
    /// Admission failed between us and `peer`: `by` says who refused whom (`us`: its certificate; `peer`: ours).
    PeerRefused {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        by: RefusedBy,
        reason: String,
    },
    /// `peer` is disconnected and may not connect for `duration_ms` (a failed admission, a graylisted score).
    PeerBanned {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        reason: String,
        duration_ms: u64,
    },
}

/// Which side of an admission refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedBy {
    Us,
    Peer,
}

impl EventKind {
    /// Every event name, as the `"event"` field and the API's `?types=` filter spell them (`lagged` is the stream's
    /// own notice that a reader fell behind).
    pub const NAMES: [&'static str; 13] = [
        "listening",
        "discovered",
        "connected",
        "connection_refused",
        "disconnected",
        "subscribed",
        "message",
        "peer_state",
        "ping",
        "peer_admitted",
        "peer_refused",
        "peer_banned",
        "lagged",
    ];

    /// This event's name (its `"event"` field).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Listening { .. } => "listening",
            EventKind::Discovered { .. } => "discovered",
            EventKind::Connected { .. } => "connected",
            EventKind::ConnectionRefused { .. } => "connection_refused",
            EventKind::Disconnected { .. } => "disconnected",
            EventKind::Subscribed { .. } => "subscribed",
            EventKind::Message { .. } => "message",
            EventKind::PeerState { .. } => "peer_state",
            EventKind::Ping { .. } => "ping",
            EventKind::PeerAdmitted { .. } => "peer_admitted",
            EventKind::PeerRefused { .. } => "peer_refused",
            EventKind::PeerBanned { .. } => "peer_banned",
        }
    }

    /// The topic the event is about, for events that have one.
    pub fn topic(&self) -> Option<&str> {
        match self {
            EventKind::Message { topic, .. } | EventKind::Subscribed { topic, .. } => Some(topic),
            _ => None,
        }
    }
}

/// A message's payload. In JSON it is `"data"`: the text itself when the bytes are valid UTF-8, else base64 with
/// `"encoding": "base64"` beside it, so consumers never guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageData(pub Bytes);

impl Serialize for MessageData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("data", text)?;
                map.end()
            }
            Err(_) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("data", &base64::engine::general_purpose::STANDARD.encode(&self.0))?;
                map.serialize_entry("encoding", "base64")?;
                map.end()
            }
        }
    }
}

fn display<T: std::fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn display_option<T: std::fmt::Display, S: Serializer>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

fn display_all<T: std::fmt::Display, S: Serializer>(values: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(ToString::to_string))
}

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Why a publish was refused. Nothing was sent in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("payload is {size} bytes; the largest this node publishes is {limit} bytes (--max-message-size)")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(String),
    #[error("no connected peer is subscribed to topic {0:?} yet")]
    NoPeers(String),
    #[error("gossipsub refused the message: {0}")]
    Gossip(String),
    #[error("the node has stopped")]
    NodeStopped,
}

/// What the node looks like right now.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    #[serde(serialize_with = "display")]
    pub peer_id: PeerId,
    pub agent: String,
    #[serde(serialize_with = "display_all")]
    pub listen_addresses: Vec<Multiaddr>,
    /// Addresses other peers reported seeing us at (identify), confirmed or not.
    #[serde(serialize_with = "display_all")]
    pub external_addresses: Vec<Multiaddr>,
    /// The protocols this node speaks.
    pub protocols: Vec<String>,
    pub uptime_ms: u64,
    #[serde(serialize_with = "display_all")]
    pub connected_peers: Vec<PeerId>,
    /// Peers in the Kademlia routing table.
    #[serde(serialize_with = "display_all")]
    pub routing_table: Vec<PeerId>,
    /// Our topics and, for each, the peers known to be subscribed.
    pub topics: BTreeMap<String, usize>,
    /// Envelopes rejected in validation since start, by reason.
    pub rejected_messages: BTreeMap<&'static str, u64>,
    /// Envelopes dropped since start because their publisher's id was already delivered within the dedup window.
    pub duplicate_ids: u64,
}

/// One row of the peer table, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    #[serde(serialize_with = "display")]
    pub peer: PeerId,
    pub state: PeerState,
    #[serde(serialize_with = "display_all")]
    pub addresses: Vec<Multiaddr>,
    /// Who opened the first current connection; null when not connected.
    pub direction: Option<Direction>,
    pub rtt_ms: Option<f64>,
    pub smoothed_rtt_ms: Option<f64>,
    /// When we last heard from the peer (unix ms).
    pub last_seen: u64,
    /// The reconnect attempt (0 outside reconnecting) and the time to the next redial.
    pub attempt: u32,
    pub next_retry_ms: Option<u64>,
    /// How the peer came to our attention, first source first.
    pub sources: Vec<DiscoverySource>,
    /// Why the peer was removed or left, while it is.
    pub reason: Option<&'static str>,
    pub bootstrap: bool,
    /// With a CA: whether the peer showed a valid certificate (null without a CA).
    pub admitted: Option<bool>,
    /// The name in its certificate, when admitted with one.
    pub member_name: Option<String>,
    /// Its gossipsub score, while connected.
    pub gossip_score: Option<f64>,
    /// What it reported through identify, while connected: its agent (`swarmnode/0.1.0`, `py-libp2p/…`) and the
    /// protocols it speaks.
    pub agent_version: Option<String>,
    pub protocols: Vec<String>,
}

/// One of our topics: the peers gossipsub keeps in its mesh for it, and every peer known to be subscribed.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub topic: String,
    #[serde(serialize_with = "display_all")]
    pub mesh_peers: Vec<PeerId>,
    #[serde(serialize_with = "display_all")]
    pub subscribed_peers: Vec<PeerId>,
}

/// What an operator needs when peers do not find each other.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    #[serde(serialize_with = "display_all")]
    pub listen_addresses: Vec<Multiaddr>,
    #[serde(serialize_with = "display_all")]
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

#[derive(Debug, Clone, Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub addresses: Vec<String>,
    /// mDNS (when on) queries and answers on every non-loopback IPv4 address.
    pub mdns: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BootstrapStatus {
    #[serde(serialize_with = "display")]
    pub address: Multiaddr,
    /// The peer id, when the address carried one or a connection taught it.
    #[serde(serialize_with = "display_option")]
    pub peer: Option<PeerId>,
    pub connected: bool,
}

/// Connections now against the configured limits.
#[derive(Debug, Clone, Serialize)]
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

/// Requests the event loop serves; each carries the sender for its reply.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        request: PublishRequest,
        reply: oneshot::Sender<Result<Published, PublishError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    /// Closes every connection to `peer`; the reply is whether it was connected.
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    /// Leaves `topic`; the reply is whether we were subscribed.
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    Topics {
        reply: oneshot::Sender<Vec<TopicInfo>>,
    },
    Diagnose {
        reply: oneshot::Sender<Diagnosis>,
    },
    Shutdown,
}

/// A cheap, cloneable client of a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(crate) peer_id: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) metrics: Metrics,
}

impl NodeHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's metrics (libp2p's and ours), for `GET /metrics` and for recording API requests.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A new receiver of every event from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publishes one envelope on `request.topic`.
    pub async fn publish(&self, request: PublishRequest) -> Result<Published, PublishError> {
        self.ask(|reply| Command::Publish { request, reply })
            .await
            .unwrap_or(Err(PublishError::NodeStopped))
    }

    /// Joins a gossipsub topic.
    pub async fn subscribe(&self, topic: &str) -> Result<(), String> {
        let topic = topic.to_owned();
        self.ask(|reply| Command::Subscribe { topic, reply })
            .await
            .unwrap_or_else(|| Err(PublishError::NodeStopped.to_string()))
    }

    /// Dials an address (with or without `/p2p/<id>`) and waits for the outcome: the peer connected, or why not.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, String> {
        self.ask(|reply| Command::Dial { address, reply })
            .await
            .unwrap_or_else(|| Err(PublishError::NodeStopped.to_string()))
    }

    /// The node's current status; `None` once it has stopped.
    pub async fn status(&self) -> Option<NodeStatus> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Every peer in the peer table.
    pub async fn peers(&self) -> Option<Vec<PeerInfo>> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Closes every connection to `peer`. Our own decision, so the peer is `removed`, not redialled (until it is
    /// discovered again or connects); `Some(false)` when it was not connected.
    pub async fn disconnect(&self, peer: PeerId) -> Option<bool> {
        self.ask(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Leaves a topic; `Ok(false)` when we were not subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> Result<bool, String> {
        let topic = topic.to_owned();
        self.ask(|reply| Command::Unsubscribe { topic, reply })
            .await
            .unwrap_or_else(|| Err(PublishError::NodeStopped.to_string()))
    }

    /// Our topics with their mesh and subscribed peers.
    pub async fn topics(&self) -> Option<Vec<TopicInfo>> {
        self.ask(|reply| Command::Topics { reply }).await
    }

    /// Everything `GET /v1/diagnose` reports.
    pub async fn diagnose(&self) -> Option<Diagnosis> {
        self.ask(|reply| Command::Diagnose { reply }).await
    }

    /// Asks the node to stop; returns at once (await the node's task to know it has).
    pub async fn request_shutdown(&self) {
        // A closed channel means the node has already stopped, which is what was asked for.
        let _ = self.commands.send(Command::Shutdown).await;
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        response.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(kind: EventKind) -> serde_json::Value {
        serde_json::to_value(Event { ts: 7, kind }).unwrap()
    }

    #[test]
    fn text_payloads_are_plain_json_strings() {
        let peer = PeerId::random();
        let value = json(EventKind::Message {
            topic: "t".into(),
            from: peer,
            id: "abc".into(),
            content_type: "text/plain".into(),
            sent_at: 5,
            data: MessageData(Bytes::from_static(b"hello")),
        });
        assert_eq!(
            value,
            serde_json::json!({"ts": 7, "event": "message", "topic": "t", "from": peer.to_string(), "id": "abc",
                "content_type": "text/plain", "sent_at": 5, "data": "hello"})
        );
    }

    #[test]
    fn binary_payloads_are_base64_and_say_so() {
        let value = json(EventKind::Message {
            topic: "t".into(),
            from: PeerId::random(),
            id: "abc".into(),
            content_type: "application/octet-stream".into(),
            sent_at: 5,
            data: MessageData(Bytes::from_static(&[0xff, 0x00, 0xfe])),
        });
        assert_eq!(value["data"], "/wD+");
        assert_eq!(value["encoding"], "base64");
    }

    #[test]
    fn addresses_and_peers_render_as_text() {
        let peer = PeerId::random();
        let value = json(EventKind::Discovered {
            peer,
            source: DiscoverySource::Mdns,
            addresses: vec!["/ip4/10.0.0.1/tcp/4100".parse().unwrap()],
        });
        assert_eq!(value["event"], "discovered");
        assert_eq!(value["source"], "mdns");
        assert_eq!(value["peer"], peer.to_string());
        assert_eq!(value["addresses"][0], "/ip4/10.0.0.1/tcp/4100");
    }

    #[test]
    fn event_names_are_the_serialized_tags() {
        let peer = PeerId::random();
        let address: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let kinds = [
            EventKind::Listening {
                address: address.clone(),
            },
            EventKind::Discovered {
                peer,
                source: DiscoverySource::Mdns,
                addresses: vec![],
            },
            EventKind::Connected {
                peer,
                address: address.clone(),
                direction: Direction::Inbound,
            },
            EventKind::ConnectionRefused {
                direction: Direction::Inbound,
                peer: None,
                address: None,
                reason: "full".into(),
            },
            EventKind::Disconnected {
                peer,
                cause: "closed".into(),
            },
            EventKind::Subscribed {
                peer,
                topic: "t".into(),
            },
            EventKind::Message {
                topic: "t".into(),
                from: peer,
                id: "i".into(),
                content_type: "text/plain".into(),
                sent_at: 1,
                data: MessageData(Bytes::new()),
            },
            EventKind::PeerState {
                peer,
                from: PeerState::New,
                to: PeerState::Active,
                reason: "connected",
                attempt: 0,
                next_retry_ms: None,
            },
            EventKind::Ping { peer, rtt_ms: 1.0 },
            EventKind::PeerAdmitted {
                peer,
                name: None,
                valid_until: 1,
            },
            EventKind::PeerRefused {
                peer,
                by: RefusedBy::Us,
                reason: "expired".into(),
            },
            EventKind::PeerBanned {
                peer,
                reason: "gossip score".into(),
                duration_ms: 1,
            },
        ];
        for kind in kinds {
            let name = kind.name();
            assert_eq!(json(kind)["event"], name);
            assert!(EventKind::NAMES.contains(&name));
        }
    }
}

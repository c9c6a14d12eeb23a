//! The node's boundary: `NodeHandle` sends commands into the swarm task and awaits one-shot replies, and `Event` is
//! what the task reports on its broadcast channel. The CLI, the tests (and later the HTTP API) are all clients of
//! exactly this surface, so nothing outside the event loop ever touches the `Swarm`.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use serde::{Serialize, Serializer, ser::SerializeMap};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{peers::PeerState, time::now_unix_ms};

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
    #[serde(serialize_with = "display_all")]
    pub listen_addresses: Vec<Multiaddr>,
    #[serde(serialize_with = "display_all")]
    pub connected_peers: Vec<PeerId>,
    /// Peers in the Kademlia routing table.
    #[serde(serialize_with = "display_all")]
    pub routing_table: Vec<PeerId>,
    /// Our topics and, for each, the peers known to be subscribed.
    pub topics: BTreeMap<String, usize>,
    /// Envelopes rejected in validation since start, by reason.
    pub rejected_messages: BTreeMap<&'static str, u64>,
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
    Shutdown,
}

/// A cheap, cloneable client of a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(crate) peer_id: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
}

impl NodeHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
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
}

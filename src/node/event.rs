//! What the node reports: `Event` (a timestamped `EventKind`) on the event channel, which the stdout printer,
//! the SSE stream and tests consume, and its JSON form (peer ids and addresses as text, payloads as text or base64).
//! The text helpers at the end (`display*` to write, `parse*` to read) serve the views too.

use base64::Engine;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::SerializeMap};

use crate::{
    policy::{liveness::PeerState, members::MemberStatus},
    time::now_unix_ms,
    wire::members::Health,
};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverySource {
    Mdns,
    Kademlia,
    Identify,
    Bootstrap,
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// The events of `swarmnode run`'s stdout, one JSON object per line, tagged by `"event"`. Each variant's name
/// (`name`, `names`) is derived from the enum by the same snake_case rule serde applies to the tag.
#[derive(Debug, Clone, Serialize, strum::IntoStaticStr, strum::VariantNames)]
#[serde(tag = "event", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// A member changed status in this node's view: `from` is null for a new member, `to` null when it was reaped.
    Member {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        name: String,
        from: Option<MemberStatus>,
        to: Option<MemberStatus>,
        /// It changed status more often than the flap limit within the flap window.
        flapping: bool,
    },
    /// A service instance's health changed (ours from its check, another member's from its record): `from` is null
    /// for an instance not seen before.
    ServiceHealth {
        #[serde(serialize_with = "display")]
        peer: PeerId,
        service: String,
        from: Option<Health>,
        to: Health,
        output: String,
    },
    /// A key of the replicated map changed on this node: `op` is `put`, `delete` or `expire`; `source` is `local`
    /// (written through this node) or `remote` (from gossip or sync). A put carries the value as `data` (text, or
    /// base64 with `"encoding": "base64"`).
    StateChanged {
        key: String,
        op: StateOp,
        source: &'static str,
        /// The change's version (hybrid logical clock time) as a decimal string.
        version: String,
        origin: String,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        data: Option<MessageData>,
    },
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateOp {
    Put,
    Delete,
    Expire,
}

/// Which side of an admission refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusedBy {
    Us,
    Peer,
}

impl EventKind {
    /// The name of the event streams send when a reader fell behind (not a node event: the stream's own notice).
    pub const LAGGED: &'static str = "lagged";

    /// Every event name, as the `"event"` field and the API's `?types=` filter spell them: each variant's, then
    /// `lagged`.
    pub fn names() -> impl Iterator<Item = &'static str> {
        <Self as strum::VariantNames>::VARIANTS
            .iter()
            .copied()
            .chain([Self::LAGGED])
    }

    /// This event's name (its `"event"` field).
    pub fn name(&self) -> &'static str {
        self.into()
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

pub(crate) fn display<T: std::fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

pub(crate) fn display_option<T: std::fmt::Display, S: Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

pub(crate) fn display_all<T: std::fmt::Display, S: Serializer>(values: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(ToString::to_string))
}

/// Reads what `display` wrote.
pub(crate) fn parse<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: std::str::FromStr<Err: std::fmt::Display>,
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|e| D::Error::custom(format!("{text:?}: {e}")))
}

/// Reads what `display_option` wrote.
pub(crate) fn parse_option<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: std::str::FromStr<Err: std::fmt::Display>,
    D: Deserializer<'de>,
{
    Option::<String>::deserialize(deserializer)?
        .map(|text| text.parse().map_err(|e| D::Error::custom(format!("{text:?}: {e}"))))
        .transpose()
}

/// Reads what `display_all` wrote.
pub(crate) fn parse_all<'de, T, D>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    T: std::str::FromStr<Err: std::fmt::Display>,
    D: Deserializer<'de>,
{
    Vec::<String>::deserialize(deserializer)?
        .into_iter()
        .map(|text| text.parse().map_err(|e| D::Error::custom(format!("{text:?}: {e}"))))
        .collect()
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
            EventKind::Member {
                peer,
                name: "a".into(),
                from: None,
                to: Some(MemberStatus::Alive),
                flapping: false,
            },
            EventKind::ServiceHealth {
                peer,
                service: "web".into(),
                from: Some(Health::Passing),
                to: Health::Critical,
                output: "HTTP 500".into(),
            },
            EventKind::StateChanged {
                key: "k".into(),
                op: StateOp::Put,
                source: "local",
                version: "1".into(),
                origin: peer.to_string(),
                data: Some(MessageData(Bytes::from_static(b"v"))),
            },
        ];
        let names: Vec<&str> = kinds.iter().map(EventKind::name).collect();
        let mut every: Vec<&str> = EventKind::names().collect();
        assert_eq!(every.pop(), Some(EventKind::LAGGED));
        assert_eq!(names, every, "one sample of each variant, in declaration order");
        for kind in kinds {
            let name = kind.name();
            assert_eq!(json(kind)["event"], name);
        }
    }
}

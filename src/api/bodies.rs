//! The JSON bodies the API defines beyond the node's views (`node::views`): the requests it reads (publish, connect),
//! its small answers (connected, disconnected, topic changes) and its error body. The CLI client writes and reads
//! these same types, so the two sides cannot disagree on a field.

use serde::{Deserialize, Serialize};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable, machine-readable name (`invalid_peer_id`, `too_large`, ...).
    pub code: String,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// `POST /v1/peers`: the address to dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    /// A multiaddr, `/p2p/<id>` optional; `/p2p/<id>` alone is looked up in the DHT.
    pub address: String,
}

/// The answer to `POST /v1/peers`: who is connected now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    pub peer: String,
}

/// The answer to `DELETE /v1/peers/{peer}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnected {
    pub peer: String,
    pub disconnected: bool,
}

/// The answer to `POST` and `DELETE /v1/topics/{topic}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicChange {
    pub topic: String,
    pub subscribed: bool,
}

/// `POST /v1/publish`: exactly one of `data` (text) and `data_base64` (bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub topic: String,
    /// The payload as text (sent as UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The payload as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// The MIME type; `application/octet-stream` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The idempotency key: repeated within `--dedup-window`, the first result is returned and nothing is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

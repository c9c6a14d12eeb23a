//! The JSON bodies the API defines beyond the node's views (`node::views`): the requests it reads (publish, connect),
//! its small answers (connected, disconnected, topic changes) and its error body. The CLI client writes and reads
//! these same types, and the OpenAPI document describes them from their `ToSchema` derives, so none of the three can
//! disagree on a field.

use serde::{Deserialize, Serialize};

use crate::config::INVISIBLE_FORMAT;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type},
};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable name (`invalid_peer_id`, `too_large`, ...).
    pub code: String,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// `POST /v1/peers`: the address to dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    /// A multiaddr, `/p2p/<id>` optional; `/p2p/<id>` alone is looked up in the DHT.
    pub address: String,
}

/// The answer to `POST /v1/peers`: who is connected now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Connected {
    pub peer: String,
}

/// The answer to `DELETE /v1/peers/{peer}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Disconnected {
    pub peer: String,
    /// Whether it was connected (false: it was waiting to be redialled, and is now blocked).
    pub disconnected: bool,
    /// How long the peer may not connect, either way (0: it may reconnect at once).
    pub blocked_for_ms: u64,
}

/// The answer to `POST` and `DELETE /v1/topics/{topic}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicChange {
    pub topic: String,
    pub subscribed: bool,
}

/// A topic name, in a path or a body. The node checks the rule (1 to 256 bytes of UTF-8 without control characters
/// or invisible formatting characters); JSON Schema counts characters, not bytes, so the schema promises the 64
/// characters that always fit (a character is at most 4 bytes). Longer ASCII names work too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TopicName(pub String);

impl PartialSchema for TopicName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(64))
            .pattern(Some(topic_pattern()))
            .description(Some(
                "1-256 bytes of UTF-8, no control characters and no invisible formatting characters (Unicode \
                 category Cf, line and paragraph separators)",
            ))
            .into()
    }
}

impl ToSchema for TopicName {}

/// The topic rule as a pattern: anything but control characters and the characters of
/// `config::topic::INVISIBLE_FORMAT`, written as themselves (a regex dialect may not know `\u{…}` escapes above
/// U+FFFF).
fn topic_pattern() -> String {
    let mut class = String::from("\\u0000-\\u001F\\u007F-\\u009F");
    for &(first, last) in INVISIBLE_FORMAT {
        class.push(first);
        if last != first {
            class.push('-');
            class.push(last);
        }
    }
    // Names under the reserved prefix (the members topic) are refused too.
    format!("^(?!/swarmnode/)[^{class}]+$")
}

/// `POST /v1/publish`: exactly one of `data` (text) and `data_base64` (bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub topic: TopicName,
    /// The payload as text (sent as UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub data: Option<String>,
    /// The payload as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = Byte)]
    pub data_base64: Option<String>,
    /// MIME type: 1 to 128 bytes of printable ASCII; `application/octet-stream` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^[ -~]{1,128}$")]
    pub content_type: Option<String>,
    /// Idempotency key, 1 to 64 bytes of UTF-8 (the schema promises the 16 characters that always fit): repeated
    /// within `--dedup-window`, the first result is returned and nothing is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, min_length = 1, max_length = 16)]
    pub id: Option<String>,
}

//! The replicated map as the API and the CLI show it: an entry (the value as text or base64, its version, who wrote
//! it, when it expires), a page of a prefix listing, the answer to a write. A version is the write's hybrid logical
//! clock time, a 64-bit number, shown as a decimal string so JavaScript clients do not round it; a later write of
//! the same key has a higher version.

use base64::Engine;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::wire::state::Change;

/// One live key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateEntry {
    pub key: String,
    /// The value, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in base64 (standard alphabet, padded), when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The write's version (its hybrid logical clock time), as a decimal string.
    pub version: String,
    /// The peer id of the node that wrote it.
    pub origin: String,
    /// When it was written (RFC 3339, from the version).
    pub updated: String,
    /// When its lease runs out (RFC 3339), for a value written with a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl StateEntry {
    pub fn of(change: &Change) -> Self {
        let bytes = change.value.as_deref().unwrap_or_default();
        let (value, value_base64) = match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(bytes))),
        };
        StateEntry {
            key: change.key.clone(),
            value,
            value_base64,
            version: change.time.to_string(),
            origin: origin_text(&change.origin),
            updated: rfc3339(change.time),
            expires: change.expires.map(rfc3339),
        }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.value, &self.value_base64) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

/// A page of `GET /v1/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatePage {
    pub entries: Vec<StateEntry>,
    /// Pass as `cursor` to get the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The answer to a put or a delete, once it is committed on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateWrite {
    pub key: String,
    pub version: String,
    pub origin: String,
    /// When the written value expires (RFC 3339), for a put with a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl StateWrite {
    pub fn of(change: &Change) -> Self {
        StateWrite {
            key: change.key.clone(),
            version: change.time.to_string(),
            origin: origin_text(&change.origin),
            expires: change.expires.map(rfc3339),
        }
    }
}

/// What the map holds, for status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateSummary {
    pub keys: usize,
    pub tombstones: usize,
    pub bytes: usize,
    pub writers: usize,
}

/// A key's current change as the loop reports it to a waiting reader: the live entry, or only the version of the
/// tombstone that deleted it.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    pub entry: Option<StateEntry>,
    pub version: Option<u64>,
}

fn origin_text(origin: &[u8]) -> String {
    PeerId::from_bytes(origin).map_or_else(|_| hex::encode(origin), |peer| peer.to_string())
}

/// An NTP64 time as RFC 3339.
pub fn rfc3339(time: u64) -> String {
    uhlc::NTP64(time).to_string_rfc3339_lossy()
}

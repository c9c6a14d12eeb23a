//! The replicated map's bytes: a change (one write of one key), the deltas published on the internal topic
//! `/swarmnode/state/1`, and the anti-entropy protocol `/swarmnode/sync/1.0.0` (a digest asks, a shipment answers).
//! All CBOR. Every change is checked here (key, value size, origin, version) before the merge sees it;
//! docs/protocol.md is the normative description and changes together with this file.

use bytes::Bytes;
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

/// The internal gossipsub topic deltas travel on. Not a user topic (the `/swarmnode/` prefix is reserved).
pub const STATE_TOPIC: &str = "/swarmnode/state/1";
/// Anti-entropy: digest in, missing changes out.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmnode/sync/1.0.0");
/// The only version of deltas and sync messages this build reads and writes.
pub const STATE_VERSION: u32 = 1;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 512;
/// Largest value any node accepts, whatever `--max-value-size` says: one change must fit a gossip message.
pub const MAX_VALUE_LIMIT: usize = 512 * 1024;
/// Largest sync request: a digest of every writer (4 096 at most) with its missing ranges.
pub const MAX_SYNC_REQUEST: usize = 4 << 20;
/// Largest sync response: a chunk of changes of `SYNC_CHUNK_BYTES` plus the largest single change and a digest.
pub const MAX_SYNC_RESPONSE: usize = 8 << 20;
/// Bytes of changes one sync response carries at most (one change more than this is always allowed, so a value of
/// the largest size still travels).
pub const SYNC_CHUNK_BYTES: usize = 1 << 20;
/// Most missing ranges a digest names per writer; past it the last range runs to the writer's head.
pub const MAX_NEED_RANGES: usize = 32;
/// What one change costs beyond its key and value: CBOR framing, the origin, actor, version, times.
pub const CHANGE_OVERHEAD: usize = 160;
/// Highest version a change may carry: a writer numbers its writes one by one, so a higher one can only be forged
/// (and would leave the writer no numbers to use).
pub const MAX_VERSION: u64 = 1 << 48;

/// A writer's identity in the map: random, created with the node's state database (Corrosion's actor id). Distinct
/// from the peer id so that a node whose database was lost starts a fresh version sequence instead of reusing
/// numbers its peers already hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Actor(#[serde(with = "serde_bytes")] pub [u8; 16]);

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// One write of one key: a value, or a tombstone (`value: None`). Ordered by `(time, origin)`: the hybrid logical
/// clock time, then the writer's peer id; a higher one wins everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub value: Option<Bytes>,
    /// Hybrid logical clock time (NTP64: seconds since the Unix epoch in the upper 32 bits).
    pub time: u64,
    /// The writer's peer id, as bytes.
    #[serde(with = "serde_bytes")]
    pub origin: Vec<u8>,
    pub actor: Actor,
    /// The writer's sequence number for this change, from 1.
    pub version: u64,
    /// When the value expires (NTP64), for a put with a TTL.
    #[serde(default)]
    pub expires: Option<u64>,
}

/// Changes published on the state topic by their writer, batched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deltas {
    pub v: u32,
    pub changes: Vec<Change>,
}

/// What a node holds of one writer: the highest version and the ranges below it still missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterDigest {
    pub actor: Actor,
    pub head: u64,
    #[serde(default)]
    pub need: Vec<(u64, u64)>,
}

/// Everything a writer's versions hold on the answering node, for a full resync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterBook {
    pub actor: Actor,
    pub have: Vec<(u64, u64)>,
}

/// A sync request: our digest (pull what we lack), or a page of a full resync starting after `resync_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub v: u32,
    pub digest: Vec<WriterDigest>,
    /// Present for a full resync: the last key of the previous page (`""` for the first page).
    #[serde(default)]
    pub resync_after: Option<String>,
}

/// Versions the answering node knows that no longer hold a value of their own (a later write superseded them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleared {
    pub actor: Actor,
    pub start: u64,
    pub end: u64,
}

/// The answer: changes the asker lacks (at most a chunk), cleared versions, and the answerer's own digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub v: u32,
    pub changes: Vec<Change>,
    #[serde(default)]
    pub cleared: Vec<Cleared>,
    /// More is missing than one chunk holds: ask again with the new digest.
    pub more: bool,
    /// The asker lacks versions whose tombstones the answerer has already collected: only a full resync is safe.
    pub resync_needed: bool,
    /// The answerer's digest, so the asker learns what the answerer holds (tombstone collection waits for it).
    pub digest: Vec<WriterDigest>,
    /// For a resync page: the last key it covers (`None`: to the end), and every version the answerer knows.
    #[serde(default)]
    pub page: Option<ResyncPage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncPage {
    pub through: Option<String>,
    pub books: Vec<WriterBook>,
}

/// Why a key, a value or a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("a key is 1 to {MAX_KEY} bytes of UTF-8, got {0} bytes")]
    KeyLength(usize),
    #[error("a key may not contain control characters")]
    KeyControl,
    #[error("the value is {size} bytes, more than the limit of {limit}")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("the origin is not a peer id")]
    Origin,
    #[error("versions run from 1 to {MAX_VERSION}")]
    Version,
}

/// Checks a key: 1 to 512 bytes of UTF-8 with no control characters.
pub fn check_key(key: &str) -> Result<(), ChangeError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(ChangeError::KeyLength(key.len()));
    }
    if key.chars().any(char::is_control) {
        return Err(ChangeError::KeyControl);
    }
    Ok(())
}

impl Change {
    /// Checks what the merge relies on; returns the writer's peer id.
    pub fn check(&self, max_value: usize) -> Result<PeerId, ChangeError> {
        check_key(&self.key)?;
        if let Some(value) = &self.value
            && value.len() > max_value
        {
            return Err(ChangeError::ValueTooLarge {
                size: value.len(),
                limit: max_value,
            });
        }
        if self.version == 0 || self.version > MAX_VERSION {
            return Err(ChangeError::Version);
        }
        PeerId::from_bytes(&self.origin).map_err(|_| ChangeError::Origin)
    }

    /// What holding this change costs, in bytes (key, value and bookkeeping).
    pub fn cost(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Bytes::len) + CHANGE_OVERHEAD
    }

    /// The order of last-writer-wins: the later `(time, origin)` wins; actor and version only break ties no honest
    /// writer produces (one peer id writing from two databases at the same instant).
    pub fn order(&self) -> (u64, &[u8], Actor, u64) {
        (self.time, &self.origin, self.actor, self.version)
    }
}

/// Encodes any of our state messages as CBOR.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), message).expect("CBOR encoding into a Vec cannot fail")
}

/// Why bytes on the state topic are not deltas this build takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltasError {
    #[error("not state deltas: {0}")]
    Malformed(String),
    #[error("state deltas of version {0}, this build speaks {STATE_VERSION}")]
    Version(u32),
}

/// Decodes deltas, checking the version.
pub fn decode_deltas(bytes: &[u8]) -> Result<Deltas, DeltasError> {
    let deltas: Deltas = super::cbor::decode_cbor(bytes).map_err(|e| DeltasError::Malformed(e.to_string()))?;
    if deltas.v != STATE_VERSION {
        return Err(DeltasError::Version(deltas.v));
    }
    Ok(deltas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Change {
        Change {
            key: "config/a".into(),
            value: Some(Bytes::from_static(b"v")),
            time: 7,
            origin: PeerId::random().to_bytes(),
            actor: Actor([1; 16]),
            version: 1,
            expires: None,
        }
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a").is_ok());
        assert!(check_key("ключ/☃").is_ok());
        assert_eq!(check_key(""), Err(ChangeError::KeyLength(0)));
        assert_eq!(check_key(&"k".repeat(513)), Err(ChangeError::KeyLength(513)));
        assert!(check_key(&"k".repeat(512)).is_ok());
        assert_eq!(check_key("a\nb"), Err(ChangeError::KeyControl));
        assert_eq!(check_key("a\u{7f}"), Err(ChangeError::KeyControl));
    }

    #[test]
    fn changes_are_checked() {
        let good = change();
        assert!(good.check(10).is_ok());
        let mut big = good.clone();
        big.value = Some(Bytes::from(vec![0; 11]));
        assert_eq!(big.check(10), Err(ChangeError::ValueTooLarge { size: 11, limit: 10 }));
        let mut forged = good.clone();
        forged.origin = vec![1, 2, 3];
        assert_eq!(forged.check(10), Err(ChangeError::Origin));
        let mut zero = good;
        zero.version = 0;
        assert_eq!(zero.check(10), Err(ChangeError::Version));
    }

    #[test]
    fn deltas_round_trip_and_other_versions_are_refused() {
        let deltas = Deltas {
            v: STATE_VERSION,
            changes: vec![change()],
        };
        assert_eq!(decode_deltas(&encode(&deltas)).unwrap(), deltas);
        let future = Deltas { v: 2, changes: vec![] };
        assert_eq!(decode_deltas(&encode(&future)), Err(DeltasError::Version(2)));
        assert!(decode_deltas(b"\xff\x00").is_err());
    }
}

//! The message envelope: the bytes swarmnode puts in the `data` field of every gossipsub message it publishes.
//!
//! Gossipsub already authenticates the publisher (every message is signed and checked strictly); the envelope adds
//! what applications need on top of that: an id the publisher may choose (so a retried publish is recognisable), the
//! time it was sent (for latency), and a content type. It is a CBOR map (RFC 8949) so that any language can build it;
//! `docs/protocol.md` is the normative description and must change together with this file.
//!
//! Decoding trusts nothing: the version, every field's type and size, and the absence of unknown fields or trailing
//! bytes are all checked, and every failure is a typed error that the caller counts and reports — never a panic.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::cbor::{CborError, decode_cbor};

/// The only envelope version this build reads and writes.
pub const ENVELOPE_VERSION: u32 = 1;
/// Longest message id, in bytes of UTF-8.
pub const MAX_ID_LEN: usize = 64;
/// Longest content type, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 128;
/// Content type of a publish that names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Content type of the lines `swarmnode run --stdin` publishes.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Bytes the envelope adds around its payload at most (field names, version, id, origin, time, content type):
/// a payload of `limit - ENVELOPE_OVERHEAD` bytes always fits an envelope of `limit` bytes.
pub const ENVELOPE_OVERHEAD: usize = 512;

/// A decoded, validated envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The message id: 1 to 64 bytes of UTF-8. Random (32 hex digits, 16 random bytes) unless the publisher chose it.
    pub id: String,
    /// The peer that created the envelope. Receivers check it equals gossipsub's signed `source`.
    pub origin: PeerId,
    /// When the publisher created the envelope, unix milliseconds.
    pub sent_at_ms: u64,
    /// A MIME type describing the payload; 1 to 128 bytes of printable ASCII.
    pub content_type: String,
    /// The application's bytes.
    pub payload: Vec<u8>,
}

/// Why bytes are not a valid envelope. `reason()` gives a short stable label for counters and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("envelope is not a valid CBOR map of the expected fields: {0}")]
    Malformed(String),
    #[error("envelope has {0} bytes after its end")]
    TrailingBytes(usize),
    #[error("envelope version {0} is not supported (this node speaks version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u32),
    #[error("message id must be 1 to {MAX_ID_LEN} bytes, got {0}")]
    InvalidId(usize),
    #[error("origin is not a valid peer id")]
    InvalidOrigin,
    #[error("content type must be 1 to {MAX_CONTENT_TYPE_LEN} bytes of printable ASCII")]
    InvalidContentType,
}

impl From<CborError> for EnvelopeError {
    fn from(error: CborError) -> Self {
        match error {
            CborError::Malformed(detail) => EnvelopeError::Malformed(detail),
            CborError::TrailingBytes(count) => EnvelopeError::TrailingBytes(count),
        }
    }
}

impl EnvelopeError {
    /// A short, stable label for this kind of failure (metrics label values, log fields).
    pub fn reason(&self) -> &'static str {
        match self {
            EnvelopeError::TooLarge { .. } => "too_large",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::TrailingBytes(_) => "trailing_bytes",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::InvalidId(_) => "invalid_id",
            EnvelopeError::InvalidOrigin => "invalid_origin",
            EnvelopeError::InvalidContentType => "invalid_content_type",
        }
    }
}

/// The CBOR shape on the wire. Field names are part of the protocol (docs/protocol.md).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope<'a> {
    v: u32,
    id: &'a str,
    #[serde(with = "serde_bytes")]
    origin: &'a [u8],
    sent_at: u64,
    content_type: &'a str,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

impl Envelope {
    /// A new envelope with a random id, stamped now by `origin`.
    pub fn new(origin: PeerId, content_type: &str, payload: Vec<u8>, sent_at_ms: u64) -> Self {
        Envelope {
            id: random_id(),
            origin,
            sent_at_ms,
            content_type: content_type.to_owned(),
            payload,
        }
    }

    /// Checks the fields a publisher controls, so that a bad id or content type is refused at publish time with the
    /// same rule receivers apply.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        check_id(&self.id)?;
        check_content_type(&self.content_type)
    }

    /// Encodes to CBOR, refusing anything a receiver with the same `limit` would reject.
    pub fn encode(&self, limit: usize) -> Result<Vec<u8>, EnvelopeError> {
        self.validate()?;
        let origin = self.origin.to_bytes();
        let wire = WireEnvelope {
            v: ENVELOPE_VERSION,
            id: &self.id,
            origin: &origin,
            sent_at: self.sent_at_ms,
            content_type: &self.content_type,
            payload: &self.payload,
        };
        let bytes = cbor4ii::serde::to_vec(Vec::with_capacity(self.payload.len() + 128), &wire)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if bytes.len() > limit {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Decodes and validates bytes received from the network. `limit` bounds the whole envelope.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, EnvelopeError> {
        if bytes.len() > limit {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let wire: WireEnvelope = decode_cbor(bytes)?;
        if wire.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(wire.v));
        }
        check_id(wire.id)?;
        check_content_type(wire.content_type)?;
        let origin = PeerId::from_bytes(wire.origin).map_err(|_| EnvelopeError::InvalidOrigin)?;
        Ok(Envelope {
            id: wire.id.to_owned(),
            origin,
            sent_at_ms: wire.sent_at,
            content_type: wire.content_type.to_owned(),
            payload: wire.payload.to_vec(),
        })
    }
}

/// An envelope with id and payload `id` from a random origin, and its bytes: the sample the codec and policy tests
/// share.
#[cfg(test)]
pub(crate) fn sample(id: &str, limit: usize) -> (Envelope, Vec<u8>) {
    let mut envelope = Envelope::new(PeerId::random(), "text/plain", id.as_bytes().to_vec(), 1);
    envelope.id = id.to_owned();
    let bytes = envelope.encode(limit).expect("a sample envelope encodes");
    (envelope, bytes)
}

/// 16 random bytes as 32 lowercase hex digits.
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn check_id(id: &str) -> Result<(), EnvelopeError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(EnvelopeError::InvalidId(id.len()));
    }
    Ok(())
}

fn check_content_type(content_type: &str) -> Result<(), EnvelopeError> {
    let printable = content_type.bytes().all(|b| (0x20..0x7f).contains(&b));
    if content_type.is_empty() || content_type.len() > MAX_CONTENT_TYPE_LEN || !printable {
        return Err(EnvelopeError::InvalidContentType);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    fn sample() -> Envelope {
        Envelope {
            id: "order-42".into(),
            origin: PeerId::random(),
            sent_at_ms: 1_764_000_000_000,
            content_type: TEXT_CONTENT_TYPE.into(),
            payload: b"hello swarm".to_vec(),
        }
    }

    /// Encodes an arbitrary serde value the way a foreign implementation might.
    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), value).expect("test value encodes")
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let envelope = sample();
        let bytes = envelope.encode(LIMIT).unwrap();
        assert_eq!(Envelope::decode(&bytes, LIMIT).unwrap(), envelope);
    }

    #[test]
    fn random_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_payload_of_limit_minus_overhead_always_fits() {
        let mut envelope = sample();
        envelope.id = "x".repeat(MAX_ID_LEN);
        envelope.content_type = "y".repeat(MAX_CONTENT_TYPE_LEN);
        envelope.sent_at_ms = u64::MAX;
        envelope.payload = vec![7; 4096 - ENVELOPE_OVERHEAD];
        assert!(envelope.encode(4096).is_ok());
    }

    #[test]
    fn oversized_envelopes_are_refused_both_ways() {
        let mut envelope = sample();
        envelope.payload = vec![0; 2000];
        assert!(matches!(
            envelope.encode(1000),
            Err(EnvelopeError::TooLarge { limit: 1000, .. })
        ));
        let bytes = envelope.encode(LIMIT).unwrap();
        assert!(matches!(
            Envelope::decode(&bytes, 1000),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn publisher_side_checks_match_receiver_rules() {
        let mut envelope = sample();
        envelope.id = String::new();
        assert_eq!(envelope.encode(LIMIT), Err(EnvelopeError::InvalidId(0)));
        envelope.id = "z".repeat(MAX_ID_LEN + 1);
        assert_eq!(envelope.encode(LIMIT), Err(EnvelopeError::InvalidId(MAX_ID_LEN + 1)));
        envelope.id = "ok".into();
        envelope.content_type = "text/plain\n".into();
        assert_eq!(envelope.encode(LIMIT), Err(EnvelopeError::InvalidContentType));
    }

    fn foreign(origin: &[u8]) -> WireEnvelope<'_> {
        WireEnvelope {
            v: 1,
            id: "abc",
            origin,
            sent_at: 5,
            content_type: "text/plain",
            payload: b"p",
        }
    }

    #[test]
    fn malformed_inputs_are_rejected_with_their_reason() {
        let origin = PeerId::random().to_bytes();
        let valid = cbor(&foreign(&origin));
        assert!(Envelope::decode(&valid, LIMIT).is_ok());

        let mut with_trailing = valid.clone();
        with_trailing.push(0);

        #[derive(Serialize)]
        struct Extra<'a> {
            #[serde(flatten)]
            inner: WireEnvelope<'a>,
            extra: u8,
        }
        #[derive(Serialize)]
        struct MissingPayload<'a> {
            v: u32,
            id: &'a str,
            #[serde(with = "serde_bytes")]
            origin: &'a [u8],
            sent_at: u64,
            content_type: &'a str,
        }

        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty input", vec![], "malformed"),
            ("not cbor", b"hello, not cbor".to_vec(), "malformed"),
            ("a cbor string", cbor(&"just text"), "malformed"),
            ("truncated", valid[..valid.len() - 3].to_vec(), "malformed"),
            ("trailing byte", with_trailing, "trailing_bytes"),
            (
                "version 2",
                cbor(&WireEnvelope {
                    v: 2,
                    ..foreign(&origin)
                }),
                "unsupported_version",
            ),
            (
                "empty id",
                cbor(&WireEnvelope {
                    id: "",
                    ..foreign(&origin)
                }),
                "invalid_id",
            ),
            ("bad origin", cbor(&foreign(b"not a peer id")), "invalid_origin"),
            (
                "control char in content type",
                cbor(&WireEnvelope {
                    content_type: "a\u{7}",
                    ..foreign(&origin)
                }),
                "invalid_content_type",
            ),
            (
                "unknown field",
                cbor(&Extra {
                    inner: foreign(&origin),
                    extra: 1,
                }),
                "malformed",
            ),
            (
                "missing payload",
                cbor(&MissingPayload {
                    v: 1,
                    id: "a",
                    origin: &origin,
                    sent_at: 1,
                    content_type: "t",
                }),
                "malformed",
            ),
        ];
        for (name, bytes, reason) in cases {
            let err = Envelope::decode(&bytes, LIMIT).expect_err(name);
            assert_eq!(err.reason(), reason, "{name}: {err}");
        }
    }

    /// The example in docs/protocol.md, byte for byte: if this changes, the document (and the wire format) did.
    #[test]
    fn the_documented_example_is_what_we_encode_and_decode() {
        const DOCUMENTED: &str = "a6617601626964656d73672d31666f726967696e58260024080112208a88e3dd7409f195fd52db2d3cba5d72\
                                  ca6709bf1d94121bf3748801b40f6f5c6773656e745f61741b0000019ab697e8006c636f6e74656e745f74\
                                  7970656a746578742f706c61696e677061796c6f6164426869";
        let key = libp2p::identity::Keypair::ed25519_from_bytes([1u8; 32]).unwrap();
        let envelope = Envelope {
            id: "msg-1".into(),
            origin: key.public().to_peer_id(),
            sent_at_ms: 1_764_000_000_000,
            content_type: "text/plain".into(),
            payload: b"hi".to_vec(),
        };
        assert_eq!(
            envelope.origin.to_string(),
            "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
        );
        assert_eq!(hex::encode(envelope.encode(LIMIT).unwrap()), DOCUMENTED);
        assert_eq!(
            Envelope::decode(&hex::decode(DOCUMENTED).unwrap(), LIMIT).unwrap(),
            envelope
        );
    }

    #[test]
    fn fields_may_come_in_any_order() {
        #[derive(Serialize)]
        struct Reordered<'a> {
            #[serde(with = "serde_bytes")]
            payload: &'a [u8],
            content_type: &'a str,
            sent_at: u64,
            #[serde(with = "serde_bytes")]
            origin: &'a [u8],
            id: &'a str,
            v: u32,
        }
        let envelope = sample();
        let origin = envelope.origin.to_bytes();
        let bytes = cbor(&Reordered {
            payload: &envelope.payload,
            content_type: &envelope.content_type,
            sent_at: envelope.sent_at_ms,
            origin: &origin,
            id: &envelope.id,
            v: 1,
        });
        assert_eq!(Envelope::decode(&bytes, LIMIT).unwrap(), envelope);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes, LIMIT);
        }

        #[test]
        fn every_truncation_of_a_valid_envelope_is_rejected(cut in 0usize..64) {
            let bytes = sample().encode(LIMIT).unwrap();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(Envelope::decode(&bytes[..cut], LIMIT).is_err());
        }

        #[test]
        fn valid_envelopes_round_trip(
            id in "[ -~]{1,64}",
            sent_at_ms in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let envelope = Envelope { id, sent_at_ms, payload, ..sample() };
            let bytes = envelope.encode(LIMIT).unwrap();
            prop_assert_eq!(Envelope::decode(&bytes, LIMIT).unwrap(), envelope);
        }
    }
}

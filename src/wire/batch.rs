//! The batch codec (`--batch-window`): several envelopes in one gossip message, which receivers unpack into separate
//! deliveries, each keeping its own id, in publish order. Every entry is checked as a single envelope is checked.
//! When to cut a batch is decided by `policy::publish::Batcher`.
//!
//! Wire (docs/protocol.md): a CBOR map `{"v": 1, "batch": [envelope bytes, ...]}` with 2 to `MAX_BATCH_ENTRIES`
//! byte strings, each a complete envelope. A batch of one is never sent: a lone publish goes out as a plain envelope.

use serde::{Deserialize, Serialize};

use super::{
    cbor::{CborError, decode_cbor},
    envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError},
};

/// Most envelopes one batch carries.
pub const MAX_BATCH_ENTRIES: usize = 1024;
/// Bytes a batch adds around its entries at most: the map and array headers, and up to 9 bytes per entry.
pub const BATCH_HEADER: usize = 32;
pub const BATCH_PER_ENTRY: usize = 9;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch<'a> {
    v: u32,
    #[serde(borrow)]
    batch: Vec<&'a serde_bytes::Bytes>,
}

/// Encodes already-encoded envelopes as one batch message.
pub fn encode_batch(entries: &[Vec<u8>]) -> Vec<u8> {
    let wire = WireBatch {
        v: ENVELOPE_VERSION,
        batch: entries.iter().map(|e| serde_bytes::Bytes::new(e)).collect(),
    };
    let size = BATCH_HEADER + entries.iter().map(|e| e.len() + BATCH_PER_ENTRY).sum::<usize>();
    // Encoding borrowed bytes into a Vec cannot fail.
    cbor4ii::serde::to_vec(Vec::with_capacity(size), &wire).unwrap_or_default()
}

/// Decodes a gossip message's data: one envelope, or a batch of them. `limit` bounds the whole message.
pub fn decode_message(bytes: &[u8], limit: usize) -> Result<Vec<Envelope>, EnvelopeError> {
    if bytes.len() > limit {
        return Err(EnvelopeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let wire: WireBatch = match decode_cbor(bytes) {
        Ok(wire) => wire,
        // Not a batch: it must be a single envelope, and its errors are the ones to report.
        Err(CborError::Malformed(_)) => return Envelope::decode(bytes, limit).map(|envelope| vec![envelope]),
        Err(other) => return Err(other.into()),
    };
    if wire.v != ENVELOPE_VERSION {
        return Err(EnvelopeError::UnsupportedVersion(wire.v));
    }
    if !(2..=MAX_BATCH_ENTRIES).contains(&wire.batch.len()) {
        return Err(EnvelopeError::Malformed(format!(
            "a batch holds 2 to {MAX_BATCH_ENTRIES} envelopes, not {}",
            wire.batch.len()
        )));
    }
    wire.batch.iter().map(|entry| Envelope::decode(entry, limit)).collect()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::wire::envelope::sample;

    const LIMIT: usize = 1 << 20;

    fn envelope(id: &str) -> (Envelope, Vec<u8>) {
        sample(id, LIMIT)
    }

    #[test]
    fn a_batch_decodes_into_its_envelopes_in_order() {
        let (a, a_bytes) = envelope("a");
        let (b, b_bytes) = envelope("b");
        let message = encode_batch(&[a_bytes.clone(), b_bytes]);
        assert_eq!(decode_message(&message, LIMIT).unwrap(), vec![a.clone(), b]);
        assert_eq!(
            decode_message(&a_bytes, LIMIT).unwrap(),
            vec![a],
            "a plain envelope is a batch of one"
        );
    }

    #[test]
    fn a_bad_entry_or_shape_spoils_the_batch() {
        let (_, good) = envelope("a");
        let bad_entry = encode_batch(&[good.clone(), b"not an envelope".to_vec()]);
        assert_eq!(decode_message(&bad_entry, LIMIT).unwrap_err().reason(), "malformed");
        let lone = encode_batch(std::slice::from_ref(&good));
        assert_eq!(decode_message(&lone, LIMIT).unwrap_err().reason(), "malformed");
        let mut trailing = encode_batch(&[good.clone(), good.clone()]);
        trailing.push(0);
        assert_eq!(decode_message(&trailing, LIMIT).unwrap_err().reason(), "trailing_bytes");
        assert_eq!(decode_message(&trailing, 10).unwrap_err().reason(), "too_large");
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_message(&bytes, 1 << 20);
        }
    }
}

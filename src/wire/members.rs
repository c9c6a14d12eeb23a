//! Member records as bytes: what a node says about itself (name, tags, services with their health, weight, load,
//! incarnation, sequence) and the view exchange `/swarmnode/members/1.0.0`. A record is CBOR inside a libp2p signed
//! envelope (RFC 0002, the same format as libp2p peer records), so it names its author by the key that signed it:
//! a record relayed by a third node in a view exchange is as trustworthy as one heard from its author on gossip.
//! Every record is checked here (size, version, text, numbers) before any decision sees it; docs/protocol.md is the
//! normative description and changes together with this file.

use std::collections::BTreeMap;

use libp2p::{PeerId, StreamProtocol, core::SignedEnvelope, identity::Keypair};
use serde::{Deserialize, Serialize};

use super::cbor::{CborError, decode_cbor};
use crate::config::is_invisible_format;

/// The internal gossipsub topic member records travel on. Not a user topic: refused for joins and publishes, never
/// listed among the node's topics.
pub const MEMBERS_TOPIC: &str = "/swarmnode/members/1";
/// The view exchange run on every new connection.
pub const MEMBERS_PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmnode/members/1.0.0");
/// The signed envelope's domain: a signature made for a member record cannot pass for anything else.
pub const RECORD_DOMAIN: &str = "swarmnode-member-record";
/// The signed envelope's payload type.
pub const RECORD_PAYLOAD_TYPE: &[u8] = b"/swarmnode/member-record/1";
/// The only record and exchange version this build reads and writes.
pub const MEMBERS_VERSION: u32 = 1;
/// Largest signed record, in bytes: a node whose tags and services do not fit refuses to start.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;
/// Largest view exchange message, in bytes: the freshest records that fit are sent, the rest follow on gossip.
pub const MAX_EXCHANGE_BYTES: usize = 4 << 20;
/// What one exchange entry costs beyond its envelope: CBOR framing (map header, keys, lengths, the age).
pub const EXCHANGE_ENTRY_OVERHEAD: usize = 32;
/// The bytes of entries an exchange message holds at most (the rest of the limit is the message's own framing).
pub const EXCHANGE_RECORDS_BYTES: usize = MAX_EXCHANGE_BYTES - 64;
/// Most records taken from one exchange: more than a view holds can only be a flood.
pub const MAX_EXCHANGE_RECORDS: usize = 4096;
/// Text limits inside a record, in bytes.
pub const MAX_NAME: usize = 64;
pub const MAX_TAG_KEY: usize = 64;
pub const MAX_TAG_VALUE: usize = 256;
pub const MAX_TAGS: usize = 64;
pub const MAX_SERVICES: usize = 64;
pub const MAX_SERVICE_TAGS: usize = 16;
pub const MAX_OUTPUT: usize = 512;
pub const MAX_ADDRESSES: usize = 16;
pub const MAX_ADDRESS: usize = 256;
/// Largest weight a record may carry; weights are relative, so this only keeps the arithmetic finite.
pub const MAX_WEIGHT: f64 = 1e6;

/// A service's health, as its check last found it (Consul's vocabulary).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, strum::Display, strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Health {
    Passing,
    Warning,
    Critical,
}

/// What a node reports about its own load; every field defaults to zero when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Load {
    /// Share of the machine's CPU time that was busy over the last interval, 0 to 1.
    #[serde(deserialize_with = "number")]
    pub cpu: f64,
    /// Resident memory of the node's process, in bytes.
    pub rss: u64,
    /// Connected peers.
    pub connections: u32,
}

/// One service instance a node offers, with the health its check last found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Unique on its node; the name when not given.
    pub id: String,
    /// What clients look it up by (`web`).
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub tags: Vec<String>,
    pub status: Health,
    /// What the last check said (an HTTP status line, a connection error, a TTL note), shortened.
    #[serde(default)]
    pub output: String,
}

/// What a node says about itself. Unknown keys are ignored, so a later version may add some.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub v: u32,
    /// Raised each time the node starts (kept in its data directory): a restarted node's records supersede those of
    /// its previous life whatever their sequence numbers.
    pub incarnation: u64,
    /// Raised with every record within one incarnation; a heartbeat: only a higher one renews the member.
    pub seq: u64,
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub services: Vec<ServiceRecord>,
    /// The routing weight the node advertises (static `--weight`, scaled by spare CPU with `--dynamic-weight`).
    #[serde(deserialize_with = "number")]
    pub weight: f64,
    #[serde(default)]
    pub load: Load,
    /// Addresses the node listens on (multiaddr text), so others know where its services are.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// The node's last record before a graceful shutdown.
    #[serde(default)]
    pub left: bool,
}

/// One record in a view exchange: the signed envelope as its author made it, and how long ago the sender last saw
/// it renewed (so a late joiner does not take a long-dead member for alive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangedRecord {
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    pub age_ms: u64,
}

/// A node's view, sent as the request by the dialer and as the response by the listener of a new connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersExchange {
    pub v: u32,
    pub records: Vec<ExchangedRecord>,
}

/// Why bytes are not a member record we take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("a signed record is at most {MAX_RECORD_BYTES} bytes, this one has {0}")]
    TooLarge(usize),
    #[error("not a signed envelope: {0}")]
    Envelope(String),
    #[error("bad signature or not a member record: {0}")]
    Signature(String),
    #[error("{0}")]
    Cbor(#[from] CborError),
    #[error("record version {0} is not supported (this build reads {MEMBERS_VERSION})")]
    Version(u32),
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl MemberRecord {
    /// Checks every limit a record must keep; a record of ours that fails it stops the node at start.
    pub fn check(&self) -> Result<(), RecordError> {
        if self.v != MEMBERS_VERSION {
            return Err(RecordError::Version(self.v));
        }
        check_text("name", &self.name, 1, MAX_NAME)?;
        if self.tags.len() > MAX_TAGS {
            return invalid(format!("at most {MAX_TAGS} tags"));
        }
        for (key, value) in &self.tags {
            check_text("tag key", key, 1, MAX_TAG_KEY)?;
            check_text("tag value", value, 0, MAX_TAG_VALUE)?;
        }
        if self.services.len() > MAX_SERVICES {
            return invalid(format!("at most {MAX_SERVICES} services"));
        }
        for (i, service) in self.services.iter().enumerate() {
            check_text("service id", &service.id, 1, MAX_NAME)?;
            check_text("service name", &service.name, 1, MAX_NAME)?;
            check_text("service output", &service.output, 0, MAX_OUTPUT)?;
            if service.tags.len() > MAX_SERVICE_TAGS {
                return invalid(format!("a service has at most {MAX_SERVICE_TAGS} tags"));
            }
            for tag in &service.tags {
                check_text("service tag", tag, 1, MAX_TAG_VALUE)?;
            }
            if self.services[..i].iter().any(|other| other.id == service.id) {
                return invalid(format!("service id {:?} appears twice", service.id));
            }
        }
        if !(self.weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&self.weight)) {
            return invalid(format!("weight must be a number from 0 to {MAX_WEIGHT}"));
        }
        if !(self.load.cpu.is_finite() && (0.0..=1.0).contains(&self.load.cpu)) {
            return invalid("load.cpu must be a number from 0 to 1".into());
        }
        if self.addrs.len() > MAX_ADDRESSES {
            return invalid(format!("at most {MAX_ADDRESSES} addresses"));
        }
        for address in &self.addrs {
            check_text("address", address, 1, MAX_ADDRESS)?;
        }
        Ok(())
    }

    /// Signs the record with `keypair` into the bytes that travel, checking it and its size first.
    pub fn seal(&self, keypair: &Keypair) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let payload = cbor4ii::serde::to_vec(Vec::new(), self).map_err(|e| RecordError::Invalid(e.to_string()))?;
        let envelope = SignedEnvelope::new(keypair, RECORD_DOMAIN.to_owned(), RECORD_PAYLOAD_TYPE.to_vec(), payload)
            .map_err(|e| RecordError::Signature(e.to_string()))?
            .into_protobuf_encoding();
        if envelope.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(envelope.len()));
        }
        Ok(envelope)
    }

    /// Opens a signed record: its author (the signing key's peer id) and the checked record.
    pub fn open(bytes: &[u8]) -> Result<(PeerId, MemberRecord), RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let envelope =
            SignedEnvelope::from_protobuf_encoding(bytes).map_err(|e| RecordError::Envelope(e.to_string()))?;
        let (payload, key) = envelope
            .payload_and_signing_key(RECORD_DOMAIN.to_owned(), RECORD_PAYLOAD_TYPE)
            .map_err(|e| RecordError::Signature(e.to_string()))?;
        let record: MemberRecord = decode_cbor(payload)?;
        record.check()?;
        Ok((key.to_peer_id(), record))
    }
}

impl MembersExchange {
    /// An exchange message holding `records` (freshest first) up to the size limit; the rest are left out.
    pub fn fitting(records: impl IntoIterator<Item = ExchangedRecord>) -> MembersExchange {
        let mut budget = EXCHANGE_RECORDS_BYTES;
        let mut kept = Vec::new();
        for record in records {
            let cost = record.envelope.len() + EXCHANGE_ENTRY_OVERHEAD;
            if cost > budget {
                break;
            }
            budget -= cost;
            kept.push(record);
        }
        MembersExchange {
            v: MEMBERS_VERSION,
            records: kept,
        }
    }
}

/// A number as any encoder may write it: a 16-, 32- or 64-bit float, or an integer (`cbor2` with `canonical=True`
/// writes 1.0 as a 16-bit float, JavaScript encoders write whole numbers as integers).
fn number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    struct Number;
    impl serde::de::Visitor<'_> for Number {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f32<E>(self, v: f32) -> Result<f64, E> {
            Ok(f64::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
    }
    deserializer.deserialize_any(Number)
}

fn invalid<T>(reason: String) -> Result<T, RecordError> {
    Err(RecordError::Invalid(reason))
}

/// Text shown to operators: bounded, and free of characters that hide or disguise what it says.
fn check_text(what: &str, text: &str, min: usize, max: usize) -> Result<(), RecordError> {
    if text.len() < min || text.len() > max {
        return invalid(format!(
            "{what} must be {min} to {max} bytes, {:?} has {}",
            shorten(text),
            text.len()
        ));
    }
    if text.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        return invalid(format!(
            "{what} {:?} holds control or invisible formatting characters",
            shorten(text)
        ));
    }
    Ok(())
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MemberRecord {
        MemberRecord {
            v: MEMBERS_VERSION,
            incarnation: 3,
            seq: 7,
            name: "node-a".into(),
            tags: BTreeMap::from([("zone".into(), "eu-1".into())]),
            services: vec![ServiceRecord {
                id: "web".into(),
                name: "web".into(),
                port: 8080,
                tags: vec!["v1".into()],
                status: Health::Passing,
                output: "HTTP 200 OK".into(),
            }],
            weight: 1.0,
            load: Load {
                cpu: 0.25,
                rss: 20 << 20,
                connections: 4,
            },
            addrs: vec!["/ip4/10.0.0.1/tcp/4001".into()],
            left: false,
        }
    }

    #[test]
    fn a_sealed_record_opens_to_its_author_and_content() {
        let keypair = Keypair::generate_ed25519();
        let sealed = record().seal(&keypair).unwrap();
        let (author, opened) = MemberRecord::open(&sealed).unwrap();
        assert_eq!(author, keypair.public().to_peer_id());
        assert_eq!(opened, record());
    }

    #[test]
    fn a_tampered_record_or_one_signed_for_another_purpose_is_refused() {
        let keypair = Keypair::generate_ed25519();
        let mut sealed = record().seal(&keypair).unwrap();
        let at = sealed.len() / 2;
        sealed[at] ^= 1;
        assert!(MemberRecord::open(&sealed).is_err());

        let payload = cbor4ii::serde::to_vec(Vec::new(), &record()).unwrap();
        let other = SignedEnvelope::new(&keypair, "other-domain".into(), RECORD_PAYLOAD_TYPE.to_vec(), payload)
            .unwrap()
            .into_protobuf_encoding();
        assert!(matches!(MemberRecord::open(&other), Err(RecordError::Signature(_))));
    }

    #[test]
    fn oversized_and_invalid_records_are_named() {
        let keypair = Keypair::generate_ed25519();
        let mut big = record();
        for i in 0..MAX_TAGS - 1 {
            big.tags.insert(format!("key-{i}"), "v".repeat(200));
        }
        assert!(matches!(big.seal(&keypair), Err(RecordError::TooLarge(_))));
        assert!(matches!(
            MemberRecord::open(&vec![0; MAX_RECORD_BYTES + 1]),
            Err(RecordError::TooLarge(_))
        ));

        type Spoil = fn(&mut MemberRecord);
        let cases: Vec<(Spoil, &str)> = vec![
            (|r| r.v = 2, "version"),
            (|r| r.name.clear(), "name"),
            (|r| r.name = "a\u{202E}b".into(), "invisible"),
            (|r| r.weight = f64::NAN, "weight"),
            (|r| r.weight = -1.0, "weight"),
            (|r| r.load.cpu = 2.0, "load.cpu"),
            (|r| r.services.push(r.services[0].clone()), "twice"),
        ];
        for (spoil, expected) in cases {
            let mut bad = record();
            spoil(&mut bad);
            let error = bad.check().unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should mention {expected}");
        }
    }

    #[test]
    fn absent_optional_fields_default_and_unknown_ones_are_ignored() {
        // {"v": 1, "incarnation": 1, "seq": 0, "name": "py", "weight": 1.0 (a 64-bit float), "extra": 5}
        let mut bytes = vec![0xa6, 0x61, b'v', 0x01, 0x6b];
        bytes.extend_from_slice(b"incarnation");
        bytes.extend_from_slice(&[
            0x01, 0x63, b's', b'e', b'q', 0x00, 0x64, b'n', b'a', b'm', b'e', 0x62, b'p', b'y',
        ]);
        bytes.extend_from_slice(&[
            0x66, b'w', b'e', b'i', b'g', b'h', b't', 0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
        ]);
        bytes.extend_from_slice(&[0x65, b'e', b'x', b't', b'r', b'a', 0x05]);
        let record: MemberRecord = decode_cbor(&bytes).unwrap();
        assert_eq!(record.name, "py");
        assert_eq!(record.weight, 1.0);
        assert!(record.tags.is_empty() && record.services.is_empty() && !record.left);
        record.check().unwrap();
    }

    #[test]
    fn numbers_are_read_in_every_width_and_as_integers() {
        // {"v": 1, "incarnation": 1, "seq": 0, "name": "py", "weight": W}
        let with_weight = |weight: &[u8]| {
            let mut bytes = vec![0xa5, 0x61, b'v', 0x01, 0x6b];
            bytes.extend_from_slice(b"incarnation");
            bytes.extend_from_slice(&[
                0x01, 0x63, b's', b'e', b'q', 0x00, 0x64, b'n', b'a', b'm', b'e', 0x62, b'p', b'y',
            ]);
            bytes.extend_from_slice(&[0x66, b'w', b'e', b'i', b'g', b'h', b't']);
            bytes.extend_from_slice(weight);
            decode_cbor::<MemberRecord>(&bytes).map(|r| r.weight)
        };
        assert_eq!(with_weight(&[0xf9, 0x3c, 0x00]), Ok(1.0), "16-bit");
        assert_eq!(with_weight(&[0xfa, 0x40, 0x20, 0x00, 0x00]), Ok(2.5), "32-bit");
        assert_eq!(with_weight(&[0x03]), Ok(3.0), "an integer");
        assert!(with_weight(&[0x61, b'x']).is_err(), "text is not a weight");
    }

    #[test]
    fn an_exchange_keeps_to_its_size_limit() {
        let entry = ExchangedRecord {
            envelope: vec![0; MAX_RECORD_BYTES],
            age_ms: 0,
        };
        let exchange = MembersExchange::fitting(std::iter::repeat_n(entry, 1000));
        let encoded = cbor4ii::serde::to_vec(Vec::new(), &exchange).unwrap();
        assert!(encoded.len() <= MAX_EXCHANGE_BYTES, "{}", encoded.len());
        assert!(exchange.records.len() > 400, "{}", exchange.records.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&[][..], &[0xff], &[0x0a, 0x05, 0x01], &[0x12; 64]] {
            assert!(MemberRecord::open(bytes).is_err(), "{bytes:?}");
        }
    }
}

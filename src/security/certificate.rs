//! Membership certificates: a private CA (an ed25519 key pair the operator keeps) signs, for each node, a short
//! statement "peer id P (named N) is a member from T1 to T2". libp2p already proves who a peer is; the certificate
//! says that it may join. Nodes check each other's certificates over `/swarmnode/admission/1.0.0` (see
//! `admission`), and `docs/protocol.md` gives the exact bytes so other implementations can do the same.
//!
//! A certificate is a CBOR map `{"body": bytes, "signature": bytes}`. `body` is itself CBOR (the fields below) and the
//! signature covers `SIGNING_CONTEXT || body` exactly as carried, so checking it never depends on how anyone
//! re-encodes CBOR. Decoding trusts nothing: sizes, types, unknown fields and trailing bytes are all checked.
//! Pure apart from the `load_*` / `write_*` helpers at the end, which only read (bounded, regular files) and write
//! files.

use std::{path::Path, time::Duration};

use libp2p::{
    PeerId,
    identity::{Keypair, PublicKey},
};
use serde::{Deserialize, Serialize};

use crate::{
    files::{self, FileError},
    security::{identity, secret_file},
    wire::cbor::decode_cbor,
};

/// The only certificate version this build reads and writes.
pub const CERTIFICATE_VERSION: u32 = 1;
/// Largest encoded certificate accepted, in bytes (a real one is about 200), from a peer or a file.
pub const MAX_CERTIFICATE_SIZE: usize = 2048;
/// Largest CA public key file read, in bytes (an ed25519 one takes 36).
pub const MAX_CA_PUBLIC_KEY_FILE: usize = 4096;
/// Longest member name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// How far apart two clocks may be: a certificate is accepted this long before it starts and after it ends.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Prefixed to the body before signing, so a CA signature over a certificate can never be mistaken for (or replayed
/// as) a signature over anything else the key might sign.
pub const SIGNING_CONTEXT: &[u8] = b"swarmnode membership certificate v1\n";

/// A decoded certificate. Decoding checks its form; `verify` checks that it admits a given peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub peer: PeerId,
    pub name: Option<String>,
    /// Valid from, unix seconds.
    pub not_before: u64,
    /// Valid until, unix seconds.
    pub not_after: u64,
    /// The CA that signed it.
    pub ca: PublicKey,
    body: Vec<u8>,
    signature: Vec<u8>,
}

/// Why a certificate is refused. `reason()` is a short stable label for metrics and events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate is {0} bytes, more than the {MAX_CERTIFICATE_SIZE}-byte limit")]
    TooLarge(usize),
    #[error("certificate is not valid CBOR of the expected form: {0}")]
    Malformed(String),
    #[error("certificate version {0} is not supported (this node speaks version {CERTIFICATE_VERSION})")]
    UnsupportedVersion(u32),
    #[error("certificate names an invalid peer id")]
    InvalidPeer,
    #[error("certificate names an invalid CA key")]
    InvalidCa,
    #[error("member name must be 1 to {MAX_NAME_LEN} bytes without control characters")]
    InvalidName,
    #[error("certificate validity ends ({not_after}) before it starts ({not_before})")]
    InvalidWindow { not_before: u64, not_after: u64 },
    #[error("certificate is signed by another CA ({0})")]
    WrongCa(String),
    #[error("certificate signature does not verify")]
    BadSignature,
    #[error("certificate is for peer {certified}, not {actual}")]
    WrongPeer { certified: String, actual: String },
    #[error("certificate is not valid before {0} (unix seconds)")]
    NotYetValid(u64),
    #[error("certificate expired at {0} (unix seconds)")]
    Expired(u64),
}

impl CertificateError {
    /// A short, stable label for this kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            CertificateError::TooLarge(_) => "too_large",
            CertificateError::Malformed(_) => "malformed",
            CertificateError::UnsupportedVersion(_) => "unsupported_version",
            CertificateError::InvalidPeer => "invalid_peer",
            CertificateError::InvalidCa => "invalid_ca",
            CertificateError::InvalidName => "invalid_name",
            CertificateError::InvalidWindow { .. } => "invalid_window",
            CertificateError::WrongCa(_) => "wrong_ca",
            CertificateError::BadSignature => "bad_signature",
            CertificateError::WrongPeer { .. } => "wrong_peer",
            CertificateError::NotYetValid(_) => "not_yet_valid",
            CertificateError::Expired(_) => "expired",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCertificate<'a> {
    #[serde(with = "serde_bytes")]
    body: &'a [u8],
    #[serde(with = "serde_bytes")]
    signature: &'a [u8],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBody<'a> {
    v: u32,
    #[serde(with = "serde_bytes")]
    peer: &'a [u8],
    name: Option<&'a str>,
    not_before: u64,
    not_after: u64,
    #[serde(with = "serde_bytes")]
    ca: &'a [u8],
}

impl Certificate {
    /// Signs a certificate for `peer`, valid from `not_before` to `not_after` (unix seconds).
    pub fn issue(
        ca: &Keypair,
        peer: PeerId,
        name: Option<&str>,
        not_before: u64,
        not_after: u64,
    ) -> Result<Certificate, CertificateError> {
        if let Some(name) = name {
            check_name(name)?;
        }
        if not_after < not_before {
            return Err(CertificateError::InvalidWindow { not_before, not_after });
        }
        let peer_bytes = peer.to_bytes();
        let ca_bytes = ca.public().encode_protobuf();
        let body = WireBody {
            v: CERTIFICATE_VERSION,
            peer: &peer_bytes,
            name,
            not_before,
            not_after,
            ca: &ca_bytes,
        };
        let body = cbor4ii::serde::to_vec(Vec::new(), &body).map_err(|e| CertificateError::Malformed(e.to_string()))?;
        let signature = ca
            .sign(&signed_bytes(&body))
            .map_err(|e| CertificateError::Malformed(format!("signing failed: {e}")))?;
        Ok(Certificate {
            peer,
            name: name.map(str::to_owned),
            not_before,
            not_after,
            ca: ca.public(),
            body,
            signature,
        })
    }

    /// The bytes to store in a file or send to a peer.
    pub fn encode(&self) -> Vec<u8> {
        let wire = WireCertificate {
            body: &self.body,
            signature: &self.signature,
        };
        // Two byte strings into a Vec cannot fail to encode.
        cbor4ii::serde::to_vec(Vec::with_capacity(self.body.len() + 96), &wire).unwrap_or_default()
    }

    /// Decodes bytes from a file or a peer, checking their form but not yet whom they admit (`verify`).
    pub fn decode(bytes: &[u8]) -> Result<Certificate, CertificateError> {
        if bytes.len() > MAX_CERTIFICATE_SIZE {
            return Err(CertificateError::TooLarge(bytes.len()));
        }
        let wire: WireCertificate = decode_cbor(bytes).map_err(|e| CertificateError::Malformed(e.to_string()))?;
        let body: WireBody = decode_cbor(wire.body).map_err(|e| CertificateError::Malformed(e.to_string()))?;
        if body.v != CERTIFICATE_VERSION {
            return Err(CertificateError::UnsupportedVersion(body.v));
        }
        let peer = PeerId::from_bytes(body.peer).map_err(|_| CertificateError::InvalidPeer)?;
        let ca = PublicKey::try_decode_protobuf(body.ca).map_err(|_| CertificateError::InvalidCa)?;
        if let Some(name) = body.name {
            check_name(name)?;
        }
        if body.not_after < body.not_before {
            return Err(CertificateError::InvalidWindow {
                not_before: body.not_before,
                not_after: body.not_after,
            });
        }
        Ok(Certificate {
            peer,
            name: body.name.map(str::to_owned),
            not_before: body.not_before,
            not_after: body.not_after,
            ca,
            body: wire.body.to_vec(),
            signature: wire.signature.to_vec(),
        })
    }

    /// Whether this certificate admits `peer` at `now` (unix seconds): signed by `ca`, for exactly `peer`, and
    /// within its validity window give or take `CLOCK_SKEW`.
    pub fn verify(&self, ca: &PublicKey, peer: &PeerId, now: u64) -> Result<(), CertificateError> {
        if &self.ca != ca {
            return Err(CertificateError::WrongCa(ca_id(&self.ca)));
        }
        if !ca.verify(&signed_bytes(&self.body), &self.signature) {
            return Err(CertificateError::BadSignature);
        }
        if &self.peer != peer {
            return Err(CertificateError::WrongPeer {
                certified: self.peer.to_string(),
                actual: peer.to_string(),
            });
        }
        let skew = CLOCK_SKEW.as_secs();
        if now.saturating_add(skew) < self.not_before {
            return Err(CertificateError::NotYetValid(self.not_before));
        }
        if now > self.not_after.saturating_add(skew) {
            return Err(CertificateError::Expired(self.not_after));
        }
        Ok(())
    }
}

/// How a CA key is shown to people: the peer id its public key would have, which is short, unique and familiar.
pub fn ca_id(ca: &PublicKey) -> String {
    ca.to_peer_id().to_string()
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, body].concat()
}

fn check_name(name: &str) -> Result<(), CertificateError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(CertificateError::InvalidName);
    }
    Ok(())
}

/// What can go wrong with a CA or certificate file.
#[derive(Debug, thiserror::Error)]
pub enum MembershipFileError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("cannot create {path}: {source}")]
    Uncreatable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a CA public key (a protobuf-encoded libp2p public key, as `swarmnode ca init` writes)")]
    NotACaPublicKey { path: String },
    #[error("{path}: {source}")]
    BadCertificate {
        path: String,
        #[source]
        source: CertificateError,
    },
    #[error(transparent)]
    Key(#[from] identity::IdentityError),
}

/// Reads a CA public key file (`ca.pub`).
pub fn load_ca_public_key(path: &Path) -> Result<PublicKey, MembershipFileError> {
    let bytes = files::read(path, "CA public key", MAX_CA_PUBLIC_KEY_FILE)?;
    PublicKey::try_decode_protobuf(&bytes).map_err(|_| MembershipFileError::NotACaPublicKey {
        path: path.display().to_string(),
    })
}

/// Reads a certificate file.
pub fn load_certificate(path: &Path) -> Result<Certificate, MembershipFileError> {
    let bytes = files::read(path, "certificate", MAX_CERTIFICATE_SIZE)?;
    Certificate::decode(&bytes).map_err(|source| MembershipFileError::BadCertificate {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a new CA: `dir/ca.key` (mode 0600) and `dir/ca.pub`; refuses to replace an existing key unless `force`.
pub fn write_new_ca(dir: &Path, force: bool) -> Result<Keypair, MembershipFileError> {
    std::fs::create_dir_all(dir).map_err(|source| MembershipFileError::Uncreatable {
        path: dir.display().to_string(),
        source,
    })?;
    let keypair = Keypair::generate_ed25519();
    let secret = keypair
        .to_protobuf_encoding()
        .map_err(|e| identity::IdentityError::Corrupt {
            path: dir.join("ca.key"),
            reason: e.to_string(),
        })?;
    secret_file::write_secret(&dir.join("ca.key"), &secret, force)?;
    secret_file::write_secret(&dir.join("ca.pub"), &keypair.public().encode_protobuf(), true)?;
    Ok(keypair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn issue(ca: &Keypair, peer: PeerId) -> Certificate {
        Certificate::issue(ca, peer, Some("node-a1"), NOW, NOW + 30 * DAY).unwrap()
    }

    #[test]
    fn an_issued_certificate_round_trips_and_admits_its_peer() {
        let ca = Keypair::generate_ed25519();
        let peer = PeerId::random();
        let certificate = issue(&ca, peer);
        let decoded = Certificate::decode(&certificate.encode()).unwrap();
        assert_eq!(decoded, certificate);
        assert_eq!(decoded.name.as_deref(), Some("node-a1"));
        assert_eq!(decoded.verify(&ca.public(), &peer, NOW + DAY), Ok(()));
    }

    #[test]
    fn every_refusal_has_its_own_reason() {
        let ca = Keypair::generate_ed25519();
        let other_ca = Keypair::generate_ed25519();
        let peer = PeerId::random();
        let certificate = issue(&ca, peer);
        let refusal = |c: &Certificate, ca: &Keypair, peer: &PeerId, now: u64| {
            c.verify(&ca.public(), peer, now).unwrap_err().reason()
        };
        assert_eq!(refusal(&certificate, &other_ca, &peer, NOW), "wrong_ca");
        assert_eq!(refusal(&certificate, &ca, &PeerId::random(), NOW), "wrong_peer");
        assert_eq!(refusal(&certificate, &ca, &peer, NOW - 3600), "not_yet_valid");
        assert_eq!(refusal(&certificate, &ca, &peer, NOW + 31 * DAY), "expired");
        let forged = Certificate::issue(&other_ca, peer, None, NOW, NOW + DAY).unwrap();
        let relabelled = Certificate {
            ca: ca.public(),
            ..forged
        };
        assert_eq!(refusal(&relabelled, &ca, &peer, NOW), "bad_signature");
    }

    #[test]
    fn clocks_may_disagree_by_the_allowed_skew_and_no_more() {
        let ca = Keypair::generate_ed25519();
        let peer = PeerId::random();
        let certificate = Certificate::issue(&ca, peer, None, NOW, NOW + DAY).unwrap();
        let skew = CLOCK_SKEW.as_secs();
        assert!(certificate.verify(&ca.public(), &peer, NOW - skew).is_ok());
        assert!(certificate.verify(&ca.public(), &peer, NOW - skew - 1).is_err());
        assert!(certificate.verify(&ca.public(), &peer, NOW + DAY + skew).is_ok());
        assert!(certificate.verify(&ca.public(), &peer, NOW + DAY + skew + 1).is_err());
    }

    #[test]
    fn a_tampered_body_no_longer_verifies() {
        let ca = Keypair::generate_ed25519();
        let peer = PeerId::random();
        let mut bytes = issue(&ca, peer).encode();
        // Rename the member: the form stays valid, the signature does not.
        let at = bytes.windows(7).position(|w| w == b"node-a1").unwrap();
        bytes[at] = b'N';
        let tampered = Certificate::decode(&bytes).unwrap();
        assert_eq!(
            tampered.verify(&ca.public(), &peer, NOW),
            Err(CertificateError::BadSignature)
        );
    }

    #[test]
    fn bad_bytes_and_fields_are_refused_on_decode() {
        assert_eq!(Certificate::decode(&[]).unwrap_err().reason(), "malformed");
        assert_eq!(
            Certificate::decode(&vec![0; MAX_CERTIFICATE_SIZE + 1])
                .unwrap_err()
                .reason(),
            "too_large"
        );
        let ca = Keypair::generate_ed25519();
        let mut bytes = issue(&ca, PeerId::random()).encode();
        bytes.push(0);
        assert_eq!(Certificate::decode(&bytes).unwrap_err().reason(), "malformed");
        assert_eq!(
            Certificate::issue(&ca, PeerId::random(), Some(""), NOW, NOW)
                .unwrap_err()
                .reason(),
            "invalid_name"
        );
        assert_eq!(
            Certificate::issue(&ca, PeerId::random(), None, NOW, NOW - 1)
                .unwrap_err()
                .reason(),
            "invalid_window"
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Certificate::decode(&bytes);
        }
    }
}

//! The admission exchange `/swarmnode/admission/1.0.0`, as bytes: right after connecting, each side sends its
//! membership certificate as a request and the other answers whether it admits the sender (CBOR, docs/protocol.md).
//! Who is admitted is decided in `policy::admission`.

use std::time::Duration;

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The protocol id. A peer that does not speak it cannot be admitted.
pub const ADMISSION_PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmnode/admission/1.0.0");
/// The only version of the request and response this build reads and writes.
pub const ADMISSION_VERSION: u32 = 1;
/// Largest request or response read from a peer: a certificate plus a few bytes.
pub const MAX_ADMISSION_MESSAGE: u64 = 4096;
/// How long a peer whose certificate we refused stays connected after our answer. Closing at once would reset the
/// socket (it still holds the peer's unread bytes), and the reset discards the answer in flight.
pub const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// "Here is my certificate." Sent once per connection, by both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionRequest {
    pub v: u32,
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
}

/// "I admit you" or "I do not, because …". Unknown keys are ignored, so a later version may add some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionResponse {
    pub v: u32,
    pub admitted: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

impl AdmissionResponse {
    pub fn admitted() -> Self {
        AdmissionResponse {
            v: ADMISSION_VERSION,
            admitted: true,
            reason: None,
        }
    }

    pub fn refused(reason: String) -> Self {
        AdmissionResponse {
            v: ADMISSION_VERSION,
            admitted: false,
            reason: Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_forms_are_the_documented_cbor() {
        let request = AdmissionRequest {
            v: 1,
            certificate: vec![1, 2],
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &request).unwrap();
        // {"v": 1, "certificate": h'0102'}
        assert_eq!(
            hex::encode(&bytes),
            "a26176016b636572746966696361746542".to_owned() + "0102"
        );
        let response: AdmissionResponse =
            cbor4ii::serde::from_slice(&cbor4ii::serde::to_vec(Vec::new(), &AdmissionResponse::admitted()).unwrap())
                .unwrap();
        assert!(response.admitted);
        // A later version's extra key is ignored.
        let extended = hex::decode("a36176016861646d6974746564f465657874726101").unwrap();
        let response: AdmissionResponse = cbor4ii::serde::from_slice(&extended).unwrap();
        assert!(!response.admitted);
        assert_eq!(response.reason, None);
    }
}

//! The leave announcement, `/swarmnode/leave/1.0.0`: a node shutting down tells each connected peer so before it
//! closes its connections, and they mark it `left` instead of redialling it. It is a libp2p request-response
//! protocol with CBOR bodies (the `cbor4ii` codec of `libp2p-request-response`): one `LeaveNotice` per stream,
//! answered by one `LeaveAck`, so the leaving node knows when every peer has heard it and can stop at once.
//! `docs/protocol.md` is the normative description and must change together with this file.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The protocol id. Peers that do not speak it (other implementations) simply see us disconnect.
pub const LEAVE_PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmnode/leave/1.0.0");
/// The only version of the notice and the ack this build reads and writes.
pub const LEAVE_VERSION: u32 = 1;
/// Largest notice or ack read from a peer, in bytes: both are a few bytes, so anything longer is not ours.
pub const MAX_LEAVE_MESSAGE: u64 = 256;

/// "I am shutting down." Sent on a fresh stream to every connected peer. Unknown keys are ignored, so a later
/// version may add some without breaking this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveNotice {
    pub v: u32,
}

/// "Heard you." The receiver answers once it has recorded the departure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveAck {
    pub v: u32,
}

impl LeaveNotice {
    /// The notice this build sends.
    pub const CURRENT: LeaveNotice = LeaveNotice { v: LEAVE_VERSION };

    /// Whether this build understands the notice; one of another version is answered but not acted on.
    pub fn is_supported(&self) -> bool {
        self.v == LEAVE_VERSION
    }
}

impl LeaveAck {
    /// The ack this build sends.
    pub const CURRENT: LeaveAck = LeaveAck { v: LEAVE_VERSION };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_and_ack_encode_as_documented() {
        // docs/protocol.md: a1 61 76 01 — a map of one entry, "v": 1.
        let expected = [0xa1, 0x61, 0x76, 0x01];
        let notice = cbor4ii::serde::to_vec(Vec::new(), &LeaveNotice::CURRENT).unwrap();
        let ack = cbor4ii::serde::to_vec(Vec::new(), &LeaveAck::CURRENT).unwrap();
        assert_eq!(notice, expected);
        assert_eq!(ack, expected);
    }

    #[test]
    fn unknown_keys_are_ignored_and_other_versions_recognised() {
        // {"v": 2, "reason": "x"}
        let later = [
            0xa2, 0x61, 0x76, 0x02, 0x66, b'r', b'e', b'a', b's', b'o', b'n', 0x61, b'x',
        ];
        let notice: LeaveNotice = cbor4ii::serde::from_slice(&later).unwrap();
        assert_eq!(notice, LeaveNotice { v: 2 });
        assert!(!notice.is_supported());
        assert!(LeaveNotice::CURRENT.is_supported());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&[][..], &[0xff], &[0xa1, 0x61, 0x76], &[0x01]] {
            assert!(cbor4ii::serde::from_slice::<LeaveNotice>(bytes).is_err(), "{bytes:?}");
        }
    }
}

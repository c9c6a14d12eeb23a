//! The inbound gossip verdict, as one pure decision. Every gossip message passes five checks, in this order: is the
//! sending peer admitted, is it within its rate limit, does the data decode (one envelope or a batch), does every
//! envelope's origin equal the signed publisher, and was each (origin, id) already delivered within the dedup window.
//! `GossipGate` owns the state those checks need (the rate limiter and the recent ids) and answers with a `Verdict`;
//! the event loop only reports it to gossipsub, counts it and emits the fresh envelopes.

use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::{dedup::RecentIds, rate_limit::PeerRateLimiter};
use crate::wire::{batch::decode_message, envelope::Envelope};

/// One gossip message as gossipsub hands it over.
#[derive(Debug, Clone, Copy)]
pub struct InboundMessage<'a> {
    /// The peer that forwarded it to us.
    pub source: PeerId,
    /// The publisher whose signature gossipsub checked (strict mode: always present for a valid message).
    pub publisher: Option<PeerId>,
    pub data: &'a [u8],
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it and deliver `fresh`, in order; `repeats` envelopes in it were already delivered.
    Accept { fresh: Vec<Envelope>, repeats: usize },
    /// Drop it, do not forward it, and hold it against the sending peer's score.
    Reject { reason: &'static str, detail: String },
    /// Drop it quietly: not forwarded, not held against anyone.
    Ignore { reason: IgnoreReason },
}

/// Why a message is dropped without penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Over the sending peer's rate limit: it may be relaying someone else's burst.
    RateLimited,
    /// Every envelope in it was already delivered within the dedup window (`repeats` of them).
    AllRepeats { repeats: usize },
}

/// The state behind the verdict, bounded: one rate-limit bucket per connected peer, and at most `dedup_capacity`
/// delivered ids, each for `dedup_window`.
#[derive(Debug)]
pub struct GossipGate {
    max_message_size: usize,
    rate_limiter: Option<PeerRateLimiter>,
    delivered: RecentIds<(PeerId, String), ()>,
}

impl GossipGate {
    /// `peer_message_rate` 0 means no rate limit.
    pub fn new(max_message_size: usize, peer_message_rate: u32, dedup_window: Duration, dedup_capacity: usize) -> Self {
        GossipGate {
            max_message_size,
            rate_limiter: (peer_message_rate > 0).then(|| PeerRateLimiter::new(peer_message_rate)),
            delivered: RecentIds::new(dedup_window, dedup_capacity),
        }
    }

    /// The verdict on `message` at `now`; `source_admitted` says whether the forwarding peer is a member (always
    /// true without a CA). Only an accepted message's fresh ids are remembered as delivered.
    pub fn judge(&mut self, message: &InboundMessage<'_>, source_admitted: bool, now: Instant) -> Verdict {
        if !source_admitted {
            // Gossipsub already drops what a graylisted peer sends; this holds even if its score were to recover.
            return Verdict::Reject {
                reason: "unadmitted",
                detail: "the sending peer is not admitted".to_owned(),
            };
        }
        if let Some(limiter) = self.rate_limiter.as_mut()
            && !limiter.allow(message.source, now)
        {
            return Verdict::Ignore {
                reason: IgnoreReason::RateLimited,
            };
        }
        let envelopes = match decode_message(message.data, self.max_message_size) {
            Ok(envelopes) => envelopes,
            Err(e) => {
                return Verdict::Reject {
                    reason: e.reason(),
                    detail: e.to_string(),
                };
            }
        };
        if envelopes.iter().any(|e| Some(e.origin) != message.publisher) {
            return Verdict::Reject {
                reason: "origin_mismatch",
                detail: "envelope origin is not the signed publisher".to_owned(),
            };
        }
        let total = envelopes.len();
        let fresh: Vec<Envelope> = envelopes
            .into_iter()
            .filter(|envelope| self.delivered.insert((envelope.origin, envelope.id.clone()), (), now))
            .collect();
        let repeats = total - fresh.len();
        if fresh.is_empty() {
            return Verdict::Ignore {
                reason: IgnoreReason::AllRepeats { repeats },
            };
        }
        Verdict::Accept { fresh, repeats }
    }

    /// A peer is gone: its rate-limit bucket goes with it.
    pub fn forget(&mut self, peer: &PeerId) {
        if let Some(limiter) = self.rate_limiter.as_mut() {
            limiter.forget(peer);
        }
    }

    /// Rate-limit buckets held now (one per peer that sent gossip since it connected).
    pub fn rate_limited_peers(&self) -> usize {
        self.rate_limiter.as_ref().map_or(0, PeerRateLimiter::len)
    }

    /// Delivered (origin, id) pairs remembered now.
    pub fn delivered_ids(&self) -> usize {
        self.delivered.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::batch::encode_batch;

    const LIMIT: usize = 1 << 16;
    const WINDOW: Duration = Duration::from_secs(60);

    fn envelope(origin: PeerId, id: &str) -> (Envelope, Vec<u8>) {
        let mut envelope = Envelope::new(origin, "text/plain", id.as_bytes().to_vec(), 1);
        envelope.id = id.to_owned();
        let bytes = envelope.encode(LIMIT).unwrap();
        (envelope, bytes)
    }

    type Case<'a> = (&'a str, &'a [u8], Option<PeerId>, bool, &'a str);

    fn gate(rate: u32) -> GossipGate {
        GossipGate::new(LIMIT, rate, WINDOW, 100)
    }

    fn reason(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Accept { .. } => "accept".to_owned(),
            Verdict::Reject { reason, .. } => format!("reject:{reason}"),
            Verdict::Ignore {
                reason: IgnoreReason::RateLimited,
            } => "ignore:rate_limited".to_owned(),
            Verdict::Ignore {
                reason: IgnoreReason::AllRepeats { .. },
            } => "ignore:repeats".to_owned(),
        }
    }

    #[test]
    fn every_reason_in_one_table() {
        let publisher = PeerId::random();
        let source = PeerId::random();
        let (_, good) = envelope(publisher, "a");
        let (_, other_origin) = envelope(PeerId::random(), "b");
        let mut trailing = good.clone();
        trailing.push(0);
        let oversized = vec![0u8; LIMIT + 1];
        // (what, data, signed publisher, source admitted, expected verdict)
        let cases: [Case<'_>; 8] = [
            ("a valid envelope", &good, Some(publisher), true, "accept"),
            (
                "from an unadmitted peer",
                &good,
                Some(publisher),
                false,
                "reject:unadmitted",
            ),
            ("not CBOR", b"\xff\xff", Some(publisher), true, "reject:malformed"),
            (
                "bytes after the envelope",
                &trailing,
                Some(publisher),
                true,
                "reject:trailing_bytes",
            ),
            (
                "over the size limit",
                &oversized,
                Some(publisher),
                true,
                "reject:too_large",
            ),
            (
                "origin is someone else",
                &other_origin,
                Some(publisher),
                true,
                "reject:origin_mismatch",
            ),
            ("no signed publisher", &good, None, true, "reject:origin_mismatch"),
            (
                "a batch with one foreign origin",
                &encode_batch(&[good.clone(), other_origin.clone()]),
                Some(publisher),
                true,
                "reject:origin_mismatch",
            ),
        ];
        for (what, data, signed, admitted, expected) in cases {
            let message = InboundMessage {
                source,
                publisher: signed,
                data,
            };
            let verdict = gate(0).judge(&message, admitted, Instant::now());
            assert_eq!(reason(&verdict), expected, "{what}");
        }
    }

    #[test]
    fn a_repeated_id_is_ignored_and_a_batch_delivers_only_its_fresh_envelopes() {
        let publisher = PeerId::random();
        let (a, a_bytes) = envelope(publisher, "a");
        let (b, b_bytes) = envelope(publisher, "b");
        let mut gate = gate(0);
        let now = Instant::now();
        let message = |data| InboundMessage {
            source: PeerId::random(),
            publisher: Some(publisher),
            data,
        };
        let first = gate.judge(&message(&a_bytes), true, now);
        assert_eq!(
            first,
            Verdict::Accept {
                fresh: vec![a],
                repeats: 0
            }
        );
        assert_eq!(
            gate.judge(&message(&a_bytes), true, now),
            Verdict::Ignore {
                reason: IgnoreReason::AllRepeats { repeats: 1 }
            }
        );
        let batch = encode_batch(&[a_bytes.clone(), b_bytes]);
        assert_eq!(
            gate.judge(&message(&batch), true, now),
            Verdict::Accept {
                fresh: vec![b],
                repeats: 1
            }
        );
        assert_eq!(gate.delivered_ids(), 2);
        let later = now + WINDOW;
        assert!(
            matches!(gate.judge(&message(&a_bytes), true, later), Verdict::Accept { .. }),
            "past the window an id is fresh again"
        );
    }

    #[test]
    fn a_peer_over_its_rate_is_ignored_until_its_bucket_refills() {
        let publisher = PeerId::random();
        let source = PeerId::random();
        let mut gate = gate(2);
        let now = Instant::now();
        let envelopes: Vec<Vec<u8>> = (0..4).map(|i| envelope(publisher, &i.to_string()).1).collect();
        let verdicts: Vec<String> = envelopes
            .iter()
            .map(|data| {
                let message = InboundMessage {
                    source,
                    publisher: Some(publisher),
                    data,
                };
                reason(&gate.judge(&message, true, now))
            })
            .collect();
        assert_eq!(
            verdicts,
            ["accept", "accept", "ignore:rate_limited", "ignore:rate_limited"]
        );
        let message = InboundMessage {
            source,
            publisher: Some(publisher),
            data: &envelopes[3],
        };
        assert_eq!(
            reason(&gate.judge(&message, true, now + Duration::from_secs(1))),
            "accept"
        );
        assert_eq!(gate.rate_limited_peers(), 1);
        gate.forget(&source);
        assert_eq!(gate.rate_limited_peers(), 0);
    }

    #[test]
    fn a_rejected_message_remembers_no_id() {
        let publisher = PeerId::random();
        let (_, good) = envelope(publisher, "a");
        let (_, foreign) = envelope(PeerId::random(), "b");
        let mut gate = gate(0);
        let batch = encode_batch(&[good.clone(), foreign]);
        let message = |data| InboundMessage {
            source: PeerId::random(),
            publisher: Some(publisher),
            data,
        };
        assert_eq!(
            reason(&gate.judge(&message(&batch), true, Instant::now())),
            "reject:origin_mismatch"
        );
        assert_eq!(gate.delivered_ids(), 0);
        assert_eq!(reason(&gate.judge(&message(&good), true, Instant::now())), "accept");
    }
}

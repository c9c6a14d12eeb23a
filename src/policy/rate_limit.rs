//! Per-peer inbound message rate limits: a token bucket for each peer that sends us gossip. A flood beyond the rate
//! is dropped at once (never queued), so one peer cannot make the node buffer, validate or forward more than its
//! share. Pure: the caller passes `now`.

use std::{collections::HashMap, time::Instant};

use libp2p::PeerId;

/// Tokens per peer: refilled at `rate` per second up to `burst`.
#[derive(Debug)]
pub struct PeerRateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<PeerId, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl PeerRateLimiter {
    /// `rate` messages per second per peer, with bursts of up to one second's worth (at least one message).
    pub fn new(rate: u32) -> Self {
        PeerRateLimiter {
            rate: f64::from(rate),
            burst: f64::from(rate.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether one more message from `peer` at `now` is within its rate (and if so, counts it).
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets a disconnected peer, so the table holds connected peers only.
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }

    /// Peers with a bucket now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_peer() {
        let start = Instant::now();
        let mut limiter = PeerRateLimiter::new(10);
        let (flooder, other) = (PeerId::random(), PeerId::random());
        let passed = (0..100).filter(|_| limiter.allow(flooder, start)).count();
        assert_eq!(passed, 10, "one second's worth at once");
        assert!(limiter.allow(other, start), "another peer has its own bucket");
        assert!(!limiter.allow(flooder, start + Duration::from_millis(50)));
        assert!(limiter.allow(flooder, start + Duration::from_millis(100)));
        // A long pause refills to the burst, no more.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| limiter.allow(flooder, later)).count(), 10);
    }

    #[test]
    fn a_forgotten_peer_starts_with_a_full_bucket() {
        let now = Instant::now();
        let mut limiter = PeerRateLimiter::new(1);
        let peer = PeerId::random();
        assert!(limiter.allow(peer, now));
        assert!(!limiter.allow(peer, now));
        limiter.forget(&peer);
        assert!(limiter.allow(peer, now));
    }
}

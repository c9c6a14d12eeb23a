//! Clock helpers. Events and envelopes carry unix milliseconds so that any consumer, in any language, can compare
//! them without knowing our clock types. Deadlines are `Instant`s computed by `deadline`, which saturates: `Instant +
//! Duration` panics when the sum does not fit, and a delay comes from configuration (bounded, but never trusted to
//! be) or from a peer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The farthest a deadline is set: a century is "never" for a node, and keeps every deadline far from `Instant`'s
/// end, where timers that round it up (tokio adds most of a millisecond) would overflow.
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + delay`, at most `FAR_FUTURE` ahead, or, when even that does not fit in an `Instant`, the farthest instant
/// that does (within a factor of two): a deadline too far to represent is one that never comes, and is treated so.
pub fn deadline(now: Instant, delay: Duration) -> Instant {
    let mut step = delay.min(FAR_FUTURE);
    loop {
        if let Some(at) = now.checked_add(step) {
            return at;
        }
        step /= 2;
    }
}

/// Milliseconds since the unix epoch; 0 for a clock set before 1970 rather than a panic.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The current wall-clock time in unix milliseconds.
pub fn now_unix_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        let far = deadline(now, Duration::MAX);
        assert_eq!(far, now + FAR_FUTURE, "a century ahead at most");
        assert!(
            far.checked_add(FAR_FUTURE * 1000).is_some(),
            "far from the end of Instant"
        );
        assert!(deadline(far, Duration::MAX) >= far, "and from there on");
    }

    #[test]
    fn times_before_1970_are_zero() {
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
    }
}

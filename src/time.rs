//! Wall-clock helpers. Events and envelopes carry unix milliseconds so that any consumer, in any language, can compare
//! them without knowing our clock types.

use std::time::{SystemTime, UNIX_EPOCH};

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

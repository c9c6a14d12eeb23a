//! The replicated map's settings: `--max-value-size`, `--max-state-bytes`, `--max-clock-drift`, `--sync-interval`,
//! `--sync-peers`, `--tombstone-ttl`. Each has a range checked at start, so a value that passes cannot overflow a
//! deadline or reserve an absurd amount of memory.

use std::{ops::RangeInclusive, time::Duration};

use super::{
    ConfigError,
    bounds::{count, duration},
};
use crate::wire::state::MAX_VALUE_LIMIT;

/// `--max-value-size`: one value must fit one gossip delta.
pub const MAX_VALUE_SIZE: RangeInclusive<usize> = 1..=MAX_VALUE_LIMIT;
/// `--max-state-bytes`: keys, values and bookkeeping held in memory (and on disk).
pub const MAX_STATE_BYTES: RangeInclusive<usize> = (1 << 20)..=(16 << 30);
/// `--max-clock-drift`: how far ahead of our clock a remote write's time may be.
pub const MAX_CLOCK_DRIFT: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(3600);
/// `--sync-interval`: periodic anti-entropy rounds.
pub const SYNC_INTERVAL: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(86_400);
/// `--sync-peers`: members pulled from each round.
pub const SYNC_PEERS: RangeInclusive<usize> = 1..=64;
/// `--tombstone-ttl`: the longest a tombstone is kept when some member never confirms it.
pub const TOMBSTONE_TTL: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(365 * 86_400);

/// The state settings of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    pub max_value_size: usize,
    pub max_state_bytes: usize,
    pub max_clock_drift: Duration,
    pub sync_interval: Duration,
    pub sync_peers: usize,
    pub tombstone_ttl: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            max_value_size: 64 << 10,
            max_state_bytes: 256 << 20,
            max_clock_drift: Duration::from_millis(500),
            sync_interval: Duration::from_secs(10),
            sync_peers: 3,
            tombstone_ttl: Duration::from_secs(86_400),
        }
    }
}

impl StateConfig {
    /// The largest delta message on the state topic: one value of the largest size with its key and framing.
    pub fn max_delta_bytes(&self) -> usize {
        self.max_value_size + crate::wire::state::MAX_KEY + 1024
    }

    /// Checks every setting against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        count("max-value-size", self.max_value_size, MAX_VALUE_SIZE)?;
        count("max-state-bytes", self.max_state_bytes, MAX_STATE_BYTES)?;
        duration("max-clock-drift", self.max_clock_drift, MAX_CLOCK_DRIFT)?;
        duration("sync-interval", self.sync_interval, SYNC_INTERVAL)?;
        count("sync-peers", self.sync_peers, SYNC_PEERS)?;
        duration("tombstone-ttl", self.tombstone_ttl, TOMBSTONE_TTL)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_range_is_enforced() {
        let config = StateConfig::default();
        assert_eq!(config.validate(), Ok(()));
        let cases: [(&str, StateConfig); 5] = [
            (
                "max-value-size",
                StateConfig {
                    max_value_size: 0,
                    ..config.clone()
                },
            ),
            (
                "max-state-bytes",
                StateConfig {
                    max_state_bytes: 10,
                    ..config.clone()
                },
            ),
            (
                "max-clock-drift",
                StateConfig {
                    max_clock_drift: Duration::ZERO,
                    ..config.clone()
                },
            ),
            (
                "sync-interval",
                StateConfig {
                    sync_interval: Duration::from_millis(1),
                    ..config.clone()
                },
            ),
            (
                "tombstone-ttl",
                StateConfig {
                    tombstone_ttl: Duration::ZERO,
                    ..config.clone()
                },
            ),
        ];
        for (flag, bad) in cases {
            let error = bad.validate().unwrap_err();
            assert!(error.to_string().contains(flag), "{error}");
        }
    }
}

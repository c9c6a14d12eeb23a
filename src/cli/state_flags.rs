//! The `run` flags of the replicated map (`StateArgs`): value and state size limits, the clock drift refused, the
//! anti-entropy interval and fan-out, and how long tombstones are kept at most. Ranges are checked with the rest of
//! the configuration (`config::state`).

use std::time::Duration;

use clap::Args;

use crate::config::{self, state::StateConfig};

#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Largest value of one key in the replicated state.
    #[arg(long, env = "SWARMNODE_MAX_VALUE_SIZE", default_value = "64KiB", value_parser = config::parse_size)]
    pub max_value_size: usize,
    /// Most bytes the replicated state holds (keys, values, tombstones and bookkeeping).
    #[arg(long, env = "SWARMNODE_MAX_STATE_BYTES", default_value = "256MiB", value_parser = config::parse_size)]
    pub max_state_bytes: usize,
    /// A remote write whose clock is further ahead of ours than this is refused.
    #[arg(long, env = "SWARMNODE_MAX_CLOCK_DRIFT", default_value = "500ms", value_parser = config::parse_duration)]
    pub max_clock_drift: Duration,
    /// How often the state is compared with a few random members (anti-entropy), with ±20 % jitter.
    #[arg(long, env = "SWARMNODE_SYNC_INTERVAL", default_value = "10s", value_parser = config::parse_duration)]
    pub sync_interval: Duration,
    /// Members compared with in each anti-entropy round.
    #[arg(long, env = "SWARMNODE_SYNC_PEERS", default_value_t = 3)]
    pub sync_peers: usize,
    /// Longest a tombstone is kept when some member never confirms it holds it.
    #[arg(long, env = "SWARMNODE_TOMBSTONE_TTL", default_value = "24h", value_parser = config::parse_duration)]
    pub tombstone_ttl: Duration,
}

impl StateArgs {
    pub fn to_config(&self) -> StateConfig {
        StateConfig {
            max_value_size: self.max_value_size,
            max_state_bytes: self.max_state_bytes,
            max_clock_drift: self.max_clock_drift,
            sync_interval: self.sync_interval,
            sync_peers: self.sync_peers,
            tombstone_ttl: self.tombstone_ttl,
        }
    }
}

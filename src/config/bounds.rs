//! The range of every duration, size and count in `NodeConfig`, checked by `NodeConfig::validate`. Each upper bound
//! is far beyond any sensible setting and far below what deadline arithmetic can hold (`Instant + Duration` here, in
//! libp2p and in its timers panics on overflow) or what memory can hold, so a value that passes validation can
//! neither overflow a deadline nor reserve an absurd amount. The errors name the flag and its range;
//! docs/security.md ("Files and configuration") lists them.

use std::{fmt::Display, ops::RangeInclusive, time::Duration};

use super::{ConfigError, MAX_EVENT_BUFFER_BYTES, MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE, NodeConfig};
use crate::node::EVENT_OVERHEAD;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// `--heartbeat`: the ping interval.
pub const HEARTBEAT: RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(HOUR);
/// `--peer-timeout` (it must also be longer than the heartbeat).
pub const PEER_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(20)..=Duration::from_secs(DAY);
/// `--kad-refresh`.
pub const KAD_REFRESH: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(DAY);
/// `--reconnect-attempts`: past a thousand, the capped backoff makes more attempts meaningless.
pub const RECONNECT_ATTEMPTS: RangeInclusive<u32> = 0..=1000;
/// `--reconnect-backoff`: the first redial delay.
pub const RECONNECT_BACKOFF: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(HOUR);
/// `--reconnect-backoff-max` (it must also be at least the first delay).
pub const RECONNECT_BACKOFF_MAX: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(DAY);
/// `--forget-after`: past a month a removed peer is as good as never forgotten.
pub const FORGET_AFTER: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(30 * DAY);
/// `--max-known-peers`: each remembered peer costs up to a few KiB.
pub const MAX_KNOWN_PEERS: RangeInclusive<usize> = 1..=100_000;
/// `--dial-timeout`.
pub const DIAL_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(5 * MINUTE);
/// `--admission-timeout`: how long an unadmitted peer may hold a connection.
pub const ADMISSION_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(10 * MINUTE);
/// `--ban-duration`.
pub const BAN_DURATION: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(30 * DAY);
/// `--dedup-window` (0 remembers nothing; the ids kept are capped by count as well).
pub const DEDUP_WINDOW: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(DAY);
/// `--batch-window` when on: tokio's timers tick in milliseconds, and a publish waits up to the window.
pub const BATCH_WINDOW: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(MINUTE);
/// `--max-peers`.
pub const MAX_PEERS: RangeInclusive<u32> = 1..=10_000;
/// `--max-pending-incoming` and `--max-pending-outgoing`.
pub const MAX_PENDING: RangeInclusive<u32> = 1..=10_000;
/// `--max-pending-per-ip` and `--max-established-per-ip`.
pub const PER_IP: RangeInclusive<u32> = 1..=10_000;
/// `--handshake-timeout` when given (it must also be shorter than `--dial-timeout`, so the longest is the longest dial
/// timeout): a handshake on a LAN takes milliseconds.
pub const HANDSHAKE_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(50)..=Duration::from_secs(5 * MINUTE);
/// `--max-topics`: topics tracked per peer, each name up to 256 bytes (it must also cover the `--topic` list).
pub const MAX_TOPICS: RangeInclusive<usize> = 1..=1024;
/// `--peer-message-rate` (0 is unlimited).
pub const PEER_MESSAGE_RATE: RangeInclusive<u32> = 0..=1_000_000;
/// `--gossip-ip-colocation-threshold` (0 turns the penalty off).
pub const GOSSIP_IP_COLOCATION_THRESHOLD: RangeInclusive<u32> = 0..=10_000;
/// `--listen` addresses.
pub const LISTEN_ADDRESSES: RangeInclusive<usize> = 1..=64;
/// `--bootstrap` peers: each is redialled while the routing table is empty.
pub const BOOTSTRAP_PEERS: RangeInclusive<usize> = 0..=1024;
/// Peers on the allow list, and on the deny list (flags and file together).
pub const LISTED_PEERS: RangeInclusive<usize> = 0..=100_000;

/// Checks every duration, size and count of `config` against its range.
pub(super) fn check(config: &NodeConfig) -> Result<(), ConfigError> {
    let liveness = &config.liveness;
    count("listen", config.listen.len(), LISTEN_ADDRESSES)?;
    count("bootstrap", config.bootstrap.len(), BOOTSTRAP_PEERS)?;
    if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&config.max_message_size) {
        return Err(ConfigError::new(
            "max-message-size",
            format!("must be between {MIN_MESSAGE_SIZE} bytes and {MAX_MESSAGE_SIZE} bytes"),
        ));
    }
    let smallest_event_buffer = config.max_message_size + EVENT_OVERHEAD;
    if !(smallest_event_buffer..=MAX_EVENT_BUFFER_BYTES).contains(&config.event_buffer_bytes) {
        return Err(ConfigError::new(
            "event-buffer-bytes",
            format!(
                "must be between {smallest_event_buffer} bytes (--max-message-size plus {EVENT_OVERHEAD} bytes, \
                 so the largest message's event fits) and {MAX_EVENT_BUFFER_BYTES} bytes (1024MiB)"
            ),
        ));
    }
    duration("heartbeat", config.heartbeat, HEARTBEAT)?;
    duration("peer-timeout", liveness.peer_timeout, PEER_TIMEOUT)?;
    duration("kad-refresh", config.kad_refresh, KAD_REFRESH)?;
    count("reconnect-attempts", liveness.reconnect_attempts, RECONNECT_ATTEMPTS)?;
    duration("reconnect-backoff", liveness.reconnect_backoff, RECONNECT_BACKOFF)?;
    duration(
        "reconnect-backoff-max",
        liveness.reconnect_backoff_max,
        RECONNECT_BACKOFF_MAX,
    )?;
    duration("forget-after", liveness.forget_after, FORGET_AFTER)?;
    count("max-known-peers", liveness.max_known_peers, MAX_KNOWN_PEERS)?;
    duration("dial-timeout", config.dial_timeout, DIAL_TIMEOUT)?;
    duration("admission-timeout", config.admission_timeout, ADMISSION_TIMEOUT)?;
    duration("ban-duration", config.ban_duration, BAN_DURATION)?;
    duration("dedup-window", config.dedup_window, DEDUP_WINDOW)?;
    if let Some(window) = config.batch_window
        && !BATCH_WINDOW.contains(&window)
    {
        return Err(ConfigError::new(
            "batch-window",
            format!("must be off or {}", between(BATCH_WINDOW, show_duration)),
        ));
    }
    count("max-peers", config.max_peers, MAX_PEERS)?;
    count("max-pending-incoming", config.max_pending_incoming, MAX_PENDING)?;
    count("max-pending-outgoing", config.max_pending_outgoing, MAX_PENDING)?;
    count("max-pending-per-ip", config.max_pending_per_ip, PER_IP)?;
    count("max-established-per-ip", config.max_established_per_ip, PER_IP)?;
    if let Some(timeout) = config.handshake_timeout {
        duration("handshake-timeout", timeout, HANDSHAKE_TIMEOUT)?;
    }
    count("max-topics", config.max_topics, MAX_TOPICS)?;
    count("peer-message-rate", config.peer_message_rate, PEER_MESSAGE_RATE)?;
    count(
        "gossip-ip-colocation-threshold",
        config.gossip_ip_colocation_threshold,
        GOSSIP_IP_COLOCATION_THRESHOLD,
    )?;
    let allowed = config.allow_peers.as_ref().map_or(0, Vec::len);
    count("allow-peer", allowed, LISTED_PEERS)?;
    count("deny-peer", config.deny_peers.len(), LISTED_PEERS)
}

/// `value` within `range`, or an error naming `setting` and the range.
pub(crate) fn duration(
    setting: &'static str,
    value: Duration,
    range: RangeInclusive<Duration>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::new(
        setting,
        format!("must be {}", between(range, show_duration)),
    ))
}

/// `value` within `range`, or an error naming `setting` and the range.
pub(crate) fn count<T: PartialOrd + Display>(
    setting: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::new(
        setting,
        format!("must be {}", between(range, |n| n.to_string())),
    ))
}

fn between<T>(range: RangeInclusive<T>, show: impl Fn(T) -> String) -> String {
    let (low, high) = range.into_inner();
    format!("between {} and {}", show(low), show(high))
}

fn show_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn config() -> NodeConfig {
        NodeConfig::with_data_dir(PathBuf::from("/tmp/swarmnode-test"))
    }

    type Setter = fn(&mut NodeConfig, Duration);

    /// Every duration setting, with how to set it; the other settings are left at their defaults, which the
    /// relations (peer timeout above the heartbeat, backoff cap above the first delay) allow for.
    const DURATIONS: [(&str, RangeInclusive<Duration>, Setter); 11] = [
        ("heartbeat", HEARTBEAT, |c, d| {
            c.heartbeat = d;
            c.liveness.peer_timeout = *PEER_TIMEOUT.end();
        }),
        ("peer-timeout", PEER_TIMEOUT, |c, d| {
            c.liveness.peer_timeout = d;
            c.heartbeat = *HEARTBEAT.start();
        }),
        ("kad-refresh", KAD_REFRESH, |c, d| c.kad_refresh = d),
        ("reconnect-backoff", RECONNECT_BACKOFF, |c, d| {
            c.liveness.reconnect_backoff = d;
            c.liveness.reconnect_backoff_max = *RECONNECT_BACKOFF_MAX.end();
        }),
        ("reconnect-backoff-max", RECONNECT_BACKOFF_MAX, |c, d| {
            c.liveness.reconnect_backoff_max = d;
            c.liveness.reconnect_backoff = *RECONNECT_BACKOFF.start();
        }),
        ("forget-after", FORGET_AFTER, |c, d| c.liveness.forget_after = d),
        ("dial-timeout", DIAL_TIMEOUT, |c, d| c.dial_timeout = d),
        ("admission-timeout", ADMISSION_TIMEOUT, |c, d| c.admission_timeout = d),
        ("ban-duration", BAN_DURATION, |c, d| c.ban_duration = d),
        ("dedup-window", DEDUP_WINDOW, |c, d| c.dedup_window = d),
        ("batch-window", BATCH_WINDOW, |c, d| c.batch_window = Some(d)),
    ];

    #[test]
    fn every_duration_is_valid_at_its_bounds_and_refused_past_them_naming_the_flag_and_range() {
        for (setting, range, set) in DURATIONS {
            for valid in [*range.start(), *range.end()] {
                let mut config = config();
                set(&mut config, valid);
                assert_eq!(config.validate(), Ok(()), "{setting} = {valid:?}");
            }
            let past = [
                range.start().checked_sub(Duration::from_nanos(1)),
                Some(*range.end() + Duration::from_nanos(1)),
                Some(Duration::MAX),
            ];
            for invalid in past.into_iter().flatten() {
                let mut config = config();
                set(&mut config, invalid);
                let error = config.validate().unwrap_err();
                assert_eq!(error.setting, setting, "{setting} = {invalid:?}: {error}");
                let high = show_duration(*range.end());
                assert!(error.to_string().contains(&high), "{error}");
            }
        }
    }

    #[test]
    fn the_issue_s_value_names_the_flag_and_its_range() {
        let mut config = config();
        config.kad_refresh = super::super::parse_duration("300000000000years").unwrap();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid --kad-refresh: must be between 1s and 1day"
        );
    }

    #[test]
    fn every_count_is_valid_at_its_bounds_and_refused_past_them() {
        type CountSetter = fn(&mut NodeConfig, u64);
        let cases: [(&str, u64, u64, CountSetter); 8] = [
            ("reconnect-attempts", 0, 1000, |c, n| {
                c.liveness.reconnect_attempts = n as u32
            }),
            ("max-known-peers", 1, 100_000, |c, n| {
                c.liveness.max_known_peers = n as usize
            }),
            ("max-peers", 1, 10_000, |c, n| c.max_peers = n as u32),
            ("max-pending-incoming", 1, 10_000, |c, n| {
                c.max_pending_incoming = n as u32
            }),
            ("max-pending-outgoing", 1, 10_000, |c, n| {
                c.max_pending_outgoing = n as u32
            }),
            ("max-topics", 1, 1024, |c, n| c.max_topics = n as usize),
            ("peer-message-rate", 0, 1_000_000, |c, n| c.peer_message_rate = n as u32),
            ("gossip-ip-colocation-threshold", 0, 10_000, |c, n| {
                c.gossip_ip_colocation_threshold = n as u32
            }),
        ];
        for (setting, low, high, set) in cases {
            for valid in [low, high] {
                let mut config = config();
                set(&mut config, valid);
                assert_eq!(config.validate(), Ok(()), "{setting} = {valid}");
            }
            for invalid in [low.checked_sub(1), Some(high + 1)].into_iter().flatten() {
                let mut config = config();
                set(&mut config, invalid);
                let error = config.validate().unwrap_err();
                assert_eq!(error.setting, setting, "{setting} = {invalid}");
                assert!(
                    error.to_string().contains(&format!("between {low} and {high}")),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn lists_are_bounded_too() {
        let mut bootstrap = config();
        bootstrap.bootstrap = vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap(); 1025];
        assert_eq!(bootstrap.validate().unwrap_err().setting, "bootstrap");
        let mut listen = config();
        listen.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap(); 65];
        assert_eq!(listen.validate().unwrap_err().setting, "listen");
        let mut deny = config();
        deny.deny_peers = vec![libp2p::PeerId::random(); 100_001];
        assert_eq!(deny.validate().unwrap_err().setting, "deny-peer");
    }
}

//! PerfConfig: whether a node serves `/perf/1.0.0` (`--no-perf` turns it off) and the bounds it serves it under. A
//! perf stream asks us to send bytes and sends us bytes to throw away, so any peer could try to keep us busy: the
//! bounds cap how many streams run at once, how many bytes one may move and how long one may last, stalled or not.
//! Every value is safe (a zero only refuses more), so there is nothing to validate; the defaults are in `wire::perf`.
//! Also the sizes of a run as people write them (`100MiB`, `1GiB`), for the CLI and the API.

use std::{str::FromStr, time::Duration};

use crate::wire::perf::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_STREAM_BYTES, DEFAULT_MAX_STREAMS, DEFAULT_STREAM_TIMEOUT};

/// How a node serves the perf protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfConfig {
    /// Whether the node accepts `/perf/1.0.0` streams; without it a peer's run fails as unsupported.
    pub serve: bool,
    /// Streams served at once; more are reset as they arrive.
    pub max_streams: usize,
    /// Most bytes one stream may ask for, and most it may upload; a stream asking for or sending more is reset.
    pub max_stream_bytes: u64,
    /// Longest one stream may last, start to end.
    pub stream_timeout: Duration,
    /// Longest a stream may go without a read or a write making progress.
    pub idle_timeout: Duration,
}

impl Default for PerfConfig {
    fn default() -> Self {
        PerfConfig {
            serve: true,
            max_streams: DEFAULT_MAX_STREAMS,
            max_stream_bytes: DEFAULT_MAX_STREAM_BYTES,
            stream_timeout: DEFAULT_STREAM_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Parses a perf run's size: `1048576`, `512KiB`, `100MiB`, `1GiB` (also `k`/`kb`, `m`/`mb`, `g`/`gb`, all binary
/// multiples, any case). Unlike `config::parse_size`, gibibytes are allowed: a run may move many.
pub fn parse_byte_count(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number =
        u64::from_str(digits).map_err(|_| format!("{text:?} is not a size (examples: 65536, 100MiB, 1GiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_up_to_gibibytes() {
        assert_eq!(parse_byte_count("0"), Ok(0));
        assert_eq!(parse_byte_count("8388608"), Ok(8 << 20));
        assert_eq!(parse_byte_count("512KiB"), Ok(512 << 10));
        assert_eq!(parse_byte_count("100MiB"), Ok(100 << 20));
        assert_eq!(parse_byte_count(" 1 GiB "), Ok(1 << 30));
        assert_eq!(parse_byte_count("64gb"), Ok(64 << 30));
        for bad in ["", "lots", "1TiB", "-1", "1.5GiB", "99999999999999999999GiB"] {
            assert!(parse_byte_count(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_defaults_are_the_documented_bounds() {
        let config = PerfConfig::default();
        assert!(config.serve);
        assert_eq!(config.max_streams, 4);
        assert_eq!(config.max_stream_bytes, 16 << 30);
        assert_eq!(config.stream_timeout, Duration::from_secs(120));
        assert_eq!(config.idle_timeout, Duration::from_secs(10));
    }
}

//! What one client of the API may cost: how many connections and event streams are served at once, how long a
//! connection may take to send a request head, a body or to read a response, and how far an event stream may fall
//! behind. Every bound has a default, a flag and a range checked here, so a slow, silent or greedy client costs a
//! fixed amount and is dropped on a timer, and no value can make the server's arithmetic overflow.

use std::{ops::RangeInclusive, time::Duration};

use crate::config::{
    ConfigError,
    bounds::{count, duration},
};

/// The API server's limits (flags `--api-max-connections` … `--api-event-stream-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once; one more is answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
    /// Connections served at once to one source address; one more is answered 503 with `Retry-After` and closed.
    pub max_connections_per_ip: usize,
    /// `GET /v1/events` streams open at once; one more is answered 503 with `Retry-After`.
    pub max_event_streams: usize,
    /// Longest a connection may take to send a whole request head: a new connection, one that sends half a request
    /// line or trickles headers, and an idle keep-alive connection waiting for its next request are all closed
    /// after it.
    pub header_timeout: Duration,
    /// Longest a request body may pause between two chunks.
    pub body_timeout: Duration,
    /// Longest a request may take from its head to its answer, body and the node's work included (an event stream
    /// counts until its headers are sent).
    pub request_timeout: Duration,
    /// Longest a client may leave an answer unread: a connection whose writes make no progress for this long (a
    /// stalled event-stream reader, say) is closed.
    pub write_timeout: Duration,
    /// Most bytes of events one stream may have waiting behind the one it is sending; a reader further behind gets a
    /// final `lagged` event and the stream ends.
    pub event_stream_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 128,
            max_connections_per_ip: 32,
            max_event_streams: 32,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(30),
            event_stream_bytes: 8 << 20,
        }
    }
}

/// Connections the API may serve at once: far below any open-file limit a node runs with.
pub const MAX_CONNECTIONS: RangeInclusive<usize> = 1..=10_000;
/// Every API timeout.
pub const TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(3600);
/// `--api-event-stream-bytes`.
pub const EVENT_STREAM_BYTES: RangeInclusive<usize> = (64 << 10)..=(1 << 30);

impl ApiLimits {
    /// Checks every limit; the error names the flag and its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        count("api-max-connections", self.max_connections, MAX_CONNECTIONS)?;
        count(
            "api-max-connections-per-ip",
            self.max_connections_per_ip,
            1..=self.max_connections,
        )?;
        count(
            "api-max-event-streams",
            self.max_event_streams,
            1..=self.max_connections,
        )?;
        duration("api-header-timeout", self.header_timeout, TIMEOUT)?;
        duration("api-body-timeout", self.body_timeout, TIMEOUT)?;
        duration("api-request-timeout", self.request_timeout, TIMEOUT)?;
        duration("api-write-timeout", self.write_timeout, TIMEOUT)?;
        count("api-event-stream-bytes", self.event_stream_bytes, EVENT_STREAM_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bound_names_its_flag() {
        assert!(ApiLimits::default().validate().is_ok());
        type Breakage = fn(&mut ApiLimits);
        let cases: [(&str, Breakage); 10] = [
            ("--api-max-connections-per-ip", |l| {
                l.max_connections_per_ip = l.max_connections + 1
            }),
            ("--api-max-connections", |l| l.max_connections = 0),
            ("--api-max-connections", |l| {
                l.max_connections = MAX_CONNECTIONS.end() + 1
            }),
            ("--api-max-event-streams", |l| l.max_event_streams = 0),
            ("--api-max-event-streams", |l| {
                l.max_event_streams = l.max_connections + 1
            }),
            ("--api-header-timeout", |l| l.header_timeout = Duration::ZERO),
            ("--api-body-timeout", |l| l.body_timeout = Duration::MAX),
            ("--api-request-timeout", |l| {
                l.request_timeout = *TIMEOUT.end() + Duration::from_secs(1)
            }),
            ("--api-write-timeout", |l| l.write_timeout = Duration::from_millis(1)),
            ("--api-event-stream-bytes", |l| l.event_stream_bytes = usize::MAX),
        ];
        for (flag, break_it) in cases {
            let mut limits = ApiLimits::default();
            break_it(&mut limits);
            let error = limits.validate().unwrap_err().to_string();
            assert!(error.contains(flag), "{flag}: {error}");
        }
    }
}

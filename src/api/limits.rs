//! What one client of the API may cost: how many connections and event streams are served at once, how long a
//! connection may take to send a request head, a body or to read a response, and how far an event stream may fall
//! behind. Every bound has a default, a flag and a range checked here, so a slow, silent or greedy client costs a
//! fixed amount and is dropped on a timer, and no value can make the server's arithmetic overflow.

use std::time::Duration;

/// The API server's limits (flags `--api-max-connections` … `--api-event-stream-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once; one more is answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
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
            max_event_streams: 32,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(30),
            event_stream_bytes: 8 << 20,
        }
    }
}

/// Most connections the API serves at once: far below any open-file limit a node runs with.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Longest any API timeout may be.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Largest `--api-event-stream-bytes`.
pub const MAX_EVENT_STREAM_BYTES: usize = 1 << 30;
const MIN_EVENT_STREAM_BYTES: usize = 64 << 10;

impl ApiLimits {
    /// Checks every limit; the error names the flag and its range.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            anyhow::bail!("invalid --api-max-connections: must be between 1 and {MAX_CONNECTIONS}");
        }
        if !(1..=self.max_connections).contains(&self.max_event_streams) {
            anyhow::bail!(
                "invalid --api-max-event-streams: must be between 1 and --api-max-connections ({})",
                self.max_connections
            );
        }
        let timeouts = [
            ("api-header-timeout", self.header_timeout),
            ("api-body-timeout", self.body_timeout),
            ("api-request-timeout", self.request_timeout),
            ("api-write-timeout", self.write_timeout),
        ];
        for (flag, timeout) in timeouts {
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
                anyhow::bail!("invalid --{flag}: must be between 100ms and 1h");
            }
        }
        if !(MIN_EVENT_STREAM_BYTES..=MAX_EVENT_STREAM_BYTES).contains(&self.event_stream_bytes) {
            anyhow::bail!("invalid --api-event-stream-bytes: must be between 64KiB and 1024MiB");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bound_names_its_flag() {
        assert!(ApiLimits::default().validate().is_ok());
        type Breakage = fn(&mut ApiLimits);
        let cases: [(&str, Breakage); 9] = [
            ("--api-max-connections", |l| l.max_connections = 0),
            ("--api-max-connections", |l| l.max_connections = MAX_CONNECTIONS + 1),
            ("--api-max-event-streams", |l| l.max_event_streams = 0),
            ("--api-max-event-streams", |l| {
                l.max_event_streams = l.max_connections + 1
            }),
            ("--api-header-timeout", |l| l.header_timeout = Duration::ZERO),
            ("--api-body-timeout", |l| l.body_timeout = Duration::MAX),
            ("--api-request-timeout", |l| {
                l.request_timeout = MAX_TIMEOUT + Duration::from_secs(1)
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

//! The libp2p perf protocol, `/perf/1.0.0` (libp2p/specs perf/perf.md), as every implementation speaks it: the
//! client opens a stream, writes the number of bytes it wants back as an 8-byte big-endian unsigned integer, uploads
//! its bytes and closes its write side; the server reads the 8 bytes, reads and discards everything up to the end of
//! the stream, then writes the number of bytes asked for and closes. Nothing else is on the wire: no framing, no
//! versions, so the format here must never change (other implementations measure against us). This file holds the
//! id, the header's encoding and our bounds; `node::perf` does the I/O. docs/protocol.md describes the bounds.

use std::time::Duration;

use libp2p::StreamProtocol;

/// The protocol id, the standard one.
pub const PERF_PROTOCOL: StreamProtocol = StreamProtocol::new("/perf/1.0.0");
/// The header's length: a big-endian u64, the bytes the client wants to download.
pub const HEADER_LEN: usize = 8;
/// Bytes read or written at a time, on both sides: the one buffer each stream costs.
pub const CHUNK_SIZE: usize = 64 << 10;
/// Most bytes a run of ours uploads, and most it asks to download: enough for minutes on a fast link.
pub const MAX_RUN_BYTES: u64 = 64 << 30;
/// Most bytes a node serves on one stream unless configured otherwise (and most it reads as the upload): a larger
/// request is refused at once (the stream is reset) rather than sent in part.
pub const DEFAULT_MAX_STREAM_BYTES: u64 = 16 << 30;
/// Perf streams a node serves at once unless configured otherwise; more are reset at once.
pub const DEFAULT_MAX_STREAMS: usize = 4;
/// Longest one served stream may last, start to end, unless configured otherwise.
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a served stream may go without a read or write making progress, unless configured otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one run of ours may take (opening the stream, upload and download), unless the caller gives less.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

// A run of ours can ask for all a node serves by default, and an idle stream is cut before the stream's own bound.
const _: () = assert!(DEFAULT_MAX_STREAM_BYTES <= MAX_RUN_BYTES);
const _: () = assert!(DEFAULT_IDLE_TIMEOUT.as_secs() < DEFAULT_STREAM_TIMEOUT.as_secs());

/// The header asking the server for `download` bytes.
pub fn encode_header(download: u64) -> [u8; HEADER_LEN] {
    download.to_be_bytes()
}

/// The bytes a header asks for.
pub fn decode_header(header: [u8; HEADER_LEN]) -> u64 {
    u64::from_be_bytes(header)
}

/// Whether a run may move `bytes` one way (`direction` names it in the error): at most `MAX_RUN_BYTES`.
pub fn check_run_bytes(direction: &str, bytes: u64) -> Result<(), String> {
    if bytes > MAX_RUN_BYTES {
        return Err(format!(
            "{direction} of {bytes} bytes is more than the {} GiB a perf run moves each way",
            MAX_RUN_BYTES >> 30
        ));
    }
    Ok(())
}

/// Throughput of `bytes` moved in `elapsed`, in bits per second; 0 when nothing was moved or no time passed.
pub fn bits_per_second(bytes: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if bytes == 0 || seconds <= 0.0 {
        return 0.0;
    }
    // 64 GiB in bits is far inside f64's exact integers.
    bytes as f64 * 8.0 / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_download_size_big_endian() {
        assert_eq!(encode_header(1), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(encode_header(0x0102_0304_0506_0708), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(encode_header(u64::MAX), [0xff; 8]);
        for size in [0, 1, 1 << 20, MAX_RUN_BYTES, u64::MAX] {
            assert_eq!(decode_header(encode_header(size)), size);
        }
    }

    #[test]
    fn the_protocol_id_is_the_standard_one() {
        assert_eq!(PERF_PROTOCOL.as_ref(), "/perf/1.0.0");
    }

    #[test]
    fn a_run_moves_at_most_64_gib_each_way() {
        assert_eq!(check_run_bytes("upload", 0), Ok(()));
        assert_eq!(check_run_bytes("upload", MAX_RUN_BYTES), Ok(()));
        let error = check_run_bytes("download", MAX_RUN_BYTES + 1).unwrap_err();
        assert!(
            error.starts_with("download of 68719476737 bytes") && error.contains("64 GiB"),
            "{error}"
        );
    }

    #[test]
    fn throughput_is_bits_per_second_and_zero_without_time_or_bytes() {
        assert_eq!(bits_per_second(1_000_000, Duration::from_secs(2)), 4_000_000.0);
        assert_eq!(
            bits_per_second(1 << 30, Duration::from_millis(500)),
            (1u64 << 33) as f64 * 2.0
        );
        assert_eq!(bits_per_second(0, Duration::from_secs(1)), 0.0);
        assert_eq!(bits_per_second(10, Duration::ZERO), 0.0);
    }
}

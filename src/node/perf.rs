//! Our side of a perf run (`/perf/1.0.0`, the bytes in `wire::perf`): `NodeHandle::perf` reaches the peer through
//! the event loop (connected already, or dialled at the address given, or looked up in the DHT), then opens the
//! stream itself with a `libp2p_stream::Control` and measures outside the loop, so a run of gigabytes never holds the
//! loop up. Runs go one at a time per node (a second is refused as busy) so two runs do not measure each other, and
//! each is bounded in bytes and time. The serving side is `perf_server.rs`; the loop's part of both is here too.

use std::{
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId, Stream, multiaddr::Protocol};
use libp2p_stream::{Control, OpenStreamError};
use tokio::sync::{Semaphore, oneshot};

use super::{
    EventLoop,
    error::NodeError,
    handle::{Command, NodeHandle, Reply},
    views::PerfReport,
};
use crate::wire::perf::{CHUNK_SIZE, PERF_PROTOCOL, RUN_TIMEOUT, bits_per_second, check_run_bytes, encode_header};

/// Whom to measure against: a peer by id (connected, or found in the DHT), or an address ending in `/p2p/<id>`
/// (dialled unless the peer is connected already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerfTarget {
    Peer(PeerId),
    Address { address: Multiaddr, peer: PeerId },
}

impl PerfTarget {
    pub fn peer(&self) -> PeerId {
        match self {
            PerfTarget::Peer(peer) | PerfTarget::Address { peer, .. } => *peer,
        }
    }

    /// What the loop dials when the peer is not connected: the address, or `/p2p/<id>` alone (a DHT lookup).
    fn address(&self) -> Multiaddr {
        match self {
            PerfTarget::Peer(peer) => Multiaddr::empty().with(Protocol::P2p(*peer)),
            PerfTarget::Address { address, .. } => address.clone(),
        }
    }
}

impl FromStr for PerfTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(peer) = PeerId::from_str(text) {
            return Ok(PerfTarget::Peer(peer));
        }
        let address = Multiaddr::from_str(text)
            .map_err(|_| "expected a peer id or a multiaddr ending in /p2p/<peer id>".to_owned())?;
        match address.iter().last() {
            Some(Protocol::P2p(peer)) if address.iter().count() == 1 => Ok(PerfTarget::Peer(peer)),
            Some(Protocol::P2p(peer)) => Ok(PerfTarget::Address { address, peer }),
            _ => Err("the address must end in /p2p/<peer id>, so the peer measured is known".to_owned()),
        }
    }
}

impl fmt::Display for PerfTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PerfTarget::Peer(peer) => write!(f, "{peer}"),
            PerfTarget::Address { address, .. } => write!(f, "{address}"),
        }
    }
}

/// What the perf code asks of the event loop.
#[derive(Debug)]
pub(crate) enum PerfCommand {
    /// Answers at once when the peer `address` names is connected; otherwise dials it, like `Command::Dial`.
    Reach { address: Multiaddr, reply: Reply<PeerId> },
    /// Whether `peer` may be served a perf stream (`perf_server.rs`).
    Standing {
        peer: PeerId,
        reply: oneshot::Sender<Standing>,
    },
}

/// Where a peer stands in admission, as far as perf is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Admitted (or no admission in this swarm): served.
    Member,
    /// Connected and within its admission timeout: served once admitted.
    Waiting,
    /// Refused, gone or never connected: not served.
    Outsider,
}

impl EventLoop {
    pub(super) fn on_perf_command(&mut self, command: PerfCommand) {
        match command {
            PerfCommand::Reach { address, reply } => {
                let connected = match address.iter().last() {
                    Some(Protocol::P2p(peer)) => self.swarm.is_connected(&peer).then_some(peer),
                    _ => None,
                };
                match connected {
                    Some(peer) => {
                        let _ = reply.send(Ok(peer));
                    }
                    None => self.dial(address, reply),
                }
            }
            PerfCommand::Standing { peer, reply } => {
                let standing = match self.membership.as_ref() {
                    None => Standing::Member,
                    Some(membership) if membership.admissions.is_member(&peer) => Standing::Member,
                    Some(membership) if membership.admissions.is_waiting(&peer) => Standing::Waiting,
                    Some(_) => Standing::Outsider,
                };
                let _ = reply.send(standing);
            }
        }
    }
}

/// What a handle needs to run perf: its own control of the stream behaviour, and the one-run-at-a-time permit.
#[derive(Clone)]
pub(crate) struct PerfClient {
    control: Control,
    running: Arc<Semaphore>,
}

impl PerfClient {
    pub(crate) fn new(control: Control) -> Self {
        PerfClient {
            control,
            running: Arc::new(Semaphore::new(1)),
        }
    }
}

impl fmt::Debug for PerfClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerfClient")
            .field("running", &(self.running.available_permits() == 0))
            .finish_non_exhaustive()
    }
}

impl NodeHandle {
    /// Measures throughput to `target` with `/perf/1.0.0`: uploads `upload` bytes, then downloads `download` bytes,
    /// within `RUN_TIMEOUT` (120 s).
    pub async fn perf(&self, target: PerfTarget, upload: u64, download: u64) -> Result<PerfReport, NodeError> {
        self.perf_within(target, upload, download, RUN_TIMEOUT).await
    }

    /// `perf`, within `limit` instead (reaching the peer included). Sizes over `MAX_RUN_BYTES` and this node itself
    /// as the target are invalid; a run while another is under way is `PerfBusy`.
    pub async fn perf_within(
        &self,
        target: PerfTarget,
        upload: u64,
        download: u64,
        limit: Duration,
    ) -> Result<PerfReport, NodeError> {
        let invalid = |reason: String| NodeError::InvalidPerfRequest { reason };
        check_run_bytes("an upload", upload).map_err(invalid)?;
        check_run_bytes("a download", download).map_err(invalid)?;
        let peer = target.peer();
        if peer == self.peer_id {
            return Err(invalid(format!("{peer} is this node itself")));
        }
        let Ok(_running) = self.perf.running.clone().try_acquire_owned() else {
            return Err(NodeError::PerfBusy);
        };
        let mut control = self.perf.control.clone();
        let run = async {
            let address = target.address();
            self.ask(|reply| Command::Perf(PerfCommand::Reach { address, reply }))
                .await??;
            measure(&mut control, peer, upload, download).await
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| NodeError::PerfTimedOut {
                peer,
                seconds: limit.as_secs(),
            })?
    }
}

/// One run on a new stream to `peer`, as the spec has it: the header, the upload, our write side closed, then the
/// download up to the server's end of the stream.
async fn measure(control: &mut Control, peer: PeerId, upload: u64, download: u64) -> Result<PerfReport, NodeError> {
    let mut stream = control
        .open_stream(peer, PERF_PROTOCOL)
        .await
        .map_err(|error| match error {
            OpenStreamError::UnsupportedProtocol(_) => NodeError::PerfUnsupported { peer },
            other => NodeError::PerfFailed {
                peer,
                reason: format!("cannot open a stream: {other}"),
            },
        })?;
    let failed = |doing: String, error: std::io::Error| NodeError::PerfFailed {
        peer,
        reason: format!(
            "{doing}: {error} (a swarmnode resets runs beyond its per-stream cap, 16 GiB by default, and beyond the \
             runs it serves at once)"
        ),
    };
    let started = Instant::now();
    let mut buffer = vec![0u8; CHUNK_SIZE];
    send_upload(&mut stream, &buffer, download, upload)
        .await
        .map_err(|(sent, e)| failed(format!("the upload broke off after {sent} of {upload} bytes"), e))?;
    let uploaded = Instant::now();
    let mut first_byte = None;
    let mut received: u64 = 0;
    loop {
        let read = stream.read(&mut buffer).await.map_err(|e| {
            failed(
                format!("the download broke off after {received} of {download} bytes"),
                e,
            )
        })?;
        if read == 0 {
            break;
        }
        first_byte.get_or_insert_with(Instant::now);
        received = received.saturating_add(read as u64);
        if received > download {
            return Err(NodeError::PerfFailed {
                peer,
                reason: format!("the peer sent more than the {download} bytes asked for"),
            });
        }
    }
    if received < download {
        return Err(NodeError::PerfFailed {
            peer,
            reason: format!("the peer ended the stream after {received} of the {download} bytes asked for"),
        });
    }
    let finished = Instant::now();
    let (upload_time, download_time) = (uploaded - started, finished - uploaded);
    Ok(PerfReport {
        peer,
        upload_bytes: upload,
        download_bytes: received,
        upload_seconds: upload_time.as_secs_f64(),
        download_seconds: download_time.as_secs_f64(),
        time_to_first_byte_ms: first_byte.map(|at| (at - uploaded).as_secs_f64() * 1000.0),
        upload_bits_per_second: bits_per_second(upload, upload_time),
        download_bits_per_second: bits_per_second(received, download_time),
    })
}

/// Writes the header asking for `download` bytes, `upload` bytes from `chunk` over and over, and closes our write
/// side; on failure, the upload bytes sent so far.
async fn send_upload(
    stream: &mut Stream,
    chunk: &[u8],
    download: u64,
    upload: u64,
) -> Result<(), (u64, std::io::Error)> {
    stream.write_all(&encode_header(download)).await.map_err(|e| (0, e))?;
    let mut sent: u64 = 0;
    while sent < upload {
        // At most CHUNK_SIZE, so it fits a usize.
        let length = (upload - sent).min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..length]).await.map_err(|e| (sent, e))?;
        sent += length as u64;
    }
    stream.close().await.map_err(|e| (sent, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_peer_id_or_an_address_ending_in_it() {
        let peer = PeerId::random();
        assert_eq!(peer.to_string().parse(), Ok(PerfTarget::Peer(peer)));
        assert_eq!(format!("/p2p/{peer}").parse(), Ok(PerfTarget::Peer(peer)));
        let text = format!("/ip4/127.0.0.1/tcp/4100/p2p/{peer}");
        let target: PerfTarget = text.parse().unwrap();
        assert_eq!(target.peer(), peer);
        assert_eq!(target.to_string(), text);
        assert_eq!(target.address().to_string(), text);
        assert_eq!(PerfTarget::Peer(peer).address().to_string(), format!("/p2p/{peer}"));
        for bad in ["", "nonsense", "/ip4/127.0.0.1/tcp/4100"] {
            assert!(bad.parse::<PerfTarget>().is_err(), "{bad:?}");
        }
    }
}

//! The serving side of `/perf/1.0.0`: one task accepts the protocol's streams (`libp2p_stream::Control::accept`) and
//! serves each in a task of its own, outside the event loop. Any peer can ask us to send and receive gigabytes, so
//! each stream is bounded (`PerfConfig`): at most `max_streams` at once (one more is reset as it arrives), at most
//! `max_stream_bytes` asked for or uploaded (more is reset, never sent in part), at most `stream_timeout` in all and
//! `idle_timeout` without progress. The upload is read into one fixed buffer and thrown away, so a stream costs that
//! buffer whatever it moves. In a swarm with a CA only members are served, as the other protocols serve only members:
//! a peer still within its admission timeout waits for its verdict (inside the stream's time bound). With a swarm key
//! alone there is nothing to check: pnet wraps the transport, so every connected peer holds the key.

use std::{sync::Arc, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use libp2p_stream::{Control, IncomingStreams};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    task::{JoinHandle, JoinSet},
};

use super::{
    event::EventKind,
    event_bus::{EventReceiver, EventSender, RecvError},
    handle::Command,
    perf::{PerfCommand, Standing},
};
use crate::{
    config::{NodeConfig, perf::PerfConfig},
    metrics::{Metrics, OutcomeLabel},
    time::deadline,
    wire::perf::{CHUNK_SIZE, HEADER_LEN, PERF_PROTOCOL, decode_header},
};

/// Who may be served.
enum Gate {
    /// No admission in this swarm: every connected peer.
    Open,
    /// Members only, asked of the event loop; a peer still waiting for its verdict is given up to `wait` for it.
    Members {
        /// Weak, so the server does not keep the loop running once every handle is gone.
        commands: mpsc::WeakSender<Command>,
        events: EventSender,
        wait: Duration,
    },
}

/// The running server; dropping it (when the event loop ends) stops it and every stream it serves.
pub(super) struct PerfServer {
    task: JoinHandle<()>,
}

impl Drop for PerfServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the server `config` asks for: none with `--no-perf`; members only in a swarm with a CA, asked of the loop
/// behind `commands`.
pub(super) fn start_for(
    config: &NodeConfig,
    control: &mut Control,
    commands: &mpsc::Sender<Command>,
    events: &EventSender,
    metrics: &Metrics,
) -> anyhow::Result<Option<PerfServer>> {
    if !config.perf.serve {
        return Ok(None);
    }
    let gate = if config.admission_enabled() {
        Gate::Members {
            commands: commands.downgrade(),
            events: events.clone(),
            wait: config.admission_timeout,
        }
    } else {
        Gate::Open
    };
    let incoming = control
        .accept(PERF_PROTOCOL)
        .map_err(|e| anyhow::anyhow!("cannot serve {PERF_PROTOCOL}: {e}"))?;
    let task = tokio::spawn(accept(incoming, config.perf.clone(), Arc::new(gate), metrics.clone()));
    Ok(Some(PerfServer { task }))
}

/// Hands each incoming stream to a task of its own while there is a free slot, and resets it when there is none.
/// The tasks live in a `JoinSet`, so they end with this one.
async fn accept(mut incoming: IncomingStreams, limits: PerfConfig, gate: Arc<Gate>, metrics: Metrics) {
    let slots = Arc::new(Semaphore::new(limits.max_streams));
    let mut serving = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, limit = limits.max_streams, "perf stream reset: as many are served already");
                    count(&metrics, Outcome::Busy);
                    // Dropping an open stream resets it.
                    drop(stream);
                    continue;
                };
                serving.spawn(serve(peer, stream, slot, limits.clone(), gate.clone(), metrics.clone()));
            }
            Some(_) = serving.join_next() => {}
        }
    }
}

/// How a served stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Served,
    Busy,
    NotMember,
    TooLarge,
    TimedOut,
    Idle,
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Busy => "busy",
            Outcome::NotMember => "not_member",
            Outcome::TooLarge => "too_large",
            Outcome::TimedOut => "timed_out",
            Outcome::Idle => "idle",
            Outcome::Failed => "failed",
        }
    }
}

fn count(metrics: &Metrics, outcome: Outcome) {
    metrics
        .perf_streams
        .get_or_create(&OutcomeLabel {
            outcome: outcome.label(),
        })
        .inc();
}

/// Serves one stream within `stream_timeout`, holding `slot` until it ends. The stream is closed when served and
/// reset otherwise (dropped open).
async fn serve(
    peer: PeerId,
    mut stream: Stream,
    slot: OwnedSemaphorePermit,
    limits: PerfConfig,
    gate: Arc<Gate>,
    metrics: Metrics,
) {
    metrics.perf_streams_active.inc();
    let bounded = tokio::time::timeout(limits.stream_timeout, async {
        if !gate.admits(peer).await {
            return Err(Outcome::NotMember);
        }
        exchange(&mut stream, &limits).await
    });
    let outcome = match bounded.await {
        Ok(Ok((received, sent))) => {
            tracing::debug!(%peer, received, sent, "perf stream served");
            Outcome::Served
        }
        Ok(Err(outcome)) => outcome,
        Err(_) => Outcome::TimedOut,
    };
    if outcome != Outcome::Served {
        tracing::debug!(%peer, outcome = outcome.label(), "perf stream reset");
    }
    count(&metrics, outcome);
    metrics.perf_streams_active.dec();
    drop(slot);
}

/// The server's half of the protocol: the header, the upload read to its end and thrown away, then the bytes asked
/// for and our end of the stream. Answers (bytes received, bytes sent).
async fn exchange(stream: &mut Stream, limits: &PerfConfig) -> Result<(u64, u64), Outcome> {
    let idle = limits.idle_timeout;
    let mut header = [0u8; HEADER_LEN];
    progress(idle, stream.read_exact(&mut header)).await?;
    let asked = decode_header(header);
    if asked > limits.max_stream_bytes {
        return Err(Outcome::TooLarge);
    }
    let mut buffer = vec![0u8; CHUNK_SIZE];
    let mut received: u64 = 0;
    loop {
        let read = progress(idle, stream.read(&mut buffer)).await?;
        if read == 0 {
            break;
        }
        received = received.saturating_add(read as u64);
        if received > limits.max_stream_bytes {
            return Err(Outcome::TooLarge);
        }
    }
    // What we send is zeros, not the peer's own bytes echoed back.
    buffer.fill(0);
    let mut sent: u64 = 0;
    while sent < asked {
        // At most CHUNK_SIZE, so it fits a usize.
        let length = (asked - sent).min(CHUNK_SIZE as u64) as usize;
        progress(idle, stream.write_all(&buffer[..length])).await?;
        sent += length as u64;
    }
    progress(idle, stream.close()).await?;
    Ok((received, sent))
}

/// One read or write that must make progress within `idle`.
async fn progress<T>(idle: Duration, io: impl Future<Output = std::io::Result<T>>) -> Result<T, Outcome> {
    match tokio::time::timeout(idle, io).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(Outcome::Failed),
        Err(_) => Err(Outcome::Idle),
    }
}

impl Gate {
    /// Whether `peer` may be served: at once without admission; with it, once the loop says it is a member, waiting
    /// at most `wait` for the verdict on a peer still within its admission timeout.
    async fn admits(&self, peer: PeerId) -> bool {
        let Gate::Members { commands, events, wait } = self else {
            return true;
        };
        // Subscribed before asking, so a verdict between the answer and the wait is still seen.
        let mut news = events.subscribe();
        let until = deadline(std::time::Instant::now(), *wait);
        loop {
            match standing(commands, peer).await {
                Some(Standing::Member) => return true,
                Some(Standing::Waiting) => {}
                Some(Standing::Outsider) | None => return false,
            }
            if tokio::time::timeout_at(until.into(), news_about(&mut news, peer))
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

/// The loop's answer about `peer`; `None` once the loop is gone.
async fn standing(commands: &mpsc::WeakSender<Command>, peer: PeerId) -> Option<Standing> {
    let (reply, answer) = oneshot::channel();
    commands
        .upgrade()?
        .send(Command::Perf(PerfCommand::Standing { peer, reply }))
        .await
        .ok()?;
    answer.await.ok()
}

/// Returns on the next event that may change `peer`'s standing (admitted, refused, banned, gone), or when events
/// were missed or the node stopped: then the caller asks again.
async fn news_about(events: &mut EventReceiver, peer: PeerId) {
    loop {
        match events.recv().await {
            Ok(event) => match event.kind {
                EventKind::PeerAdmitted { peer: about, .. }
                | EventKind::PeerRefused { peer: about, .. }
                | EventKind::PeerBanned { peer: about, .. }
                | EventKind::Disconnected { peer: about, .. }
                    if about == peer =>
                {
                    return;
                }
                _ => {}
            },
            Err(RecvError::Lagged(_) | RecvError::Closed) => return,
        }
    }
}

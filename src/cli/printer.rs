//! The stdout event printer of `swarmnode run`: every event as one JSON line, written from a thread of its own
//! through one buffer, flushed whenever it has caught up. `tokio::io::stdout` would hand every write to the blocking
//! pool (two thread hops per event, on the node's cores, in front of every delivery); this thread waits on the event
//! channel and writes a burst of events with one system call. A reader that falls behind is told how many events it
//! missed; a stdout that blocks (a full pipe nobody reads) blocks this thread only, and the event channel's byte
//! budget bounds what waits for it. When the node has stopped, `finish` has the printer write what is left and end.

use std::{
    io::{BufWriter, Write},
    pin::pin,
    sync::mpsc,
    thread,
    time::Duration,
};

use futures::{
    channel::oneshot,
    future::{Either, select},
};

use crate::{
    node::{Event, EventReceiver, RecvError, TryRecvError},
    time::now_unix_ms,
};

/// Past this many buffered bytes a burst is written out even if more events are waiting.
const BURST_BYTES: usize = 256 * 1024;

/// The printer thread, running until the node's event channel closes.
pub struct Printer {
    stop: oneshot::Sender<()>,
    done: mpsc::Receiver<()>,
}

impl Printer {
    /// Starts printing `events` on stdout.
    pub fn start(events: EventReceiver) -> std::io::Result<Printer> {
        let (finished, done) = mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        thread::Builder::new().name("event-printer".into()).spawn(move || {
            let stdout = std::io::stdout();
            futures::executor::block_on(print_events(events, stopped, stdout.lock()));
            let _ = finished.send(());
        })?;
        Ok(Printer { stop, done })
    }

    /// Has the printer write the events still waiting (those of a node that has stopped) and end, waiting for it at
    /// most `within`.
    pub fn finish(self, within: Duration) {
        let _ = self.stop.send(());
        if self.done.recv_timeout(within).is_err() {
            tracing::debug!("the event printer did not finish in time");
        }
    }
}

/// One event (or the news of missed ones) as a JSON line.
fn render(event: Result<Event, u64>) -> Option<String> {
    let line = match event {
        Ok(event) => serde_json::to_string(&event),
        Err(skipped) => Ok(serde_json::json!({"event": "lagged", "ts": now_unix_ms(), "skipped": skipped}).to_string()),
    };
    line.map_err(|e| tracing::error!("cannot render event as JSON: {e}"))
        .ok()
}

/// The next event without waiting: `None` once none is waiting, `Some(None)` when the channel has closed.
fn waiting(events: &mut EventReceiver) -> Option<Option<Result<Event, u64>>> {
    match events.try_recv() {
        Ok(event) => Some(Some(Ok(event))),
        Err(TryRecvError::Lagged(skipped)) => Some(Some(Err(skipped))),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => Some(None),
    }
}

/// Writes `event` as a line; false when `out` failed.
fn write_line(out: &mut impl Write, event: Result<Event, u64>) -> bool {
    let Some(line) = render(event) else { return true };
    match writeln!(out, "{line}") {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("stdout closed ({e}); no more events will be printed");
            false
        }
    }
}

/// Writes each event of `events` as a line on `out` until the channel closes, `out` fails, or `stop` fires (then
/// what is waiting is written first).
async fn print_events(mut events: EventReceiver, mut stop: oneshot::Receiver<()>, out: impl Write) {
    let mut out = BufWriter::with_capacity(BURST_BYTES, out);
    loop {
        let next = match select(pin!(events.recv()), &mut stop).await {
            Either::Left((next, _)) => Some(next),
            Either::Right(_) => None,
        };
        let first = match next {
            Some(Ok(event)) => Ok(event),
            Some(Err(RecvError::Lagged(skipped))) => Err(skipped),
            Some(Err(RecvError::Closed)) => return,
            None => {
                while let Some(Some(event)) = waiting(&mut events) {
                    if !write_line(&mut out, event) {
                        return;
                    }
                }
                let _ = out.flush();
                return;
            }
        };
        let mut event = Some(first);
        let mut closed = false;
        // A burst: every event already waiting, up to half the buffer, in one write.
        while let Some(current) = event.take() {
            if !write_line(&mut out, current) {
                return;
            }
            if out.buffer().len() < BURST_BYTES / 2 {
                match waiting(&mut events) {
                    Some(Some(waiting)) => event = Some(waiting),
                    Some(None) => closed = true,
                    None => {}
                }
            }
        }
        if let Err(e) = out.flush() {
            tracing::warn!("stdout closed ({e}); no more events will be printed");
            return;
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{EventBufferLimits, EventKind, event_channel};
    use std::{
        sync::{Arc, Mutex},
        time::Instant,
    };

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_event_is_one_json_line_in_order_and_the_printer_ends_with_the_channel() {
        let limits = EventBufferLimits {
            bytes: 1 << 20,
            events: 10_000,
            max_age: Duration::from_secs(60),
        };
        let (sender, receiver) = event_channel(limits);
        for i in 0..1000u16 {
            let address = format!("/ip4/127.0.0.1/tcp/{}", 1000 + i).parse().expect("an address");
            sender.send(Event::now(EventKind::Listening { address }), Instant::now());
        }
        drop(sender);
        let captured = Captured::default();
        let (_stop, stopped) = oneshot::channel();
        futures::executor::block_on(print_events(receiver, stopped, captured.clone()));
        let text = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8");
        let ports: Vec<u64> = text
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
                value["address"]
                    .as_str()
                    .and_then(|a| a.rsplit('/').next()?.parse().ok())
                    .expect("a port")
            })
            .collect();
        assert_eq!(ports, (1000..2000).collect::<Vec<u64>>());
    }
}

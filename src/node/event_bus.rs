//! The event channel: every `Event` the loop emits goes to every receiver, like `tokio::sync::broadcast`, but the
//! events kept for receivers are bounded in bytes as well as in count and age. A `message` event carries its payload,
//! so a count alone would let a peer publishing large messages make the node hold `count × message size`. Past any
//! bound the oldest events are dropped, and a receiver that had not read them is told how many it missed
//! (`RecvError::Lagged`) and goes on with the oldest still kept, exactly as a lagging broadcast receiver does. The
//! sender never waits for a receiver.
//!
//! Events are kept whether or not anyone has read them (like `broadcast`), as long as at least one receiver exists;
//! with none, nothing is kept. The time is a parameter (`send`, `expire`), so the bounds are tested with a fake clock.

use std::{
    collections::VecDeque,
    pin::pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use super::event::{Event, EventKind};

/// What an event costs in the buffer beyond its payload: the `Event` itself and its slot (about 250 bytes) and the
/// text it may carry (a message's topic, id and content type are at most 256 + 64 + 128 bytes).
pub const EVENT_OVERHEAD: usize = 1024;

/// The bounds of the event buffer; the oldest events go when any of them is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventBufferLimits {
    /// Most bytes kept (payloads plus `EVENT_OVERHEAD` each).
    pub bytes: usize,
    /// Most events kept.
    pub events: usize,
    /// Longest an event is kept.
    pub max_age: Duration,
}

/// What the buffer holds now, and the most bytes it ever held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buffered {
    pub events: usize,
    pub bytes: usize,
    pub peak_bytes: usize,
}

/// How far a receiver is behind the newest event (`EventReceiver::behind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behind {
    pub events: u64,
    pub bytes: u64,
}

/// Why `EventReceiver::recv` returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// This many events were dropped before this receiver read them; the next `recv` returns the oldest still kept.
    #[error("fell {0} events behind")]
    Lagged(u64),
    /// The node stopped and this receiver has read everything it sent.
    #[error("the event channel is closed")]
    Closed,
}

/// Why `EventReceiver::try_recv` returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    #[error("no new event")]
    Empty,
    #[error("fell {0} events behind")]
    Lagged(u64),
    #[error("the event channel is closed")]
    Closed,
}

/// A new event channel and its first receiver.
pub fn event_channel(limits: EventBufferLimits) -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared {
        limits,
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bytes: 0,
            peak_bytes: 0,
            next: 0,
            total_bytes: 0,
            senders: 1,
            receivers: 0,
        }),
        notify: Notify::new(),
    });
    let sender = EventSender { shared };
    let receiver = sender.subscribe();
    (sender, receiver)
}

/// Emits events; cloning it makes one more sender. The channel closes when the last sender is dropped.
#[derive(Debug)]
pub struct EventSender {
    shared: Arc<Shared>,
}

/// Reads every event sent after it was created, or learns how many it missed.
#[derive(Debug)]
pub struct EventReceiver {
    shared: Arc<Shared>,
    /// The sequence number of the next event this receiver reads.
    next: u64,
}

#[derive(Debug)]
struct Shared {
    limits: EventBufferLimits,
    state: Mutex<State>,
    /// Woken on every send and on close.
    notify: Notify,
}

#[derive(Debug)]
struct State {
    /// The events kept, oldest first; the last one has sequence number `next - 1`.
    queue: VecDeque<Entry>,
    /// The sum of the queue's costs.
    bytes: usize,
    peak_bytes: usize,
    /// The sequence number the next event sent gets.
    next: u64,
    /// The costs of every event ever kept, summed: where the next one starts, in bytes.
    total_bytes: u64,
    senders: usize,
    receivers: usize,
}

#[derive(Debug)]
struct Entry {
    event: Event,
    cost: usize,
    /// Where this event ends in the sum of all costs (`State::total_bytes` just after it was kept).
    end: u64,
    sent: Instant,
}

impl Shared {
    /// The state; a panic elsewhere while it was held cannot have left it half-changed (no code that holds it panics).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The sequence number of the oldest event kept (`next` when none is).
    fn oldest(&self) -> u64 {
        self.next - self.queue.len() as u64
    }

    fn buffered(&self) -> Buffered {
        Buffered {
            events: self.queue.len(),
            bytes: self.bytes,
            peak_bytes: self.peak_bytes,
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(entry) = self.queue.pop_front() {
            self.bytes -= entry.cost;
        }
    }

    /// Drops the events older than the age limit.
    fn expire(&mut self, max_age: Duration, now: Instant) {
        while self
            .queue
            .front()
            .is_some_and(|entry| now.saturating_duration_since(entry.sent) >= max_age)
        {
            self.pop_oldest();
        }
    }
}

/// The bytes `event` takes in the buffer.
fn event_cost(event: &Event) -> usize {
    let payload = match &event.kind {
        EventKind::Message { data, .. } => data.0.len(),
        EventKind::StateChanged { data: Some(data), .. } => data.0.len(),
        _ => 0,
    };
    EVENT_OVERHEAD + payload
}

impl EventSender {
    /// Sends `event` (sent at `now`) to every receiver, dropping the oldest events past the limits; returns what the
    /// buffer then holds. The newest event is always kept, even one larger than the whole byte budget.
    pub fn send(&self, event: Event, now: Instant) -> Buffered {
        let limits = self.shared.limits;
        let buffered = {
            let mut state = self.shared.state();
            state.next += 1;
            if state.receivers > 0 {
                let cost = event_cost(&event);
                state.bytes += cost;
                state.total_bytes += cost as u64;
                let end = state.total_bytes;
                state.queue.push_back(Entry {
                    event,
                    cost,
                    end,
                    sent: now,
                });
                while state.queue.len() > 1 && (state.bytes > limits.bytes || state.queue.len() > limits.events) {
                    state.pop_oldest();
                }
                state.expire(limits.max_age, now);
                state.peak_bytes = state.peak_bytes.max(state.bytes);
            }
            state.buffered()
        };
        self.shared.notify.notify_waiters();
        buffered
    }

    /// Drops the events older than the age limit at `now` (an idle node otherwise keeps its last events for ever);
    /// returns what the buffer then holds.
    pub fn expire(&self, now: Instant) -> Buffered {
        let mut state = self.shared.state();
        state.expire(self.shared.limits.max_age, now);
        state.buffered()
    }

    /// A new receiver of every event sent from now on.
    pub fn subscribe(&self) -> EventReceiver {
        let mut state = self.shared.state();
        state.receivers += 1;
        EventReceiver {
            shared: self.shared.clone(),
            next: state.next,
        }
    }
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        EventSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let closed = {
            let mut state = self.shared.state();
            state.senders -= 1;
            state.senders == 0
        };
        if closed {
            self.shared.notify.notify_waiters();
        }
    }
}

impl EventReceiver {
    /// The next event, waiting for one if need be; `Lagged` when events were dropped before this receiver read them,
    /// `Closed` once the node has stopped and every event kept has been read. Cancel-safe: an event is only taken
    /// when it is returned.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            match take(&self.shared, &mut self.next) {
                Ok(event) => return Ok(event),
                Err(TryRecvError::Lagged(missed)) => return Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => notified.await,
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        take(&self.shared, &mut self.next)
    }

    /// What the channel's buffer holds now (the same for every receiver).
    pub fn buffered(&self) -> Buffered {
        self.shared.state().buffered()
    }

    /// The events kept for this receiver behind the next one it reads: how far it has fallen behind, not counting
    /// the event it is about to take.
    pub fn behind(&self) -> Behind {
        let state = self.shared.state();
        let index = self.next.saturating_sub(state.oldest());
        match usize::try_from(index).ok().and_then(|index| state.queue.get(index)) {
            Some(next) => Behind {
                // Counted from this receiver's next, events already dropped for it included.
                events: state.next - self.next - 1,
                bytes: state.total_bytes - next.end,
            },
            None => Behind::default(),
        }
    }
}

/// The event numbered `next` if it is kept (and `next` moves past it), or why not.
fn take(shared: &Shared, next: &mut u64) -> Result<Event, TryRecvError> {
    let state = shared.state();
    let oldest = state.oldest();
    if *next < oldest {
        let missed = oldest - *next;
        *next = oldest;
        return Err(TryRecvError::Lagged(missed));
    }
    let index = usize::try_from(*next - oldest).unwrap_or(usize::MAX);
    match state.queue.get(index) {
        Some(entry) => {
            *next += 1;
            Ok(entry.event.clone())
        }
        None if state.senders == 0 => Err(TryRecvError::Closed),
        None => Err(TryRecvError::Empty),
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.receivers -= 1;
        if state.receivers == 0 {
            // Nobody can read them any more: a new receiver starts after them.
            state.queue.clear();
            state.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::FutureExt;
    use libp2p::PeerId;

    use super::*;
    use crate::node::event::MessageData;

    const LIMITS: EventBufferLimits = EventBufferLimits {
        bytes: 10 * (EVENT_OVERHEAD + 100),
        events: 100,
        max_age: Duration::from_secs(60),
    };

    fn message(id: usize, size: usize) -> Event {
        Event {
            ts: 0,
            kind: EventKind::Message {
                topic: "t".into(),
                from: PeerId::random(),
                id: id.to_string(),
                content_type: "application/octet-stream".into(),
                sent_at: 0,
                data: MessageData(Bytes::from(vec![0; size])),
            },
        }
    }

    fn id(event: &Event) -> String {
        match &event.kind {
            EventKind::Message { id, .. } => id.clone(),
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn every_receiver_reads_every_event_in_order() {
        let (sender, mut first) = event_channel(LIMITS);
        let mut receivers: Vec<EventReceiver> = (0..5).map(|_| sender.subscribe()).collect();
        let now = Instant::now();
        for i in 0..3 {
            sender.send(message(i, 100), now);
        }
        for receiver in receivers.iter_mut().chain([&mut first]) {
            let ids: Vec<String> = (0..3).map(|_| id(&receiver.try_recv().unwrap())).collect();
            assert_eq!(ids, ["0", "1", "2"]);
            assert_eq!(receiver.try_recv().map(|e| id(&e)), Err(TryRecvError::Empty));
        }
    }

    #[test]
    fn each_receiver_knows_how_many_bytes_it_is_behind_past_its_next_event() {
        let (sender, mut slow) = event_channel(LIMITS);
        let mut fast = sender.subscribe();
        let now = Instant::now();
        let behind = |events, bytes: usize| Behind {
            events,
            bytes: bytes as u64,
        };
        assert_eq!(slow.behind(), behind(0, 0));
        sender.send(message(0, 100), now);
        assert_eq!(slow.behind(), behind(0, 0), "the next event itself does not count");
        sender.send(message(1, 300), now);
        sender.send(message(2, 0), now);
        assert_eq!(slow.behind(), behind(2, 2 * EVENT_OVERHEAD + 300));
        for _ in 0..3 {
            fast.try_recv().unwrap();
        }
        assert_eq!(fast.behind(), behind(0, 0));
        slow.try_recv().unwrap();
        assert_eq!(slow.behind(), behind(1, EVENT_OVERHEAD));
    }

    #[test]
    fn past_the_byte_budget_the_oldest_go_and_a_reader_that_missed_them_is_told_how_many() {
        let (sender, mut receiver) = event_channel(LIMITS);
        let now = Instant::now();
        for i in 0..25 {
            let buffered = sender.send(message(i, 100), now);
            assert!(buffered.bytes <= LIMITS.bytes, "{buffered:?}");
        }
        let buffered = receiver.buffered();
        assert_eq!((buffered.events, buffered.bytes), (10, LIMITS.bytes));
        assert_eq!(buffered.peak_bytes, LIMITS.bytes);
        assert_eq!(receiver.try_recv().map(|e| id(&e)), Err(TryRecvError::Lagged(15)));
        let ids: Vec<String> = (0..10).map(|_| id(&receiver.try_recv().unwrap())).collect();
        assert_eq!(ids.first().map(String::as_str), Some("15"));
        assert_eq!(ids.last().map(String::as_str), Some("24"));
        assert_eq!(receiver.try_recv().map(|e| id(&e)), Err(TryRecvError::Empty));
    }

    #[test]
    fn large_events_displace_many_small_ones_and_small_ones_are_capped_by_count() {
        let limits = EventBufferLimits { events: 4, ..LIMITS };
        let (sender, mut receiver) = event_channel(limits);
        let now = Instant::now();
        for i in 0..6 {
            sender.send(message(i, 0), now);
        }
        assert_eq!(receiver.buffered().events, 4, "the count cap");
        let big = limits.bytes - 2 * EVENT_OVERHEAD;
        let buffered = sender.send(message(6, big), now);
        assert_eq!(buffered.events, 2, "the big one and one small one fit");
        assert_eq!(receiver.try_recv().map(|e| id(&e)), Err(TryRecvError::Lagged(5)));
        assert_eq!(id(&receiver.try_recv().unwrap()), "5");
        assert_eq!(id(&receiver.try_recv().unwrap()), "6");
    }

    #[test]
    fn an_event_larger_than_the_budget_is_still_delivered_alone() {
        let (sender, mut receiver) = event_channel(LIMITS);
        let now = Instant::now();
        sender.send(message(0, 10), now);
        let buffered = sender.send(message(1, LIMITS.bytes), now);
        assert_eq!(buffered.events, 1);
        assert_eq!(receiver.try_recv().map(|e| id(&e)), Err(TryRecvError::Lagged(1)));
        assert_eq!(id(&receiver.try_recv().unwrap()), "1");
    }

    #[test]
    fn events_older_than_the_age_limit_are_dropped() {
        let (sender, mut receiver) = event_channel(LIMITS);
        let start = Instant::now();
        sender.send(message(0, 10), start);
        sender.send(message(1, 10), start + Duration::from_secs(30));
        assert_eq!(sender.expire(start + Duration::from_secs(59)).events, 2);
        let buffered = sender.expire(start + Duration::from_secs(60));
        assert_eq!((buffered.events, buffered.bytes), (1, EVENT_OVERHEAD + 10));
        assert_eq!(receiver.try_recv().map(|e| id(&e)), Err(TryRecvError::Lagged(1)));
        assert_eq!(id(&receiver.try_recv().unwrap()), "1");
        let buffered = sender.send(message(2, 10), start + Duration::from_secs(95));
        assert_eq!(buffered.events, 1, "a send expires too");
    }

    #[test]
    fn nothing_is_kept_without_receivers_and_the_last_receiver_gone_frees_the_buffer() {
        let (sender, receiver) = event_channel(LIMITS);
        let now = Instant::now();
        sender.send(message(0, 100), now);
        drop(receiver);
        assert_eq!(sender.send(message(1, 100), now).events, 0);
        let mut late = sender.subscribe();
        assert_eq!(
            late.try_recv().map(|e| id(&e)),
            Err(TryRecvError::Empty),
            "a new receiver starts after the send"
        );
        sender.send(message(2, 100), now);
        assert_eq!(id(&late.try_recv().unwrap()), "2");
        drop(late);
        assert_eq!(sender.expire(now).bytes, 0);
    }

    #[test]
    fn a_receiver_reads_what_is_kept_then_learns_the_channel_closed() {
        let (sender, mut receiver) = event_channel(LIMITS);
        let clone = sender.clone();
        sender.send(message(0, 1), Instant::now());
        drop(sender);
        assert_eq!(receiver.try_recv().map(|e| id(&e)), Ok("0".into()));
        assert_eq!(
            receiver.try_recv().map(|e| id(&e)),
            Err(TryRecvError::Empty),
            "a clone still sends"
        );
        drop(clone);
        let closed = receiver.recv().now_or_never().map(|r| r.map(|e| id(&e)));
        assert_eq!(closed, Some(Err(RecvError::Closed)));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_and_by_the_close() {
        let (sender, mut receiver) = event_channel(LIMITS);
        let mut waiting = Box::pin(receiver.recv());
        assert!((&mut waiting).now_or_never().is_none());
        sender.send(message(7, 1), Instant::now());
        assert_eq!(waiting.await.map(|e| id(&e)), Ok("7".into()));

        let reader = tokio::spawn(async move { receiver.recv().await.map(|e| id(&e)) });
        tokio::task::yield_now().await;
        drop(sender);
        assert_eq!(reader.await.unwrap(), Err(RecvError::Closed));
    }

    #[tokio::test]
    async fn many_waiting_receivers_all_get_the_event() {
        let (sender, first) = event_channel(LIMITS);
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let mut receiver = sender.subscribe();
                tokio::spawn(async move { receiver.recv().await.map(|e| id(&e)) })
            })
            .collect();
        tokio::task::yield_now().await;
        sender.send(message(3, 1), Instant::now());
        for reader in readers {
            assert_eq!(reader.await.unwrap(), Ok("3".into()));
        }
        drop(first);
    }
}

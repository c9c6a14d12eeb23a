//! Publishing decisions, pure: batching (`--batch-window`) — publishes to one topic within the window travel as one
//! gossip message. One signed gossip message instead of many saves a signature, a verification and the per-message
//! gossip overhead on every hop, which is where a busy publisher's throughput goes. The `Batcher` is told the time
//! and says what to flush.

use std::time::{Duration, Instant};

use crate::wire::batch::{BATCH_HEADER, BATCH_PER_ENTRY, MAX_BATCH_ENTRIES, encode_batch};

/// Publishes waiting for their batch to go out: per topic, the encoded envelopes with each caller's context `R`.
#[derive(Debug)]
pub struct Batcher<R> {
    window: Duration,
    limit: usize,
    pending: Vec<Pending<R>>,
}

#[derive(Debug)]
struct Pending<R> {
    topic: String,
    entries: Vec<(Vec<u8>, R)>,
    size: usize,
    deadline: Instant,
}

/// A batch to send now: the gossip message for `topic` and the contexts of the publishes it carries, in order.
#[derive(Debug)]
pub struct Flush<R> {
    pub topic: String,
    pub message: Vec<u8>,
    pub entries: Vec<R>,
}

impl<R> Batcher<R> {
    /// `limit` is the largest message a receiver accepts (`--max-message-size`).
    pub fn new(window: Duration, limit: usize) -> Self {
        Batcher {
            window,
            limit,
            pending: Vec::new(),
        }
    }

    /// Queues an encoded envelope for `topic`. A batch that this one would overfill (size or entries) is returned to
    /// send first; the new envelope then starts the next batch, due one window from now.
    pub fn add(&mut self, topic: &str, envelope: Vec<u8>, context: R, now: Instant) -> Option<Flush<R>> {
        let entry_size = envelope.len() + BATCH_PER_ENTRY;
        let mut full = None;
        if let Some(index) = self.pending.iter().position(|p| p.topic == topic) {
            let pending = &self.pending[index];
            if pending.size + entry_size > self.limit || pending.entries.len() == MAX_BATCH_ENTRIES {
                full = Some(flush(self.pending.remove(index)));
            }
        }
        match self.pending.iter_mut().find(|p| p.topic == topic) {
            Some(pending) => {
                pending.size += entry_size;
                pending.entries.push((envelope, context));
            }
            None => self.pending.push(Pending {
                topic: topic.to_owned(),
                entries: vec![(envelope, context)],
                size: BATCH_HEADER + entry_size,
                deadline: now + self.window,
            }),
        }
        full
    }

    /// The batches whose window has closed by `now`.
    pub fn due(&mut self, now: Instant) -> Vec<Flush<R>> {
        let (due, waiting) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending = waiting;
        due.into_iter().map(flush).collect()
    }

    /// Every waiting batch, at once (the node is stopping).
    pub fn drain(&mut self) -> Vec<Flush<R>> {
        std::mem::take(&mut self.pending).into_iter().map(flush).collect()
    }

    /// When the next batch is due, if any is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }
}

fn flush<R>(pending: Pending<R>) -> Flush<R> {
    let (envelopes, entries): (Vec<Vec<u8>>, Vec<R>) = pending.entries.into_iter().unzip();
    let message = match <[Vec<u8>; 1]>::try_from(envelopes) {
        Ok([single]) => single,
        Err(envelopes) => encode_batch(&envelopes),
    };
    Flush {
        topic: pending.topic,
        message,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use libp2p::PeerId;

    use super::*;
    use crate::wire::{batch::decode_message, envelope::Envelope};

    const LIMIT: usize = 1 << 20;
    const MS: Duration = Duration::from_millis(1);

    fn envelope(id: &str) -> (Envelope, Vec<u8>) {
        let mut envelope = Envelope::new(PeerId::random(), "text/plain", id.as_bytes().to_vec(), 1);
        envelope.id = id.to_owned();
        let bytes = envelope.encode(LIMIT).unwrap();
        (envelope, bytes)
    }

    #[test]
    fn publishes_within_the_window_go_out_together_per_topic() {
        let mut batcher = Batcher::new(5 * MS, LIMIT);
        let start = Instant::now();
        for (i, topic) in ["t", "u", "t"].into_iter().enumerate() {
            assert!(batcher.add(topic, envelope(&i.to_string()).1, i, start + MS).is_none());
        }
        assert_eq!(batcher.next_deadline(), Some(start + 6 * MS));
        assert!(batcher.due(start + 5 * MS).is_empty());
        let due = batcher.due(start + 6 * MS);
        let sent: Vec<(&str, &[usize])> = due.iter().map(|f| (f.topic.as_str(), f.entries.as_slice())).collect();
        assert_eq!(sent, vec![("t", &[0, 2][..]), ("u", &[1][..])]);
        assert_eq!(decode_message(&due[0].message, LIMIT).unwrap().len(), 2);
        assert_eq!(
            decode_message(&due[1].message, LIMIT).unwrap()[0].id,
            "1",
            "a lone publish is a plain envelope"
        );
        assert_eq!(batcher.next_deadline(), None);
    }

    #[test]
    fn a_full_batch_is_sent_before_it_overflows_the_message_limit() {
        let (_, bytes) = envelope("x");
        let limit = BATCH_HEADER + 3 * (bytes.len() + BATCH_PER_ENTRY);
        let mut batcher = Batcher::new(5 * MS, limit);
        let now = Instant::now();
        for i in 0..3 {
            assert!(batcher.add("t", bytes.clone(), i, now).is_none());
        }
        let full = batcher.add("t", bytes.clone(), 3, now).expect("the fourth overflows");
        assert_eq!(full.entries, vec![0, 1, 2]);
        assert!(full.message.len() <= limit);
        assert_eq!(batcher.drain()[0].entries, vec![3]);
    }
}

//! Publishing decisions, pure:
//! - `Publisher`: whether a publish may go out (topic, size, envelope) and as which bytes, and idempotency — a
//!   caller-chosen id seen within `--dedup-window` gets its first result back and nothing is sent again;
//! - `Batcher` (`--batch-window`): publishes to one topic within the window travel as one gossip message. One signed
//!   gossip message instead of many saves a signature, a verification and the per-message gossip overhead on every
//!   hop, which is where a busy publisher's throughput goes. It is told the time and says what to flush. The bytes
//!   waiting across all topics are bounded too: past the budget the oldest batches go out early.

use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::dedup::RecentIds;
use crate::{
    config::check_topic,
    time::deadline,
    wire::{
        batch::{BATCH_HEADER, BATCH_PER_ENTRY, MAX_BATCH_ENTRIES, encode_batch},
        envelope::{DEFAULT_CONTENT_TYPE, ENVELOPE_OVERHEAD, Envelope},
    },
};

/// What a caller asks to publish.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// `None` means `application/octet-stream`.
    pub content_type: Option<&'a str>,
    /// The envelope id the caller chose; `None` means a random one.
    pub id: Option<&'a str>,
}

/// Why a publish is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishRefusal {
    InvalidTopic(String),
    TooLarge { size: usize, limit: usize },
    InvalidEnvelope(String),
}

/// A publish ready to go out: the encoded envelope for `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub message: Vec<u8>,
    pub id: String,
    /// The caller chose the id, so the result is to be remembered for repeats (`Publisher::remember`).
    pub idempotent: bool,
}

/// What to do with a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared<R> {
    Send(Outgoing),
    /// The caller's id was published within the dedup window: this is the first result; send nothing.
    Repeat(R),
}

/// Publish checks and the idempotency window; `R` is the result remembered per caller-chosen id.
#[derive(Debug)]
pub struct Publisher<R> {
    max_message_size: usize,
    published: RecentIds<String, R>,
}

impl<R: Clone> Publisher<R> {
    /// `max_message_size` bounds the encoded envelope (`--max-message-size`); the payload may use all of it but
    /// `ENVELOPE_OVERHEAD`. At most `capacity` ids are remembered, each for `window`.
    pub fn new(max_message_size: usize, window: Duration, capacity: usize) -> Self {
        Publisher {
            max_message_size,
            published: RecentIds::new(window, capacity),
        }
    }

    /// Checks `publish` and encodes its envelope from `origin`, sent at `now_ms` (unix ms); a repeated caller id
    /// answers with its first result instead.
    pub fn prepare(
        &mut self,
        origin: PeerId,
        publish: &Publish<'_>,
        now_ms: u64,
        now: Instant,
    ) -> Result<Prepared<R>, PublishRefusal> {
        check_topic(publish.topic).map_err(PublishRefusal::InvalidTopic)?;
        if let Some(id) = publish.id
            && let Some(first) = self.published.get(&id.to_owned(), now)
        {
            return Ok(Prepared::Repeat(first.clone()));
        }
        let limit = self.max_message_size.saturating_sub(ENVELOPE_OVERHEAD);
        if publish.payload.len() > limit {
            return Err(PublishRefusal::TooLarge {
                size: publish.payload.len(),
                limit,
            });
        }
        let content_type = publish.content_type.unwrap_or(DEFAULT_CONTENT_TYPE);
        let mut envelope = Envelope::new(origin, content_type, publish.payload.to_vec(), now_ms);
        if let Some(id) = publish.id {
            envelope.id = id.to_owned();
        }
        let message = envelope
            .encode(self.max_message_size)
            .map_err(|e| PublishRefusal::InvalidEnvelope(e.to_string()))?;
        Ok(Prepared::Send(Outgoing {
            topic: publish.topic.to_owned(),
            message,
            id: envelope.id,
            idempotent: publish.id.is_some(),
        }))
    }

    /// Remembers the result of a publish whose caller chose its id.
    pub fn remember(&mut self, id: String, result: R, now: Instant) {
        self.published.insert(id, result, now);
    }

    /// Caller ids remembered now.
    pub fn remembered(&self) -> usize {
        self.published.len()
    }
}

/// Publishes waiting for their batch to go out: per topic, the encoded envelopes with each caller's context `R`.
#[derive(Debug)]
pub struct Batcher<R> {
    window: Duration,
    limit: usize,
    /// Most bytes waiting across all topics.
    budget: usize,
    /// Bytes waiting across all topics: the sum of the pending batches' sizes.
    waiting: usize,
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
    /// `limit` is the largest message a receiver accepts (`--max-message-size`); `budget` the most bytes that may
    /// wait across all topics.
    pub fn new(window: Duration, limit: usize, budget: usize) -> Self {
        Batcher {
            window,
            limit,
            budget,
            waiting: 0,
            pending: Vec::new(),
        }
    }

    /// Queues an encoded envelope for `topic`. Returned to send first: a batch that this one would overfill (size or
    /// entries), then the oldest batches while the bytes waiting would pass the budget; the new envelope then joins
    /// or starts the batch of its topic, due one window from now. An envelope that alone passes the budget is
    /// returned to go out at once, by itself.
    pub fn add(&mut self, topic: &str, envelope: Vec<u8>, context: R, now: Instant) -> Vec<Flush<R>> {
        let entry_size = envelope.len() + BATCH_PER_ENTRY;
        let mut flushes = Vec::new();
        if let Some(index) = self.position(topic) {
            let pending = &self.pending[index];
            if pending.size + entry_size > self.limit || pending.entries.len() == MAX_BATCH_ENTRIES {
                flushes.push(self.take(index));
            }
        }
        let added = loop {
            let added = entry_size
                + if self.position(topic).is_some() {
                    0
                } else {
                    BATCH_HEADER
                };
            if self.waiting + added <= self.budget {
                break Some(added);
            }
            let oldest = (0..self.pending.len()).min_by_key(|&index| self.pending[index].deadline);
            match oldest {
                Some(index) => flushes.push(self.take(index)),
                None => break None,
            }
        };
        let Some(added) = added else {
            flushes.push(Flush {
                topic: topic.to_owned(),
                message: envelope,
                entries: vec![context],
            });
            return flushes;
        };
        self.waiting += added;
        match self.pending.iter_mut().find(|p| p.topic == topic) {
            Some(pending) => {
                pending.size += added;
                pending.entries.push((envelope, context));
            }
            None => self.pending.push(Pending {
                topic: topic.to_owned(),
                entries: vec![(envelope, context)],
                size: added,
                deadline: deadline(now, self.window),
            }),
        }
        flushes
    }

    /// The batches whose window has closed by `now`.
    pub fn due(&mut self, now: Instant) -> Vec<Flush<R>> {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending = waiting;
        self.waiting = self.pending.iter().map(|p| p.size).sum();
        due.into_iter().map(flush).collect()
    }

    /// Every waiting batch, at once (the node is stopping).
    pub fn drain(&mut self) -> Vec<Flush<R>> {
        self.waiting = 0;
        std::mem::take(&mut self.pending).into_iter().map(flush).collect()
    }

    fn position(&self, topic: &str) -> Option<usize> {
        self.pending.iter().position(|p| p.topic == topic)
    }

    /// Takes the batch at `index` out to be sent.
    fn take(&mut self, index: usize) -> Flush<R> {
        let pending = self.pending.remove(index);
        self.waiting -= pending.size;
        flush(pending)
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
    use crate::wire::envelope::sample;
    use crate::wire::{batch::decode_message, envelope::Envelope};

    const LIMIT: usize = 1 << 20;
    const MS: Duration = Duration::from_millis(1);
    const WINDOW: Duration = Duration::from_secs(60);

    fn publish<'a>(topic: &'a str, payload: &'a [u8], id: Option<&'a str>) -> Publish<'a> {
        Publish {
            topic,
            payload,
            content_type: None,
            id,
        }
    }

    #[test]
    fn refusals_say_why_and_a_good_publish_is_one_encoded_envelope() {
        let mut publisher: Publisher<u32> = Publisher::new(4096, WINDOW, 10);
        let origin = PeerId::random();
        let now = Instant::now();
        let refusal =
            |publisher: &mut Publisher<u32>, p: Publish<'_>| publisher.prepare(origin, &p, 1, now).unwrap_err();
        assert!(matches!(
            refusal(&mut publisher, publish("", b"x", None)),
            PublishRefusal::InvalidTopic(_)
        ));
        assert!(matches!(
            refusal(&mut publisher, publish("a\u{7}", b"x", None)),
            PublishRefusal::InvalidTopic(_)
        ));
        let big = vec![0; 4096 - ENVELOPE_OVERHEAD + 1];
        assert_eq!(
            refusal(&mut publisher, publish("t", &big, None)),
            PublishRefusal::TooLarge {
                size: big.len(),
                limit: 4096 - ENVELOPE_OVERHEAD
            }
        );
        let long_id = "i".repeat(65);
        assert!(matches!(
            refusal(&mut publisher, publish("t", b"x", Some(&long_id))),
            PublishRefusal::InvalidEnvelope(_)
        ));
        let Ok(Prepared::Send(outgoing)) = publisher.prepare(origin, &publish("t", b"hello", Some("my-id")), 7, now)
        else {
            panic!("a valid publish goes out");
        };
        let decoded = Envelope::decode(&outgoing.message, 4096).unwrap();
        assert_eq!(
            (decoded.id.as_str(), decoded.origin, decoded.sent_at_ms),
            ("my-id", origin, 7)
        );
        assert_eq!(decoded.content_type, DEFAULT_CONTENT_TYPE);
        assert!(outgoing.idempotent);
    }

    #[test]
    fn a_remembered_id_is_answered_with_its_first_result_within_the_window() {
        let mut publisher: Publisher<u32> = Publisher::new(4096, WINDOW, 10);
        let origin = PeerId::random();
        let now = Instant::now();
        let again = publish("t", b"hello", Some("my-id"));
        assert!(matches!(
            publisher.prepare(origin, &again, 1, now),
            Ok(Prepared::Send(_))
        ));
        publisher.remember("my-id".to_owned(), 42, now);
        assert_eq!(publisher.remembered(), 1);
        assert_eq!(publisher.prepare(origin, &again, 1, now + MS), Ok(Prepared::Repeat(42)));
        assert!(
            matches!(
                publisher.prepare(origin, &again, 1, now + WINDOW),
                Ok(Prepared::Send(_))
            ),
            "past the window the id is new again"
        );
        let random = publish("t", b"hello", None);
        let Ok(Prepared::Send(first)) = publisher.prepare(origin, &random, 1, now) else {
            panic!("sent");
        };
        assert!(!first.idempotent);
        assert_eq!(
            publisher.remembered(),
            0,
            "the expired id is forgotten and a random id is never remembered"
        );
    }

    fn envelope(id: &str) -> (Envelope, Vec<u8>) {
        sample(id, LIMIT)
    }

    #[test]
    fn publishes_within_the_window_go_out_together_per_topic() {
        let mut batcher = Batcher::new(5 * MS, LIMIT, 4 * LIMIT);
        let start = Instant::now();
        for (i, topic) in ["t", "u", "t"].into_iter().enumerate() {
            assert!(batcher.add(topic, envelope(&i.to_string()).1, i, start + MS).is_empty());
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
        let mut batcher = Batcher::new(5 * MS, limit, 4 * limit);
        let now = Instant::now();
        for i in 0..3 {
            assert!(batcher.add("t", bytes.clone(), i, now).is_empty());
        }
        let full = batcher.add("t", bytes.clone(), 3, now);
        assert_eq!(full.len(), 1, "the fourth overflows");
        assert_eq!(full[0].entries, vec![0, 1, 2]);
        assert!(full[0].message.len() <= limit);
        assert_eq!(batcher.drain()[0].entries, vec![3]);
    }

    #[test]
    fn past_the_budget_across_topics_the_oldest_batches_go_first() {
        let (_, bytes) = envelope("x");
        let one = BATCH_HEADER + bytes.len() + BATCH_PER_ENTRY;
        // Room for three single-publish batches, whatever their topics.
        let mut batcher = Batcher::new(5 * MS, LIMIT, 3 * one);
        let start = Instant::now();
        for (i, topic) in ["a", "b", "c"].into_iter().enumerate() {
            let now = start + i as u32 * MS;
            assert!(batcher.add(topic, bytes.clone(), i, now).is_empty());
        }
        assert_eq!(batcher.waiting, 3 * one);
        let early = batcher.add("d", bytes.clone(), 3, start + 3 * MS);
        let sent: Vec<(&str, &[usize])> = early.iter().map(|f| (f.topic.as_str(), f.entries.as_slice())).collect();
        assert_eq!(sent, vec![("a", &[0][..])], "the oldest batch makes room");
        assert_eq!(batcher.waiting, 3 * one);
        // A second publish to a waiting topic needs less room (no second header), but still some.
        let early = batcher.add("d", bytes.clone(), 4, start + 4 * MS);
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].topic, "b");
        assert!(batcher.waiting <= 3 * one);
        let rest: Vec<Vec<usize>> = batcher.drain().into_iter().map(|f| f.entries).collect();
        assert_eq!(rest, vec![vec![2], vec![3, 4]]);
        assert_eq!(batcher.waiting, 0);
    }

    #[test]
    fn an_envelope_larger_than_the_budget_goes_out_at_once_by_itself() {
        let (_, small) = envelope("s");
        let big = vec![0; 4 * small.len()];
        let mut batcher = Batcher::new(5 * MS, LIMIT, 2 * small.len() + BATCH_HEADER + 2 * BATCH_PER_ENTRY);
        let now = Instant::now();
        assert!(batcher.add("t", small.clone(), 0, now).is_empty());
        let sent = batcher.add("t", big.clone(), 1, now);
        let sent: Vec<(&[usize], usize)> = sent.iter().map(|f| (f.entries.as_slice(), f.message.len())).collect();
        assert_eq!(sent, vec![(&[0][..], small.len()), (&[1][..], big.len())]);
        assert_eq!((batcher.waiting, batcher.next_deadline()), (0, None));
    }

    #[test]
    fn due_batches_give_their_bytes_back() {
        let (_, bytes) = envelope("x");
        let mut batcher = Batcher::new(5 * MS, LIMIT, LIMIT);
        let start = Instant::now();
        batcher.add("a", bytes.clone(), 0, start);
        batcher.add("b", bytes.clone(), 1, start + 2 * MS);
        let due = batcher.due(start + 5 * MS);
        assert_eq!(due.len(), 1);
        assert_eq!(batcher.waiting, BATCH_HEADER + bytes.len() + BATCH_PER_ENTRY);
    }

    #[test]
    fn an_extreme_batch_window_saturates_instead_of_panicking() {
        let mut batcher: Batcher<u32> = Batcher::new(Duration::MAX, LIMIT, LIMIT);
        let now = Instant::now();
        assert!(batcher.add("t", vec![1; 10], 0, now).is_empty());
        assert!(batcher.next_deadline().unwrap() >= now + crate::time::FAR_FUTURE);
        assert!(batcher.due(now + WINDOW).is_empty());
        assert_eq!(batcher.drain().len(), 1);
    }
}

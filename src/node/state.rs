//! The event loop's replicated-map glue, local side: the map (`state::Map`), its database, the hybrid logical clock
//! and the commits. A local write is merged into the map at once and acknowledged when the commit holding it is
//! durable; one commit is in flight at a time (on a blocking thread), and every write made meanwhile rides the next
//! one (group commit). Committed local writes then go out as deltas on the state topic. The remote side (deltas
//! heard, anti-entropy, expiry, tombstone collection) is in `state_sync.rs`.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use libp2p::{PeerId, gossipsub::IdentTopic};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{
    EventLoop,
    error::NodeError,
    event::{EventKind, MessageData, StateOp},
    handle::Reply,
    state_handle::StateCommand,
    state_views::{Lookup, StateEntry, StatePage, StateSummary, StateWrite},
};
use crate::{
    config::state::StateConfig,
    policy::rate_limit::PeerRateLimiter,
    state::{
        Coverage, Map, MapLimits, Persist, StateError,
        store::{STATE_FILE, Store, StoreError},
    },
    wire::state::{Actor, Change, ChangeError, Deltas, STATE_TOPIC, STATE_VERSION, WriterBook, encode},
};

/// Sync requests served per peer and second at most (bursts of as many): a newcomer's catch-up of 100 000 keys
/// takes about a dozen 1 MiB chunks.
pub const SYNC_REQUESTS_PER_SECOND: u32 = 50;

/// How long after a failed commit the next is tried (a full disk does not empty itself in a millisecond).
const COMMIT_RETRY: Duration = Duration::from_secs(1);

/// A local write waiting for its commit.
#[derive(Debug)]
pub(super) struct PendingAck {
    reply: Reply<StateWrite>,
    change: Change,
}

/// A commit's outcome, as its blocking task reports it to the loop.
pub(super) struct CommitDone {
    result: Result<Duration, StoreError>,
    persist: Persist,
    acks: Vec<PendingAck>,
}

/// An anti-entropy request in flight to one peer: a pull, or a page of a full resync after `after`.
#[derive(Debug)]
pub(super) struct Session {
    pub after: Option<String>,
}

/// A full resync from one peer under way: where the next page starts, the books of its first page (adopted at the
/// end), and the versions of changes not taken meanwhile (left out of the adoption, so they are pulled again).
#[derive(Debug, Default)]
pub(super) struct Resync {
    pub after: String,
    pub books: Option<Vec<WriterBook>>,
    pub not_taken: Vec<(Actor, u64)>,
}

/// The replicated map and everything around it that the loop owns.
pub(super) struct Replica {
    pub map: Map,
    store: Arc<Store>,
    pub hlc: uhlc::HLC,
    pub config: StateConfig,
    /// What each member holds, for tombstone collection.
    pub coverage: Coverage,
    committing: bool,
    /// After a failed commit, no new one before this.
    retry_at: Option<Instant>,
    /// Local writes merged but not yet in a commit.
    waiting: Vec<PendingAck>,
    commit_results: mpsc::Sender<CommitDone>,
    pub commit_done: mpsc::Receiver<CommitDone>,
    /// Outbound sync requests in flight, one per peer at most.
    pub sessions: HashMap<PeerId, Session>,
    /// Full resyncs under way, by peer: one that a dropped connection interrupted resumes where it stopped.
    pub resume: HashMap<PeerId, Resync>,
    /// When the next periodic anti-entropy round is due.
    pub next_round: Instant,
    /// Sync requests served per peer and second: each answer may copy a chunk of the map.
    pub sync_rate: PeerRateLimiter,
}

impl Replica {
    /// Opens the database in `data_dir` (or creates it) and loads the map. A database that cannot be opened stops
    /// the node with the reason; it is never replaced.
    pub fn open(config: &StateConfig, data_dir: &Path, peer: PeerId, now: Instant) -> anyhow::Result<Self> {
        let path = data_dir.join(STATE_FILE);
        let (store, loaded) = Store::open(&path)?;
        let actor = loaded.actor.context("the state database names no writer id")?;
        let limits = MapLimits {
            max_bytes: config.max_state_bytes,
            max_value: config.max_value_size,
            ..MapLimits::default()
        };
        let mut map = Map::restore(actor, peer, limits, loaded.entries, loaded.books);
        map.saw_time(loaded.max_time);
        let id = clock_id(&peer);
        // Drift is refused by our own check before the clock sees a time (`too_far_ahead`), so the clock's own bound
        // is only there to never fail: a year.
        let hlc = uhlc::HLCBuilder::new()
            .with_id(id)
            .with_max_delta(Duration::from_secs(365 * 86_400))
            .build();
        // A restarted node's clock starts above every time it wrote, even if the wall clock went back.
        hlc.update_with_timestamp(&uhlc::Timestamp::new(uhlc::NTP64(loaded.max_time), id))
            .map_err(|e| anyhow::anyhow!("the state database's newest time is unusable: {e}"))?;
        let counts = map.counts();
        tracing::info!(path = %path.display(), %actor, keys = counts.keys, tombstones = counts.tombstones, "state loaded");
        let (commit_results, commit_done) = mpsc::channel(4);
        Ok(Replica {
            map,
            store: Arc::new(store),
            hlc,
            config: config.clone(),
            coverage: Coverage::default(),
            committing: false,
            retry_at: None,
            waiting: Vec::new(),
            commit_results,
            commit_done,
            sessions: HashMap::new(),
            resume: HashMap::new(),
            next_round: now,
            sync_rate: PeerRateLimiter::new(SYNC_REQUESTS_PER_SECOND),
        })
    }

    /// Commits what is dirty on this thread, for shutdown: every write merged so far is durable before the node stops.
    pub fn flush(&mut self) {
        let persist = self.map.take_dirty();
        let acks = std::mem::take(&mut self.waiting);
        if persist.is_empty() && acks.is_empty() {
            return;
        }
        let result = self.store.commit(&persist).map(|_| ());
        for ack in acks {
            let answer = result
                .as_ref()
                .map(|()| StateWrite::of(&ack.change))
                .map_err(storage_error);
            let _ = ack.reply.send(answer);
        }
        if let Err(e) = result {
            tracing::error!("the last state commit failed: {e}");
        }
    }

    /// Whether a commit is in flight.
    pub fn committing(&self) -> bool {
        self.committing
    }
}

/// The clock's 16-byte id, derived from the peer id (never zero, which uhlc refuses).
fn clock_id(peer: &PeerId) -> uhlc::ID {
    let digest = Sha256::digest(peer.to_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] |= 1;
    uhlc::ID::try_from(bytes).unwrap_or_else(|_| uhlc::ID::rand())
}

/// Our wall clock as NTP64, the unit of every state time.
pub(super) fn now_ntp() -> u64 {
    uhlc::system_time_clock().0
}

/// A duration in NTP64 units.
pub(super) fn ntp(duration: Duration) -> u64 {
    uhlc::NTP64::from(duration).0
}

fn storage_error(error: &StoreError) -> NodeError {
    NodeError::Storage {
        reason: error.to_string(),
    }
}

impl EventLoop {
    pub(super) fn on_state_command(&mut self, command: StateCommand) {
        match command {
            StateCommand::Write { key, value, ttl, reply } => self.write_local(key, value, ttl, reply),
            StateCommand::Get { key, reply } => {
                let now = now_ntp();
                let lookup = Lookup {
                    entry: self.replica.map.get(&key, now).map(StateEntry::of),
                    version: self.replica.map.entry(&key).map(|c| c.time),
                };
                let _ = reply.send(lookup);
            }
            StateCommand::List {
                prefix,
                cursor,
                limit,
                reply,
            } => {
                let (entries, more) = self.replica.map.list(&prefix, cursor.as_deref(), limit, now_ntp());
                let entries: Vec<StateEntry> = entries.into_iter().map(StateEntry::of).collect();
                let next_cursor = more.then(|| entries.last().map(|e| e.key.clone())).flatten();
                let _ = reply.send(StatePage { entries, next_cursor });
            }
            StateCommand::Summary { reply } => {
                let _ = reply.send(self.state_summary());
            }
        }
    }

    /// Counts of what the map holds.
    pub(super) fn state_summary(&self) -> StateSummary {
        let counts = self.replica.map.counts();
        StateSummary {
            keys: counts.keys,
            tombstones: counts.tombstones,
            bytes: counts.bytes,
            writers: counts.writers,
        }
    }

    fn write_local(&mut self, key: String, value: Option<Bytes>, ttl: Option<Duration>, reply: Reply<StateWrite>) {
        let limit = self.replica.config.max_value_size;
        if let Some(value) = &value
            && value.len() > limit
        {
            self.metrics.state.refuse("size");
            let _ = reply.send(Err(NodeError::ValueTooLarge {
                size: value.len(),
                limit,
            }));
            return;
        }
        let time = self.replica.hlc.new_timestamp().get_time().0;
        let expires = ttl.map(|ttl| time.saturating_add(ntp(ttl)));
        match self.replica.map.write(&key, value, time, expires) {
            Ok(change) => {
                self.metrics.state.wrote("local");
                self.emit_state_change(&change, "local");
                self.replica.waiting.push(PendingAck { reply, change });
                self.commit_if_idle();
            }
            Err(error) => {
                let error = match error {
                    StateError::Invalid(ChangeError::ValueTooLarge { size, limit }) => {
                        NodeError::ValueTooLarge { size, limit }
                    }
                    StateError::Invalid(e) => NodeError::InvalidKey { reason: e.to_string() },
                    other => {
                        let reason = if matches!(other, StateError::Full { .. }) {
                            "full"
                        } else {
                            "writers"
                        };
                        self.metrics.state.refuse(reason);
                        NodeError::StateFull {
                            reason: other.to_string(),
                        }
                    }
                };
                let _ = reply.send(Err(error));
            }
        }
    }

    /// Starts a commit of everything dirty unless one is in flight (its end starts the next).
    pub(super) fn commit_if_idle(&mut self) {
        let replica = &mut self.replica;
        if replica.committing || replica.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let persist = replica.map.take_dirty();
        if persist.is_empty() && replica.waiting.is_empty() {
            return;
        }
        replica.committing = true;
        let acks = std::mem::take(&mut replica.waiting);
        let store = replica.store.clone();
        let done = replica.commit_results.clone();
        tokio::task::spawn_blocking(move || {
            let result = store.commit(&persist);
            // The loop may be gone (shutting down): then it flushes on its own.
            let _ = done.blocking_send(CommitDone { result, persist, acks });
        });
    }

    /// A commit finished: its writes are acknowledged and published, or failed and retried with the next commit.
    pub(super) fn on_commit_done(&mut self, done: CommitDone) {
        self.replica.committing = false;
        match done.result {
            Ok(took) => {
                self.metrics.state.commit_seconds.observe(took.as_secs_f64());
                // Writes acknowledged per commit (commits of remote changes only are not counted).
                if !done.acks.is_empty() {
                    self.metrics.state.commit_writes.observe(done.acks.len() as f64);
                }
                self.replica.retry_at = None;
                let own = self.replica.map.own();
                let ours = done.persist.books.iter().find(|(actor, _)| *actor == own);
                if let Some((_, book)) = ours {
                    self.replica.map.set_committed(book.have.max());
                }
                let mut committed = Vec::with_capacity(done.acks.len());
                for ack in done.acks {
                    let _ = ack.reply.send(Ok(StateWrite::of(&ack.change)));
                    committed.push(ack.change);
                }
                self.publish_deltas(committed);
            }
            Err(error) => {
                tracing::error!("state commit failed (retried in {COMMIT_RETRY:?}): {error}");
                self.replica.retry_at = Some(Instant::now() + COMMIT_RETRY);
                self.replica.map.redirty(&done.persist);
                for ack in done.acks {
                    let _ = ack.reply.send(Err(storage_error(&error)));
                }
            }
        }
        self.commit_if_idle();
    }

    /// Publishes committed local changes on the state topic, as few messages as fit the delta limit.
    fn publish_deltas(&mut self, changes: Vec<Change>) {
        // Alone, or nobody subscribed yet: anti-entropy carries the writes when peers come, and signing a message
        // nobody gets is wasted work.
        let topic = IdentTopic::new(STATE_TOPIC).hash();
        let listened = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&topic));
        if changes.is_empty() || !listened {
            return;
        }
        let limit = self.replica.config.max_delta_bytes();
        let mut batch: Vec<Change> = Vec::new();
        let mut bytes = 0;
        let mut batches = Vec::new();
        for change in changes {
            if !batch.is_empty() && bytes + change.cost() > limit {
                batches.push(std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += change.cost();
            batch.push(change);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for changes in batches {
            let data = encode(&Deltas {
                v: STATE_VERSION,
                changes,
            });
            let size = data.len();
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(IdentTopic::new(STATE_TOPIC), data)
            {
                Ok(_) => {
                    self.metrics
                        .state
                        .delta_bytes
                        .get_or_create(&crate::metrics::StateSourceLabel { source: "local" })
                        .inc_by(size as u64);
                }
                // Alone, or nobody subscribed yet: anti-entropy carries the write when peers come.
                Err(e) => tracing::debug!("state delta not published: {e}"),
            }
        }
    }

    /// Emits `state_changed` for a change that became a key's value here.
    pub(super) fn emit_state_change(&self, change: &Change, source: &'static str) {
        let op = if change.value.is_some() {
            StateOp::Put
        } else {
            StateOp::Delete
        };
        self.emit_state_event(change, op, source);
    }

    pub(super) fn emit_state_event(&self, change: &Change, op: StateOp, source: &'static str) {
        let entry = StateWrite::of(change);
        self.emit(EventKind::StateChanged {
            key: change.key.clone(),
            op,
            source,
            version: entry.version,
            origin: entry.origin,
            data: (op == StateOp::Put).then(|| MessageData(change.value.clone().unwrap_or_default())),
        });
    }
}

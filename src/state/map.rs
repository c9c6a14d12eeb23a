//! The replicated map itself, pure: every key's winning change (last writer wins by hybrid-logical-clock time, then
//! peer id), the tombstones of deleted and expired keys, and per writer the versions this node has heard of (a
//! `RangeSet`, so a node that has everything from a writer holds one range). Local writes, merges of remote changes,
//! expiry and tombstone collection all happen here, with time passed in; what changed is marked dirty for the store
//! to persist. Merging is commutative, associative and idempotent (property-tested in `tests.rs`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Bound,
};

use bytes::Bytes;
use libp2p::PeerId;

use super::ranges::RangeSet;
use crate::wire::state::{Actor, Change, ChangeError, check_key};

/// How much the map may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLimits {
    /// Bytes of keys, values and bookkeeping, tombstones included.
    pub max_bytes: usize,
    /// Largest value of one key.
    pub max_value: usize,
    /// Distinct writers ever heard of.
    pub max_writers: usize,
}

impl Default for MapLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_value: 64 << 10,
            max_writers: 16_384,
        }
    }
}

/// Why a write or a change is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Invalid(#[from] ChangeError),
    #[error("the state is full: {held} bytes held, the limit is {limit}")]
    Full { held: usize, limit: usize },
    #[error("too many writers: the state tracks at most {0}")]
    TooManyWriters(usize),
    #[error("writer {actor} belongs to another peer")]
    Forged { actor: Actor },
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The change won: it is the key's value now. `previous` is what it replaced.
    Won { previous: Option<Change> },
    /// The change is older than the key's value: only its version is recorded.
    Lost,
    /// The version was already known.
    Duplicate,
}

/// What the store must write: each dirty key's change (`None`: the key is gone) and each dirty writer's versions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Persist {
    pub entries: Vec<(String, Option<Change>)>,
    pub books: Vec<(Actor, Book)>,
    /// The highest clock time the map has seen, so a restarted clock starts above it even when the change that
    /// carried it is gone (a collected tombstone).
    pub max_time: u64,
}

impl Persist {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.books.is_empty()
    }
}

/// What this node knows of one writer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    /// Versions heard of: held, superseded or collected.
    pub have: RangeSet,
    /// The highest version whose tombstone this node collected: a peer lacking a version at or below it needs a
    /// full resync, or it could keep a value everyone else deleted.
    pub collected: u64,
    /// The peer id the writer's changes carry (set by its first change): a writer id belongs to one peer, so a
    /// change under another peer's writer id is forged.
    pub origin: Option<Vec<u8>>,
}

/// Counts for gauges and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapCounts {
    pub keys: usize,
    pub tombstones: usize,
    pub bytes: usize,
    pub writers: usize,
}

/// The map. `own` is this node's actor and peer id: local writes get the next version of `own`.
#[derive(Debug)]
pub struct Map {
    own: Actor,
    origin: Vec<u8>,
    limits: MapLimits,
    entries: BTreeMap<String, Change>,
    by_version: HashMap<(Actor, u64), String>,
    books: HashMap<Actor, Book>,
    /// Live entries with a TTL, by when they expire.
    expiring: BTreeSet<(u64, String)>,
    bytes: usize,
    tombstones: usize,
    dirty_keys: BTreeSet<String>,
    dirty_books: BTreeSet<Actor>,
    /// Our own highest version on disk: later ones are not served to peers yet, so a crash before their commit
    /// cannot leave a peer holding a version number this node will use again.
    own_committed: u64,
    max_time: u64,
}

impl Map {
    pub fn new(own: Actor, peer: PeerId, limits: MapLimits) -> Self {
        Self {
            own,
            origin: peer.to_bytes(),
            limits,
            entries: BTreeMap::new(),
            by_version: HashMap::new(),
            books: HashMap::new(),
            expiring: BTreeSet::new(),
            bytes: 0,
            tombstones: 0,
            dirty_keys: BTreeSet::new(),
            dirty_books: BTreeSet::new(),
            own_committed: 0,
            max_time: 0,
        }
    }

    /// A map holding what the store loaded (nothing is dirty).
    pub fn restore(
        own: Actor,
        peer: PeerId,
        limits: MapLimits,
        entries: impl IntoIterator<Item = Change>,
        books: impl IntoIterator<Item = (Actor, Book)>,
    ) -> Self {
        let mut map = Self::new(own, peer, limits);
        map.books = books.into_iter().collect();
        for change in entries {
            map.insert(change);
        }
        map.dirty_keys.clear();
        map.own_committed = map.books.get(&own).map_or(0, |b| b.have.max());
        map
    }

    /// Our own versions up to `version` are committed.
    pub fn set_committed(&mut self, version: u64) {
        self.own_committed = self.own_committed.max(version);
    }

    /// The highest version of `actor` that may be served to peers: all we know, except our own uncommitted ones.
    pub fn servable(&self, actor: &Actor) -> u64 {
        let known = self.books.get(actor).map_or(0, |b| b.have.max());
        if *actor == self.own {
            known.min(self.own_committed)
        } else {
            known
        }
    }

    /// Raises the highest time seen (the store's record of it, at start).
    pub fn saw_time(&mut self, time: u64) {
        self.max_time = self.max_time.max(time);
    }

    pub fn own(&self) -> Actor {
        self.own
    }

    pub fn limits(&self) -> MapLimits {
        self.limits
    }

    /// A local put (`value: Some`) or delete (`None`) at hybrid-logical-clock `time`; `expires` for a lease.
    pub fn write(
        &mut self,
        key: &str,
        value: Option<Bytes>,
        time: u64,
        expires: Option<u64>,
    ) -> Result<Change, StateError> {
        check_key(key)?;
        let change = Change {
            key: key.to_owned(),
            value,
            time,
            origin: self.origin.clone(),
            actor: self.own,
            version: self.books.get(&self.own).map_or(0, |b| b.have.max()) + 1,
            expires,
        };
        change.check(self.limits.max_value)?;
        self.make_room(&change)?;
        self.merge(change.clone(), time)?;
        Ok(change)
    }

    /// Merges a change from anywhere (already checked for size and clock drift): the later `(time, origin)` wins.
    pub fn merge(&mut self, mut change: Change, now: u64) -> Result<Merged, StateError> {
        if self.knows(&change.actor, change.version) {
            return Ok(Merged::Duplicate);
        }
        match self.books.get(&change.actor) {
            None if self.books.len() >= self.limits.max_writers => {
                return Err(StateError::TooManyWriters(self.limits.max_writers));
            }
            Some(Book {
                origin: Some(origin), ..
            }) if *origin != change.origin => {
                return Err(StateError::Forged { actor: change.actor });
            }
            _ => {}
        }
        if change.expires.is_some_and(|at| at <= now) {
            change.value = None;
        }
        let current = self.entries.get(&change.key);
        let wins = current.is_none_or(|current| change.order() > current.order());
        if wins {
            self.make_room(&change)?;
        }
        self.mark_known(&change);
        if !wins {
            return Ok(Merged::Lost);
        }
        let previous = self.remove(&change.key);
        self.insert(change);
        Ok(Merged::Won { previous })
    }

    /// Whether version `version` of `actor` has been heard of.
    pub fn knows(&self, actor: &Actor, version: u64) -> bool {
        self.books.get(actor).is_some_and(|b| b.have.contains(version))
    }

    /// Records versions as heard of without a change (a peer's cleared versions, a resync's books).
    pub fn mark_known_range(&mut self, actor: Actor, start: u64, end: u64) {
        // From a peer: no version above the cap exists, so none is recorded; and only we number our own writes, so a
        // peer's word about which of them exist is not taken (it could leave us no number to write with).
        let end = end.min(crate::wire::state::MAX_VERSION);
        if actor == self.own {
            return;
        }
        if !self.books.contains_key(&actor) && self.books.len() >= self.limits.max_writers {
            return;
        }
        self.books.entry(actor).or_default().have.insert_range(start, end);
        self.dirty_books.insert(actor);
    }

    /// The live value of `key` at `now` (not deleted, not expired).
    pub fn get(&self, key: &str, now: u64) -> Option<&Change> {
        self.entries.get(key).filter(|c| is_live(c, now))
    }

    /// The key's change, tombstone or not.
    pub fn entry(&self, key: &str) -> Option<&Change> {
        self.entries.get(key)
    }

    /// Live entries whose key starts with `prefix`, after `after`, at most `limit`; and whether more follow.
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: usize, now: u64) -> (Vec<&Change>, bool) {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let mut live = self
            .entries
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, change)| change)
            .filter(|change| is_live(change, now));
        let page: Vec<&Change> = live.by_ref().take(limit).collect();
        let more = live.next().is_some();
        (page, more)
    }

    /// Entries whose lease ran out by `now` become tombstones (the same version: every node does the same at the
    /// same time, so expiry needs no message). Returns the keys that expired.
    pub fn expire(&mut self, now: u64) -> Vec<Change> {
        let due: Vec<(u64, String)> = self.expiring.iter().take_while(|(at, _)| *at <= now).cloned().collect();
        let mut expired = Vec::with_capacity(due.len());
        for (at, key) in due {
            self.expiring.remove(&(at, key.clone()));
            if let Some(mut change) = self.remove(&key) {
                expired.push(change.clone());
                change.value = None;
                self.insert(change);
            }
        }
        expired
    }

    /// Drops tombstones every alive member holds (version at or below `covered(actor)`) or older than `ttl` (in NTP64
    /// units) at `now`. Returns how many went.
    pub fn collect(&mut self, now: u64, ttl: u64, covered: impl Fn(&Actor) -> u64) -> usize {
        let gone: Vec<String> = self
            .entries
            .values()
            .filter(|c| c.value.is_none())
            .filter(|c| {
                let died = c.expires.map_or(c.time, |at| at.max(c.time));
                c.version <= covered(&c.actor) || now.saturating_sub(died) > ttl
            })
            .map(|c| c.key.clone())
            .collect();
        for key in &gone {
            if let Some(change) = self.remove(key) {
                let book = self.books.entry(change.actor).or_default();
                book.collected = book.collected.max(change.version);
                self.dirty_books.insert(change.actor);
            }
        }
        gone.len()
    }

    /// Drops `key` on a full resync: the answering node knows its version and holds nothing for it, so it was
    /// deleted and its tombstone collected. Returns the dropped change.
    pub fn drop_collected(&mut self, key: &str) -> Option<Change> {
        self.remove(key)
    }

    /// The writers known, with their books.
    pub fn books(&self) -> impl Iterator<Item = (&Actor, &Book)> {
        self.books.iter()
    }

    pub fn book(&self, actor: &Actor) -> Option<&Book> {
        self.books.get(actor)
    }

    /// The change holding version `version` of `actor`, if that version is still a key's value.
    pub fn by_version(&self, actor: &Actor, version: u64) -> Option<&Change> {
        self.by_version
            .get(&(*actor, version))
            .and_then(|key| self.entries.get(key))
    }

    /// Every entry with a key after `after` (all of them for `None`), tombstones included, in key order.
    pub fn entries_after<'a>(&'a self, after: &str) -> impl Iterator<Item = &'a Change> + 'a {
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.to_owned())
        };
        self.entries.range((start, Bound::Unbounded)).map(|(_, c)| c)
    }

    /// Keys in `(after, through]` (`through: None`: to the end), tombstones included.
    pub fn keys_between(&self, after: &str, through: Option<&str>) -> Vec<String> {
        self.entries_after(after)
            .take_while(|c| through.is_none_or(|t| c.key.as_str() <= t))
            .map(|c| c.key.clone())
            .collect()
    }

    pub fn counts(&self) -> MapCounts {
        MapCounts {
            keys: self.entries.len() - self.tombstones,
            tombstones: self.tombstones,
            bytes: self.bytes,
            writers: self.books.len(),
        }
    }

    /// What changed since the last call, for the store.
    pub fn take_dirty(&mut self) -> Persist {
        let entries = std::mem::take(&mut self.dirty_keys)
            .into_iter()
            .map(|key| {
                let change = self.entries.get(&key).cloned();
                (key, change)
            })
            .collect();
        let books = std::mem::take(&mut self.dirty_books)
            .into_iter()
            .filter_map(|actor| self.books.get(&actor).map(|b| (actor, b.clone())))
            .collect();
        Persist {
            entries,
            books,
            max_time: self.max_time,
        }
    }

    /// Marks what a failed commit held as dirty again, so the next commit retries it.
    pub fn redirty(&mut self, persist: &Persist) {
        self.dirty_keys
            .extend(persist.entries.iter().map(|(key, _)| key.clone()));
        self.dirty_books.extend(persist.books.iter().map(|(actor, _)| *actor));
    }

    fn make_room(&self, change: &Change) -> Result<(), StateError> {
        let freed = self.entries.get(&change.key).map_or(0, Change::cost);
        let held = self.bytes - freed + change.cost();
        if held > self.limits.max_bytes {
            return Err(StateError::Full {
                held: self.bytes,
                limit: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    fn mark_known(&mut self, change: &Change) {
        let book = self.books.entry(change.actor).or_default();
        book.have.insert(change.version);
        if book.origin.is_none() {
            book.origin = Some(change.origin.clone());
        }
        self.dirty_books.insert(change.actor);
    }

    fn insert(&mut self, change: Change) {
        self.max_time = self.max_time.max(change.time);
        self.bytes += change.cost();
        if change.value.is_none() {
            self.tombstones += 1;
        } else if let Some(at) = change.expires {
            self.expiring.insert((at, change.key.clone()));
        }
        self.by_version
            .insert((change.actor, change.version), change.key.clone());
        self.dirty_keys.insert(change.key.clone());
        self.entries.insert(change.key.clone(), change);
    }

    fn remove(&mut self, key: &str) -> Option<Change> {
        let change = self.entries.remove(key)?;
        self.bytes -= change.cost();
        if change.value.is_none() {
            self.tombstones -= 1;
        } else if let Some(at) = change.expires {
            self.expiring.remove(&(at, change.key.clone()));
        }
        self.by_version.remove(&(change.actor, change.version));
        self.dirty_keys.insert(key.to_owned());
        Some(change)
    }
}

/// Whether a remote change's time is further ahead of our clock's `now` than `max_drift` (all NTP64): such a change
/// is refused, never applied, or one node with a fast clock would win every write for as long as its clock is ahead.
pub fn too_far_ahead(time: u64, now: u64, max_drift: u64) -> bool {
    time > now.saturating_add(max_drift)
}

/// Whether a change is a value at `now`: not a tombstone, not expired.
pub fn is_live(change: &Change, now: u64) -> bool {
    change.value.is_some() && change.expires.is_none_or(|at| at > now)
}

//! The map on disk: a `redb` database (ACID, crash-safe, pure Rust) in the data directory. Tables: `entries` (key →
//! the key's change as CBOR, tombstones included), `books` (actor → the versions heard of and the highest collected),
//! `meta` (the format version and this node's actor). A commit is one durable write transaction; the event loop
//! keeps one in flight and gathers every write made meanwhile into the next (group commit). A file that cannot be
//! opened is reported and left exactly as it is.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{map::Book, map::Persist, ranges::RangeSet};
use crate::wire::{
    cbor::decode_cbor,
    state::{Actor, Change, encode},
};

/// The file name inside the data directory.
pub const STATE_FILE: &str = "state.redb";
/// The layout this build writes; another one is refused, never converted in place.
pub const FORMAT: u32 = 1;
/// redb's page cache: the map itself lives in memory, the database is read once at start.
const CACHE_BYTES: usize = 8 << 20;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const BOOKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("books");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Why the state database cannot be used. The node stops with this message; the file is not touched.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the state database {path} cannot be opened: {reason}. It is left as it is: move it away to start with an \
         empty state (peers will sync it back), or restore it from a backup"
    )]
    Open { path: PathBuf, reason: String },
    #[error(
        "the state database {path} has format {found}, this build reads format {FORMAT}: use the swarmnode version \
         that wrote it, or move the file away to start with an empty state"
    )]
    Format { path: PathBuf, found: String },
    #[error("writing the state database failed: {0}")]
    Commit(String),
}

/// What the database held when it was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    /// This node's writer id (created with the database).
    pub actor: Option<Actor>,
    pub entries: Vec<Change>,
    pub books: Vec<(Actor, Book)>,
    /// The highest hybrid-logical-clock time stored: the clock restarts above it.
    pub max_time: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredBook {
    have: Vec<(u64, u64)>,
    collected: u64,
    #[serde(default, with = "serde_bytes")]
    origin: Option<Vec<u8>>,
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database at `path` and reads it whole. A new database gets a random actor id.
    pub fn open(path: &Path) -> Result<(Self, Loaded), StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.to_owned(),
            reason,
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_error(e.to_string()))?;
        let store = Self {
            db,
            path: path.to_owned(),
        };
        let loaded = store.load().map_err(open_error)?;
        match loaded {
            Load::Fresh => {
                let actor = Actor(rand::random());
                store.init(actor).map_err(open_error)?;
                Ok((
                    store,
                    Loaded {
                        actor: Some(actor),
                        ..Loaded::default()
                    },
                ))
            }
            Load::Format(found) => Err(StoreError::Format {
                path: path.to_owned(),
                found,
            }),
            Load::Data(loaded) => Ok((store, loaded)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `persist` in one durable transaction; returns how long the commit took.
    pub fn commit(&self, persist: &Persist) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let commit_error = |e: &dyn std::fmt::Display| StoreError::Commit(e.to_string());
        let txn = self.db.begin_write().map_err(|e| commit_error(&e))?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| commit_error(&e))?;
            for (key, change) in &persist.entries {
                match change {
                    Some(change) => entries.insert(key.as_str(), encode(change).as_slice()),
                    None => entries.remove(key.as_str()),
                }
                .map_err(|e| commit_error(&e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| commit_error(&e))?;
            meta.insert("max_time", persist.max_time.to_be_bytes().as_slice())
                .map_err(|e| commit_error(&e))?;
            let mut books = txn.open_table(BOOKS).map_err(|e| commit_error(&e))?;
            for (actor, book) in &persist.books {
                let stored = StoredBook {
                    have: book.have.ranges().collect(),
                    collected: book.collected,
                    origin: book.origin.clone(),
                };
                books
                    .insert(actor.0.as_slice(), encode(&stored).as_slice())
                    .map_err(|e| commit_error(&e))?;
            }
        }
        txn.commit().map_err(|e| commit_error(&e))?;
        Ok(started.elapsed())
    }

    fn init(&self, actor: Actor) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
            meta.insert("format", FORMAT.to_be_bytes().as_slice())
                .map_err(|e| e.to_string())?;
            meta.insert("actor", actor.0.as_slice()).map_err(|e| e.to_string())?;
            txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
            txn.open_table(BOOKS).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())
    }

    fn load(&self) -> Result<Load, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Load::Fresh),
            Err(e) => return Err(e.to_string()),
        };
        let format = meta.get("format").map_err(|e| e.to_string())?;
        let format = format.as_ref().map(|f| f.value().to_vec());
        if format.as_deref() != Some(FORMAT.to_be_bytes().as_slice()) {
            return Ok(Load::Format(format.map_or("none".into(), hex::encode)));
        }
        let actor = meta.get("actor").map_err(|e| e.to_string())?;
        let actor = actor
            .and_then(|a| <[u8; 16]>::try_from(a.value()).ok())
            .map(Actor)
            .ok_or("the database names no actor id")?;
        let max_time = meta.get("max_time").map_err(|e| e.to_string())?;
        let max_time = max_time
            .and_then(|t| <[u8; 8]>::try_from(t.value()).ok())
            .map_or(0, u64::from_be_bytes);
        let mut loaded = Loaded {
            actor: Some(actor),
            max_time,
            ..Loaded::default()
        };
        let entries = txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
        for row in entries.iter().map_err(|e| e.to_string())? {
            let (key, value) = row.map_err(|e| e.to_string())?;
            let change: Change = decode_cbor(value.value()).map_err(|e| format!("key {:?}: {e}", key.value()))?;
            loaded.max_time = loaded.max_time.max(change.time);
            loaded.entries.push(change);
        }
        let books = txn.open_table(BOOKS).map_err(|e| e.to_string())?;
        for row in books.iter().map_err(|e| e.to_string())? {
            let (actor, value) = row.map_err(|e| e.to_string())?;
            let actor = <[u8; 16]>::try_from(actor.value()).map_err(|_| "a writer id is not 16 bytes")?;
            let stored: StoredBook = decode_cbor(value.value()).map_err(|e| e.to_string())?;
            let book = Book {
                have: RangeSet::from_ranges(stored.have),
                collected: stored.collected,
                origin: stored.origin,
            };
            loaded.books.push((Actor(actor), book));
        }
        Ok(Load::Data(loaded))
    }
}

enum Load {
    Fresh,
    Format(String),
    Data(Loaded),
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use libp2p::PeerId;

    use super::*;
    use crate::state::{Map, MapLimits};

    #[test]
    fn what_is_committed_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let (store, loaded) = Store::open(&path).unwrap();
        let actor = loaded.actor.unwrap();
        assert!(loaded.entries.is_empty());
        let mut map = Map::new(actor, PeerId::random(), MapLimits::default());
        map.write("a", Some(Bytes::from_static(b"1")), 10, None).unwrap();
        map.write("b", Some(Bytes::from_static(b"2")), 11, Some(99)).unwrap();
        store.commit(&map.take_dirty()).unwrap();
        map.write("a", None, 12, None).unwrap();
        store.commit(&map.take_dirty()).unwrap();
        drop(store);

        let (_store, loaded) = Store::open(&path).unwrap();
        assert_eq!(
            loaded.actor,
            Some(actor),
            "the actor id is the database's, kept across restarts"
        );
        assert_eq!(loaded.max_time, 12);
        let restored = Map::restore(
            actor,
            PeerId::random(),
            MapLimits::default(),
            loaded.entries,
            loaded.books,
        );
        assert_eq!(restored.get("a", 0), None);
        assert_eq!(restored.get("b", 0).unwrap().value, Some(Bytes::from_static(b"2")));
        assert_eq!(restored.counts().tombstones, 1);
        assert_eq!(
            restored.book(&actor).unwrap().have.ranges().collect::<Vec<_>>(),
            [(1, 3)]
        );
    }

    #[test]
    fn a_corrupt_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let garbage = vec![0x5a; 64 * 1024];
        std::fs::write(&path, &garbage).unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Open { .. }), "{error}");
        assert!(error.to_string().contains("move it away"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "the file is never replaced");
    }

    #[test]
    fn another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format", 9u32.to_be_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let error = Store::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Format { .. }), "{error}");
        assert!(error.to_string().contains("format 00000009"), "{error}");
    }
}

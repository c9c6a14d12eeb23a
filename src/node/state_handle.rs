//! The replicated map's part of `NodeHandle`: get (optionally waiting, bounded, until a version is visible), put with
//! an optional TTL, delete, list a prefix by pages. Watches are the event stream's `state_changed` events filtered by
//! key prefix (`watch_matches`). Input is checked here, before it reaches the loop.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{
    Event, EventKind,
    error::NodeError,
    handle::{Command, NodeHandle, Reply},
    state_views::{Lookup, StatePage, StateSummary, StateWrite},
};
use crate::wire::state::{ChangeError, check_key};

pub use super::state_views::StateEntry;

/// Shortest and longest TTL of a put: a lease shorter than the sync interval would rarely reach a node that missed its
/// delta before it expires, and past a year it is as good as none.
pub const MIN_TTL: Duration = Duration::from_millis(100);
pub const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);
/// Longest a get waits for a version.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Longest page of a listing.
pub const MAX_PAGE: usize = 1000;

/// Requests for the replicated map.
#[derive(Debug)]
pub(crate) enum StateCommand {
    /// A put (`value: Some`) or a delete.
    Write {
        key: String,
        value: Option<Bytes>,
        ttl: Option<Duration>,
        reply: Reply<StateWrite>,
    },
    Get {
        key: String,
        reply: oneshot::Sender<Lookup>,
    },
    List {
        prefix: String,
        cursor: Option<String>,
        limit: usize,
        reply: oneshot::Sender<StatePage>,
    },
    Summary {
        reply: oneshot::Sender<StateSummary>,
    },
}

impl NodeHandle {
    /// Writes `value` under `key`, expiring after `ttl` if given; answers once the write is committed on this node.
    pub async fn state_put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<StateWrite, NodeError> {
        check_state_key(key)?;
        if let Some(ttl) = ttl
            && !(MIN_TTL..=MAX_TTL).contains(&ttl)
        {
            return Err(NodeError::InvalidStateRequest {
                reason: format!("a ttl is between {MIN_TTL:?} and {} days", MAX_TTL.as_secs() / 86_400),
            });
        }
        let key = key.to_owned();
        self.ask(|reply| {
            Command::State(StateCommand::Write {
                key,
                value: Some(value),
                ttl,
                reply,
            })
        })
        .await?
    }

    /// Deletes `key` (a tombstone that replicates like a write); deleting a missing key is no error.
    pub async fn state_delete(&self, key: &str) -> Result<StateWrite, NodeError> {
        check_state_key(key)?;
        let key = key.to_owned();
        self.ask(|reply| {
            Command::State(StateCommand::Write {
                key,
                value: None,
                ttl: None,
                reply,
            })
        })
        .await?
    }

    /// The live value of `key`. With `min_version`, waits (at most `wait`, itself at most `MAX_WAIT`) until that
    /// version or a later one of the key is visible here: `VersionNotVisible` if it is not by then.
    pub async fn state_get(
        &self,
        key: &str,
        min_version: Option<u64>,
        wait: Duration,
    ) -> Result<StateEntry, NodeError> {
        check_state_key(key)?;
        let Some(min_version) = min_version else {
            return self.lookup(key).await?.entry.ok_or_else(|| not_found(key));
        };
        let wait = wait.min(MAX_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribe before looking, so a change landing in between is not missed.
        let mut events = self.subscribe_events();
        loop {
            let lookup = self.lookup(key).await?;
            if lookup.version.is_some_and(|v| v >= min_version) {
                return lookup.entry.ok_or_else(|| not_found(key));
            }
            // Woken by any change of this key, or by falling behind (then look again).
            let changed = tokio::time::timeout_at(deadline, async {
                loop {
                    match events.recv().await {
                        Ok(Event {
                            kind: EventKind::StateChanged { key: changed, .. },
                            ..
                        }) if changed == key => break,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
            .await;
            if changed.is_err() {
                return Err(NodeError::VersionNotVisible {
                    key: key.to_owned(),
                    version: min_version,
                    waited_ms: wait.as_millis() as u64,
                });
            }
        }
    }

    /// Live keys starting with `prefix`, in key order, `limit` (at most `MAX_PAGE`) per page from after `cursor`.
    pub async fn state_list(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<StatePage, NodeError> {
        if prefix.len() > crate::wire::state::MAX_KEY {
            return Err(NodeError::InvalidKey {
                reason: ChangeError::KeyLength(prefix.len()).to_string(),
            });
        }
        if limit == 0 || limit > MAX_PAGE {
            return Err(NodeError::InvalidStateRequest {
                reason: format!("limit is 1 to {MAX_PAGE}"),
            });
        }
        let (prefix, cursor) = (prefix.to_owned(), cursor.map(str::to_owned));
        self.ask(|reply| {
            Command::State(StateCommand::List {
                prefix,
                cursor,
                limit,
                reply,
            })
        })
        .await
    }

    /// Counts of what the map holds.
    pub async fn state_summary(&self) -> Result<StateSummary, NodeError> {
        self.ask(|reply| Command::State(StateCommand::Summary { reply })).await
    }

    async fn lookup(&self, key: &str) -> Result<Lookup, NodeError> {
        let key = key.to_owned();
        self.ask(|reply| Command::State(StateCommand::Get { key, reply })).await
    }
}

/// Whether a `state_changed` event is about a key under `prefix` (a watch's filter).
pub fn watch_matches(kind: &EventKind, prefix: &str) -> bool {
    matches!(kind, EventKind::StateChanged { key, .. } if key.starts_with(prefix))
}

fn check_state_key(key: &str) -> Result<(), NodeError> {
    check_key(key).map_err(|e| NodeError::InvalidKey { reason: e.to_string() })
}

fn not_found(key: &str) -> NodeError {
    NodeError::KeyNotFound { key: key.to_owned() }
}

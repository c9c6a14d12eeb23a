//! Anti-entropy decisions, pure: the digest a node sends (per writer: the head and the missing ranges, so its size
//! grows with writers, not keys — Corrosion's `heads`/`need`), what to ship for a peer's digest (the changes it lacks
//! in a chunk of bounded bytes, the versions it lacks that no longer hold a value as cleared ranges), when only a full
//! resync is safe, the pages of a full resync, and which tombstones every alive member already holds.

use std::collections::{BTreeSet, HashMap};

use libp2p::PeerId;

use super::map::{Map, Merged, StateError};
use crate::wire::state::{
    Actor, Change, Cleared, MAX_NEED_RANGES, ResyncPage, STATE_VERSION, SyncResponse, WriterBook, WriterDigest,
};

/// Our digest: for every writer, the highest version heard of and the ranges below it still missing.
pub fn digest(map: &Map) -> Vec<WriterDigest> {
    let mut digest: Vec<WriterDigest> = map
        .books()
        .filter(|(_, book)| !book.have.is_empty())
        .map(|(actor, book)| WriterDigest {
            actor: *actor,
            head: book.have.max(),
            need: book.have.gaps(MAX_NEED_RANGES),
        })
        .collect();
    digest.sort_by_key(|d| d.actor);
    digest
}

/// The answer to a peer's digest: at most `budget` bytes of the changes it lacks (always at least one), the versions
/// it lacks that hold no value any more, whether more remain, and `resync_needed` when the peer lacks a version at or
/// below one whose tombstone we collected.
pub fn answer(map: &Map, peer: &[WriterDigest], budget: usize) -> SyncResponse {
    let theirs: HashMap<Actor, &WriterDigest> = peer.iter().map(|d| (d.actor, d)).collect();
    let mut response = SyncResponse {
        v: STATE_VERSION,
        changes: Vec::new(),
        cleared: Vec::new(),
        more: false,
        resync_needed: false,
        digest: digest(map),
        page: None,
    };
    let mut bytes = 0;
    let mut actors: Vec<(&Actor, _)> = map.books().collect();
    actors.sort_by_key(|(actor, _)| **actor);
    for (actor, book) in actors {
        let (head, need) = theirs.get(actor).map_or((0, &[][..]), |d| (d.head, d.need.as_slice()));
        let wanted = need
            .iter()
            .copied()
            .chain(std::iter::once((head.saturating_add(1), book.have.max())));
        for (start, end) in wanted {
            for (from, to) in book.have.overlap(start, end.min(book.have.max())) {
                if from <= book.collected {
                    response.resync_needed = true;
                    response.changes.clear();
                    response.cleared.clear();
                    return response;
                }
                if response.more {
                    continue;
                }
                let mut cleared_from = None;
                for version in from..=to {
                    match map.by_version(actor, version) {
                        Some(change) => {
                            if let Some(start) = cleared_from.take() {
                                response.cleared.push(Cleared {
                                    actor: *actor,
                                    start,
                                    end: version - 1,
                                });
                            }
                            if bytes >= budget {
                                response.more = true;
                                break;
                            }
                            bytes += change.cost();
                            response.changes.push(change.clone());
                        }
                        None => {
                            cleared_from.get_or_insert(version);
                        }
                    }
                }
                if let Some(start) = cleared_from {
                    response.cleared.push(Cleared {
                        actor: *actor,
                        start,
                        end: to,
                    });
                }
            }
        }
    }
    response
}

/// One page of a full resync: every entry (tombstones included) with a key after `after`, at most `budget` bytes
/// (at least one entry), the last key it covers (`None` when it reaches the end) and every version we know.
pub fn resync_page(map: &Map, after: &str, budget: usize) -> SyncResponse {
    let mut changes = Vec::new();
    let mut bytes = 0;
    let mut through = None;
    for change in map.entries_after(after) {
        if bytes >= budget {
            through = changes.last().map(|c: &Change| c.key.clone());
            break;
        }
        bytes += change.cost();
        changes.push(change.clone());
    }
    let mut books: Vec<WriterBook> = map
        .books()
        .map(|(actor, book)| WriterBook {
            actor: *actor,
            have: book.have.ranges().collect(),
        })
        .collect();
    books.sort_by_key(|b| b.actor);
    SyncResponse {
        v: STATE_VERSION,
        more: through.is_some(),
        changes,
        cleared: Vec::new(),
        resync_needed: false,
        digest: digest(map),
        page: Some(ResyncPage { through, books }),
    }
}

/// What applying a response did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Changes that became a key's value, with what they replaced.
    pub won: Vec<(Change, Option<Change>)>,
    /// Keys dropped by a full resync (deleted elsewhere, their tombstones collected).
    pub dropped: Vec<Change>,
    /// Changes refused (a full map, too many writers).
    pub refused: Vec<StateError>,
}

/// Applies the changes of a response (already checked one by one for size and drift; `accepted` says which), its
/// cleared versions and, for the page of a resync that started after `after`, drops what the answerer knows and no
/// longer holds; a resync's last page adopts the answerer's books.
pub fn apply_response(map: &mut Map, response: SyncResponse, after: Option<&str>, now: u64) -> Applied {
    let mut applied = Applied::default();
    let page_keys: BTreeSet<String> = response.changes.iter().map(|c| c.key.clone()).collect();
    for change in response.changes {
        match map.merge(change.clone(), now) {
            Ok(Merged::Won { previous }) => applied.won.push((change, previous)),
            Ok(Merged::Lost | Merged::Duplicate) => {}
            Err(e) => applied.refused.push(e),
        }
    }
    for cleared in response.cleared {
        map.mark_known_range(cleared.actor, cleared.start, cleared.end);
    }
    if let (Some(page), Some(after)) = (response.page, after) {
        let books: HashMap<Actor, super::ranges::RangeSet> = page
            .books
            .iter()
            .map(|b| (b.actor, super::ranges::RangeSet::from_ranges(b.have.iter().copied())))
            .collect();
        for key in map.keys_between(after, page.through.as_deref()) {
            if page_keys.contains(&key) {
                continue;
            }
            let known = map
                .entry(&key)
                .is_some_and(|c| books.get(&c.actor).is_some_and(|have| have.contains(c.version)));
            if known && let Some(change) = map.drop_collected(&key) {
                applied.dropped.push(change);
            }
        }
        if page.through.is_none() {
            for (actor, have) in books {
                for (start, end) in have.ranges() {
                    map.mark_known_range(actor, start, end);
                }
            }
        }
    }
    applied
}

/// What each alive member holds, from the digests it sent us or answered with: per writer, the highest version
/// below which it has everything. A tombstone every alive member holds can be collected.
#[derive(Debug, Default)]
pub struct Coverage {
    peers: HashMap<PeerId, HashMap<Actor, u64>>,
}

impl Coverage {
    /// Records `peer`'s digest.
    pub fn record(&mut self, peer: PeerId, digest: &[WriterDigest]) {
        let held = digest
            .iter()
            .map(|d| (d.actor, d.need.first().map_or(d.head, |(start, _)| start - 1)))
            .collect();
        self.peers.insert(peer, held);
    }

    /// Forgets peers that are not in `keep` (no longer members).
    pub fn retain(&mut self, keep: impl Fn(&PeerId) -> bool) {
        self.peers.retain(|peer, _| keep(peer));
    }

    /// The highest version of `actor` that every one of `alive` holds (0 if any has sent no digest yet).
    pub fn covered<'a>(&self, actor: &Actor, mut alive: impl Iterator<Item = &'a PeerId>) -> u64 {
        alive
            .try_fold(u64::MAX, |floor, peer| {
                let held = self.peers.get(peer)?.get(actor).copied().unwrap_or(0);
                Some(floor.min(held))
            })
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

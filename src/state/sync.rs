//! Anti-entropy decisions, pure: the digest a node sends (per writer: the head and the missing ranges, so its size
//! grows with writers, not keys — Corrosion's `heads`/`need`), what to ship for a peer's digest (the changes it lacks
//! in a chunk of bounded bytes, the versions it lacks that no longer hold a value as cleared ranges), when only a full
//! resync is safe, the pages of a full resync, and which tombstones every alive member already holds.

use std::collections::{BTreeSet, HashMap};

use libp2p::PeerId;

use super::{
    map::{Map, Merged, StateError},
    ranges::RangeSet,
};
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

/// The answer to a peer's digest: at most `budget` bytes of the changes it lacks (always at least one) and of the
/// versions it lacks that hold no value any more (cleared ranges), whether more remain, and `resync_needed` when the
/// peer lacks a version at or below one whose tombstone we collected. Our own versions are served only once
/// committed. The peer's digest is taken as a hint, never trusted for bounds: at most `MAX_NEED_RANGES` ranges per
/// writer are read, and the versions walked are bounded too.
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
    // Each version looked at costs a lookup even when it ships nothing: as many lookups as budget bytes at most.
    let mut steps = budget;
    let mut actors: Vec<(&Actor, _)> = map.books().collect();
    actors.sort_by_key(|(actor, _)| **actor);
    for (actor, book) in actors {
        let top = map.servable(actor);
        let (head, need) = theirs.get(actor).map_or((0, &[][..]), |d| (d.head, d.need.as_slice()));
        // As a set, so overlapping or repeated ranges ask for each version once.
        let wanted = RangeSet::from_ranges(
            need.iter()
                .take(MAX_NEED_RANGES)
                .map(|&(start, end)| (start, end.min(head)))
                .chain(std::iter::once((head.saturating_add(1), top))),
        );
        for (start, end) in wanted.ranges() {
            for (from, to) in book.have.overlap(start, end.min(top)) {
                if from <= book.collected {
                    response.resync_needed = true;
                    response.changes.clear();
                    response.cleared.clear();
                    response.more = false;
                    return response;
                }
                if response.more {
                    continue;
                }
                let mut cleared_from = None;
                let mut walked_to = to;
                for version in from..=to {
                    if bytes >= budget || steps == 0 {
                        response.more = true;
                        walked_to = version - 1;
                        break;
                    }
                    steps -= 1;
                    match map.by_version(actor, version) {
                        Some(change) => {
                            if let Some(start) = cleared_from.take() {
                                response.cleared.push(Cleared {
                                    actor: *actor,
                                    start,
                                    end: version - 1,
                                });
                                bytes += CLEARED_COST;
                            }
                            bytes += change.cost();
                            response.changes.push(change.clone());
                        }
                        None => {
                            cleared_from.get_or_insert(version);
                        }
                    }
                }
                // Stopped mid-range: the cleared run ends where the walk did.
                if let Some(start) = cleared_from
                    && walked_to >= start
                {
                    response.cleared.push(Cleared {
                        actor: *actor,
                        start,
                        end: walked_to,
                    });
                    bytes += CLEARED_COST;
                }
            }
        }
    }
    response
}

/// What one cleared range costs in a response.
const CLEARED_COST: usize = 48;

/// One page of a full resync: every entry (tombstones included) with a key after `after`, at most `budget` bytes
/// (at least one entry), the last key it covers (`None` when it reaches the end) and every version we know (our own
/// only as far as they are committed; an uncommitted entry of ours is left out and follows by an ordinary pull).
pub fn resync_page(map: &Map, after: &str, budget: usize) -> SyncResponse {
    let own = map.own();
    let committed = map.servable(&own);
    let mut changes = Vec::new();
    let mut bytes = 0;
    let mut through = None;
    let mut last_key: Option<&str> = None;
    for change in map.entries_after(after) {
        if bytes >= budget {
            through = last_key.map(str::to_owned);
            break;
        }
        last_key = Some(&change.key);
        if change.actor == own && change.version > committed {
            continue;
        }
        bytes += change.cost();
        changes.push(change.clone());
    }
    let mut books: Vec<WriterBook> = map
        .books()
        .map(|(actor, book)| {
            let mut have = book.have.clone();
            if *actor == own {
                for version in committed + 1..=have.max() {
                    have.remove(version);
                }
            }
            WriterBook {
                actor: *actor,
                have: have.ranges().collect(),
            }
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
    /// Changes refused by the merge (a full map, too many writers, a forged writer).
    pub refused: Vec<StateError>,
    /// Versions of changes not taken (refused here or by the caller's checks): a resync must not adopt them.
    pub not_taken: Vec<(Actor, u64)>,
    /// Whether anything new became known: a chunked pull that made no progress must not ask again at once.
    pub progress: bool,
}

/// Applies a response: its changes that `accept` takes (the caller's size and drift checks) are merged, its cleared
/// versions recorded, and for the page of a resync that started after `after`, the keys the page covers but does not
/// hold, whose version the answerer knows, are dropped (deleted there, their tombstones collected).
pub fn apply_response(
    map: &mut Map,
    response: SyncResponse,
    after: Option<&str>,
    now: u64,
    accept: impl Fn(&Change) -> bool,
) -> Applied {
    let mut applied = Applied::default();
    let page_keys: BTreeSet<String> = response.changes.iter().map(|c| c.key.clone()).collect();
    for change in response.changes {
        if !accept(&change) {
            applied.not_taken.push((change.actor, change.version));
            continue;
        }
        match map.merge(change.clone(), now) {
            Ok(Merged::Won { previous }) => {
                applied.progress = true;
                applied.won.push((change, previous));
            }
            Ok(Merged::Lost) => applied.progress = true,
            Ok(Merged::Duplicate) => {}
            Err(e) => {
                applied.not_taken.push((change.actor, change.version));
                applied.refused.push(e);
            }
        }
    }
    for cleared in response.cleared {
        if !all_known(map, &cleared) {
            applied.progress = true;
        }
        map.mark_known_range(cleared.actor, cleared.start, cleared.end);
    }
    if let (Some(page), Some(after)) = (response.page, after) {
        let books: HashMap<Actor, RangeSet> = page
            .books
            .iter()
            .map(|b| (b.actor, RangeSet::from_ranges(b.have.iter().copied())))
            .collect();
        for key in map.keys_between(after, page.through.as_deref()) {
            if page_keys.contains(&key) {
                continue;
            }
            let known = map
                .entry(&key)
                .is_some_and(|c| books.get(&c.actor).is_some_and(|have| have.contains(c.version)));
            if known && let Some(change) = map.drop_collected(&key) {
                applied.progress = true;
                applied.dropped.push(change);
            }
        }
    }
    applied
}

/// Records as known every version `books` holds except `not_taken`: the end of a full resync, with the books of its
/// first page (what the answerer knew when it began: a version it learned later may not be in a page already sent,
/// so it is left to an ordinary pull).
pub fn adopt_books(map: &mut Map, books: &[WriterBook], not_taken: &[(Actor, u64)]) {
    for book in books {
        let mut have = RangeSet::from_ranges(book.have.iter().copied());
        for (actor, version) in not_taken {
            if *actor == book.actor {
                have.remove(*version);
            }
        }
        for (start, end) in have.ranges() {
            map.mark_known_range(book.actor, start, end);
        }
    }
}

/// Whether every version of a cleared range is known already, for progress accounting.
fn all_known(map: &Map, cleared: &Cleared) -> bool {
    map.book(&cleared.actor)
        .is_some_and(|b| b.have.overlap(cleared.start, cleared.end) == [(cleared.start, cleared.end)])
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
            .map(|d| {
                (
                    d.actor,
                    d.need.first().map_or(d.head, |(start, _)| start.saturating_sub(1)),
                )
            })
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

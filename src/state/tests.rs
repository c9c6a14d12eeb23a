//! The map's promises, tested on the pure code: merges in any order, duplicated, give the same map; anti-entropy
//! brings two maps to the same state; tombstone collection and the full resync never bring a deleted key back.

use bytes::Bytes;
use libp2p::PeerId;
use proptest::prelude::*;

use super::{
    map::{Map, MapLimits, Merged, StateError},
    sync::{Coverage, adopt_books, answer, apply_response, digest, resync_page},
};
use crate::wire::state::{Actor, Change};

const NOW: u64 = 1 << 40;

/// A replica whose own writes count as committed at once (the store is not part of these tests).
fn node(n: u8) -> Map {
    let mut map = Map::new(Actor([n; 16]), PeerId::random(), MapLimits::default());
    map.set_committed(u64::MAX);
    map
}

fn value(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

/// Every writer's versions, as ranges.
type Books = Vec<(Actor, Vec<(u64, u64)>)>;

/// What a map holds, for comparing replicas: every entry and every writer's versions.
fn snapshot(map: &Map) -> (Vec<Change>, Books) {
    let entries = map.entries_after("").cloned().collect();
    let mut books: Vec<_> = map.books().map(|(a, b)| (*a, b.have.ranges().collect())).collect();
    books.sort();
    (entries, books)
}

/// Pulls from `from` into `to` until nothing is missing (or a resync is asked for, which it then runs).
fn sync(to: &mut Map, from: &Map, budget: usize) {
    for _ in 0..10_000 {
        let response = answer(from, &digest(to), budget);
        if response.resync_needed {
            resync(to, from, budget);
            return;
        }
        let more = response.more;
        let applied = apply_response(to, response, None, NOW, |_| true);
        if more && !applied.progress {
            panic!("a chunked pull made no progress");
        }
        if !more {
            return;
        }
    }
    panic!("sync did not finish");
}

fn resync(to: &mut Map, from: &Map, budget: usize) {
    let mut after = String::new();
    let mut first_books = None;
    let mut not_taken = Vec::new();
    loop {
        let page = resync_page(from, &after, budget);
        let through = page.page.as_ref().and_then(|p| p.through.clone());
        first_books.get_or_insert_with(|| page.page.as_ref().map(|p| p.books.clone()).unwrap_or_default());
        let applied = apply_response(to, page, Some(&after), NOW, |_| true);
        not_taken.extend(applied.not_taken);
        match through {
            Some(key) => after = key,
            None => break,
        }
    }
    adopt_books(to, &first_books.unwrap_or_default(), &not_taken);
}

#[test]
fn the_later_write_wins_and_ties_break_by_peer_id() {
    let (mut a, mut b) = (node(1), node(2));
    let old = a.write("k", value("old"), 10, None).unwrap();
    let new = b.write("k", value("new"), 20, None).unwrap();
    assert_eq!(
        a.merge(new.clone(), NOW),
        Ok(Merged::Won {
            previous: Some(old.clone())
        })
    );
    assert_eq!(b.merge(old.clone(), NOW), Ok(Merged::Lost));
    assert_eq!(a.merge(new, NOW), Ok(Merged::Duplicate));
    assert_eq!(a.get("k", NOW).unwrap().value, value("new"));
    assert_eq!(snapshot(&a), snapshot(&b));

    // The same time on two writers: the higher peer id wins on both.
    let (mut c, mut d) = (node(3), node(4));
    let x = c.write("t", value("c"), 5, None).unwrap();
    let y = d.write("t", value("d"), 5, None).unwrap();
    c.merge(y.clone(), NOW).unwrap();
    d.merge(x.clone(), NOW).unwrap();
    let winner = if x.origin > y.origin { x } else { y };
    assert_eq!(c.entry("t"), Some(&winner));
    assert_eq!(d.entry("t"), Some(&winner));
}

#[test]
fn deletes_are_tombstones_and_leases_expire_in_place() {
    let mut a = node(1);
    a.write("k", value("v"), 10, None).unwrap();
    a.write("k", None, 11, None).unwrap();
    assert_eq!(a.get("k", NOW), None);
    assert_eq!(a.counts().tombstones, 1);
    assert_eq!(a.counts().keys, 0);

    a.write("lease", value("held"), 12, Some(100)).unwrap();
    assert!(a.get("lease", 99).is_some());
    assert!(a.get("lease", 100).is_none(), "a lease is gone the moment it runs out");
    let expired = a.expire(100);
    assert_eq!(expired.len(), 1);
    assert_eq!(a.entry("lease").map(|c| (c.value.clone(), c.version)), Some((None, 3)));
    assert!(a.expire(200).is_empty());

    // A change that arrives already expired is stored as a tombstone.
    let mut b = node(2);
    let late = Change {
        expires: Some(50),
        ..a.entry("lease").unwrap().clone()
    };
    b.merge(
        Change {
            value: value("held"),
            ..late
        },
        60,
    )
    .unwrap();
    assert_eq!(b.get("lease", 60), None);
    assert_eq!(b.counts().tombstones, 1);
}

#[test]
fn lists_page_through_a_prefix() {
    let mut a = node(1);
    for (i, key) in ["app/a", "app/b", "app/c", "apq", "other"].iter().enumerate() {
        a.write(key, value("v"), i as u64 + 1, None).unwrap();
    }
    a.write("app/b", None, 10, None).unwrap();
    let (page, more) = a.list("app/", None, 1, NOW);
    assert_eq!(page.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["app/a"]);
    assert!(more);
    let (page, more) = a.list("app/", Some("app/a"), 5, NOW);
    assert_eq!(page.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["app/c"]);
    assert!(!more);
    assert_eq!(a.list("", None, 10, NOW).0.len(), 4);
}

#[test]
fn limits_refuse_without_recording_the_version() {
    let limits = MapLimits {
        max_bytes: 600,
        max_value: 100,
        max_writers: 1,
    };
    let mut a = Map::new(Actor([1; 16]), PeerId::random(), limits);
    a.set_committed(u64::MAX);
    assert!(matches!(
        a.write("k", Some(Bytes::from(vec![0; 101])), 1, None),
        Err(StateError::Invalid(_))
    ));
    a.write("k1", Some(Bytes::from(vec![0; 100])), 1, None).unwrap();
    a.write("k2", Some(Bytes::from(vec![0; 100])), 2, None).unwrap();
    assert!(matches!(
        a.write("k3", Some(Bytes::from(vec![0; 100])), 3, None),
        Err(StateError::Full { .. })
    ));
    // Overwriting a key frees its old bytes.
    a.write("k2", Some(Bytes::from(vec![1; 100])), 4, None).unwrap();
    let mut other = node(9);
    let foreign = other.write("x", value("v"), 5, None).unwrap();
    assert_eq!(a.merge(foreign.clone(), NOW), Err(StateError::TooManyWriters(1)));
    assert!(!a.knows(&foreign.actor, foreign.version));
}

#[test]
fn a_writer_id_belongs_to_one_peer() {
    let (mut a, mut b) = (node(1), node(2));
    let honest = b.write("k", value("b"), 1, None).unwrap();
    a.merge(honest.clone(), NOW).unwrap();
    // Another peer reusing b's writer id, with a version far ahead, is refused.
    let forged = Change {
        origin: PeerId::random().to_bytes(),
        version: 1000,
        time: 2,
        ..honest
    };
    assert_eq!(a.merge(forged, NOW), Err(StateError::Forged { actor: b.own() }));
    assert!(!a.knows(&b.own(), 1000));
    assert_eq!(a.get("k", NOW).unwrap().value, value("b"));
}

#[test]
fn anti_entropy_ships_only_what_is_missing_in_bounded_chunks() {
    let (mut a, mut b) = (node(1), node(2));
    for i in 0..500u64 {
        a.write(&format!("key/{i:04}"), Some(Bytes::from(vec![7; 100])), i + 1, None)
            .unwrap();
    }
    // Overwritten versions travel as cleared ranges, not as changes.
    for i in 0..100u64 {
        a.write(&format!("key/{i:04}"), value("second"), 1000 + i, None)
            .unwrap();
    }
    let first = answer(&a, &digest(&b), 10_000);
    assert!(first.more);
    assert!(first.changes.iter().map(Change::cost).sum::<usize>() < 10_000 + 300);
    sync(&mut b, &a, 10_000);
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(digest(&b), digest(&a));
    assert_eq!(
        digest(&a).len(),
        1,
        "one writer, one digest entry, whatever the number of keys"
    );
    assert_eq!(digest(&a)[0].need, []);

    // Nothing is missing: nothing is shipped.
    let idle = answer(&a, &digest(&b), 10_000);
    assert!(idle.changes.is_empty() && idle.cleared.is_empty() && !idle.more);
    // One new write: exactly it is shipped.
    let one = a.write("key/new", value("n"), 5000, None).unwrap();
    assert_eq!(answer(&a, &digest(&b), 10_000).changes, [one]);
}

#[test]
fn a_partition_with_writes_on_both_sides_converges() {
    let (mut a, mut b, mut c) = (node(1), node(2), node(3));
    for i in 0..50u64 {
        a.write(&format!("k{}", i % 7), value(&format!("a{i}")), 2 * i + 1, None)
            .unwrap();
        b.write(&format!("k{}", i % 5), value(&format!("b{i}")), 2 * i + 2, None)
            .unwrap();
        if i % 3 == 0 {
            c.write(&format!("k{}", i % 4), None, 2 * i + 1, None).unwrap();
        }
    }
    sync(&mut a, &b, 500);
    sync(&mut c, &a, 500);
    sync(&mut b, &c, 500);
    sync(&mut a, &b, 500);
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(snapshot(&b), snapshot(&c));
}

#[test]
fn collected_tombstones_force_a_full_resync_that_drops_the_deleted_key() {
    let (mut a, mut b) = (node(1), node(2));
    a.write("gone", value("v"), 1, None).unwrap();
    a.write("kept", value("v"), 2, None).unwrap();
    sync(&mut b, &a, 1 << 20);
    // b goes away; a deletes "gone" and collects the tombstone (its TTL passed).
    a.write("gone", None, 3, None).unwrap();
    assert_eq!(a.collect(NOW, 10, |_| 0), 1);
    assert_eq!(a.entry("gone"), None);
    let response = answer(&a, &digest(&b), 1 << 20);
    assert!(response.resync_needed, "b lacks a version a has collected");
    // b writes meanwhile: its own write survives the resync and reaches a.
    b.write("mine", value("b"), 4, None).unwrap();
    sync(&mut b, &a, 16);
    assert_eq!(b.get("gone", NOW), None, "the deleted key does not come back");
    assert!(b.get("kept", NOW).is_some() && b.get("mine", NOW).is_some());
    sync(&mut a, &b, 1 << 20);
    assert_eq!(a.get("gone", NOW), None);
    assert!(a.get("mine", NOW).is_some());
    assert_eq!(snapshot(&a).0, snapshot(&b).0);
}

#[test]
fn tombstones_wait_for_every_alive_member_or_the_ttl() {
    let mut a = node(1);
    let (p, q) = (PeerId::random(), PeerId::random());
    let actor = a.own();
    a.write("k", value("v"), 1, None).unwrap();
    a.write("k", None, 2, None).unwrap();
    let mut coverage = Coverage::default();
    coverage.record(p, &digest(&a));
    let alive = [p, q];
    assert_eq!(
        coverage.covered(&actor, alive.iter()),
        0,
        "q has not shown it holds the tombstone"
    );
    assert_eq!(a.collect(100, 1000, |x| coverage.covered(x, alive.iter())), 0);
    coverage.record(q, &digest(&a));
    assert_eq!(coverage.covered(&actor, alive.iter()), 2);
    assert_eq!(a.collect(100, 1000, |x| coverage.covered(x, alive.iter())), 1);
    // Without coverage, the TTL collects it.
    a.write("t", None, 200, None).unwrap();
    assert_eq!(a.collect(1000, 1000, |_| 0), 0);
    assert_eq!(a.collect(1201, 1000, |_| 0), 1);
    coverage.retain(|peer| *peer == p);
    assert_eq!(coverage.len(), 1);
}

#[test]
fn remote_times_far_ahead_are_refused() {
    use super::map::too_far_ahead;
    assert!(!too_far_ahead(1000, 1000, 0));
    assert!(!too_far_ahead(1500, 1000, 500));
    assert!(too_far_ahead(1501, 1000, 500));
    assert!(!too_far_ahead(10, 1000, 500), "the past is never refused");
    assert!(!too_far_ahead(u64::MAX, u64::MAX - 1, u64::MAX));
}

#[test]
fn a_failed_commit_is_retried() {
    let mut a = node(1);
    a.write("k", value("1"), 1, None).unwrap();
    let persist = a.take_dirty();
    a.redirty(&persist);
    assert_eq!(a.take_dirty(), persist);
}

#[test]
fn the_store_gets_every_change_once() {
    let mut a = node(1);
    a.write("k", value("1"), 1, None).unwrap();
    a.write("k", value("2"), 2, None).unwrap();
    let persist = a.take_dirty();
    assert_eq!(persist.entries.len(), 1);
    assert_eq!(persist.entries[0].1.as_ref().unwrap().value, value("2"));
    assert_eq!(persist.books.len(), 1);
    assert!(a.take_dirty().is_empty());
    let restored = Map::restore(
        a.own(),
        PeerId::random(),
        MapLimits::default(),
        persist.entries.into_iter().filter_map(|(_, c)| c),
        persist.books,
    );
    assert_eq!(snapshot(&restored), snapshot(&a));
}

/// An operation by one of three writers.
#[derive(Debug, Clone)]
enum Op {
    Put { writer: usize, key: u8, ttl: Option<u64> },
    Delete { writer: usize, key: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..3, 0u8..6, prop::option::of(1u64..50)).prop_map(|(writer, key, ttl)| Op::Put { writer, key, ttl }),
        (0usize..3, 0u8..6).prop_map(|(writer, key)| Op::Delete { writer, key }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Commutative, associative, idempotent: the same changes delivered in any order, any number of times, to
    /// any replica give the same map.
    #[test]
    fn merge_order_and_duplicates_do_not_matter(
        ops in prop::collection::vec(op(), 1..60),
        clock_steps in prop::collection::vec(0u64..3, 60),
        orders in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..200), 3),
        now in 0u64..200,
    ) {
        let mut writers = [node(1), node(2), node(3)];
        let mut changes = Vec::new();
        let mut time = 0;
        for (op, step) in ops.iter().zip(clock_steps.iter().cycle()) {
            // Equal times on different writers happen: the tie-break must be the same everywhere.
            time += step;
            let change = match op {
                Op::Put { writer, key, ttl } => writers[*writer]
                    .write(&format!("k{key}"), value("v"), time, ttl.map(|t| time + t)),
                Op::Delete { writer, key } => writers[*writer].write(&format!("k{key}"), None, time, None),
            };
            changes.push(change.unwrap());
        }
        let mut replicas: Vec<Map> = (0..3).map(|n| node(10 + n)).collect();
        for (replica, order) in replicas.iter_mut().zip(&orders) {
            // A random delivery sequence with duplicates, then everything (so all see every change at least once).
            let shuffled = order.iter().map(|i| i.get(&changes).clone());
            for change in shuffled.chain(changes.iter().rev().cloned()) {
                replica.merge(change, now).unwrap();
            }
            replica.expire(now);
        }
        let first = snapshot(&replicas[0]);
        for replica in &replicas[1..] {
            prop_assert_eq!(&snapshot(replica), &first);
        }
        for (i, key) in (0..6).map(|k| (k, format!("k{k}"))) {
            let _ = i;
            let winner = changes.iter().filter(|c| c.key == key).max_by(|x, y| x.order().cmp(&y.order()));
            let held = replicas[0].get(&key, now).map(|c| (c.actor, c.version));
            let live = winner.filter(|w| super::map::is_live(w, now)).map(|c| (c.actor, c.version));
            prop_assert_eq!(held, live);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Anti-entropy converges whatever the order of writes and pairwise syncs, with chunks small enough that most
    /// syncs take several rounds: after each pair has synced both ways, all replicas hold the same map.
    #[test]
    fn pairwise_syncs_in_any_order_converge(
        steps in prop::collection::vec((op(), 0usize..3, 0usize..3, any::<bool>()), 1..80),
        budget in 100usize..2000,
    ) {
        let mut nodes = [node(1), node(2), node(3)];
        for (time, (op, from, to, sync_now)) in steps.into_iter().enumerate() {
            let time = time as u64 + 1;
            match op {
                Op::Put { writer, key, ttl } => {
                    nodes[writer].write(&format!("k{key}"), value("v"), time, ttl.map(|t| time + t)).unwrap();
                }
                Op::Delete { writer, key } => {
                    nodes[writer].write(&format!("k{key}"), None, time, None).unwrap();
                }
            }
            if sync_now && from != to {
                let source = std::mem::replace(&mut nodes[from], node(99));
                sync(&mut nodes[to], &source, budget);
                nodes[from] = source;
            }
        }
        for (to, from) in [(0, 1), (1, 2), (2, 0), (0, 1), (1, 2)] {
            let source = std::mem::replace(&mut nodes[from], node(99));
            sync(&mut nodes[to], &source, budget);
            nodes[from] = source;
        }
        // Every node turns run-out leases into tombstones on its own tick.
        for node in &mut nodes {
            node.expire(NOW);
        }
        prop_assert_eq!(snapshot(&nodes[0]), snapshot(&nodes[1]));
        prop_assert_eq!(snapshot(&nodes[1]), snapshot(&nodes[2]));
    }
}

#[test]
fn a_hostile_digest_is_only_a_hint() {
    use crate::wire::state::WriterDigest;
    let a = node(1);
    let mut a = a;
    for i in 0..10u64 {
        a.write(&format!("k{i}"), value("v"), i + 1, None).unwrap();
    }
    let hostile = vec![WriterDigest {
        actor: a.own(),
        head: u64::MAX,
        need: std::iter::repeat_n((0, u64::MAX), 10_000).collect(),
    }];
    let mut coverage = Coverage::default();
    coverage.record(PeerId::random(), &hostile);
    let response = answer(&a, &hostile, 1 << 20);
    assert_eq!(
        response.changes.len(),
        10,
        "each version once, however often the digest asks"
    );
}

#[test]
fn own_writes_are_served_only_once_committed() {
    let mut a = Map::new(Actor([1; 16]), PeerId::random(), MapLimits::default());
    let b = node(2);
    a.write("k1", value("1"), 1, None).unwrap();
    a.write("k2", value("2"), 2, None).unwrap();
    assert!(answer(&a, &digest(&b), 1 << 20).changes.is_empty());
    a.set_committed(1);
    let shipped = answer(&a, &digest(&b), 1 << 20).changes;
    assert_eq!(shipped.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["k1"]);
    let page = resync_page(&a, "", 1 << 20);
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.page.unwrap().books[0].have, [(1, 1)]);
}

#[test]
fn cleared_ranges_from_a_peer_stay_within_the_version_cap() {
    let mut a = node(1);
    let (own, other) = (a.own(), Actor([7; 16]));
    a.mark_known_range(other, 1, u64::MAX);
    assert_eq!(a.book(&other).unwrap().have.max(), crate::wire::state::MAX_VERSION);
    assert_eq!(a.book(&other).unwrap().have.gaps(32), []);
    // Our own numbers are ours alone: a peer's claim does not use them up.
    a.mark_known_range(own, 1, u64::MAX);
    let written = a.write("k", value("v"), 1, None).expect("a write still gets a number");
    assert_eq!(written.version, 1);
}

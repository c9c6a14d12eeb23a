//! Fake-clock tests of the member view: every transition, the bounds and the exchange order.

use super::*;
use crate::wire::members::MEMBERS_VERSION;
use MemberStatus::{Alive, Failed, Left, Suspect};

const SEC: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(30);
const REAP: Duration = Duration::from_secs(3600);

fn record(incarnation: u64, seq: u64) -> MemberRecord {
    MemberRecord {
        v: MEMBERS_VERSION,
        incarnation,
        seq,
        name: format!("node-{incarnation}-{seq}"),
        tags: Default::default(),
        services: Vec::new(),
        weight: 1.0,
        load: Default::default(),
        addrs: Vec::new(),
        left: false,
    }
}

fn leaving(incarnation: u64, seq: u64) -> MemberRecord {
    MemberRecord {
        left: true,
        ..record(incarnation, seq)
    }
}

fn bytes(len: usize) -> Arc<[u8]> {
    vec![7; len].into()
}

fn view() -> Members {
    Members::new(PeerId::random(), MemberTimers::new(TTL, REAP), MemberLimits::default())
}

/// `peer` as heard on gossip with `record`, and what the view said.
fn hear(members: &mut Members, peer: PeerId, record: MemberRecord, now: Instant) -> Offer {
    members.offer(peer, record, bytes(100), Duration::ZERO, now)
}

fn status(members: &Members, peer: &PeerId) -> Option<MemberStatus> {
    members.get(peer).map(|member| member.status)
}

/// The (from, to) of each transition.
fn changes(transitions: &[Transition]) -> Vec<(Option<MemberStatus>, Option<MemberStatus>)> {
    transitions.iter().map(|t| (t.from, t.to)).collect()
}

#[test]
fn a_new_member_is_alive_and_renewals_keep_it_so() {
    let (mut members, peer, start) = (view(), PeerId::random(), Instant::now());
    let Offer::Accepted(Some(joined)) = hear(&mut members, peer, record(1, 0), start) else {
        panic!("a new member is accepted");
    };
    assert_eq!(
        (joined.from, joined.to, joined.name.as_str()),
        (None, Some(Alive), "node-1-0")
    );
    for round in 1..=30u32 {
        let now = start + 10 * SEC * round;
        assert_eq!(
            hear(&mut members, peer, record(1, round.into()), now),
            Offer::Accepted(None)
        );
        assert!(
            members.tick(now + 9 * SEC).is_empty(),
            "renewed every 10 s, never suspect"
        );
    }
    assert_eq!(status(&members, &peer), Some(Alive));
    assert_eq!(members.get(&peer).unwrap().flaps, 0);
}

#[test]
fn silence_makes_a_member_suspect_at_ttl_and_failed_at_three_ttl() {
    let (mut members, peer, start) = (view(), PeerId::random(), Instant::now());
    hear(&mut members, peer, record(1, 0), start);
    assert!(members.tick(start + TTL - Duration::from_millis(1)).is_empty());
    assert_eq!(changes(&members.tick(start + TTL)), [(Some(Alive), Some(Suspect))]);
    assert!(members.tick(start + 3 * TTL - Duration::from_millis(1)).is_empty());
    assert_eq!(changes(&members.tick(start + 3 * TTL)), [(Some(Suspect), Some(Failed))]);
    let member = members.get(&peer).unwrap();
    assert_eq!(member.changed_at, start + 3 * TTL);
    assert_eq!(member.flaps, 2);
}

#[test]
fn a_late_tick_reports_alive_to_failed_as_one_transition() {
    let (mut members, peer, start) = (view(), PeerId::random(), Instant::now());
    hear(&mut members, peer, record(1, 0), start);
    assert_eq!(changes(&members.tick(start + 5 * TTL)), [(Some(Alive), Some(Failed))]);
    assert_eq!(
        members.get(&peer).unwrap().changed_at,
        start + 3 * TTL,
        "when it became true"
    );
}

#[test]
fn a_suspect_or_failed_member_heard_again_is_alive() {
    let (mut members, peer, start) = (view(), PeerId::random(), Instant::now());
    hear(&mut members, peer, record(1, 0), start);
    members.tick(start + TTL);
    let Offer::Accepted(Some(back)) = hear(&mut members, peer, record(1, 1), start + TTL + SEC) else {
        panic!("a higher seq is taken");
    };
    assert_eq!((back.from, back.to), (Some(Suspect), Some(Alive)));
    members.tick(start + 10 * TTL);
    assert_eq!(status(&members, &peer), Some(Failed));
    let Offer::Accepted(Some(back)) = hear(&mut members, peer, record(1, 2), start + 10 * TTL) else {
        panic!("a higher seq is taken");
    };
    assert_eq!((back.from, back.to), (Some(Failed), Some(Alive)));
    assert!(
        members.tick(start + 11 * TTL - SEC).is_empty(),
        "the ttl runs from the renewal"
    );
}

#[test]
fn a_leave_record_or_notice_makes_a_member_left_at_once() {
    let (mut members, start) = (view(), Instant::now());
    let (by_record, by_notice) = (PeerId::random(), PeerId::random());
    hear(&mut members, by_record, record(1, 0), start);
    hear(&mut members, by_notice, record(1, 0), start);
    let Offer::Accepted(Some(gone)) = hear(&mut members, by_record, leaving(1, 1), start + SEC) else {
        panic!("a leave record is taken");
    };
    assert_eq!((gone.from, gone.to), (Some(Alive), Some(Left)));
    let gone = members.left(by_notice, start + SEC).unwrap();
    assert_eq!((gone.from, gone.to), (Some(Alive), Some(Left)));
    assert_eq!(members.left(by_notice, start + 2 * SEC), None, "left once");
    assert_eq!(members.left(PeerId::random(), start), None, "unknown");
    assert!(
        members.tick(start + 10 * TTL).is_empty(),
        "left members do not age into failed"
    );
    assert_eq!(
        hear(&mut members, by_notice, record(1, 1), start + 10 * TTL),
        Offer::Stale,
        "a record from before its leave, arriving late, does not bring it back"
    );
    assert_eq!(status(&members, &by_notice), Some(Left));
}

#[test]
fn failed_and_left_members_are_reaped_after_reap_after_and_not_before() {
    let (mut members, start) = (view(), Instant::now());
    let (failed, left, alive) = (PeerId::random(), PeerId::random(), PeerId::random());
    hear(&mut members, failed, record(1, 0), start);
    hear(&mut members, left, record(1, 0), start);
    members.left(left, start + 3 * TTL);
    members.tick(start + 3 * TTL);
    assert_eq!(status(&members, &failed), Some(Failed));
    for round in 0..=(3 * TTL + REAP).as_secs() / 10 {
        hear(&mut members, alive, record(1, round), start + 10 * SEC * round as u32);
    }
    assert!(members.tick(start + 3 * TTL + REAP - SEC).is_empty());
    let reaped = members.tick(start + 3 * TTL + REAP);
    let mut expected = vec![(failed, Some(Failed)), (left, Some(Left))];
    expected.sort();
    let got: Vec<_> = reaped.iter().map(|t| (t.peer, t.from)).collect();
    assert_eq!(got, expected, "both reaped, in peer order");
    assert!(reaped.iter().all(|t| t.to.is_none()));
    assert_eq!(members.len(), 1);
    assert_eq!(members.bytes(), 100);
    assert!(members.get(&failed).is_none() && members.get(&left).is_none());
}

#[test]
fn a_restart_supersedes_with_a_lower_seq_even_after_leaving() {
    let (mut members, peer, start) = (view(), PeerId::random(), Instant::now());
    hear(&mut members, peer, record(1, 500), start);
    hear(&mut members, peer, leaving(1, 501), start + SEC);
    let Offer::Accepted(Some(back)) = hear(&mut members, peer, record(2, 0), start + 2 * SEC) else {
        panic!("a higher incarnation is taken");
    };
    assert_eq!((back.from, back.to), (Some(Left), Some(Alive)));
    assert_eq!(members.get(&peer).unwrap().record.incarnation, 2);
    assert_eq!(hear(&mut members, peer, record(1, 502), start + 3 * SEC), Offer::Stale);
}

#[test]
fn stale_relayed_and_own_records_renew_nothing() {
    let (mut members, peer, start) = (view(), PeerId::random(), Instant::now());
    hear(&mut members, peer, record(1, 5), start);
    assert_eq!(
        hear(&mut members, peer, record(1, 5), start + 20 * SEC),
        Offer::Stale,
        "same seq"
    );
    assert_eq!(
        hear(&mut members, peer, record(1, 4), start + 25 * SEC),
        Offer::Stale,
        "lower seq"
    );
    assert_eq!(members.get(&peer).unwrap().renewed_at, start);
    assert_eq!(changes(&members.tick(start + TTL)), [(Some(Alive), Some(Suspect))]);
    assert_eq!(
        hear(&mut members, peer, record(1, 5), start + TTL),
        Offer::Stale,
        "a relayed copy does not bring a suspect back"
    );
    assert_eq!(status(&members, &peer), Some(Suspect));
    let local = members.local;
    assert_eq!(hear(&mut members, local, record(9, 9), start), Offer::OwnRecord);
    assert!(members.get(&local).is_none(), "ours comes only from set_local");
}

#[test]
fn an_exchanged_age_ages_the_member_on_arrival() {
    let (mut members, now) = (view(), Instant::now() + 10 * REAP);
    let (fresh, quiet, dead, long_gone) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    let arrive = |members: &mut Members, peer, age| members.offer(peer, record(1, 0), bytes(10), age, now);
    let arrived = |offer: Offer| match offer {
        Offer::Accepted(Some(t)) => t.to,
        other => panic!("{other:?}"),
    };
    assert_eq!(arrived(arrive(&mut members, fresh, 5 * SEC)), Some(Alive));
    assert_eq!(arrived(arrive(&mut members, quiet, TTL)), Some(Suspect));
    assert_eq!(arrived(arrive(&mut members, dead, REAP)), Some(Failed));
    assert_eq!(
        arrive(&mut members, long_gone, 3 * TTL + REAP),
        Offer::Stale,
        "already reaped elsewhere"
    );
    assert_eq!(members.get(&fresh).unwrap().renewed_at, now - 5 * SEC);
    assert_eq!(members.get(&dead).unwrap().changed_at, now - REAP + 3 * TTL);
    let aged = members.tick(now + 25 * SEC);
    assert_eq!(
        (aged[0].peer, aged[0].to),
        (fresh, Some(Suspect)),
        "5 s old on arrival, 30 s now"
    );
    assert_eq!(aged.len(), 1);
    let reaped: Vec<PeerId> = members
        .tick(now + 3 * TTL)
        .iter()
        .filter(|t| t.to.is_none())
        .map(|t| t.peer)
        .collect();
    assert_eq!(reaped, [dead], "its reap time travelled with it");
}

#[test]
fn an_age_beyond_the_clock_is_as_old_as_can_be_and_extreme_timers_do_not_panic() {
    let (mut members, now) = (view(), Instant::now());
    let peer = PeerId::random();
    let offer = members.offer(peer, record(1, 0), bytes(1), Duration::MAX, now);
    assert_eq!(offer, Offer::Stale, "past any reap horizon");
    let never_reaped = MemberTimers::new(TTL, Duration::MAX);
    let mut members = Members::new(PeerId::random(), never_reaped, MemberLimits::default());
    let offer = members.offer(peer, record(1, 0), bytes(1), Duration::MAX, now);
    assert!(
        matches!(offer, Offer::Accepted(Some(Transition { to: Some(Failed), .. }))),
        "{offer:?}"
    );
    let forever = MemberTimers::new(Duration::MAX, Duration::MAX);
    let mut members = Members::new(PeerId::random(), forever, MemberLimits::default());
    hear(&mut members, peer, record(1, 0), now);
    assert!(members.tick(now + 1000 * REAP).is_empty());
    assert_eq!(status(&members, &peer), Some(Alive));
}

#[test]
fn a_member_changing_too_often_is_flapping_and_its_changes_are_counted() {
    let (mut members, peer, start) = (view(), PeerId::random(), Instant::now());
    hear(&mut members, peer, record(1, 0), start);
    let mut now = start;
    let mut flapping = Vec::new();
    for seq in 1..=3 {
        now += TTL;
        flapping.push(members.tick(now)[0].flapping);
        let Offer::Accepted(Some(back)) = hear(&mut members, peer, record(1, seq), now) else {
            panic!("heard again");
        };
        flapping.push(back.flapping);
    }
    assert_eq!(
        flapping,
        [false, false, false, false, true, true],
        "the fifth change in 10 min flaps"
    );
    let member = members.get(&peer).unwrap();
    assert_eq!(member.flaps, 6);
    assert!(member.is_flapping(now, members.timers()));
    assert!(
        !member.is_flapping(now + 10 * 60 * SEC, members.timers()),
        "calm again after the window"
    );
    assert!(
        member.recent.len() <= members.timers().flap_limit as usize + 1,
        "bounded"
    );
}

#[test]
fn past_the_member_cap_the_longest_failed_are_evicted_and_the_live_never() {
    let limits = MemberLimits {
        max_members: 3,
        max_bytes: usize::MAX,
    };
    let mut members = Members::new(PeerId::random(), MemberTimers::new(TTL, REAP), limits);
    let start = Instant::now();
    let (early, late, newcomer, another) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    hear(&mut members, early, record(1, 0), start);
    hear(&mut members, late, record(1, 0), start + SEC);
    hear(&mut members, newcomer, record(1, 0), start + SEC);
    assert_eq!(
        hear(&mut members, another, record(1, 0), start + SEC),
        Offer::Full,
        "three live"
    );
    members.tick(start + 4 * TTL);
    hear(&mut members, newcomer, record(1, 1), start + 4 * TTL);
    assert!(matches!(
        hear(&mut members, another, record(1, 0), start + 4 * TTL),
        Offer::Accepted(Some(_))
    ));
    assert!(members.get(&early).is_none(), "the longest failed goes first");
    assert_eq!(status(&members, &late), Some(Failed));
    let reported = members.tick(start + 4 * TTL);
    assert_eq!(
        (reported[0].peer, reported[0].to),
        (early, None),
        "reported as reaped by the next tick"
    );
    members.left(another, start + 4 * TTL);
    hear(&mut members, late, record(1, 1), start + 4 * TTL);
    let fourth = PeerId::random();
    assert!(matches!(
        hear(&mut members, fourth, record(1, 0), start + 4 * TTL),
        Offer::Accepted(_)
    ));
    assert!(members.get(&another).is_none(), "left members are evicted too");
    assert_eq!(
        hear(&mut members, PeerId::random(), record(1, 0), start + 4 * TTL),
        Offer::Full
    );
    assert_eq!(members.len(), 3);
}

#[test]
fn a_member_evicted_and_heard_again_before_the_tick_is_not_reported_reaped() {
    let limits = MemberLimits {
        max_members: 2,
        max_bytes: usize::MAX,
    };
    let mut members = Members::new(PeerId::random(), MemberTimers::new(TTL, REAP), limits);
    let start = Instant::now();
    let (back, other, newcomer) = (PeerId::random(), PeerId::random(), PeerId::random());
    hear(&mut members, back, record(1, 0), start);
    hear(&mut members, other, record(1, 0), start + SEC);
    members.tick(start + 4 * TTL);
    assert!(matches!(
        hear(&mut members, newcomer, record(1, 0), start + 4 * TTL),
        Offer::Accepted(_)
    ));
    assert!(members.get(&back).is_none(), "evicted first: failed the longest");
    assert!(matches!(
        hear(&mut members, back, record(1, 1), start + 4 * TTL),
        Offer::Accepted(_)
    ));
    let reported = members.tick(start + 4 * TTL);
    assert_eq!(changes(&reported), [(Some(Failed), None)]);
    assert_eq!(reported[0].peer, other, "only the member still gone");
}

#[test]
fn past_the_byte_budget_newcomers_and_growing_records_are_refused() {
    let limits = MemberLimits {
        max_members: 100,
        max_bytes: 1000,
    };
    let mut members = Members::new(PeerId::random(), MemberTimers::new(TTL, REAP), limits);
    let start = Instant::now();
    let (big, small, dead) = (PeerId::random(), PeerId::random(), PeerId::random());
    let offer = |members: &mut Members, peer, seq, len| members.offer(peer, record(1, seq), bytes(len), SEC, start);
    members.offer(dead, record(1, 0), bytes(300), 4 * TTL, start);
    offer(&mut members, big, 0, 500);
    assert_eq!(
        offer(&mut members, small, 0, 501),
        Offer::Full,
        "evicting the dead would not be enough"
    );
    assert!(members.get(&dead).is_some(), "so it stays");
    assert!(matches!(offer(&mut members, small, 0, 400), Offer::Accepted(_)));
    assert!(members.get(&dead).is_none(), "evicted to make room");
    assert_eq!(members.bytes(), 900);
    assert_eq!(
        offer(&mut members, big, 1, 700),
        Offer::Full,
        "a growing record is held to the budget"
    );
    assert_eq!(members.get(&big).unwrap().record.seq, 0);
    assert!(matches!(offer(&mut members, big, 1, 600), Offer::Accepted(None)));
    assert_eq!(members.bytes(), 1000);
}

#[test]
fn an_exchange_sends_ours_first_then_the_freshest_with_the_dead_but_not_the_reaped() {
    let (mut members, start) = (view(), Instant::now() + REAP);
    let local = members.local;
    let (recent, older, failed, reaped) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    members.set_local(record(1, 0), bytes(1), start - 5 * SEC);
    members.offer(older, record(1, 0), bytes(2), 20 * SEC, start);
    members.offer(recent, record(1, 0), bytes(3), 2 * SEC, start);
    members.offer(failed, record(1, 0), bytes(4), 4 * TTL, start);
    members.offer(reaped, record(1, 0), bytes(5), 2 * REAP, start);
    members.left(recent, start);
    let sent = members.exchange(start, usize::MAX);
    let got: Vec<(usize, u64)> = sent.iter().map(|r| (r.envelope.len(), r.age_ms)).collect();
    // `recent` left by its notice only: its last record does not say so, and would pass for alive elsewhere.
    assert_eq!(got, [(1, 0), (2, 20_000), (4, 120_000)]);
    let mut left_record = record(1, 1);
    left_record.left = true;
    assert!(
        matches!(
            members.offer(recent, left_record, bytes(3), Duration::ZERO, start),
            Offer::Accepted(None)
        ),
        "the signed left record is taken after the notice"
    );
    let sent = members.exchange(start, usize::MAX);
    let got: Vec<(usize, u64)> = sent.iter().map(|r| (r.envelope.len(), r.age_ms)).collect();
    assert_eq!(got, [(1, 0), (3, 0), (2, 20_000), (4, 120_000)], "and relayed");
    assert!(members.get(&local).is_some_and(|m| m.status == Alive));
    assert!(
        members.tick(start + REAP).iter().all(|t| t.peer != local),
        "ours never ages"
    );
    let left: Vec<usize> = members
        .exchange(start + REAP, usize::MAX)
        .iter()
        .map(|r| r.envelope.len())
        .collect();
    assert_eq!(
        left,
        [1, 2],
        "the failed and left members reaped, the one failed since not yet"
    );
}

#[test]
fn counts_and_sizes_include_our_own_member() {
    let (mut members, start) = (view(), Instant::now());
    members.set_local(record(1, 0), bytes(10), start);
    members.set_local(record(1, 1), bytes(20), start);
    let (suspect, left) = (PeerId::random(), PeerId::random());
    members.offer(suspect, record(1, 0), bytes(30), TTL, start);
    hear(&mut members, left, leaving(1, 0), start);
    let counts = members.counts();
    assert_eq!(counts, [(Alive, 1), (Suspect, 1), (Failed, 0), (Left, 1)]);
    assert_eq!((members.len(), members.bytes()), (3, 150));
    assert_eq!(
        counts.map(|(status, _)| status.to_string()),
        ["alive", "suspect", "failed", "left"]
    );
    assert_eq!(serde_json::to_string(&Suspect).unwrap(), "\"suspect\"");
    assert_eq!("left".parse::<MemberStatus>().unwrap(), Left);
}

#[test]
fn a_record_sooner_than_the_gap_after_the_last_renewal_is_too_soon() {
    let (mut members, start) = (view(), Instant::now());
    let peer = PeerId::random();
    let gap = Duration::from_millis(100);
    assert!(
        !members.too_soon(&peer, gap, start),
        "an unknown author is never too soon"
    );
    members.offer(peer, record(1, 1), bytes(1), Duration::ZERO, start);
    assert!(members.too_soon(&peer, gap, start + Duration::from_millis(99)));
    assert!(!members.too_soon(&peer, gap, start + gap));
}

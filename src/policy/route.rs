//! Weighted rendezvous routing: which members own a key. Every node runs this pure computation over its own view of
//! the members, so nodes that see the same members name the same owners without asking each other, and a change of
//! membership moves only the keys of the member that came or went (about 1/N of them), where `hash mod N` would move
//! nearly all. For key k and member m, `h = xxh3_64(m's peer id bytes ‖ k)` with the fixed [`HASH_SEED`], mapped into
//! the open interval (0,1); m's score is `-w / ln(h)` and the highest score owns k. The scores are exponential races
//! with rates w, so a member's expected share of the keys is `w / Σw`. The tests hold both to within 5 standard
//! deviations of the binomial count over 10 000 keys: the keys moved by a join (all of them to the newcomer) and each
//! member's share for weights 1, 2, 3, 4.
//!
//! Nothing here may depend on the build or the machine: the hash is fixed (never `DefaultHasher`, whose output is not
//! stable across builds), and the logarithm is computed with IEEE basic operations only, because `f64::ln` is
//! documented to differ between platforms and Rust versions, and a last-bit difference would let two nodes disagree.

use std::{cmp::Ordering, collections::BinaryHeap, f64::consts};

use xxhash_rust::xxh3::Xxh3;

/// The seed of the routing hash: the ASCII bytes `swarmrdv`, big-endian. Fixed for ever, like the hash itself: a
/// node with another seed would name other owners for every key.
pub const HASH_SEED: u64 = u64::from_be_bytes(*b"swarmrdv");

/// The floor of the spare-capacity factor: a fully busy node still owns a twentieth of its share, so a load spike
/// moves most of its keys away but does not make it vanish from routing (and come back, moving them all again).
pub const MIN_SPARE_CAPACITY: f64 = 0.05;

/// One member routing may choose: its peer id bytes (`PeerId::to_bytes()`) and its weight. Only members with a
/// finite weight above zero own keys, so a member can advertise weight 0 to drain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub peer: &'a [u8],
    pub weight: f64,
}

/// The score of one candidate for one key; higher wins. `NEG_INFINITY` for a weight that is not finite or not above
/// zero. For absurd weights (above about 1e292, or subnormal) the score saturates to infinity or zero; [`owners`]
/// then breaks the ties by peer bytes.
pub fn score(peer: &[u8], key: &[u8], weight: f64) -> f64 {
    if eligible(weight) {
        rank_score(&mut Xxh3::with_seed(HASH_SEED), peer, key, weight)
    } else {
        f64::NEG_INFINITY
    }
}

/// The indexes into `candidates` of the `n` owners of `key`, best first (fewer if fewer candidates can own keys).
/// Equal scores are ordered by peer bytes (the greater first), so the answer depends on the candidates, not on their
/// order; candidates are expected to have distinct peers (duplicates are ordered by index, the first first).
/// Keeps the n best in a binary heap: O(members · log n) time, O(n) memory.
pub fn owners(candidates: &[Candidate<'_>], key: &[u8], n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut hasher = Xxh3::with_seed(HASH_SEED);
    // A max-heap whose top is the worst of the best so far (see `Ranked`'s order).
    let mut best = BinaryHeap::with_capacity(n.min(candidates.len()));
    for (index, candidate) in candidates.iter().enumerate() {
        if !eligible(candidate.weight) {
            continue;
        }
        let ranked = Ranked {
            score: rank_score(&mut hasher, candidate.peer, key, candidate.weight),
            peer: candidate.peer,
            index,
        };
        if best.len() < n {
            best.push(ranked);
        } else if let Some(mut worst) = best.peek_mut()
            && ranked < *worst
        {
            *worst = ranked;
        }
    }
    best.into_sorted_vec().into_iter().map(|ranked| ranked.index).collect()
}

/// The weight a node advertises with --dynamic-weight: its configured weight scaled by its spare capacity,
/// `weight · max(1 - cpu, MIN_SPARE_CAPACITY)`, so busy nodes shed keys to idle ones. `cpu` is the busy share, 0 to
/// 1; a reading outside is clamped, and an unreadable one (NaN) counts as idle so a failed reading moves no keys.
pub fn dynamic_weight(weight: f64, cpu: f64) -> f64 {
    let cpu = if cpu.is_nan() { 0.0 } else { cpu.clamp(0.0, 1.0) };
    weight * (1.0 - cpu).max(MIN_SPARE_CAPACITY)
}

fn eligible(weight: f64) -> bool {
    weight.is_finite() && weight > 0.0
}

/// `-w / ln(h)` for an eligible weight, hashing peer then key into `hasher` (reset first): no allocation, and one
/// seeded hasher serves every candidate of a lookup.
fn rank_score(hasher: &mut Xxh3, peer: &[u8], key: &[u8], weight: f64) -> f64 {
    hasher.reset();
    hasher.update(peer);
    hasher.update(key);
    weight / -ln_unit(hasher.digest())
}

/// `1 / (2k + 1)` for k = 0..10: the coefficients of `artanh(s) / s` in powers of s².
const ARTANH_SERIES: [f64; 11] = {
    let mut coefficients = [0.0; 11];
    let mut k = 0;
    while k < coefficients.len() {
        coefficients[k] = 1.0 / (2 * k + 1) as f64;
        k += 1;
    }
    coefficients
};

/// `ln(h)` for the 64-bit hash mapped into (0,1), with IEEE basic operations only (so the same bits on every
/// machine), within a few ulps of the true logarithm.
///
/// The top 52 bits x give `h = (x + ½) / 2^52 = (2x + 1) / 2^53`, from 2^-53 to 1 - 2^-53: never 0 nor 1. (With 53
/// bits, `x + ½` rounds to 2^53 for the largest x, so h would be 1 and the score infinite.) The odd integer
/// `2x + 1 = m · 2^e` with m in (√½, √2], and `ln m = 2 artanh(s)` with `s = (m - 1) / (m + 1)`, |s| < 0.172, whose
/// series is below 2^-53 of the sum after the s²¹ term.
fn ln_unit(hash: u64) -> f64 {
    let odd = ((hash >> 12) << 1) | 1;
    let mut exponent = 63 - odd.leading_zeros() as i32;
    // Both are exact: odd < 2^53, and dividing by a power of two only shifts the exponent.
    let mut mantissa = odd as f64 / (1u64 << exponent) as f64;
    if mantissa > consts::SQRT_2 {
        mantissa /= 2.0;
        exponent += 1;
    }
    let s = (mantissa - 1.0) / (mantissa + 1.0);
    let s2 = s * s;
    let series = ARTANH_SERIES
        .iter()
        .rev()
        .fold(0.0, |sum, coefficient| sum * s2 + coefficient);
    2.0 * s * series + f64::from(exponent - 53) * consts::LN_2
}

/// A scored candidate, ordered so that the better one is the lesser: higher score, then greater peer bytes, then
/// lower index. A `BinaryHeap` of them keeps the worst on top, and `into_sorted_vec` lists the best first.
struct Ranked<'a> {
    score: f64,
    peer: &'a [u8],
    index: usize,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| other.peer.cmp(self.peer))
            .then_with(|| self.index.cmp(&other.index))
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

    use super::*;

    const KEYS: usize = 10_000;

    /// `count` real peer ids (ed25519, as `PeerId::to_bytes()` gives them), from `seed`.
    fn peer_ids(seed: u64, count: usize) -> Vec<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let key = Keypair::ed25519_from_bytes(rng.r#gen::<[u8; 32]>()).unwrap();
                key.public().to_peer_id().to_bytes()
            })
            .collect()
    }

    fn keys() -> Vec<Vec<u8>> {
        (0..KEYS).map(|i| format!("key-{i}").into_bytes()).collect()
    }

    fn weighted<'a>(peers: &'a [Vec<u8>], weights: &[f64]) -> Vec<Candidate<'a>> {
        peers
            .iter()
            .zip(weights)
            .map(|(peer, &weight)| Candidate { peer, weight })
            .collect()
    }

    fn equal<'a>(peers: &'a [Vec<u8>]) -> Vec<Candidate<'a>> {
        weighted(peers, &vec![1.0; peers.len()])
    }

    /// The peer owning `key` among `candidates`, if any may.
    fn owner<'a>(candidates: &[Candidate<'a>], key: &[u8]) -> Option<&'a [u8]> {
        owners(candidates, key, 1).first().map(|&index| candidates[index].peer)
    }

    /// The range a Binomial(trials, p) count falls in but for a chance below 1e-6: mean ± 5 standard deviations.
    fn five_sigma(trials: usize, p: f64) -> std::ops::RangeInclusive<f64> {
        let mean = trials as f64 * p;
        let sigma = (mean * (1.0 - p)).sqrt();
        (mean - 5.0 * sigma)..=(mean + 5.0 * sigma)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        /// Each of the KEYS keys moves to the newcomer with chance 1/(N+1): the count must be within 5 sigma of the
        /// binomial mean (about ±11 % of it for N = 5, ±35 % for N = 49), and no key moves anywhere else.
        #[test]
        fn adding_a_member_moves_about_one_key_in_n_plus_one_all_to_it(seed in any::<u64>(), members in 5usize..50) {
            let peers = peer_ids(seed, members + 1);
            let (before, after) = (equal(&peers[..members]), equal(&peers));
            let newcomer = &peers[members][..];
            let mut moved = 0;
            for key in keys() {
                let (old, new) = (owner(&before, &key), owner(&after, &key));
                if old != new {
                    prop_assert_eq!(new, Some(newcomer), "a key moved between old members");
                    moved += 1;
                }
            }
            let bound = five_sigma(KEYS, 1.0 / (members + 1) as f64);
            prop_assert!(bound.contains(&(moved as f64)), "{} keys moved, expected {:?}", moved, bound);
        }

        #[test]
        fn removing_a_member_moves_only_its_keys(seed in any::<u64>(), members in 2usize..30, removed in any::<usize>()) {
            let peers = peer_ids(seed, members);
            let removed = removed % members;
            let mut rest = peers.clone();
            let gone = rest.remove(removed);
            let (before, after) = (equal(&peers), equal(&rest));
            for key in keys().iter().take(2_000) {
                let old = owner(&before, key);
                if old != Some(&gone[..]) {
                    prop_assert_eq!(owner(&after, key), old);
                }
            }
        }

        #[test]
        fn the_order_of_the_candidates_does_not_matter(seed in any::<u64>(), members in 1usize..20, n in 1usize..6) {
            let peers = peer_ids(seed, members);
            let weights: Vec<f64> = (0..members).map(|i| [0.5, 1.0, 3.0, 0.0][i % 4]).collect();
            let candidates = weighted(&peers, &weights);
            let mut shuffled = candidates.clone();
            shuffled.shuffle(&mut StdRng::seed_from_u64(seed));
            let named = |candidates: &[Candidate<'_>], key: &[u8]| -> Vec<Vec<u8>> {
                owners(candidates, key, n).into_iter().map(|i| candidates[i].peer.to_vec()).collect()
            };
            for key in keys().iter().take(500) {
                prop_assert_eq!(named(&candidates, key), named(&shuffled, key));
            }
        }

        #[test]
        fn the_owners_are_distinct_eligible_and_best_first(seed in any::<u64>(), members in 0usize..12, n in 0usize..16) {
            let peers = peer_ids(seed, members);
            let weights: Vec<f64> = (0..members).map(|i| [2.0, 0.0, 1.0, f64::NAN, 0.25][i % 5]).collect();
            let candidates = weighted(&peers, &weights);
            let eligible = weights.iter().filter(|w| **w > 0.0).count();
            for key in keys().iter().take(200) {
                let chosen = owners(&candidates, key, n);
                prop_assert_eq!(chosen.len(), n.min(eligible));
                let scores: Vec<f64> = chosen.iter().map(|&i| score(candidates[i].peer, key, weights[i])).collect();
                prop_assert!(scores.iter().all(|s| *s > 0.0), "only eligible members own keys");
                prop_assert!(scores.windows(2).all(|pair| pair[0] > pair[1]), "best first: {:?}", scores);
                let last = scores.last().copied().unwrap_or(f64::INFINITY);
                for (i, candidate) in candidates.iter().enumerate().filter(|(i, _)| !chosen.contains(i)) {
                    prop_assert!(score(candidate.peer, key, weights[i]) < last, "candidate {} beats an owner", i);
                }
                let mut distinct = chosen.clone();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), chosen.len());
            }
        }
    }

    #[test]
    fn shares_follow_weights() {
        let weights = [1.0, 2.0, 3.0, 4.0];
        for seed in 0..4 {
            let peers = peer_ids(seed, weights.len());
            let candidates = weighted(&peers, &weights);
            let mut owned = [0usize; 4];
            for key in keys() {
                owned[owners(&candidates, &key, 1)[0]] += 1;
            }
            for (count, weight) in owned.iter().zip(weights) {
                // Within 5 sigma of w/Σw: about ±15 % of the share for weight 1, ±6 % for weight 4.
                let bound = five_sigma(KEYS, weight / 10.0);
                assert!(
                    bound.contains(&(*count as f64)),
                    "weight {weight}: {count} keys, expected {bound:?}"
                );
            }
        }
    }

    #[test]
    fn only_finite_positive_weights_own_keys() {
        let peers = peer_ids(7, 6);
        let weights = [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, 1e-3];
        let candidates = weighted(&peers, &weights);
        for key in keys().iter().take(500) {
            assert_eq!(owners(&candidates, key, 6), [5]);
        }
        for weight in &weights[..5] {
            assert_eq!(score(&peers[0], b"key", *weight), f64::NEG_INFINITY);
        }
        assert!(owners(&candidates[..5], b"key", 3).is_empty());
        assert!(owners(&candidates, b"key", 0).is_empty());
    }

    #[test]
    fn equal_scores_go_to_the_greater_peer_bytes_in_any_order() {
        // A weight this large makes every score with -ln(h) < 1 infinite: a tie on purpose.
        let (low, high) = ([1u8; 38], [2u8; 38]);
        let key = (0..)
            .map(|i: u32| i.to_be_bytes())
            .find(|key| score(&low, key, f64::MAX) == f64::INFINITY && score(&high, key, f64::MAX) == f64::INFINITY)
            .unwrap();
        for pair in [[&low[..], &high[..]], [&high[..], &low[..]]] {
            let candidates: Vec<Candidate> = pair.iter().map(|peer| Candidate { peer, weight: f64::MAX }).collect();
            let chosen = owners(&candidates, &key, 2);
            assert_eq!(candidates[chosen[0]].peer, high);
            assert_eq!(candidates[chosen[1]].peer, low);
        }
    }

    #[test]
    fn dynamic_weight_scales_by_spare_capacity_with_a_floor() {
        assert_eq!(dynamic_weight(10.0, 0.0), 10.0);
        assert_eq!(dynamic_weight(10.0, 0.25), 7.5);
        assert_eq!(dynamic_weight(10.0, 0.99), 10.0 * MIN_SPARE_CAPACITY);
        assert_eq!(dynamic_weight(10.0, 1.0), 10.0 * MIN_SPARE_CAPACITY);
        assert_eq!(dynamic_weight(10.0, 7.0), 10.0 * MIN_SPARE_CAPACITY, "clamped to 1");
        assert_eq!(
            dynamic_weight(10.0, f64::INFINITY),
            10.0 * MIN_SPARE_CAPACITY,
            "clamped to 1"
        );
        assert_eq!(dynamic_weight(10.0, -3.0), 10.0, "clamped to 0");
        assert_eq!(dynamic_weight(10.0, f64::NAN), 10.0, "unreadable counts as idle");
        assert_eq!(dynamic_weight(0.0, 0.5), 0.0, "a drained node stays drained");
    }

    #[test]
    fn the_hash_is_xxh3_of_peer_then_key_with_the_fixed_seed() {
        let peer = peer_ids(1, 1).remove(0);
        let mut rng = StdRng::seed_from_u64(2);
        for length in [0, 1, 16, 200, 203, 1_000] {
            let key: Vec<u8> = (0..length).map(|_| rng.r#gen()).collect();
            let whole = xxhash_rust::xxh3::xxh3_64_with_seed(&[&peer[..], &key].concat(), HASH_SEED);
            assert_eq!(score(&peer, &key, 1.0), -1.0 / ln_unit(whole), "key of {length} bytes");
        }
    }

    /// Every node must name the same owners, on every build and machine: a change of hash, seed, mapping into (0,1)
    /// or logarithm fails here. The hash was checked against the reference C library (libxxhash 0.8,
    /// `XXH3_64bits_withSeed`).
    const PINNED_HASH: u64 = 0x9fa3_016f_850f_e2c1;
    const PINNED_SCORE_BITS: u64 = 0x4000_f071_2680_2066;
    const PINNED_ORDER: [usize; 5] = [1, 4, 0, 2, 3];

    #[test]
    fn pinned_owners_of_a_fixed_key_over_fixed_peers() {
        let peers: Vec<Vec<u8>> = (1..=5).map(|byte| vec![byte; 38]).collect();
        let key = b"swarmnode";
        assert_eq!(
            xxhash_rust::xxh3::xxh3_64_with_seed(&[&peers[0][..], key].concat(), HASH_SEED),
            PINNED_HASH
        );
        assert_eq!(score(&peers[0], key, 1.0).to_bits(), PINNED_SCORE_BITS);
        let weights = [1.0, 2.0, 1.0, 0.5, 3.0];
        assert_eq!(owners(&weighted(&peers, &weights), key, 5), PINNED_ORDER);
    }

    #[test]
    fn the_logarithm_matches_the_standard_one_and_stays_inside_the_unit_interval() {
        let mut rng = StdRng::seed_from_u64(3);
        let extremes = [0, 1 << 12, u64::MAX >> 1, u64::MAX];
        for hash in extremes.into_iter().chain((0..100_000).map(|_| rng.r#gen::<u64>())) {
            let h = ((hash >> 12) as f64 + 0.5) / (1u64 << 52) as f64;
            assert!(h > 0.0 && h < 1.0);
            let (ours, standard) = (ln_unit(hash), h.ln());
            assert!(ours < 0.0, "h < 1, so ln(h) < 0: {hash:#x}");
            assert!(
                (ours - standard).abs() <= 1e-15 * standard.abs(),
                "{hash:#x}: {ours} against {standard}"
            );
        }
    }
}

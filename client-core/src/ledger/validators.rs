//! Validator sets from stake: who signs blocks in the next epoch.
//!
//! At the end of every block whose height is a multiple of `epoch_blocks`, the state machine
//! elects the next set: the active providers standing as candidates, the `validator_count` with
//! the most stake (ties broken by key), each with its stake as voting power — capped so that
//! no validator holds more than a third of the set's power, which no single key could then
//! halt or, alone, finalize. The set is stored under [`StateKey::Validators`]; the block that
//! elects it names it as its header's `next_validators`, and it signs from the next block on.
//!
//! With fewer than three validators the cap cannot hold (one of two always has half); such a
//! network is not fault tolerant anyway, and the powers stay as staked. With no candidate at
//! all the set stays as it was: a network never elects an empty set.

use super::apply::StateRead;
use super::block::{Validator, ValidatorSet};
use super::state::{Params, StateKey, StateValue};
use crate::identity::PublicKey;

/// The set that signs the block after the state `state` (the genesis set before any election).
pub fn current(state: &(impl StateRead + ?Sized)) -> Option<ValidatorSet> {
    match state.get(&StateKey::Validators) {
        Some(StateValue::Validators(set)) => Some(set),
        _ => None,
    }
}

/// Whether the block at `height` is the last of its epoch (it elects the next set).
pub fn is_epoch_end(params: &Params, height: u64) -> bool {
    params.epoch_blocks > 0 && height > 0 && height.is_multiple_of(params.epoch_blocks)
}

/// The set elected at the end of block `height`, if that block ends an epoch and the election
/// changes the set.
pub fn election(state: &(impl StateRead + ?Sized), height: u64) -> Option<ValidatorSet> {
    let params = match state.get(&StateKey::Params) {
        Some(StateValue::Params(p)) => p,
        _ => return None,
    };
    if !is_epoch_end(&params, height) {
        return None;
    }
    let keys = match state.get(&StateKey::Providers) {
        Some(StateValue::Keys(keys)) => keys,
        _ => Vec::new(),
    };
    let mut candidates: Vec<(PublicKey, u64)> = keys
        .into_iter()
        .filter_map(|key| match state.get(&StateKey::Provider(key)) {
            Some(StateValue::Provider(p)) if p.active() && p.candidate && p.stake > 0 => {
                Some((key, p.stake))
            }
            _ => None,
        })
        .collect();
    let count = usize::try_from(params.validator_count).unwrap_or(usize::MAX);
    let elected = elect(&mut candidates, count)?;
    if current(state).as_ref() == Some(&elected) {
        return None;
    }
    Some(elected)
}

/// The `count` candidates with the most stake, with capped powers, sorted by key. `None` for
/// no candidate.
pub fn elect(candidates: &mut [(PublicKey, u64)], count: usize) -> Option<ValidatorSet> {
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let chosen = &candidates[..candidates.len().min(count)];
    if chosen.is_empty() {
        return None;
    }
    let powers = cap_powers(chosen.iter().map(|c| c.1).collect());
    let mut validators: Vec<Validator> = chosen
        .iter()
        .zip(powers)
        .map(|(c, power)| Validator { key: c.0, power })
        .collect();
    validators.sort_by_key(|v| v.key);
    Some(ValidatorSet { validators })
}

/// Lowers the largest powers until none is above a third of the total (for three or more
/// powers, all at least 1). Each round caps every power at a third of the current total; the
/// total only falls, so the rounds end, at worst with every power equal.
pub fn cap_powers(mut powers: Vec<u64>) -> Vec<u64> {
    if powers.len() < 3 || powers.contains(&0) {
        return powers;
    }
    // Each round divides the excess by about three: a few dozen rounds reach any fixed point.
    for _ in 0..256 {
        let total: u128 = powers.iter().map(|p| u128::from(*p)).sum();
        if powers.iter().all(|p| u128::from(*p) * 3 <= total) {
            return powers;
        }
        let cap = u64::try_from(total / 3).unwrap_or(u64::MAX).max(1);
        for p in &mut powers {
            *p = (*p).min(cap);
        }
    }
    vec![1; powers.len()]
}

/// Whether no validator holds more than a third of the power (always true below three).
pub fn within_cap(set: &ValidatorSet) -> bool {
    let total = u128::from(set.total_power());
    set.validators.len() < 3
        || set
            .validators
            .iter()
            .all(|v| u128::from(v.power) * 3 <= total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    #[test]
    fn the_most_staked_candidates_are_chosen_and_ties_go_by_key() {
        let mut candidates = vec![(key(1), 10), (key(2), 30), (key(3), 20), (key(4), 20)];
        let set = elect(&mut candidates, 2).expect("a set");
        let keys: Vec<_> = set.validators.iter().map(|v| v.key).collect();
        assert_eq!(keys, vec![key(2), key(3)]);
        assert!(elect(&mut [], 4).is_none());
    }

    #[test]
    fn no_validator_holds_more_than_a_third() {
        for powers in [
            vec![100, 1, 1, 1],
            vec![1_000_000_000_000_000_000, 7, 3, 2, 1],
            vec![5, 5, 1],
            vec![40, 30, 20, 10],
            vec![u64::MAX, u64::MAX, u64::MAX, 1],
        ] {
            let capped = cap_powers(powers.clone());
            let total: u128 = capped.iter().map(|p| u128::from(*p)).sum();
            assert!(
                capped.iter().all(|p| u128::from(*p) * 3 <= total),
                "{powers:?} → {capped:?}"
            );
            assert!(capped.iter().all(|p| *p >= 1), "{capped:?}");
            // Order is kept: a larger stake never ends with less power than a smaller one.
            for (i, j) in [(0, 1), (1, 2)] {
                if powers[i] >= powers[j] {
                    assert!(capped[i] >= capped[j], "{powers:?} → {capped:?}");
                }
            }
        }
        // Already within the cap: unchanged.
        assert_eq!(cap_powers(vec![30, 30, 20, 20]), vec![30, 30, 20, 20]);
        // One or two validators cannot be capped.
        assert_eq!(cap_powers(vec![9, 1]), vec![9, 1]);
    }
}

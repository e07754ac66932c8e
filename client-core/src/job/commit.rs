//! The execution commitment of a step job and what sampling it buys.
//!
//! Checkpoint `i` is the state after `init` (`i = 0`) or after step `i`. Its leaf is
//! `H("aqueduct/v1/checkpoint", i, state hash)`, and the commitment is the root of a binary
//! Merkle tree over the leaves (rs_merkle, with BLAKE3). Segment `i` (for `i ≥ 1`) is the step
//! from checkpoint `i - 1` to checkpoint `i`.

use crate::hash::Hash;
use borsh::{BorshDeserialize, BorshSerialize};

const LEAF_TAG: &str = "aqueduct/v1/checkpoint";

/// BLAKE3 as rs_merkle's hash function.
#[derive(Clone)]
pub struct Blake3;

impl rs_merkle::Hasher for Blake3 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        *blake3::hash(data).as_bytes()
    }
}

/// The leaf for checkpoint `index` with state hash `state`.
pub fn leaf(index: u64, state: &Hash) -> [u8; 32] {
    Hash::of_encoded(&(LEAF_TAG, index, state)).0
}

/// A provider's commitment to the states it passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Commitment {
    pub root: Hash,
    /// Number of checkpoints (steps + 1).
    pub checkpoints: u64,
}

/// The Merkle tree over a job's checkpoints, kept by the provider to answer sample requests.
pub struct CheckpointTree {
    tree: rs_merkle::MerkleTree<Blake3>,
    count: u64,
}

impl CheckpointTree {
    pub fn new(states: &[Hash]) -> Self {
        let leaves: Vec<[u8; 32]> = states
            .iter()
            .enumerate()
            .map(|(i, s)| leaf(i as u64, s))
            .collect();
        CheckpointTree {
            tree: rs_merkle::MerkleTree::from_leaves(&leaves),
            count: states.len() as u64,
        }
    }

    pub fn commitment(&self) -> Commitment {
        Commitment {
            root: Hash(self.tree.root().unwrap_or([0; 32])),
            checkpoints: self.count,
        }
    }

    /// A proof for the given checkpoints (sorted, distinct).
    pub fn prove(&self, indices: &[u64]) -> Vec<u8> {
        let indices: Vec<usize> = indices.iter().map(|i| *i as usize).collect();
        self.tree.proof(&indices).to_bytes()
    }
}

/// Checks that `states` (index, state hash) are leaves of `commitment`.
pub fn verify_states(commitment: &Commitment, states: &[(u64, Hash)], proof: &[u8]) -> bool {
    if states.is_empty()
        || states.iter().any(|(i, _)| *i >= commitment.checkpoints)
        || !states.windows(2).all(|w| w[0].0 < w[1].0)
    {
        return false;
    }
    let Ok(proof) = rs_merkle::MerkleProof::<Blake3>::from_bytes(proof) else {
        return false;
    };
    let Ok(count) = usize::try_from(commitment.checkpoints) else {
        return false;
    };
    let indices: Vec<usize> = states.iter().map(|(i, _)| *i as usize).collect();
    let leaves: Vec<[u8; 32]> = states.iter().map(|(i, s)| leaf(*i, s)).collect();
    proof.verify(commitment.root.0, &indices, &leaves, count)
}

/// The chance that checking `sampled` distinct segments, drawn uniformly from `segments`,
/// hits at least one of `bad` faked segments (hypergeometric).
pub fn detection_probability(segments: u64, sampled: u64, bad: u64) -> f64 {
    if bad == 0 {
        return 0.0;
    }
    if sampled + bad > segments {
        return 1.0;
    }
    // P(miss) = Π_{i<sampled} (segments - bad - i) / (segments - i)
    let mut miss = 1.0f64;
    for i in 0..sampled {
        miss *= (segments - bad - i) as f64 / (segments - i) as f64;
    }
    1.0 - miss
}

/// How many segments must be checked so that a provider who faked at least `fraction` of
/// them is caught with probability at least `confidence`.
pub fn samples_needed(segments: u64, fraction: f64, confidence: f64) -> u64 {
    let bad = ((segments as f64) * fraction).ceil().max(1.0) as u64;
    let mut k = 0;
    while k < segments && detection_probability(segments, k, bad) < confidence {
        k += 1;
    }
    k
}

/// Picks `count` distinct segments in `1..segments + 1` from a seed the caller draws at random
/// after the commitment is known, always including the last one. Sorted.
pub fn pick_segments(segments: u64, count: u64, seed: &[u8; 32]) -> Vec<u64> {
    let count = count.min(segments);
    let mut picked = std::collections::BTreeSet::new();
    if segments == 0 {
        return Vec::new();
    }
    picked.insert(segments);
    let mut counter: u64 = 0;
    while (picked.len() as u64) < count {
        let h = Hash::of_encoded(&("aqueduct/v1/sample", seed, counter));
        counter += 1;
        let mut word = [0u8; 8];
        word.copy_from_slice(&h.0[..8]);
        // Rejection sampling keeps the draw uniform.
        let v = u64::from_le_bytes(word);
        let zone = u64::MAX - u64::MAX % segments;
        if v < zone {
            picked.insert(1 + v % segments);
        }
    }
    picked.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_and_catch_changes() {
        let states: Vec<Hash> = (0..11u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
        let tree = CheckpointTree::new(&states);
        let c = tree.commitment();
        assert_eq!(c.checkpoints, 11);
        let proof = tree.prove(&[2, 3, 10]);
        let claimed = [(2, states[2]), (3, states[3]), (10, states[10])];
        assert!(verify_states(&c, &claimed, &proof));
        let mut wrong = claimed;
        wrong[1].1 = states[4];
        assert!(!verify_states(&c, &wrong, &proof));
        // The same state at another index is another leaf.
        assert!(!verify_states(&c, &[(4, states[3])], &tree.prove(&[3])));
        // Out of range, unsorted or garbage proofs are refused, not panicked on.
        assert!(!verify_states(&c, &[(11, states[3])], &proof));
        assert!(!verify_states(
            &c,
            &[(3, states[3]), (2, states[2])],
            &proof
        ));
        assert!(!verify_states(&c, &claimed, &[1, 2, 3]));
        assert!(!verify_states(&c, &claimed, &[]));
    }

    #[test]
    fn detection_probability_matches_the_closed_forms() {
        // Checking every segment always catches.
        assert_eq!(detection_probability(10, 10, 1), 1.0);
        // One bad segment of 10, one sample: 1/10.
        assert!((detection_probability(10, 1, 1) - 0.1).abs() < 1e-12);
        // Two samples of 4 with 2 bad: 1 - (2/4)(1/3) = 5/6.
        assert!((detection_probability(4, 2, 2) - 5.0 / 6.0).abs() < 1e-12);
        let k = samples_needed(1000, 0.05, 0.99);
        assert!(detection_probability(1000, k, 50) >= 0.99);
        assert!(detection_probability(1000, k - 1, 50) < 0.99);
        assert!(k < 100, "{k} samples for 99% at 5% of 1000");
    }

    #[test]
    fn picks_are_distinct_in_range_and_include_the_last() {
        let picks = pick_segments(1000, 90, &[7; 32]);
        assert_eq!(picks.len(), 90);
        assert!(picks.windows(2).all(|w| w[0] < w[1]));
        assert!(picks.iter().all(|p| (1..=1000).contains(p)));
        assert_eq!(picks.last(), Some(&1000));
        assert_ne!(picks, pick_segments(1000, 90, &[8; 32]));
        assert_eq!(pick_segments(5, 50, &[1; 32]), vec![1, 2, 3, 4, 5]);
    }
}

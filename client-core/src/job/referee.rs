//! Refereeing two providers that ran the same signed job.
//!
//! Same output and same checkpoint commitment: the result is accepted — correct unless both
//! providers lied. Otherwise the referee bisects over the two commitments: each answer is a
//! checkpoint's state hash with a Merkle proof against the root its provider signed, and the
//! search keeps an index where both agree (checkpoint 0 is recomputed here from the input) and
//! one where they differ, until they are neighbours. That one segment is re-run here from the
//! agreed pre-state, and a provider whose signed trace does not follow from it — another
//! post-state, stopping or going on against what the step says, or another output at the end —
//! has lied, with certainty: its own signatures say so. Cost to the referee: about log₂(n)
//! rounds of two small answers, and one segment re-run.
//!
//! Pure: the caller moves the answers (see [`Bisection::next`]); this module checks them.

use super::Receipt;
use super::commit::{self, Commitment};
use super::exec::SegmentRun;
use crate::hash::Hash;

/// One of the two providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// What refereeing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same output, fuel and commitment: correct unless both providers lied.
    Agree,
    /// These providers signed something false, found at `segment` (0: the state after
    /// `init`); `why` says what, for each.
    Lied {
        liars: Vec<Side>,
        segment: u64,
        why: String,
    },
    /// The traces differ but no single segment shows a lie (they meet again): neither result
    /// is taken.
    Undecided(String),
}

/// Why a provider's answer to the referee is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error(
        "provider {0:?} answered checkpoint {1} with a proof that does not match its commitment"
    )]
    BadProof(Side, u64),
    #[error("the state restored for checkpoint {0} is not the one both providers committed to")]
    BadState(u64),
    #[error("checkpoint {0} was not asked for")]
    Unexpected(u64),
}

/// Whether two receipts for one job say the same thing.
pub fn agree(a: &Receipt, b: &Receipt) -> bool {
    a.output == b.output && a.fuel_used == b.fuel_used && a.commitment == b.commitment
}

/// The bisection between two step-job commitments.
#[derive(Debug, Clone)]
pub struct Bisection {
    a: Commitment,
    b: Commitment,
    /// The last checkpoint both have.
    last: u64,
    /// The greatest checkpoint both are known to agree on, with its state hash.
    agreed: Option<(u64, Hash)>,
    /// The least checkpoint they are known to differ on.
    differs: Option<u64>,
    /// Whether they agree on the last checkpoint both have, once asked.
    last_agrees: Option<bool>,
    rounds: u32,
}

/// What the referee needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Both providers' state hashes at this checkpoint, with proofs.
    Leaf(u64),
    /// The state at `segment - 1` (either provider's: both committed to it), to re-run
    /// `segment`.
    Judge { segment: u64 },
}

impl Bisection {
    /// Starts from the two commitments (each has at least two checkpoints: the receipt checks
    /// saw to that).
    pub fn new(a: Commitment, b: Commitment) -> Self {
        let last = a.checkpoints.min(b.checkpoints).saturating_sub(1).max(1);
        Bisection {
            a,
            b,
            last,
            agreed: None,
            differs: None,
            last_agrees: None,
            rounds: 0,
        }
    }

    /// Question-and-answer rounds so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// What to ask next.
    pub fn next(&self) -> Next {
        let Some((agreed, _)) = self.agreed else {
            return Next::Leaf(0);
        };
        match (self.differs, self.last_agrees) {
            (Some(d), _) if d == agreed + 1 => Next::Judge { segment: d },
            (Some(d), _) => Next::Leaf(agreed + (d - agreed) / 2),
            (None, None) => Next::Leaf(self.last),
            // They agree on the last checkpoint both have: the segment that ends there decides
            // (where the job stops, and its output), from the checkpoint before it.
            (None, Some(_)) if agreed + 1 == self.last => Next::Judge { segment: self.last },
            (None, Some(_)) => Next::Leaf(self.last - 1),
        }
    }

    /// Takes both providers' answers for checkpoint `index`. `own_initial` is the state after
    /// `init` the referee computed itself (needed for checkpoint 0): a provider whose
    /// checkpoint 0 differs from it lied there.
    pub fn answer(
        &mut self,
        index: u64,
        (leaf_a, proof_a): (Hash, &[u8]),
        (leaf_b, proof_b): (Hash, &[u8]),
        own_initial: Option<Hash>,
    ) -> Result<Option<Verdict>, AnswerError> {
        if self.next() != Next::Leaf(index) {
            return Err(AnswerError::Unexpected(index));
        }
        if !commit::verify_states(&self.a, &[(index, leaf_a)], proof_a) {
            return Err(AnswerError::BadProof(Side::A, index));
        }
        if !commit::verify_states(&self.b, &[(index, leaf_b)], proof_b) {
            return Err(AnswerError::BadProof(Side::B, index));
        }
        self.rounds += 1;
        if index == 0 {
            let own = own_initial.ok_or(AnswerError::Unexpected(0))?;
            let liars: Vec<Side> = [(Side::A, leaf_a), (Side::B, leaf_b)]
                .into_iter()
                .filter(|(_, leaf)| *leaf != own)
                .map(|(side, _)| side)
                .collect();
            if !liars.is_empty() {
                return Ok(Some(Verdict::Lied {
                    liars,
                    segment: 0,
                    why: "checkpoint 0 is not the state after init computed here from the input"
                        .into(),
                }));
            }
            self.agreed = Some((0, own));
            return Ok(None);
        }
        let same = leaf_a == leaf_b;
        if index == self.last && self.last_agrees.is_none() {
            self.last_agrees = Some(same);
            if !same {
                self.differs = Some(index);
            }
            return Ok(None);
        }
        if same {
            self.agreed = Some((index, leaf_a));
        } else {
            self.differs = Some(index);
        }
        Ok(None)
    }

    /// Judges `segment`: `pre` is the hash of the state the referee restored and re-ran (it
    /// must be the agreed checkpoint `segment - 1`), `run` what the step gave, and each
    /// provider's state hash at checkpoint `segment` with its proof, and its receipt.
    pub fn judge(
        &self,
        segment: u64,
        pre: Hash,
        run: &SegmentRun,
        claims: [((Hash, &[u8]), &Receipt); 2],
    ) -> Result<Verdict, AnswerError> {
        if self.next() != (Next::Judge { segment }) {
            return Err(AnswerError::Unexpected(segment));
        }
        if self.agreed.map(|(_, leaf)| leaf) != Some(pre) {
            return Err(AnswerError::BadState(segment - 1));
        }
        let mut liars = Vec::new();
        let mut why = Vec::new();
        for ((side, commitment), ((leaf, proof), receipt)) in
            [(Side::A, &self.a), (Side::B, &self.b)]
                .into_iter()
                .zip(claims)
        {
            if !commit::verify_states(commitment, &[(segment, leaf)], proof) {
                return Err(AnswerError::BadProof(side, segment));
            }
            let stops_here = commitment.checkpoints == segment + 1;
            let reason = if leaf != run.post_state {
                Some("its checkpoint is not the state re-running the step gives".to_owned())
            } else if run.done != stops_here {
                Some(format!(
                    "the step says the job {} here, its trace {}",
                    if run.done { "ends" } else { "goes on" },
                    if stops_here { "ends" } else { "goes on" }
                ))
            } else {
                match &run.finish {
                    Some((output, _)) if Hash::of(output) != receipt.output => {
                        Some("the job's output is not the one it signed".to_owned())
                    }
                    Some((_, fuel)) if *fuel != receipt.fuel_used => Some(format!(
                        "the job used {fuel} fuel, it signed {}",
                        receipt.fuel_used
                    )),
                    _ => None,
                }
            };
            if let Some(reason) = reason {
                liars.push(side);
                why.push(format!("provider {side:?} at segment {segment}: {reason}"));
            }
        }
        Ok(if liars.is_empty() {
            Verdict::Undecided(format!(
                "both traces follow at segment {segment}; they differ elsewhere"
            ))
        } else {
            Verdict::Lied {
                liars,
                segment,
                why: why.join("; "),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::commit::CheckpointTree;

    fn leaves(n: u64, forged_from: Option<u64>) -> Vec<Hash> {
        (0..n)
            .map(|i| match forged_from {
                Some(f) if i >= f => Hash::of_encoded(&("forged", i)),
                _ => Hash::of_encoded(&("state", i)),
            })
            .collect()
    }

    fn receipt(output: &[u8], commitment: Commitment) -> Receipt {
        Receipt {
            profile: 1,
            job: Hash::of(b"job"),
            customer: crate::identity::Keypair::from_seed(&[1; 32]).public(),
            module: Hash::of(b"module"),
            input: Hash::of(b"input"),
            output: Hash::of(output),
            fuel_used: 10,
            commitment: Some(commitment),
            payment: None,
            completed_at_ms: 0,
        }
    }

    /// Bisects two traces of `n` checkpoints, B forged from `forged`; returns the segment the
    /// bisection ends at and the rounds it took.
    fn bisect(n: u64, forged: u64) -> (u64, u32) {
        let (a, b) = (leaves(n, None), leaves(n, Some(forged)));
        let (ta, tb) = (CheckpointTree::new(&a), CheckpointTree::new(&b));
        let mut bisection = Bisection::new(ta.commitment(), tb.commitment());
        loop {
            match bisection.next() {
                Next::Leaf(i) => {
                    let (pa, pb) = (ta.prove(&[i]), tb.prove(&[i]));
                    let own = (i == 0).then_some(a[0]);
                    let verdict = bisection
                        .answer(i, (a[i as usize], &pa), (b[i as usize], &pb), own)
                        .expect("valid answers");
                    assert_eq!(verdict, None);
                }
                Next::Judge { segment } => return (segment, bisection.rounds()),
            }
        }
    }

    #[test]
    fn bisection_finds_the_first_forged_checkpoint_in_log_rounds() {
        for n in [2u64, 3, 17, 1001, 65_536] {
            for forged in [1, n / 2, n - 1] {
                if forged == 0 {
                    continue;
                }
                let (segment, rounds) = bisect(n, forged);
                assert_eq!(segment, forged, "n {n}, forged at {forged}");
                let bound = 64 - (n - 1).leading_zeros() + 3;
                assert!(rounds <= bound, "n {n}: {rounds} rounds > {bound}");
            }
        }
    }

    #[test]
    fn answers_that_do_not_match_the_commitments_are_refused() {
        let (a, b) = (leaves(9, None), leaves(9, Some(4)));
        let (ta, tb) = (CheckpointTree::new(&a), CheckpointTree::new(&b));
        let mut bisection = Bisection::new(ta.commitment(), tb.commitment());
        // Checkpoint 0 differing from the referee's own: that provider lied at init.
        let verdict = bisection
            .clone()
            .answer(
                0,
                (a[0], &ta.prove(&[0])),
                (b[0], &tb.prove(&[0])),
                Some(b[1]),
            )
            .expect("valid proofs");
        assert!(
            matches!(verdict, Some(Verdict::Lied { segment: 0, ref liars, .. }) if liars.len() == 2)
        );
        // A leaf that is not in the tree, or a proof for another index.
        assert_eq!(
            bisection.answer(
                0,
                (b[3], &ta.prove(&[0])),
                (b[0], &tb.prove(&[0])),
                Some(a[0])
            ),
            Err(AnswerError::BadProof(Side::A, 0))
        );
        assert_eq!(
            bisection.answer(5, (a[5], &ta.prove(&[5])), (b[5], &tb.prove(&[5])), None),
            Err(AnswerError::Unexpected(5))
        );
        // Bisect to the judging, then restore a state that is not the agreed one.
        let (segment, _) = bisect(9, 4);
        assert_eq!(segment, 4);
        let mut bisection = Bisection::new(ta.commitment(), tb.commitment());
        while let Next::Leaf(i) = bisection.next() {
            let own = (i == 0).then_some(a[0]);
            bisection
                .answer(
                    i,
                    (a[i as usize], &ta.prove(&[i])),
                    (b[i as usize], &tb.prove(&[i])),
                    own,
                )
                .expect("valid");
        }
        let run = SegmentRun {
            post_state: a[4],
            done: false,
            finish: None,
        };
        let (ra, rb) = (
            receipt(b"x", ta.commitment()),
            receipt(b"y", tb.commitment()),
        );
        let (pa, pb) = (ta.prove(&[4]), tb.prove(&[4]));
        assert_eq!(
            bisection.judge(4, a[2], &run, [((a[4], &pa), &ra), ((b[4], &pb), &rb)]),
            Err(AnswerError::BadState(3))
        );
        let verdict = bisection
            .judge(4, a[3], &run, [((a[4], &pa), &ra), ((b[4], &pb), &rb)])
            .expect("judged");
        assert!(
            matches!(verdict, Verdict::Lied { ref liars, segment: 4, .. } if liars == &[Side::B])
        );
    }
}

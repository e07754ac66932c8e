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

use super::commit::{self, Commitment};
use super::exec::{Engine, JobError, SegmentRun, SparseSnapshot};
use super::fraud::Claim;
use super::profile::Prepared;
use super::{JobSpec, Receipt};
use crate::hash::Hash;
use std::collections::BTreeMap;

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

/// What is false in a provider's signed trace at `segment`, given what re-running that
/// segment from its committed pre-state gave (`run`): its checkpoint `segment` (`leaf`) is not
/// the state reached, the step ends the job where its trace goes on (or the reverse), or — at
/// the last segment — the output or fuel it signed are not the ones the job gives. `None`: the
/// segment follows.
pub fn segment_lie(
    commitment: &Commitment,
    segment: u64,
    leaf: Hash,
    run: &SegmentRun,
    receipt: &Receipt,
) -> Option<String> {
    let stops_here = commitment.checkpoints == segment + 1;
    if leaf != run.post_state {
        return Some("its checkpoint is not the state re-running the step gives".to_owned());
    }
    if run.done != stops_here {
        return Some(format!(
            "the step says the job {} here, its trace {}",
            if run.done { "ends" } else { "goes on" },
            if stops_here { "ends" } else { "goes on" }
        ));
    }
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
            let reason = segment_lie(commitment, segment, leaf, run, receipt);
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

/// How the referee reaches the two providers: one question at a time, whatever carries it
/// (the page's WebRTC streams, a native client's TCP streams).
#[allow(async_fn_in_trait)]
pub trait Questions {
    /// `side`'s state hash at checkpoint `index`, with its Merkle proof.
    async fn leaf(&mut self, side: Side, index: u64) -> Result<(Hash, Vec<u8>), String>;
    /// `side`'s whole state at checkpoint `index`.
    async fn state(&mut self, side: Side, index: u64) -> Result<SparseSnapshot, String>;
    /// Both providers' answers for checkpoint `index`: one after the other unless the carrier
    /// can ask both at once (one round trip per round instead of two).
    async fn leaves(&mut self, index: u64) -> [Result<(Hash, Vec<u8>), String>; 2] {
        let a = self.leaf(Side::A, index).await;
        let b = self.leaf(Side::B, index).await;
        [a, b]
    }
    /// After each answered round: how many so far, and what comes next (for progress).
    fn progress(&mut self, _rounds: u32, _next: Next) {}
}

/// How refereeing ended.
#[derive(Debug, Clone)]
pub enum Refereed {
    /// A verdict. For each provider that lied, the claim a fraud proof needs (see
    /// [`super::fraud`]), built from its own signed answers.
    Verdict {
        verdict: Verdict,
        rounds: u32,
        claims: Vec<(Side, Claim)>,
    },
    /// A provider stopped answering, or answered with something its commitment does not
    /// prove: no verdict, and that provider named.
    Stopped {
        side: Side,
        reason: String,
        rounds: u32,
    },
}

/// The two computations of a refereeing: the job's initial state, and one step from a state
/// both providers committed to. [`OnEngine`] makes them in this thread; the app makes them in
/// its worker, so that they do not hold up the page.
pub trait Rerun {
    /// The state hash after `init` of `input` (checkpoint 0).
    fn initial(
        &self,
        input: &[u8],
        fuel_limit: u64,
    ) -> impl std::future::Future<Output = Result<Hash, JobError>>;
    /// Restores `pre` into a fresh instance and runs one step (see
    /// [`super::exec::run_segment`]).
    fn segment(
        &self,
        pre: &SparseSnapshot,
        fuel_limit: u64,
    ) -> impl std::future::Future<Output = Result<SegmentRun, JobError>>;
}

/// [`Rerun`] on an engine of this thread.
pub struct OnEngine<'a, E> {
    pub engine: &'a E,
    pub prepared: &'a Prepared,
}

impl<E: Engine> Rerun for OnEngine<'_, E> {
    async fn initial(&self, input: &[u8], fuel_limit: u64) -> Result<Hash, JobError> {
        super::exec::initial_state(self.engine, self.prepared, input, fuel_limit)
    }

    async fn segment(&self, pre: &SparseSnapshot, fuel_limit: u64) -> Result<SegmentRun, JobError> {
        let fresh = super::exec::fresh_chunks(self.engine)?;
        super::exec::run_segment(self.engine, self.prepared, pre, &fresh, fuel_limit)
    }
}

/// Referees two receipts for the same job (same module, input and fuel limit): compares them,
/// and if they differ bisects over their commitments asking `questions`, re-runs the one
/// segment where they part on `engine`, and names who lied. Every answer is checked against
/// the commitment its provider signed before it is used.
pub async fn referee<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    spec: &JobSpec,
    receipts: [&Receipt; 2],
    questions: &mut impl Questions,
) -> Result<Refereed, JobError> {
    let rerun = OnEngine { engine, prepared };
    referee_with(&rerun, prepared, spec, receipts, questions).await
}

/// [`referee`], with the re-runs made by `rerun`.
pub async fn referee_with(
    rerun: &impl Rerun,
    prepared: &Prepared,
    spec: &JobSpec,
    receipts: [&Receipt; 2],
    questions: &mut impl Questions,
) -> Result<Refereed, JobError> {
    let [ra, rb] = receipts;
    if agree(ra, rb) {
        return Ok(Refereed::Verdict {
            verdict: Verdict::Agree,
            rounds: 0,
            claims: Vec::new(),
        });
    }
    let (Some(ca), Some(cb)) = (ra.commitment, rb.commitment) else {
        return Err(JobError::Restore(
            "refereeing needs two step-job commitments".into(),
        ));
    };
    let own = rerun.initial(&spec.input, spec.fuel_limit).await?;
    let mut bisection = Bisection::new(ca, cb);
    // Every answer each side gave, with its proof: the material of fraud proofs.
    let mut said: [BTreeMap<u64, (Hash, Vec<u8>)>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let stopped = |side: Side, reason: String, rounds: u32| {
        Ok(Refereed::Stopped {
            side,
            reason,
            rounds,
        })
    };
    let index_of = |side: Side| usize::from(side == Side::B);
    loop {
        let next = bisection.next();
        questions.progress(bisection.rounds(), next);
        let i = match next {
            Next::Leaf(i) => i,
            Next::Judge { segment } => segment,
        };
        let [a, b] = questions.leaves(i).await;
        let (leaf_a, proof_a) = match a {
            Ok(answer) => answer,
            Err(reason) => return stopped(Side::A, reason, bisection.rounds()),
        };
        let (leaf_b, proof_b) = match b {
            Ok(answer) => answer,
            Err(reason) => return stopped(Side::B, reason, bisection.rounds()),
        };
        match next {
            Next::Leaf(_) => {
                let verdict = bisection.answer(
                    i,
                    (leaf_a, &proof_a),
                    (leaf_b, &proof_b),
                    (i == 0).then_some(own),
                );
                said[0].insert(i, (leaf_a, proof_a));
                said[1].insert(i, (leaf_b, proof_b));
                match verdict {
                    Ok(None) => {}
                    Ok(Some(verdict)) => {
                        let claims = init_claims(&verdict, &said);
                        return Ok(Refereed::Verdict {
                            verdict,
                            rounds: bisection.rounds(),
                            claims,
                        });
                    }
                    Err(e) => return answer_refused(e, bisection.rounds()),
                }
            }
            Next::Judge { segment } => {
                let Some((agreed, agreed_hash)) = bisection.agreed else {
                    return Err(JobError::Restore("judging before any agreement".into()));
                };
                // Both committed to the pre-state: ask A, then B if A does not give it.
                let mut pre = None;
                let mut first_refusal = None;
                for side in [Side::A, Side::B] {
                    let refusal = match questions.state(side, agreed).await {
                        Ok(state)
                            if state.check(&prepared.profile).is_ok()
                                && state.hash() == agreed_hash =>
                        {
                            pre = Some(state);
                            break;
                        }
                        Ok(_) => format!("its state {agreed} is not the one it committed to"),
                        Err(reason) => reason,
                    };
                    first_refusal.get_or_insert((side, refusal));
                }
                let Some(pre) = pre else {
                    let (side, reason) = first_refusal.unwrap_or((Side::A, String::new()));
                    return stopped(side, reason, bisection.rounds());
                };
                let run = rerun.segment(&pre, spec.fuel_limit).await;
                let verdict = match run {
                    Ok(run) => match bisection.judge(
                        segment,
                        agreed_hash,
                        &run,
                        [((leaf_a, &proof_a), ra), ((leaf_b, &proof_b), rb)],
                    ) {
                        Ok(verdict) => verdict,
                        Err(e) => return answer_refused(e, bisection.rounds()),
                    },
                    Err(e @ JobError::Engine(_)) => return Err(e),
                    // The step fails from the state both committed to, yet both traces go on.
                    Err(e) => Verdict::Lied {
                        liars: vec![Side::A, Side::B],
                        segment,
                        why: format!("the step fails here ({e}) but both traces go on"),
                    },
                };
                said[0].insert(segment, (leaf_a, proof_a));
                said[1].insert(segment, (leaf_b, proof_b));
                let claims = match &verdict {
                    Verdict::Lied { liars, .. } => liars
                        .iter()
                        .filter_map(|side| {
                            let mine = &said[index_of(*side)];
                            let (_, pre_proof) = mine.get(&(segment - 1))?;
                            let (post, post_proof) = mine.get(&segment)?;
                            Some((
                                *side,
                                Claim::Segment {
                                    index: segment,
                                    pre: pre.clone(),
                                    pre_proof: pre_proof.clone(),
                                    post: *post,
                                    post_proof: post_proof.clone(),
                                },
                            ))
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                return Ok(Refereed::Verdict {
                    verdict,
                    rounds: bisection.rounds(),
                    claims,
                });
            }
        }
    }
}

/// An answer the bisection would not take: a proof its provider's commitment does not back
/// names that provider (it stops the refereeing); anything else is the referee's own error.
fn answer_refused(error: AnswerError, rounds: u32) -> Result<Refereed, JobError> {
    match error {
        AnswerError::BadProof(side, index) => Ok(Refereed::Stopped {
            side,
            reason: format!(
                "its answer for checkpoint {index} does not match the commitment it signed"
            ),
            rounds,
        }),
        other => Err(JobError::Restore(other.to_string())),
    }
}

/// The claims for providers whose checkpoint 0 is not the state after `init`.
fn init_claims(
    verdict: &Verdict,
    said: &[BTreeMap<u64, (Hash, Vec<u8>)>; 2],
) -> Vec<(Side, Claim)> {
    let Verdict::Lied {
        liars, segment: 0, ..
    } = verdict
    else {
        return Vec::new();
    };
    liars
        .iter()
        .filter_map(|side| {
            let (state, proof) = said[usize::from(*side == Side::B)].get(&0)?;
            Some((
                *side,
                Claim::Init {
                    state: *state,
                    proof: proof.clone(),
                },
            ))
        })
        .collect()
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

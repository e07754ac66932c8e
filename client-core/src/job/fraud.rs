//! Fraud proofs: a provider's signed receipt, and what it takes for anyone to see that one step
//! of the trace it signed does not follow.
//!
//! A step job's receipt commits to every checkpoint state by a Merkle root. A [`FraudProof`]
//! names one place where that trace is false and carries what re-checking it needs:
//!
//! - [`Claim::Init`]: checkpoint 0 is not the state `init` reaches from the job's input.
//! - [`Claim::Segment`]: from checkpoint `index - 1` (its state travels in the proof, and must
//!   hash to the committed leaf), one step does not reach checkpoint `index`, or ends the job
//!   where the trace goes on (or the reverse), or — at the last segment — gives another output
//!   or fuel count than the receipt signs.
//!
//! The module's bytes travel in the proof too (they must hash to the receipt's module), and the
//! customer's signed request (it must hash to the receipt's job), which gives the input and the
//! fuel limit. So a judge needs nothing but the proof and an engine: it runs one `init` or one
//! step, at most [`JUDGE_FUEL_CAP`] fuel, and the same proof gets the same verdict everywhere.
//!
//! Checking is split in two: [`FraudProof::check_evidence`] (pure: signatures, hashes, Merkle
//! proofs, sizes) and [`judge`], which re-runs on a [`Judge`]'s engine. The ledger runs both on
//! every fraud-proof transaction; a proof against an honest receipt is refused.

use super::commit::{self, Commitment};
use super::exec::{JobError, SegmentRun, SparseSnapshot};
use super::profile::{self, Prepared, Profile};
use super::referee::segment_lie;
use super::{JobRequest, Receipt, job_id};
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::signed::Signed;
use borsh::{BorshDeserialize, BorshSerialize};

/// The most fuel a judge spends re-running one step (or `init`) of a fraud proof. A segment
/// that needs more cannot be judged on the ledger; its proof is refused.
pub const JUDGE_FUEL_CAP: u64 = 500_000_000;

/// The largest encoded fraud-proof transaction: the module, the request and one checkpoint
/// state must fit.
pub const MAX_FRAUD_PROOF_BYTES: usize = 512 * 1024;

/// Which false statement of a receipt a proof shows.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Claim {
    /// Checkpoint 0, `state`, is not what `init` gives; `proof` proves leaf 0.
    Init { state: Hash, proof: Vec<u8> },
    /// Segment `index` (at least 1): `pre` is checkpoint `index - 1`, `post` the committed
    /// checkpoint `index`; each has its own Merkle proof (as a referee collects them, one
    /// question at a time).
    Segment {
        index: u64,
        pre: SparseSnapshot,
        pre_proof: Vec<u8>,
        post: Hash,
        post_proof: Vec<u8>,
    },
}

impl Claim {
    /// The segment the claim is about (0: `init`).
    pub fn segment(&self) -> u64 {
        match self {
            Claim::Init { .. } => 0,
            Claim::Segment { index, .. } => *index,
        }
    }
}

/// Everything needed to show, to anyone with an engine, that a provider signed a false trace.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FraudProof {
    pub receipt: Signed<Receipt>,
    /// The customer's signed request the receipt answers.
    pub request: JobRequest,
    /// The job module as uploaded.
    pub module: Vec<u8>,
    pub claim: Claim,
}

/// Why a fraud proof is refused. Each says what is wrong with the proof (or that the receipt
/// is honest there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FraudError {
    #[error("the receipt's signature does not verify")]
    ReceiptSignature,
    #[error("the request is not the one the receipt answers")]
    WrongRequest,
    #[error("the module bytes are not the receipt's module")]
    WrongModule,
    #[error("the receipt's input is not the request's")]
    WrongInput,
    #[error("the receipt names profile {0}, which this network does not run")]
    UnknownProfile(u32),
    #[error("the module is refused by the profile: {0}")]
    Module(String),
    #[error("the receipt is for a one-shot job: it commits to no trace to point into")]
    NoTrace,
    #[error("segment {index} is outside the trace of {checkpoints} checkpoints")]
    OutOfTrace { index: u64, checkpoints: u64 },
    #[error("the states in the proof are not the receipt's committed checkpoints")]
    NotCommitted,
    #[error("the pre-state cannot be restored: {0}")]
    BadState(String),
    #[error("segment {segment} of this receipt follows: the receipt is honest there")]
    Honest { segment: u64 },
    #[error("the judge could not re-run the segment: {0}")]
    Unjudgeable(String),
}

/// What a judge found: the provider lied, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub provider: PublicKey,
    pub customer: PublicKey,
    pub job: Hash,
    pub segment: u64,
    pub why: String,
}

/// An engine that can re-run one piece of a prepared job, within [`JUDGE_FUEL_CAP`].
pub trait Judge {
    /// The state hash after `init` (see [`super::exec::initial_state`]).
    fn initial_state(
        &self,
        prepared: &Prepared,
        input: &[u8],
        fuel_limit: u64,
    ) -> Result<Hash, JobError>;
    /// One step from `pre` (see [`super::exec::run_segment_capped`], with the cap).
    fn run_segment(
        &self,
        prepared: &Prepared,
        pre: &SparseSnapshot,
        fuel_limit: u64,
    ) -> Result<SegmentRun, JobError>;
    /// The whole verdict on `proof` ([`verdict_of`]). It depends on the proof's bytes alone, so
    /// a judge may remember it: a validator then judges a proof once, however often it sees it
    /// (in its mempool, in the blocks it builds and in those it checks).
    fn verdict(&self, proof: &FraudProof) -> Result<Proven, FraudError> {
        verdict_of(proof, self)
    }
}

/// A judge without an engine: every proof it is asked about is unjudgeable. For code that
/// never sees fraud proofs (tests of other transactions, tools).
pub struct NoJudge;

impl Judge for NoJudge {
    fn initial_state(&self, _: &Prepared, _: &[u8], _: u64) -> Result<Hash, JobError> {
        Err(JobError::Engine("no job engine here".into()))
    }
    fn run_segment(
        &self,
        _: &Prepared,
        _: &SparseSnapshot,
        _: u64,
    ) -> Result<SegmentRun, JobError> {
        Err(JobError::Engine("no job engine here".into()))
    }
}

/// A proof whose evidence checked: the module prepared, the commitment it points into.
pub struct Evidence<'a> {
    pub proof: &'a FraudProof,
    pub receipt: &'a Receipt,
    pub commitment: Commitment,
    pub prepared: Prepared,
}

impl FraudProof {
    /// Every check that needs no engine: the receipt's signature, that the request and module
    /// are the receipt's, that the claimed states are its committed leaves, that a pre-state is
    /// well-formed and hashes to its leaf.
    pub fn check_evidence(&self) -> Result<Evidence<'_>, FraudError> {
        let receipt = self
            .receipt
            .verify()
            .map_err(|_| FraudError::ReceiptSignature)?;
        if job_id(&self.request) != receipt.job || self.request.signer != receipt.customer {
            return Err(FraudError::WrongRequest);
        }
        let spec = &self.request.body.body;
        if Hash::of(&self.module) != receipt.module || spec.module != receipt.module {
            return Err(FraudError::WrongModule);
        }
        if Hash::of(&spec.input) != receipt.input {
            return Err(FraudError::WrongInput);
        }
        if receipt.profile != Profile::V1.version {
            return Err(FraudError::UnknownProfile(receipt.profile));
        }
        let commitment = receipt.commitment.ok_or(FraudError::NoTrace)?;
        let prepared = profile::prepare(&self.module, &Profile::V1)
            .map_err(|e| FraudError::Module(e.to_string()))?;
        let index = self.claim.segment();
        if index >= commitment.checkpoints {
            return Err(FraudError::OutOfTrace {
                index,
                checkpoints: commitment.checkpoints,
            });
        }
        let committed = match &self.claim {
            Claim::Init { state, proof } => {
                commit::verify_states(&commitment, &[(0, *state)], proof)
            }
            Claim::Segment {
                index,
                pre,
                pre_proof,
                post,
                post_proof,
            } => {
                pre.check(&prepared.profile)
                    .map_err(|e| FraudError::BadState(e.to_string()))?;
                *index >= 1
                    && commit::verify_states(&commitment, &[(index - 1, pre.hash())], pre_proof)
                    && commit::verify_states(&commitment, &[(*index, *post)], post_proof)
            }
        };
        if !committed {
            return Err(FraudError::NotCommitted);
        }
        Ok(Evidence {
            proof: self,
            receipt,
            commitment,
            prepared,
        })
    }
}

/// Checks `proof`'s evidence, then re-runs its claimed piece on `judge`'s engine.
pub fn verdict_of<J: Judge + ?Sized>(proof: &FraudProof, judge: &J) -> Result<Proven, FraudError> {
    let evidence = proof.check_evidence()?;
    self::judge(&evidence, judge)
}

/// Re-runs the claimed piece of the trace on `judge`'s engine: `Ok` when the receipt is false
/// there, [`FraudError::Honest`] when it follows.
pub fn judge<J: Judge + ?Sized>(evidence: &Evidence<'_>, judge: &J) -> Result<Proven, FraudError> {
    let spec = &evidence.proof.request.body.body;
    let segment = evidence.proof.claim.segment();
    let unjudgeable = |e: JobError| FraudError::Unjudgeable(e.to_string());
    let why = match &evidence.proof.claim {
        Claim::Init { state, .. } => {
            match judge.initial_state(&evidence.prepared, &spec.input, spec.fuel_limit) {
                Ok(own) => {
                    (own != *state).then(|| "checkpoint 0 is not the state init gives".to_owned())
                }
                Err(e @ (JobError::Engine(_) | JobError::OverJudgeCap { .. })) => {
                    return Err(unjudgeable(e));
                }
                Err(e) => Some(format!("init fails ({e}) where the receipt goes on")),
            }
        }
        Claim::Segment { pre, post, .. } => {
            match judge.run_segment(&evidence.prepared, pre, spec.fuel_limit) {
                Ok(run) => {
                    segment_lie(&evidence.commitment, segment, *post, &run, evidence.receipt)
                }
                // A step that fails where the receipt says the job went on: the trace past it
                // is made up. Failures of the judge itself decide nothing.
                Err(e @ (JobError::Engine(_) | JobError::OverJudgeCap { .. })) => {
                    return Err(unjudgeable(e));
                }
                Err(JobError::Restore(e)) => return Err(FraudError::BadState(e)),
                Err(e) => Some(format!("the step fails ({e}) where the receipt goes on")),
            }
        }
    };
    match why {
        Some(why) => Ok(Proven {
            provider: evidence.proof.receipt.signer,
            customer: evidence.receipt.customer,
            job: evidence.receipt.job,
            segment,
            why,
        }),
        None => Err(FraudError::Honest { segment }),
    }
}

/// A judge for any engine: compiles the prepared module with `compile` and runs on it, capped.
pub struct EngineJudge<F>(pub F);

impl<E, F> Judge for EngineJudge<F>
where
    E: super::exec::Engine,
    F: Fn(&Prepared) -> Result<E, String>,
{
    fn initial_state(
        &self,
        prepared: &Prepared,
        input: &[u8],
        fuel_limit: u64,
    ) -> Result<Hash, JobError> {
        let engine = (self.0)(prepared).map_err(JobError::Engine)?;
        // `init` runs with the job's whole fuel limit; cap it by a limit of its own.
        if fuel_limit > JUDGE_FUEL_CAP {
            let capped = super::exec::initial_state(&engine, prepared, input, JUDGE_FUEL_CAP);
            return match capped {
                Err(JobError::OutOfFuel { .. }) => Err(JobError::OverJudgeCap {
                    cap: JUDGE_FUEL_CAP,
                }),
                // Within the cap `init` behaves the same, but the fuel counter it leaves is part
                // of the state: run it again with the real limit, now known to end in time.
                Err(e) => Err(e),
                Ok(_) => super::exec::initial_state(&engine, prepared, input, fuel_limit),
            };
        }
        super::exec::initial_state(&engine, prepared, input, fuel_limit)
    }

    fn run_segment(
        &self,
        prepared: &Prepared,
        pre: &SparseSnapshot,
        fuel_limit: u64,
    ) -> Result<SegmentRun, JobError> {
        let engine = (self.0)(prepared).map_err(JobError::Engine)?;
        let fresh = super::exec::fresh_chunks(&engine)?;
        super::exec::run_segment_capped(&engine, prepared, pre, &fresh, fuel_limit, JUDGE_FUEL_CAP)
    }
}

//! What the browser checks before it believes a job's result, and how strongly.
//!
//! 1. [`check_receipt`]: the receipt is signed by the relay and names this job, this customer,
//!    this module, this input and this output, under this profile, within the fuel limit.
//! 2. Then, the strongest affordable level:
//!    - [`reexecute`]: the whole job again on the local engine: same output, same fuel, and for
//!      step jobs the same checkpoint root;
//!    - sampling ([`SamplePlan`], [`SampleCheck`]): after the commitment is known, random
//!      segments (always the last one) are re-run from pre-states the relay sends, and every
//!      state involved is checked against the commitment by Merkle proof.
//!
//! Failures name the check that failed.

use super::commit::{self, CheckpointTree, Commitment};
use super::exec::{self, Engine, JobError, SparseSnapshot};
use super::profile::{JobForm, Prepared};
use super::{JobRequest, Receipt, job_id};
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::signed::Signed;
use borsh::{BorshDeserialize, BorshSerialize};
use libp2p_identity::PeerId;
use std::collections::BTreeMap;

/// A check that did not pass, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("receipt signature: {0}")]
    Signature(String),
    #[error("receipt: signed by {got}, but the job went to relay {expected}")]
    WrongRelay { expected: String, got: String },
    #[error("receipt: it is for job {got}, not this job ({expected})")]
    WrongJob { expected: Hash, got: Hash },
    #[error("receipt: it names another customer")]
    WrongCustomer,
    #[error("receipt: it names module {got}, the job ran {expected}")]
    WrongModule { expected: Hash, got: Hash },
    #[error("receipt: it names another input")]
    WrongInput,
    #[error("receipt: profile {got}, this client checks profile {expected}")]
    WrongProfile { expected: u32, got: u32 },
    #[error("receipt: the output hash does not match the output received")]
    OutputHash,
    #[error("receipt: fuel used {used} exceeds the limit {limit}")]
    FuelOverLimit { used: u64, limit: u64 },
    #[error("receipt: {0}")]
    Commitment(&'static str),
    #[error("receipt: it commits to {claimed} steps, but the request allowed at most {max}")]
    TooManySteps { claimed: u64, max: u32 },
    #[error("receipt: the payment it names is not the voucher this job carried")]
    Payment,
    #[error("re-execution: the output differs (relay {claimed}, local {actual})")]
    Output { claimed: Hash, actual: Hash },
    #[error("re-execution: fuel differs (relay {claimed}, local {actual})")]
    Fuel { claimed: u64, actual: u64 },
    #[error("re-execution: the checkpoint root differs (relay {claimed}, local {actual})")]
    CheckpointRoot { claimed: Hash, actual: Hash },
    #[error("re-execution failed locally although the relay reported success: {0}")]
    Execution(JobError),
    #[error("checkpoint 0: the state after init is not the one the relay committed to")]
    InitialState,
    #[error("segment {segment}: re-running it from its committed pre-state gives another state")]
    Segment { segment: u64 },
    #[error("segment {segment}: {reason}")]
    SegmentEnd { segment: u64, reason: &'static str },
    #[error("Merkle proof: the sampled states are not those the relay committed to")]
    Proof,
    #[error("sampling: {0}")]
    Sampling(String),
    /// A failure reported by a worker that ran the check: its check's name and its message.
    #[error("{message}")]
    Reported {
        check: &'static str,
        message: String,
    },
}

impl VerifyError {
    /// The short name of the failed check, for people and tests.
    pub fn check(&self) -> &'static str {
        match self {
            VerifyError::Signature(_) | VerifyError::WrongRelay { .. } => "receipt signature",
            VerifyError::WrongJob { .. }
            | VerifyError::WrongCustomer
            | VerifyError::WrongModule { .. }
            | VerifyError::WrongInput
            | VerifyError::WrongProfile { .. }
            | VerifyError::OutputHash
            | VerifyError::FuelOverLimit { .. }
            | VerifyError::Commitment(_)
            | VerifyError::TooManySteps { .. }
            | VerifyError::Payment => "receipt contents",
            VerifyError::Output { .. } => "output",
            VerifyError::Fuel { .. } => "fuel",
            VerifyError::CheckpointRoot { .. }
            | VerifyError::InitialState
            | VerifyError::Segment { .. }
            | VerifyError::SegmentEnd { .. } => "checkpoint",
            VerifyError::Proof => "Merkle proof",
            VerifyError::Execution(_) | VerifyError::Sampling(_) => "re-execution",
            VerifyError::Reported { check, .. } => check,
        }
    }

    /// A failure as a worker reported it, under the name of the check it gave (one of
    /// [`CHECKS`]; anything else is counted as a failed re-execution).
    pub fn reported(check: &str, message: String) -> VerifyError {
        let check = CHECKS
            .iter()
            .find(|c| **c == check)
            .copied()
            .unwrap_or("re-execution");
        VerifyError::Reported { check, message }
    }
}

/// The names [`VerifyError::check`] gives.
pub const CHECKS: [&str; 7] = [
    "receipt signature",
    "receipt contents",
    "output",
    "fuel",
    "checkpoint",
    "Merkle proof",
    "re-execution",
];

/// How strongly a result was verified.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum Strength {
    /// The whole job was run again locally: same output and fuel (and every checkpoint).
    Reexecuted { fuel: u64, checkpoints: u64 },
    /// `checked` of `segments` segments were re-run from committed pre-states.
    Sampled {
        segments: u64,
        checked: Vec<u64>,
        /// (fraction of faked segments, probability such a provider is caught)
        detection: Vec<(f64, f64)>,
    },
}

impl Strength {
    /// One line for people: what was re-run and what it buys.
    pub fn describe(&self) -> String {
        match self {
            Strength::Reexecuted { fuel, checkpoints } if *checkpoints > 0 => format!(
                "re-executed in full in this browser: same output, same fuel ({fuel}), all {checkpoints} checkpoints match"
            ),
            Strength::Reexecuted { fuel, .. } => {
                format!("re-executed in full in this browser: same output, same fuel ({fuel})")
            }
            Strength::Sampled {
                segments,
                checked,
                detection,
            } => {
                let odds: Vec<String> = detection
                    .iter()
                    .map(|(f, p)| {
                        format!("{:.0}% of it is caught with {:.1}%", f * 100.0, p * 100.0)
                    })
                    .collect();
                let one = single_step_catch(*segments, checked.len() as u64);
                format!(
                    "evidence of work, not of a correct output: {} of {segments} segments re-run against the relay's signed checkpoint commitment (always the last); a relay that skipped or faked {}; one forged step only with {:.1}%",
                    checked.len(),
                    odds.join(", "),
                    one * 100.0
                )
            }
        }
    }
}

/// A verified result: who ran it, what was checked and how strongly.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub relay: PublicKey,
    pub receipt: Receipt,
    pub checks: Vec<String>,
    pub strength: Strength,
}

/// The receipt checks. `relay` is the key of the relay the job was sent to, when known.
pub fn check_receipt(
    request: &JobRequest,
    prepared: &Prepared,
    output: &[u8],
    receipt: &Signed<Receipt>,
    relay: Option<&PeerId>,
) -> Result<Vec<String>, VerifyError> {
    let body = receipt
        .verify()
        .map_err(|e| VerifyError::Signature(e.to_string()))?;
    let signer = receipt.signer.to_peer_id().ok();
    if let Some(expected) = relay
        && Some(expected) != signer.as_ref()
    {
        return Err(VerifyError::WrongRelay {
            expected: expected.to_string(),
            got: signer.map_or_else(|| receipt.signer.to_string(), |p| p.to_string()),
        });
    }
    let job = job_id(request);
    if body.job != job {
        return Err(VerifyError::WrongJob {
            expected: job,
            got: body.job,
        });
    }
    if body.customer != request.signer {
        return Err(VerifyError::WrongCustomer);
    }
    let spec = &request.body.body;
    if body.module != spec.module || prepared.module_hash != spec.module {
        return Err(VerifyError::WrongModule {
            expected: spec.module,
            got: body.module,
        });
    }
    if body.input != Hash::of(&spec.input) {
        return Err(VerifyError::WrongInput);
    }
    if body.profile != prepared.profile.version {
        return Err(VerifyError::WrongProfile {
            expected: prepared.profile.version,
            got: body.profile,
        });
    }
    if body.output != Hash::of(output) {
        return Err(VerifyError::OutputHash);
    }
    if body.fuel_used > spec.fuel_limit {
        return Err(VerifyError::FuelOverLimit {
            used: body.fuel_used,
            limit: spec.fuel_limit,
        });
    }
    match (prepared.form, &body.commitment) {
        (JobForm::OneShot, None) => {}
        (JobForm::OneShot, Some(_)) => {
            return Err(VerifyError::Commitment("a one-shot job has no checkpoints"));
        }
        (JobForm::Steps, None) => {
            return Err(VerifyError::Commitment(
                "a step job needs a checkpoint commitment",
            ));
        }
        (JobForm::Steps, Some(c)) if c.checkpoints < 2 || c.checkpoints > exec::MAX_CHECKPOINTS => {
            return Err(VerifyError::Commitment("impossible number of checkpoints"));
        }
        (JobForm::Steps, Some(c)) if c.checkpoints - 1 > u64::from(spec.max_steps) => {
            return Err(VerifyError::TooManySteps {
                claimed: c.checkpoints - 1,
                max: spec.max_steps,
            });
        }
        (JobForm::Steps, Some(_)) => {}
    }
    let paid = match (&spec.payment, &body.payment) {
        (None, None) => "no payment: the relay did not charge for this job".to_owned(),
        (Some(voucher), Some(payment))
            if payment.channel == voucher.body.channel
                && payment.cumulative == voucher.body.cumulative
                && payment.price <= payment.cumulative =>
        {
            format!(
                "receipt names the payment: {} on channel {} (voucher for {} in total)",
                payment.price, payment.channel, payment.cumulative
            )
        }
        _ => return Err(VerifyError::Payment),
    };
    Ok(vec![
        format!(
            "receipt signed by relay {}",
            signer.map_or_else(|| receipt.signer.to_string(), |p| p.to_string())
        ),
        "receipt names this job, this customer, this module and this input".into(),
        format!("output matches the receipt's hash {}", body.output),
        format!(
            "fuel used {} is within the limit {}",
            body.fuel_used, spec.fuel_limit
        ),
        paid,
    ])
}

/// Runs the whole job again and compares everything the receipt claims.
pub fn reexecute<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    request: &JobRequest,
    receipt: &Receipt,
) -> Result<Strength, VerifyError> {
    let spec = &request.body.body;
    let outcome = exec::execute_within(
        engine,
        prepared,
        &spec.input,
        spec.fuel_limit,
        spec.max_steps,
        &mut exec::Unobserved,
    )
    .map_err(VerifyError::Execution)?;
    let actual = Hash::of(&outcome.output);
    if actual != receipt.output {
        return Err(VerifyError::Output {
            claimed: receipt.output,
            actual,
        });
    }
    if outcome.fuel_used != receipt.fuel_used {
        return Err(VerifyError::Fuel {
            claimed: receipt.fuel_used,
            actual: outcome.fuel_used,
        });
    }
    if let Some(claimed) = &receipt.commitment {
        let local = CheckpointTree::new(&outcome.checkpoints).commitment();
        if local != *claimed {
            return Err(VerifyError::CheckpointRoot {
                claimed: claimed.root,
                actual: local.root,
            });
        }
    }
    Ok(Strength::Reexecuted {
        fuel: outcome.fuel_used,
        checkpoints: outcome.checkpoints.len() as u64,
    })
}

/// The chance that sampling `checked` of `segments` segments (the last always among them)
/// catches a relay that forged one single step — one that is not the last, as the strongest
/// such cheater would choose.
pub fn single_step_catch(segments: u64, checked: u64) -> f64 {
    if segments <= 1 {
        return 1.0;
    }
    checked.saturating_sub(1).min(segments - 1) as f64 / (segments - 1) as f64
}

/// The fractions of faked work the detection probability is reported for.
pub const REPORTED_FRACTIONS: [f64; 3] = [0.01, 0.05, 0.10];

/// Which segments to re-run and which states to ask for.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SamplePlan {
    pub commitment: Commitment,
    /// Segments to re-run (segment `i` goes from checkpoint `i - 1` to `i`), sorted.
    pub segments: Vec<u64>,
    /// Checkpoint states to fetch: the pre-state of every sampled segment.
    pub states: Vec<u64>,
    /// Checkpoints the Merkle proof must cover: 0, the pre- and the post-states.
    pub prove: Vec<u64>,
}

impl SamplePlan {
    /// Plans enough samples to catch a provider who faked `fraction` of the segments with
    /// probability `confidence`. `seed` must be drawn at random after the commitment arrived.
    pub fn new(commitment: Commitment, fraction: f64, confidence: f64, seed: &[u8; 32]) -> Self {
        let segments = commitment.checkpoints.saturating_sub(1);
        let count = commit::samples_needed(segments, fraction, confidence)
            .max(1)
            .min(super::MAX_SAMPLE_STATES as u64);
        let picked = commit::pick_segments(segments, count, seed);
        let states: Vec<u64> = picked.iter().map(|s| s - 1).collect();
        let mut prove: Vec<u64> = picked.iter().flat_map(|s| [s - 1, *s]).collect();
        prove.push(0);
        prove.sort_unstable();
        prove.dedup();
        SamplePlan {
            commitment,
            segments: picked,
            states,
            prove,
        }
    }
}

/// Sampling in progress: states arrive, segments are re-run one at a time (so a page can show
/// progress between them), and the proof closes it.
pub struct SampleCheck<'a> {
    prepared: &'a Prepared,
    request: &'a JobRequest,
    receipt: &'a Receipt,
    plan: SamplePlan,
    states: BTreeMap<u64, SparseSnapshot>,
    /// The chunks of a fresh instance's memory that hold data, found on the first segment.
    fresh: Option<Vec<u32>>,
    /// Every leaf the proof must confirm: index → state hash.
    leaves: BTreeMap<u64, Hash>,
    checked: Vec<u64>,
}

impl<'a> SampleCheck<'a> {
    pub fn new(
        prepared: &'a Prepared,
        request: &'a JobRequest,
        receipt: &'a Receipt,
        plan: SamplePlan,
    ) -> Self {
        SampleCheck {
            prepared,
            request,
            receipt,
            plan,
            states: BTreeMap::new(),
            fresh: None,
            leaves: BTreeMap::new(),
            checked: Vec::new(),
        }
    }

    pub fn plan(&self) -> &SamplePlan {
        &self.plan
    }

    fn record_leaf(&mut self, index: u64, hash: Hash) -> Result<(), VerifyError> {
        match self.leaves.insert(index, hash) {
            Some(previous) if previous != hash => Err(if index == 0 {
                VerifyError::InitialState
            } else {
                VerifyError::Segment { segment: index }
            }),
            _ => Ok(()),
        }
    }

    /// A state the relay sent. Only states the plan asked for are taken.
    pub fn add_state(&mut self, index: u64, state: SparseSnapshot) -> Result<(), VerifyError> {
        if !self.plan.states.contains(&index) || self.states.contains_key(&index) {
            return Err(VerifyError::Sampling(format!("unexpected state {index}")));
        }
        state
            .check(&self.prepared.profile)
            .map_err(|e| VerifyError::Sampling(format!("state {index}: {e}")))?;
        self.record_leaf(index, state.hash())?;
        self.states.insert(index, state);
        Ok(())
    }

    /// Recomputes checkpoint 0 from the input: the state after `init`.
    pub fn check_initial_state<E: Engine>(&mut self, engine: &E) -> Result<(), VerifyError> {
        let spec = &self.request.body.body;
        let hash = exec::initial_state(engine, self.prepared, &spec.input, spec.fuel_limit)
            .map_err(VerifyError::Execution)?;
        self.record_leaf(0, hash)
    }

    /// Re-runs sampled segment `segment` from its pre-state.
    pub fn check_segment<E: Engine>(
        &mut self,
        engine: &E,
        segment: u64,
    ) -> Result<(), VerifyError> {
        if self.fresh.is_none() {
            self.fresh = Some(exec::fresh_chunks(engine).map_err(VerifyError::Execution)?);
        }
        let fresh = self.fresh.as_deref().unwrap_or_default();
        let Some(pre) = segment.checked_sub(1).and_then(|i| self.states.get(&i)) else {
            return Err(VerifyError::Sampling(format!(
                "the pre-state of segment {segment} was not received"
            )));
        };
        let last = segment + 1 == self.plan.commitment.checkpoints;
        let fuel_limit = self.request.body.body.fuel_limit;
        let run = exec::run_segment(engine, self.prepared, pre, fresh, fuel_limit)
            .map_err(|_| VerifyError::Segment { segment })?;
        if run.done != last {
            return Err(VerifyError::SegmentEnd {
                segment,
                reason: if last {
                    "the job does not finish at the last committed checkpoint"
                } else {
                    "the job finishes before the last committed checkpoint"
                },
            });
        }
        if let Some((output, fuel)) = &run.finish {
            let actual = Hash::of(output);
            if actual != self.receipt.output {
                return Err(VerifyError::Output {
                    claimed: self.receipt.output,
                    actual,
                });
            }
            if *fuel != self.receipt.fuel_used {
                return Err(VerifyError::Fuel {
                    claimed: self.receipt.fuel_used,
                    actual: *fuel,
                });
            }
        }
        self.record_leaf(segment, run.post_state)?;
        self.checked.push(segment);
        Ok(())
    }

    /// Checks the proof over every state seen and reports the strength bought.
    pub fn finish(self, proof: &[u8]) -> Result<Strength, VerifyError> {
        let mut missing: Vec<u64> = self.plan.segments.clone();
        missing.retain(|s| !self.checked.contains(s));
        if !missing.is_empty() || !self.leaves.contains_key(&0) {
            return Err(VerifyError::Sampling(
                "not every planned segment was checked".into(),
            ));
        }
        let leaves: Vec<(u64, Hash)> = self.leaves.into_iter().collect();
        if !commit::verify_states(&self.plan.commitment, &leaves, proof) {
            return Err(VerifyError::Proof);
        }
        let segments = self.plan.commitment.checkpoints - 1;
        let sampled = self.checked.len() as u64;
        let detection = REPORTED_FRACTIONS
            .iter()
            .map(|f| {
                let bad = ((segments as f64) * f).ceil().max(1.0) as u64;
                (*f, commit::detection_probability(segments, sampled, bad))
            })
            .collect();
        Ok(Strength::Sampled {
            segments,
            checked: self.checked,
            detection,
        })
    }
}

/// The computing part of a result's check, once everything the relay must send has arrived:
/// one value, so that a page can hand it to a worker and keep its own thread free.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct CheckTask {
    pub request: JobRequest,
    pub receipt: Receipt,
    pub method: CheckMethod,
}

/// How a result is re-checked.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum CheckMethod {
    /// The whole job again.
    Reexecute,
    /// The sampled segments from the states the relay sent, closed by its Merkle proof.
    Sample {
        plan: SamplePlan,
        states: Vec<(u64, SparseSnapshot)>,
        proof: Vec<u8>,
    },
}

impl CheckTask {
    /// Runs the check on `engine`, which runs `prepared` (the task's module, prepared).
    /// `on_segment(done, total)` follows a sampling check between segments.
    pub fn run<E: Engine>(
        &self,
        prepared: &Prepared,
        engine: &E,
        on_segment: &mut dyn FnMut(usize, usize),
    ) -> Result<Strength, VerifyError> {
        let (plan, states, proof) = match &self.method {
            CheckMethod::Reexecute => {
                return reexecute(engine, prepared, &self.request, &self.receipt);
            }
            CheckMethod::Sample {
                plan,
                states,
                proof,
            } => (plan, states, proof),
        };
        let mut check = SampleCheck::new(prepared, &self.request, &self.receipt, plan.clone());
        for (index, state) in states {
            check.add_state(*index, state.clone())?;
        }
        check.check_initial_state(engine)?;
        let total = plan.segments.len();
        for (done, segment) in plan.segments.iter().enumerate() {
            on_segment(done, total);
            check.check_segment(engine, *segment)?;
        }
        on_segment(total, total);
        check.finish(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_failure_keeps_its_check_and_an_unknown_one_counts_as_re_execution() {
        let local = [
            VerifyError::WrongCustomer,
            VerifyError::Output {
                claimed: Hash::of(b"a"),
                actual: Hash::of(b"b"),
            },
            VerifyError::Fuel {
                claimed: 1,
                actual: 2,
            },
            VerifyError::Segment { segment: 3 },
            VerifyError::Proof,
            VerifyError::Sampling("x".into()),
        ];
        for error in local {
            assert!(CHECKS.contains(&error.check()), "{error}");
            let reported = VerifyError::reported(error.check(), error.to_string());
            assert_eq!(reported.check(), error.check());
            assert_eq!(reported.to_string(), error.to_string());
        }
        let odd = VerifyError::reported("made up", "the worker says no".into());
        assert_eq!(odd.check(), "re-execution");
        assert_eq!(odd.to_string(), "the worker says no");
    }
}

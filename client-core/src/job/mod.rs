//! Jobs: a Wasm module, an input and a fuel limit, signed by the customer; executed by a
//! relay; checked by the customer's own engine.
//!
//! - [`profile`]: which modules are accepted and the instrumentation that makes them
//!   deterministic on any engine.
//! - [`exec`]: the driver that runs a prepared module on an [`exec::Engine`], and the
//!   snapshots of its state.
//! - [`commit`]: the Merkle commitment over a step job's checkpoints and the sampling maths.
//! - [`verify`]: the checks the browser runs on a result, reported check by check.
//!
//! This module holds the wire messages of `/aqueduct/job/1` and the signed receipt.

pub mod commit;
pub mod exec;
pub mod fraud;
pub mod history;
pub mod profile;
pub mod referee;
pub mod verify;

use crate::envelope::Request;
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::ledger::Voucher;
use crate::ledger::pay::Payment;
use crate::signed::{Domain, Signed};
use borsh::{BorshDeserialize, BorshSerialize};
use commit::Commitment;
use exec::{JobError, SparseSnapshot};

/// The job protocol: one stream per job (or per re-attachment), opened by the browser.
pub const JOB_PROTOCOL: &str = "/aqueduct/job/1";
/// Largest input a job may take.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Largest frame on the job protocol: a module upload plus its input, with room for the
/// envelope.
pub const MAX_JOB_FRAME: usize = 6 * 1024 * 1024;
/// Most checkpoint snapshots one sample request may ask for.
pub const MAX_SAMPLE_STATES: usize = 256;

/// What the customer asks for. The module is named by the hash of its bytes; the bytes travel
/// beside the signed request only when the relay does not have them yet.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct JobSpec {
    pub module: Hash,
    pub input: Vec<u8>,
    pub fuel_limit: u64,
    /// Step jobs: the most steps the relay may run (and commit checkpoints for), at most
    /// [`exec::MAX_STEPS`]. The customer bounds it, so a relay cannot stretch the trace to
    /// thin out the segments a page samples.
    pub max_steps: u32,
    /// The customer's voucher paying for the job, where the relay's offer has a price.
    pub payment: Option<Box<Signed<Voucher>>>,
}

impl Domain for JobSpec {
    const TAG: &'static str = "aqueduct/v1/job";
}

/// A signed job request.
pub type JobRequest = Signed<Request<JobSpec>>;

/// The job's identity: the hash of the whole signed request.
pub fn job_id(request: &JobRequest) -> Hash {
    Hash::of_encoded(request)
}

/// What a relay signs when it returns a result. A wrong receipt is a permanent, checkable
/// confession.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    /// The deterministic profile the job ran under.
    pub profile: u32,
    pub job: Hash,
    pub customer: PublicKey,
    pub module: Hash,
    pub input: Hash,
    pub output: Hash,
    pub fuel_used: u64,
    /// Step jobs: the Merkle root of the checkpoint states.
    pub commitment: Option<Commitment>,
    /// What the job paid, if the relay charged for it.
    pub payment: Option<Payment>,
    pub completed_at_ms: u64,
}

impl Domain for Receipt {
    const TAG: &'static str = "aqueduct/v1/receipt";
}

/// Browser → relay on a job stream.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ClientMsg {
    /// Run a job. `module` carries the module's bytes when the relay asked for them.
    Submit {
        request: JobRequest,
        module: Option<Vec<u8>>,
    },
    /// Follow a job submitted earlier (after a reconnect): its progress or its result.
    Attach { job: Hash },
    /// After a result: send the states at `states`, and one Merkle proof covering `prove`.
    Sample { states: Vec<u64>, prove: Vec<u64> },
    /// Stop the job.
    Cancel,
    /// After a result: the state hashes (Merkle leaves) at `indices`, with one proof — what a
    /// referee bisecting two providers' traces asks for.
    Leaves { indices: Vec<u64> },
}

/// Relay → browser on a job stream.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RelayMsg {
    /// The relay does not have this module: send the request again with its bytes.
    NeedModule {
        module: Hash,
    },
    /// The job is queued or running.
    Accepted {
        job: Hash,
        queue_position: u32,
    },
    Progress {
        fuel_used: u64,
        checkpoints: u64,
    },
    Done {
        output: Vec<u8>,
        receipt: Box<Signed<Receipt>>,
        /// How long the relay took to run the job (informational, not signed).
        run_ms: u64,
    },
    Failed {
        job: Hash,
        failure: JobFailure,
    },
    /// One checkpoint state of a sample request.
    State {
        index: u64,
        state: SparseSnapshot,
    },
    /// The proof that ends a sample request.
    Proof {
        proof: Vec<u8>,
    },
    /// The message could not be handled (bad request, unknown job, relay busy, …).
    Refused {
        reason: Refusal,
        message: String,
    },
    /// The answer to `Leaves`: the state hashes in the order asked, and their proof.
    Leaves {
        hashes: Vec<Hash>,
        proof: Vec<u8>,
    },
}

/// Why a job ended without a result.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
pub enum JobFailure {
    #[error("{0}")]
    Execution(JobError),
    #[error("the module was refused: {0}")]
    Module(String),
    #[error("the job ran longer than the relay's limit of {limit_ms} ms")]
    TimedOut { limit_ms: u64 },
    #[error("the job used more memory than the relay allows")]
    Memory,
    #[error("the relay restarted while the job was running; submit it again")]
    RelayRestarted,
    #[error("cancelled")]
    Cancelled,
}

impl JobFailure {
    /// Whether the customer pays for a job that ended this way. A job pays for its result; one
    /// the relay failed to run — its own limits (time, memory), a module it refused, its engine
    /// failing — is not charged: the relay takes back the voucher's increment, and the page
    /// builds its next voucher on the previous one. A job that failed by itself (trapped, ran
    /// out of its fuel, went past its step limit — deterministic, what any engine gives) or
    /// that the customer cancelled is charged: the relay did the work. A job cut short by a
    /// relay restart stays charged for now: the relay's take-back is not kept across restarts,
    /// and both sides must agree on the voucher the next job builds on.
    pub fn charged(&self) -> bool {
        match self {
            JobFailure::Execution(JobError::Engine(_))
            | JobFailure::TimedOut { .. }
            | JobFailure::Memory
            | JobFailure::Module(_) => false,
            JobFailure::Execution(_) | JobFailure::Cancelled | JobFailure::RelayRestarted => true,
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Refusal {
    Malformed,
    TooLarge,
    /// Failed envelope checks: signature, network, expiry, replay.
    Request,
    /// Too many jobs for this customer or in total, or the queue is full.
    Busy,
    UnknownJob,
    /// The job has no checkpoints to sample, or they are no longer kept.
    NoStates,
    /// The module bytes do not hash to the module named in the request.
    ModuleMismatch,
    Input,
    /// The job's voucher is missing or does not pay the relay's price.
    Payment,
}

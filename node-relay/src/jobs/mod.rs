//! The job executor: modules, a bounded queue, worker threads, results that outlive restarts.
//!
//! - Modules are content-addressed. The original bytes and wasmtime's compiled form are kept
//!   under `<data dir>/modules/`, so a module is uploaded and compiled once, across restarts.
//! - Jobs wait in a bounded queue; a customer may hold a few jobs (queued or running) at a time
//!   and the relay a fixed number in total. Workers are OS threads with large stacks: job code
//!   never runs on the async runtime, so it cannot stall the network.
//! - Every job has a wall-clock limit (wasmtime epochs), a memory cap and the fuel limit the
//!   customer signed.
//! - A job is marked as running on disk (`<data dir>/jobs/<id>.running`) before it starts and
//!   its result is written (`<id>.done`) when it ends. After a crash, jobs that were running end
//!   as "relay restarted" — never as a hang. Results are kept for a retention period.
//! - Step jobs' checkpoint states are kept in memory (4 KiB chunks shared between consecutive
//!   checkpoints) for a while, so the customer can sample them.

pub mod engine;
pub mod protocol;

use crate::datadir::write_atomic;
use crate::payments::Payments;
use anyhow::Context;
use client_core::encoding::{decode, encode};
use client_core::envelope::{ReplayGuard, RequestError, RequestPolicy, authenticate};
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::job::commit::CheckpointTree;
use client_core::job::exec::{self, JobError, Observer, SparseSnapshot};
use client_core::job::profile::{self, JobForm, ModuleError, Prepared, Profile};
use client_core::job::{JobFailure, JobRequest, MAX_INPUT_BYTES, Receipt, Refusal, job_id};
use client_core::ledger::pay::Payment;
use client_core::signed::Signed;
use engine::{DEADLINE_MESSAGE, JobEngine, JobModule};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Limits and sizes of the executor.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub workers: usize,
    /// Jobs waiting for a worker, in total.
    pub queue: usize,
    /// Jobs one customer may have queued or running.
    pub per_customer: usize,
    pub max_fuel: u64,
    pub wall_clock: Duration,
    /// How long finished results are kept.
    pub retention: Duration,
    /// How long step jobs' checkpoint states are kept for sampling.
    pub state_retention: Duration,
    /// Memory the kept checkpoint states may take in total.
    pub max_state_bytes: usize,
    /// The longest request lifetime accepted before the ledger has parameters; from then on
    /// the governed `max_job_ttl_ms` is enforced.
    pub max_request_ttl: Duration,
    /// Disk the stored results may take; past it the oldest go first.
    pub results_budget: u64,
    /// Disk the uploaded and compiled modules may take; past it the least recently used go
    /// first (a customer whose module went is asked for its bytes again).
    pub modules_budget: u64,
    /// How often results past their retention or the budgets are removed.
    pub prune_interval: Duration,
    /// Where finished jobs are counted, by outcome (for `/metrics`).
    pub outcomes: crate::metrics::JobOutcomes,
    /// Job streams opened (for `/metrics`: with jobs, how many jobs each stream carried).
    pub streams: prometheus_client::metrics::counter::Counter,
    pub fault: Fault,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get().min(48)),
            queue: 64,
            per_customer: 2,
            max_fuel: 50_000_000_000,
            wall_clock: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
            state_retention: Duration::from_secs(30 * 60),
            max_state_bytes: 512 * 1024 * 1024,
            max_request_ttl: Duration::from_secs(10 * 60),
            results_budget: 1 << 30,
            modules_budget: 1 << 30,
            prune_interval: Duration::from_secs(30),
            outcomes: crate::metrics::JobOutcomes::default(),
            streams: Default::default(),
            fault: Fault::None,
        }
    }
}

/// Live request nonces the relay remembers against replays, in all and per signer: one signer
/// (a key is free to make) cannot take the room of the others.
pub const REPLAY_CAPACITY: usize = 100_000;
pub const REPLAY_PER_SIGNER: usize = 4_096;

/// Deliberate lies, for testing that browsers catch them. Only builds with the `faulty`
/// feature can select anything but `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// A different output (with a receipt that matches it).
    WrongOutput,
    /// One more unit of fuel in the receipt than was used.
    WrongFuel,
    /// The second half of the checkpoints replaced, as if that work was skipped.
    WrongCheckpoint,
    /// A receipt whose signature does not verify.
    BadSignature,
    /// The transition of this step forged (one byte of live state flipped), the rest of the
    /// trace computed honestly from there: every sample but that segment checks out.
    FabricateStep(u64),
    /// [`Fault::FabricateStep`], and the questions of a referee (`Leaves`) go unanswered.
    SilentFabricateStep(u64),
}

impl Fault {
    /// The step this fault forges, if it forges one.
    fn forged_step(self) -> Option<u64> {
        match self {
            Fault::FabricateStep(step) | Fault::SilentFabricateStep(step) => Some(step),
            _ => None,
        }
    }
}

/// Where a job stands, as followers see it.
#[derive(Debug, Clone)]
pub enum JobState {
    Queued { position: u32 },
    Running { fuel_used: u64, checkpoints: u64 },
    Done(Arc<Finished>),
    Failed(JobFailure),
}

#[derive(Debug)]
pub struct Finished {
    pub output: Vec<u8>,
    pub receipt: Signed<Receipt>,
    /// Execution time on this relay (0 when read back from disk).
    pub run_ms: u64,
}

/// A job the service knows about while it runs (and a while after).
///
/// Its state is a watch channel that may have no receiver at times (before a stream follows
/// the job, or after the browser left): updates use `send_replace`, which stores the value
/// even then, so a follower that subscribes late still sees the latest state.
pub struct Live {
    pub job: Hash,
    customer: PublicKey,
    state: watch::Sender<JobState>,
    cancel: AtomicBool,
    finished_at: Mutex<Option<Instant>>,
}

impl Live {
    pub fn subscribe(&self) -> watch::Receiver<JobState> {
        self.state.subscribe()
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// A module ready to run: its instrumented form and wasmtime's compilation of it.
pub struct LoadedModule {
    pub prepared: Prepared,
    pub compiled: JobModule,
}

struct Queued {
    live: Arc<Live>,
    module: Arc<LoadedModule>,
    request: JobRequest,
    payment: Option<Payment>,
}

/// A checkpoint state as kept: globals and memory in 4 KiB chunks (`None` for zeros), chunks
/// shared with the previous checkpoint when unchanged.
struct KeptState {
    globals: Vec<u64>,
    len: usize,
    chunks: Vec<Option<Arc<[u8]>>>,
}

const CHUNK: usize = 4096;

impl KeptState {
    fn capture(globals: &[u64], memory: &[u8], previous: Option<&KeptState>) -> (KeptState, usize) {
        let mut fresh = 0;
        let chunks = memory
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, bytes)| {
                if let Some(Some(prev)) = previous.and_then(|p| p.chunks.get(i))
                    && prev.as_ref() == bytes
                {
                    return Some(Arc::clone(prev));
                }
                if bytes.iter().all(|b| *b == 0) {
                    return None;
                }
                fresh += bytes.len();
                Some(Arc::from(bytes))
            })
            .collect();
        let state = KeptState {
            globals: globals.to_vec(),
            len: memory.len(),
            chunks,
        };
        (state, fresh + state_overhead(memory.len()))
    }

    fn to_sparse(&self) -> SparseSnapshot {
        SparseSnapshot {
            globals: self.globals.clone(),
            memory_len: self.len as u64,
            chunks: self
                .chunks
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (i as u32, c.to_vec())))
                .collect(),
        }
    }
}

fn state_overhead(len: usize) -> usize {
    64 + len / CHUNK * std::mem::size_of::<Option<Arc<[u8]>>>()
}

/// The checkpoints of a finished step job, for sample requests.
pub struct JobStates {
    tree: CheckpointTree,
    /// The state hashes the tree commits to, in order (answers to a referee's questions).
    hashes: Vec<Hash>,
    states: Vec<KeptState>,
    bytes: usize,
    kept_at: Instant,
}

impl JobStates {
    pub fn count(&self) -> u64 {
        self.states.len() as u64
    }

    pub fn state(&self, index: u64) -> Option<SparseSnapshot> {
        self.states.get(index as usize).map(KeptState::to_sparse)
    }

    pub fn prove(&self, indices: &[u64]) -> Vec<u8> {
        self.tree.prove(indices)
    }

    /// The committed state hash of checkpoint `index`.
    pub fn hash(&self, index: u64) -> Option<Hash> {
        self.hashes.get(index as usize).copied()
    }
}

struct Inner {
    live: HashMap<Hash, Arc<Live>>,
    finished: VecDeque<Hash>,
    per_customer: HashMap<PublicKey, usize>,
    queued: usize,
    replay: ReplayGuard,
    states: HashMap<Hash, Arc<JobStates>>,
    state_order: VecDeque<Hash>,
    state_bytes: usize,
}

/// Finished jobs kept in memory for quick re-attachment (older ones are read from disk).
const LIVE_FINISHED: usize = 256;

pub struct JobService {
    engine: JobEngine,
    keypair: Keypair,
    policy: RequestPolicy,
    profile: Profile,
    config: JobConfig,
    jobs_dir: PathBuf,
    modules_dir: PathBuf,
    modules: Mutex<HashMap<Hash, Arc<LoadedModule>>>,
    payments: Arc<Payments>,
    inner: Mutex<Inner>,
    queue: SyncSender<Queued>,
}

/// Why a submission was not accepted.
#[derive(Debug)]
pub enum SubmitError {
    NeedModule(Hash),
    Refused(Refusal, String),
    /// The module was examined and refused: a result, not a protocol error.
    Module(Hash, ModuleError),
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
enum StoredResult {
    Done {
        output: Vec<u8>,
        receipt: Box<Signed<Receipt>>,
    },
    Failed(JobFailure),
}

const MAX_STORED_RESULT: usize = exec::MAX_OUTPUT_BYTES + 64 * 1024;

impl JobService {
    /// Opens the job directories (recovering from a crash) and starts the workers.
    pub fn start(
        data_dir: &Path,
        keypair: Keypair,
        network_id: String,
        config: JobConfig,
        payments: Arc<Payments>,
    ) -> anyhow::Result<Arc<JobService>> {
        let jobs_dir = data_dir.join("jobs");
        let modules_dir = data_dir.join("modules");
        for dir in [&jobs_dir, &modules_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let recovered = recover(&jobs_dir, config.retention)?;
        if recovered > 0 {
            tracing::warn!(
                jobs = recovered,
                "jobs were running when the relay stopped; they end as failed"
            );
        }
        let (queue, rx) = sync_channel(config.queue);
        let service = Arc::new(JobService {
            engine: JobEngine::new()?,
            keypair,
            policy: RequestPolicy {
                network_id,
                max_ttl_ms: u64::try_from(config.max_request_ttl.as_millis()).unwrap_or(u64::MAX),
                max_clock_skew_ms: 30_000,
            },
            profile: Profile::V1,
            jobs_dir,
            modules_dir,
            modules: Mutex::new(HashMap::new()),
            payments,
            inner: Mutex::new(Inner {
                live: HashMap::new(),
                finished: VecDeque::new(),
                per_customer: HashMap::new(),
                queued: 0,
                replay: ReplayGuard::with_per_signer(REPLAY_CAPACITY, REPLAY_PER_SIGNER),
                states: HashMap::new(),
                state_order: VecDeque::new(),
                state_bytes: 0,
            }),
            queue,
            config,
        });
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..service.config.workers.max(1) {
            let worker = Arc::clone(&service);
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("job-worker-{i}"))
                .stack_size(32 * 1024 * 1024)
                .spawn(move || worker.work(&rx))
                .context("starting a job worker")?;
        }
        // Results past their retention and files past the disk budgets go while the relay
        // runs, not only at start-up.
        let pruned = Arc::downgrade(&service);
        let interval = service.config.prune_interval;
        std::thread::Builder::new()
            .name("job-pruner".into())
            .spawn(move || {
                loop {
                    let Some(service) = pruned.upgrade() else {
                        break;
                    };
                    let removed = prune_results(
                        &service.jobs_dir,
                        service.config.retention,
                        service.config.results_budget,
                    );
                    if removed > 0 {
                        tracing::info!(
                            removed,
                            "stored results past their retention or the disk budget removed"
                        );
                    }
                    let evicted =
                        prune_modules(&service.modules_dir, service.config.modules_budget, None);
                    service.forget_modules(&evicted);
                    drop(service);
                    std::thread::sleep(interval);
                }
            })
            .context("starting the pruner")?;
        Ok(service)
    }

    /// Jobs accepted and not started yet.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    pub fn payments(&self) -> &Payments {
        &self.payments
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A worker that panicked while holding the lock leaves consistent-enough counters;
        // keep serving rather than poisoning every later request.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The module with this hash, from memory or from the on-disk cache.
    pub fn module(&self, hash: &Hash) -> Option<Arc<LoadedModule>> {
        let wasm = self.modules_dir.join(format!("{hash}.wasm"));
        if let Some(m) = self.modules.lock().ok()?.get(hash) {
            // Used now: the last module files the disk budget evicts.
            touch(&wasm);
            return Some(Arc::clone(m));
        }
        let bytes = std::fs::read(&wasm).ok()?;
        match self.load_module(&bytes) {
            Ok(m) if m.prepared.module_hash == *hash => Some(m),
            Ok(_) | Err(_) => {
                tracing::warn!(path = %wasm.display(), "a cached module is damaged; it will be uploaded again");
                let _ = std::fs::remove_file(&wasm);
                None
            }
        }
    }

    /// Drops evicted modules from the memory cache too: what is not on disk is not kept.
    fn forget_modules(&self, evicted: &[String]) {
        if evicted.is_empty() {
            return;
        }
        if let Ok(mut modules) = self.modules.lock() {
            modules.retain(|hash, _| !evicted.contains(&hash.to_string()));
        }
    }

    /// Validates, instruments and compiles a module, and caches it (in memory and on disk).
    /// CPU-heavy: call from a blocking context.
    pub fn load_module(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, ModuleError> {
        let prepared = profile::prepare(bytes, &self.profile)?;
        let hash = prepared.module_hash;
        // Compiled for each engine: with epoch checks, and bounded by fuel alone.
        let cwasm = [
            self.modules_dir.join(format!("{hash}.cwasm")),
            self.modules_dir.join(format!("{hash}.bounded.cwasm")),
        ];
        let cached = cwasm.iter().all(|p| p.is_file());
        let compiled = match cached.then(|| self.engine.load_serialized([&cwasm[0], &cwasm[1]])) {
            Some(Ok(module)) => module,
            _ => {
                let module = self
                    .engine
                    .compile(&prepared.code)
                    .map_err(ModuleError::Invalid)?;
                match self.engine.serialize(&module) {
                    Ok(serialized) => {
                        for (path, bytes) in cwasm.iter().zip(&serialized) {
                            if let Err(e) = write_atomic(path, bytes) {
                                tracing::warn!(error = %e, "could not cache a compiled module");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not serialize a compiled module"),
                }
                module
            }
        };
        let wasm = self.modules_dir.join(format!("{hash}.wasm"));
        if !wasm.is_file()
            && let Err(e) = write_atomic(&wasm, bytes)
        {
            tracing::warn!(error = %e, "could not keep a module on disk");
        }
        let evicted = prune_modules(&self.modules_dir, self.config.modules_budget, Some(&hash));
        self.forget_modules(&evicted);
        let loaded = Arc::new(LoadedModule { prepared, compiled });
        if let Ok(mut modules) = self.modules.lock() {
            if modules.len() >= 64 {
                modules.clear();
            }
            modules.insert(hash, Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// Checks and queues a job. `module_bytes` are the bytes sent with the request, if any.
    /// CPU-heavy when a module must be compiled: call from a blocking context.
    pub fn submit(
        &self,
        request: JobRequest,
        module_bytes: Option<&[u8]>,
    ) -> Result<(Arc<Live>, u32), SubmitError> {
        let spec = &request.body.body;
        if spec.input.len() > MAX_INPUT_BYTES {
            return Err(SubmitError::Refused(
                Refusal::Input,
                format!(
                    "the input is {} bytes; at most {MAX_INPUT_BYTES} are accepted",
                    spec.input.len()
                ),
            ));
        }
        if spec.fuel_limit == 0 || spec.fuel_limit > self.config.max_fuel {
            return Err(SubmitError::Refused(
                Refusal::Input,
                format!(
                    "the fuel limit must be between 1 and {}",
                    self.config.max_fuel
                ),
            ));
        }
        if spec.max_steps == 0 || spec.max_steps > exec::MAX_STEPS {
            return Err(SubmitError::Refused(
                Refusal::Input,
                format!("the step limit must be between 1 and {}", exec::MAX_STEPS),
            ));
        }
        // Cheap checks before any work the request asks for: its signature, network and
        // lifetime, that it is not a replay, the customer's quota and the payment. Only then is
        // a module parsed, compiled or stored, and the nonce is taken last of all.
        let now = now_ms();
        // The request lifetime the DAO governs (`max_job_ttl_ms`), once the ledger has it.
        let policy = match self.payments.params() {
            Some(params) => RequestPolicy {
                max_ttl_ms: params.max_job_ttl_ms,
                ..self.policy.clone()
            },
            None => self.policy.clone(),
        };
        let verified = authenticate(&request, &policy, now)
            .map_err(|e| SubmitError::Refused(Refusal::Request, e.to_string()))?;
        let customer = verified.signer;
        let (nonce, expires_at_ms) = (verified.request.nonce, verified.request.expires_at_ms);
        {
            let mut inner = self.lock();
            inner.replay.prune(now);
            if inner.replay.has(&customer, nonce) {
                return Err(SubmitError::Refused(
                    Refusal::Request,
                    RequestError::Replayed {
                        signer: customer,
                        nonce,
                    }
                    .to_string(),
                ));
            }
            self.customer_has_room(&inner, &customer)?;
        }
        let voucher = request.body.body.payment.clone();
        let fuel_limit = request.body.body.fuel_limit;
        self.payments
            .precheck(&customer, voucher.as_deref(), fuel_limit)
            .map_err(|e| SubmitError::Refused(Refusal::Payment, e.to_string()))?;
        let module = match (self.module(&spec.module), module_bytes) {
            (Some(m), _) => m,
            (None, None) => return Err(SubmitError::NeedModule(spec.module)),
            (None, Some(bytes)) => {
                if Hash::of(bytes) != spec.module {
                    return Err(SubmitError::Refused(
                        Refusal::ModuleMismatch,
                        "the module bytes do not hash to the module named in the request".into(),
                    ));
                }
                self.load_module(bytes)
                    .map_err(|e| SubmitError::Module(spec.module, e))?
            }
        };
        let job = job_id(&request);
        let mut inner = self.lock();
        // Again under the lock: another request of this customer may have come in meanwhile.
        self.customer_has_room(&inner, &customer)?;
        let held = inner.per_customer.get(&customer).copied().unwrap_or(0);
        let (state, _) = watch::channel(JobState::Queued {
            position: inner.queued as u32,
        });
        let live = Arc::new(Live {
            job,
            customer,
            state,
            cancel: AtomicBool::new(false),
            finished_at: Mutex::new(None),
        });
        let position = inner.queued as u32;
        let replay = &mut inner.replay;
        let marker = self.running_path(&job);
        // Under the payment book's lock, once the payment checked: the nonce, then the queue.
        let enqueue = |payment| {
            replay
                .take(customer, nonce, expires_at_ms, now)
                .map_err(|e| SubmitError::Refused(Refusal::Request, e.to_string()))?;
            // Marked before a worker can take it: a worker may finish a small job (and remove
            // the mark) before this call returns, and a mark written after that would be left
            // behind for good. Not synced: a mark lost in a crash only means a queued job is
            // reported unknown rather than cut short after the restart.
            if let Err(e) = std::fs::write(&marker, []) {
                tracing::warn!(error = %e, "could not mark a job as running");
            }
            match self.queue.try_send(Queued {
                live: Arc::clone(&live),
                module,
                request,
                payment,
            }) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = std::fs::remove_file(&marker);
                    replay.give_back(&customer, nonce);
                    Err(SubmitError::Refused(
                        Refusal::Busy,
                        match e {
                            TrySendError::Full(_) => {
                                "the relay's job queue is full; try again shortly".into()
                            }
                            TrySendError::Disconnected(_) => "the relay is stopping".into(),
                        },
                    ))
                }
            }
        };
        let paid = self
            .payments
            .accept(job, &customer, voucher.as_deref(), fuel_limit, enqueue)
            .map_err(|e| SubmitError::Refused(Refusal::Payment, e.to_string()))?;
        let payment = paid?;
        if let Some(p) = payment {
            tracing::info!(job = %job, channel = %p.channel, price = p.price, "job paid");
        }
        inner.queued += 1;
        inner.per_customer.insert(customer, held + 1);
        inner.live.insert(job, Arc::clone(&live));
        drop(inner);
        Ok((live, position))
    }

    /// Refuses a customer that has as many jobs as it may at once.
    fn customer_has_room(&self, inner: &Inner, customer: &PublicKey) -> Result<(), SubmitError> {
        let held = inner.per_customer.get(customer).copied().unwrap_or(0);
        if held >= self.config.per_customer {
            return Err(SubmitError::Refused(
                Refusal::Busy,
                format!(
                    "at most {} jobs per customer at a time",
                    self.config.per_customer
                ),
            ));
        }
        Ok(())
    }

    /// Whether this relay answers a referee's questions (a faulty test relay may not).
    /// Counts a job stream opened.
    pub fn stream_opened(&self) {
        self.config.streams.inc();
    }

    /// The counter of job streams opened, for `/metrics`.
    pub fn streams_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.config.streams.clone()
    }

    pub fn answers_referees(&self) -> bool {
        !matches!(self.config.fault, Fault::SilentFabricateStep(_))
    }

    /// A job known in memory, or a finished one read back from disk.
    pub fn find(&self, job: &Hash) -> Option<Arc<Live>> {
        if let Some(live) = self.lock().live.get(job) {
            return Some(Arc::clone(live));
        }
        let bytes = std::fs::read(self.done_path(job)).ok()?;
        let stored = decode::<StoredResult>(&bytes, MAX_STORED_RESULT).ok()?;
        let state = match stored {
            StoredResult::Done { output, receipt } => JobState::Done(Arc::new(Finished {
                output,
                receipt: *receipt,
                run_ms: 0,
            })),
            StoredResult::Failed(failure) => JobState::Failed(failure),
        };
        let customer = match &state {
            JobState::Done(f) => f.receipt.body.customer,
            _ => PublicKey([0; 32]),
        };
        let (state, _) = watch::channel(state);
        Some(Arc::new(Live {
            job: *job,
            customer,
            state,
            cancel: AtomicBool::new(false),
            finished_at: Mutex::new(Some(Instant::now())),
        }))
    }

    /// The kept checkpoint states of a step job.
    pub fn states(&self, job: &Hash) -> Option<Arc<JobStates>> {
        self.lock().states.get(job).cloned()
    }

    fn running_path(&self, job: &Hash) -> PathBuf {
        self.jobs_dir.join(format!("{job}.running"))
    }

    fn done_path(&self, job: &Hash) -> PathBuf {
        self.jobs_dir.join(format!("{job}.done"))
    }

    fn work(&self, rx: &Mutex<Receiver<Queued>>) {
        loop {
            let next = match rx.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok(queued) = next else { return };
            {
                let mut inner = self.lock();
                inner.queued = inner.queued.saturating_sub(1);
            }
            let live = Arc::clone(&queued.live);
            let started = Instant::now();
            tracing::info!(job = %live.job, customer = %live.customer, "job started");
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(queued)))
                    .unwrap_or_else(|_| {
                        Err(JobFailure::Execution(JobError::Engine(
                            "the executor failed".into(),
                        )))
                    });
            match &outcome {
                Ok((finished, _)) => tracing::info!(
                    job = %live.job,
                    fuel = finished.receipt.body.fuel_used,
                    ms = started.elapsed().as_millis() as u64,
                    "job done"
                ),
                Err(failure) => tracing::info!(job = %live.job, %failure, "job failed"),
            }
            self.finish(&live, outcome);
        }
    }

    fn run(&self, queued: Queued) -> Result<(Finished, Option<JobStates>), JobFailure> {
        let Queued {
            live,
            module,
            request,
            payment,
        } = queued;
        if live.cancel.load(Ordering::Relaxed) {
            return Err(JobFailure::Cancelled);
        }
        live.state.send_replace(JobState::Running {
            fuel_used: 0,
            checkpoints: 0,
        });
        let spec = &request.body.body;
        let compiled =
            module
                .compiled
                .for_job(&self.profile, spec.fuel_limit, self.config.wall_clock);
        let mut observer = RelayObserver {
            live: &live,
            fuel_limit: spec.fuel_limit,
            fuel_index: module.prepared.globals.len().saturating_sub(2),
            kept: Vec::new(),
            bytes: 0,
            max_bytes: self.config.max_state_bytes,
            last_report: Instant::now(),
        };
        let prepared = &module.prepared;
        let started = Instant::now();
        let mut fabricate;
        let observed: &mut dyn exec::Observer = match self.config.fault.forged_step() {
            Some(step) => {
                fabricate = exec::Fabricate::new(step, &mut observer);
                &mut fabricate
            }
            None => &mut observer,
        };
        let outcome = exec::execute_within(
            &compiled,
            prepared,
            &spec.input,
            spec.fuel_limit,
            spec.max_steps,
            observed,
        )
        .map_err(|e| match e {
            JobError::Trap(m) if m.contains(DEADLINE_MESSAGE) => JobFailure::TimedOut {
                limit_ms: u64::try_from(self.config.wall_clock.as_millis()).unwrap_or(u64::MAX),
            },
            JobError::Trap(m) if m == exec::STOPPED => JobFailure::Cancelled,
            e => JobFailure::Execution(e),
        })?;
        let mut output = outcome.output;
        let mut fuel_used = outcome.fuel_used;
        let mut checkpoints = outcome.checkpoints;
        match self.config.fault {
            Fault::WrongOutput => output.push(b'!'),
            Fault::WrongFuel => fuel_used += 1,
            Fault::WrongCheckpoint => {
                let half = checkpoints.len() / 2;
                for (i, c) in checkpoints.iter_mut().enumerate().skip(half.max(1)) {
                    *c = Hash::of_encoded(&("skipped", i));
                }
            }
            Fault::None
            | Fault::BadSignature
            | Fault::FabricateStep(_)
            | Fault::SilentFabricateStep(_) => {}
        }
        let tree = (prepared.form == JobForm::Steps).then(|| CheckpointTree::new(&checkpoints));
        let receipt = Receipt {
            profile: self.profile.version,
            job: live.job,
            customer: request.signer,
            module: prepared.module_hash,
            input: Hash::of(&spec.input),
            output: Hash::of(&output),
            fuel_used,
            commitment: tree.as_ref().map(CheckpointTree::commitment),
            payment,
            completed_at_ms: now_ms(),
        };
        let mut receipt = Signed::sign(&self.keypair, receipt);
        if self.config.fault == Fault::BadSignature {
            receipt.signature.0[0] ^= 1;
        }
        let states = tree.map(|tree| JobStates {
            tree,
            bytes: observer.bytes + checkpoints.len() * std::mem::size_of::<Hash>(),
            hashes: checkpoints,
            states: observer.kept,
            kept_at: Instant::now(),
        });
        let run_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok((
            Finished {
                output,
                receipt,
                run_ms,
            },
            states,
        ))
    }

    fn finish(&self, live: &Arc<Live>, outcome: Result<(Finished, Option<JobStates>), JobFailure>) {
        let charged = outcome.as_ref().map_or_else(JobFailure::charged, |_| true);
        self.payments.job_ended(&live.job, charged);
        let counted = match (&outcome, charged) {
            (Ok(_), _) => "done",
            (Err(_), true) => "failed",
            (Err(_), false) => "not_charged",
        };
        crate::metrics::count_job(&self.config.outcomes, counted);
        let (state, stored) = match outcome {
            Ok((finished, states)) => {
                if let Some(states) = states {
                    self.keep_states(live.job, states);
                }
                let stored = StoredResult::Done {
                    output: finished.output.clone(),
                    receipt: Box::new(finished.receipt.clone()),
                };
                (JobState::Done(Arc::new(finished)), stored)
            }
            Err(failure) => (
                JobState::Failed(failure.clone()),
                StoredResult::Failed(failure),
            ),
        };
        if let Err(e) = write_atomic(&self.done_path(&live.job), &encode(&stored)) {
            tracing::warn!(error = %e, "could not store a job result");
        }
        let _ = std::fs::remove_file(self.running_path(&live.job));
        if let Ok(mut at) = live.finished_at.lock() {
            *at = Some(Instant::now());
        }
        live.state.send_replace(state);
        let mut inner = self.lock();
        if let Some(count) = inner.per_customer.get_mut(&live.customer) {
            *count -= 1;
            if *count == 0 {
                inner.per_customer.remove(&live.customer);
            }
        }
        inner.finished.push_back(live.job);
        while inner.finished.len() > LIVE_FINISHED {
            if let Some(old) = inner.finished.pop_front() {
                inner.live.remove(&old);
            }
        }
    }

    fn keep_states(&self, job: Hash, states: JobStates) {
        let mut inner = self.lock();
        let bytes = states.bytes;
        inner.states.insert(job, Arc::new(states));
        inner.state_order.push_back(job);
        inner.state_bytes += bytes;
        let retention = self.config.state_retention;
        while let Some(oldest) = inner.state_order.front().copied() {
            let expired = inner
                .states
                .get(&oldest)
                .is_none_or(|s| s.kept_at.elapsed() > retention);
            if inner.state_bytes <= self.config.max_state_bytes && !expired {
                break;
            }
            inner.state_order.pop_front();
            if let Some(s) = inner.states.remove(&oldest) {
                inner.state_bytes = inner.state_bytes.saturating_sub(s.bytes);
            }
        }
    }
}

/// Keeps checkpoint states and reports progress while a job runs.
struct RelayObserver<'a> {
    live: &'a Live,
    fuel_limit: u64,
    fuel_index: usize,
    kept: Vec<KeptState>,
    bytes: usize,
    max_bytes: usize,
    last_report: Instant,
}

const REPORT_EVERY: Duration = Duration::from_millis(100);

impl Observer for RelayObserver<'_> {
    fn checkpoint(&mut self, index: u64, _hash: Hash, globals: &[u64], memory: &[u8]) {
        if self.bytes <= self.max_bytes {
            let (state, bytes) = KeptState::capture(globals, memory, self.kept.last());
            self.kept.push(state);
            self.bytes += bytes;
        }
        if self.last_report.elapsed() >= REPORT_EVERY {
            self.last_report = Instant::now();
            let left = globals.get(self.fuel_index).copied().unwrap_or(0) as i64;
            self.live.state.send_replace(JobState::Running {
                fuel_used: self.fuel_limit.saturating_sub(left.max(0) as u64),
                checkpoints: index + 1,
            });
        }
    }

    fn keep_going(&mut self) -> bool {
        !self.live.cancel.load(Ordering::Relaxed)
    }
}

/// Marks a file as used now (its modification time), for least-recently-used eviction.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// What a file of `len` bytes takes on disk: whole 4 KiB blocks, one at least. Budgets count
/// this, so a budget holds however small the results are (a result of a few hundred bytes
/// still takes a block, and an inode).
fn on_disk(len: u64) -> u64 {
    len.div_ceil(DISK_BLOCK).max(1) * DISK_BLOCK
}

const DISK_BLOCK: u64 = 4096;

/// The files of `dir` as (modification time, size on disk, path), oldest first.
fn files_by_age(dir: &Path) -> Vec<(std::time::SystemTime, u64, PathBuf)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((meta.modified().ok()?, on_disk(meta.len()), entry.path()))
        })
        .collect();
    files.sort();
    files
}

/// The module a file in the modules directory belongs to (`<hash>.wasm`, `<hash>.cwasm`,
/// `<hash>.bounded.cwasm`).
fn module_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.split('.').next().map(str::to_owned)
}

/// Keeps the modules directory within `budget` bytes: the modules used least recently (by
/// their `.wasm`'s time) go first, all their files together; `keep` (just stored) stays.
/// Returns the modules removed.
fn prune_modules(dir: &Path, budget: u64, keep: Option<&Hash>) -> Vec<String> {
    let files = files_by_age(dir);
    let mut total: u64 = files.iter().map(|(_, size, _)| size).sum();
    let mut evicted = Vec::new();
    if total <= budget {
        return evicted;
    }
    let keep = keep.map(ToString::to_string);
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for (_, size, path) in &files {
        if let Some(module) = module_of(path) {
            *sizes.entry(module).or_default() += size;
        }
    }
    // Oldest `.wasm` first: that is when the module was last used.
    for (_, _, path) in files
        .iter()
        .filter(|(_, _, p)| p.extension().is_some_and(|e| e == "wasm"))
    {
        if total <= budget {
            break;
        }
        let Some(module) = module_of(path) else {
            continue;
        };
        if keep.as_deref() == Some(module.as_str()) {
            continue;
        }
        for suffix in ["wasm", "cwasm", "bounded.cwasm"] {
            let _ = std::fs::remove_file(dir.join(format!("{module}.{suffix}")));
        }
        total = total.saturating_sub(sizes.get(&module).copied().unwrap_or(0));
        tracing::info!(%module, "a module was evicted to keep within the disk budget");
        evicted.push(module);
    }
    evicted
}

/// Removes stored results past `retention`, then the oldest until the rest fits `budget`.
/// Running jobs' markers are never touched. Returns how many results were removed.
fn prune_results(dir: &Path, retention: Duration, budget: u64) -> usize {
    let results: Vec<_> = files_by_age(dir)
        .into_iter()
        .filter(|(_, _, p)| p.extension().is_some_and(|e| e == "done"))
        .collect();
    let mut total: u64 = results.iter().map(|(_, size, _)| size).sum();
    let mut removed = 0;
    for (modified, size, path) in results {
        let expired = modified.elapsed().is_ok_and(|age| age > retention);
        if !expired && total <= budget {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(size);
            removed += 1;
        }
    }
    removed
}

/// Ends jobs left running by a crash and forgets results past their retention. Returns how
/// many jobs were ended.
fn recover(dir: &Path, retention: Duration) -> anyhow::Result<usize> {
    let mut ended = 0;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("running") => {
                let done = path.with_extension("done");
                if !done.exists() {
                    let stored = StoredResult::Failed(JobFailure::RelayRestarted);
                    write_atomic(&done, &encode(&stored))?;
                    ended += 1;
                }
                let _ = std::fs::remove_file(&path);
            }
            Some("done") => {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > retention);
                if old {
                    let _ = std::fs::remove_file(&path);
                }
            }
            _ => {}
        }
    }
    Ok(ended)
}

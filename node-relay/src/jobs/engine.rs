//! Job execution on wasmtime: the [`Engine`]/[`Machine`] of `client_core::job::exec` for the
//! relay.
//!
//! The modules it runs are already instrumented (fuel, depth, NaN canonicalization), so
//! wasmtime needs none of its own metering. What it adds is what only the host can enforce:
//! a memory cap and a wall-clock deadline. Instances are allocated from a pool sized by the
//! deterministic profile.
//!
//! The deadline is wasmtime's epoch interruption (ticked by one thread), which checks a
//! counter at the top of every loop iteration — on a tight loop that costs about as much as
//! the fuel metering itself. A job's fuel already bounds its running time, though: no
//! metered instruction takes longer than [`SLOWEST_NS_PER_FUEL`]. So every module is compiled
//! twice, and a job whose fuel limit cannot outlast the wall-clock limit even at that rate
//! runs the copy without epoch checks ([`JobModule::for_job`]); only bigger ones pay for the
//! clock.

use crate::recent::Recent;
use client_core::hash::Hash;
use client_core::job::exec::{Engine, JobError, Machine, PAGE, SegmentRun, SparseSnapshot, Val};
use client_core::job::fraud::{EngineJudge, FraudError, FraudProof, Judge, Proven};
use client_core::job::profile::{Prepared, Profile};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{Config, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder};

/// How often the wall-clock deadline is checked.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The longest one unit of fuel can take, with room to spare: a load that misses every cache
/// and the TLB costs one unit and about 100 ns on today's servers (bulk memory operations and
/// `memory.grow` are charged by size, far below this per unit).
pub const SLOWEST_NS_PER_FUEL: u64 = 200;
/// Instances alive at once in one engine: one per job worker, with room to spare.
const MAX_INSTANCES: u32 = 64;
/// Native stack wasm may use; the profile's depth limit is reached long before.
const MAX_WASM_STACK: usize = 1024 * 1024;

/// The relay's two wasmtime engines — with epoch checks for jobs that need the clock, and
/// without for jobs their fuel bounds — and the epoch ticker.
#[derive(Clone)]
pub struct JobEngine {
    guarded: wasmtime::Engine,
    bounded: wasmtime::Engine,
    _ticker: Arc<Ticker>,
}

/// A module compiled for both engines.
#[derive(Clone)]
pub struct JobModule {
    /// With epoch checks: for jobs the wall clock must be able to stop.
    pub guarded: Module,
    /// Without: for jobs whose fuel ends them in time.
    pub bounded: Module,
}

/// The most fuel a job may have and still be sure to end within `limit` by running out.
pub fn fuel_within(limit: Duration) -> u64 {
    u64::try_from(limit.as_nanos() / u128::from(SLOWEST_NS_PER_FUEL)).unwrap_or(u64::MAX)
}

impl JobModule {
    /// The compiled job for a run with `fuel_limit` under the wall-clock limit `wall_clock`.
    pub fn for_job(&self, profile: &Profile, fuel_limit: u64, wall_clock: Duration) -> CompiledJob {
        if fuel_limit <= fuel_within(wall_clock) {
            CompiledJob::new(self.bounded.clone(), profile)
        } else {
            CompiledJob::new(self.guarded.clone(), profile).with_deadline(wall_clock)
        }
    }
}

struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl JobEngine {
    pub fn new() -> anyhow::Result<Self> {
        let guarded = Self::engine(true)?;
        let bounded = Self::engine(false)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticking = guarded.clone();
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("job-epoch".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })?;
        Ok(JobEngine {
            guarded,
            bounded,
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    fn engine(epochs: bool) -> anyhow::Result<wasmtime::Engine> {
        let mut config = Config::new();
        config
            .epoch_interruption(epochs)
            .max_wasm_stack(MAX_WASM_STACK)
            .wasm_simd(false)
            .wasm_relaxed_simd(false);
        // Instances come from a pool of slots reserved once: creating one costs no mmap, and
        // a slot's memory is zeroed in place (up to 4 MiB; beyond that the pages are given
        // back) instead of being unmapped and faulted in again — which matters most when a
        // verifier or a step job starts many short-lived instances.
        let profile = Profile::V1;
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_core_instances(MAX_INSTANCES)
            .total_memories(MAX_INSTANCES)
            .total_tables(MAX_INSTANCES * profile.max_tables)
            .max_tables_per_module(profile.max_tables)
            .table_elements(profile.max_table_elements as usize)
            .max_memory_size(profile.max_memory_pages as usize * PAGE)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        wasmtime::Engine::new(&config).map_err(|e| anyhow::anyhow!("configuring wasmtime: {e}"))
    }

    /// Compiles an instrumented module for both engines.
    pub fn compile(&self, code: &[u8]) -> Result<JobModule, String> {
        let compile = |engine| Module::new(engine, code).map_err(|e| format!("{e:#}"));
        Ok(JobModule {
            guarded: compile(&self.guarded)?,
            bounded: compile(&self.bounded)?,
        })
    }

    /// Serializes a compiled module for the on-disk cache: one file per engine.
    pub fn serialize(&self, module: &JobModule) -> Result<[Vec<u8>; 2], String> {
        let serialize = |m: &Module| m.serialize().map_err(|e| format!("{e:#}"));
        Ok([serialize(&module.guarded)?, serialize(&module.bounded)?])
    }

    /// Loads a module this relay serialized earlier (the two files of [`JobEngine::serialize`]).
    ///
    /// The files must come from [`JobEngine::serialize`] of this same wasmtime build: the
    /// relay only reads files it wrote itself into its data directory (wasmtime also checks
    /// the version and configuration recorded in each file and refuses mismatches).
    pub fn load_serialized(&self, paths: [&std::path::Path; 2]) -> Result<JobModule, String> {
        // SAFETY: see above; the files are ones we wrote with `serialize`, atomically.
        let load = |engine, path| {
            unsafe { Module::deserialize_file(engine, path) }.map_err(|e| format!("{e:#}"))
        };
        Ok(JobModule {
            guarded: load(&self.guarded, paths[0])?,
            bounded: load(&self.bounded, paths[1])?,
        })
    }
}

/// The engine validators judge fraud proofs with (`client_core::job::fraud`): wasmtime as jobs
/// run on, without the instance pool (a proof is judged now and then, one segment at a time)
/// and without a clock — the judge's fuel cap bounds its work, deterministically.
///
/// Verdicts are remembered ([`Remembering`]): a proof is judged when it enters the mempool, and
/// the blocks that carry it — built here or proposed by others, checked within a consensus
/// round's propose timeout — then cost a lookup instead of a compile and a re-run.
pub fn fraud_judge() -> anyhow::Result<Box<dyn Judge + Send + Sync>> {
    let mut config = Config::new();
    config
        .max_wasm_stack(MAX_WASM_STACK)
        .wasm_simd(false)
        .wasm_relaxed_simd(false);
    let engine =
        wasmtime::Engine::new(&config).map_err(|e| anyhow::anyhow!("configuring wasmtime: {e}"))?;
    Ok(Box::new(Remembering::new(EngineJudge(
        move |prepared: &Prepared| {
            Module::new(&engine, &prepared.code)
                .map(|module| CompiledJob::new(module, &prepared.profile))
                .map_err(|e| format!("{e:#}"))
        },
    ))))
}

/// How many verdicts a [`Remembering`] judge keeps (the oldest goes first).
pub const REMEMBERED_VERDICTS: usize = 64;

/// A judge that remembers its last [`REMEMBERED_VERDICTS`] verdicts by the hash of the proof's
/// encoding. A verdict is a function of those bytes alone; only a judge's own failure
/// ([`FraudError::Unjudgeable`]) is not remembered, so that it is tried again.
pub struct Remembering<J> {
    inner: J,
    verdicts: Mutex<Recent<Hash, Result<Proven, FraudError>>>,
}

impl<J> Remembering<J> {
    pub fn new(inner: J) -> Self {
        Remembering {
            inner,
            verdicts: Mutex::new(Recent::new(REMEMBERED_VERDICTS)),
        }
    }
}

impl<J: Judge> Judge for Remembering<J> {
    fn initial_state(
        &self,
        prepared: &Prepared,
        input: &[u8],
        fuel_limit: u64,
    ) -> Result<Hash, JobError> {
        self.inner.initial_state(prepared, input, fuel_limit)
    }

    fn run_segment(
        &self,
        prepared: &Prepared,
        pre: &SparseSnapshot,
        fuel_limit: u64,
    ) -> Result<SegmentRun, JobError> {
        self.inner.run_segment(prepared, pre, fuel_limit)
    }

    fn verdict(&self, proof: &FraudProof) -> Result<Proven, FraudError> {
        let key = Hash::of_encoded(proof);
        if let Some(known) = self.verdicts.lock().ok().and_then(|v| v.get(&key)) {
            return known;
        }
        // Judged without the lock held: a proof seen twice at once is judged twice, the same.
        let verdict = self.inner.verdict(proof);
        if !matches!(verdict, Err(FraudError::Unjudgeable(_)))
            && let Ok(mut kept) = self.verdicts.lock()
        {
            kept.insert(key, verdict.clone());
        }
        verdict
    }
}

/// A compiled job with the host limits it runs under.
#[derive(Clone)]
pub struct CompiledJob {
    pub module: Module,
    pub max_memory_bytes: usize,
    /// Wall-clock budget per instance, in epoch ticks; `None` for no deadline.
    pub deadline_ticks: Option<u64>,
}

impl CompiledJob {
    pub fn new(module: Module, profile: &Profile) -> Self {
        CompiledJob {
            module,
            max_memory_bytes: profile.max_memory_pages as usize * PAGE,
            deadline_ticks: None,
        }
    }

    /// Stops the job after `limit` (only a module compiled with epoch checks can be stopped).
    pub fn with_deadline(mut self, limit: Duration) -> Self {
        let ticks = limit.as_millis() / EPOCH_TICK.as_millis();
        self.deadline_ticks = Some(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        self
    }
}

/// Marker in engine errors for a job stopped by its wall-clock deadline.
pub const DEADLINE_MESSAGE: &str = "wall-clock limit reached";

pub struct WasmtimeMachine {
    store: Store<StoreLimits>,
    instance: Instance,
    memory: Memory,
}

impl Engine for CompiledJob {
    type Machine = WasmtimeMachine;

    fn instantiate(&self) -> Result<WasmtimeMachine, String> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.max_memory_bytes)
            .instances(1)
            .memories(1)
            .build();
        let mut store = Store::new(self.module.engine(), limits);
        store.limiter(|limits| limits);
        store.set_epoch_deadline(self.deadline_ticks.unwrap_or(u64::MAX / 2));
        store.epoch_deadline_trap();
        let instance =
            Instance::new(&mut store, &self.module, &[]).map_err(|e| format!("{e:#}"))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| "the module exports no memory".to_string())?;
        Ok(WasmtimeMachine {
            store,
            instance,
            memory,
        })
    }
}

fn to_wasmtime(v: Val) -> wasmtime::Val {
    match v {
        Val::I32(x) => wasmtime::Val::I32(x),
        Val::I64(x) => wasmtime::Val::I64(x),
    }
}

fn from_wasmtime(v: &wasmtime::Val) -> Result<Val, String> {
    match v {
        wasmtime::Val::I32(x) => Ok(Val::I32(*x)),
        wasmtime::Val::I64(x) => Ok(Val::I64(*x)),
        _ => Err("a job function returned something other than an i32 or i64".to_string()),
    }
}

fn describe(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>()
        && *trap == wasmtime::Trap::Interrupt
    {
        return DEADLINE_MESSAGE.to_string();
    }
    format!("{e:#}")
}

impl Machine for WasmtimeMachine {
    fn call(&mut self, name: &str, args: &[Val]) -> Result<Option<Val>, String> {
        let func = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| format!("no exported function `{name}`"))?;
        let params: Vec<wasmtime::Val> = args.iter().copied().map(to_wasmtime).collect();
        let result_count = func.ty(&self.store).results().len();
        let mut results = vec![wasmtime::Val::I32(0); result_count];
        func.call(&mut self.store, &params, &mut results)
            .map_err(|e| describe(&e))?;
        results.first().map(from_wasmtime).transpose()
    }

    fn global(&mut self, name: &str) -> Result<Val, String> {
        let global = self
            .instance
            .get_global(&mut self.store, name)
            .ok_or_else(|| format!("no exported global `{name}`"))?;
        from_wasmtime(&global.get(&mut self.store))
    }

    fn set_global(&mut self, name: &str, value: Val) -> Result<(), String> {
        let global = self
            .instance
            .get_global(&mut self.store, name)
            .ok_or_else(|| format!("no exported global `{name}`"))?;
        global
            .set(&mut self.store, to_wasmtime(value))
            .map_err(|e| format!("{e:#}"))
    }

    fn with_memory<R>(&mut self, f: &mut dyn FnMut(&[u8]) -> R) -> R {
        f(self.memory.data(&self.store))
    }

    fn write_memory(&mut self, offset: usize, bytes: &[u8]) -> Result<(), String> {
        self.memory
            .write(&mut self.store, offset, bytes)
            .map_err(|e| format!("{e}"))
    }

    fn grow_memory_to(&mut self, bytes: usize) -> Result<(), String> {
        let current = self.memory.data_size(&self.store);
        if bytes < current || !bytes.is_multiple_of(PAGE) {
            return Err(format!(
                "cannot resize memory from {current} to {bytes} bytes"
            ));
        }
        let pages = ((bytes - current) / PAGE) as u64;
        if pages > 0 {
            self.memory
                .grow(&mut self.store, pages)
                .map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client_core::identity::Keypair;
    use client_core::job::fraud::Claim;
    use client_core::job::{JobSpec, Receipt};
    use client_core::signed::Signed;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A judge that answers `verdict` from a list and counts how often it is asked.
    struct Counting {
        asked: AtomicUsize,
        answer: fn(&FraudProof) -> Result<Proven, FraudError>,
    }

    impl Judge for Counting {
        fn initial_state(&self, _: &Prepared, _: &[u8], _: u64) -> Result<Hash, JobError> {
            Err(JobError::Engine("not used".into()))
        }
        fn run_segment(
            &self,
            _: &Prepared,
            _: &SparseSnapshot,
            _: u64,
        ) -> Result<SegmentRun, JobError> {
            Err(JobError::Engine("not used".into()))
        }
        fn verdict(&self, proof: &FraudProof) -> Result<Proven, FraudError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            (self.answer)(proof)
        }
    }

    fn proof(module: Vec<u8>) -> FraudProof {
        let customer = Keypair::from_seed(&[1; 32]);
        let request = Signed::sign(
            &customer,
            client_core::envelope::Request::new(
                "net",
                1,
                0,
                1_000,
                JobSpec {
                    module: Hash::of(&module),
                    input: Vec::new(),
                    fuel_limit: 1,
                    max_steps: 1,
                    payment: None,
                },
            ),
        );
        let receipt = Signed::sign(
            &Keypair::from_seed(&[2; 32]),
            Receipt {
                profile: 1,
                job: Hash::of(b"job"),
                customer: customer.public(),
                module: Hash::of(&module),
                input: Hash::of(b""),
                output: Hash::of(b"output"),
                fuel_used: 1,
                commitment: None,
                payment: None,
                completed_at_ms: 0,
            },
        );
        FraudProof {
            receipt,
            request,
            module,
            claim: Claim::Init {
                state: Hash::of(b"state"),
                proof: Vec::new(),
            },
        }
    }

    #[test]
    fn a_verdict_is_judged_once_per_proof_and_a_judge_failure_is_tried_again() {
        let judge = Remembering::new(Counting {
            asked: AtomicUsize::new(0),
            answer: |p| match p.module.first() {
                Some(0) => Err(FraudError::Honest { segment: 0 }),
                _ => Err(FraudError::Unjudgeable("out of memory".into())),
            },
        });
        let honest = proof(vec![0; 10]);
        for _ in 0..3 {
            assert_eq!(
                judge.verdict(&honest),
                Err(FraudError::Honest { segment: 0 })
            );
        }
        assert_eq!(judge.inner.asked.load(Ordering::SeqCst), 1);
        // Another proof is another verdict.
        assert!(judge.verdict(&proof(vec![0; 11])).is_err());
        assert_eq!(judge.inner.asked.load(Ordering::SeqCst), 2);
        // The judge's own failure is not remembered.
        let failing = proof(vec![1; 10]);
        let _ = judge.verdict(&failing);
        let _ = judge.verdict(&failing);
        assert_eq!(judge.inner.asked.load(Ordering::SeqCst), 4);
        // At most REMEMBERED_VERDICTS are kept: the oldest is judged again.
        for n in 0..REMEMBERED_VERDICTS {
            let _ = judge.verdict(&proof(vec![0; 100 + n]));
        }
        let asked = judge.inner.asked.load(Ordering::SeqCst);
        let _ = judge.verdict(&honest);
        assert_eq!(judge.inner.asked.load(Ordering::SeqCst), asked + 1);
    }
}

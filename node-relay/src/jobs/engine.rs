//! Job execution on wasmtime: the [`Engine`]/[`Machine`] of `client_core::job::exec` for the
//! relay.
//!
//! The modules it runs are already instrumented (fuel, depth, NaN canonicalization), so
//! wasmtime needs none of its own metering. What it adds is what only the host can enforce:
//! a memory cap and a wall-clock deadline (epoch interruption, ticked by one thread per
//! engine). Instances are allocated from a pool sized by the deterministic profile.

use client_core::job::exec::{Engine, Machine, PAGE, Val};
use client_core::job::profile::Profile;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Config, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder};

/// How often the wall-clock deadline is checked.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Instances alive at once in one engine: one per job worker, with room to spare.
const MAX_INSTANCES: u32 = 64;
/// Native stack wasm may use; the profile's depth limit is reached long before.
const MAX_WASM_STACK: usize = 1024 * 1024;

/// One wasmtime engine for the whole relay, with its epoch ticker.
#[derive(Clone)]
pub struct JobEngine {
    engine: wasmtime::Engine,
    _ticker: Arc<Ticker>,
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
        let mut config = Config::new();
        config
            .epoch_interruption(true)
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
        let engine = wasmtime::Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("configuring wasmtime: {e}"))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticking = engine.clone();
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
            engine,
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// Compiles an instrumented module.
    pub fn compile(&self, code: &[u8]) -> Result<Module, String> {
        Module::new(&self.engine, code).map_err(|e| format!("{e:#}"))
    }

    /// Serializes a compiled module for the on-disk cache.
    pub fn serialize(&self, module: &Module) -> Result<Vec<u8>, String> {
        module.serialize().map_err(|e| format!("{e:#}"))
    }

    /// Loads a module this relay serialized earlier.
    ///
    /// The file must come from [`JobEngine::serialize`] of this same wasmtime build: the relay
    /// only reads files it wrote itself into its data directory (wasmtime also checks the
    /// version and configuration recorded in the file and refuses mismatches).
    pub fn load_serialized(&self, path: &std::path::Path) -> Result<Module, String> {
        // SAFETY: see above; the file is one we wrote with `serialize`, atomically.
        unsafe { Module::deserialize_file(&self.engine, path) }.map_err(|e| format!("{e:#}"))
    }

    pub fn inner(&self) -> &wasmtime::Engine {
        &self.engine
    }
}

/// A compiled job with the host limits it runs under.
#[derive(Clone)]
pub struct CompiledJob {
    pub engine: JobEngine,
    pub module: Module,
    pub max_memory_bytes: usize,
    /// Wall-clock budget per instance, in epoch ticks; `None` for no deadline.
    pub deadline_ticks: Option<u64>,
}

impl CompiledJob {
    pub fn new(engine: &JobEngine, module: Module, profile: &Profile) -> Self {
        CompiledJob {
            engine: engine.clone(),
            module,
            max_memory_bytes: profile.max_memory_pages as usize * PAGE,
            deadline_ticks: None,
        }
    }

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
        let mut store = Store::new(self.engine.inner(), limits);
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

//! Running a prepared job on any engine, and the state it passes through.
//!
//! The engine is behind two small traits, [`Engine`] (a compiled module that can be
//! instantiated) and [`Machine`] (one instance: call exports, read and write globals and
//! memory). The relay implements them with wasmtime, the browser with its own WebAssembly
//! engine; the driver here is the same for both, so both make the same calls in the same order
//! and reach the same fuel count, the same checkpoints and the same output.

use super::profile::{
    DEPTH_EXPORT, FUEL_EXPORT, GlobalKind, JobForm, MEMORY_LIMIT_MARK, Prepared, Profile,
};
use crate::hash::Hash;
use borsh::{BorshDeserialize, BorshSerialize};

/// A value of an exported function argument, result or global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    I32(i32),
    I64(i64),
}

impl Val {
    fn as_i64(self) -> i64 {
        match self {
            Val::I32(v) => i64::from(v),
            Val::I64(v) => v,
        }
    }
}

/// A compiled job module that can be instantiated any number of times.
pub trait Engine {
    type Machine: Machine;
    /// A fresh instance, in the module's initial state.
    fn instantiate(&self) -> Result<Self::Machine, String>;
}

/// One instance of a job module. Errors are the engine's own messages (traps included).
pub trait Machine {
    fn call(&mut self, name: &str, args: &[Val]) -> Result<Option<Val>, String>;
    fn global(&mut self, name: &str) -> Result<Val, String>;
    fn set_global(&mut self, name: &str, value: Val) -> Result<(), String>;
    /// Runs `f` over the whole linear memory.
    fn with_memory<R>(&mut self, f: &mut dyn FnMut(&[u8]) -> R) -> R;
    /// Writes `bytes` at `offset`; out of bounds is an error.
    fn write_memory(&mut self, offset: usize, bytes: &[u8]) -> Result<(), String>;
    /// Grows the memory to exactly `bytes` (a multiple of 64 KiB), never shrinking it.
    fn grow_memory_to(&mut self, bytes: usize) -> Result<(), String>;
}

pub const PAGE: usize = 65_536;

/// The most checkpoints a step job may produce (the initial state included).
pub const MAX_CHECKPOINTS: u64 = 65_536;
/// The most steps a job request may allow.
pub const MAX_STEPS: u32 = 65_535;
/// The largest output a job may return.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Why a job did not produce an output. Deterministic: the same job fails the same way on any
/// engine, except for [`JobError::Engine`] whose message is the engine's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, BorshSerialize, BorshDeserialize)]
pub enum JobError {
    #[error("out of fuel: the limit of {limit} was used up")]
    OutOfFuel { limit: u64 },
    #[error("the call stack grew past the profile's depth limit (infinite recursion?)")]
    StackLimit,
    #[error("the job tried to grow its memory past {max_pages} pages of 64 KiB")]
    MemoryLimit { max_pages: u32 },
    #[error("the job trapped: {0}")]
    Trap(String),
    #[error("the job returned an output outside its memory (ptr {ptr}, len {len})")]
    BadOutput { ptr: u32, len: u32 },
    #[error("the output is {len} bytes; at most {max} are allowed")]
    OutputTooLarge { len: u64, max: u64 },
    #[error("the job took more than {max} steps (the step limit of the request)")]
    TooManySteps { max: u64 },
    #[error("the job's memory could not be restored: {0}")]
    Restore(String),
    #[error("the engine failed: {0}")]
    Engine(String),
    #[error("re-running this segment takes more than {cap} fuel, more than a judge runs")]
    OverJudgeCap { cap: u64 },
}

/// The complete state of an instance between calls: its mutable globals (in the prepared
/// module's snapshot order, as raw bits) and its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub globals: Vec<u64>,
    pub memory: Vec<u8>,
}

const STATE_TAG: &str = "aqueduct/v2/state";
const CHUNK: usize = 4096;

fn is_zero(chunk: &[u8]) -> bool {
    // A fold without early exit: the compiler turns it into wide ORs.
    chunk.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// The hash a checkpoint commits to: the globals, the memory's length, and for each 4 KiB
/// chunk of memory that is not all zeros, its index and its own hash. A job's memory is mostly
/// zeros (an untouched stack, free heap), which this skips instead of hashing; hashing each
/// chunk on its own lets BLAKE3 work on its four 1 KiB blocks side by side.
pub fn state_hash(globals: &[u64], memory: &[u8]) -> Hash {
    let chunks = memory.chunks(CHUNK).enumerate().map(|(i, c)| (i as u32, c));
    hash_chunks(globals, memory.len() as u64, chunks)
}

/// [`state_hash`] over a memory of `memory_len` bytes given as (index, chunk) pairs in order;
/// chunks left out, like all-zero ones, count as zeros.
fn hash_chunks<'a>(
    globals: &[u64],
    memory_len: u64,
    chunks: impl Iterator<Item = (u32, &'a [u8])>,
) -> Hash {
    let mut hasher = crate::hash::Hasher::default();
    hasher.encoded(&(STATE_TAG, globals, memory_len));
    for (index, chunk) in chunks {
        if !is_zero(chunk) {
            hasher
                .bytes(&index.to_le_bytes())
                .bytes(Hash::of(chunk).as_bytes());
        }
    }
    hasher.finish()
}

impl Snapshot {
    pub fn hash(&self) -> Hash {
        state_hash(&self.globals, &self.memory)
    }

    /// A compact form for sending: all-zero 4 KiB chunks are left out.
    pub fn to_sparse(&self) -> SparseSnapshot {
        let chunks = self
            .memory
            .chunks(CHUNK)
            .enumerate()
            .filter(|(_, c)| !is_zero(c))
            .map(|(i, c)| (i as u32, c.to_vec()))
            .collect();
        SparseSnapshot {
            globals: self.globals.clone(),
            memory_len: self.memory.len() as u64,
            chunks,
        }
    }
}

/// A snapshot as it travels: memory length plus its non-zero 4 KiB chunks.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SparseSnapshot {
    pub globals: Vec<u64>,
    pub memory_len: u64,
    pub chunks: Vec<(u32, Vec<u8>)>,
}

impl SparseSnapshot {
    /// Refuses anything a genuine snapshot could not be: a memory size that is not a page
    /// multiple within the profile, chunks out of order, of the wrong size or outside it.
    pub fn check(&self, profile: &Profile) -> Result<(), JobError> {
        let bad = |what: &str| JobError::Restore(what.to_string());
        let max = profile.max_memory_pages as u64 * PAGE as u64;
        if self.memory_len > max || !self.memory_len.is_multiple_of(PAGE as u64) {
            return Err(bad("memory size is not a page multiple within the profile"));
        }
        let mut last: Option<u32> = None;
        for (index, bytes) in &self.chunks {
            if last.is_some_and(|l| *index <= l) {
                return Err(bad("chunks out of order"));
            }
            last = Some(*index);
            let end = (u64::from(*index) + 1) * CHUNK as u64;
            if bytes.len() != CHUNK || end > self.memory_len {
                return Err(bad("chunk outside the memory"));
            }
        }
        Ok(())
    }

    /// The state hash of the full snapshot this stands for (see [`state_hash`]), without
    /// building it. Call on a checked snapshot.
    pub fn hash(&self) -> Hash {
        let chunks = self.chunks.iter().map(|(i, c)| (*i, c.as_slice()));
        hash_chunks(&self.globals, self.memory_len, chunks)
    }
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub output: Vec<u8>,
    pub fuel_used: u64,
    /// Step jobs: the state hash after `init` and after every step. Empty for one-shot jobs.
    pub checkpoints: Vec<Hash>,
}

/// Progress as a job runs, for reports and for keeping checkpoint states.
pub trait Observer {
    /// Called after `init` (index 0) and after every step with the state reached.
    fn checkpoint(&mut self, _index: u64, _hash: Hash, _globals: &[u64], _memory: &[u8]) {}
    /// Return `false` to stop the job (cancelled or over time).
    fn keep_going(&mut self) -> bool {
        true
    }
    /// Bytes to write at an offset of memory after step `index` ran and before its checkpoint
    /// is taken. Honest observers write nothing; [`Fabricate`] is how tests make a relay that
    /// forges one transition and carries on consistently from the forged state.
    fn rewrite(&mut self, _index: u64, _memory: &[u8]) -> Option<(usize, Vec<u8>)> {
        None
    }
}

/// An observer that forges the transition of step `step`: it flips one byte the step wrote,
/// and passes every call on to `inner`. The trace after it is
/// self-consistent — every later step really runs, from the forged state — so only a check of
/// segment `step` itself can tell.
pub struct Fabricate<'a> {
    pub step: u64,
    pub inner: &'a mut dyn Observer,
    before: Vec<u8>,
}

impl<'a> Fabricate<'a> {
    pub fn new(step: u64, inner: &'a mut dyn Observer) -> Self {
        Fabricate {
            step,
            inner,
            before: Vec::new(),
        }
    }
}

impl Observer for Fabricate<'_> {
    fn checkpoint(&mut self, index: u64, hash: Hash, globals: &[u64], memory: &[u8]) {
        if index + 1 == self.step {
            self.before = memory.to_vec();
        }
        self.inner.checkpoint(index, hash, globals, memory);
    }

    fn keep_going(&mut self) -> bool {
        self.inner.keep_going()
    }

    fn rewrite(&mut self, index: u64, memory: &[u8]) -> Option<(usize, Vec<u8>)> {
        if index != self.step {
            return self.inner.rewrite(index, memory);
        }
        // A byte of the last run of at least 8 bytes the step rewrote: a value the step
        // computed (past the stack, which compilers put low in memory), not a counter it bumped
        // by one — so the forged trace keeps its length and carries the error to the output.
        // Failing such a run, the last byte it changed, or the first byte.
        let changed: Vec<bool> = memory
            .iter()
            .zip(&self.before)
            .map(|(a, b)| a != b)
            .collect();
        let mut at = changed.iter().rposition(|c| *c).unwrap_or(0);
        let mut run = 0;
        for (i, c) in changed.iter().enumerate().rev() {
            run = if *c { run + 1 } else { 0 };
            if run >= 8 {
                at = i;
                break;
            }
        }
        memory.get(at).map(|b| (at, vec![b ^ 0x5a]))
    }
}

/// The trap message of a job its observer stopped.
pub const STOPPED: &str = "stopped by the host";

/// An observer that watches nothing.
pub struct Unobserved;
impl Observer for Unobserved {}

/// Reads the state globals of a machine, in snapshot order.
pub fn read_globals<M: Machine>(m: &mut M, prepared: &Prepared) -> Result<Vec<u64>, JobError> {
    prepared
        .globals
        .iter()
        .map(|g| {
            m.global(&g.name)
                .map(|v| match (g.kind, v) {
                    (GlobalKind::I32, Val::I32(x)) => u64::from(x as u32),
                    (_, v) => v.as_i64() as u64,
                })
                .map_err(JobError::Engine)
        })
        .collect()
}

fn write_globals<M: Machine>(
    m: &mut M,
    prepared: &Prepared,
    values: &[u64],
) -> Result<(), JobError> {
    if values.len() != prepared.globals.len() {
        return Err(JobError::Restore(format!(
            "{} globals given, the module has {}",
            values.len(),
            prepared.globals.len()
        )));
    }
    for (g, v) in prepared.globals.iter().zip(values) {
        let value = match g.kind {
            GlobalKind::I32 => {
                let v = u32::try_from(*v)
                    .map_err(|_| JobError::Restore("i32 global out of range".into()))?;
                Val::I32(v as i32)
            }
            GlobalKind::I64 => Val::I64(*v as i64),
        };
        m.set_global(&g.name, value).map_err(JobError::Engine)?;
    }
    Ok(())
}

/// The 4 KiB chunks of a fresh instance's memory that are not all zeros (its data segments).
pub fn fresh_chunks<E: Engine>(engine: &E) -> Result<Vec<u32>, JobError> {
    let mut m = engine.instantiate().map_err(JobError::Engine)?;
    Ok(m.with_memory(&mut |mem| {
        mem.chunks(CHUNK)
            .enumerate()
            .filter(|(_, c)| !is_zero(c))
            .map(|(i, _)| i as u32)
            .collect()
    }))
}

/// Restores a checked sparse snapshot into a fresh machine: writes its chunks, and zeroes
/// the chunks the fresh memory has data in (`fresh`, from [`fresh_chunks`]) that it leaves
/// out. The rest of a fresh memory is zeros already, so nothing else is written.
pub fn restore<M: Machine>(
    m: &mut M,
    prepared: &Prepared,
    snapshot: &SparseSnapshot,
    fresh: &[u32],
) -> Result<(), JobError> {
    let size = m.with_memory(&mut |mem| mem.len());
    let len = usize::try_from(snapshot.memory_len)
        .map_err(|_| JobError::Restore("the snapshot's memory is too large".into()))?;
    if len < size {
        return Err(JobError::Restore(
            "the snapshot's memory is smaller than a fresh instance's".into(),
        ));
    }
    m.grow_memory_to(len).map_err(JobError::Restore)?;
    let zeros = [0u8; CHUNK];
    for index in fresh {
        if snapshot
            .chunks
            .binary_search_by_key(index, |(i, _)| *i)
            .is_err()
        {
            m.write_memory(*index as usize * CHUNK, &zeros)
                .map_err(JobError::Restore)?;
        }
    }
    for (index, bytes) in &snapshot.chunks {
        m.write_memory(*index as usize * CHUNK, bytes)
            .map_err(JobError::Restore)?;
    }
    write_globals(m, prepared, &snapshot.globals)
}

/// Takes a snapshot of a machine.
pub fn snapshot<M: Machine>(m: &mut M, prepared: &Prepared) -> Result<Snapshot, JobError> {
    let globals = read_globals(m, prepared)?;
    let memory = m.with_memory(&mut |mem| mem.to_vec());
    Ok(Snapshot { globals, memory })
}

fn hash_state<M: Machine>(
    m: &mut M,
    prepared: &Prepared,
    index: u64,
    observer: &mut dyn Observer,
) -> Result<Hash, JobError> {
    let globals = read_globals(m, prepared)?;
    Ok(m.with_memory(&mut |mem| {
        let hash = state_hash(&globals, mem);
        observer.checkpoint(index, hash, &globals, mem);
        hash
    }))
}

/// Turns an engine error into the job error it means, looking at the instrumentation's
/// counters: a trap with fuel below zero ran out of fuel, one past the depth budget hit the
/// stack limit.
fn classify<M: Machine>(
    m: &mut M,
    prepared: &Prepared,
    fuel_limit: u64,
    message: String,
) -> JobError {
    if let Ok(Val::I64(fuel)) = m.global(FUEL_EXPORT)
        && fuel < 0
    {
        return JobError::OutOfFuel { limit: fuel_limit };
    }
    if let Ok(Val::I32(depth)) = m.global(DEPTH_EXPORT) {
        if depth == MEMORY_LIMIT_MARK {
            return JobError::MemoryLimit {
                max_pages: prepared.profile.max_memory_pages,
            };
        }
        if depth > prepared.profile.max_depth as i32 {
            return JobError::StackLimit;
        }
    }
    JobError::Trap(message)
}

fn call<M: Machine>(
    m: &mut M,
    prepared: &Prepared,
    fuel_limit: u64,
    name: &str,
    args: &[Val],
) -> Result<Option<Val>, JobError> {
    m.call(name, args)
        .map_err(|e| classify(m, prepared, fuel_limit, e))
}

fn fuel_left<M: Machine>(m: &mut M) -> Result<i64, JobError> {
    match m.global(FUEL_EXPORT).map_err(JobError::Engine)? {
        Val::I64(v) => Ok(v),
        Val::I32(_) => Err(JobError::Engine("the fuel global is not an i64".into())),
    }
}

fn read_output<M: Machine>(m: &mut M, packed: Option<Val>) -> Result<Vec<u8>, JobError> {
    let Some(Val::I64(packed)) = packed else {
        return Err(JobError::Engine(
            "the entry point did not return an i64".into(),
        ));
    };
    let ptr = (packed as u64 >> 32) as u32;
    let len = packed as u64 as u32;
    if len as usize > MAX_OUTPUT_BYTES {
        return Err(JobError::OutputTooLarge {
            len: u64::from(len),
            max: MAX_OUTPUT_BYTES as u64,
        });
    }
    m.with_memory(&mut |mem| {
        mem.get(ptr as usize..ptr as usize + len as usize)
            .map(<[u8]>::to_vec)
            .ok_or(JobError::BadOutput { ptr, len })
    })
}

/// Instantiates the module, sets the fuel, hands it the input and calls `init` or `run`.
fn start<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    input: &[u8],
    fuel_limit: u64,
    entry: &str,
) -> Result<(E::Machine, Option<Val>), JobError> {
    let mut m = engine.instantiate().map_err(JobError::Engine)?;
    let fuel =
        i64::try_from(fuel_limit).map_err(|_| JobError::Engine("fuel limit too large".into()))?;
    m.set_global(FUEL_EXPORT, Val::I64(fuel))
        .map_err(JobError::Engine)?;
    let len = u32::try_from(input.len()).map_err(|_| JobError::Engine("input too large".into()))?;
    let ptr = match call(
        &mut m,
        prepared,
        fuel_limit,
        "alloc",
        &[Val::I32(len as i32)],
    )? {
        Some(Val::I32(p)) => p as u32,
        _ => return Err(JobError::Engine("alloc did not return an i32".into())),
    };
    m.write_memory(ptr as usize, input)
        .map_err(|_| JobError::BadOutput { ptr, len })?;
    let result = call(
        &mut m,
        prepared,
        fuel_limit,
        entry,
        &[Val::I32(ptr as i32), Val::I32(len as i32)],
    )?;
    Ok((m, result))
}

fn used(fuel_limit: u64, left: i64) -> u64 {
    fuel_limit.saturating_sub(left.max(0) as u64)
}

/// Runs a job from the start to its output: `run` for one-shot jobs, `init`, the steps and
/// `output` for step jobs (at most [`MAX_STEPS`] of them).
pub fn execute<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    input: &[u8],
    fuel_limit: u64,
    observer: &mut dyn Observer,
) -> Result<Outcome, JobError> {
    execute_within(engine, prepared, input, fuel_limit, MAX_STEPS, observer)
}

/// [`execute`], with at most `max_steps` steps (a job request's bound).
pub fn execute_within<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    input: &[u8],
    fuel_limit: u64,
    max_steps: u32,
    observer: &mut dyn Observer,
) -> Result<Outcome, JobError> {
    let max_steps = u64::from(max_steps.min(MAX_STEPS));
    match prepared.form {
        JobForm::OneShot => {
            let (mut m, packed) = start(engine, prepared, input, fuel_limit, "run")?;
            let output = read_output(&mut m, packed)?;
            let fuel_used = used(fuel_limit, fuel_left(&mut m)?);
            Ok(Outcome {
                output,
                fuel_used,
                checkpoints: Vec::new(),
            })
        }
        JobForm::Steps => {
            let (mut m, _) = start(engine, prepared, input, fuel_limit, "init")?;
            let mut checkpoints = vec![hash_state(&mut m, prepared, 0, observer)?];
            loop {
                if !observer.keep_going() {
                    return Err(JobError::Trap(STOPPED.into()));
                }
                if checkpoints.len() as u64 > max_steps {
                    return Err(JobError::TooManySteps { max: max_steps });
                }
                let done = call(&mut m, prepared, fuel_limit, "step", &[])?;
                let index = checkpoints.len() as u64;
                if let Some((offset, bytes)) =
                    m.with_memory(&mut |mem| observer.rewrite(index, mem))
                {
                    m.write_memory(offset, &bytes).map_err(JobError::Engine)?;
                }
                checkpoints.push(hash_state(&mut m, prepared, index, observer)?);
                if matches!(done, Some(Val::I32(d)) if d != 0) {
                    break;
                }
            }
            let packed = call(&mut m, prepared, fuel_limit, "output", &[])?;
            let output = read_output(&mut m, packed)?;
            let fuel_used = used(fuel_limit, fuel_left(&mut m)?);
            Ok(Outcome {
                output,
                fuel_used,
                checkpoints,
            })
        }
    }
}

/// What re-running one segment of a step job gives.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SegmentRun {
    /// State hash after the step.
    pub post_state: Hash,
    /// Whether the step said it was the last.
    pub done: bool,
    /// For the last segment: the output and total fuel after calling `output`.
    pub finish: Option<(Vec<u8>, u64)>,
}

/// Restores `pre_state` into a fresh instance and runs one step (and `output` when the step
/// says it is done).
pub fn run_segment<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    pre_state: &SparseSnapshot,
    fresh: &[u32],
    fuel_limit: u64,
) -> Result<SegmentRun, JobError> {
    run_segment_capped(engine, prepared, pre_state, fresh, fuel_limit, u64::MAX)
}

/// [`run_segment`] spending at most `cap` fuel, whatever the restored state has left: what a
/// validator judging a fraud proof runs, so that a proof cannot make it run a long segment.
/// The fuel counter is lowered to `cap` before the step and the difference added back before
/// the post-state is hashed, so a segment within the cap gives exactly what it gives
/// uncapped; one that needs more fails with [`JobError::OverJudgeCap`].
pub fn run_segment_capped<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    pre_state: &SparseSnapshot,
    fresh: &[u32],
    fuel_limit: u64,
    cap: u64,
) -> Result<SegmentRun, JobError> {
    let mut m = engine.instantiate().map_err(JobError::Engine)?;
    restore(&mut m, prepared, pre_state, fresh)?;
    let left = fuel_left(&mut m)?;
    let cap_i64 = i64::try_from(cap).unwrap_or(i64::MAX);
    let held_back = if left > cap_i64 {
        m.set_global(FUEL_EXPORT, Val::I64(cap_i64))
            .map_err(JobError::Engine)?;
        left - cap_i64
    } else {
        0
    };
    let over_cap = |error: JobError| match error {
        JobError::OutOfFuel { .. } if held_back > 0 => JobError::OverJudgeCap { cap },
        other => other,
    };
    let give_back = |m: &mut E::Machine| -> Result<(), JobError> {
        if held_back > 0 {
            let now = fuel_left(m)?;
            m.set_global(FUEL_EXPORT, Val::I64(now + held_back))
                .map_err(JobError::Engine)?;
        }
        Ok(())
    };
    let step = call(&mut m, prepared, fuel_limit, "step", &[]).map_err(over_cap)?;
    let done = matches!(step, Some(Val::I32(d)) if d != 0);
    give_back(&mut m)?;
    let post_state = hash_state(&mut m, prepared, 0, &mut Unobserved)?;
    let finish = if done {
        if held_back > 0 {
            let now = fuel_left(&mut m)?;
            m.set_global(FUEL_EXPORT, Val::I64(now - held_back))
                .map_err(JobError::Engine)?;
        }
        let packed = call(&mut m, prepared, fuel_limit, "output", &[]).map_err(over_cap)?;
        let output = read_output(&mut m, packed)?;
        give_back(&mut m)?;
        Some((output, used(fuel_limit, fuel_left(&mut m)?)))
    } else {
        None
    };
    Ok(SegmentRun {
        post_state,
        done,
        finish,
    })
}

/// The state hash right after `init`: the first checkpoint, cheap to recompute.
pub fn initial_state<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    input: &[u8],
    fuel_limit: u64,
) -> Result<Hash, JobError> {
    let (mut m, _) = start(engine, prepared, input, fuel_limit, "init")?;
    hash_state(&mut m, prepared, 0, &mut Unobserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_hash_sees_every_byte_and_where_it_is() {
        let globals = [7u64, 9];
        let memory = vec![0u8; 2 * PAGE];
        let base = state_hash(&globals, &memory);
        assert_eq!(base, state_hash(&globals, &memory.clone()));
        let mut seen = vec![base];
        // One byte set at different places — in the first chunk, the last, and at the same
        // offset of two different chunks — and other globals or a longer memory: all differ.
        for at in [0, 1, CHUNK, CHUNK + 1, 2 * PAGE - 1] {
            let mut changed = memory.clone();
            changed[at] = 1;
            seen.push(state_hash(&globals, &changed));
        }
        seen.push(state_hash(&[7, 10], &memory));
        seen.push(state_hash(&globals, &vec![0u8; 3 * PAGE]));
        let distinct: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "{seen:?}");
        // A snapshot and its sparse form restored describe the same state.
        let mut memory = memory;
        memory[5 * CHUNK + 3] = 42;
        let snapshot = Snapshot {
            globals: globals.to_vec(),
            memory,
        };
        assert_eq!(snapshot.to_sparse().chunks.len(), 1);
    }
}

//! Job speed ratios (`cargo xtask bench`): native code against wasmtime, and sampling
//! verification against full re-execution.
//!
//! Criterion times each variant for seconds on end, one after the other; on a shared virtual
//! machine the speed of the whole machine drifts between them by more than the differences
//! measured here, so its ratios swing from run to run. This harness interleaves the variants
//! (one run of each, in turn, `--rounds` times) and compares each variant's fastest run, so
//! every ratio compares runs made under the same conditions.
//!
//! Prints a table and writes `target/bench/job-ratios.json`.

use anyhow::Context;
use aqueduct_tests::{artifacts_dir, job_module, sampled_hash_chain};
use client_core::job::exec::{self, Engine, Machine, Unobserved, Val};
use client_core::job::profile::{self, Profile};
use node_relay::jobs::engine::{CompiledJob, JobEngine};
use std::hint::black_box;
use std::time::{Duration, Instant};

const PRIMES_INPUT: &str = "2000000";
const CHAIN_INPUT: &str = "50 2000 bench";
const FUEL: u64 = 1 << 50;

/// Runs a module as uploaded (no instrumentation): alloc, input, then run or init/step/output.
fn run_raw(job: &CompiledJob, input: &[u8], steps: bool) -> anyhow::Result<Vec<u8>> {
    let mut m = job.instantiate().map_err(anyhow::Error::msg)?;
    let Some(Val::I32(ptr)) = m
        .call("alloc", &[Val::I32(input.len() as i32)])
        .map_err(anyhow::Error::msg)?
    else {
        anyhow::bail!("alloc returned no i32");
    };
    m.write_memory(ptr as usize, input)
        .map_err(anyhow::Error::msg)?;
    let args = [Val::I32(ptr), Val::I32(input.len() as i32)];
    let packed = if steps {
        m.call("init", &args).map_err(anyhow::Error::msg)?;
        while m.call("step", &[]).map_err(anyhow::Error::msg)? == Some(Val::I32(0)) {}
        m.call("output", &[]).map_err(anyhow::Error::msg)?
    } else {
        m.call("run", &args).map_err(anyhow::Error::msg)?
    };
    let Some(Val::I64(packed)) = packed else {
        anyhow::bail!("the entry point returned no i64");
    };
    let (ptr, len) = ((packed as u64 >> 32) as usize, packed as u32 as usize);
    m.with_memory(&mut |mem| mem.get(ptr..ptr + len).map(<[u8]>::to_vec))
        .context("output outside memory")
}

fn native(name: &str) -> Vec<u8> {
    if name == "primes" {
        let limit = job_primes::parse(PRIMES_INPUT.as_bytes());
        let mut sieve = vec![0u8; limit];
        let found = job_primes::sieve(limit, &mut sieve);
        job_primes::report(limit, found).as_bytes().to_vec()
    } else {
        let mut chain = job_hash_chain::Chain::new(CHAIN_INPUT.as_bytes());
        while !chain.step() {}
        chain.hash.to_vec()
    }
}

fn ms(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64() * 1e3
}

/// The fastest of each variant's runs, interleaved round by round.
fn fastest(rounds: u32, variants: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; variants.len()];
    for _ in 0..rounds {
        for (b, v) in best.iter_mut().zip(variants.iter_mut()) {
            *b = b.min(ms(v));
        }
    }
    best
}

fn compile(engine: &JobEngine, code: &[u8], clocked: bool) -> anyhow::Result<CompiledJob> {
    let module = engine.compile(code).map_err(anyhow::Error::msg)?;
    Ok(if clocked {
        CompiledJob::new(module.guarded, &Profile::V1).with_deadline(Duration::from_secs(3600))
    } else {
        CompiledJob::new(module.bounded, &Profile::V1)
    })
}

fn execution(engine: &JobEngine, name: &str, rounds: u32) -> anyhow::Result<serde_json::Value> {
    let (input, steps) = match name {
        "primes" => (PRIMES_INPUT, false),
        _ => (CHAIN_INPUT, true),
    };
    let bytes = job_module(name)?;
    let prepared = profile::prepare(&bytes, &Profile::V1)?;
    let raw = compile(engine, &bytes, false)?;
    let instrumented = compile(engine, &prepared.code, false)?;
    let clocked = compile(engine, &prepared.code, true)?;
    let run =
        |job: &CompiledJob| exec::execute(job, &prepared, input.as_bytes(), FUEL, &mut Unobserved);
    let expected = run(&instrumented)?.output;
    anyhow::ensure!(run_raw(&raw, input.as_bytes(), steps)? == expected);
    anyhow::ensure!(run(&clocked)?.output == expected);
    if name == "primes" {
        anyhow::ensure!(native(name) == expected, "native and wasm disagree");
    }
    let t = fastest(
        rounds,
        &mut [
            &mut || {
                black_box(native(name));
            },
            &mut || {
                black_box(run_raw(&raw, input.as_bytes(), steps).ok());
            },
            &mut || {
                black_box(run(&instrumented).ok());
            },
            &mut || {
                black_box(run(&clocked).ok());
            },
        ],
    );
    let (native_ms, raw_ms, inst_ms, clocked_ms) = (t[0], t[1], t[2], t[3]);
    println!(
        "{name:<11} native {native_ms:6.2} ms | uninstrumented {raw_ms:6.2} ms | instrumented \
         {inst_ms:6.2} ms = {:.2}× native speed, {:.2}× uninstrumented | with wall-clock checks \
         {clocked_ms:6.2} ms = {:.2}× native speed",
        native_ms / inst_ms,
        inst_ms / raw_ms,
        native_ms / clocked_ms
    );
    Ok(serde_json::json!({
        "native_ms": native_ms,
        "uninstrumented_ms": raw_ms,
        "instrumented_ms": inst_ms,
        "instrumented_wall_clock_checked_ms": clocked_ms,
        "speed_vs_native": native_ms / inst_ms,
        "overhead_vs_uninstrumented": inst_ms / raw_ms,
        "wall_clock_checked_speed_vs_native": native_ms / clocked_ms,
    }))
}

fn sampling(engine: &JobEngine, rounds: u32) -> anyhow::Result<serde_json::Value> {
    let chain = sampled_hash_chain(engine, b"1000 1000 sampling")?;
    let segments = chain.states.len() - 1;
    anyhow::ensure!(segments >= 1000, "a 1000-segment job");
    let plans = chain.plans(rounds.clamp(1, 255) as u8);
    let sampled = plans[0].0.segments.len();
    for (plan, proof) in &plans {
        chain.sample(plan, proof)?;
    }
    let mut next = plans.iter().cycle();
    let t = fastest(
        rounds,
        &mut [
            &mut || {
                black_box(chain.reexecute().ok());
            },
            &mut || {
                if let Some((plan, proof)) = next.next() {
                    black_box(chain.sample(plan, proof).ok());
                }
            },
        ],
    );
    let (full_ms, sample_ms) = (t[0], t[1]);
    println!(
        "sampling    {segments} segments, 99% detection of 5% skipped: {sampled} re-run | full \
         re-execution {full_ms:6.1} ms | sampling {sample_ms:6.1} ms = {:.1}% of full",
        100.0 * sample_ms / full_ms
    );
    Ok(serde_json::json!({
        "segments": segments,
        "sampled_segments": sampled,
        "full_reexecution_ms": full_ms,
        "sampling_ms": sample_ms,
        "sampling_percent_of_full": 100.0 * sample_ms / full_ms,
    }))
}

fn main() -> anyhow::Result<()> {
    let mut rounds = 30u32;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--rounds", Some(n)) => rounds = n.parse().context("--rounds N")?,
            _ => anyhow::bail!("usage: job-ratios [--rounds N]"),
        }
    }
    let engine = JobEngine::new()?;
    let results = serde_json::json!({
        "rounds": rounds,
        "primes": execution(&engine, "primes", rounds)?,
        "hash_chain": execution(&engine, "hash-chain", rounds)?,
        "sampling": sampling(&engine, rounds.min(10))?,
    });
    let path = artifacts_dir("bench").join("job-ratios.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("written to {}", path.display());
    Ok(())
}

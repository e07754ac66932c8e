//! Job execution and verification costs (criterion; `cargo xtask bench` runs it).
//!
//! - `primes` and `hash_chain`: the same code compiled natively, in wasmtime as uploaded
//!   (uninstrumented), and in wasmtime instrumented by the deterministic profile — as the
//!   relay runs a job whose fuel bounds its time, and as it runs one only the wall clock can
//!   stop (with wasmtime's epoch checks).
//! - `verify_1000_segments`: for a 1000-step hash chain, full re-execution against
//!   commit-then-sample at 99% detection of 5% faked segments.

use aqueduct_tests::{job_module, sampled_hash_chain};
use client_core::job::exec::{self, Engine, Machine, Unobserved, Val};
use client_core::job::profile::{self, Profile};
use criterion::{Criterion, criterion_group, criterion_main};
use node_relay::jobs::engine::{CompiledJob, JobEngine};
use std::hint::black_box;

const PRIMES_INPUT: &str = "2000000";
const CHAIN_INPUT: &str = "50 2000 bench";

/// Runs a module as uploaded (no instrumentation, so no fuel global): alloc, input, run or
/// init/step/output.
fn run_raw(job: &CompiledJob, input: &[u8], steps: bool) -> Vec<u8> {
    let mut m = job.instantiate().expect("instantiates");
    let Some(Val::I32(ptr)) = m
        .call("alloc", &[Val::I32(input.len() as i32)])
        .expect("alloc")
    else {
        panic!("alloc returns an i32");
    };
    m.write_memory(ptr as usize, input).expect("input fits");
    let args = [Val::I32(ptr), Val::I32(input.len() as i32)];
    let packed = if steps {
        m.call("init", &args).expect("init");
        while m.call("step", &[]).expect("step") == Some(Val::I32(0)) {}
        m.call("output", &[]).expect("output")
    } else {
        m.call("run", &args).expect("run")
    };
    let Some(Val::I64(packed)) = packed else {
        panic!("the entry point returns an i64");
    };
    let (ptr, len) = ((packed as u64 >> 32) as usize, packed as u32 as usize);
    m.with_memory(&mut |mem| mem[ptr..ptr + len].to_vec())
}

/// Compiled as the relay runs a job whose fuel bounds its time (see
/// `node_relay::jobs::engine::fuel_within`): no epoch checks.
fn compiled(engine: &JobEngine, code: &[u8]) -> CompiledJob {
    CompiledJob::new(
        engine.compile(code).expect("compiles").bounded,
        &Profile::V1,
    )
}

/// Compiled as the relay runs a job only the wall clock can stop: with epoch checks.
fn guarded(engine: &JobEngine, code: &[u8]) -> CompiledJob {
    CompiledJob::new(
        engine.compile(code).expect("compiles").guarded,
        &Profile::V1,
    )
    .with_deadline(std::time::Duration::from_secs(3600))
}

fn execution(c: &mut Criterion) {
    let engine = JobEngine::new().expect("engine");
    for (name, input, steps) in [
        ("primes", PRIMES_INPUT, false),
        ("hash-chain", CHAIN_INPUT, true),
    ] {
        let bytes = job_module(name).expect("example module (cargo xtask bench builds it)");
        let prepared = profile::prepare(&bytes, &Profile::V1).expect("accepted");
        let instrumented = compiled(&engine, &prepared.code);
        let clocked = guarded(&engine, &prepared.code);
        let raw = compiled(&engine, &bytes);
        let expected = exec::execute(
            &instrumented,
            &prepared,
            input.as_bytes(),
            1 << 50,
            &mut Unobserved,
        )
        .expect("runs")
        .output;
        assert_eq!(run_raw(&raw, input.as_bytes(), steps), expected);

        let mut group = c.benchmark_group(name);
        group.sample_size(20);
        group.bench_function("native", |b| match name {
            "primes" => b.iter(|| {
                let limit = job_primes::parse(PRIMES_INPUT.as_bytes());
                let mut sieve = vec![0u8; limit];
                black_box(job_primes::sieve(limit, &mut sieve))
            }),
            _ => b.iter(|| {
                let mut chain = job_hash_chain::Chain::new(CHAIN_INPUT.as_bytes());
                while !chain.step() {}
                black_box(chain.hash)
            }),
        });
        group.bench_function("wasmtime uninstrumented", |b| {
            b.iter(|| black_box(run_raw(&raw, input.as_bytes(), steps)))
        });
        group.bench_function("wasmtime instrumented", |b| {
            b.iter(|| {
                black_box(
                    exec::execute(
                        &instrumented,
                        &prepared,
                        input.as_bytes(),
                        1 << 50,
                        &mut Unobserved,
                    )
                    .expect("runs"),
                )
            })
        });
        group.bench_function("wasmtime instrumented, wall clock checked", |b| {
            b.iter(|| {
                black_box(
                    exec::execute(
                        &clocked,
                        &prepared,
                        input.as_bytes(),
                        1 << 50,
                        &mut Unobserved,
                    )
                    .expect("runs"),
                )
            })
        });
        group.finish();
    }
}

fn verification(c: &mut Criterion) {
    let engine = JobEngine::new().expect("engine");
    let chain = sampled_hash_chain(&engine, b"1000 1000 sampling").expect("runs");
    let mut group = c.benchmark_group("verify_1000_segments");
    group.sample_size(10);
    group.bench_function("full re-execution", |b| {
        b.iter(|| black_box(chain.reexecute().expect("verifies")))
    });
    let plans = chain.plans(16);
    let mut next = plans.iter().cycle();
    group.bench_function("sampling 99% at 5%", |b| {
        b.iter(|| {
            let (plan, proof) = next.next().expect("cycles forever");
            black_box(chain.sample(plan, proof).expect("verifies"))
        })
    });
    group.finish();
}

criterion_group!(benches, execution, verification);
criterion_main!(benches);

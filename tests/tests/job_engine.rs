//! Jobs on wasmtime, checked against the same code compiled natively, and the verification
//! checks of `client_core::job::verify` run against real results — including forged ones.
//! Also writes the vectors the wasm test in Chromium compares its own engine against.

use aqueduct_tests::{KeepStates, artifacts_dir, job_module};
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::identity::Keypair;
use client_core::job::commit::CheckpointTree;
use client_core::job::exec::{self, JobError, Unobserved};
use client_core::job::profile::{self, JobForm, ModuleError, Prepared, Profile};
use client_core::job::verify::{self, SampleCheck, SamplePlan, Strength, VerifyError};
use client_core::job::{JobRequest, JobSpec, Receipt, job_id};
use client_core::signed::Signed;
use node_relay::jobs::engine::{CompiledJob, JobEngine};
use std::fmt::Write;

fn compile(engine: &JobEngine, bytes: &[u8]) -> (Prepared, CompiledJob) {
    let prepared = profile::prepare(bytes, &Profile::V1).expect("the module is accepted");
    let module = engine
        .compile(&prepared.code)
        .expect("wasmtime compiles it");
    let compiled = CompiledJob::new(module.bounded, &Profile::V1);
    (prepared, compiled)
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test module parses")
}

/// Runs a module from WAT source and returns the outcome.
fn run_wat(text: &str, fuel: u64) -> Result<exec::Outcome, JobError> {
    let engine = JobEngine::new().expect("engine");
    let (prepared, compiled) = compile(&engine, &wat(text));
    exec::execute(&compiled, &prepared, b"", fuel, &mut Unobserved)
}

#[test]
fn examples_give_the_same_results_as_native_code() {
    let engine = JobEngine::new().expect("engine");

    let (prepared, compiled) = compile(&engine, &job_module("primes").expect("primes module"));
    assert_eq!(prepared.form, JobForm::OneShot);
    let out = exec::execute(
        &compiled,
        &prepared,
        b"100000",
        10_000_000_000,
        &mut Unobserved,
    )
    .expect("primes runs");
    let mut sieve = vec![0u8; 100_000];
    let native = job_primes::report(100_000, job_primes::sieve(100_000, &mut sieve));
    assert_eq!(out.output, native.as_bytes());
    assert!(
        out.fuel_used > 100_000,
        "fuel is counted: {}",
        out.fuel_used
    );
    assert!(out.checkpoints.is_empty());

    let (prepared, compiled) = compile(&engine, &job_module("mandelbrot").expect("module"));
    let out = exec::execute(
        &compiled,
        &prepared,
        b"64 48 100",
        10_000_000_000,
        &mut Unobserved,
    )
    .expect("mandelbrot runs");
    let params = job_mandelbrot::parse(b"64 48 100");
    let mut image = vec![0u8; job_mandelbrot::image_len(&params)];
    job_mandelbrot::render(&params, &mut image);
    assert_eq!(
        out.output, image,
        "the instrumented float code renders the same image"
    );

    let (prepared, compiled) = compile(&engine, &job_module("hash-chain").expect("module"));
    assert_eq!(prepared.form, JobForm::Steps);
    let out = exec::execute(
        &compiled,
        &prepared,
        b"5 7 seed",
        10_000_000_000,
        &mut Unobserved,
    )
    .expect("hash chain runs");
    let mut chain = job_hash_chain::Chain::new(b"5 7 seed");
    while !chain.step() {}
    assert_eq!(out.output, chain.report().as_bytes());
    assert_eq!(out.checkpoints.len(), 6, "init plus five steps");
}

#[test]
fn execution_is_deterministic_and_fuel_limits_are_exact() {
    let engine = JobEngine::new().expect("engine");
    let (prepared, compiled) = compile(&engine, &job_module("hash-chain").expect("module"));
    let a = exec::execute(
        &compiled,
        &prepared,
        b"20 50 x",
        u64::MAX / 4,
        &mut Unobserved,
    )
    .expect("runs");
    // The copy the relay runs under the wall clock (with epoch checks) gives the same.
    let guarded = CompiledJob::new(
        engine
            .compile(&prepared.code)
            .expect("wasmtime compiles it")
            .guarded,
        &Profile::V1,
    )
    .with_deadline(std::time::Duration::from_secs(600));
    let b = exec::execute(
        &guarded,
        &prepared,
        b"20 50 x",
        u64::MAX / 4,
        &mut Unobserved,
    )
    .expect("runs");
    assert_eq!(a, b);
    // Exactly the fuel it needs is enough; one less is not.
    let exact = exec::execute(
        &compiled,
        &prepared,
        b"20 50 x",
        a.fuel_used,
        &mut Unobserved,
    )
    .expect("runs with exactly its fuel");
    assert_eq!(exact.output, a.output);
    let short = exec::execute(
        &compiled,
        &prepared,
        b"20 50 x",
        a.fuel_used - 1,
        &mut Unobserved,
    );
    assert_eq!(
        short,
        Err(JobError::OutOfFuel {
            limit: a.fuel_used - 1
        })
    );
}

#[test]
fn hostile_modules_fail_each_with_its_own_error() {
    let infinite = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) (loop br 0) i64.const 0))"#;
    assert_eq!(
        run_wat(infinite, 1_000_000),
        Err(JobError::OutOfFuel { limit: 1_000_000 })
    );

    let bomb = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64)
            (drop (memory.grow (i32.const 60000))) i64.const 0))"#;
    assert_eq!(
        run_wat(bomb, 1_000_000_000_000),
        Err(JobError::MemoryLimit { max_pages: 512 })
    );

    let recursion = r#"(module (memory (export "memory") 1)
        (func $f (param i32) (result i32) (call $f (i32.add (local.get 0) (i32.const 1))))
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) (drop (call $f (i32.const 0))) i64.const 0))"#;
    assert_eq!(run_wat(recursion, 1_000_000_000), Err(JobError::StackLimit));

    let traps = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) (i64.load (i32.const 70000))))"#;
    assert!(matches!(run_wat(traps, 1_000_000), Err(JobError::Trap(_))));

    let bad_output = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) i64.const 0x0000fff000001000))"#;
    assert!(matches!(
        run_wat(bad_output, 1_000_000),
        Err(JobError::BadOutput { .. })
    ));

    let import = r#"(module (import "env" "now" (func)) (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 0)
        (func (export "run") (param i32 i32) (result i64) i64.const 0))"#;
    assert_eq!(
        profile::prepare(&wat(import), &Profile::V1).map(|_| ()),
        Err(ModuleError::Import("the function `env.now`".into()))
    );

    let start = r#"(module (memory (export "memory") 1) (func $s) (start $s)
        (func (export "alloc") (param i32) (result i32) i32.const 0)
        (func (export "run") (param i32 i32) (result i64) i64.const 0))"#;
    assert_eq!(
        profile::prepare(&wat(start), &Profile::V1).map(|_| ()),
        Err(ModuleError::StartFunction)
    );

    let threads = r#"(module (memory (export "memory") 1 1 shared)
        (func (export "alloc") (param i32) (result i32) i32.const 0)
        (func (export "run") (param i32 i32) (result i64) i64.const 0))"#;
    assert!(matches!(
        profile::prepare(&wat(threads), &Profile::V1),
        Err(ModuleError::Invalid(_))
    ));

    let simd = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 0)
        (func (export "run") (param i32 i32) (result i64)
            (drop (v128.const i64x2 0 0)) i64.const 0))"#;
    assert!(matches!(
        profile::prepare(&wat(simd), &Profile::V1),
        Err(ModuleError::Invalid(_))
    ));

    assert!(matches!(
        profile::prepare(b"\0asm\x01\0\0\0garbage", &Profile::V1),
        Err(ModuleError::Invalid(_))
    ));
    let huge = vec![0u8; Profile::V1.max_module_bytes + 1];
    assert!(matches!(
        profile::prepare(&huge, &Profile::V1),
        Err(ModuleError::TooLarge { .. })
    ));
    // Tables are bounded too (the relay's instance pool is sized by the profile).
    let table = |tables: u32, elements: u32| {
        let tables = format!("(table {elements} funcref)").repeat(tables as usize);
        format!(
            r#"(module (memory (export "memory") 1) {tables}
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "run") (param i32 i32) (result i64) i64.const 0))"#
        )
    };
    let limits = Profile::V1;
    assert!(
        profile::prepare(
            &wat(&table(limits.max_tables, limits.max_table_elements)),
            &limits
        )
        .is_ok()
    );
    // ...and the largest a module may have runs on the relay's engine.
    run_wat(
        &table(limits.max_tables, limits.max_table_elements),
        1_000_000,
    )
    .expect("a module at the table limits runs");
    assert!(matches!(
        profile::prepare(&wat(&table(1, limits.max_table_elements + 1)), &limits),
        Err(ModuleError::Limit { .. })
    ));
    assert!(matches!(
        profile::prepare(&wat(&table(limits.max_tables + 1, 1)), &limits),
        Err(ModuleError::Limit { .. })
    ));

    let no_abi = r#"(module (memory (export "memory") 1))"#;
    assert_eq!(
        profile::prepare(&wat(no_abi), &Profile::V1).map(|_| ()),
        Err(ModuleError::NoEntryPoints)
    );
}

#[test]
fn nans_are_canonical_whatever_the_operands() {
    // 0/0 and sqrt(-1) produce NaNs whose bits an engine may choose; the module stores them.
    let module = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64)
            (f32.store (i32.const 0) (f32.div (f32.const 0) (f32.const 0)))
            (f64.store (i32.const 4) (f64.sqrt (f64.const -1)))
            (f32.store (i32.const 12) (f32.add (f32.const nan:0x200001) (f32.const 1)))
            i64.const 16))"#;
    let out = run_wat(module, 1_000_000).expect("runs");
    assert_eq!(&out.output[0..4], &profile::CANONICAL_NAN_32.to_le_bytes());
    assert_eq!(&out.output[4..12], &profile::CANONICAL_NAN_64.to_le_bytes());
    assert_eq!(
        &out.output[12..16],
        &profile::CANONICAL_NAN_32.to_le_bytes()
    );
}

fn signed_request(customer: &Keypair, module: Hash, input: &[u8], fuel_limit: u64) -> JobRequest {
    let spec = JobSpec {
        module,
        input: input.to_vec(),
        fuel_limit,
        max_steps: exec::MAX_STEPS,
        payment: None,
    };
    Signed::sign(customer, Request::new("test-net", 1, 1_000, 60_000, spec))
}

/// A receipt as an honest relay would make it, with `tamper` applied before signing.
fn receipt(
    relay: &Keypair,
    request: &JobRequest,
    outcome: &exec::Outcome,
    form: JobForm,
    tamper: impl FnOnce(&mut Receipt),
) -> Signed<Receipt> {
    let mut body = Receipt {
        profile: Profile::V1.version,
        job: job_id(request),
        customer: request.signer,
        module: request.body.body.module,
        input: Hash::of(&request.body.body.input),
        output: Hash::of(&outcome.output),
        fuel_used: outcome.fuel_used,
        commitment: (form == JobForm::Steps)
            .then(|| CheckpointTree::new(&outcome.checkpoints).commitment()),
        payment: None,
        completed_at_ms: 2_000,
    };
    tamper(&mut body);
    Signed::sign(relay, body)
}

#[test]
fn verification_accepts_honest_results_and_names_each_lie() {
    let engine = JobEngine::new().expect("engine");
    let relay = Keypair::from_seed(&[1; 32]);
    let customer = Keypair::from_seed(&[2; 32]);
    let relay_id = relay.peer_id();

    let (prepared, compiled) = compile(&engine, &job_module("primes").expect("module"));
    let request = signed_request(&customer, prepared.module_hash, b"50000", 1_000_000_000);
    let outcome = exec::execute(
        &compiled,
        &prepared,
        b"50000",
        1_000_000_000,
        &mut Unobserved,
    )
    .expect("runs");
    let honest = receipt(&relay, &request, &outcome, prepared.form, |_| {});
    verify::check_receipt(
        &request,
        &prepared,
        &outcome.output,
        &honest,
        Some(&relay_id),
    )
    .expect("an honest receipt passes");
    assert!(matches!(
        verify::reexecute(&compiled, &prepared, &request, &honest.body),
        Ok(Strength::Reexecuted { .. })
    ));

    // A different output with a receipt that matches it: re-execution catches it.
    let mut wrong = outcome.clone();
    wrong.output.push(b'!');
    let lie = receipt(&relay, &request, &wrong, prepared.form, |_| {});
    verify::check_receipt(&request, &prepared, &wrong.output, &lie, Some(&relay_id))
        .expect("the receipt itself is consistent");
    let err = verify::reexecute(&compiled, &prepared, &request, &lie.body).unwrap_err();
    assert_eq!(err.check(), "output");

    let lie = receipt(&relay, &request, &outcome, prepared.form, |r| {
        r.fuel_used += 1
    });
    let err = verify::reexecute(&compiled, &prepared, &request, &lie.body).unwrap_err();
    assert_eq!(err.check(), "fuel");

    let mut forged = honest.clone();
    forged.signature.0[3] ^= 1;
    let err =
        verify::check_receipt(&request, &prepared, &outcome.output, &forged, None).unwrap_err();
    assert_eq!(err.check(), "receipt signature");

    let other = Keypair::from_seed(&[9; 32]).peer_id();
    let err = verify::check_receipt(&request, &prepared, &outcome.output, &honest, Some(&other))
        .unwrap_err();
    assert!(matches!(err, VerifyError::WrongRelay { .. }));

    let err = verify::check_receipt(&request, &prepared, b"tampered", &honest, None).unwrap_err();
    assert_eq!(err, VerifyError::OutputHash);
}

/// Samples a step job's checkpoints as a browser would, with the states served from `states`.
fn sample(
    compiled: &CompiledJob,
    prepared: &Prepared,
    request: &JobRequest,
    receipt: &Receipt,
    states: &[exec::Snapshot],
    tree: &CheckpointTree,
) -> Result<Strength, VerifyError> {
    let commitment = receipt.commitment.expect("step job");
    let plan = SamplePlan::new(commitment, 0.05, 0.99, &[42; 32]);
    let proof = tree.prove(&plan.prove);
    let mut check = SampleCheck::new(prepared, request, receipt, plan.clone());
    for index in &plan.states {
        check.add_state(*index, states[*index as usize].to_sparse())?;
    }
    check.check_initial_state(compiled)?;
    for segment in &plan.segments {
        check.check_segment(compiled, *segment)?;
    }
    check.finish(&proof)
}

#[test]
fn sampling_checks_segments_and_catches_skipped_work() {
    let engine = JobEngine::new().expect("engine");
    let relay = Keypair::from_seed(&[1; 32]);
    let customer = Keypair::from_seed(&[2; 32]);
    let (prepared, compiled) = compile(&engine, &job_module("hash-chain").expect("module"));
    let input = b"200 5 sampled";
    let request = signed_request(&customer, prepared.module_hash, input, 1_000_000_000);
    let mut kept = KeepStates::default();
    let outcome =
        exec::execute(&compiled, &prepared, input, 1_000_000_000, &mut kept).expect("runs");
    assert_eq!(kept.0.len(), 201);
    let tree = CheckpointTree::new(&outcome.checkpoints);
    let honest = receipt(&relay, &request, &outcome, prepared.form, |_| {});
    match sample(&compiled, &prepared, &request, &honest.body, &kept.0, &tree) {
        Ok(Strength::Sampled {
            segments,
            checked,
            detection,
        }) => {
            assert_eq!(segments, 200);
            assert!(checked.contains(&200), "the last segment is always checked");
            let at5 = detection.iter().find(|(f, _)| *f == 0.05).map(|(_, p)| *p);
            assert!(at5.is_some_and(|p| p >= 0.99), "{detection:?}");
        }
        other => panic!("honest sampling should pass: {other:?}"),
    }

    // A relay that skipped the second half commits to made-up states from there on.
    let mut faked = outcome.checkpoints.clone();
    for (i, c) in faked.iter_mut().enumerate().skip(100) {
        *c = Hash::of_encoded(&("skipped", i));
    }
    let fake_tree = CheckpointTree::new(&faked);
    let lie = receipt(&relay, &request, &outcome, prepared.form, |r| {
        r.commitment = Some(fake_tree.commitment());
    });
    let err = sample(
        &compiled, &prepared, &request, &lie.body, &kept.0, &fake_tree,
    )
    .unwrap_err();
    assert!(
        matches!(err.check(), "Merkle proof" | "checkpoint"),
        "skipped work is caught: {err}"
    );
    // Full re-execution sees it too.
    let err = verify::reexecute(&compiled, &prepared, &request, &lie.body).unwrap_err();
    assert_eq!(err.check(), "checkpoint");

    // The customer bounds the steps: a receipt committing to more than the request allowed is
    // refused before anything is sampled.
    let mut tight = request.body.clone();
    tight.body.max_steps = 199;
    let tight = Signed::sign(&customer, tight);
    let over = receipt(&relay, &tight, &outcome, prepared.form, |_| {});
    let err = verify::check_receipt(&tight, &prepared, &outcome.output, &over, None).unwrap_err();
    assert!(
        matches!(
            err,
            verify::VerifyError::TooManySteps {
                claimed: 200,
                max: 199
            }
        ),
        "{err}"
    );
    // And an honest relay stops where the customer said.
    let stopped = exec::execute_within(
        &compiled,
        &prepared,
        input,
        1_000_000_000,
        199,
        &mut exec::Unobserved,
    );
    assert_eq!(
        stopped.map(|_| ()),
        Err(exec::JobError::TooManySteps { max: 199 })
    );
}

/// Writes what wasmtime computes for fixed jobs; the wasm test in Chromium checks that the
/// browser's engine computes exactly the same (see client-core/tests/js_engine.rs).
#[test]
fn write_vectors_for_the_browser_engine_test() {
    let engine = JobEngine::new().expect("engine");
    let mut vectors = String::new();
    for (name, input) in [
        ("hash-chain", "12 40 vectors"),
        ("mandelbrot", "40 30 64"),
        ("primes", "30000"),
    ] {
        let (prepared, compiled) = compile(&engine, &job_module(name).expect("module"));
        let out = exec::execute(
            &compiled,
            &prepared,
            input.as_bytes(),
            1 << 40,
            &mut Unobserved,
        )
        .expect("runs");
        let checkpoints: Vec<String> = out.checkpoints.iter().map(Hash::to_string).collect();
        let _ = writeln!(
            vectors,
            "{name}|{input}|{}|{}|{}",
            Hash::of(&out.output),
            out.fuel_used,
            checkpoints.join(",")
        );
    }
    let path = artifacts_dir("job-vectors").join("vectors.txt");
    std::fs::write(&path, vectors).expect("writing the vectors");
}

#[test]
fn fuel_spent_in_called_functions_is_counted() {
    // `run` calls `burn` N times, directly or through the table; `burn` is a long straight
    // run. Each extra call must cost at least `burn`'s own length, whichever way it is called,
    // and running out inside `burn` must be reported as running out of fuel.
    let module = |calls: u32, indirect: bool| {
        let call = if indirect {
            "(call_indirect (type $t) (i32.const 0))"
        } else {
            "(call $burn)"
        };
        let body = "(drop (i32.add (i32.const 1) (i32.const 2)))\n".repeat(50);
        format!(
            r#"(module (memory (export "memory") 1)
            (type $t (func))
            (table 1 funcref) (elem (i32.const 0) $burn)
            (func $burn (type $t) {body})
            (func (export "alloc") (param i32) (result i32) i32.const 1024)
            (func (export "run") (param i32 i32) (result i64) (local $i i32)
                (block $out (loop $again
                    (br_if $out (i32.ge_u (local.get $i) (i32.const {calls})))
                    {call}
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $again)))
                i64.const 0))"#
        )
    };
    for indirect in [false, true] {
        let fuel = |calls| {
            run_wat(&module(calls, indirect), 1_000_000)
                .expect("runs")
                .fuel_used
        };
        let (one, two, three) = (fuel(1), fuel(2), fuel(3));
        assert_eq!(two - one, three - two, "each call costs the same");
        assert!(
            two - one > 200,
            "a call to a 200-instruction function cost only {} (indirect: {indirect})",
            two - one
        );
        // Enough fuel for two calls but not three: out of fuel, not some other trap.
        assert_eq!(
            run_wat(&module(3, indirect), two + 100),
            Err(JobError::OutOfFuel { limit: two + 100 })
        );
    }
}

#[test]
fn fuel_follows_the_documented_charging_rules() {
    let engine = JobEngine::new().expect("engine");
    let run = |text: &str, input: &[u8]| {
        let (prepared, compiled) = compile(&engine, &wat(text));
        exec::execute(&compiled, &prepared, input, 1_000_000, &mut Unobserved)
            .expect("runs")
            .fuel_used
    };
    // A loop pays for its instructions once per iteration (`end` costs nothing): here five
    // (local.get, i32.const, i32.sub, local.tee, br_if) for each turn of a count-down from
    // the input's first byte.
    let countdown = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) (local i32)
            (local.set 2 (i32.load8_u (local.get 0)))
            (loop $l (br_if $l (local.tee 2 (i32.sub (local.get 2) (i32.const 1)))))
            i64.const 0))"#;
    assert_eq!(run(countdown, &[6]) - run(countdown, &[5]), 5);
    assert_eq!(run(countdown, &[9]) - run(countdown, &[5]), 20);

    // The code after a block is paid with the code that opens it: a branch that leaves past
    // it (first byte not zero) has paid for it too, so `extra` more instructions there cost
    // `extra` more fuel whichever way the run goes.
    let after_block = |extra: usize| {
        let tail = "(drop (i32.const 1))\n".repeat(extra);
        format!(
            r#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 1024)
            (func (export "run") (param i32 i32) (result i64)
                (block $out
                    (block $b (br_if $out (i32.load8_u (local.get 0))))
                    {tail})
                i64.const 0))"#
        )
    };
    for first in [0u8, 1] {
        assert_eq!(
            run(&after_block(6), &[first]) - run(&after_block(2), &[first]),
            8,
            "four more (i32.const, drop) pairs after the block, first byte {first}"
        );
    }
    // Leaving past the tail pays the same as running through it.
    assert_eq!(run(&after_block(4), &[1]), run(&after_block(4), &[0]));
}

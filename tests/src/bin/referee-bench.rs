//! What refereeing two providers costs the referee (`cargo xtask bench`): an honest hash chain
//! and one forged at its middle step, of 1000 and of 60,000 segments. The referee's work —
//! checking every answer's Merkle proof, recomputing checkpoint 0, restoring the agreed state
//! and re-running one segment — is timed against running the whole job, on wasmtime in this
//! process (the answers are made beforehand: answering is the providers' cost). Round trips
//! are not included: over a network each round adds one (11–12 rounds for 1000 segments in
//! the referee test over loopback).
//!
//! Prints a table and writes `target/bench/referee.json`.

use aqueduct_tests::{SampledJob, artifacts_dir, forged_hash_chain, sampled_hash_chain};
use client_core::job::exec;
use client_core::job::referee::{Bisection, Next, Verdict};
use node_relay::jobs::engine::JobEngine;
use std::time::{Duration, Instant};

/// Referees `a` against `b` in this process; returns the verdict, rounds and proof bytes read.
fn referee(a: &SampledJob, b: &SampledJob) -> anyhow::Result<(Verdict, u32, usize)> {
    let (ca, cb) = (a.tree.commitment(), b.tree.commitment());
    let spec = &a.request.body.body;
    let own = exec::initial_state(&a.job, &a.prepared, &spec.input, spec.fuel_limit)?;
    let mut bisection = Bisection::new(ca, cb);
    let mut proof_bytes = 0;
    let answer = |job: &SampledJob, i: u64| {
        let proof = job.tree.prove(&[i]);
        (job.states[i as usize].hash(), proof)
    };
    loop {
        match bisection.next() {
            Next::Leaf(i) => {
                let ((la, pa), (lb, pb)) = (answer(a, i), answer(b, i));
                proof_bytes += pa.len() + pb.len();
                if let Some(v) =
                    bisection.answer(i, (la, &pa), (lb, &pb), (i == 0).then_some(own))?
                {
                    return Ok((v, bisection.rounds(), proof_bytes));
                }
            }
            Next::Judge { segment } => {
                let pre = &a.states[segment as usize - 1];
                let fresh = exec::fresh_chunks(&a.job)?;
                let run = exec::run_segment(&a.job, &a.prepared, pre, &fresh, spec.fuel_limit)?;
                let ((la, pa), (lb, pb)) = (answer(a, segment), answer(b, segment));
                proof_bytes += pa.len() + pb.len();
                let verdict = bisection.judge(
                    segment,
                    pre.hash(),
                    &run,
                    [((la, &pa), &a.receipt), ((lb, &pb), &b.receipt)],
                )?;
                return Ok((verdict, bisection.rounds(), proof_bytes));
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let engine = JobEngine::new()?;
    let mut rows = Vec::new();
    println!("segments | job run | referee | referee/job | rounds | proof bytes read");
    for (segments, rounds_per_step) in [(1000u64, 2000u64), (60_000, 40)] {
        let input = format!("{segments} {rounds_per_step} referee");
        let started = Instant::now();
        let honest = sampled_hash_chain(&engine, input.as_bytes())?;
        // The provider's run, states kept (what a relay does).
        let job_time = started.elapsed();
        let forged = forged_hash_chain(&engine, input.as_bytes(), segments / 2)?;
        // The fastest of a few refereeing runs.
        let mut best = Duration::MAX;
        let mut outcome = None;
        for _ in 0..5 {
            let t = Instant::now();
            let result = referee(&honest, &forged)?;
            best = best.min(t.elapsed());
            outcome = Some(result);
        }
        let Some((verdict, rounds, proof_bytes)) = outcome else {
            anyhow::bail!("no refereeing run");
        };
        anyhow::ensure!(
            matches!(verdict, Verdict::Lied { segment, .. } if segment == segments / 2),
            "the forged step was not found: {verdict:?}"
        );
        let ratio = best.as_secs_f64() / job_time.as_secs_f64();
        println!(
            "{segments:>8} | {:>7.0} ms | {:>7.2} ms | {:>10.3}% | {rounds:>6} | {proof_bytes}",
            job_time.as_secs_f64() * 1000.0,
            best.as_secs_f64() * 1000.0,
            ratio * 100.0
        );
        rows.push(serde_json::json!({
            "segments": segments,
            "job_ms": job_time.as_secs_f64() * 1000.0,
            "referee_ms": best.as_secs_f64() * 1000.0,
            "ratio": ratio,
            "rounds": rounds,
            "proof_bytes": proof_bytes,
        }));
    }
    let out = artifacts_dir("bench").join("referee.json");
    std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
    println!("written to {}", out.display());
    Ok(())
}

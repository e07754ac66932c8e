//! What refereeing two providers costs (`cargo xtask bench`): an honest hash chain and one
//! forged at its middle step, of 1000 and of 65,000 segments. The referee's work — checking
//! every answer's Merkle proof, recomputing checkpoint 0, restoring the agreed state and
//! re-running one segment — is the page's own driver (`client_core::job::referee::referee`),
//! timed against running the whole job, on wasmtime in this process (the answers are made
//! beforehand: answering is the providers' cost). Round trips are not included: over a network
//! each round adds one (11–12 rounds for 1000 segments in the referee test over loopback).
//! Then the fraud proof the referee's claim makes: its size, and what a validator spends
//! checking it (evidence, then re-running the segment on its judge's engine).
//!
//! Prints a table and writes `target/bench/referee.json`.

use aqueduct_tests::{InMemory, SampledJob, artifacts_dir, forged_hash_chain, sampled_hash_chain};
use client_core::job::fraud::{self, FraudProof};
use client_core::job::referee::{self, Refereed, Verdict};
use node_relay::jobs::engine::{JobEngine, fraud_judge};
use std::time::{Duration, Instant};

/// The fastest of `runs` timings of `f`, with its last result.
fn fastest<T>(
    runs: u32,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, T)> {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f()?;
        best = best.min(t.elapsed());
        last = Some(out);
    }
    last.map(|out| (best, out))
        .ok_or_else(|| anyhow::anyhow!("no run"))
}

fn main() -> anyhow::Result<()> {
    let engine = JobEngine::new()?;
    let judge = fraud_judge()?;
    let module = aqueduct_tests::job_module("hash-chain")?;
    let mut rows = Vec::new();
    println!("segments | job run | referee | referee/job | rounds | fraud proof | validator check");
    for (segments, rounds_per_step) in [(1000u64, 2000u64), (65_000, 40)] {
        let input = format!("{segments} {rounds_per_step} referee");
        let started = Instant::now();
        let honest = sampled_hash_chain(&engine, input.as_bytes())?;
        // The provider's run, states kept (what a relay does).
        let job_time = started.elapsed();
        let forged = forged_hash_chain(&engine, input.as_bytes(), segments / 2)?;
        let pair: [&SampledJob; 2] = [&honest, &forged];
        let (best, refereed) = fastest(5, || {
            Ok(futures::executor::block_on(referee::referee(
                &honest.job,
                &honest.prepared,
                &honest.request.body.body,
                [&honest.receipt, &forged.receipt],
                &mut InMemory(pair),
            ))?)
        })?;
        let Refereed::Verdict {
            verdict: Verdict::Lied { segment, .. },
            rounds,
            claims,
        } = refereed
        else {
            anyhow::bail!("the forged step was not found: {refereed:?}");
        };
        anyhow::ensure!(segment == segments / 2, "found segment {segment}");
        let Some((_, claim)) = claims.into_iter().next() else {
            anyhow::bail!("no claim for the liar");
        };
        let keypair = client_core::identity::Keypair::from_seed(&[9; 32]);
        let proof = FraudProof {
            receipt: client_core::signed::Signed::sign(&keypair, forged.receipt.clone()),
            request: forged.request.clone(),
            module: module.clone(),
            claim,
        };
        let proof_bytes = client_core::encoding::encode(&proof).len();
        let (check, _) = fastest(5, || {
            let evidence = proof.check_evidence()?;
            Ok(fraud::judge(&evidence, judge.as_ref())?)
        })?;
        let ratio = best.as_secs_f64() / job_time.as_secs_f64();
        println!(
            "{segments:>8} | {:>7.0} ms | {:>7.2} ms | {:>10.3}% | {rounds:>6} | {proof_bytes:>7} B | {:>8.2} ms",
            job_time.as_secs_f64() * 1000.0,
            best.as_secs_f64() * 1000.0,
            ratio * 100.0,
            check.as_secs_f64() * 1000.0,
        );
        rows.push(serde_json::json!({
            "segments": segments,
            "job_ms": job_time.as_secs_f64() * 1000.0,
            "referee_ms": best.as_secs_f64() * 1000.0,
            "ratio": ratio,
            "rounds": rounds,
            "fraud_proof_bytes": proof_bytes,
            "fraud_proof_limit": client_core::job::fraud::MAX_FRAUD_PROOF_BYTES,
            "validator_check_ms": check.as_secs_f64() * 1000.0,
        }));
    }
    let out = artifacts_dir("bench").join("referee.json");
    std::fs::write(&out, serde_json::to_string_pretty(&rows)?)?;
    println!("written to {}", out.display());
    Ok(())
}

//! The strongest cheater sampling faces: a relay that forges ONE transition of a step job and
//! computes everything after it honestly from the forged state. Its receipt, commitment and
//! every checkpoint state but one are consistent, so it passes the receipt checks and answers
//! every sample correctly except the forged segment. Sampling catches it exactly when that
//! segment is drawn — with the probability the page states (`single_step_catch`), tested over
//! many seeds — and full re-execution always does.

use aqueduct_tests::{forged_hash_chain, sampled_hash_chain};
use client_core::job::verify::{self, single_step_catch};
use node_relay::jobs::engine::JobEngine;

/// 1000 segments of 20 hashes each: long enough to be sampled, quick to re-run.
const INPUT: &[u8] = b"1000 20 forged";
const SEGMENTS: u64 = 1000;
/// Seeds for the statistics: the plans are drawn from them deterministically, so the test
/// gives the same answer every run.
const SEEDS: u32 = 4000;

#[test]
fn one_forged_step_is_caught_by_sampling_only_with_the_stated_probability() {
    let engine = JobEngine::new().expect("engine");
    let honest = sampled_hash_chain(&engine, INPUT).expect("honest run");
    for forged_at in [1, 437, SEGMENTS] {
        let lie = forged_hash_chain(&engine, INPUT, forged_at).expect("forged run");
        // A real lie: another output and another trace from the forged step on, with the
        // same number of steps.
        assert_ne!(lie.receipt.output, honest.receipt.output);
        assert_eq!(
            lie.tree.commitment().checkpoints,
            honest.tree.commitment().checkpoints
        );
        // Full re-execution always catches it.
        let err = lie
            .reexecute()
            .expect_err("re-execution catches a forged step");
        assert!(matches!(err.check(), "output" | "checkpoint"), "{err}");

        // Which plans draw the forged segment, over many seeds.
        let mut drawn = 0u32;
        let mut checked = 0u64;
        let mut shown = (0, 0);
        for seed in 0..SEEDS {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&seed.to_le_bytes());
            let plan = verify::SamplePlan::new(lie.tree.commitment(), 0.05, 0.99, &bytes);
            checked = plan.segments.len() as u64;
            let hit = plan.segments.contains(&forged_at);
            drawn += u32::from(hit);
            // For a few plans each way, the whole sampling check: it fails when the forged
            // segment is drawn (the re-run state is not the committed one, so the Merkle proof
            // of the sampled states fails), and passes otherwise.
            if (hit && shown.0 < 3) || (!hit && shown.1 < 3) {
                let proof = lie.tree.prove(&plan.prove);
                match lie.sample(&plan, &proof) {
                    Err(e)
                        if hit && matches!(e.check(), "Merkle proof" | "checkpoint" | "output") =>
                    {
                        shown.0 += 1
                    }
                    Ok(_) if !hit => shown.1 += 1,
                    other => panic!("forged at {forged_at}, drawn {hit}: {other:?}"),
                }
            }
        }
        let stated = if forged_at == SEGMENTS {
            1.0 // the last segment is always sampled
        } else {
            single_step_catch(SEGMENTS, checked)
        };
        assert!(shown.0 > 0, "no plan drew the forged segment");
        let rate = f64::from(drawn) / f64::from(SEEDS);
        let sigma = (stated * (1.0 - stated) / f64::from(SEEDS)).sqrt();
        eprintln!(
            "forged step {forged_at}: caught by {drawn} of {SEEDS} samplings ({:.2}%), stated \
             {:.2}% ({checked} of {SEGMENTS} segments re-run)",
            rate * 100.0,
            stated * 100.0
        );
        assert!(
            (rate - stated).abs() <= 4.0 * sigma + 1e-9,
            "forged step {forged_at}: caught {rate:.4}, stated {stated:.4}"
        );
        // And the page's figure for the strongest cheater is small: sampling is evidence of
        // work, not of a correct output.
        if forged_at != SEGMENTS {
            assert!(stated < 0.15, "{stated}");
        }
    }
}

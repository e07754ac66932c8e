//! Fraud proofs, as validators check them before judging. The fuzzer writes the proof; the
//! first byte's bits make parts of it consistent the way a real one is (a valid module, a
//! request and receipt that name each other, a commitment the claimed states are leaves of),
//! so every check is reached. A proof that passes the checks must still need an engine to be
//! judged: without one it is unjudgeable, never proven.
#![no_main]

use borsh::BorshDeserialize;
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::job::commit::CheckpointTree;
use client_core::job::fraud::{Claim, FraudError, FraudProof, NoJudge, judge};
use client_core::job::profile::Profile;
use client_core::job::{JobSpec, Receipt, job_id};
use client_core::signed::Signed;
use client_core_fuzz::{NETWORK, job_module, keys};
use libfuzzer_sys::fuzz_target;

#[derive(BorshDeserialize)]
struct Input {
    fixes: u8,
    checkpoints: u8,
    spec: JobSpec,
    receipt: Receipt,
    module: Vec<u8>,
    claim: Claim,
}

fuzz_target!(|data: &[u8]| {
    let Ok(Input {
        fixes,
        checkpoints,
        mut spec,
        mut receipt,
        mut module,
        mut claim,
    }) = client_core::encoding::decode::<Input>(data, 256 * 1024)
    else {
        return;
    };
    let fix = |bit: u8| fixes & (1 << bit) != 0;
    let keys = keys();
    if fix(0) {
        module = job_module(true);
    }
    if fix(1) {
        spec.module = Hash::of(&module);
    }
    let request = Signed::sign(
        &keys[2],
        Request::new(NETWORK, 1, 1_700_000_000_000, 60_000, spec),
    );
    if fix(2) {
        receipt.job = job_id(&request);
        receipt.module = Hash::of(&module);
        receipt.input = Hash::of(&request.body.body.input);
        receipt.profile = Profile::V1.version;
    }
    if fix(3) {
        // A trace of 2..=257 checkpoints whose leaves include the claimed states.
        let count = u64::from(checkpoints) + 2;
        let mut leaves: Vec<Hash> = (0..count).map(|i| Hash::of(&i.to_le_bytes())).collect();
        let tree_of = |leaves: &[Hash]| CheckpointTree::new(leaves);
        match &mut claim {
            Claim::Init { state, proof } => {
                leaves[0] = *state;
                let tree = tree_of(&leaves);
                *proof = tree.prove(&[0]);
                receipt.commitment = Some(tree.commitment());
            }
            Claim::Segment {
                index,
                pre,
                pre_proof,
                post,
                post_proof,
            } => {
                *index = 1 + *index % (count - 1);
                let i = *index as usize;
                leaves[i - 1] = pre.hash();
                leaves[i] = *post;
                let tree = tree_of(&leaves);
                *pre_proof = tree.prove(&[*index - 1]);
                *post_proof = tree.prove(&[*index]);
                receipt.commitment = Some(tree.commitment());
            }
        }
    }
    let proof = FraudProof {
        receipt: Signed::sign(&keys[0], receipt),
        request,
        module,
        claim,
    };
    if let Ok(evidence) = proof.check_evidence() {
        match judge(&evidence, &NoJudge) {
            Err(FraudError::Unjudgeable(_)) => {}
            other => panic!("judged without an engine: {other:?}"),
        }
    }
});

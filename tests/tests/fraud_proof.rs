//! Fraud proofs on the ledger, judged by the relay's own engine: a provider that signed a
//! receipt for a trace with one forged transition (first, middle or last step), an honest trace
//! with a wrong output, or a forged state after `init`, is slashed by a proof anyone submits —
//! its stake taken in part, the customer's payment returned, a bounty paid, its offer gone. A
//! proof against an honest receipt, a replayed one, a forged one and one over the size limit are
//! each refused with their own error, and nothing changes.

use aqueduct_tests::{InMemory, SampledJob, forged_hash_chain, sampled_hash_chain};
use client_core::hash::Hash;
use client_core::identity::Keypair;
use client_core::job::Receipt;
use client_core::job::commit::CheckpointTree;
use client_core::job::fraud::{Claim, FraudError, FraudProof, MAX_FRAUD_PROOF_BYTES, NoJudge};
use client_core::job::referee::{self, Refereed, Side, Verdict};
use client_core::ledger::apply::merge_into;
use client_core::ledger::genesis::Balance;
use client_core::ledger::pay::Payment;
use client_core::ledger::state::{
    Account, Offer, Provider, StateValue, UNITS_PER_TOKEN, VerificationLevel, fraud_id,
};
use client_core::ledger::tx::min_fee_for;
use client_core::ledger::{
    BlockContext, Genesis, StateKey, Tx, TxError, TxKind, apply_verified_judged,
};
use client_core::signed::Signed;
use node_relay::jobs::engine::{JobEngine, fraud_judge};
use std::collections::BTreeMap;

const NET: &str = "fraud-test";
const TOKEN: u64 = UNITS_PER_TOKEN;
const STAKE: u64 = 1_000 * TOKEN;
const PRICE: u64 = 7 * TOKEN;
const INPUT: &[u8] = b"1000 100 fraud";

fn provider_key() -> Keypair {
    Keypair::from_seed(&[41; 32])
}

fn submitter_key() -> Keypair {
    Keypair::from_seed(&[42; 32])
}

/// A ledger in memory with a registered provider (the one the receipts name) and an account
/// that submits proofs.
struct Ledger {
    state: BTreeMap<StateKey, StateValue>,
    height: u64,
    judge: Box<dyn client_core::job::fraud::Judge + Send + Sync>,
}

impl Ledger {
    fn new() -> anyhow::Result<Ledger> {
        let validator = Keypair::from_seed(&[40; 32]);
        let mut genesis = Genesis::dev(NET, validator.public(), 1_000);
        for key in [provider_key(), submitter_key()] {
            genesis.balances.push(Balance {
                account: key.public(),
                amount: 10_000 * TOKEN,
            });
        }
        let mut state = BTreeMap::new();
        merge_into(&mut state, genesis.initial_state());
        let mut ledger = Ledger {
            state,
            height: 0,
            judge: fraud_judge()?,
        };
        let offer = Offer {
            price_per_mfuel: 1,
            max_fuel: u64::MAX,
            concurrency: 1,
            levels: vec![VerificationLevel::Sampled],
            addrs: vec![],
            attributes: vec![],
        };
        ledger
            .submit(
                &provider_key(),
                TxKind::RegisterProvider {
                    stake: STAKE,
                    offer,
                },
            )
            .map_err(|e| anyhow::anyhow!("registering: {e}"))?;
        Ok(ledger)
    }

    fn account(&self, key: &Keypair) -> Account {
        match self.state.get(&StateKey::Account(key.public())) {
            Some(StateValue::Account(a)) => a.clone(),
            _ => Account::default(),
        }
    }

    fn provider(&self) -> Option<Provider> {
        match self.state.get(&StateKey::Provider(provider_key().public())) {
            Some(StateValue::Provider(p)) => Some(p.clone()),
            _ => None,
        }
    }

    fn submit(&mut self, who: &Keypair, kind: TxKind) -> Result<(), TxError> {
        let params = match self.state.get(&StateKey::Params) {
            Some(StateValue::Params(p)) => p.clone(),
            _ => return Err(TxError::NoGenesis),
        };
        let tx = Signed::sign(
            who,
            Tx {
                network_id: NET.into(),
                nonce: self.account(who).nonce,
                fee: min_fee_for(&params, NET, &kind),
                kind,
            },
        );
        let ctx = BlockContext {
            network_id: NET.into(),
            height: self.height + 1,
            time_ms: 10_000 + self.height,
        };
        let changes = apply_verified_judged(&self.state, &ctx, &tx, self.judge.as_ref())?;
        merge_into(&mut self.state, changes);
        self.height += 1;
        Ok(())
    }

    fn prove(&mut self, proof: FraudProof) -> Result<(), TxError> {
        self.submit(
            &submitter_key(),
            TxKind::FraudProof {
                proof: Box::new(proof),
            },
        )
    }
}

/// `job`'s receipt, as the provider signs it (paid `PRICE` on some channel).
fn signed_receipt(receipt: &Receipt) -> Signed<Receipt> {
    let mut body = receipt.clone();
    body.payment = Some(Payment {
        channel: Hash::of(b"channel"),
        cumulative: PRICE,
        price: PRICE,
    });
    Signed::sign(&provider_key(), body)
}

fn module() -> Vec<u8> {
    aqueduct_tests::job_module("hash-chain").expect("the hash-chain example is built")
}

/// A proof that segment `index` of `job`'s trace is false.
fn segment_proof(job: &SampledJob, receipt: Signed<Receipt>, index: u64) -> FraudProof {
    let pre = job.states[index as usize - 1].clone();
    let post = job.states[index as usize].hash();
    FraudProof {
        receipt,
        request: job.request.clone(),
        module: module(),
        claim: Claim::Segment {
            index,
            pre,
            pre_proof: job.tree.prove(&[index - 1]),
            post,
            post_proof: job.tree.prove(&[index]),
        },
    }
}

fn fraud_error(result: Result<(), TxError>) -> FraudError {
    match result {
        Err(TxError::Fraud(e)) => e,
        other => panic!("expected a refused fraud proof, got {other:?}"),
    }
}

#[test]
fn a_forged_step_anywhere_is_proven_and_slashed_once() -> anyhow::Result<()> {
    let engine = JobEngine::new()?;
    for step in [1, 437, 1000] {
        let job = forged_hash_chain(&engine, INPUT, step)?;
        let mut ledger = Ledger::new()?;
        let customer = job.request.signer;
        let customer_before = match ledger.state.get(&StateKey::Account(customer)) {
            Some(StateValue::Account(a)) => a.balance,
            _ => 0,
        };
        let submitter_before = ledger.account(&submitter_key()).balance;
        let treasury_before = match ledger.state.get(&StateKey::Treasury) {
            Some(StateValue::Amount(a)) => *a,
            _ => 0,
        };
        let receipt = signed_receipt(&job.receipt);

        // Honest segments of the same receipt prove nothing.
        let honest = if step > 1 { step - 1 } else { 2 };
        assert_eq!(
            fraud_error(ledger.prove(segment_proof(&job, receipt.clone(), honest))),
            FraudError::Honest { segment: honest },
            "step {step}"
        );

        ledger
            .prove(segment_proof(&job, receipt.clone(), step))
            .map_err(|e| anyhow::anyhow!("the proof of step {step} was refused: {e}"))?;
        let provider = ledger.provider().expect("still listed, marked");
        let slash = provider.slashed.clone().expect("marked slashed");
        assert_eq!(slash.segment, step);
        assert_eq!(slash.amount, STAKE / 10, "slash_fraction_bps = 1000");
        assert_eq!(slash.refund, PRICE);
        assert_eq!(slash.bounty, (STAKE / 10 - PRICE) / 2);
        assert!(!provider.active(), "its offer leaves the marketplace");
        assert_eq!(provider.stake, 0);
        assert_eq!(
            provider.unbonding.as_ref().map(|u| u.amount),
            Some(STAKE - STAKE / 10)
        );
        let customer_after = match ledger.state.get(&StateKey::Account(customer)) {
            Some(StateValue::Account(a)) => a.balance,
            _ => 0,
        };
        assert_eq!(customer_after - customer_before, PRICE);
        let fee = submitter_before + slash.bounty - ledger.account(&submitter_key()).balance;
        assert!(fee > 0 && fee < TOKEN, "the submitter paid a fee of {fee}");
        let treasury_after = match ledger.state.get(&StateKey::Treasury) {
            Some(StateValue::Amount(a)) => *a,
            _ => 0,
        };
        assert_eq!(
            treasury_after - treasury_before,
            fee + slash.amount - slash.refund - slash.bounty,
            "every slashed unit is accounted for"
        );
        let record = StateKey::Fraud(fraud_id(&provider_key().public(), &job.receipt.job));
        assert_eq!(
            ledger.state.get(&record),
            Some(&StateValue::Slash(slash)),
            "the slash is recorded under the lie"
        );

        // The same lie is slashed once.
        assert_eq!(
            ledger.prove(segment_proof(&job, receipt, step)),
            Err(TxError::FraudAlreadyProven)
        );
    }
    Ok(())
}

#[test]
fn an_honest_trace_with_a_wrong_output_and_a_forged_start_are_proven() -> anyhow::Result<()> {
    let engine = JobEngine::new()?;
    let job = sampled_hash_chain(&engine, INPUT)?;

    // Every checkpoint honest, the output signed wrong: the last segment shows it.
    let mut wrong = job.receipt.clone();
    wrong.output = Hash::of(b"not the output");
    let last = job.states.len() as u64 - 1;
    let mut ledger = Ledger::new()?;
    ledger
        .prove(segment_proof(&job, signed_receipt(&wrong), last))
        .map_err(|e| anyhow::anyhow!("the wrong output was not proven: {e}"))?;
    assert!(ledger.provider().and_then(|p| p.slashed).is_some());

    // The honest receipt: no segment proves anything, the last one included.
    let mut ledger = Ledger::new()?;
    for index in [1, 500, last] {
        assert_eq!(
            fraud_error(ledger.prove(segment_proof(&job, signed_receipt(&job.receipt), index))),
            FraudError::Honest { segment: index }
        );
    }

    // A trace whose checkpoint 0 is not what init gives.
    let mut leaves: Vec<Hash> = job.states.iter().map(|s| s.hash()).collect();
    leaves[0] = Hash::of(b"made up");
    let tree = CheckpointTree::new(&leaves);
    let mut forged = job.receipt.clone();
    forged.commitment = Some(tree.commitment());
    let init = |receipt: Signed<Receipt>, state: Hash| FraudProof {
        receipt,
        request: job.request.clone(),
        module: module(),
        claim: Claim::Init {
            state,
            proof: tree.prove(&[0]),
        },
    };
    ledger
        .prove(init(signed_receipt(&forged), leaves[0]))
        .map_err(|e| anyhow::anyhow!("the forged start was not proven: {e}"))?;
    // The honest start proves nothing.
    let honest_tree = &job.tree;
    let mut ledger = Ledger::new()?;
    let honest_init = FraudProof {
        receipt: signed_receipt(&job.receipt),
        request: job.request.clone(),
        module: module(),
        claim: Claim::Init {
            state: job.states[0].hash(),
            proof: honest_tree.prove(&[0]),
        },
    };
    assert_eq!(
        fraud_error(ledger.prove(honest_init)),
        FraudError::Honest { segment: 0 }
    );
    Ok(())
}

#[test]
fn forged_oversized_and_unjudged_proofs_are_refused_with_their_own_errors() -> anyhow::Result<()> {
    let engine = JobEngine::new()?;
    let job = forged_hash_chain(&engine, INPUT, 437)?;
    let receipt = signed_receipt(&job.receipt);
    let good = segment_proof(&job, receipt.clone(), 437);
    let mut ledger = Ledger::new()?;
    let before = ledger.state.clone();

    // A receipt changed after signing.
    let mut proof = good.clone();
    proof.receipt.body.fuel_used += 1;
    assert_eq!(
        fraud_error(ledger.prove(proof)),
        FraudError::ReceiptSignature
    );
    // A receipt signed by someone else than the provider it accuses: signed, but not a
    // registered provider's.
    let mut proof = good.clone();
    proof.receipt = Signed::sign(&Keypair::from_seed(&[77; 32]), job.receipt.clone());
    assert!(matches!(
        ledger.prove(proof),
        Err(TxError::UnknownProvider(_))
    ));
    // A pre-state that is not the committed one.
    let mut proof = good.clone();
    if let Claim::Segment { pre, .. } = &mut proof.claim {
        pre.globals[0] ^= 1;
    }
    assert_eq!(fraud_error(ledger.prove(proof)), FraudError::NotCommitted);
    // A post-state the receipt never committed to.
    let mut proof = good.clone();
    if let Claim::Segment { post, .. } = &mut proof.claim {
        *post = Hash::of(b"elsewhere");
    }
    assert_eq!(fraud_error(ledger.prove(proof)), FraudError::NotCommitted);
    // Another module, another request.
    let mut proof = good.clone();
    proof.module.push(0);
    assert_eq!(fraud_error(ledger.prove(proof)), FraudError::WrongModule);
    let mut proof = good.clone();
    proof.request.body.body.fuel_limit -= 1;
    assert_eq!(fraud_error(ledger.prove(proof)), FraudError::WrongRequest);
    // A segment past the trace.
    let mut proof = good.clone();
    if let Claim::Segment { index, .. } = &mut proof.claim {
        *index = 5_000;
    }
    assert!(matches!(
        fraud_error(ledger.prove(proof)),
        FraudError::OutOfTrace { index: 5_000, .. }
    ));
    // Over the size limit: refused before anything is checked.
    let mut proof = good.clone();
    proof.module = vec![0; MAX_FRAUD_PROOF_BYTES];
    match ledger.prove(proof) {
        Err(TxError::TooLarge { limit, .. }) => assert_eq!(limit, MAX_FRAUD_PROOF_BYTES),
        other => panic!("an oversized proof: {other:?}"),
    }
    // Nothing of a refused proof was applied.
    assert_eq!(ledger.state, before);

    // Without an engine the proof cannot be judged, and is refused for that.
    let no_judge = Ledger {
        judge: Box::new(NoJudge),
        ..Ledger::new()?
    };
    let mut no_judge = no_judge;
    assert!(matches!(
        fraud_error(no_judge.prove(good.clone())),
        FraudError::Unjudgeable(_)
    ));
    // The good one goes through, and its size is within the limit with room to spare.
    let size = client_core::encoding::encode(&good).len();
    assert!(size < MAX_FRAUD_PROOF_BYTES / 4, "{size} bytes");
    ledger.prove(good)?;
    Ok(())
}

/// The strongest cheater sampling misses 91% of the time: refereed against an honest trace it
/// is named every time, wherever the forged step is, and the claim the referee builds from its
/// answers slashes it.
#[tokio::test]
async fn refereeing_catches_one_forged_step_at_every_position_tried() -> anyhow::Result<()> {
    let engine = JobEngine::new()?;
    let honest = sampled_hash_chain(&engine, INPUT)?;
    let steps = honest.states.len() as u64 - 1;
    // Positions spread over the trace by a fixed stride, plus both ends.
    let mut positions: Vec<u64> = (0..12).map(|i| 1 + (i * 337) % steps).collect();
    positions.extend([1, 2, steps - 1, steps]);
    positions.sort_unstable();
    positions.dedup();
    for at in &positions {
        let forged = forged_hash_chain(&engine, INPUT, *at)?;
        for liar in [Side::A, Side::B] {
            let pair = match liar {
                Side::A => [&forged, &honest],
                Side::B => [&honest, &forged],
            };
            let refereed = referee::referee(
                &forged.job,
                &forged.prepared,
                &forged.request.body.body,
                [&pair[0].receipt, &pair[1].receipt],
                &mut InMemory(pair),
            )
            .await?;
            let Refereed::Verdict {
                verdict: Verdict::Lied { liars, segment, .. },
                claims,
                ..
            } = refereed
            else {
                panic!("forged at {at}: {refereed:?}");
            };
            assert_eq!((liars, segment), (vec![liar], *at));
            let [(_, claim)] = claims.as_slice() else {
                panic!("one claim: {claims:?}");
            };
            let mut ledger = Ledger::new()?;
            ledger
                .prove(FraudProof {
                    receipt: signed_receipt(&forged.receipt),
                    request: forged.request.clone(),
                    module: module(),
                    claim: claim.clone(),
                })
                .map_err(|e| anyhow::anyhow!("forged at {at}: {e}"))?;
        }
    }
    eprintln!(
        "{} positions, each liar side: caught and slashed every time",
        positions.len()
    );
    Ok(())
}

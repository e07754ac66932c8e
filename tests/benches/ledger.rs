//! Ledger costs (criterion; `cargo xtask bench` runs it).
//!
//! - `ledger_apply`: a block of 1000 transfers from 1000 accounts — signature checks alone,
//!   the state machine with signature checks, and that plus the new state root.
//! - `ledger_proof`: verifying one proven read against a state of 10 000 accounts (natively;
//!   the browser's figure comes from the end-to-end benchmark).
//! - `block_production`: the relay making a block of 1000 transactions from its mempool,
//!   writing it to its database file with immediate durability.
//! - `governance`: 1000 votes from 1000 accounts on one proposal in a block (votes applied per
//!   second), and verifying a proposal's tally as the page does (one proven read).

use client_core::identity::Keypair;
use client_core::ledger::genesis::Balance;
use client_core::ledger::gov::{Action, Choice};
use client_core::ledger::merkle::{self, MemoryTree, verify_read};
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::{
    BlockContext, Genesis, SignedTx, StateKey, StateValue, Tx, TxKind, apply_all, apply_block,
    apply_verified,
};
use client_core::signed::Signed;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use node_relay::ledger::{Ledger, LedgerConfig, SoloValidator};
use std::hint::black_box;

const NET: &str = "aqueduct-bench";
const BLOCK_TXS: usize = 1000;

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            Keypair::from_seed(&seed)
        })
        .collect()
}

fn genesis(accounts: &[Keypair]) -> Genesis {
    let validator = Keypair::from_seed(&[200; 32]);
    let mut genesis = Genesis::dev(NET, validator.public(), 0);
    genesis.balances.extend(accounts.iter().map(|k| Balance {
        account: k.public(),
        amount: 1_000_000 * UNITS_PER_TOKEN,
    }));
    genesis
}

/// One transfer from each account (at `nonce`) to the next account.
fn transfers(accounts: &[Keypair], nonce: u64) -> Vec<SignedTx> {
    accounts
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let to = accounts[(i + 1) % accounts.len()].public();
            Signed::sign(
                from,
                Tx {
                    network_id: NET.into(),
                    nonce,
                    fee: 10_000,
                    kind: TxKind::Transfer { to, amount: 1 },
                },
            )
        })
        .collect()
}

fn apply(c: &mut Criterion) {
    let accounts = keys(BLOCK_TXS);
    let genesis = genesis(&accounts);
    let tree = MemoryTree::new();
    tree.commit(&genesis.initial_state()).expect("genesis");
    let txs = transfers(&accounts, 0);
    let ctx = BlockContext {
        network_id: NET.into(),
        height: 1,
        time_ms: 1,
    };

    let mut group = c.benchmark_group("ledger_apply");
    group.throughput(Throughput::Elements(BLOCK_TXS as u64));
    group.sample_size(20);
    group.bench_function("signature checks only", |b| {
        b.iter(|| {
            for tx in &txs {
                black_box(tx.verify().is_ok());
            }
        })
    });
    group.bench_function("state machine without signatures", |b| {
        b.iter(|| {
            for tx in &txs {
                black_box(apply_verified(&tree, &ctx, tx).is_ok());
            }
        })
    });
    group.bench_function("1000 transfers with signature checks", |b| {
        b.iter(|| {
            let (changes, outcomes) = apply_all(&tree, &ctx, &txs);
            assert!(outcomes.iter().all(Result::is_ok));
            black_box(changes)
        })
    });
    group.bench_function("1000 transfers, signatures and new state root", |b| {
        b.iter(|| {
            let (changes, _) = apply_all(&tree, &ctx, &txs);
            black_box(merkle::update(&tree, &changes, 1).expect("root"))
        })
    });
    group.finish();
}

fn proof(c: &mut Criterion) {
    let accounts = keys(10_000);
    let genesis = genesis(&accounts);
    let tree = MemoryTree::new();
    let (root, _) = tree.commit(&genesis.initial_state()).expect("genesis");
    let key = StateKey::Account(accounts[4321].public());
    let (value, proof) = merkle::prove(&tree, &key, 0).expect("prove");
    let absent = StateKey::Account(Keypair::from_seed(&[7; 32]).public());
    let (_, absence) = merkle::prove(&tree, &absent, 0).expect("prove");
    println!(
        "proof sizes over 10 000 accounts: inclusion {} bytes, non-inclusion {} bytes",
        proof.0.len(),
        absence.0.len()
    );
    let mut group = c.benchmark_group("ledger_proof");
    group.bench_function("verify inclusion (10k accounts)", |b| {
        b.iter(|| verify_read(&root, &key, value.as_ref(), &proof).expect("verifies"))
    });
    group.bench_function("verify non-inclusion (10k accounts)", |b| {
        b.iter(|| verify_read(&root, &absent, None, &absence).expect("verifies"))
    });
    group.finish();
}

fn production(c: &mut Criterion) {
    let accounts = keys(BLOCK_TXS);
    let genesis = genesis(&accounts);
    let dir = aqueduct_tests::temp_dir("bench-ledger");
    let validator = Keypair::from_seed(&[200; 32]);
    let config = LedgerConfig {
        max_block_txs: BLOCK_TXS,
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(
        &dir,
        &genesis,
        Box::new(SoloValidator::new(validator)),
        config,
    )
    .expect("ledger");
    let mut nonce = 0u64;
    let mut time = 1u64;
    let mut group = c.benchmark_group("block_production");
    group.throughput(Throughput::Elements(BLOCK_TXS as u64));
    group.sample_size(10);
    group.bench_function("block of 1000 transfers to disk", |b| {
        b.iter_batched(
            || {
                for tx in transfers(&accounts, nonce) {
                    ledger.submit(tx).expect("admitted");
                }
                nonce += 1;
                time += 1;
                time
            },
            |time| {
                let header = ledger
                    .produce_block(time, false)
                    .expect("produced")
                    .expect("a block");
                black_box(header)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    println!(
        "ledger database after {} blocks: {} bytes",
        nonce,
        node_relay::ledger::store::LedgerStore::file_size(&dir)
    );
    drop(ledger);
    let _ = std::fs::remove_dir_all(&dir);
}

fn governance(c: &mut Criterion) {
    let accounts = keys(BLOCK_TXS);
    let genesis = genesis(&accounts);
    let tree = MemoryTree::new();
    tree.commit(&genesis.initial_state()).expect("genesis");
    let ctx = |height| BlockContext {
        network_id: NET.into(),
        height,
        time_ms: height,
    };
    let sign = |from: &Keypair, nonce, kind| {
        Signed::sign(
            from,
            Tx {
                network_id: NET.into(),
                nonce,
                fee: 10_000,
                kind,
            },
        )
    };
    // Block 1: account 0 proposes; then empty blocks until voting starts.
    let propose = sign(
        &accounts[0],
        0,
        TxKind::Propose {
            title: "bench".into(),
            description: String::new(),
            action: Action::Text,
        },
    );
    let (changes, outcomes) = apply_block(&tree, &ctx(1), &[propose]);
    assert_eq!(outcomes, vec![Ok(())]);
    tree.commit(&changes).expect("commit");
    let start = genesis.params.gov.voting_delay_blocks + 1;
    for height in 2..start {
        let (changes, _) = apply_block(&tree, &ctx(height), &[]);
        tree.commit(&changes).expect("commit");
    }
    let votes: Vec<SignedTx> = accounts
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let choice = [Choice::For, Choice::Against, Choice::Abstain][i % 3];
            let nonce = u64::from(i == 0);
            sign(
                k,
                nonce,
                TxKind::Vote {
                    proposal: 0,
                    choice,
                },
            )
        })
        .collect();
    let at_start = ctx(start);
    let (changes, outcomes) = apply_all(&tree, &at_start, &votes);
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

    let mut group = c.benchmark_group("governance");
    group.throughput(Throughput::Elements(BLOCK_TXS as u64));
    group.sample_size(20);
    group.bench_function("1000 votes with signature checks", |b| {
        b.iter(|| black_box(apply_all(&tree, &at_start, &votes)))
    });
    group.finish();

    // The tally after those votes, proven and verified as the page verifies it.
    let (root, version) = tree.commit(&changes).expect("commit");
    let key = StateKey::Proposal(0);
    let (value, proof) = merkle::prove(&tree, &key, version).expect("prove");
    let Some(StateValue::Proposal(p)) = &value else {
        panic!("no proposal");
    };
    println!(
        "tally after 1000 votes: for {} against {} abstain {}; proof {} bytes",
        p.tally.for_power,
        p.tally.against_power,
        p.tally.abstain_power,
        proof.0.len()
    );
    let mut group = c.benchmark_group("governance");
    group.bench_function("verify a proposal's tally (one proven read)", |b| {
        b.iter(|| verify_read(&root, &key, value.as_ref(), &proof).expect("verifies"))
    });
    group.finish();
}

criterion_group!(benches, apply, proof, production, governance);
criterion_main!(benches);

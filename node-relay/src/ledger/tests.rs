//! The ledger with its real database file: production, restart, replay, mempool admission.

use super::mempool::{AdmitError, MempoolLimits};
use super::*;
use client_core::identity::Keypair;
use client_core::ledger::chain::Replica;
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::{StateRead, StateValue, Tx, TxError, TxKind};
use client_core::signed::Signed;

const NET: &str = "aqueduct-test";

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "aqueduct-ledger-{name}-{}-{}",
        std::process::id(),
        now_ms()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn tx(who: &Keypair, nonce: u64, kind: TxKind) -> SignedTx {
    Signed::sign(
        who,
        Tx {
            network_id: NET.into(),
            nonce,
            fee: 10_000,
            kind,
        },
    )
}

fn open(dir: &Path, limits: MempoolLimits) -> (Arc<Ledger>, Genesis) {
    let validator = key(100);
    let genesis = Genesis::dev(NET, validator.public(), 1_000);
    let ledger = Ledger::open(
        dir,
        &genesis,
        Box::new(SoloValidator::new(validator)),
        LedgerConfig {
            mempool: limits,
            ..LedgerConfig::default()
        },
    )
    .expect("open");
    (ledger, genesis)
}

fn balance(ledger: &Ledger, who: &Keypair) -> u64 {
    match ledger
        .snapshot()
        .expect("snapshot")
        .get(&StateKey::Account(who.public()))
    {
        Some(StateValue::Account(a)) => a.balance,
        _ => 0,
    }
}

#[test]
fn blocks_persist_and_replay_to_the_same_root() {
    let dir = temp_dir("persist");
    let (ledger, genesis) = open(&dir, MempoolLimits::default());
    let (alice, bob) = (key(1), key(2));
    ledger
        .submit(tx(&alice, 0, TxKind::Faucet))
        .expect("faucet");
    let first = ledger
        .produce_block(2_000, false)
        .expect("produce")
        .expect("a block");
    assert_eq!(first.height, 1);
    assert_eq!(first.prev, genesis.hash());
    for nonce in 1..=5 {
        ledger
            .submit(tx(
                &alice,
                nonce,
                TxKind::Transfer {
                    to: bob.public(),
                    amount: UNITS_PER_TOKEN,
                },
            ))
            .expect("transfer");
    }
    let second = ledger
        .produce_block(1_500, false)
        .expect("produce")
        .expect("a block");
    assert!(second.time_ms > first.time_ms, "block time never goes back");
    assert_eq!(second.prev, first.hash());
    assert_eq!(balance(&ledger, &bob), 5 * UNITS_PER_TOKEN);
    assert_eq!(ledger.pending(), 0, "everything was included");
    // Nothing waiting and no heartbeat due: no block.
    assert_eq!(ledger.produce_block(3_000, false).expect("produce"), None);
    let root = ledger
        .snapshot()
        .expect("snapshot")
        .state_root()
        .expect("root");
    assert_eq!(root, second.state_root);
    drop(ledger);

    // Reopened: same height, same root, same balances.
    let (ledger, _) = open(&dir, MempoolLimits::default());
    let snapshot = ledger.snapshot().expect("snapshot");
    assert_eq!(snapshot.height(), 2);
    assert_eq!(snapshot.state_root().expect("root"), root);
    assert_eq!(balance(&ledger, &bob), 5 * UNITS_PER_TOKEN);

    // Replaying the stored blocks from genesis reaches the same root.
    let blocks = ledger.blocks(1, 10).expect("blocks");
    let mut replica = Replica::new(&genesis).expect("replica");
    for block in &blocks {
        replica.apply_block(block).expect("replays");
    }
    assert_eq!(replica.state_root(), root);
    // A block whose time does not move forward is refused, even signed by the validator.
    let mut replica = Replica::new(&genesis).expect("replica");
    replica.apply_block(&blocks[0]).expect("replays");
    let mut late = blocks[1].clone();
    late.header.time_ms = blocks[0].header.time_ms;
    late.commit = Commit::signed_by(&[&key(100)], &late.header, 0);
    assert!(matches!(
        replica.apply_block(&late),
        Err(client_core::ledger::chain::ReplayError::Time { height: 2, .. })
    ));
    drop(snapshot);
    drop(ledger);

    // Another genesis refuses this database instead of overwriting it.
    let other = Genesis::dev("aqueduct-other", key(100).public(), 1_000);
    let refused = Ledger::open(
        &dir,
        &other,
        Box::new(SoloValidator::new(key(100))),
        LedgerConfig::default(),
    );
    let message = format!("{:#}", refused.err().expect("refused"));
    assert!(message.contains("belongs to network"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reads_come_with_proofs_the_light_client_accepts() {
    let dir = temp_dir("reads");
    let (ledger, genesis) = open(&dir, MempoolLimits::default());
    let keys = [StateKey::Account(key(1).public())];
    assert_eq!(ledger.read(&keys).expect("read"), None, "no block yet");
    ledger
        .submit(tx(&key(1), 0, TxKind::Faucet))
        .expect("faucet");
    ledger.produce_block(2_000, false).expect("produce");
    let answer = ledger.read(&keys).expect("read").expect("an answer");
    let mut light = client_core::ledger::light::LightClient::new(&genesis);
    let verified = light.verify(&keys, &answer).expect("verified");
    assert!(matches!(
        &verified.value[0],
        Some(StateValue::Account(a)) if a.balance == 1_000 * UNITS_PER_TOKEN - 10_000
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_mempool_refuses_what_cannot_apply_and_bounds_each_sender() {
    let dir = temp_dir("mempool");
    let (ledger, _) = open(
        &dir,
        MempoolLimits {
            max_txs: 6,
            max_bytes: 1 << 20,
            per_sender: 4,
        },
    );
    let (alice, rich) = (key(1), key(100));
    let to = alice.public();
    let transfer = |_nonce: u64| TxKind::Transfer { to, amount: 1 };

    let mut bad = tx(&rich, 0, transfer(0));
    bad.signature.0[5] ^= 1;
    assert_eq!(
        ledger.submit(bad),
        Err(AdmitError::Tx(TxError::BadSignature))
    );
    let mut elsewhere = tx(&rich, 0, transfer(0)).body;
    elsewhere.network_id = "elsewhere".into();
    assert!(matches!(
        ledger.submit(Signed::sign(&rich, elsewhere)),
        Err(AdmitError::Tx(TxError::WrongNetwork { .. }))
    ));
    let mut cheap = tx(&rich, 0, transfer(0)).body;
    cheap.fee = 0;
    assert!(matches!(
        ledger.submit(Signed::sign(&rich, cheap)),
        Err(AdmitError::Tx(TxError::FeeTooLow { .. }))
    ));
    assert!(matches!(
        ledger.submit(tx(&key(7), 0, transfer(0))),
        Err(AdmitError::Tx(TxError::InsufficientBalance { .. }))
    ));
    assert_eq!(
        ledger.submit(tx(&rich, 4, transfer(4))),
        Err(AdmitError::NonceTooFar { nonce: 4, next: 0 })
    );

    let first = tx(&rich, 0, transfer(0));
    ledger.submit(first.clone()).expect("admitted");
    assert_eq!(ledger.submit(first), Err(AdmitError::Duplicate));
    let mut same_nonce = tx(&rich, 0, transfer(0)).body;
    same_nonce.fee += 1;
    assert_eq!(
        ledger.submit(Signed::sign(&rich, same_nonce)),
        Err(AdmitError::NonceTaken(0))
    );
    // A fraud proof (up to 512 KiB, judged on admission) is never kept behind another
    // pending transaction, where it would not be checked.
    let receipt = Signed::sign(
        &key(3),
        client_core::job::Receipt {
            profile: 1,
            job: Hash::of(b"job"),
            customer: rich.public(),
            module: Hash::of(b"module"),
            input: Hash::of(b"input"),
            output: Hash::of(b"output"),
            fuel_used: 1,
            commitment: None,
            payment: None,
            completed_at_ms: 0,
        },
    );
    let request = Signed::sign(
        &rich,
        client_core::envelope::Request::new(
            NET,
            1,
            0,
            1_000,
            client_core::job::JobSpec {
                module: Hash::of(b"module"),
                input: b"input".to_vec(),
                fuel_limit: 1,
                max_steps: 1,
                payment: None,
            },
        ),
    );
    let proof = client_core::job::fraud::FraudProof {
        receipt,
        request,
        module: vec![0; 100_000],
        claim: client_core::job::fraud::Claim::Init {
            state: Hash::of(b"state"),
            proof: Vec::new(),
        },
    };
    let mut queued = tx(
        &rich,
        1,
        TxKind::FraudProof {
            proof: Box::new(proof),
        },
    )
    .body;
    queued.fee = 1_000_000;
    assert_eq!(
        ledger.submit(Signed::sign(&rich, queued)),
        Err(AdmitError::FraudProofQueued)
    );
    for nonce in 1..4 {
        ledger
            .submit(tx(&rich, nonce, transfer(nonce)))
            .expect("admitted");
    }
    // A faucet user and then the pool is full.
    ledger
        .submit(tx(&key(8), 0, TxKind::Faucet))
        .expect("faucet");
    ledger
        .submit(tx(&key(9), 0, TxKind::Faucet))
        .expect("faucet");
    assert_eq!(
        ledger.submit(tx(&key(10), 0, TxKind::Faucet)),
        Err(AdmitError::Full(6))
    );
    ledger.produce_block(2_000, false).expect("produce");
    assert_eq!(ledger.pending(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_transaction_is_dropped_with_its_successors_and_reported() {
    let dir = temp_dir("dropped");
    let (ledger, _) = open(&dir, MempoolLimits::default());
    let mut events = ledger.subscribe();
    let alice = key(1);
    // Alice has nothing: her faucet draw passes, then she tries to send more than she has,
    // then a transaction that would have been fine after it.
    ledger
        .submit(tx(&alice, 0, TxKind::Faucet))
        .expect("faucet");
    let too_much = tx(
        &alice,
        1,
        TxKind::Transfer {
            to: key(2).public(),
            amount: 2_000 * UNITS_PER_TOKEN,
        },
    );
    let too_much_id = client_core::ledger::tx::tx_id(&too_much);
    ledger
        .submit(too_much)
        .expect("admitted: the fee is affordable");
    let after = tx(
        &alice,
        2,
        TxKind::Transfer {
            to: key(2).public(),
            amount: 1,
        },
    );
    let after_id = client_core::ledger::tx::tx_id(&after);
    ledger.submit(after).expect("admitted");
    ledger.produce_block(2_000, false).expect("produce");
    let event = events.try_recv().expect("an event");
    assert_eq!(event.included.len(), 1);
    assert!(
        event
            .dropped
            .iter()
            .any(|(id, reason)| *id == too_much_id && reason.contains("insufficient"))
    );
    assert!(event.dropped.iter().any(|(id, _)| *id == after_id));
    assert_eq!(ledger.pending(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_that_no_block_could_take_is_admitted() {
    let dir = temp_dir("admission");
    let (ledger, _) = open(&dir, MempoolLimits::default());
    let (fresh, rich) = (key(20), key(100));
    let to = fresh.public();
    // A fresh key cannot park transactions ahead of its nonce.
    assert_eq!(
        ledger.submit(tx(&fresh, 3, TxKind::Faucet)),
        Err(AdmitError::NonceGap { nonce: 3, next: 0 })
    );
    // Nor pile up fees it cannot pay.
    let transfer = TxKind::Transfer {
        to: rich.public(),
        amount: 1,
    };
    assert!(matches!(
        ledger.submit(tx(&fresh, 0, transfer.clone())),
        Err(AdmitError::Tx(TxError::InsufficientBalance { .. }))
    ));
    // What the next block would refuse is refused now: a second faucet draw, a channel to
    // nobody, an invalid offer.
    ledger
        .submit(tx(&fresh, 0, TxKind::Faucet))
        .expect("faucet");
    ledger.produce_block(2_000, false).expect("block");
    assert_eq!(
        ledger.submit(tx(&fresh, 1, TxKind::Faucet)),
        Err(AdmitError::Tx(TxError::FaucetUsed))
    );
    assert_eq!(
        ledger.submit(tx(
            &fresh,
            1,
            TxKind::OpenChannel {
                provider: key(21).public(),
                amount: 1
            }
        )),
        Err(AdmitError::Tx(TxError::UnknownProvider(key(21).public())))
    );
    // Contiguous nonces are fine, and a gap after them is not.
    ledger
        .submit(tx(&rich, 0, TxKind::Transfer { to, amount: 1 }))
        .expect("0");
    ledger
        .submit(tx(&rich, 1, TxKind::Transfer { to, amount: 1 }))
        .expect("1");
    assert_eq!(
        ledger.submit(tx(&rich, 3, TxKind::Transfer { to, amount: 1 })),
        Err(AdmitError::NonceGap { nonce: 3, next: 2 })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The three steps across two relays: one builds and commits, the other checks the proposed
/// block on its own state, refuses every altered copy with its own error, and follows the
/// final block to the same state root.
#[test]
fn a_proposed_block_is_checked_by_re_execution_and_followed() {
    let (dir_a, dir_b) = (temp_dir("propose-a"), temp_dir("propose-b"));
    let (proposer, _) = open(&dir_a, MempoolLimits::default());
    let (follower, _) = open(&dir_b, MempoolLimits::default());
    let alice = key(1);
    proposer
        .submit(tx(&alice, 0, TxKind::Faucet))
        .expect("faucet");
    let built = proposer
        .build_block(20_000, false)
        .expect("build")
        .expect("a block");
    let header = built.header.clone();
    let txs = built.txs.clone();

    // The honest proposal checks out on the follower's state.
    follower
        .check_block(&header, &txs, 20_000)
        .expect("an honest proposal");
    // Each lie is refused with its own reason.
    let refused = |header: &Header, txs: &[SignedTx], now: u64| {
        follower
            .check_block(header, txs, now)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let mut wrong_root = header.clone();
    wrong_root.state_root.0[0] ^= 1;
    assert!(
        matches!(
            follower.check_block(&wrong_root, &txs, 20_000),
            Err(BlockRejected::Invalid(ReplayError::Root { .. }))
        ),
        "{}",
        refused(&wrong_root, &txs, 20_000)
    );
    let mut wrong_parent = header.clone();
    wrong_parent.prev.0[0] ^= 1;
    assert!(matches!(
        follower.check_block(&wrong_parent, &txs, 20_000),
        Err(BlockRejected::Invalid(ReplayError::Parent { height: 1 }))
    ));
    let mut wrong_set = header.clone();
    wrong_set.validators.0[0] ^= 1;
    assert!(matches!(
        follower.check_block(&wrong_set, &txs, 20_000),
        Err(BlockRejected::Invalid(ReplayError::Validators { .. }))
    ));
    assert!(matches!(
        follower.check_block(&header, &[], 20_000),
        Err(BlockRejected::Invalid(ReplayError::TxsRoot { height: 1 }))
    ));
    assert!(matches!(
        follower.check_block(&header, &txs, 20_000 - MAX_CLOCK_AHEAD_MS - 1_000),
        Err(BlockRejected::FromTheFuture { height: 1, .. })
    ));
    assert!(refused(&wrong_parent, &txs, 20_000).contains("parent"));

    // Final: committed by the proposer, followed by the other relay with its commit checked.
    let commit = Commit::signed_by(&[&key(100)], &header, 0);
    proposer
        .commit_block(built, commit.clone())
        .expect("commit");
    let block = proposer.blocks(1, 1).expect("blocks").remove(0);
    let mut unsigned = block.clone();
    unsigned.commit = Commit::signed_by(&[&key(7)], &header, 0);
    assert!(matches!(
        follower.apply_final(&unsigned, 20_000),
        Err(BlockRejected::Invalid(ReplayError::Commit {
            height: 1,
            ..
        }))
    ));
    follower.apply_final(&block, 20_000).expect("follows");
    assert_eq!(
        follower
            .snapshot()
            .expect("snapshot")
            .state_root()
            .expect("root"),
        header.state_root
    );
    assert_eq!(balance(&follower, &alice), balance(&proposer, &alice));
    // The same block again is not a next block.
    assert!(matches!(
        follower.apply_final(&block, 20_000),
        Err(BlockRejected::Invalid(ReplayError::Height { .. }))
    ));
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}

//! Validator sets from stake and the light client that follows them: elections at epoch ends,
//! blocks checked and replayed against the set the state names, certificates bound to their
//! round, a light client that follows set changes only through headers the old set signed,
//! keeps its state across reloads, never goes back, reports two signed headers at one height,
//! and reads several keys at one pinned height. Run natively and in headless Chromium.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::block::{Block, CommitError, txs_root};
use client_core::ledger::chain::{ReplayError, Replica};
use client_core::ledger::genesis::Balance;
use client_core::ledger::gov::ParamChange;
use client_core::ledger::light::{
    EpochChange, LightClient, ProvenRead, ProvenReads, ReadError, Trusted,
};
use client_core::ledger::merkle::{self, MemoryTree};
use client_core::ledger::state::{Offer, UNITS_PER_TOKEN, VerificationLevel};
use client_core::ledger::validators;
use client_core::ledger::{
    BlockContext, Commit, Genesis, Header, SignedTx, StateKey, StateValue, Tx, TxError, TxKind,
    ValidatorSet, apply_block,
};
use client_core::signed::Signed;

const NET: &str = "aqueduct-epochs";
const TOKEN: u64 = UNITS_PER_TOKEN;
const EPOCH: u64 = 5;

fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn offer() -> Offer {
    Offer {
        price_per_mfuel: 5,
        max_fuel: 1_000_000,
        concurrency: 1,
        levels: vec![VerificationLevel::Receipt],
        addrs: vec![],
        attributes: vec![],
    }
}

/// A chain made block by block in memory, each block signed by every key of the set its state
/// names — what honest validators do.
struct Chain {
    genesis: Genesis,
    tree: MemoryTree,
    keys: Vec<Keypair>,
    blocks: Vec<Block>,
    nonces: std::collections::BTreeMap<PublicKey, u64>,
}

impl Chain {
    /// Genesis validator: key 1. Funded: keys 1 to 9. At most four validators.
    fn new() -> Chain {
        Chain::with_count(4)
    }

    fn with_count(validator_count: u64) -> Chain {
        let mut genesis = Genesis::dev(NET, key(1).public(), 1_000);
        genesis.params.epoch_blocks = EPOCH;
        genesis.params.validator_count = validator_count;
        genesis.balances = (1..=9)
            .map(|n| Balance {
                account: key(n).public(),
                amount: 10_000 * TOKEN,
            })
            .collect();
        let tree = MemoryTree::new();
        tree.commit(&genesis.initial_state()).expect("genesis");
        Chain {
            genesis,
            tree,
            keys: (1..=9).map(key).collect(),
            blocks: Vec::new(),
            nonces: Default::default(),
        }
    }

    fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn set(&self) -> ValidatorSet {
        validators::current(&self.tree).expect("a set")
    }

    fn tx(&mut self, who: u8, kind: TxKind) -> SignedTx {
        let signer = key(who);
        let nonce = self.nonces.entry(signer.public()).or_insert(0);
        let tx = Signed::sign(
            &signer,
            Tx {
                network_id: NET.into(),
                nonce: *nonce,
                fee: 100_000,
                kind,
            },
        );
        *nonce += 1;
        tx
    }

    fn signers(&self, set: &ValidatorSet) -> Vec<&Keypair> {
        set.validators
            .iter()
            .map(|v| {
                self.keys
                    .iter()
                    .find(|k| k.public() == v.key)
                    .expect("a known key")
            })
            .collect()
    }

    fn produce(&mut self, txs: Vec<SignedTx>) -> Block {
        let height = self.height() + 1;
        let prev = match self.blocks.last() {
            Some(b) => b.header.hash(),
            None => self.genesis.hash(),
        };
        let time_ms = 1_000 + height * 1_000;
        let ctx = BlockContext {
            network_id: NET.into(),
            height,
            time_ms,
        };
        let signers = self.set();
        let (changes, outcomes) = apply_block(&self.tree, &ctx, &txs);
        for outcome in outcomes {
            outcome.expect("every transaction applies");
        }
        let next = match changes.get(&StateKey::Validators) {
            Some(Some(StateValue::Validators(set))) => set.hash(),
            _ => signers.hash(),
        };
        let (state_root, _) = self.tree.commit(&changes).expect("commit");
        let header = Header {
            network_id: NET.into(),
            height,
            prev,
            state_root,
            txs_root: txs_root(&txs),
            time_ms,
            validators: signers.hash(),
            next_validators: next,
        };
        let commit = Commit::signed_by(&self.signers(&signers), &header, 0);
        let block = Block {
            header,
            txs,
            commit,
        };
        self.blocks.push(block.clone());
        block
    }

    /// Empty blocks up to `height`.
    fn produce_to(&mut self, height: u64) {
        while self.height() < height {
            self.produce(Vec::new());
        }
    }

    fn prove(&self, keys: &[StateKey], height: u64) -> ProvenReads {
        let block = &self.blocks[(height - 1) as usize];
        ProvenReads {
            header: block.header.clone(),
            commit: block.commit.clone(),
            reads: keys
                .iter()
                .map(|k| {
                    let (value, proof) = merkle::prove(&self.tree, k, height).expect("prove");
                    ProvenRead {
                        key: k.clone(),
                        value,
                        proof,
                    }
                })
                .collect(),
        }
    }

    fn epoch_change(&self, height: u64) -> EpochChange {
        let block = &self.blocks[(height - 1) as usize];
        let next = match merkle::read(&self.tree, &StateKey::Validators, height) {
            Ok(Some(StateValue::Validators(set))) => set,
            other => panic!("no set at {height}: {other:?}"),
        };
        EpochChange {
            header: block.header.clone(),
            commit: block.commit.clone(),
            next,
        }
    }

    /// Keys 2 to 5 register with stakes 100, 200, 300, 400 and stand for the set; key 6
    /// registers with the largest stake but does not stand.
    fn stake_in(&mut self) {
        let mut txs = Vec::new();
        for (who, stake) in [(2u8, 100u64), (3, 200), (4, 300), (5, 400), (6, 900)] {
            txs.push(self.tx(
                who,
                TxKind::RegisterProvider {
                    stake: stake * TOKEN,
                    offer: offer(),
                },
            ));
            if who != 6 {
                txs.push(self.tx(who, TxKind::Candidacy { candidate: true }));
            }
        }
        self.produce(txs);
    }
}

fn keys_of(set: &ValidatorSet) -> Vec<PublicKey> {
    set.validators.iter().map(|v| v.key).collect()
}

#[test]
fn the_candidates_with_the_most_stake_validate_from_the_next_epoch() {
    let mut chain = Chain::new();
    chain.stake_in();
    let genesis_set = chain.genesis.validator_set();
    // Until the epoch's last block, the genesis set signs, and every header says so.
    chain.produce_to(EPOCH - 1);
    assert_eq!(chain.set(), genesis_set);
    assert!(
        chain
            .blocks
            .iter()
            .all(|b| b.header.next_validators == genesis_set.hash())
    );
    // The epoch's last block elects the four candidates; key 6, not standing, is left out.
    let boundary = chain.produce(Vec::new());
    let elected = chain.set();
    let mut expected: Vec<PublicKey> = (2..=5).map(|n| key(n).public()).collect();
    expected.sort();
    assert_eq!(keys_of(&elected), expected);
    assert_eq!(boundary.header.validators, genesis_set.hash());
    assert_eq!(boundary.header.next_validators, elected.hash());
    // Powers follow stake, capped at a third: 400 is lowered to 300 of 900.
    assert!(validators::within_cap(&elected));
    let power = |n: u8| elected.power_of(&key(n).public()).expect("a validator");
    assert_eq!(
        (power(2), power(3), power(4), power(5)),
        (100 * TOKEN, 200 * TOKEN, 300 * TOKEN, 300 * TOKEN)
    );
    // The next block is signed by the new set.
    let after = chain.produce(Vec::new());
    assert_eq!(after.header.validators, elected.hash());

    // A node replaying from genesis accepts the whole chain, re-checking every set.
    let mut replica = Replica::new(&chain.genesis).expect("replica");
    for block in &chain.blocks {
        replica.apply_block(block).expect("replays");
    }
    assert_eq!(replica.height(), EPOCH + 1);
}

#[test]
fn the_set_size_is_governed_and_an_empty_election_keeps_the_set() {
    let mut chain = Chain::with_count(2);
    chain.stake_in();
    chain.produce_to(EPOCH);
    let mut expected = vec![key(4).public(), key(5).public()];
    expected.sort();
    assert_eq!(keys_of(&chain.set()), expected);
    assert_eq!(
        ParamChange::parse("validator_count", 7),
        Some(ParamChange::ValidatorCount(7))
    );
    assert_eq!(
        ParamChange::parse("epoch_blocks", 50),
        Some(ParamChange::EpochBlocks(50))
    );

    // No candidate at all: the genesis set stays.
    let mut quiet = Chain::new();
    quiet.produce_to(2 * EPOCH);
    assert_eq!(quiet.set(), quiet.genesis.validator_set());
    assert!(
        quiet
            .blocks
            .iter()
            .all(|b| b.header.next_validators == b.header.validators)
    );
}

#[test]
fn candidacy_needs_an_active_provider() {
    let mut chain = Chain::new();
    let tx = chain.tx(7, TxKind::Candidacy { candidate: true });
    let ctx = BlockContext {
        network_id: NET.into(),
        height: 1,
        time_ms: 2_000,
    };
    assert_eq!(
        client_core::ledger::apply(&chain.tree, &ctx, &tx).err(),
        Some(TxError::UnknownProvider(key(7).public()))
    );
}

#[test]
fn replaying_refuses_blocks_that_misname_or_skip_the_set() {
    let mut chain = Chain::new();
    chain.stake_in();
    chain.produce_to(EPOCH + 1);
    let old = chain.genesis.validator_set();
    let old_keys = [&chain.keys[0]];

    // The epoch's last block claiming that the old set carries on, re-signed by the old set.
    let mut replica = Replica::new(&chain.genesis).expect("replica");
    for block in &chain.blocks[..(EPOCH - 1) as usize] {
        replica.apply_block(block).expect("replays");
    }
    let mut lying = chain.blocks[(EPOCH - 1) as usize].clone();
    lying.header.next_validators = old.hash();
    lying.commit = Commit::signed_by(&old_keys, &lying.header, 0);
    assert!(matches!(
        replica.apply_block(&lying),
        Err(ReplayError::NextValidators { .. })
    ));

    // After the change, a block signed by the old set is refused.
    let mut replica = Replica::new(&chain.genesis).expect("replica");
    for block in &chain.blocks[..EPOCH as usize] {
        replica.apply_block(block).expect("replays");
    }
    let mut stale_set = chain.blocks[EPOCH as usize].clone();
    stale_set.header.validators = old.hash();
    stale_set.commit = Commit::signed_by(&old_keys, &stale_set.header, 0);
    assert!(matches!(
        replica.apply_block(&stale_set),
        Err(ReplayError::Validators { .. })
    ));
    // A block whose state root does not match its transactions, re-signed by the right set.
    let mut wrong_root = chain.blocks[EPOCH as usize].clone();
    wrong_root.header.state_root = Hash([9; 32]);
    let set = chain.set();
    wrong_root.commit = Commit::signed_by(&chain.signers(&set), &wrong_root.header, 0);
    assert!(matches!(
        replica.apply_block(&wrong_root),
        Err(ReplayError::Root { .. })
    ));
    replica
        .apply_block(&chain.blocks[EPOCH as usize])
        .expect("the real block");
}

#[test]
fn the_light_client_follows_set_changes_signed_by_the_old_set() {
    let mut chain = Chain::new();
    chain.stake_in();
    chain.produce_to(EPOCH + 3);
    let keys = [StateKey::Account(key(9).public())];

    let mut light = LightClient::new(&chain.genesis);
    light
        .verify(&keys, &chain.prove(&keys, 2))
        .expect("height 2, genesis set");
    // An answer signed by the new set cannot be checked until the change is followed.
    let later = chain.prove(&keys, EPOCH + 2);
    assert!(matches!(
        light.verify(&keys, &later),
        Err(ReadError::UnknownSet { since: 2, .. })
    ));
    // A set change whose header is signed by the new set instead of the old one is refused.
    let mut forged = chain.epoch_change(EPOCH);
    let new = forged.next.clone();
    forged.commit = Commit::signed_by(&chain.signers(&new), &forged.header, 0);
    assert!(matches!(
        light.clone().follow(&forged),
        Err(ReadError::Commit(CommitError::NotAValidator(_)))
    ));
    // A change that hands over another set than the one its header names is refused.
    let mut swapped = chain.epoch_change(EPOCH);
    swapped.next = chain.genesis.validator_set();
    assert_eq!(
        light.clone().follow(&swapped),
        Err(ReadError::WrongSet { height: EPOCH })
    );
    // The genuine change: then the new set's answers verify.
    light.follow(&chain.epoch_change(EPOCH)).expect("follows");
    assert_eq!(light.validators(), &new);
    let verified = light.verify(&keys, &later).expect("verified");
    assert_eq!(verified.height, EPOCH + 2);

    // A client whose latest header is the epoch's last block learns the set from it too.
    let mut at_boundary = LightClient::new(&chain.genesis);
    at_boundary
        .verify(&keys, &chain.prove(&keys, EPOCH))
        .expect("the boundary itself is signed by the genesis set");
    assert!(matches!(
        at_boundary.verify(&keys, &later),
        Err(ReadError::UnknownSet { since: EPOCH, .. })
    ));
    at_boundary
        .follow(&chain.epoch_change(EPOCH))
        .expect("the same header");
    at_boundary.verify(&keys, &later).expect("verified");
}

#[test]
fn the_light_client_resumes_from_its_saved_state_and_never_goes_back() {
    let mut chain = Chain::new();
    chain.stake_in();
    chain.produce_to(EPOCH + 3);
    let keys = [StateKey::Account(key(9).public())];
    let mut light = LightClient::new(&chain.genesis);
    light.follow(&chain.epoch_change(EPOCH)).expect("follows");
    light
        .verify(&keys, &chain.prove(&keys, EPOCH + 2))
        .expect("verified");

    // Saved (as the page saves it in IndexedDB) and restored after a reload.
    let saved: Trusted = light.trusted().expect("a state");
    let bytes = client_core::encoding::encode(&saved);
    let back: Trusted = client_core::encoding::decode(&bytes, 1 << 20).expect("decodes");
    let mut reloaded = LightClient::restore(&chain.genesis, back).expect("restores");
    assert_eq!(reloaded.latest().map(|h| h.height), Some(EPOCH + 2));
    // An older header than the saved one is refused after the reload.
    assert_eq!(
        reloaded.verify(&keys, &chain.prove(&keys, EPOCH + 1)),
        Err(ReadError::Stale {
            latest: EPOCH + 2,
            got: EPOCH + 1
        })
    );
    // The same header again is fine; a newer one moves it on.
    reloaded
        .verify(&keys, &chain.prove(&keys, EPOCH + 2))
        .expect("same header");
    reloaded
        .verify(&keys, &chain.prove(&keys, EPOCH + 3))
        .expect("newer");
    // A saved state from another genesis is refused.
    let other = Genesis::dev("aqueduct-other", key(1).public(), 1_000);
    assert_eq!(
        LightClient::restore(&other, saved).err(),
        Some(ReadError::ForeignState)
    );
}

#[test]
fn two_signed_headers_at_one_height_are_reported_as_evidence() {
    let mut chain = Chain::new();
    chain.stake_in();
    chain.produce_to(EPOCH + 2);
    let keys = [StateKey::Account(key(9).public())];
    let mut light = LightClient::new(&chain.genesis);
    light.follow(&chain.epoch_change(EPOCH)).expect("follows");
    let honest = chain.prove(&keys, EPOCH + 2);
    light.verify(&keys, &honest).expect("verified");

    // The same set signs a second header at that height (another time, another root).
    let set = chain.set();
    let mut fork = honest.clone();
    fork.header.time_ms += 1;
    fork.commit = Commit::signed_by(&chain.signers(&set), &fork.header, 1);
    match light.verify(&keys, &fork) {
        Err(ReadError::Conflict { height, evidence }) => {
            assert_eq!(height, EPOCH + 2);
            assert_eq!(evidence.double_signers(), keys_of(&set));
        }
        other => panic!("expected evidence, got {other:?}"),
    }
    assert_eq!(light.evidence().len(), 1);
    // A second header that is not validly signed is just refused, not evidence.
    let mut unsigned = honest.clone();
    unsigned.header.time_ms += 2;
    assert!(matches!(
        light.verify(&keys, &unsigned),
        Err(ReadError::Commit(CommitError::BadSignature(_)))
    ));
    assert_eq!(light.evidence().len(), 1);
    // The honest header is still the latest.
    assert_eq!(light.latest(), Some(&honest.header));
}

#[test]
fn reads_pinned_to_one_height_never_mix_heights() {
    let mut chain = Chain::new();
    chain.stake_in();
    chain.produce_to(4);
    let list = [StateKey::Providers];
    let mut light = LightClient::new(&chain.genesis);
    let first = light.verify(&list, &chain.prove(&list, 3)).expect("list");
    // The entries, asked at the list's height: an answer at another height is refused.
    let entries = [StateKey::Provider(key(2).public())];
    assert_eq!(
        light.verify_at(first.height, &entries, &chain.prove(&entries, 4)),
        Err(ReadError::NotPinned { pinned: 3, got: 4 })
    );
    // Meanwhile the client saw height 4; an answer at the pinned height 3 still verifies
    // (signed by a set it trusts) and does not move its latest header back.
    light
        .verify(&list, &chain.prove(&list, 4))
        .expect("height 4");
    let pinned = light
        .verify_at(3, &entries, &chain.prove(&entries, 3))
        .expect("pinned read");
    assert_eq!(pinned.height, 3);
    assert_eq!(light.latest().map(|h| h.height), Some(4));
}

#[test]
fn a_transaction_is_proven_in_its_block_and_nowhere_else() {
    use client_core::ledger::block::txs_proof;
    use client_core::ledger::light::TxInclusion;
    use client_core::ledger::tx::tx_id;
    let mut chain = Chain::new();
    chain.stake_in();
    let block = chain.blocks[0].clone();
    let inclusion = |index: usize| TxInclusion {
        header: block.header.clone(),
        commit: block.commit.clone(),
        index: index as u32,
        count: block.txs.len() as u32,
        proof: txs_proof(&block.txs, index),
    };
    let mut light = LightClient::new(&chain.genesis);
    for (i, tx) in block.txs.iter().enumerate() {
        assert_eq!(light.verify_inclusion(&tx_id(tx), &inclusion(i)), Ok(1));
    }
    // Another transaction, or the right one at another place, is refused.
    let stranger = tx_id(&chain.tx(9, TxKind::Faucet));
    assert_eq!(
        light.verify_inclusion(&stranger, &inclusion(0)),
        Err(ReadError::NotIncluded { height: 1 })
    );
    let first = tx_id(&block.txs[0]);
    assert_eq!(
        light.verify_inclusion(&first, &inclusion(1)),
        Err(ReadError::NotIncluded { height: 1 })
    );
    let mut beyond = inclusion(0);
    beyond.index = beyond.count;
    assert!(light.verify_inclusion(&first, &beyond).is_err());
    // A header whose commit does not hold proves nothing.
    let mut forged = inclusion(0);
    forged.header.time_ms += 1;
    assert!(matches!(
        light.verify_inclusion(&first, &forged),
        Err(ReadError::Commit(_))
    ));
}

//! The ledger's state machine, commitment and light client: every transaction kind, every
//! refusal, and proofs that fail when anything is tampered with. Run natively and, by
//! `cargo xtask test`, compiled to wasm32 inside headless Chromium: the page's light client
//! is this code.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use client_core::encoding;
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::block::{CommitError, verify_commit};
use client_core::ledger::light::{LightClient, ProvenRead, ProvenReads, ReadError};
use client_core::ledger::merkle::{self, MemoryTree, ProofError, StateProof, verify_read};
use client_core::ledger::state::{
    Account, Channel, MAX_CHANNELS_PER_CUSTOMER, Offer, Provider, UNITS_PER_TOKEN,
    VerificationLevel,
};
use client_core::ledger::tx::{MAX_TX_BYTES, channel_id};
use client_core::ledger::{
    BlockContext, Changes, Commit, Genesis, Header, StateKey, StateRead, StateValue, Tx, TxError,
    TxKind, Voucher, apply, apply_verified,
};
use client_core::signed::Signed;

const NET: &str = "aqueduct-test";
const TOKEN: u64 = UNITS_PER_TOKEN;

fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn offer() -> Offer {
    Offer {
        price_per_mfuel: 5,
        max_fuel: 1_000_000_000,
        concurrency: 2,
        levels: vec![VerificationLevel::Receipt, VerificationLevel::Sampled],
        addrs: vec!["/ip4/127.0.0.1/udp/4001/webrtc-direct".into()],
        attributes: vec![("region".into(), "test".into())],
    }
}

/// A network in memory: one validator, a faucet, and a clock the test moves.
struct Net {
    genesis: Genesis,
    tree: MemoryTree,
    validator: Keypair,
    time_ms: u64,
    height: u64,
    prev: client_core::hash::Hash,
    last: Option<(Header, Commit)>,
}

impl Net {
    fn new() -> Net {
        let validator = key(100);
        let mut genesis = Genesis::dev(NET, validator.public(), 1_000);
        // These tests count the fees the treasury collects from zero.
        genesis.treasury = 0;
        genesis
            .balances
            .push(client_core::ledger::genesis::Balance {
                account: key(1).public(),
                amount: 10_000 * TOKEN,
            });
        let tree = MemoryTree::new();
        tree.commit(&genesis.initial_state())
            .expect("genesis commits");
        let prev = genesis.hash();
        Net {
            genesis,
            tree,
            validator,
            time_ms: 1_000,
            height: 0,
            prev,
            last: None,
        }
    }

    fn ctx(&self) -> BlockContext {
        BlockContext {
            network_id: NET.into(),
            height: self.height + 1,
            time_ms: self.time_ms,
        }
    }

    fn nonce(&self, who: &Keypair) -> u64 {
        self.account(&who.public()).nonce
    }

    fn account(&self, who: &PublicKey) -> Account {
        match self.tree.get(&StateKey::Account(*who)) {
            Some(StateValue::Account(a)) => a,
            _ => Account::default(),
        }
    }

    fn balance(&self, who: &Keypair) -> u64 {
        self.account(&who.public()).balance
    }

    fn sign(&self, who: &Keypair, kind: TxKind) -> Signed<Tx> {
        let fee = 10_000;
        Signed::sign(
            who,
            Tx {
                network_id: NET.into(),
                nonce: self.nonce(who),
                fee,
                kind,
            },
        )
    }

    /// Applies one signed transaction in a block of its own.
    fn submit_signed(&mut self, tx: &Signed<Tx>) -> Result<(), TxError> {
        let changes = apply(&self.tree, &self.ctx(), tx)?;
        self.commit_block(&changes);
        Ok(())
    }

    fn submit(&mut self, who: &Keypair, kind: TxKind) -> Result<(), TxError> {
        let tx = self.sign(who, kind);
        self.submit_signed(&tx)
    }

    fn commit_block(&mut self, changes: &Changes) {
        let (state_root, version) = self.tree.commit(changes).expect("commit");
        self.height = version;
        let header = Header {
            network_id: NET.into(),
            height: version,
            prev: self.prev,
            state_root,
            txs_root: client_core::ledger::block::txs_root(&[]),
            time_ms: self.time_ms,
            validators: self.genesis.validator_set().hash(),
            next_validators: self.genesis.validator_set().hash(),
        };
        let commit = Commit::signed_by(&[&self.validator], &header, 0);
        self.prev = header.hash();
        self.last = Some((header, commit));
    }

    fn channel(&self, id: &client_core::hash::Hash) -> Option<Channel> {
        match self.tree.get(&StateKey::Channel(*id)) {
            Some(StateValue::Channel(c)) => Some(c),
            _ => None,
        }
    }

    fn provider(&self, who: &Keypair) -> Option<Provider> {
        match self.tree.get(&StateKey::Provider(who.public())) {
            Some(StateValue::Provider(p)) => Some(p),
            _ => None,
        }
    }

    fn treasury(&self) -> u64 {
        match self.tree.get(&StateKey::Treasury) {
            Some(StateValue::Amount(a)) => a,
            _ => 0,
        }
    }

    fn prove(&self, keys: &[StateKey]) -> ProvenReads {
        let (header, commit) = self.last.clone().expect("a block");
        let reads = keys
            .iter()
            .map(|k| {
                let (value, proof) = merkle::prove(&self.tree, k, self.height).expect("prove");
                ProvenRead {
                    key: k.clone(),
                    value,
                    proof,
                }
            })
            .collect();
        ProvenReads {
            header,
            commit,
            reads,
        }
    }
}

fn voucher(
    customer: &Keypair,
    channel: client_core::hash::Hash,
    cumulative: u64,
) -> Signed<Voucher> {
    Signed::sign(
        customer,
        Voucher {
            network_id: NET.into(),
            channel,
            cumulative,
        },
    )
}

#[test]
fn transfer_moves_funds_charges_the_fee_and_bumps_the_nonce() {
    let mut net = Net::new();
    let (alice, bob) = (key(1), key(2));
    net.submit(
        &alice,
        TxKind::Transfer {
            to: bob.public(),
            amount: 5 * TOKEN,
        },
    )
    .expect("transfer");
    assert_eq!(net.balance(&alice), 10_000 * TOKEN - 5 * TOKEN - 10_000);
    assert_eq!(net.balance(&bob), 5 * TOKEN);
    assert_eq!(net.nonce(&alice), 1);
    assert_eq!(net.treasury(), 10_000);

    // Sending to oneself costs only the fee.
    net.submit(
        &alice,
        TxKind::Transfer {
            to: alice.public(),
            amount: TOKEN,
        },
    )
    .expect("self transfer");
    assert_eq!(net.balance(&alice), 10_000 * TOKEN - 5 * TOKEN - 20_000);
}

#[test]
fn envelope_refusals_change_nothing() {
    let mut net = Net::new();
    let (alice, bob) = (key(1), key(2));
    let to = bob.public();

    let mut bad_sig = net.sign(&alice, TxKind::Transfer { to, amount: 1 });
    bad_sig.signature.0[0] ^= 1;
    assert_eq!(net.submit_signed(&bad_sig), Err(TxError::BadSignature));

    let mut wrong_net = net.sign(&alice, TxKind::Transfer { to, amount: 1 });
    wrong_net.body.network_id = "elsewhere".into();
    let wrong_net = Signed::sign(&alice, wrong_net.body);
    assert!(matches!(
        net.submit_signed(&wrong_net),
        Err(TxError::WrongNetwork { .. })
    ));

    let mut body = net.sign(&alice, TxKind::Transfer { to, amount: 1 }).body;
    body.nonce = 7;
    assert_eq!(
        net.submit_signed(&Signed::sign(&alice, body.clone())),
        Err(TxError::WrongNonce {
            expected: 0,
            got: 7
        })
    );

    body.nonce = 0;
    body.fee = 1;
    assert!(matches!(
        net.submit_signed(&Signed::sign(&alice, body.clone())),
        Err(TxError::FeeTooLow { offered: 1, .. })
    ));

    // An account with nothing cannot pay the fee.
    assert!(matches!(
        net.submit(
            &bob,
            TxKind::Transfer {
                to: alice.public(),
                amount: 1
            }
        ),
        Err(TxError::InsufficientBalance { .. })
    ));
    assert!(matches!(
        net.submit(
            &alice,
            TxKind::Transfer {
                to,
                amount: 20_000 * TOKEN
            }
        ),
        Err(TxError::InsufficientBalance { .. })
    ));
    assert_eq!(
        net.submit(&alice, TxKind::Transfer { to, amount: 0 }),
        Err(TxError::ZeroAmount)
    );

    let huge = net.sign(
        &alice,
        TxKind::UpdateOffer {
            offer: Offer {
                attributes: vec![("x".into(), "y".repeat(MAX_TX_BYTES))],
                ..offer()
            },
        },
    );
    assert!(matches!(
        net.submit_signed(&huge),
        Err(TxError::TooLarge { .. })
    ));

    // None of that moved anything.
    assert_eq!(net.balance(&alice), 10_000 * TOKEN);
    assert_eq!(net.nonce(&alice), 0);
    assert_eq!(net.treasury(), 0);
    assert_eq!(net.height, 0);
}

#[test]
fn the_faucet_pays_once_and_only_where_enabled() {
    let mut net = Net::new();
    let newcomer = key(3);
    net.submit(&newcomer, TxKind::Faucet).expect("faucet");
    assert_eq!(net.balance(&newcomer), 1_000 * TOKEN - 10_000);
    assert_eq!(net.treasury(), 10_000);
    assert_eq!(
        net.submit(&newcomer, TxKind::Faucet),
        Err(TxError::FaucetUsed)
    );

    // A fee above the faucet amount cannot be paid out of it.
    let other = key(4);
    let mut tx = net.sign(&other, TxKind::Faucet).body;
    tx.fee = 1_000 * TOKEN + 1;
    assert_eq!(
        net.submit_signed(&Signed::sign(&other, tx)),
        Err(TxError::FaucetBelowFee)
    );

    // A network without a faucet.
    let mut net = Net::new();
    let mut genesis = net.genesis.clone();
    genesis.params.faucet_amount = None;
    net.tree = MemoryTree::new();
    net.tree.commit(&genesis.initial_state()).expect("genesis");
    assert_eq!(
        net.submit(&newcomer, TxKind::Faucet),
        Err(TxError::FaucetDisabled)
    );
}

#[test]
fn providers_register_update_unbond_and_withdraw() {
    let mut net = Net::new();
    let provider = key(1);
    let stake = 200 * TOKEN;

    assert!(matches!(
        net.submit(
            &provider,
            TxKind::RegisterProvider {
                stake: TOKEN,
                offer: offer()
            }
        ),
        Err(TxError::StakeTooLow { .. })
    ));
    let mut bad = offer();
    bad.levels.clear();
    assert!(matches!(
        net.submit(
            &provider,
            TxKind::RegisterProvider {
                stake,
                offer: bad.clone()
            }
        ),
        Err(TxError::InvalidOffer(_))
    ));
    assert_eq!(
        net.submit(&provider, TxKind::UpdateOffer { offer: offer() }),
        Err(TxError::UnknownProvider(provider.public()))
    );
    assert_eq!(
        net.submit(&provider, TxKind::Unbond),
        Err(TxError::UnknownProvider(provider.public()))
    );

    net.submit(
        &provider,
        TxKind::RegisterProvider {
            stake,
            offer: offer(),
        },
    )
    .expect("register");
    assert_eq!(net.balance(&provider), 10_000 * TOKEN - stake - 10_000);
    assert_eq!(
        net.tree.get(&StateKey::Providers),
        Some(StateValue::Keys(vec![provider.public()]))
    );
    assert_eq!(
        net.submit(
            &provider,
            TxKind::RegisterProvider {
                stake,
                offer: offer()
            }
        ),
        Err(TxError::AlreadyProvider)
    );

    let mut dearer = offer();
    dearer.price_per_mfuel = 9;
    net.submit(
        &provider,
        TxKind::UpdateOffer {
            offer: dearer.clone(),
        },
    )
    .expect("update");
    assert_eq!(net.provider(&provider).map(|p| p.offer), Some(dearer));
    assert!(matches!(
        net.submit(&provider, TxKind::UpdateOffer { offer: bad }),
        Err(TxError::InvalidOffer(_))
    ));

    assert_eq!(
        net.submit(&provider, TxKind::Withdraw),
        Err(TxError::NotUnbonding)
    );
    net.submit(&provider, TxKind::Unbond).expect("unbond");
    assert_eq!(
        net.submit(&provider, TxKind::Unbond),
        Err(TxError::AlreadyUnbonding)
    );
    assert_eq!(
        net.submit(&provider, TxKind::UpdateOffer { offer: offer() }),
        Err(TxError::ProviderUnbonding)
    );
    // No new channels to a leaving provider.
    assert_eq!(
        net.submit(
            &key(100),
            TxKind::OpenChannel {
                provider: provider.public(),
                amount: TOKEN
            }
        ),
        Err(TxError::ProviderUnbonding)
    );
    assert!(matches!(
        net.submit(&provider, TxKind::Withdraw),
        Err(TxError::StillLocked { .. })
    ));
    net.time_ms += net.genesis.params.unbonding_delay_ms;
    let before = net.balance(&provider);
    net.submit(&provider, TxKind::Withdraw).expect("withdraw");
    assert_eq!(net.balance(&provider), before + stake - 10_000);
    assert_eq!(net.provider(&provider), None);
    assert_eq!(
        net.tree.get(&StateKey::Providers),
        Some(StateValue::Keys(vec![]))
    );
}

#[test]
fn channels_open_top_up_settle_and_close() {
    let mut net = Net::new();
    let (customer, provider, stranger) = (key(1), key(100), key(5));
    net.submit(
        &provider,
        TxKind::RegisterProvider {
            stake: 100 * TOKEN,
            offer: offer(),
        },
    )
    .expect("register");
    // The stranger can pay fees, so its refusals are about the channel.
    net.submit(
        &provider,
        TxKind::Transfer {
            to: stranger.public(),
            amount: TOKEN,
        },
    )
    .expect("fund the stranger");

    assert_eq!(
        net.submit(
            &customer,
            TxKind::OpenChannel {
                provider: customer.public(),
                amount: 1
            }
        ),
        Err(TxError::SelfChannel)
    );
    assert_eq!(
        net.submit(
            &customer,
            TxKind::OpenChannel {
                provider: stranger.public(),
                amount: 1
            }
        ),
        Err(TxError::UnknownProvider(stranger.public()))
    );
    assert_eq!(
        net.submit(
            &customer,
            TxKind::OpenChannel {
                provider: provider.public(),
                amount: 0
            }
        ),
        Err(TxError::ZeroAmount)
    );

    let nonce = net.nonce(&customer);
    net.submit(
        &customer,
        TxKind::OpenChannel {
            provider: provider.public(),
            amount: 10 * TOKEN,
        },
    )
    .expect("open");
    let id = channel_id(&customer.public(), nonce);
    let opened = net.channel(&id).expect("the channel exists");
    assert_eq!((opened.deposit, opened.settled), (10 * TOKEN, 0));
    assert_eq!(
        net.tree.get(&StateKey::CustomerChannels(customer.public())),
        Some(StateValue::Hashes(vec![id]))
    );

    net.time_ms += 1_000;
    net.submit(
        &customer,
        TxKind::TopUpChannel {
            channel: id,
            amount: 5 * TOKEN,
        },
    )
    .expect("top up");
    let topped = net.channel(&id).expect("channel");
    assert_eq!(topped.deposit, 15 * TOKEN);
    assert!(
        topped.expires_at_ms > opened.expires_at_ms,
        "a top-up extends the channel"
    );
    assert_eq!(
        net.submit(
            &stranger,
            TxKind::TopUpChannel {
                channel: id,
                amount: 1
            }
        ),
        Err(TxError::NotChannelParty { role: "customer" })
    );
    let unknown = client_core::hash::Hash([9; 32]);
    assert_eq!(
        net.submit(
            &customer,
            TxKind::TopUpChannel {
                channel: unknown,
                amount: 1
            }
        ),
        Err(TxError::UnknownChannel(unknown))
    );

    // Settling: the provider takes what the latest voucher says, once.
    let provider_before = net.balance(&provider);
    net.submit(
        &provider,
        TxKind::Settle {
            voucher: voucher(&customer, id, 3 * TOKEN),
        },
    )
    .expect("settle");
    assert_eq!(net.balance(&provider), provider_before + 3 * TOKEN - 10_000);
    assert_eq!(net.channel(&id).map(|c| c.settled), Some(3 * TOKEN));
    assert_eq!(
        net.submit(
            &provider,
            TxKind::Settle {
                voucher: voucher(&customer, id, 3 * TOKEN)
            }
        ),
        Err(TxError::StaleVoucher {
            settled: 3 * TOKEN,
            cumulative: 3 * TOKEN
        })
    );
    assert_eq!(
        net.submit(
            &provider,
            TxKind::Settle {
                voucher: voucher(&customer, id, 16 * TOKEN)
            }
        ),
        Err(TxError::VoucherExceedsDeposit {
            cumulative: 16 * TOKEN,
            deposit: 15 * TOKEN
        })
    );
    assert_eq!(
        net.submit(
            &provider,
            TxKind::Settle {
                voucher: voucher(&stranger, id, 4 * TOKEN)
            }
        ),
        Err(TxError::VoucherSignature)
    );
    let mut forged = voucher(&customer, id, 4 * TOKEN);
    forged.body.cumulative = 5 * TOKEN;
    assert_eq!(
        net.submit(&provider, TxKind::Settle { voucher: forged }),
        Err(TxError::VoucherSignature)
    );
    let mut elsewhere = voucher(&customer, id, 4 * TOKEN).body;
    elsewhere.network_id = "elsewhere".into();
    assert!(matches!(
        net.submit(
            &provider,
            TxKind::Settle {
                voucher: Signed::sign(&customer, elsewhere)
            }
        ),
        Err(TxError::VoucherNetwork { .. })
    ));
    assert_eq!(
        net.submit(
            &stranger,
            TxKind::Settle {
                voucher: voucher(&customer, id, 4 * TOKEN)
            }
        ),
        Err(TxError::NotChannelParty { role: "provider" })
    );
    net.submit(
        &provider,
        TxKind::Settle {
            voucher: voucher(&customer, id, 5 * TOKEN),
        },
    )
    .expect("a later voucher settles the difference");
    assert_eq!(net.balance(&provider), provider_before + 5 * TOKEN - 20_000);

    // Closing: only the customer, only after expiry; the rest goes back.
    assert!(matches!(
        net.submit(&customer, TxKind::CloseChannel { channel: id }),
        Err(TxError::ChannelNotExpired { .. })
    ));
    net.time_ms = topped.expires_at_ms;
    assert_eq!(
        net.submit(&provider, TxKind::CloseChannel { channel: id }),
        Err(TxError::NotChannelParty { role: "customer" })
    );
    let customer_before = net.balance(&customer);
    net.submit(&customer, TxKind::CloseChannel { channel: id })
        .expect("close");
    assert_eq!(
        net.balance(&customer),
        customer_before + 10 * TOKEN - 10_000
    );
    assert_eq!(net.channel(&id), None);
    assert_eq!(
        net.tree.get(&StateKey::CustomerChannels(customer.public())),
        None
    );
    assert_eq!(
        net.submit(
            &provider,
            TxKind::Settle {
                voucher: voucher(&customer, id, 6 * TOKEN)
            }
        ),
        Err(TxError::UnknownChannel(id))
    );
}

#[test]
fn a_customer_has_a_bounded_number_of_channels() {
    let mut net = Net::new();
    let (customer, provider) = (key(1), key(100));
    net.submit(
        &provider,
        TxKind::RegisterProvider {
            stake: 100 * TOKEN,
            offer: offer(),
        },
    )
    .expect("register");
    for _ in 0..MAX_CHANNELS_PER_CUSTOMER {
        net.submit(
            &customer,
            TxKind::OpenChannel {
                provider: provider.public(),
                amount: 1,
            },
        )
        .expect("open");
    }
    assert_eq!(
        net.submit(
            &customer,
            TxKind::OpenChannel {
                provider: provider.public(),
                amount: 1
            }
        ),
        Err(TxError::TooManyChannels {
            limit: MAX_CHANNELS_PER_CUSTOMER
        })
    );
}

#[test]
fn a_state_without_genesis_refuses_everything() {
    let tree = MemoryTree::new();
    let ctx = BlockContext {
        network_id: NET.into(),
        height: 1,
        time_ms: 0,
    };
    let tx = Signed::sign(
        &key(1),
        Tx {
            network_id: NET.into(),
            nonce: 0,
            fee: 1,
            kind: TxKind::Faucet,
        },
    );
    assert_eq!(apply_verified(&tree, &ctx, &tx), Err(TxError::NoGenesis));
}

#[test]
fn the_state_root_is_deterministic_and_moves_with_every_change() {
    let a = Net::new();
    let b = Net::new();
    let root = |n: &Net| merkle::root(&n.tree, n.height).expect("root");
    assert_eq!(root(&a), root(&b));
    let mut c = Net::new();
    c.submit(
        &key(1),
        TxKind::Transfer {
            to: key(2).public(),
            amount: 1,
        },
    )
    .expect("transfer");
    assert_ne!(root(&a), root(&c));
}

#[test]
fn proofs_verify_and_fail_when_tampered_with() {
    let mut net = Net::new();
    let (alice, nobody) = (key(1), key(77));
    net.submit(
        &alice,
        TxKind::Transfer {
            to: key(2).public(),
            amount: TOKEN,
        },
    )
    .expect("transfer");
    let present = StateKey::Account(alice.public());
    let absent = StateKey::Account(nobody.public());
    let answer = net.prove(&[present.clone(), absent.clone()]);
    let root = answer.header.state_root;
    let (have, missing) = (&answer.reads[0], &answer.reads[1]);
    assert!(have.value.is_some() && missing.value.is_none());

    // Inclusion and non-inclusion hold.
    verify_read(&root, &present, have.value.as_ref(), &have.proof).expect("inclusion");
    verify_read(&root, &absent, None, &missing.proof).expect("non-inclusion");

    // A tampered value.
    let mut richer = have.value.clone();
    if let Some(StateValue::Account(a)) = &mut richer {
        a.balance += 1;
    }
    assert!(matches!(
        verify_read(&root, &present, richer.as_ref(), &have.proof),
        Err(ProofError::Mismatch(_))
    ));
    // Hiding a value that exists.
    assert!(verify_read(&root, &present, None, &have.proof).is_err());
    // Inventing one that does not.
    assert!(
        verify_read(
            &root,
            &absent,
            Some(&StateValue::Account(Account::default())),
            &missing.proof
        )
        .is_err()
    );
    // A value of the wrong kind for its key.
    assert_eq!(
        verify_read(&root, &present, Some(&StateValue::Amount(1)), &have.proof),
        Err(ProofError::WrongKind)
    );
    // The proof of one key for another.
    assert!(
        verify_read(
            &root,
            &StateKey::Account(key(2).public()),
            have.value.as_ref(),
            &have.proof
        )
        .is_err()
    );
    // A different root.
    let mut other_root = root;
    other_root.0[0] ^= 1;
    assert!(verify_read(&other_root, &present, have.value.as_ref(), &have.proof).is_err());
    // Every single flipped byte of the proof is caught (or makes it unreadable).
    for i in 0..have.proof.0.len() {
        let mut bytes = have.proof.0.clone();
        bytes[i] ^= 0x40;
        assert!(
            verify_read(&root, &present, have.value.as_ref(), &StateProof(bytes)).is_err(),
            "flipping byte {i} of the proof went unnoticed"
        );
    }
    // Garbage and oversize.
    assert!(matches!(
        verify_read(
            &root,
            &present,
            have.value.as_ref(),
            &StateProof(vec![1, 2, 3])
        ),
        Err(ProofError::Malformed(_))
    ));
    assert!(matches!(
        verify_read(
            &root,
            &present,
            have.value.as_ref(),
            &StateProof(vec![0; merkle::MAX_PROOF_BYTES + 1])
        ),
        Err(ProofError::Malformed(_))
    ));
}

#[test]
fn the_light_client_believes_only_committed_headers() {
    let mut net = Net::new();
    let alice = key(1);
    net.submit(
        &alice,
        TxKind::Transfer {
            to: key(2).public(),
            amount: TOKEN,
        },
    )
    .expect("transfer");
    let keys = [StateKey::Account(alice.public())];
    let answer = net.prove(&keys);

    let mut light = LightClient::new(&net.genesis);
    let verified = light.verify(&keys, &answer).expect("verified");
    assert_eq!(verified.height, 1);
    assert!(
        matches!(&verified.value[0], Some(StateValue::Account(a)) if a.balance == net.balance(&alice))
    );
    assert_eq!(light.latest().map(|h| h.height), Some(1));

    // Signed by someone who is not a validator.
    let mut forged = answer.clone();
    forged.commit = Commit::signed_by(&[&key(9)], &forged.header, 0);
    assert_eq!(
        LightClient::new(&net.genesis).verify(&keys, &forged),
        Err(ReadError::Commit(CommitError::NotAValidator(
            key(9).public()
        )))
    );
    // No signatures at all.
    let mut unsigned = answer.clone();
    unsigned.commit.votes.clear();
    assert!(matches!(
        LightClient::new(&net.genesis).verify(&keys, &unsigned),
        Err(ReadError::Commit(CommitError::NotEnoughPower {
            signed: 0,
            total: 1
        }))
    ));
    // A header whose state root was swapped after signing.
    let mut swapped = answer.clone();
    swapped.header.state_root.0[3] ^= 1;
    assert_eq!(
        LightClient::new(&net.genesis).verify(&keys, &swapped),
        Err(ReadError::Commit(CommitError::BadSignature(
            net.validator.public()
        )))
    );
    // The same vote twice.
    let mut doubled = answer.clone();
    doubled.commit.votes.push(doubled.commit.votes[0].clone());
    assert_eq!(
        LightClient::new(&net.genesis).verify(&keys, &doubled),
        Err(ReadError::Commit(CommitError::DoubleVote(
            net.validator.public()
        )))
    );
    // A read left out.
    let mut partial = answer.clone();
    partial.reads.clear();
    assert_eq!(
        LightClient::new(&net.genesis).verify(&keys, &partial),
        Err(ReadError::Missing(keys[0].clone()))
    );
    // A tampered value under a genuine header.
    let mut lied = answer.clone();
    if let Some(StateValue::Account(a)) = &mut lied.reads[0].value {
        a.balance *= 2;
    }
    assert!(matches!(
        LightClient::new(&net.genesis).verify(&keys, &lied),
        Err(ReadError::Proof { .. })
    ));
    // Another network's genesis does not accept these headers.
    let other = Genesis::dev("aqueduct-other", net.validator.public(), 1_000);
    assert!(matches!(
        LightClient::new(&other).verify(&keys, &answer),
        Err(ReadError::Commit(CommitError::WrongNetwork { .. }))
    ));

    // Once height 2 is verified, an answer at height 1 is stale.
    net.submit(
        &alice,
        TxKind::Transfer {
            to: key(2).public(),
            amount: TOKEN,
        },
    )
    .expect("transfer");
    let newer = net.prove(&keys);
    light.verify(&keys, &newer).expect("newer");
    assert_eq!(
        light.verify(&keys, &answer),
        Err(ReadError::Stale { latest: 2, got: 1 })
    );
}

#[test]
fn two_thirds_of_the_power_is_needed() {
    let (a, b, c) = (key(11), key(12), key(13));
    let mut genesis = Genesis::dev(NET, a.public(), 0);
    genesis.validators = vec![
        client_core::ledger::Validator {
            key: a.public(),
            power: 1,
        },
        client_core::ledger::Validator {
            key: b.public(),
            power: 1,
        },
        client_core::ledger::Validator {
            key: c.public(),
            power: 1,
        },
    ];
    let set = genesis.validator_set();
    let header = Header {
        network_id: NET.into(),
        height: 5,
        prev: client_core::hash::Hash([0; 32]),
        state_root: client_core::hash::Hash([1; 32]),
        txs_root: client_core::hash::Hash([2; 32]),
        time_ms: 0,
        validators: set.hash(),
        next_validators: set.hash(),
    };
    let votes = |keys: &[&Keypair]| Commit::signed_by(keys, &header, 0);
    assert_eq!(
        verify_commit(&header, &votes(&[&a, &b]), &set, NET),
        Err(CommitError::NotEnoughPower {
            signed: 2,
            total: 3
        })
    );
    verify_commit(&header, &votes(&[&a, &b, &c]), &set, NET).expect("all three");
    let mut other_set = header.clone();
    other_set.validators = client_core::hash::Hash([0; 32]);
    assert!(matches!(
        verify_commit(&other_set, &votes(&[&a, &b, &c]), &set, NET),
        Err(CommitError::UnknownValidatorSet { .. })
    ));
    // Votes cast in round 0 moved to a certificate claiming round 1: the signatures are over
    // round 0's precommit, so none verifies.
    let mut moved = votes(&[&a, &b, &c]);
    moved.round = 1;
    assert_eq!(
        verify_commit(&header, &moved, &set, NET),
        Err(CommitError::BadSignature(a.public()))
    );
    verify_commit(
        &header,
        &Commit::signed_by(&[&a, &b, &c], &header, 1),
        &set,
        NET,
    )
    .expect("a certificate of round 1");
    // Votes from two rounds do not add up to one certificate.
    let mut mixed = Commit::signed_by(&[&a, &b], &header, 0);
    mixed.votes.push(Commit::vote(&c, &header, 1));
    assert_eq!(
        verify_commit(&header, &mixed, &set, NET),
        Err(CommitError::BadSignature(c.public()))
    );
}

#[test]
fn proofs_travel_in_their_encoding() {
    let net = Net::new();
    let (value, proof) = merkle::prove(&net.tree, &StateKey::Params, 0).expect("prove");
    let bytes = encoding::encode(&proof);
    let back: StateProof = encoding::decode(&bytes, 64 * 1024).expect("decode");
    let root = merkle::root(&net.tree, 0).expect("root");
    verify_read(&root, &StateKey::Params, value.as_ref(), &back)
        .expect("verifies after a round trip");
    assert!(matches!(value, Some(StateValue::Params(p)) if p == net.genesis.params));
}

#[test]
fn a_batch_with_one_bad_signature_refuses_exactly_that_one() {
    let net = Net::new();
    let alice = key(1);
    let mut txs: Vec<_> = (0..8)
        .map(|nonce| {
            Signed::sign(
                &alice,
                Tx {
                    network_id: NET.into(),
                    nonce,
                    fee: 10_000,
                    kind: TxKind::Transfer {
                        to: key(2).public(),
                        amount: 1,
                    },
                },
            )
        })
        .collect();
    let (_, outcomes) = client_core::ledger::apply_all(&net.tree, &net.ctx(), &txs);
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(
        client_core::ledger::apply::verify_signatures(&txs),
        vec![true; 8]
    );

    txs[5].signature.0[9] ^= 1;
    assert_eq!(
        client_core::ledger::apply::verify_signatures(&txs),
        [true, true, true, true, true, false, true, true]
    );
    let (_, outcomes) = client_core::ledger::apply_all(&net.tree, &net.ctx(), &txs);
    assert_eq!(outcomes[5], Err(TxError::BadSignature));
    // The ones after it now have a nonce gap.
    assert!(matches!(
        outcomes[6],
        Err(TxError::WrongNonce {
            expected: 5,
            got: 6
        })
    ));
    assert!(outcomes[..5].iter().all(Result::is_ok));
}

fn open_channel(customer: &Keypair, provider: &Keypair, deposit: u64, settled: u64) -> Channel {
    Channel {
        customer: customer.public(),
        provider: provider.public(),
        deposit,
        settled,
        expires_at_ms: 1_000_000,
    }
}

#[test]
fn a_job_voucher_must_pay_the_price_on_the_customers_channel() {
    use client_core::ledger::pay::{Payment, PaymentError, check_voucher, voucher_for};
    let (customer, provider, stranger) = (key(1), key(2), key(3));
    let id = channel_id(&customer.public(), 0);
    let channel = open_channel(&customer, &provider, 100, 10);
    let check = |v: &Signed<Voucher>, channel: Option<&Channel>, accepted: u64, now: u64| {
        check_voucher(
            v,
            NET,
            &customer.public(),
            &provider.public(),
            channel,
            accepted,
            7,
            now,
            1_000,
        )
    };
    // Built on what was settled: 10 + 7.
    let good = voucher_for(&customer, NET, id, 10, 7);
    assert_eq!(
        check(&good, Some(&channel), 0, 0),
        Ok(Payment {
            channel: id,
            cumulative: 17,
            price: 7
        })
    );
    // Built on what the provider already holds: 17 + 7 needed, 17 offered again.
    assert_eq!(
        check(&good, Some(&channel), 17, 0),
        Err(PaymentError::TooLow {
            cumulative: 17,
            accepted: 17,
            price: 7,
            needed: 24
        })
    );
    assert!(matches!(
        check(
            &voucher_for(&customer, NET, id, 10, 6),
            Some(&channel),
            0,
            0
        ),
        Err(PaymentError::TooLow { needed: 17, .. })
    ));
    // Signed by someone else, or for another network.
    assert_eq!(
        check(
            &voucher_for(&stranger, NET, id, 10, 7),
            Some(&channel),
            0,
            0
        ),
        Err(PaymentError::Signature)
    );
    let mut forged = good.clone();
    forged.body.cumulative = 90;
    assert_eq!(
        check(&forged, Some(&channel), 0, 0),
        Err(PaymentError::Signature)
    );
    assert!(matches!(
        check(
            &voucher_for(&customer, "other", id, 10, 7),
            Some(&channel),
            0,
            0
        ),
        Err(PaymentError::Network { .. })
    ));
    // Unknown channel, someone else's, over the deposit, or closing too soon to settle.
    assert_eq!(
        check(&good, None, 0, 0),
        Err(PaymentError::UnknownChannel(id))
    );
    let theirs = open_channel(&customer, &stranger, 100, 0);
    assert_eq!(
        check(&good, Some(&theirs), 0, 0),
        Err(PaymentError::NotYourChannel(id))
    );
    assert!(matches!(
        check(
            &voucher_for(&customer, NET, id, 95, 7),
            Some(&channel),
            0,
            0
        ),
        Err(PaymentError::OverDeposit {
            cumulative: 102,
            deposit: 100
        })
    ));
    assert!(matches!(
        check(&good, Some(&channel), 0, 999_500),
        Err(PaymentError::ExpiresTooSoon { .. })
    ));
}

#[test]
fn a_job_pays_from_the_channel_with_the_most_left() {
    use client_core::ledger::pay::{PickError, pick_channel};
    let (customer, provider, other) = (key(1), key(2), key(3));
    let (a, b, c) = (
        channel_id(&customer.public(), 0),
        channel_id(&customer.public(), 1),
        channel_id(&customer.public(), 2),
    );
    let channels = vec![
        (a, open_channel(&customer, &provider, 50, 0)),
        (b, open_channel(&customer, &provider, 80, 0)),
        (c, open_channel(&customer, &other, 500, 0)),
    ];
    // b has 80 left unless this browser already promised 60 of it.
    assert_eq!(
        pick_channel(&channels, &provider.public(), 10, |_| None),
        Ok((b, 0))
    );
    let promised = |id: &client_core::hash::Hash| (*id == b).then_some(60);
    assert_eq!(
        pick_channel(&channels, &provider.public(), 10, promised),
        Ok((a, 0))
    );
    assert_eq!(
        pick_channel(&channels, &provider.public(), 60, promised),
        Err(PickError::NotEnough {
            available: 50,
            price: 60
        })
    );
    assert_eq!(
        pick_channel(&channels, &key(4).public(), 1, |_| None),
        Err(PickError::NoChannel)
    );
}

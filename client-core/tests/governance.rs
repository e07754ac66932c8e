//! Governance in the state machine: every proposal state and transition, every refusal, voting
//! power taken when voting starts, delegation, changed votes, and passed proposals taking effect
//! by themselves (and only once). Run natively and, by `cargo xtask test`, in headless Chromium.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::genesis::Balance;
use client_core::ledger::gov::{
    Action, Choice, ParamChange, PowerHistory, Proposal, ProposalState, Tally,
};
use client_core::ledger::merkle::MemoryTree;
use client_core::ledger::state::{Offer, Params, UNITS_PER_TOKEN, VerificationLevel};
use client_core::ledger::{
    BlockContext, Genesis, SignedTx, StateKey, StateRead, StateValue, Tx, TxError, TxKind,
    apply_block,
};
use client_core::signed::Signed;

const NET: &str = "aqueduct-gov-test";
const TOKEN: u64 = UNITS_PER_TOKEN;
const FEE: u64 = 10_000;

fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

/// Three holders (600, 300 and 100 tokens), a treasury of 1000 tokens, and short windows:
/// voting starts 2 blocks after a proposal, lasts 5 blocks, a timelock of 3, a grace of 4.
struct Dao {
    tree: MemoryTree,
    height: u64,
    a: Keypair,
    b: Keypair,
    c: Keypair,
}

impl Dao {
    fn new() -> Dao {
        let (a, b, c) = (key(1), key(2), key(3));
        let mut genesis = Genesis::dev(NET, key(100).public(), 1_000);
        genesis.balances = [(&a, 600), (&b, 300), (&c, 100)]
            .into_iter()
            .map(|(k, tokens)| Balance {
                account: k.public(),
                amount: tokens * TOKEN,
            })
            .collect();
        genesis.treasury = 1_000 * TOKEN;
        genesis.params.gov.proposal_threshold = 100 * TOKEN;
        genesis.params.gov.quorum = 400 * TOKEN;
        genesis.params.gov.voting_delay_blocks = 2;
        genesis.params.gov.voting_period_blocks = 5;
        genesis.params.gov.timelock_blocks = 3;
        genesis.params.gov.grace_blocks = 4;
        genesis.check().expect("a valid genesis");
        let tree = MemoryTree::new();
        tree.commit(&genesis.initial_state()).expect("genesis");
        Dao {
            tree,
            height: 0,
            a,
            b,
            c,
        }
    }

    fn tx(&self, who: &Keypair, kind: TxKind) -> SignedTx {
        let nonce = match self.tree.get(&StateKey::Account(who.public())) {
            Some(StateValue::Account(a)) => a.nonce,
            _ => 0,
        };
        Signed::sign(
            who,
            Tx {
                network_id: NET.into(),
                nonce,
                fee: FEE,
                kind,
            },
        )
    }

    /// One block with these transactions (each from a different account); returns each
    /// outcome.
    fn block(&mut self, txs: Vec<SignedTx>) -> Vec<Result<(), TxError>> {
        let ctx = BlockContext {
            network_id: NET.into(),
            height: self.height + 1,
            time_ms: 1_000 + (self.height + 1) * 1_000,
        };
        let (changes, outcomes) = apply_block(&self.tree, &ctx, &txs);
        let (_, version) = self.tree.commit(&changes).expect("commit");
        self.height = version;
        outcomes
    }

    /// One transaction in a block of its own.
    fn send(&mut self, who: &Keypair, kind: TxKind) -> Result<(), TxError> {
        let tx = self.tx(who, kind);
        self.block(vec![tx]).remove(0)
    }

    fn skip_to(&mut self, height: u64) {
        while self.height < height {
            self.block(Vec::new());
        }
    }

    fn proposal(&self, id: u64) -> Proposal {
        match self.tree.get(&StateKey::Proposal(id)) {
            Some(StateValue::Proposal(p)) => p,
            other => panic!("no proposal {id}: {other:?}"),
        }
    }

    /// The proposal's state as the next block sees it.
    fn state(&self, id: u64) -> ProposalState {
        self.proposal(id).state(self.height + 1)
    }

    fn params(&self) -> Params {
        match self.tree.get(&StateKey::Params) {
            Some(StateValue::Params(p)) => p,
            _ => panic!("no params"),
        }
    }

    fn balance(&self, who: &PublicKey) -> u64 {
        match self.tree.get(&StateKey::Account(*who)) {
            Some(StateValue::Account(a)) => a.balance,
            _ => 0,
        }
    }

    fn treasury(&self) -> u64 {
        match self.tree.get(&StateKey::Treasury) {
            Some(StateValue::Amount(a)) => a,
            _ => 0,
        }
    }

    fn power(&self, who: &PublicKey) -> PowerHistory {
        match self.tree.get(&StateKey::Power(*who)) {
            Some(StateValue::Power(h)) => h,
            _ => PowerHistory::default(),
        }
    }

    fn propose(&mut self, who: &Keypair, action: Action) -> Result<u64, TxError> {
        let id = match self.tree.get(&StateKey::NextProposal) {
            Some(StateValue::Amount(n)) => n,
            _ => 0,
        };
        self.send(
            who,
            TxKind::Propose {
                title: format!("proposal {id}"),
                description: "why it matters".into(),
                action,
            },
        )?;
        Ok(id)
    }

    fn vote(&mut self, who: &Keypair, id: u64, choice: Choice) -> Result<(), TxError> {
        self.send(
            who,
            TxKind::Vote {
                proposal: id,
                choice,
            },
        )
    }
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

#[test]
fn a_passed_parameter_change_takes_effect_by_itself_once_and_is_enforced() {
    let mut dao = Dao::new();
    let (a, b, c) = (dao.a.clone(), dao.b.clone(), dao.c.clone());
    let id = dao
        .propose(&a, Action::Params(vec![ParamChange::MinStake(500 * TOKEN)]))
        .expect("a holds enough to propose");
    let p = dao.proposal(id);
    assert_eq!((p.created_height, p.start_height, p.end_height), (1, 3, 7));
    assert_eq!(dao.state(id), ProposalState::Pending);

    // Pending: no votes yet, and only the proposer could cancel.
    assert!(matches!(
        dao.vote(&b, id, Choice::For),
        Err(TxError::VotingClosed {
            state: "pending",
            ..
        })
    ));
    assert_eq!(
        dao.send(&b, TxKind::CancelProposal { proposal: id }),
        Err(TxError::NotProposer)
    );

    // Active (blocks 3 to 7; the refused attempts above took blocks 2 and 3 but changed
    // nothing): a (600 less its proposal fee) for, b (300) against, c (100) abstains.
    assert_eq!(dao.height, 3);
    assert_eq!(dao.state(id), ProposalState::Active);
    let votes = vec![
        dao.tx(
            &a,
            TxKind::Vote {
                proposal: id,
                choice: Choice::For,
            },
        ),
        dao.tx(
            &b,
            TxKind::Vote {
                proposal: id,
                choice: Choice::Against,
            },
        ),
        dao.tx(
            &c,
            TxKind::Vote {
                proposal: id,
                choice: Choice::Abstain,
            },
        ),
    ];
    assert_eq!(dao.block(votes), vec![Ok(()), Ok(()), Ok(())]);
    let tally = dao.proposal(id).tally;
    assert_eq!(
        tally,
        Tally {
            for_power: 600 * TOKEN - FEE,
            against_power: 300 * TOKEN,
            abstain_power: 100 * TOKEN,
        },
        "each counted with the power held before voting started"
    );
    let cancels = vec![
        dao.tx(&c, TxKind::CancelProposal { proposal: id }),
        dao.tx(&a, TxKind::CancelProposal { proposal: id }),
    ];
    let outcomes = dao.block(cancels);
    assert_eq!(outcomes[0], Err(TxError::NotProposer));
    assert!(matches!(
        outcomes[1],
        Err(TxError::NotPending {
            state: "active",
            ..
        })
    ));

    // Block 7 is the last of the vote; its end tallies: succeeded.
    dao.skip_to(7);
    assert_eq!(dao.state(id), ProposalState::Succeeded);
    assert!(matches!(
        dao.vote(&c, id, Choice::Against),
        Err(TxError::VotingClosed {
            state: "succeeded",
            ..
        })
    ));
    // The next block (8) queues it to run at 8 + 3 = 11; nothing has changed yet.
    assert_eq!(dao.state(id), ProposalState::Queued);
    assert_eq!(dao.params().min_stake, 100 * TOKEN);
    dao.skip_to(10);
    assert_eq!(dao.state(id), ProposalState::Queued);
    assert_eq!(dao.params().min_stake, 100 * TOKEN);
    dao.skip_to(11);
    assert_eq!(dao.state(id), ProposalState::Executed);
    assert_eq!(dao.params().min_stake, 500 * TOKEN);

    // Enforced: registering with the old minimum is refused, naming the new one.
    assert_eq!(
        dao.send(
            &a,
            TxKind::RegisterProvider {
                stake: 100 * TOKEN,
                offer: offer(),
            }
        ),
        Err(TxError::StakeTooLow {
            minimum: 500 * TOKEN,
            offered: 100 * TOKEN
        })
    );
    // Executed once: later blocks leave it (and the open list) alone.
    dao.skip_to(20);
    assert_eq!(dao.state(id), ProposalState::Executed);
    assert_eq!(
        dao.tree.get(&StateKey::OpenProposals),
        Some(StateValue::Ids(vec![]))
    );
}

#[test]
fn defeated_proposals_change_nothing() {
    // Against beats For.
    let mut dao = Dao::new();
    let (a, b, c) = (dao.a.clone(), dao.b.clone(), dao.c.clone());
    let id = dao
        .propose(&b, Action::Params(vec![ParamChange::BaseFee(5)]))
        .expect("propose");
    dao.skip_to(3);
    dao.vote(&b, id, Choice::For).expect("vote");
    dao.vote(&a, id, Choice::Against).expect("vote");
    dao.skip_to(7);
    assert_eq!(dao.state(id), ProposalState::Defeated);
    dao.skip_to(15);
    assert_eq!(dao.state(id), ProposalState::Defeated);
    assert_eq!(dao.params().base_fee, Params::dev().base_fee);

    // For wins but For + Abstain (300 + 100) stays below the quorum of 400.
    let id = dao.propose(&b, Action::Text).expect("propose");
    let start = dao.proposal(id).start_height;
    dao.skip_to(start - 1);
    dao.vote(&b, id, Choice::For).expect("vote");
    dao.vote(&c, id, Choice::Abstain).expect("vote");
    let p = dao.proposal(id);
    assert!(p.tally.for_power > p.tally.against_power);
    assert!(p.tally.quorum_power() < p.quorum);
    dao.skip_to(p.end_height);
    assert_eq!(dao.state(id), ProposalState::Defeated);
}

#[test]
fn power_is_taken_when_voting_starts_and_follows_delegation() {
    let mut dao = Dao::new();
    let (a, b, c) = (dao.a.clone(), dao.b.clone(), dao.c.clone());
    // c lends its power to b before the proposal.
    dao.send(
        &c,
        TxKind::Delegate {
            to: Some(b.public()),
        },
    )
    .expect("delegate");
    assert_eq!(
        dao.send(
            &c,
            TxKind::Delegate {
                to: Some(c.public())
            }
        ),
        Err(TxError::SelfDelegation)
    );
    let id = dao.propose(&a, Action::Text).expect("propose");
    let start = dao.proposal(id).start_height;
    dao.skip_to(start - 1);
    // In the first block of the vote a sends 500 tokens to b: too late to count for either.
    let moved = dao.tx(
        &a,
        TxKind::Transfer {
            to: b.public(),
            amount: 500 * TOKEN,
        },
    );
    assert_eq!(dao.block(vec![moved]), vec![Ok(())]);
    dao.vote(&b, id, Choice::For)
        .expect("b votes with its own and c's power");
    dao.vote(&a, id, Choice::Against).expect("a votes");
    assert_eq!(
        dao.vote(&c, id, Choice::For),
        Err(TxError::NoVotingPower(id)),
        "c's power went to b"
    );
    // b: its 300 plus c's 100 less the fee c paid to delegate; a: 600 less its proposal fee.
    let tally = dao.proposal(id).tally;
    assert_eq!(tally.for_power, (300 + 100) * TOKEN - FEE);
    assert_eq!(tally.against_power, 600 * TOKEN - FEE);

    // A changed vote replaces the first: b now abstains, and counts once.
    dao.vote(&b, id, Choice::Abstain)
        .expect("b changes its vote");
    let tally = dao.proposal(id).tally;
    assert_eq!(tally.for_power, 0);
    assert_eq!(tally.abstain_power, (300 + 100) * TOKEN - FEE);

    // Now: b holds its own 800 tokens (less fees) plus c's delegated balance.
    let b_now = dao.balance(&b.public()) + dao.balance(&c.public());
    assert_eq!(dao.power(&b.public()).current(), b_now);
    // Taking the delegation back returns c's power to c.
    dao.send(&c, TxKind::Delegate { to: None })
        .expect("undelegate");
    assert_eq!(dao.power(&c.public()).current(), dao.balance(&c.public()));
    assert_eq!(dao.power(&b.public()).current(), dao.balance(&b.public()));
}

#[test]
fn proposals_are_checked_and_can_be_canceled_while_pending() {
    let mut dao = Dao::new();
    let (a, c) = (dao.a.clone(), dao.c.clone());
    // c has 100 tokens less a fee: below the threshold of 100.
    dao.send(
        &c,
        TxKind::Transfer {
            to: a.public(),
            amount: 1,
        },
    )
    .expect("transfer");
    assert!(matches!(
        dao.propose(&c, Action::Text),
        Err(TxError::BelowProposalThreshold { .. })
    ));
    for bad in [
        Action::Params(vec![]),
        Action::Params(vec![ParamChange::VotingPeriodBlocks(0)]),
        Action::Params(vec![ParamChange::Quorum(0)]),
        Action::Params(vec![ParamChange::SlashFractionBps(10_001)]),
        Action::Params(vec![ParamChange::BaseFee(1), ParamChange::BaseFee(2)]),
        Action::Grant {
            to: c.public(),
            amount: 0,
        },
    ] {
        assert!(
            matches!(
                dao.propose(&a, bad.clone()),
                Err(TxError::InvalidProposal(_))
            ),
            "{bad:?}"
        );
    }
    let untitled = dao.tx(
        &a,
        TxKind::Propose {
            title: " ".into(),
            description: String::new(),
            action: Action::Text,
        },
    );
    assert!(matches!(
        dao.block(vec![untitled]).remove(0),
        Err(TxError::InvalidProposal(_))
    ));
    assert!(matches!(
        dao.vote(&a, 99, Choice::For),
        Err(TxError::UnknownProposal(99))
    ));

    let id = dao.propose(&a, Action::Text).expect("propose");
    dao.send(&a, TxKind::CancelProposal { proposal: id })
        .expect("the proposer cancels while pending");
    assert_eq!(dao.state(id), ProposalState::Canceled);
    assert!(matches!(
        dao.vote(&a, id, Choice::For),
        Err(TxError::VotingClosed {
            state: "canceled",
            ..
        })
    ));
    dao.skip_to(30);
    assert_eq!(dao.state(id), ProposalState::Canceled);
}

#[test]
fn a_grant_is_paid_once_from_the_treasury_and_expires_if_it_cannot_be() {
    let mut dao = Dao::new();
    let (a, b, c) = (dao.a.clone(), dao.b.clone(), dao.c.clone());
    let receiver = key(9).public();
    let paid = dao
        .propose(
            &a,
            Action::Grant {
                to: receiver,
                amount: 250 * TOKEN,
            },
        )
        .expect("propose");
    let too_big = dao
        .propose(
            &b,
            Action::Grant {
                to: receiver,
                amount: 5_000 * TOKEN,
            },
        )
        .expect("propose");
    dao.skip_to(dao.proposal(too_big).start_height - 1);
    dao.vote(&a, paid, Choice::For).expect("vote");
    dao.vote(&a, too_big, Choice::For).expect("vote");
    dao.vote(&c, too_big, Choice::For).expect("vote");
    let treasury_before = dao.treasury();
    let executes_at = dao.proposal(paid).end_height + 1 + 3;
    dao.skip_to(executes_at);
    assert_eq!(dao.state(paid), ProposalState::Executed);
    assert_eq!(dao.balance(&receiver), 250 * TOKEN);
    assert_eq!(dao.treasury(), treasury_before - 250 * TOKEN);
    assert_eq!(dao.power(&receiver).current(), 250 * TOKEN, "power follows");

    // The treasury cannot pay 5000: retried each block through the grace period, then expired.
    let eta = dao.proposal(too_big).end_height + 1 + 3;
    dao.skip_to(eta + 3);
    assert_eq!(dao.state(too_big), ProposalState::Queued);
    dao.skip_to(eta + 4);
    assert_eq!(dao.state(too_big), ProposalState::Expired);
    dao.skip_to(eta + 10);
    assert_eq!(
        dao.balance(&receiver),
        250 * TOKEN,
        "paid once, and only the one"
    );
    assert_eq!(dao.treasury(), treasury_before - 250 * TOKEN);
}

#[test]
fn power_histories_keep_only_what_open_proposals_can_ask_for() {
    let mut dao = Dao::new();
    let (a, b) = (dao.a.clone(), dao.b.clone());
    let id = dao.propose(&a, Action::Text).expect("propose");
    let start = dao.proposal(id).start_height;
    // Blocks 2 to 5 change b's balance: the entry before the start (block 2) and each one
    // after it are kept while the vote is open; genesis' entry is not needed any more.
    for _ in 0..4 {
        dao.send(
            &b,
            TxKind::Transfer {
                to: a.public(),
                amount: TOKEN,
            },
        )
        .expect("transfer");
    }
    let during: Vec<u64> = dao.power(&b.public()).0.iter().map(|(h, _)| *h).collect();
    assert_eq!(during, vec![2, 3, 4, 5]);
    assert_eq!(
        dao.power(&b.public()).before(start),
        300 * TOKEN - TOKEN - FEE,
        "the start's power is still answered (the first transfer came before the start)"
    );
    // Once nothing is open, the next change keeps a single entry.
    dao.skip_to(dao.proposal(id).end_height + 1);
    dao.send(
        &b,
        TxKind::Transfer {
            to: a.public(),
            amount: TOKEN,
        },
    )
    .expect("transfer");
    assert_eq!(dao.power(&b.public()).0.len(), 1);
    assert_eq!(dao.power(&b.public()).current(), dao.balance(&b.public()));
}

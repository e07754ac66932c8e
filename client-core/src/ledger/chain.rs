//! Following a chain: checking blocks one after another from genesis and re-applying their
//! transactions, so that a node (or an auditor) arrives at the same state root by itself.

use super::apply::{Changes, apply_block_judged};
use super::block::{Block, CommitError, Header, txs_root, verify_commit};
use super::genesis::Genesis;
use super::merkle::{MemoryTree, TreeError};
use super::tx::{SignedTx, TxError};
use super::validators;
use super::{BlockContext, StateKey, StateRead, StateValue};
use crate::hash::Hash;
use crate::job::fraud::{Judge, NoJudge};

/// Why a block was not accepted: as a proposal to vote for, or as a block to follow.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("block {height}: {error}")]
    Commit { height: u64, error: CommitError },
    #[error("block {height} is for network {got:?}, not {expected:?}")]
    Network {
        height: u64,
        expected: String,
        got: String,
    },
    #[error("block {height} comes after height {previous}")]
    Height { height: u64, previous: u64 },
    #[error("block {height} does not name the previous block as its parent")]
    Parent { height: u64 },
    #[error("block {height} has time {time_ms}, not after its parent's {previous_ms}")]
    Time {
        height: u64,
        time_ms: u64,
        previous_ms: u64,
    },
    #[error("block {height} names validator set {got}, the set that signs it is {expected}")]
    Validators {
        height: u64,
        expected: Hash,
        got: Hash,
    },
    #[error("block {height} names next validator set {got}, its state elects {expected}")]
    NextValidators {
        height: u64,
        expected: Hash,
        got: Hash,
    },
    #[error("block {height}: the transactions do not match the header's transactions root")]
    TxsRoot { height: u64 },
    #[error("block {height} holds {got} transactions, more than {limit}")]
    TooManyTxs {
        height: u64,
        got: usize,
        limit: usize,
    },
    #[error("block {height}, transaction {index}: {error}")]
    Tx {
        height: u64,
        index: usize,
        error: TxError,
    },
    #[error("block {height} claims state root {claimed}, replaying it gives {computed}")]
    Root {
        height: u64,
        claimed: Hash,
        computed: Hash,
    },
    #[error("the state could not be read while checking block {height}")]
    StateUnreadable { height: u64 },
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// What a block builds on: its parent's height, hash and time (the genesis for block 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    pub height: u64,
    pub hash: Hash,
    pub time_ms: u64,
}

impl Tip {
    pub fn genesis(genesis: &Genesis) -> Self {
        Tip {
            height: 0,
            hash: genesis.hash(),
            time_ms: genesis.time_ms,
        }
    }

    pub fn of(header: &Header) -> Self {
        Tip {
            height: header.height,
            hash: header.hash(),
            time_ms: header.time_ms,
        }
    }
}

/// A block's transactions run on the state: the changes, and the set that signs the next block.
pub struct Executed {
    pub changes: Changes,
    pub next_validators: Hash,
}

/// Checks everything about a proposed `header` and `txs` that needs no re-execution: network,
/// height and parent, time after the parent's, the validator set that must sign it (the one
/// `state` holds), the transactions root and their number. `state` is the parent's state.
pub fn check_header(
    state: &(impl StateRead + ?Sized),
    network_id: &str,
    tip: &Tip,
    header: &Header,
    txs: &[SignedTx],
    max_txs: usize,
) -> Result<(), ReplayError> {
    let height = header.height;
    if header.network_id != network_id {
        return Err(ReplayError::Network {
            height,
            expected: network_id.to_owned(),
            got: header.network_id.clone(),
        });
    }
    if height != tip.height + 1 {
        return Err(ReplayError::Height {
            height,
            previous: tip.height,
        });
    }
    if header.prev != tip.hash {
        return Err(ReplayError::Parent { height });
    }
    // Time moves forward: channel expiries and unbonding delays are measured by it.
    if header.time_ms <= tip.time_ms {
        return Err(ReplayError::Time {
            height,
            time_ms: header.time_ms,
            previous_ms: tip.time_ms,
        });
    }
    let signers = validators::current(state).ok_or(ReplayError::StateUnreadable { height })?;
    if header.validators != signers.hash() {
        return Err(ReplayError::Validators {
            height,
            expected: signers.hash(),
            got: header.validators,
        });
    }
    if txs.len() > max_txs {
        return Err(ReplayError::TooManyTxs {
            height,
            got: txs.len(),
            limit: max_txs,
        });
    }
    if txs_root(txs) != header.txs_root {
        return Err(ReplayError::TxsRoot { height });
    }
    Ok(())
}

/// Runs a block's transactions (every one must apply) and its end on the parent's `state`,
/// and checks the next set the header names. The caller computes the state root from the
/// changes in its own tree and compares it with the header's.
///
/// Fraud proofs are judged on `judge`'s engine.
pub fn execute_block(
    state: &(impl StateRead + ?Sized),
    header: &Header,
    txs: &[SignedTx],
    judge: &dyn Judge,
) -> Result<Executed, ReplayError> {
    let height = header.height;
    let ctx = BlockContext {
        network_id: header.network_id.clone(),
        height,
        time_ms: header.time_ms,
    };
    let (changes, outcomes) = apply_block_judged(state, &ctx, txs, judge);
    if let Some((index, Err(error))) = outcomes.into_iter().enumerate().find(|(_, o)| o.is_err()) {
        return Err(ReplayError::Tx {
            height,
            index,
            error,
        });
    }
    let next_validators = match changes.get(&StateKey::Validators) {
        Some(Some(StateValue::Validators(set))) => set.hash(),
        _ => header.validators,
    };
    if header.next_validators != next_validators {
        return Err(ReplayError::NextValidators {
            height,
            expected: next_validators,
            got: header.next_validators,
        });
    }
    Ok(Executed {
        changes,
        next_validators,
    })
}

/// The most transactions a block may hold.
pub const MAX_BLOCK_TXS: usize = 5_000;

/// A chain replayed in memory from its genesis.
pub struct Replica {
    genesis: Genesis,
    tree: MemoryTree,
    height: u64,
    tip: Hash,
    root: Hash,
    /// The latest block's time (the genesis time before the first block).
    time_ms: u64,
    judge: Box<dyn Judge + Send + Sync>,
}

impl Replica {
    pub fn new(genesis: &Genesis) -> Result<Self, ReplayError> {
        let tree = MemoryTree::new();
        let (root, _) = tree.commit(&genesis.initial_state())?;
        Ok(Replica {
            genesis: genesis.clone(),
            tree,
            height: 0,
            tip: genesis.hash(),
            root,
            time_ms: genesis.time_ms,
            judge: Box::new(NoJudge),
        })
    }

    /// Judges fraud proofs on this engine (without one, a block holding a fraud proof does not
    /// replay).
    pub fn with_judge(mut self, judge: Box<dyn Judge + Send + Sync>) -> Self {
        self.judge = judge;
        self
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn state_root(&self) -> Hash {
        self.root
    }

    pub fn state(&self) -> &impl StateRead {
        &self.tree
    }

    /// Checks `block` (the rules of [`check_header`], the commit of the set the state names),
    /// applies every transaction and checks the resulting state root against the header's.
    pub fn apply_block(&mut self, block: &Block) -> Result<(), ReplayError> {
        let height = block.header.height;
        let tip = Tip {
            height: self.height,
            hash: self.tip,
            time_ms: self.time_ms,
        };
        check_header(
            &self.tree,
            &self.genesis.network_id,
            &tip,
            &block.header,
            &block.txs,
            MAX_BLOCK_TXS,
        )?;
        let signers =
            validators::current(&self.tree).ok_or(ReplayError::StateUnreadable { height })?;
        verify_commit(
            &block.header,
            &block.commit,
            &signers,
            &self.genesis.network_id,
        )
        .map_err(|error| ReplayError::Commit { height, error })?;
        let executed = execute_block(&self.tree, &block.header, &block.txs, self.judge.as_ref())?;
        let (computed, _) = self.tree.commit(&executed.changes)?;
        if computed != block.header.state_root {
            return Err(ReplayError::Root {
                height,
                claimed: block.header.state_root,
                computed,
            });
        }
        self.height = height;
        self.tip = block.header.hash();
        self.root = computed;
        self.time_ms = block.header.time_ms;
        Ok(())
    }
}

//! Following a chain: checking blocks one after another from genesis and re-applying their
//! transactions, so that a node (or an auditor) arrives at the same state root by itself.

use super::apply::apply_block;
use super::block::{Block, CommitError, verify_block};
use super::genesis::Genesis;
use super::merkle::{MemoryTree, TreeError};
use super::tx::TxError;
use super::{BlockContext, StateRead};
use crate::hash::Hash;

/// Why a chain did not replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("block {height}: {error}")]
    Commit { height: u64, error: CommitError },
    #[error("block {height} comes after height {previous}")]
    Height { height: u64, previous: u64 },
    #[error("block {height} has time {time_ms}, not after its parent's {previous_ms}")]
    Time {
        height: u64,
        time_ms: u64,
        previous_ms: u64,
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
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// A chain replayed in memory from its genesis.
pub struct Replica {
    genesis: Genesis,
    tree: MemoryTree,
    height: u64,
    tip: Hash,
    root: Hash,
    /// The latest block's time (the genesis time before the first block).
    time_ms: u64,
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
        })
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

    /// Checks `block` (commit, link, transactions root, time after its parent's), applies every transaction and checks
    /// the resulting state root against the header's.
    pub fn apply_block(&mut self, block: &Block) -> Result<(), ReplayError> {
        let height = block.header.height;
        if height != self.height + 1 {
            return Err(ReplayError::Height {
                height,
                previous: self.height,
            });
        }
        verify_block(
            block,
            self.tip,
            &self.genesis.validator_set(),
            &self.genesis.network_id,
        )
        .map_err(|error| ReplayError::Commit { height, error })?;
        // Time moves forward: channel expiries and unbonding delays are measured by it.
        if block.header.time_ms <= self.time_ms {
            return Err(ReplayError::Time {
                height,
                time_ms: block.header.time_ms,
                previous_ms: self.time_ms,
            });
        }
        let ctx = BlockContext {
            network_id: self.genesis.network_id.clone(),
            height,
            time_ms: block.header.time_ms,
        };
        let (changes, outcomes) = apply_block(&self.tree, &ctx, &block.txs);
        if let Some((index, Err(error))) =
            outcomes.into_iter().enumerate().find(|(_, o)| o.is_err())
        {
            return Err(ReplayError::Tx {
                height,
                index,
                error,
            });
        }
        let (computed, _) = self.tree.commit(&changes)?;
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

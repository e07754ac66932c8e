//! `/aqueduct/ledger/1`: submitting transactions, proven state reads, headers and blocks.
//!
//! One request per stream. A `Submit` is answered with `Submitted` once the transaction is in
//! the relay's mempool, then with `Included` (the height of the block holding it) or `Dropped`
//! on the same stream; every other request gets one answer.

use super::block::Block;
use super::evidence::DoubleSign;
use super::genesis::Genesis;
use super::light::{EpochChange, ProvenReads, TxInclusion};
use super::state::StateKey;
use super::tx::SignedTx;
use crate::hash::Hash;
use borsh::{BorshDeserialize, BorshSerialize};

pub const LEDGER_PROTOCOL: &str = "/aqueduct/ledger/1";

/// The largest request frame: a transaction (a fraud proof is the largest) or a list of keys.
pub const MAX_LEDGER_REQUEST: usize = crate::job::fraud::MAX_FRAUD_PROOF_BYTES + 1024;
/// The largest answer frame (a batch of blocks).
pub const MAX_LEDGER_RESPONSE: usize = 8 * 1024 * 1024;
/// The most keys one read may ask for.
pub const MAX_READ_KEYS: usize = 64;
/// The most blocks one request may ask for.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 64;
/// The most epoch changes one answer carries.
pub const MAX_EPOCH_CHANGES: usize = 64;
/// The most double-sign proofs in one answer.
pub const MAX_MISBEHAVIOUR: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum LedgerRequest {
    /// The network's genesis.
    Genesis,
    /// Values of `keys` with proofs, at block `height` (the latest block when `None`), so
    /// that several reads can describe one state.
    Read {
        keys: Vec<StateKey>,
        height: Option<u64>,
    },
    Submit {
        tx: Box<SignedTx>,
    },
    /// Blocks from `from` on (headers, transactions, commits), for followers and audits.
    Blocks {
        from: u64,
        count: u32,
    },
    /// The epoch changes (blocks that elect a new validator set) at `from` or later, in order,
    /// at most [`MAX_EPOCH_CHANGES`]: what a light client needs to follow the set.
    Epochs {
        from: u64,
    },
    /// Where transaction `tx` is in block `height`, proven against its transactions root.
    TxProof {
        height: u64,
        tx: Hash,
    },
    /// Double-signing this relay has seen in consensus, as proof anyone can check
    /// ([`DoubleSign::check`]), at most [`MAX_MISBEHAVIOUR`].
    Misbehaviour,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum LedgerResponse {
    Genesis(Box<Genesis>),
    /// The answer to a read. `None` before the first block: there is no commit to prove against.
    Reads(Option<Box<ProvenReads>>),
    /// In the mempool, `pending` transactions ahead of it or beside it.
    Submitted {
        tx: Hash,
        pending: u32,
    },
    Included {
        tx: Hash,
        height: u64,
    },
    /// It was taken out of the mempool without being included (for instance because an earlier
    /// transaction of the same sender spent the balance it needed).
    Dropped {
        tx: Hash,
        reason: String,
    },
    Blocks(Vec<Block>),
    Epochs(Vec<EpochChange>),
    /// `None`: block `height` does not hold the transaction (or does not exist).
    TxProof(Option<Box<TxInclusion>>),
    /// The request was refused; `reason` says why in words a user can act on.
    Refused {
        reason: String,
    },
    Misbehaviour(Vec<DoubleSign>),
    /// The answer to a submission when no block included the transaction while the relay
    /// waited: it is still in the mempool. Submitting the same transaction again waits again
    /// (or is answered `Included` if a block took it in the meantime).
    StillPending {
        tx: Hash,
    },
}

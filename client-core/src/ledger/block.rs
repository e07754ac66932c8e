//! Blocks, their headers and commits, and what makes a header final: signatures of validators
//! holding more than two thirds of the voting power.

use super::tx::{SignedTx, tx_id};
use crate::hash::Hash;
use crate::identity::{PublicKey, Signature};
use crate::job::commit::Blake3;
use crate::signed::{Domain, Signed, signing_bytes};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A validator and its voting power.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Validator {
    #[serde(with = "super::account_text")]
    pub key: PublicKey,
    pub power: u64,
}

/// The validators whose signatures make a block final.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ValidatorSet {
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Named in every header, so a header says which set must have signed it.
    pub fn hash(&self) -> Hash {
        Hash::of_encoded(&("aqueduct/v1/validators", self))
    }

    pub fn total_power(&self) -> u64 {
        self.validators
            .iter()
            .fold(0u64, |sum, v| sum.saturating_add(v.power))
    }

    fn power_of(&self, key: &PublicKey) -> Option<u64> {
        self.validators
            .iter()
            .find(|v| v.key == *key)
            .map(|v| v.power)
    }
}

/// What validators sign: everything a light client needs to trust the state root.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Header {
    pub network_id: String,
    pub height: u64,
    /// The previous header's hash; for height 1, the genesis hash.
    pub prev: Hash,
    /// The Merkle root of the state after this block's transactions.
    pub state_root: Hash,
    /// The Merkle root of this block's transaction ids.
    pub txs_root: Hash,
    pub time_ms: u64,
    /// [`ValidatorSet::hash`] of the set that signs this block.
    pub validators: Hash,
}

impl Domain for Header {
    const TAG: &'static str = "aqueduct/v1/commit";
}

impl Header {
    pub fn hash(&self) -> Hash {
        Hash::of_encoded(self)
    }
}

/// One validator's signature over a header.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub validator: PublicKey,
    pub signature: Signature,
}

/// The votes that make a header final.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Commit {
    pub votes: Vec<Vote>,
}

impl Commit {
    /// One validator's vote for `header`.
    pub fn vote(keypair: &crate::identity::Keypair, header: &Header) -> Vote {
        let signed = Signed::sign(keypair, header.clone());
        Vote {
            validator: signed.signer,
            signature: signed.signature,
        }
    }
}

/// A block: its header, its transactions and the commit that makes it final.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<SignedTx>,
    pub commit: Commit,
}

/// The Merkle root (BLAKE3, rs_merkle) of transaction ids; all zeros for no transactions.
pub fn txs_root(txs: &[SignedTx]) -> Hash {
    let leaves: Vec<[u8; 32]> = txs.iter().map(|tx| tx_id(tx).0).collect();
    rs_merkle::MerkleTree::<Blake3>::from_leaves(&leaves)
        .root()
        .map(Hash)
        .unwrap_or(Hash([0; 32]))
}

/// Why a header or commit was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("the header is for network {got:?}, not {expected:?}")]
    WrongNetwork { expected: String, got: String },
    #[error("the header names validator set {got}, the known set is {expected}")]
    UnknownValidatorSet { expected: Hash, got: Hash },
    #[error("{0} signed but is not a validator")]
    NotAValidator(PublicKey),
    #[error("{0} signed twice")]
    DoubleVote(PublicKey),
    #[error("the signature of validator {0} does not verify")]
    BadSignature(PublicKey),
    #[error("only {signed} of {total} voting power signed; more than two thirds is needed")]
    NotEnoughPower { signed: u64, total: u64 },
    #[error("height {got} is not after the latest verified height {latest}")]
    NotNewer { latest: u64, got: u64 },
    #[error("block {height} does not follow the previous block")]
    BrokenChain { height: u64 },
    #[error("the transactions do not match the header's transactions root")]
    TxsRoot,
}

/// Checks that validators of `set` holding more than two thirds of its power signed `header`.
pub fn verify_commit(
    header: &Header,
    commit: &Commit,
    set: &ValidatorSet,
    network_id: &str,
) -> Result<(), CommitError> {
    if header.network_id != network_id {
        return Err(CommitError::WrongNetwork {
            expected: network_id.to_owned(),
            got: header.network_id.clone(),
        });
    }
    let expected = set.hash();
    if header.validators != expected {
        return Err(CommitError::UnknownValidatorSet {
            expected,
            got: header.validators,
        });
    }
    let bytes = signing_bytes(header);
    let mut seen = BTreeSet::new();
    let mut signed: u64 = 0;
    for vote in &commit.votes {
        let power = set
            .power_of(&vote.validator)
            .ok_or(CommitError::NotAValidator(vote.validator))?;
        if !seen.insert(vote.validator) {
            return Err(CommitError::DoubleVote(vote.validator));
        }
        let key = vote
            .validator
            .verifying_key()
            .ok_or(CommitError::BadSignature(vote.validator))?;
        key.verify_strict(
            &bytes,
            &ed25519_dalek::Signature::from_bytes(&vote.signature.0),
        )
        .map_err(|_| CommitError::BadSignature(vote.validator))?;
        signed = signed.saturating_add(power);
    }
    let total = set.total_power();
    if u128::from(signed) * 3 <= u128::from(total) * 2 {
        return Err(CommitError::NotEnoughPower { signed, total });
    }
    Ok(())
}

/// Checks a whole block as a follower would before applying it: the commit, the chain link to
/// `prev` and the transactions root.
pub fn verify_block(
    block: &Block,
    prev: Hash,
    set: &ValidatorSet,
    network_id: &str,
) -> Result<(), CommitError> {
    verify_commit(&block.header, &block.commit, set, network_id)?;
    if block.header.prev != prev {
        return Err(CommitError::BrokenChain {
            height: block.header.height,
        });
    }
    if txs_root(&block.txs) != block.header.txs_root {
        return Err(CommitError::TxsRoot);
    }
    Ok(())
}

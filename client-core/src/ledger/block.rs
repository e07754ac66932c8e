//! Blocks, their headers and commits, and what makes a header final: precommit signatures of
//! validators holding more than two thirds of the voting power, all for one round.
//!
//! A validator signs [`Precommit`] — network, height, round and the header's hash — under the
//! domain tag `aqueduct/v1/precommit`. The round is in the signed bytes because Tendermint's
//! safety rests on it: a vote for a value in one round says nothing about another round, so a
//! certificate cannot be moved to a round its votes were not cast in. Every signature is
//! checked with strict ed25519 verification, one at a time, the same way in the relay, the
//! consensus engine and the page: whether a commit is valid never depends on what else is in
//! the block.

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

    pub fn power_of(&self, key: &PublicKey) -> Option<u64> {
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
    /// [`ValidatorSet::hash`] of the set that signs the next block: the same as `validators`
    /// except at the last block of an epoch, whose state holds the new set.
    pub next_validators: Hash,
}

impl Header {
    pub fn hash(&self) -> Hash {
        Hash::of_encoded(&("aqueduct/v1/header", self))
    }
}

/// What a validator signs to commit a block: the header's hash at one height and round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Precommit {
    pub network_id: String,
    pub height: u64,
    pub round: u32,
    pub header: Hash,
}

impl Domain for Precommit {
    const TAG: &'static str = "aqueduct/v1/precommit";
}

/// One validator's precommit signature (the precommit itself follows from the commit).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub validator: PublicKey,
    pub signature: Signature,
}

/// The certificate that makes a header final: precommits of one round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Commit {
    pub round: u32,
    pub votes: Vec<Vote>,
}

impl Commit {
    /// The precommit the votes of this commit sign for `header`.
    pub fn precommit(header: &Header, round: u32) -> Precommit {
        Precommit {
            network_id: header.network_id.clone(),
            height: header.height,
            round,
            header: header.hash(),
        }
    }

    /// One validator's vote for `header` in `round`.
    pub fn vote(keypair: &crate::identity::Keypair, header: &Header, round: u32) -> Vote {
        let signed = Signed::sign(keypair, Commit::precommit(header, round));
        Vote {
            validator: signed.signer,
            signature: signed.signature,
        }
    }

    /// A commit of `keypairs`' votes for `header` in `round`.
    pub fn signed_by(keypairs: &[&crate::identity::Keypair], header: &Header, round: u32) -> Self {
        Commit {
            round,
            votes: keypairs
                .iter()
                .map(|k| Commit::vote(k, header, round))
                .collect(),
        }
    }
}

/// Checks one precommit signature, strictly.
pub fn verify_vote(precommit: &Precommit, vote: &Vote) -> Result<(), CommitError> {
    let key = vote
        .validator
        .verifying_key()
        .ok_or(CommitError::BadSignature(vote.validator))?;
    key.verify_strict(
        &signing_bytes(precommit),
        &ed25519_dalek::Signature::from_bytes(&vote.signature.0),
    )
    .map_err(|_| CommitError::BadSignature(vote.validator))
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

/// A proof that the transaction at `index` of a block's `count` transactions is one of them,
/// against the header's transactions root.
pub fn txs_proof(txs: &[SignedTx], index: usize) -> Vec<u8> {
    let leaves: Vec<[u8; 32]> = txs.iter().map(|tx| tx_id(tx).0).collect();
    rs_merkle::MerkleTree::<Blake3>::from_leaves(&leaves)
        .proof(&[index])
        .to_bytes()
}

/// Checks a [`txs_proof`]: transaction `tx` is at `index` of `count` under `root`.
pub fn verify_tx_in(root: &Hash, tx: &Hash, index: u32, count: u32, proof: &[u8]) -> bool {
    if index >= count {
        return false;
    }
    let Ok(proof) = rs_merkle::MerkleProof::<Blake3>::from_bytes(proof) else {
        return false;
    };
    proof.verify(root.0, &[index as usize], &[tx.0], count as usize)
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
    let precommit = Commit::precommit(header, commit.round);
    let mut seen = BTreeSet::new();
    let mut signed: u64 = 0;
    for vote in &commit.votes {
        let power = set
            .power_of(&vote.validator)
            .ok_or(CommitError::NotAValidator(vote.validator))?;
        if !seen.insert(vote.validator) {
            return Err(CommitError::DoubleVote(vote.validator));
        }
        verify_vote(&precommit, vote)?;
        signed = signed.saturating_add(power);
    }
    let total = set.total_power();
    if u128::from(signed) * 3 <= u128::from(total) * 2 {
        return Err(CommitError::NotEnoughPower { signed, total });
    }
    Ok(())
}

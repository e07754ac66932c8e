//! The light client: it starts from a genesis, accepts a header only with a commit of the
//! genesis validators, and accepts a state read only with a proof against an accepted header.
//!
//! A relay answers a read with the header it read at, that header's commit, and one proof per
//! key ([`ProvenReads`]). [`LightClient::verify`] checks all of it; what comes out is a
//! [`Verified`] value that records the height and root it was proven against, which is what
//! the app shows beside it.

use super::block::{Commit, CommitError, Header, ValidatorSet, verify_commit};
use super::genesis::Genesis;
use super::merkle::{ProofError, StateProof, verify_read};
use super::state::{StateKey, StateValue};
use crate::hash::Hash;
use borsh::{BorshDeserialize, BorshSerialize};

/// One key, its value (or `None`) and the proof.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProvenRead {
    pub key: StateKey,
    pub value: Option<StateValue>,
    pub proof: StateProof,
}

/// A relay's answer to a state query.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProvenReads {
    pub header: Header,
    pub commit: Commit,
    pub reads: Vec<ProvenRead>,
}

/// A value checked against a committed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    pub value: T,
    pub height: u64,
    pub state_root: Hash,
    /// The header's time: how fresh the value is.
    pub time_ms: u64,
}

/// Why an answer was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the header is not final: {0}")]
    Commit(#[from] CommitError),
    #[error("the proof for {key:?} fails: {error}")]
    Proof { key: StateKey, error: ProofError },
    #[error("the answer does not cover {0:?}, which was asked for")]
    Missing(StateKey),
    #[error("the answer is at height {got}, older than the verified height {latest}")]
    Stale { latest: u64, got: u64 },
}

/// The browser's view of the chain.
#[derive(Debug, Clone)]
pub struct LightClient {
    network_id: String,
    genesis_hash: Hash,
    validators: ValidatorSet,
    latest: Option<Header>,
}

impl LightClient {
    /// Trusts `genesis`: its network id and validator set.
    pub fn new(genesis: &Genesis) -> Self {
        LightClient {
            network_id: genesis.network_id.clone(),
            genesis_hash: genesis.hash(),
            validators: genesis.validator_set(),
            latest: None,
        }
    }

    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// The latest header accepted.
    pub fn latest(&self) -> Option<&Header> {
        self.latest.as_ref()
    }

    /// Accepts `header` if its commit holds and it is not older than the latest accepted one.
    pub fn accept(&mut self, header: &Header, commit: &Commit) -> Result<(), ReadError> {
        if let Some(latest) = &self.latest
            && header.height < latest.height
        {
            return Err(ReadError::Stale {
                latest: latest.height,
                got: header.height,
            });
        }
        verify_commit(header, commit, &self.validators, &self.network_id)?;
        if header.height == 1 && header.prev != self.genesis_hash {
            return Err(CommitError::BrokenChain { height: 1 }.into());
        }
        self.latest = Some(header.clone());
        Ok(())
    }

    /// Checks a relay's answer for `keys`: the header's commit, then each proof against its
    /// state root. Returns the values in the order of `keys`.
    pub fn verify(
        &mut self,
        keys: &[StateKey],
        answer: &ProvenReads,
    ) -> Result<Verified<Vec<Option<StateValue>>>, ReadError> {
        self.accept(&answer.header, &answer.commit)?;
        let root = answer.header.state_root;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let read = answer
                .reads
                .iter()
                .find(|r| r.key == *key)
                .ok_or_else(|| ReadError::Missing(key.clone()))?;
            verify_read(&root, key, read.value.as_ref(), &read.proof).map_err(|error| {
                ReadError::Proof {
                    key: key.clone(),
                    error,
                }
            })?;
            values.push(read.value.clone());
        }
        Ok(Verified {
            value: values,
            height: answer.header.height,
            state_root: root,
            time_ms: answer.header.time_ms,
        })
    }
}

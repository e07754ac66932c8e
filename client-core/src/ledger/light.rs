//! The light client: it starts from a genesis, accepts a header only with a commit of the
//! validator set it has followed from the genesis set through every epoch change, and accepts
//! a state read only with a proof against an accepted header.
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

/// A header at the end of an epoch with its commit and the set it elects: how a light client
/// learns a new validator set. The header is signed by the set the client already trusts, and
/// names the new set's hash, so the set itself needs no further proof.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EpochChange {
    pub header: Header,
    pub commit: Commit,
    pub next: ValidatorSet,
}

/// Where a transaction is: a committed header, and the transaction's place among the block's
/// transactions with a Merkle proof against the header's transactions root.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxInclusion {
    pub header: Header,
    pub commit: Commit,
    pub index: u32,
    pub count: u32,
    pub proof: Vec<u8>,
}

/// Two different headers at one height, each with a valid commit of the same set: proof that
/// validators holding more than a third of the power signed twice.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ConflictEvidence {
    pub a: (Header, Commit),
    pub b: (Header, Commit),
}

impl ConflictEvidence {
    /// The validators whose votes are in both commits: those who signed twice.
    pub fn double_signers(&self) -> Vec<crate::identity::PublicKey> {
        let mut out: Vec<_> = self
            .a
            .1
            .votes
            .iter()
            .filter(|v| self.b.1.votes.iter().any(|w| w.validator == v.validator))
            .map(|v| v.validator)
            .collect();
        out.sort();
        out.dedup();
        out
    }
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
    #[error("the answer is at height {got}, not the height {pinned} it was asked for")]
    NotPinned { pinned: u64, got: u64 },
    #[error(
        "header {height} is signed by validator set {got}, which this client has not learned; \
         it needs the epoch changes since height {since}"
    )]
    UnknownSet { height: u64, got: Hash, since: u64 },
    #[error("the epoch change at height {height} gives a set that is not the one its header names")]
    WrongSet { height: u64 },
    #[error(
        "two different headers at height {height} both carry a valid commit: validators signed \
         twice"
    )]
    Conflict {
        height: u64,
        evidence: Box<ConflictEvidence>,
    },
    #[error("the saved light-client state belongs to another network or genesis")]
    ForeignState,
    #[error(
        "the transaction is not in block {height}: its proof against the transactions root fails"
    )]
    NotIncluded { height: u64 },
}

/// What a light client has verified, to keep across page reloads (Borsh-encoded): it resumes
/// from here and never goes back.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Trusted {
    pub genesis_hash: Hash,
    pub latest: Header,
    pub latest_commit: Commit,
    /// The set that signed `latest`.
    pub signers: ValidatorSet,
    /// The set that signs the headers after `latest`, once learned.
    pub next: Option<ValidatorSet>,
}

/// The browser's view of the chain.
#[derive(Debug, Clone)]
pub struct LightClient {
    network_id: String,
    genesis_hash: Hash,
    /// The set that signed `latest` (the genesis set before any header).
    signers: ValidatorSet,
    /// The set that signs the headers after `latest`; `None` when `latest` ended an epoch
    /// and the new set has not been fetched yet.
    next: Option<ValidatorSet>,
    latest: Option<(Header, Commit)>,
    evidence: Vec<ConflictEvidence>,
}

impl LightClient {
    /// Trusts `genesis`: its network id and validator set.
    pub fn new(genesis: &Genesis) -> Self {
        let set = genesis.validator_set();
        LightClient {
            network_id: genesis.network_id.clone(),
            genesis_hash: genesis.hash(),
            signers: set.clone(),
            next: Some(set),
            latest: None,
            evidence: Vec::new(),
        }
    }

    /// Resumes from a saved state for `genesis` (refused if it belongs to another one).
    pub fn restore(genesis: &Genesis, trusted: Trusted) -> Result<Self, ReadError> {
        if trusted.genesis_hash != genesis.hash()
            || trusted.latest.network_id != genesis.network_id
            || trusted.latest.validators != trusted.signers.hash()
            || trusted
                .next
                .as_ref()
                .is_some_and(|n| n.hash() != trusted.latest.next_validators)
        {
            return Err(ReadError::ForeignState);
        }
        Ok(LightClient {
            network_id: genesis.network_id.clone(),
            genesis_hash: trusted.genesis_hash,
            signers: trusted.signers,
            next: trusted.next,
            latest: Some((trusted.latest, trusted.latest_commit)),
            evidence: Vec::new(),
        })
    }

    /// What to save to resume later (`None` before the first header).
    pub fn trusted(&self) -> Option<Trusted> {
        let (latest, commit) = self.latest.clone()?;
        Some(Trusted {
            genesis_hash: self.genesis_hash,
            latest,
            latest_commit: commit,
            signers: self.signers.clone(),
            next: self.next.clone(),
        })
    }

    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// The set that signs the next headers, if known; else the set that signed the latest.
    pub fn validators(&self) -> &ValidatorSet {
        self.next.as_ref().unwrap_or(&self.signers)
    }

    /// The latest header accepted.
    pub fn latest(&self) -> Option<&Header> {
        self.latest.as_ref().map(|(h, _)| h)
    }

    /// Conflicting signed headers seen so far.
    pub fn evidence(&self) -> &[ConflictEvidence] {
        &self.evidence
    }

    /// The height from which this client needs epoch changes to follow a set change.
    pub fn epochs_from(&self) -> u64 {
        self.latest().map_or(1, |h| h.height)
    }

    /// Accepts `header` if its commit holds for the set that signs it and it is not older than
    /// the latest accepted one. An equal height is accepted only for the same header; another
    /// header with a valid commit at that height is recorded as evidence and refused.
    pub fn accept(&mut self, header: &Header, commit: &Commit) -> Result<(), ReadError> {
        if let Some((latest, latest_commit)) = &self.latest {
            if header.height < latest.height {
                return Err(ReadError::Stale {
                    latest: latest.height,
                    got: header.height,
                });
            }
            if header.height == latest.height {
                if header == latest {
                    return Ok(());
                }
                verify_commit(header, commit, &self.signers, &self.network_id)?;
                let evidence = ConflictEvidence {
                    a: (latest.clone(), latest_commit.clone()),
                    b: (header.clone(), commit.clone()),
                };
                self.evidence.push(evidence.clone());
                return Err(ReadError::Conflict {
                    height: header.height,
                    evidence: Box::new(evidence),
                });
            }
        }
        let set = match &self.next {
            Some(next) if next.hash() == header.validators => next.clone(),
            _ => {
                return Err(ReadError::UnknownSet {
                    height: header.height,
                    got: header.validators,
                    since: self.epochs_from(),
                });
            }
        };
        verify_commit(header, commit, &set, &self.network_id)?;
        if header.height == 1 && header.prev != self.genesis_hash {
            return Err(CommitError::BrokenChain { height: 1 }.into());
        }
        self.next = (header.next_validators == set.hash()).then(|| set.clone());
        self.signers = set;
        self.latest = Some((header.clone(), commit.clone()));
        Ok(())
    }

    /// Follows one epoch change: its header must be signed by the set this client trusts (or
    /// be the latest header itself), and its new set must be the one that header names.
    pub fn follow(&mut self, change: &EpochChange) -> Result<(), ReadError> {
        let height = change.header.height;
        if change.next.hash() != change.header.next_validators {
            return Err(ReadError::WrongSet { height });
        }
        self.accept(&change.header, &change.commit)?;
        self.next = Some(change.next.clone());
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
        self.check_reads(keys, answer)
    }

    /// [`LightClient::verify`] for an answer asked at a pinned `height`, so that several
    /// reads describe one state. The header may be older than the latest accepted one if the
    /// set that signed it is one this client trusts; it does not move the latest back.
    pub fn verify_at(
        &mut self,
        height: u64,
        keys: &[StateKey],
        answer: &ProvenReads,
    ) -> Result<Verified<Vec<Option<StateValue>>>, ReadError> {
        if answer.header.height != height {
            return Err(ReadError::NotPinned {
                pinned: height,
                got: answer.header.height,
            });
        }
        self.accept_pinned(&answer.header, &answer.commit)?;
        self.check_reads(keys, answer)
    }

    /// Accepts a header asked for at its height: an older one than the latest if its commit
    /// holds for a set this client trusts (without moving the latest back), else as
    /// [`LightClient::accept`].
    fn accept_pinned(&mut self, header: &Header, commit: &Commit) -> Result<(), ReadError> {
        let older = self.latest().is_some_and(|l| header.height < l.height);
        if !older {
            return self.accept(header, commit);
        }
        let set = [Some(&self.signers), self.next.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.hash() == header.validators)
            .ok_or(ReadError::UnknownSet {
                height: header.height,
                got: header.validators,
                since: self.epochs_from(),
            })?;
        verify_commit(header, commit, set, &self.network_id)?;
        Ok(())
    }

    /// Checks that transaction `tx` is in the committed block `inclusion` names. Returns the
    /// block's height.
    pub fn verify_inclusion(
        &mut self,
        tx: &Hash,
        inclusion: &TxInclusion,
    ) -> Result<u64, ReadError> {
        self.accept_pinned(&inclusion.header, &inclusion.commit)?;
        let height = inclusion.header.height;
        if !super::block::verify_tx_in(
            &inclusion.header.txs_root,
            tx,
            inclusion.index,
            inclusion.count,
            &inclusion.proof,
        ) {
            return Err(ReadError::NotIncluded { height });
        }
        Ok(height)
    }

    fn check_reads(
        &self,
        keys: &[StateKey],
        answer: &ProvenReads,
    ) -> Result<Verified<Vec<Option<StateValue>>>, ReadError> {
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

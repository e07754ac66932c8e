//! Our types as Malachite sees them: heights, validators (ed25519 keys with voting power),
//! the value consensus decides on (a header's hash), votes, proposals and proposal parts, and
//! the signatures over them.
//!
//! Votes are signed over our own domain-tagged Borsh bytes. A precommit for a value signs
//! exactly [`client_core::ledger::block::Precommit`] — network, height, round, header hash — so
//! the precommits a decision collects are, as they are, the commit stored with the block and
//! checked by every light client. Prevotes and nil precommits sign a separate
//! `aqueduct/v1/vote` message, and proposals `aqueduct/v1/proposal`: no consensus signature
//! can be passed off as a commit vote. Every signature is checked with strict ed25519.

use borsh::{BorshDeserialize, BorshSerialize};
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::evidence::{OtherVote, SignedVote, VoteKind, vote_signing_bytes};
use client_core::ledger::{SignedTx, ValidatorSet as LedgerSet};
use client_core::signed::{Domain, signing_bytes};
use malachitebft_core_types::{
    self as core, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType,
};
use std::fmt;

/// The context: carries the network id, which every signed consensus message names.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub network_id: String,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl core::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its account key.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub PublicKey);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl core::Address for Address {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    pub address: Address,
    pub public_key: PublicKey,
    pub power: u64,
}

impl core::Validator<Ctx> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> u64 {
        self.power
    }
}

/// A validator set, sorted by address (every node orders it the same way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    pub fn from_ledger(set: &LedgerSet) -> Self {
        let mut validators: Vec<Validator> = set
            .validators
            .iter()
            .map(|v| Validator {
                address: Address(v.key),
                public_key: v.key,
                power: v.power,
            })
            .collect();
        validators.sort_by_key(|v| v.address);
        ValidatorSet { validators }
    }
}

impl core::ValidatorSet<Ctx> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> u64 {
        self.validators
            .iter()
            .fold(0u64, |sum, v| sum.saturating_add(v.power))
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators.iter().find(|v| v.address == *address)
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// What consensus decides on: the hash of a block's header. The block itself travels in the
/// proposal's parts, and each validator checks it before voting for its hash.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Value(pub Hash);

impl core::Value for Value {
    type Id = Hash;

    fn id(&self) -> Hash {
        self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub height: Height,
    pub round: Round,
    pub value: NilOrVal<Hash>,
    pub vote_type: VoteType,
    pub validator: Address,
}

impl core::Vote<Ctx> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<Hash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<Hash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    fn extension(&self) -> Option<&SignedExtension<Ctx>> {
        None
    }

    fn take_extension(&mut self) -> Option<SignedExtension<Ctx>> {
        None
    }

    fn extend(self, _extension: SignedExtension<Ctx>) -> Self {
        // Aqueduct uses no vote extensions.
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub value: Value,
    pub pol_round: Round,
    pub proposer: Address,
}

impl core::Proposal<Ctx> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &Value {
        &self.value
    }

    fn take_value(self) -> Value {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A proposed block in one part: the header, its transactions, and the proposer's signature
/// over (network, height, round, header hash), so that a relay can tell who sent it before
/// re-executing it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalPart {
    pub height: Height,
    pub round: Round,
    pub proposer: Address,
    pub header: client_core::ledger::Header,
    pub txs: Vec<SignedTx>,
    pub signature: Signature,
}

impl core::ProposalPart<Ctx> for ProposalPart {
    fn is_first(&self) -> bool {
        true
    }

    fn is_last(&self) -> bool {
        true
    }
}

/// An ed25519 signature (ordered, as Malachite keeps signatures in sorted sets).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Signature(pub [u8; 64]);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519;

impl core::SigningScheme for Ed25519 {
    type DecodingError = String;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = Keypair;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, String> {
        <[u8; 64]>::try_from(bytes)
            .map(Signature)
            .map_err(|_| format!("a signature has 64 bytes, not {}", bytes.len()))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, String> {
        <[u8; 32]>::try_from(bytes)
            .map(PublicKey)
            .map_err(|_| format!("a public key has 32 bytes, not {}", bytes.len()))
    }

    fn encode_public_key(key: &PublicKey) -> Vec<u8> {
        key.0.to_vec()
    }
}

impl core::Context for Ctx {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = Value;
    type Vote = Vote;
    type Extension = Vec<u8>;
    type SigningScheme = Ed25519;

    fn select_proposer<'a>(
        &self,
        set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        proposer_of(set, height, round)
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: Value,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<Hash>,
        address: Address,
    ) -> Vote {
        Vote {
            height,
            round,
            value,
            vote_type: VoteType::Prevote,
            validator: address,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<Hash>,
        address: Address,
    ) -> Vote {
        Vote {
            height,
            round,
            value,
            vote_type: VoteType::Precommit,
            validator: address,
        }
    }
}

/// Round robin over the set sorted by address, shifted by height and round: every validator
/// proposes in turn, and a round that failed moves to the next one. (A set is never empty: the
/// ledger never elects an empty set.)
pub fn proposer_of(set: &ValidatorSet, height: Height, round: Round) -> &Validator {
    let count = set.validators.len().max(1) as u64;
    let round = u64::from(round.as_u32().unwrap_or(0));
    let index = height.0.wrapping_add(round) % count;
    &set.validators[usize::try_from(index)
        .unwrap_or(0)
        .min(set.validators.len() - 1)]
}

#[derive(BorshSerialize)]
struct ProposalBody<'a> {
    network_id: &'a str,
    height: u64,
    round: i64,
    value: Hash,
    pol_round: i64,
}

impl Domain for ProposalBody<'_> {
    const TAG: &'static str = "aqueduct/v1/proposal";
}

#[derive(BorshSerialize)]
struct PartBody<'a> {
    network_id: &'a str,
    height: u64,
    round: i64,
    header: Hash,
}

impl Domain for PartBody<'_> {
    const TAG: &'static str = "aqueduct/v1/proposal-part";
}

#[derive(BorshSerialize)]
struct ProofBody<'a> {
    public_key: &'a [u8],
    peer_id: &'a [u8],
}

impl Domain for ProofBody<'_> {
    const TAG: &'static str = "aqueduct/v1/validator-proof";
}

impl Ctx {
    /// The bytes a validator signs for `vote` (see [`client_core::ledger::evidence`]).
    pub fn vote_bytes(&self, vote: &Vote) -> Vec<u8> {
        let kind = vote_kind(vote.vote_type);
        let value = match vote.value {
            NilOrVal::Val(id) => Some(id),
            NilOrVal::Nil => None,
        };
        match vote.round.as_u32() {
            Some(round) => vote_signing_bytes(&self.network_id, kind, vote.height.0, round, value),
            // The engine votes in rounds only; a vote without one is never valid.
            None => signing_bytes(&OtherVote {
                network_id: &self.network_id,
                kind: u8::from(kind == VoteKind::Precommit),
                height: vote.height.0,
                round: vote.round.as_i64(),
                value,
            }),
        }
    }

    /// A signed vote of the engine as a light client sees it.
    pub fn ledger_vote(&self, vote: &Vote, signature: &Signature) -> Option<SignedVote> {
        Some(SignedVote {
            kind: vote_kind(vote.vote_type),
            height: vote.height.0,
            round: vote.round.as_u32()?,
            value: match vote.value {
                NilOrVal::Val(id) => Some(id),
                NilOrVal::Nil => None,
            },
            validator: vote.validator.0,
            signature: client_core::identity::Signature(signature.0),
        })
    }

    pub fn proposal_bytes(&self, proposal: &Proposal) -> Vec<u8> {
        signing_bytes(&ProposalBody {
            network_id: &self.network_id,
            height: proposal.height.0,
            round: proposal.round.as_i64(),
            value: proposal.value.0,
            pol_round: proposal.pol_round.as_i64(),
        })
    }

    pub fn part_bytes(&self, height: Height, round: Round, header: Hash) -> Vec<u8> {
        signing_bytes(&PartBody {
            network_id: &self.network_id,
            height: height.0,
            round: round.as_i64(),
            header,
        })
    }

    pub fn proof_bytes(public_key: &[u8], peer_id: &[u8]) -> Vec<u8> {
        signing_bytes(&ProofBody {
            public_key,
            peer_id,
        })
    }
}

fn vote_kind(vote_type: VoteType) -> VoteKind {
    match vote_type {
        VoteType::Prevote => VoteKind::Prevote,
        VoteType::Precommit => VoteKind::Precommit,
    }
}

/// Strict ed25519 verification, the rule of every signature in Aqueduct.
pub fn verify(key: &PublicKey, bytes: &[u8], signature: &Signature) -> bool {
    client_core::signed::verify_tagged(key, bytes, &client_core::identity::Signature(signature.0))
}

pub fn sign(keypair: &Keypair, bytes: &[u8]) -> Signature {
    Signature(client_core::signed::sign_tagged(keypair, bytes).0)
}

/// Timeouts for a small network on good links: a round that finds no proposal gives up after
/// 1.5 s, each later round waits a little longer.
pub fn timeouts() -> LinearTimeouts {
    use std::time::Duration;
    LinearTimeouts {
        propose: Duration::from_millis(1500),
        propose_delta: Duration::from_millis(250),
        prevote: Duration::from_millis(500),
        prevote_delta: Duration::from_millis(250),
        precommit: Duration::from_millis(500),
        precommit_delta: Duration::from_millis(250),
        rebroadcast: Duration::from_millis(2500),
        max_timeout: Duration::from_secs(30),
    }
}

/// One alias so the engine's generic types read as ours.
pub type Certificate = core::CommitCertificate<Ctx>;

#[cfg(test)]
mod tests {
    use super::*;
    use client_core::ledger::block::{Commit, verify_commit};
    use client_core::ledger::{Header, Validator as LedgerValidator, ValidatorSet as Set};

    fn header() -> Header {
        Header {
            network_id: "n".into(),
            height: 7,
            prev: Hash([1; 32]),
            state_root: Hash([2; 32]),
            txs_root: Hash([3; 32]),
            time_ms: 9,
            validators: Hash([4; 32]),
            next_validators: Hash([4; 32]),
        }
    }

    /// A precommit signed through the engine is, byte for byte, a commit vote: the certificate
    /// the engine collects verifies as the block's commit. A prevote for the same block, or a
    /// precommit for nothing, is not.
    #[test]
    fn engine_precommits_are_commit_votes_and_nothing_else_is() {
        let ctx = Ctx {
            network_id: "n".into(),
        };
        let keys: Vec<Keypair> = (1..=4u8).map(|n| Keypair::from_seed(&[n; 32])).collect();
        let mut header = header();
        let set = Set {
            validators: keys
                .iter()
                .map(|k| LedgerValidator {
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        };
        header.validators = set.hash();
        let vote = |k: &Keypair, kind: VoteType, value: NilOrVal<Hash>| {
            let vote = Vote {
                height: Height(7),
                round: Round::new(2),
                value,
                vote_type: kind,
                validator: Address(k.public()),
            };
            client_core::ledger::block::Vote {
                validator: k.public(),
                signature: client_core::identity::Signature(sign(k, &ctx.vote_bytes(&vote)).0),
            }
        };
        let id = NilOrVal::Val(header.hash());
        let commit = Commit {
            round: 2,
            votes: keys[..3]
                .iter()
                .map(|k| vote(k, VoteType::Precommit, id))
                .collect(),
        };
        verify_commit(&header, &commit, &set, "n").expect("engine precommits make a commit");
        let prevotes = Commit {
            round: 2,
            votes: keys[..3]
                .iter()
                .map(|k| vote(k, VoteType::Prevote, id))
                .collect(),
        };
        assert!(verify_commit(&header, &prevotes, &set, "n").is_err());
        let nil = Commit {
            round: 2,
            votes: keys[..3]
                .iter()
                .map(|k| vote(k, VoteType::Precommit, NilOrVal::Nil))
                .collect(),
        };
        assert!(verify_commit(&header, &nil, &set, "n").is_err());
        // Another network's validators' precommits do not count here.
        let other = Ctx {
            network_id: "m".into(),
        };
        let v = Vote {
            height: Height(7),
            round: Round::new(2),
            value: id,
            vote_type: VoteType::Precommit,
            validator: Address(keys[0].public()),
        };
        assert_ne!(ctx.vote_bytes(&v), other.vote_bytes(&v));
    }

    #[test]
    fn every_validator_proposes_in_turn() {
        let ledger = Set {
            validators: (1..=4u8)
                .map(|n| LedgerValidator {
                    key: PublicKey([n; 32]),
                    power: 1,
                })
                .collect(),
        };
        let set = ValidatorSet::from_ledger(&ledger);
        let proposers: std::collections::BTreeSet<_> = (0..4)
            .map(|h| proposer_of(&set, Height(h), Round::new(0)).address)
            .collect();
        assert_eq!(proposers.len(), 4);
        // A failed round hands over to the next validator.
        assert_ne!(
            proposer_of(&set, Height(5), Round::new(0)).address,
            proposer_of(&set, Height(5), Round::new(1)).address
        );
    }
}

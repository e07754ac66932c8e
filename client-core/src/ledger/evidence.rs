//! Consensus votes as validators sign them, and evidence that a validator signed two
//! different votes for one slot (height, round and kind): proof of double-signing that anyone
//! can check with the validator's public key alone.
//!
//! A precommit for a header signs [`Precommit`] — the bytes a block's commit is made of. Every
//! other vote (a prevote, or a precommit for nothing) signs [`OtherVote`] under its own domain
//! tag, so no vote of another kind can be passed off as a commit vote.

use super::block::Precommit;
use crate::hash::Hash;
use crate::identity::{PublicKey, Signature};
use crate::signed::{Domain, signing_bytes, verify_tagged};
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

/// The two votes of a Tendermint round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum VoteKind {
    Prevote,
    Precommit,
}

impl fmt::Display for VoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteKind::Prevote => "prevote",
            VoteKind::Precommit => "precommit",
        })
    }
}

/// A prevote, or a precommit for nothing: what a validator signs for them.
#[derive(BorshSerialize)]
pub struct OtherVote<'a> {
    pub network_id: &'a str,
    /// 0 for a prevote, 1 for a precommit.
    pub kind: u8,
    pub height: u64,
    pub round: i64,
    pub value: Option<Hash>,
}

impl Domain for OtherVote<'_> {
    const TAG: &'static str = "aqueduct/v1/vote";
}

/// The bytes a validator signs for a vote of `kind` at `height` and `round` for `value` (a
/// header hash, or nothing).
pub fn vote_signing_bytes(
    network_id: &str,
    kind: VoteKind,
    height: u64,
    round: u32,
    value: Option<Hash>,
) -> Vec<u8> {
    match (kind, value) {
        (VoteKind::Precommit, Some(header)) => signing_bytes(&Precommit {
            network_id: network_id.to_owned(),
            height,
            round,
            header,
        }),
        _ => signing_bytes(&OtherVote {
            network_id,
            kind: match kind {
                VoteKind::Prevote => 0,
                VoteKind::Precommit => 1,
            },
            height,
            round: i64::from(round),
            value,
        }),
    }
}

/// One signed consensus vote.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedVote {
    pub kind: VoteKind,
    pub height: u64,
    pub round: u32,
    /// The header voted for; `None` for a vote for nothing.
    pub value: Option<Hash>,
    pub validator: PublicKey,
    pub signature: Signature,
}

impl SignedVote {
    pub fn signing_bytes(&self, network_id: &str) -> Vec<u8> {
        vote_signing_bytes(network_id, self.kind, self.height, self.round, self.value)
    }

    /// Whether the validator signed this vote (strict ed25519).
    pub fn verify(&self, network_id: &str) -> bool {
        verify_tagged(
            &self.validator,
            &self.signing_bytes(network_id),
            &self.signature,
        )
    }
}

/// Two votes one validator signed for the same height, round and kind, for different values:
/// Tendermint's safety assumes no more than a third of the power ever does this.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct DoubleSign {
    pub first: SignedVote,
    pub second: SignedVote,
}

/// Why a [`DoubleSign`] proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the two votes are signed by different validators")]
    DifferentValidators,
    #[error("the two votes are for different heights, rounds or kinds of vote")]
    DifferentSlots,
    #[error("the two votes are for the same value: that is one vote, sent twice")]
    SameValue,
    #[error("the {0} vote's signature is not the validator's")]
    BadSignature(&'static str),
}

impl DoubleSign {
    /// The double signer, when this is proof: same validator, same slot, different values,
    /// both signatures valid on network `network_id`.
    pub fn check(&self, network_id: &str) -> Result<PublicKey, EvidenceError> {
        let (a, b) = (&self.first, &self.second);
        if a.validator != b.validator {
            return Err(EvidenceError::DifferentValidators);
        }
        if (a.kind, a.height, a.round) != (b.kind, b.height, b.round) {
            return Err(EvidenceError::DifferentSlots);
        }
        if a.value == b.value {
            return Err(EvidenceError::SameValue);
        }
        if !a.verify(network_id) {
            return Err(EvidenceError::BadSignature("first"));
        }
        if !b.verify(network_id) {
            return Err(EvidenceError::BadSignature("second"));
        }
        Ok(a.validator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::signed::sign_tagged;

    const NET: &str = "aqueduct-test";

    fn vote(key: &Keypair, kind: VoteKind, round: u32, value: Option<Hash>) -> SignedVote {
        let bytes = vote_signing_bytes(NET, kind, 7, round, value);
        SignedVote {
            kind,
            height: 7,
            round,
            value,
            validator: key.public(),
            signature: sign_tagged(key, &bytes),
        }
    }

    #[test]
    fn two_values_in_one_slot_prove_a_double_sign_and_nothing_else_does() {
        let key = Keypair::from_seed(&[3; 32]);
        let other = Keypair::from_seed(&[4; 32]);
        let (x, y) = (Some(Hash::of(b"x")), Some(Hash::of(b"y")));
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            let proof = DoubleSign {
                first: vote(&key, kind, 1, x),
                second: vote(&key, kind, 1, y),
            };
            assert_eq!(proof.check(NET), Ok(key.public()));
            // A vote for nothing against a vote for a header is a double sign too.
            let nil = DoubleSign {
                first: vote(&key, kind, 1, x),
                second: vote(&key, kind, 1, None),
            };
            assert_eq!(nil.check(NET), Ok(key.public()));
            // On another network the signatures say nothing.
            assert_eq!(
                proof.check("elsewhere"),
                Err(EvidenceError::BadSignature("first"))
            );
        }
        let same = DoubleSign {
            first: vote(&key, VoteKind::Prevote, 1, x),
            second: vote(&key, VoteKind::Prevote, 1, x),
        };
        assert_eq!(same.check(NET), Err(EvidenceError::SameValue));
        let rounds = DoubleSign {
            first: vote(&key, VoteKind::Prevote, 1, x),
            second: vote(&key, VoteKind::Prevote, 2, y),
        };
        assert_eq!(rounds.check(NET), Err(EvidenceError::DifferentSlots));
        let kinds = DoubleSign {
            first: vote(&key, VoteKind::Prevote, 1, x),
            second: vote(&key, VoteKind::Precommit, 1, y),
        };
        assert_eq!(kinds.check(NET), Err(EvidenceError::DifferentSlots));
        let two = DoubleSign {
            first: vote(&key, VoteKind::Prevote, 1, x),
            second: vote(&other, VoteKind::Prevote, 1, y),
        };
        assert_eq!(two.check(NET), Err(EvidenceError::DifferentValidators));
        // A signature moved onto another value.
        let mut forged = DoubleSign {
            first: vote(&key, VoteKind::Precommit, 1, x),
            second: vote(&key, VoteKind::Precommit, 1, x),
        };
        forged.second.value = y;
        assert_eq!(
            forged.check(NET),
            Err(EvidenceError::BadSignature("second"))
        );
    }

    #[test]
    fn a_precommit_for_a_header_signs_the_commit_bytes() {
        let header = Hash::of(b"header");
        let commit = signing_bytes(&Precommit {
            network_id: NET.into(),
            height: 7,
            round: 2,
            header,
        });
        assert_eq!(
            vote_signing_bytes(NET, VoteKind::Precommit, 7, 2, Some(header)),
            commit
        );
        assert_ne!(
            vote_signing_bytes(NET, VoteKind::Prevote, 7, 2, Some(header)),
            commit
        );
    }
}

//! The engine's signer and verifier: this relay's key, and strict ed25519 over the bytes
//! [`Ctx`] defines for each message.

use super::context::{self, Ctx, Proposal, Signature, Vote};
use async_trait::async_trait;
use client_core::identity::{Keypair, PublicKey};
use malachitebft_core_types::{SignedMessage, ValidatorProof, VoteExtensionScope};
use malachitebft_signing::{Error, Signer, VerificationResult, Verifier};

pub struct RelaySigner {
    pub ctx: Ctx,
    pub keypair: Keypair,
}

pub struct RelayVerifier {
    pub ctx: Ctx,
}

fn result(valid: bool) -> Result<VerificationResult, Error> {
    Ok(VerificationResult::from_bool(valid))
}

#[async_trait]
impl Signer<Ctx> for RelaySigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<Ctx, Vote>, Error> {
        let signature = context::sign(&self.keypair, &self.ctx.vote_bytes(&vote));
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<Ctx, Proposal>, Error> {
        let signature = context::sign(&self.keypair, &self.ctx.proposal_bytes(&proposal));
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        _scope: VoteExtensionScope<Ctx>,
        extension: Vec<u8>,
    ) -> Result<SignedMessage<Ctx, Vec<u8>>, Error> {
        // Never asked: Aqueduct's votes carry no extensions. Signed under its own tag anyway,
        // so that such a signature can never stand for anything else.
        let mut bytes = client_core::encoding::encode(&"aqueduct/v1/vote-extension");
        bytes.extend_from_slice(&extension);
        let signature = context::sign(&self.keypair, &bytes);
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<Ctx>, Error> {
        let signature = context::sign(&self.keypair, &Ctx::proof_bytes(&public_key, &peer_id));
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}

#[async_trait]
impl Verifier<Ctx> for RelayVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        result(context::verify(
            public_key,
            &self.ctx.vote_bytes(vote),
            signature,
        ))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        result(context::verify(
            public_key,
            &self.ctx.proposal_bytes(proposal),
            signature,
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        _scope: &VoteExtensionScope<Ctx>,
        _extension: &Vec<u8>,
        _signature: &Signature,
        _public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        // No extension is ever valid: Aqueduct's votes carry none.
        result(false)
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<Ctx>,
    ) -> Result<VerificationResult, Error> {
        let Ok(key) = <[u8; 32]>::try_from(proof.public_key.as_slice()) else {
            return result(false);
        };
        result(context::verify(
            &PublicKey(key),
            &Ctx::proof_bytes(&proof.public_key, &proof.peer_id),
            &proof.signature,
        ))
    }
}

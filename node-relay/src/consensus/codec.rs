//! How consensus messages travel and are kept in the write-ahead log: Borsh, the encoding of
//! everything else in Aqueduct. Decoding is bounded: nothing a peer sends is allocated beyond
//! [`MAX_MESSAGE`].

use super::context::{Ctx, Height, ProposalPart, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use client_core::hash::Hash;
use malachitebft_app::types::streaming::StreamMessage;
use malachitebft_app::types::sync::{RawDecidedValue, Request, Response, Status};
use malachitebft_codec::{Codec, HasEncodedLen};
use malachitebft_core_consensus::{LivenessMsg, ProposedValue, SignedConsensusMsg};
use malachitebft_core_types::{
    CommitCertificate, CommitSignature, ExtendedCommitCertificate, PolkaCertificate, Round,
    ValidatorProof, VoteExtensions,
};
use malachitebft_sync::ValueResponse;

/// The largest consensus or sync message decoded (a block is at most 2 MiB of transactions;
/// a sync answer holds several).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, Default)]
pub struct BorshCodec;

#[derive(Debug, thiserror::Error)]
#[error("consensus message: {0}")]
pub struct CodecError(String);

fn encode<T: BorshSerialize>(value: &T) -> Result<Bytes, CodecError> {
    borsh::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| CodecError(e.to_string()))
}

fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(CodecError(format!(
            "{} bytes, more than {MAX_MESSAGE}",
            bytes.len()
        )));
    }
    client_core::encoding::decode(bytes, MAX_MESSAGE).map_err(|e| CodecError(e.to_string()))
}

macro_rules! borsh_codec {
    ($($t:ty),* $(,)?) => {$(
        impl Codec<$t> for BorshCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$t, CodecError> {
                decode(&bytes)
            }

            fn encode(&self, msg: &$t) -> Result<Bytes, CodecError> {
                encode(msg)
            }
        }
    )*};
}

borsh_codec!(
    ProposalPart,
    SignedConsensusMsg<Ctx>,
    LivenessMsg<Ctx>,
    StreamMessage<ProposalPart>,
    ProposedValue<Ctx>,
    PolkaCertificate<Ctx>,
    Status<Ctx>,
    Request<Ctx>,
);

/// A validator proof as it travels (Malachite's type has no Borsh form of its own).
#[derive(BorshSerialize, BorshDeserialize)]
struct ProofWire {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Signature,
}

impl Codec<ValidatorProof<Ctx>> for BorshCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<Ctx>, CodecError> {
        let wire: ProofWire = decode(&bytes)?;
        Ok(ValidatorProof::new(
            wire.public_key,
            wire.peer_id,
            wire.signature,
        ))
    }

    fn encode(&self, proof: &ValidatorProof<Ctx>) -> Result<Bytes, CodecError> {
        encode(&ProofWire {
            public_key: proof.public_key.clone(),
            peer_id: proof.peer_id.clone(),
            signature: proof.signature,
        })
    }
}

/// A decided value in a sync answer: the block's bytes and its commit (Aqueduct has no vote
/// extensions, so a certificate is its commit signatures).
#[derive(BorshSerialize, BorshDeserialize)]
struct DecidedWire {
    value_bytes: Vec<u8>,
    height: Height,
    round: Round,
    value_id: Hash,
    signatures: Vec<(super::context::Address, Signature)>,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct ResponseWire {
    start_height: Height,
    values: Vec<DecidedWire>,
}

impl Codec<Response<Ctx>> for BorshCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Response<Ctx>, CodecError> {
        let wire: ResponseWire = decode(&bytes)?;
        let values = wire
            .values
            .into_iter()
            .map(|v| {
                let certificate = CommitCertificate {
                    height: v.height,
                    round: v.round,
                    value_id: v.value_id,
                    commit_signatures: v
                        .signatures
                        .into_iter()
                        .map(|(address, signature)| CommitSignature { address, signature })
                        .collect(),
                };
                RawDecidedValue::new(
                    Bytes::from(v.value_bytes),
                    ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                        certificate,
                        VoteExtensions::default(),
                    ),
                )
            })
            .collect();
        Ok(Response::ValueResponse(ValueResponse::new(
            wire.start_height,
            values,
        )))
    }

    fn encode(&self, response: &Response<Ctx>) -> Result<Bytes, CodecError> {
        let Response::ValueResponse(answer) = response;
        encode(&ResponseWire {
            start_height: answer.start_height,
            values: answer
                .values
                .iter()
                .map(|v| DecidedWire {
                    value_bytes: v.value_bytes.to_vec(),
                    height: v.certificate.height,
                    round: v.certificate.round,
                    value_id: v.certificate.value_id,
                    signatures: v
                        .certificate
                        .commit_signatures
                        .iter()
                        .map(|s| (s.address, s.signature))
                        .collect(),
                })
                .collect(),
        })
    }
}

impl HasEncodedLen<Response<Ctx>> for BorshCodec {
    fn encoded_len(&self, response: &Response<Ctx>) -> Result<usize, CodecError> {
        Codec::<Response<Ctx>>::encode(self, response).map(|b| b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_codec::Codec;

    /// Whatever a peer sends, decoding answers with an error, never a panic or a huge
    /// allocation.
    #[test]
    fn garbage_and_oversized_messages_are_refused() {
        let codec = BorshCodec;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 7, 33, 100, 1000, 5000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let b = Bytes::from(bytes);
            let _ = Codec::<SignedConsensusMsg<Ctx>>::decode(&codec, b.clone());
            let _ = Codec::<StreamMessage<ProposalPart>>::decode(&codec, b.clone());
            let _ = Codec::<Response<Ctx>>::decode(&codec, b.clone());
            let _ = Codec::<ValidatorProof<Ctx>>::decode(&codec, b.clone());
        }
        // A length prefix claiming four gigabytes of votes.
        let claim = Bytes::from(vec![0u8, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(Codec::<LivenessMsg<Ctx>>::decode(&codec, claim).is_err());
        let oversized = Bytes::from(vec![0u8; MAX_MESSAGE + 1]);
        assert!(Codec::<ProposalPart>::decode(&codec, oversized).is_err());
    }
}

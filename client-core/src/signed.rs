//! `Signed<T>`: a message body, its signer and the signer's signature.
//!
//! The signed bytes are `encode(domain tag) ‖ encode(body)`. Every message kind has its own tag
//! (`aqueduct/v1/job`, `aqueduct/v1/receipt`, …), so a signature made for one purpose is never
//! valid for another even if two bodies happened to encode to the same bytes. The tag is
//! length-prefixed by the encoding, so no tag can be a prefix-extension of another.

use crate::encoding;
use crate::identity::{Keypair, PublicKey, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::Signature as DalekSignature;

/// A message kind that can be signed, with its domain tag.
pub trait Domain {
    /// The domain tag, unique per message kind and protocol version.
    const TAG: &'static str;
}

/// A signature was not made by the claimed signer over this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature of {signer} does not verify for a {domain} message")]
pub struct SignatureInvalid {
    pub signer: PublicKey,
    pub domain: &'static str,
}

/// A body together with its signer and signature.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signed<T> {
    pub body: T,
    pub signer: PublicKey,
    pub signature: Signature,
}

/// The exact bytes a signer signs for `body`.
pub fn signing_bytes<T: Domain + BorshSerialize>(body: &T) -> Vec<u8> {
    let mut bytes = encoding::encode(&T::TAG);
    bytes.extend_from_slice(&encoding::encode(body));
    bytes
}

/// Signs bytes made by [`signing_bytes`] — for messages whose body is signed apart from its
/// carrier (consensus votes, whose signatures travel in the engine's own envelopes).
pub fn sign_tagged(keypair: &Keypair, bytes: &[u8]) -> Signature {
    keypair.sign_bytes(bytes)
}

/// Checks a signature over bytes made by [`signing_bytes`], strictly.
pub fn verify_tagged(key: &PublicKey, bytes: &[u8], signature: &Signature) -> bool {
    key.verifying_key().is_some_and(|k| {
        k.verify_strict(bytes, &DalekSignature::from_bytes(&signature.0))
            .is_ok()
    })
}

impl<T: Domain + BorshSerialize> Signed<T> {
    /// Signs `body` with `keypair`.
    pub fn sign(keypair: &Keypair, body: T) -> Self {
        let signature = keypair.sign_bytes(&signing_bytes(&body));
        Signed {
            body,
            signer: keypair.public(),
            signature,
        }
    }

    /// Checks the signature (strict ed25519: no malleable or small-order forms) and returns the
    /// body it vouches for.
    pub fn verify(&self) -> Result<&T, SignatureInvalid> {
        let invalid = || SignatureInvalid {
            signer: self.signer,
            domain: T::TAG,
        };
        let key = self.signer.verifying_key().ok_or_else(invalid)?;
        let signature = DalekSignature::from_bytes(&self.signature.0);
        key.verify_strict(&signing_bytes(&self.body), &signature)
            .map_err(|_| invalid())?;
        Ok(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
    struct Note(String);
    impl Domain for Note {
        const TAG: &'static str = "aqueduct/test/note";
    }

    #[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
    struct OtherNote(String);
    impl Domain for OtherNote {
        const TAG: &'static str = "aqueduct/test/other";
    }

    #[test]
    fn sign_then_verify() {
        let kp = Keypair::from_seed(&[3; 32]);
        let signed = Signed::sign(&kp, Note("hello".into()));
        assert_eq!(signed.verify(), Ok(&Note("hello".into())));
    }

    #[test]
    fn tampered_body_signer_or_signature_fails() {
        let kp = Keypair::from_seed(&[3; 32]);
        let signed = Signed::sign(&kp, Note("hello".into()));

        let mut body = signed.clone();
        body.body = Note("hellO".into());
        assert!(body.verify().is_err());

        let mut signer = signed.clone();
        signer.signer = Keypair::from_seed(&[4; 32]).public();
        assert_eq!(
            signer.verify(),
            Err(SignatureInvalid {
                signer: signer.signer,
                domain: "aqueduct/test/note"
            })
        );

        let mut sig = signed;
        sig.signature.0[10] ^= 1;
        assert!(sig.verify().is_err());
    }

    #[test]
    fn a_signature_does_not_cross_domains() {
        let kp = Keypair::from_seed(&[3; 32]);
        let signed = Signed::sign(&kp, Note("same".into()));
        let moved = Signed {
            body: OtherNote("same".into()),
            signer: signed.signer,
            signature: signed.signature,
        };
        assert!(moved.verify().is_err());
    }
}

//! Keys: ed25519 (`ed25519-dalek`), and the libp2p `PeerId` of the same public key.
//!
//! A customer's account id, their network identity and their signer are one key. The secret
//! half enters this module as a 32-byte seed chosen by the caller (the browser draws it from
//! its CSPRNG, the relay from the OS); this module never draws randomness itself.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libp2p_identity::PeerId;
use std::fmt;

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key seed must be 32 bytes, got {len}")]
    SeedLength { len: usize },
    #[error("{bytes} is not a valid ed25519 public key")]
    InvalidPublicKey { bytes: String },
    #[error(
        "{text:?} is not an account: expected a peer id of an ed25519 key (12D3KooW…) or 64 hex digits"
    )]
    NotAnAccount { text: String },
}

/// An ed25519 public key: the identity of an account, a relay or a validator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The libp2p peer id of this key (identity multihash of its protobuf encoding).
    pub fn to_peer_id(&self) -> Result<PeerId, KeyError> {
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0).map_err(|_| {
            KeyError::InvalidPublicKey {
                bytes: hex::encode(self.0),
            }
        })?;
        Ok(libp2p_identity::PublicKey::from(key).to_peer_id())
    }

    /// The ed25519 key a peer id names. Peer ids of ed25519 keys embed the key itself (an
    /// identity multihash), so no lookup is needed; other peer ids are refused.
    pub fn from_peer_id(peer: &PeerId) -> Result<Self, KeyError> {
        let not_ed25519 = || KeyError::NotAnAccount {
            text: peer.to_string(),
        };
        let multihash: &multiaddr::multihash::Multihash<64> = peer.as_ref();
        if multihash.code() != 0 {
            return Err(not_ed25519());
        }
        let key = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
            .map_err(|_| not_ed25519())?
            .try_into_ed25519()
            .map_err(|_| not_ed25519())?;
        Ok(PublicKey(key.to_bytes()))
    }

    /// Reads an account written as a peer id (`12D3KooW…`, as the app shows accounts) or as
    /// 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let key = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text, &mut bytes).map_err(|_| KeyError::NotAnAccount {
                text: text.to_owned(),
            })?;
            PublicKey(bytes)
        } else {
            let peer: PeerId = text.parse().map_err(|_| KeyError::NotAnAccount {
                text: text.to_owned(),
            })?;
            Self::from_peer_id(&peer)?
        };
        // Refuse byte strings that are not curve points now, not when a signature fails.
        key.verifying_key()
            .ok_or_else(|| KeyError::InvalidPublicKey {
                bytes: hex::encode(key.0),
            })
            .map(|_| key)
    }

    pub(crate) fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
}

impl PublicKey {
    /// The account id people see and copy: the libp2p peer id of the key (its hex if the key
    /// is not a valid ed25519 point).
    pub fn account_id(&self) -> String {
        self.to_peer_id()
            .map(|p| p.to_string())
            .unwrap_or_else(|_| self.to_string())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// A signing key. Its secret never leaves this value except through [`Keypair::seed`], which
/// exists so that a wallet can encrypt it at rest.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// The keypair of a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// Like [`Keypair::from_seed`], for seeds of unchecked length (files, user input).
    pub fn try_from_seed_slice(seed: &[u8]) -> Result<Self, KeyError> {
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| KeyError::SeedLength { len: seed.len() })?;
        Ok(Self::from_seed(seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The libp2p peer id of this key.
    pub fn peer_id(&self) -> PeerId {
        self.to_libp2p().public().to_peer_id()
    }

    /// The same key as a libp2p identity, for the transport's Noise/DTLS handshakes.
    pub fn to_libp2p(&self) -> libp2p_identity::Keypair {
        let mut seed = self.seed();
        let secret = libp2p_identity::ed25519::SecretKey::try_from_bytes(&mut seed)
            .expect("every 32-byte string is a valid ed25519 secret key");
        libp2p_identity::Keypair::from(libp2p_identity::ed25519::Keypair::from(secret))
    }

    /// Signs raw bytes. Callers sign messages through [`crate::signed::Signed::sign`], which adds
    /// the domain tag; this is the primitive underneath.
    pub(crate) fn sign_bytes(&self, bytes: &[u8]) -> Signature {
        Signature(self.signing.sign(bytes).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair(public: {})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_of_keypair_and_of_public_key_agree() {
        let kp = Keypair::from_seed(&[9; 32]);
        assert_eq!(kp.public().to_peer_id(), Ok(kp.peer_id()));
    }

    #[test]
    fn seed_round_trip_and_bad_length() {
        let kp = Keypair::from_seed(&[1; 32]);
        assert_eq!(Keypair::from_seed(&kp.seed()).public(), kp.public());
        assert_eq!(
            Keypair::try_from_seed_slice(&[0; 31]).map(|k| k.public()),
            Err(KeyError::SeedLength { len: 31 })
        );
    }

    #[test]
    fn accounts_parse_from_peer_ids_and_hex() {
        let kp = Keypair::from_seed(&[5; 32]);
        let key = kp.public();
        assert_eq!(PublicKey::parse(&kp.peer_id().to_string()), Ok(key));
        assert_eq!(PublicKey::parse(&hex::encode(key.0)), Ok(key));
        assert_eq!(PublicKey::from_peer_id(&kp.peer_id()), Ok(key));
        assert!(matches!(
            PublicKey::parse("12D3KooWnotapeer"),
            Err(KeyError::NotAnAccount { .. })
        ));
        // A peer id of a secp256k1 key hashes the key: not an account here.
        let sha_peer = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        assert!(matches!(
            PublicKey::parse(sha_peer),
            Err(KeyError::NotAnAccount { .. })
        ));
    }

    #[test]
    fn invalid_public_key_is_refused() {
        // Not a point on the curve: y = 2 has no matching x.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert!(matches!(
            PublicKey(bytes).to_peer_id(),
            Err(KeyError::InvalidPublicKey { .. })
        ));
    }
}

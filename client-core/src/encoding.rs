//! The canonical encoding: Borsh.
//!
//! Borsh is deterministic by construction (one value, one byte string: fixed-width
//! little-endian integers, length-prefixed sequences, no maps with unspecified order), which
//! is what hashing and signing need. Decoding here is strict: the input must be consumed
//! exactly, and an input longer than the caller's limit is refused before it is parsed, so an
//! attacker cannot make us allocate for a length prefix it does not back with bytes.

use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes could not be turned into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed message: {reason}")]
    Malformed { reason: String },
}

/// Encodes `value` canonically.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Serialising into a Vec only fails when the writer fails, and a Vec's writer does not.
    borsh::to_vec(value).unwrap_or_default()
}

/// Decodes a value from exactly `bytes`, refusing inputs over `limit` bytes and trailing bytes.
pub fn decode<T: BorshDeserialize>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, BorshSerialize, BorshDeserialize)]
    struct Sample {
        a: u64,
        b: Vec<u8>,
    }

    #[test]
    fn round_trip_and_determinism() {
        let v = Sample {
            a: 1,
            b: vec![2, 3],
        };
        let bytes = encode(&v);
        assert_eq!(bytes, encode(&v));
        assert_eq!(hex::encode(&bytes), "0100000000000000020000000203");
        assert_eq!(decode::<Sample>(&bytes, 64), Ok(v));
    }

    #[test]
    fn refuses_trailing_bytes_truncation_and_oversize() {
        let mut bytes = encode(&Sample { a: 1, b: vec![] });
        bytes.push(0);
        assert!(matches!(
            decode::<Sample>(&bytes, 64),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<Sample>(&bytes[..5], 64),
            Err(DecodeError::Malformed { .. })
        ));
        assert_eq!(
            decode::<Sample>(&bytes, 4),
            Err(DecodeError::TooLarge { len: 13, limit: 4 })
        );
    }

    #[test]
    fn a_lying_length_prefix_does_not_allocate_or_panic() {
        // Claims a 4-billion-byte vector but supplies nothing.
        let bytes = [1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Sample>(&bytes, 64).is_err());
    }
}

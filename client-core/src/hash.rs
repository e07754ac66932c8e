//! BLAKE3 digests: the protocol's only hash function.

use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Hashes the canonical encoding of `value`.
    pub fn of_encoded<T: BorshSerialize>(value: &T) -> Self {
        let mut hasher = blake3::Hasher::new();
        // Writing into a hasher cannot fail; borsh only reports the writer's errors.
        let _ = borsh::to_writer(&mut HashWriter(&mut hasher), value);
        Hash(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Hashes a canonical encoding written in pieces: the same digest as [`Hash::of_encoded`] of
/// a value whose encoding is the concatenation of the pieces.
#[derive(Default)]
pub struct Hasher(blake3::Hasher);

impl Hasher {
    /// Appends the canonical encoding of `value`.
    pub fn encoded<T: BorshSerialize>(&mut self, value: &T) -> &mut Self {
        // Writing into a hasher cannot fail; borsh only reports the writer's errors.
        let _ = borsh::to_writer(&mut HashWriter(&mut self.0), value);
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    pub fn finish(&self) -> Hash {
        Hash(*self.0.finalize().as_bytes())
    }
}

struct HashWriter<'a>(&'a mut blake3::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_of_encoded_equals_hash_of_encoding() {
        let value = (7u32, String::from("aqueduct"));
        let bytes = borsh::to_vec(&value).expect("encoding a tuple");
        assert_eq!(Hash::of_encoded(&value), Hash::of(&bytes));
    }

    #[test]
    fn known_blake3_digest() {
        // BLAKE3 of the empty input, from the BLAKE3 specification's test vectors.
        assert_eq!(
            Hash::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}

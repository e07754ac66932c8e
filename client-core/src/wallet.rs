//! The customer's wallet: a recovery phrase, the account key derived from it, the key sealed
//! under a password for storage at rest, the backup file, and the idle lock.
//!
//! Like the rest of the pure core this module does no I/O and draws no randomness: the caller
//! hands in the phrase entropy, the salt and the nonce (the browser takes them from its CSPRNG),
//! and gets back values to store wherever it likes (the browser keeps them in IndexedDB).
//!
//! - **Phrase**: BIP-39 (English word list, checksummed), 24 words for new wallets; any valid
//!   BIP-39 length is accepted when restoring.
//! - **Account key**: the BIP-39 seed (PBKDF2-HMAC-SHA512 of the phrase, empty passphrase) run
//!   through BLAKE3's key derivation with the context [`ACCOUNT_KEY_CONTEXT`]; the 32 bytes are
//!   the ed25519 secret seed. The same phrase gives the same account everywhere.
//! - **Sealing**: Argon2id turns the password into a 256-bit key (parameters stored beside the
//!   ciphertext, so they can be raised later without breaking old wallets); XChaCha20-Poly1305
//!   encrypts the phrase entropy, with the account, the parameters and the salt as associated
//!   data, so none of them can be swapped without the decryption failing.
//! - **Backup file**: a JSON document with every field in hex and a BLAKE3 checksum over the
//!   sealed wallet. The checksum is what lets us tell a damaged file ("corrupted") apart from a
//!   wrong password: without it both would only show up as a failed decryption.

use crate::encoding::encode;
use crate::hash::Hash;
use crate::identity::{Keypair, PublicKey};
use borsh::{BorshDeserialize, BorshSerialize};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// BLAKE3 key-derivation context from the BIP-39 seed to the account's ed25519 secret.
pub const ACCOUNT_KEY_CONTEXT: &str = "aqueduct v1 account key from a BIP-39 seed";
/// Words in a newly created phrase (256 bits of entropy).
pub const NEW_PHRASE_WORDS: usize = 24;
/// Bytes of entropy behind a new phrase.
pub const ENTROPY_LEN: usize = 32;
/// The shortest password accepted when sealing.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The `format` field of a backup file.
pub const BACKUP_FORMAT: &str = "aqueduct-wallet-backup";
/// The backup file version this code writes and reads.
pub const BACKUP_VERSION: u32 = 1;
/// Domain tag bound into the encryption as associated data.
const SEAL_DOMAIN: &str = "aqueduct/v1/wallet";

/// Everything that can go wrong with a wallet, each in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("a recovery phrase has 12, 15, 18, 21 or 24 words; this one has {words}")]
    PhraseWordCount { words: usize },
    #[error("word {position} (\"{word}\") is not in the recovery word list")]
    PhraseUnknownWord { position: usize, word: String },
    #[error(
        "the words are all valid but their checksum does not match: a word is wrong or out of place"
    )]
    PhraseChecksum,
    #[error("the recovery phrase is not valid: {reason}")]
    PhraseInvalid { reason: String },
    #[error("the password must have at least {min} characters")]
    PasswordTooShort { min: usize },
    #[error("wrong password")]
    WrongPassword,
    #[error("this is not a wallet backup file: {reason}")]
    BackupNotRecognised { reason: String },
    #[error(
        "this backup was written by a newer version (format version {version}); this app reads version {BACKUP_VERSION}"
    )]
    BackupVersion { version: u32 },
    #[error("the backup file is corrupted: {reason}")]
    BackupCorrupted { reason: String },
    #[error("the key-derivation parameters are not acceptable: {reason}")]
    KdfParams { reason: String },
    #[error("the wallet key could not be derived: {reason}")]
    KeyDerivation { reason: String },
}

/// The entropy behind a recovery phrase (16 to 32 bytes), wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Entropy(Zeroizing<Vec<u8>>);

impl Entropy {
    /// Entropy for a new wallet, from bytes the caller drew from a CSPRNG.
    pub fn new(bytes: [u8; ENTROPY_LEN]) -> Self {
        Entropy(Zeroizing::new(bytes.to_vec()))
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, WalletError> {
        bip39::Mnemonic::from_entropy(bytes).map_err(|e| WalletError::PhraseInvalid {
            reason: e.to_string(),
        })?;
        Ok(Entropy(Zeroizing::new(bytes.to_vec())))
    }

    /// Parses a recovery phrase typed by a user: case and spacing do not matter.
    pub fn from_phrase(phrase: &str) -> Result<Self, WalletError> {
        let normalized = normalize_phrase(phrase);
        let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
        let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
            .map_err(|e| match e {
                bip39::Error::BadWordCount(n) => WalletError::PhraseWordCount { words: n },
                bip39::Error::UnknownWord(i) => WalletError::PhraseUnknownWord {
                    position: i + 1,
                    word: words.get(i).copied().unwrap_or_default().to_owned(),
                },
                bip39::Error::InvalidChecksum => WalletError::PhraseChecksum,
                other => WalletError::PhraseInvalid {
                    reason: other.to_string(),
                },
            })?;
        let (bytes, len) = mnemonic.to_entropy_array();
        let entropy = Entropy(Zeroizing::new(bytes[..len].to_vec()));
        Ok(entropy)
    }

    /// The recovery phrase of this entropy, words separated by single spaces.
    pub fn phrase(&self) -> Zeroizing<String> {
        // The entropy was checked when this value was made, so this cannot fail; an empty
        // phrase would be refused by `from_phrase` anyway.
        let phrase = bip39::Mnemonic::from_entropy(&self.0)
            .map(|m| m.to_string())
            .unwrap_or_default();
        Zeroizing::new(phrase)
    }

    /// The account key of this phrase.
    pub fn keypair(&self) -> Keypair {
        let seed = self.seed();
        let secret = Zeroizing::new(blake3::derive_key(ACCOUNT_KEY_CONTEXT, seed.as_ref()));
        Keypair::from_seed(&secret)
    }

    fn seed(&self) -> Zeroizing<[u8; 64]> {
        // BIP-39's seed with an empty passphrase: PBKDF2-HMAC-SHA512 of the phrase (ASCII, so
        // already in normal form) salted with "mnemonic", 2048 rounds. Computed here rather
        // than by the bip39 crate so the page links one SHA-512, the one ed25519 signs with.
        let mut seed = Zeroizing::new([0u8; 64]);
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(
            self.phrase().as_bytes(),
            b"mnemonic",
            2048,
            seed.as_mut(),
        );
        seed
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entropy({} bytes)", self.0.len())
    }
}

/// Lower case, words separated by single spaces: what people paste is full of line breaks,
/// numbering-free double spaces and capitals. The English word list is ASCII, so ASCII case
/// folding is enough (a word with any other letter is refused by the parser either way), and
/// the page's bundle carries no Unicode case tables for it.
fn normalize_phrase(phrase: &str) -> String {
    phrase
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Argon2id parameters, stored with every sealed wallet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// What new wallets use: 64 MiB and 3 passes, chosen so that unlocking takes about a second
    /// in Chromium on an ordinary machine (the README has the measured figure). An attacker who
    /// steals the stored wallet pays the same per password guess.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// The bounds a stored wallet's parameters must respect before we run Argon2 with them:
    /// a doctored backup must not make the page allocate gigabytes or spin for minutes.
    pub fn check(&self) -> Result<(), WalletError> {
        let bad = |reason: &str| {
            Err(WalletError::KdfParams {
                reason: reason.to_owned(),
            })
        };
        if !(8 * 1024..=1024 * 1024).contains(&self.memory_kib) {
            return bad("memory must be between 8 MiB and 1 GiB");
        }
        if !(1..=16).contains(&self.iterations) {
            return bad("iterations must be between 1 and 16");
        }
        if self.parallelism != 1 {
            return bad("parallelism must be 1 (the browser runs Argon2 on one thread)");
        }
        Ok(())
    }

    /// The key sealing a wallet: Argon2id of `password` and `salt` under these parameters
    /// (checked first). The slow step of sealing and opening, so a page can run it elsewhere
    /// (a worker) and pass the key to [`SealedWallet::seal_with_key`] or
    /// [`SealedWallet::open_with_key`].
    pub fn derive(
        &self,
        password: &str,
        salt: &[u8; 16],
    ) -> Result<Zeroizing<[u8; 32]>, WalletError> {
        self.check()?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| WalletError::KdfParams {
                    reason: e.to_string(),
                })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password.as_bytes(), salt, key.as_mut())
            .map_err(|e| WalletError::KdfParams {
                reason: e.to_string(),
            })?;
        Ok(key)
    }
}

/// The random values a seal needs, drawn by the caller.
#[derive(Debug, Clone, Copy)]
pub struct SealRandomness {
    pub salt: [u8; 16],
    pub nonce: [u8; 24],
}

/// A wallet encrypted under a password: what is stored at rest and written to backups.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SealedWallet {
    /// The account the sealed key belongs to (readable while locked).
    pub account: PublicKey,
    pub kdf: KdfParams,
    pub salt: [u8; 16],
    pub nonce: [u8; 24],
    /// XChaCha20-Poly1305 of the phrase entropy, tag included.
    pub ciphertext: Vec<u8>,
}

impl SealedWallet {
    /// Encrypts `entropy` under `password`.
    pub fn seal(
        entropy: &Entropy,
        password: &str,
        kdf: KdfParams,
        randomness: SealRandomness,
    ) -> Result<Self, WalletError> {
        Self::check_password(password)?;
        let key = kdf.derive(password, &randomness.salt)?;
        Self::seal_with_key(entropy, &key, kdf, randomness)
    }

    /// Whether `password` may seal a wallet (long enough).
    pub fn check_password(password: &str) -> Result<(), WalletError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(WalletError::PasswordTooShort {
                min: MIN_PASSWORD_CHARS,
            });
        }
        Ok(())
    }

    /// [`SealedWallet::seal`] with the key already derived: `kdf.derive(password, salt)`.
    pub fn seal_with_key(
        entropy: &Entropy,
        key: &[u8; 32],
        kdf: KdfParams,
        randomness: SealRandomness,
    ) -> Result<Self, WalletError> {
        let account = entropy.keypair().public();
        let aad = associated_data(&account, &kdf, &randomness.salt);
        let cipher = XChaCha20Poly1305::new(key.into());
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&randomness.nonce),
                Payload {
                    msg: entropy.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| WalletError::KdfParams {
                reason: "encryption failed".into(),
            })?;
        Ok(SealedWallet {
            account,
            kdf,
            salt: randomness.salt,
            nonce: randomness.nonce,
            ciphertext,
        })
    }

    /// Decrypts with `password`. A wrong password and a sealed wallet altered after sealing
    /// both fail authentication; the backup checksum tells the two apart before we get here.
    pub fn open(&self, password: &str) -> Result<Unlocked, WalletError> {
        let key = self.kdf.derive(password, &self.salt)?;
        self.open_with_key(&key)
    }

    /// [`SealedWallet::open`] with the key already derived: `self.kdf.derive(password,
    /// &self.salt)`. A key from the wrong password fails as [`WalletError::WrongPassword`].
    pub fn open_with_key(&self, key: &[u8; 32]) -> Result<Unlocked, WalletError> {
        let aad = associated_data(&self.account, &self.kdf, &self.salt);
        let cipher = XChaCha20Poly1305::new(key.into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&self.nonce),
                    Payload {
                        msg: &self.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| WalletError::WrongPassword)?,
        );
        let entropy = Entropy::from_slice(&plain).map_err(|e| WalletError::BackupCorrupted {
            reason: format!("the decrypted key is not valid: {e}"),
        })?;
        let keypair = entropy.keypair();
        if keypair.public() != self.account {
            return Err(WalletError::BackupCorrupted {
                reason: "the decrypted key belongs to another account".into(),
            });
        }
        Ok(Unlocked { entropy, keypair })
    }

    /// The account id people see and copy: the libp2p peer id of the account key.
    pub fn account_id(&self) -> String {
        self.account.account_id()
    }

    /// The backup file (and the stored form): pretty JSON with a checksum.
    pub fn to_backup(&self) -> String {
        let file = BackupFile {
            format: BACKUP_FORMAT.to_owned(),
            version: BACKUP_VERSION,
            account: self.account_id(),
            public_key: hex::encode(self.account.0),
            kdf: BackupKdf {
                algorithm: "argon2id".into(),
                memory_kib: self.kdf.memory_kib,
                iterations: self.kdf.iterations,
                parallelism: self.kdf.parallelism,
                salt: hex::encode(self.salt),
            },
            cipher: BackupCipher {
                algorithm: "xchacha20poly1305".into(),
                nonce: hex::encode(self.nonce),
                ciphertext: hex::encode(&self.ciphertext),
            },
            checksum: Hash::of_encoded(self).to_string(),
        };
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Reads a backup file, telling apart "not a backup", "newer version" and "corrupted".
    pub fn from_backup(text: &str) -> Result<Self, WalletError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| WalletError::BackupNotRecognised {
                reason: format!("not JSON ({e})"),
            })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(BACKUP_FORMAT) {
            return Err(WalletError::BackupNotRecognised {
                reason: format!("it has no \"format\": \"{BACKUP_FORMAT}\" field"),
            });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(BACKUP_VERSION) => {}
            Some(v) => {
                return Err(WalletError::BackupVersion {
                    version: u32::try_from(v).unwrap_or(u32::MAX),
                });
            }
            None => {
                return Err(WalletError::BackupCorrupted {
                    reason: "the version field is missing".into(),
                });
            }
        }
        let corrupted = |reason: String| WalletError::BackupCorrupted { reason };
        let file: BackupFile =
            serde_json::from_value(value).map_err(|e| corrupted(format!("{e}")))?;
        if file.kdf.algorithm != "argon2id" || file.cipher.algorithm != "xchacha20poly1305" {
            return Err(corrupted(format!(
                "unknown algorithms {} / {}",
                file.kdf.algorithm, file.cipher.algorithm
            )));
        }
        let sealed = SealedWallet {
            account: PublicKey(hex_array(&file.public_key, "public_key")?),
            kdf: KdfParams {
                memory_kib: file.kdf.memory_kib,
                iterations: file.kdf.iterations,
                parallelism: file.kdf.parallelism,
            },
            salt: hex_array(&file.kdf.salt, "salt")?,
            nonce: hex_array(&file.cipher.nonce, "nonce")?,
            ciphertext: hex::decode(&file.cipher.ciphertext)
                .map_err(|e| corrupted(format!("ciphertext: {e}")))?,
        };
        if Hash::of_encoded(&sealed).to_string() != file.checksum {
            return Err(corrupted("the checksum does not match its contents".into()));
        }
        if sealed.account_id() != file.account {
            return Err(corrupted(
                "the account id does not match the public key".into(),
            ));
        }
        sealed.kdf.check()?;
        Ok(sealed)
    }
}

fn hex_array<const N: usize>(text: &str, field: &str) -> Result<[u8; N], WalletError> {
    let bytes = hex::decode(text).map_err(|e| WalletError::BackupCorrupted {
        reason: format!("{field}: {e}"),
    })?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| WalletError::BackupCorrupted {
            reason: format!("{field}: {} bytes, expected {N}", b.len()),
        })
}

fn associated_data(account: &PublicKey, kdf: &KdfParams, salt: &[u8; 16]) -> Vec<u8> {
    encode(&(SEAL_DOMAIN, account, kdf, salt))
}

#[derive(Serialize, Deserialize)]
struct BackupFile {
    format: String,
    version: u32,
    account: String,
    public_key: String,
    kdf: BackupKdf,
    cipher: BackupCipher,
    checksum: String,
}

#[derive(Serialize, Deserialize)]
struct BackupKdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct BackupCipher {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

/// An opened wallet: the phrase entropy and the account key, both wiped when dropped.
#[derive(Debug, Clone)]
pub struct Unlocked {
    pub entropy: Entropy,
    pub keypair: Keypair,
}

/// Locks the wallet after a period without user activity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleLock {
    pub timeout_ms: f64,
    last_activity_ms: f64,
}

impl IdleLock {
    /// The choices the app offers, in minutes.
    pub const CHOICES_MIN: [u32; 4] = [1, 5, 15, 60];
    /// The default: 15 minutes.
    pub const DEFAULT_MIN: u32 = 15;

    pub fn new(timeout_ms: f64, now_ms: f64) -> Self {
        IdleLock {
            timeout_ms,
            last_activity_ms: now_ms,
        }
    }

    /// The user did something.
    pub fn touch(&mut self, now_ms: f64) {
        self.last_activity_ms = self.last_activity_ms.max(now_ms);
    }

    /// Milliseconds left before the lock, zero once it is due.
    pub fn remaining_ms(&self, now_ms: f64) -> f64 {
        (self.last_activity_ms + self.timeout_ms - now_ms).max(0.0)
    }

    pub fn due(&self, now_ms: f64) -> bool {
        self.remaining_ms(now_ms) <= 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the tests run fast; the checks do not depend on the cost.
    const FAST: KdfParams = KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    const RANDOM: SealRandomness = SealRandomness {
        salt: [7; 16],
        nonce: [9; 24],
    };

    fn sealed() -> (Entropy, SealedWallet) {
        let entropy = Entropy::new([42; 32]);
        let sealed = SealedWallet::seal(&entropy, "correct horse", FAST, RANDOM).expect("seal");
        (entropy, sealed)
    }

    #[test]
    fn bip39_reference_vector() {
        // The first 24-word vector of the BIP-39 reference list (all-zero entropy).
        let entropy = Entropy::new([0; 32]);
        let phrase = entropy.phrase();
        assert_eq!(
            phrase.as_str(),
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
             abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
             abandon abandon abandon art"
        );
        assert_eq!(phrase.split(' ').count(), NEW_PHRASE_WORDS);
    }

    #[test]
    fn seed_is_bip39s() {
        // The account key of every existing wallet hangs on this seed: it must stay the one
        // the bip39 crate computes, for every phrase length.
        for (len, fill) in [(16, 0u8), (20, 7), (24, 0x5a), (28, 0xff), (32, 3)] {
            let entropy = Entropy::from_slice(&vec![fill; len]).expect("valid length");
            let expected = bip39::Mnemonic::from_entropy(entropy.as_bytes())
                .expect("valid entropy")
                .to_seed_normalized("");
            assert_eq!(*entropy.seed(), expected, "{len} bytes of {fill}");
        }
    }

    #[test]
    fn phrase_round_trip_tolerates_case_and_spacing() {
        let entropy = Entropy::new([5; 32]);
        let messy = format!(
            "  {}\n",
            entropy.phrase().to_uppercase().replace(' ', "   ")
        );
        let back = Entropy::from_phrase(&messy).expect("parse");
        assert_eq!(back, entropy);
        assert_eq!(back.keypair().public(), entropy.keypair().public());
    }

    #[test]
    fn twelve_word_phrases_restore() {
        let twelve = "legal winner thank year wave sausage worth useful legal winner thank yellow";
        let entropy = Entropy::from_phrase(twelve).expect("a reference 12-word phrase");
        assert_eq!(entropy.as_bytes(), &[0x7f; 16]);
        assert_eq!(entropy.phrase().as_str(), twelve);
    }

    #[test]
    fn bad_phrases_get_distinct_errors() {
        let phrase = Entropy::new([5; 32]).phrase();
        let words: Vec<&str> = phrase.split(' ').collect();
        assert_eq!(
            Entropy::from_phrase(&words[..23].join(" ")),
            Err(WalletError::PhraseWordCount { words: 23 })
        );
        let mut unknown = words.clone();
        unknown[3] = "aqueduct";
        assert_eq!(
            Entropy::from_phrase(&unknown.join(" ")),
            Err(WalletError::PhraseUnknownWord {
                position: 4,
                word: "aqueduct".into()
            })
        );
        let mut swapped = words.clone();
        swapped.swap(0, 1);
        if swapped != words {
            assert_eq!(
                Entropy::from_phrase(&swapped.join(" ")),
                Err(WalletError::PhraseChecksum)
            );
        }
    }

    #[test]
    fn seal_and_open() {
        let (entropy, sealed) = sealed();
        let unlocked = sealed.open("correct horse").expect("open");
        assert_eq!(unlocked.entropy, entropy);
        assert_eq!(unlocked.keypair.public(), sealed.account);
        assert_eq!(
            sealed.open("wrong horse").err(),
            Some(WalletError::WrongPassword)
        );
    }

    #[test]
    fn short_password_refused() {
        let entropy = Entropy::new([1; 32]);
        assert_eq!(
            SealedWallet::seal(&entropy, "short", FAST, RANDOM).err(),
            Some(WalletError::PasswordTooShort {
                min: MIN_PASSWORD_CHARS
            })
        );
    }

    #[test]
    fn a_key_derived_elsewhere_seals_and_opens_the_same_way() {
        let entropy = Entropy::new([7; ENTROPY_LEN]);
        let key = FAST.derive("correct horse", &RANDOM.salt).expect("derive");
        let sealed = SealedWallet::seal_with_key(&entropy, &key, FAST, RANDOM).expect("seal");
        assert_eq!(
            sealed,
            SealedWallet::seal(&entropy, "correct horse", FAST, RANDOM).expect("seal")
        );
        let opened = sealed.open_with_key(&key).expect("open");
        assert_eq!(opened.keypair.public(), sealed.account);
        let wrong = FAST.derive("wrong horse", &RANDOM.salt).expect("derive");
        assert_eq!(
            sealed.open_with_key(&wrong).err(),
            Some(WalletError::WrongPassword)
        );
    }

    #[test]
    fn associated_data_binds_account_and_parameters() {
        let (_, sealed) = sealed();
        let mut other_account = sealed.clone();
        other_account.account = Entropy::new([1; 32]).keypair().public();
        assert_eq!(
            other_account.open("correct horse").err(),
            Some(WalletError::WrongPassword)
        );
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert_eq!(
            flipped.open("correct horse").err(),
            Some(WalletError::WrongPassword)
        );
    }

    #[test]
    fn backup_round_trip() {
        let (_, sealed) = sealed();
        let text = sealed.to_backup();
        assert!(text.contains(BACKUP_FORMAT));
        assert!(text.contains(&sealed.account_id()));
        assert_eq!(SealedWallet::from_backup(&text), Ok(sealed));
    }

    #[test]
    fn damaged_backups_are_told_apart_from_wrong_passwords() {
        let (_, sealed) = sealed();
        let text = sealed.to_backup();
        // A flipped hex digit in the ciphertext: the checksum catches it.
        let ct = hex::encode(&sealed.ciphertext);
        let mut damaged_ct = ct.clone().into_bytes();
        damaged_ct[4] = if damaged_ct[4] == b'0' { b'1' } else { b'0' };
        let damaged = text.replace(&ct, std::str::from_utf8(&damaged_ct).expect("hex"));
        assert!(matches!(
            SealedWallet::from_backup(&damaged),
            Err(WalletError::BackupCorrupted { .. })
        ));
        // Cut short: no longer JSON.
        assert!(matches!(
            SealedWallet::from_backup(&text[..text.len() / 2]),
            Err(WalletError::BackupNotRecognised { .. })
        ));
        // Some other JSON file.
        assert!(matches!(
            SealedWallet::from_backup("{\"name\": \"photo.json\"}"),
            Err(WalletError::BackupNotRecognised { .. })
        ));
        // From the future.
        let future = text.replace("\"version\": 1", "\"version\": 2");
        assert_eq!(
            SealedWallet::from_backup(&future),
            Err(WalletError::BackupVersion { version: 2 })
        );
        // A field removed.
        let missing = text.replace("\"nonce\"", "\"n0nce\"");
        assert!(matches!(
            SealedWallet::from_backup(&missing),
            Err(WalletError::BackupCorrupted { .. })
        ));
    }

    #[test]
    fn doctored_kdf_parameters_are_refused_before_running() {
        let (_, mut sealed) = sealed();
        sealed.kdf.memory_kib = 16 * 1024 * 1024;
        let text = sealed.to_backup();
        assert!(matches!(
            SealedWallet::from_backup(&text),
            Err(WalletError::KdfParams { .. })
        ));
        assert!(matches!(
            sealed.open("correct horse"),
            Err(WalletError::KdfParams { .. })
        ));
        assert_eq!(KdfParams::DEFAULT.check(), Ok(()));
    }

    #[test]
    fn idle_lock() {
        let mut lock = IdleLock::new(60_000.0, 1_000.0);
        assert!(!lock.due(60_999.0));
        assert!(lock.due(61_000.0));
        lock.touch(30_000.0);
        assert!(!lock.due(61_000.0));
        assert_eq!(lock.remaining_ms(80_000.0), 10_000.0);
        // A clock reading from before the last activity does not move it back.
        lock.touch(10.0);
        assert_eq!(lock.remaining_ms(80_000.0), 10_000.0);
    }
}

//! Known-answer vectors: a fixed seed gives a fixed public key, PeerId, signed bytes and
//! signature. The same file runs natively (`cargo test`) and in headless Chromium
//! (`cargo test --target wasm32-unknown-unknown`), so any difference between the two builds
//! of the core — encoding, hashing, key derivation, signing — fails here.

use borsh::{BorshDeserialize, BorshSerialize};
use client_core::encoding::encode;
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::identity::Keypair;
use client_core::signed::{Domain, Signed, signing_bytes};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
struct Vector {
    text: String,
    amount: u64,
}

impl Domain for Vector {
    const TAG: &'static str = "aqueduct/v1/known-answer";
}

fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = i as u8;
    }
    seed
}

fn request() -> Request<Vector> {
    Request {
        network_id: "aqueduct-dev".into(),
        nonce: 42,
        issued_at_ms: 1_767_225_600_000,
        expires_at_ms: 1_767_225_660_000,
        body: Vector {
            text: "hello relay".into(),
            amount: 7,
        },
    }
}

// The public key of seed 00 01 … 1f is a widely published ed25519 value; the rest were
// computed by this implementation once and are frozen here: a change means the wire format or
// the signing scheme changed, which needs a protocol version bump, not a new vector.
const PUBLIC_KEY: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
const PEER_ID: &str = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB";
const SIGNED_BYTES: &str = concat!(
    "1800000061717565647563742f76312f6b6e6f776e2d616e73776572", // tag, length-prefixed
    "0c00000061717565647563742d646576",                         // network id
    "2a00000000000000",                                         // nonce
    "00a8da769b010000",                                         // issued at (ms)
    "6092db769b010000",                                         // expires at (ms)
    "0b00000068656c6c6f2072656c6179",                           // body.text
    "0700000000000000",                                         // body.amount
);
const SIGNATURE: &str = concat!(
    "3ee5fc3150d25bbe48abc36e9755207ec0105a264601524e5a81ffd5eebd49eb",
    "d3656037311aff6f662a6872084a8ffd6e918ceb3b35c05e568c623ab8165004",
);
const ENVELOPE_HASH: &str = "0a7d14bcdd00b6a67c0e3a7fdc4128a0914faa6f8289e9dea10a149e27ce81f8";

#[test]
fn public_key_and_peer_id() {
    let kp = Keypair::from_seed(&seed());
    assert_eq!(kp.public().to_string(), PUBLIC_KEY);
    assert_eq!(kp.peer_id().to_string(), PEER_ID);
}

#[test]
fn signed_bytes_and_signature() {
    let kp = Keypair::from_seed(&seed());
    assert_eq!(hex::encode(signing_bytes(&request())), SIGNED_BYTES);
    let signed = Signed::sign(&kp, request());
    assert_eq!(hex::encode(signed.signature.0), SIGNATURE);
    assert_eq!(signed.verify(), Ok(&request()));
}

#[test]
fn envelope_encoding_and_hash() {
    let signed = Signed::sign(&Keypair::from_seed(&seed()), request());
    let bytes = encode(&signed);
    assert_eq!(Hash::of(&bytes).to_string(), ENVELOPE_HASH);
    let decoded: Signed<Request<Vector>> =
        client_core::encoding::decode(&bytes, 1024).expect("vector decodes");
    assert_eq!(decoded, signed);
}

/// The wallet: a fixed phrase gives a fixed account, and sealing with fixed randomness and
/// fixed (cheap) Argon2id parameters gives fixed bytes. A change here would lock people out of
/// their stored wallets or move their account, so both builds must agree with these values.
mod wallet {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use client_core::wallet::{Entropy, KdfParams, SealRandomness, SealedWallet};

    const PHRASE: &str =
        "legal winner thank year wave sausage worth useful legal winner thank yellow";
    const ACCOUNT: &str = "12D3KooW9pzHdkJyReHnSrxDuwcGEGENrBjBCMQFyxwgnCsYGCXb";
    const CIPHERTEXT: &str = "9ea9b835e88010f90e303212b78de083ee7a021e8a0ad20ed75d1958a19d0513";

    #[test]
    fn phrase_to_account() {
        let entropy = Entropy::from_phrase(PHRASE).expect("a reference phrase");
        assert_eq!(entropy.keypair().peer_id().to_string(), ACCOUNT);
    }

    #[test]
    fn sealed_bytes_and_opening() {
        let entropy = Entropy::from_phrase(PHRASE).expect("a reference phrase");
        let kdf = KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        let randomness = SealRandomness {
            salt: [3; 16],
            nonce: [4; 24],
        };
        let sealed = SealedWallet::seal(&entropy, "known answer", kdf, randomness).expect("seal");
        assert_eq!(hex::encode(&sealed.ciphertext), CIPHERTEXT);
        let opened = sealed.open("known answer").expect("open");
        assert_eq!(opened.entropy, entropy);
    }
}

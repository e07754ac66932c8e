//! The wallet's key derivation (Argon2id, about a second) off the page's main thread.
//!
//! The app's worker (`worker.js`, with its own wasm: see `worker.rs`) derives the key; the page
//! sends the password, salt and parameters and gets the 32-byte key back, then seals or opens
//! the wallet itself (the cheap XChaCha20-Poly1305 step). While the worker works, the page
//! keeps handling input and painting. The page's bundle carries no Argon2id of its own: where
//! no worker can be started, unlocking fails with the reason (every browser the app supports
//! runs module workers; the job engine needs the same worker).

use client_core::wallet::{KdfParams, WalletError};
use zeroize::Zeroizing;

/// Where the app's worker script is served (beside the bundle, at the site's root); it also
/// prepares job modules and checks results (see `client_core::job_client::Engine`).
pub const WORKER_URL: &str = "/worker.js";

/// Derives the wallet key in the app's worker.
pub async fn derive(
    kdf: KdfParams,
    password: &str,
    salt: [u8; 16],
) -> Result<Zeroizing<[u8; 32]>, WalletError> {
    kdf.check()?;
    client_core::worker::derive_key(WORKER_URL, kdf, password, salt)
        .await
        .map_err(|e| WalletError::KeyDerivation {
            reason: e.message(),
        })
}

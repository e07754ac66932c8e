//! The wallet's key derivation (Argon2id, about a second) off the page's main thread.
//!
//! The app's worker (`worker.js`, with its own wasm: see `worker.rs`) derives the key; the page
//! sends the password, salt and parameters and gets the 32-byte key back, then seals or opens
//! the wallet itself (the cheap XChaCha20-Poly1305 step). While the worker works, the page
//! keeps handling input and painting. The page's bundle carries no Argon2id of its own: where
//! no worker can be started, unlocking fails with the reason (every browser the app supports
//! runs module workers; the job engine needs the same worker).

use client_core::browser::{WorkerLife, call_worker, js_error};
use client_core::wallet::{KdfParams, WalletError};
use wasm_bindgen::{JsCast, JsValue};
use zeroize::Zeroizing;

/// Where the app's worker script is served (beside the bundle, at the site's root); it also
/// prepares job modules and checks results (see `client_core::job_client::Engine`).
pub const WORKER_URL: &str = "/worker.js";
/// A worker that has not answered by then (its wasm did not load, say) is given up.
const WORKER_TIMEOUT_MS: u32 = 30_000;

/// Derives the wallet key in the app's worker.
pub async fn derive(
    kdf: KdfParams,
    password: &str,
    salt: [u8; 16],
) -> Result<Zeroizing<[u8; 32]>, WalletError> {
    kdf.check()?;
    in_worker(kdf, password, salt)
        .await
        .map_err(|reason| WalletError::KeyDerivation { reason })
}

async fn in_worker(
    kdf: KdfParams,
    password: &str,
    salt: [u8; 16],
) -> Result<Zeroizing<[u8; 32]>, String> {
    let request = js_sys::Object::new();
    let set = |name: &str, value: &JsValue| js_sys::Reflect::set(&request, &name.into(), value);
    set("kind", &"kdf".into())
        .and_then(|_| set("password", &password.into()))
        .and_then(|_| set("salt", &js_sys::Uint8Array::from(&salt[..]).into()))
        .and_then(|_| set("memoryKib", &kdf.memory_kib.into()))
        .and_then(|_| set("iterations", &kdf.iterations.into()))
        .and_then(|_| set("parallelism", &kdf.parallelism.into()))
        .map_err(|e| js_error(&e))?;
    let answer = call_worker(
        WORKER_URL,
        &request,
        &js_sys::Array::new(),
        &|_| {},
        WORKER_TIMEOUT_MS,
        // Argon2id's memory (tens of MiB) goes with the worker.
        WorkerLife::OneCall,
    )
    .await
    .map_err(|e| e.message())?;
    let key = answer
        .dyn_into::<js_sys::Uint8Array>()
        .map_err(|_| "the worker's answer has no key".to_owned())?;
    let mut out = Zeroizing::new([0u8; 32]);
    if key.length() != 32 {
        return Err(format!(
            "the worker's key is {} bytes, not 32",
            key.length()
        ));
    }
    key.copy_to(out.as_mut());
    key.fill(0, 0, 32);
    Ok(out)
}

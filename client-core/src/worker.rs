//! The background worker that pages hand their long computations to (wasm32, feature
//! `browser`): the wallet's key derivation (Argon2id), the validation and instrumentation of a
//! job module, the re-execution or sampling of a job's result and a referee's re-runs.
//!
//! The worker is a module script (`www/worker.js`) that imports a wasm-bindgen bundle
//! exporting the four functions of [`worker_exports!`] — the app's own worker bundle and the
//! SDK's package both invoke that macro — and answers one request at a time:
//!
//! - `{kind: "kdf", password, salt, memoryKib, iterations, parallelism}` → `{result: key}`
//! - `{kind: "prepare", module}` → `{result: the encoded prepared module}`
//! - `{kind: "check", task}` → `{progress: {done, total}}`…, then `{result: bytes}`
//! - `{kind: "rerun", task}` → `{result: the encoded initial state or step}`
//!
//! or with `{error, check?}`, where `check` names a verification that failed. The page's side
//! of each request is [`crate::browser::call_worker`]; this module has the key derivation's,
//! and the job engine's is in [`crate::job_client`] and [`crate::referee_client`].

use crate::browser::{WorkerError, WorkerLife, call_worker, js_error};
use crate::wallet::KdfParams;
use wasm_bindgen::{JsCast, JsValue};
use zeroize::Zeroizing;

/// A key derivation that has not answered by then (its wasm did not load, say) is given up.
const KDF_STALL_MS: u32 = 30_000;

/// Derives the 32-byte wallet key (Argon2id of `password` and `salt`) in a one-call worker
/// started from `url`: its tens of MiB go with the worker when it is terminated.
pub async fn derive_key(
    url: &str,
    kdf: KdfParams,
    password: &str,
    salt: [u8; 16],
) -> Result<Zeroizing<[u8; 32]>, WorkerError> {
    let unavailable = WorkerError::Unavailable;
    let request = js_sys::Object::new();
    let set = |name: &str, value: &JsValue| js_sys::Reflect::set(&request, &name.into(), value);
    set("kind", &"kdf".into())
        .and_then(|_| set("password", &password.into()))
        .and_then(|_| set("salt", &js_sys::Uint8Array::from(&salt[..]).into()))
        .and_then(|_| set("memoryKib", &kdf.memory_kib.into()))
        .and_then(|_| set("iterations", &kdf.iterations.into()))
        .and_then(|_| set("parallelism", &kdf.parallelism.into()))
        .map_err(|e| unavailable(js_error(&e)))?;
    let answer = call_worker(
        url,
        &request,
        &js_sys::Array::new(),
        &|_| {},
        KDF_STALL_MS,
        WorkerLife::OneCall,
    )
    .await?;
    let key = answer
        .dyn_into::<js_sys::Uint8Array>()
        .map_err(|_| unavailable("the worker's answer has no key".into()))?;
    if key.length() != 32 {
        return Err(unavailable(format!(
            "the worker's key is {} bytes, not 32",
            key.length()
        )));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    key.copy_to(out.as_mut());
    key.fill(0, 0, 32);
    Ok(out)
}

/// The worker's `kdf`: Argon2id of `password` and `salt` under the given parameters.
pub fn derive_key_here(
    password: &str,
    salt: &[u8],
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
) -> Result<Vec<u8>, JsValue> {
    let salt: [u8; 16] = salt
        .try_into()
        .map_err(|_| JsValue::from_str("the salt must be 16 bytes"))?;
    let kdf = KdfParams {
        memory_kib,
        iterations,
        parallelism,
    };
    let key = kdf
        .derive(password, &salt)
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    Ok(key.to_vec())
}

/// The worker's `prepare` (see [`crate::job_client::prepare_here`]), errors as `Error`s.
pub fn prepare_here(module: &[u8]) -> Result<Vec<u8>, JsValue> {
    crate::job_client::prepare_here(module).map_err(|reason| js_sys::Error::new(&reason).into())
}

/// The worker's `rerun` (see [`crate::referee_client::rerun_here`]), errors as `Error`s.
pub fn rerun_here(task: &[u8]) -> Result<Vec<u8>, JsValue> {
    crate::referee_client::rerun_here(task).map_err(|reason| js_sys::Error::new(&reason).into())
}

/// The progress callback the worker's `check` is handed.
pub use js_sys::Function as ProgressFn;

/// Exports, from the wasm-bindgen bundle that invokes it, the functions `www/worker.js` calls:
/// `deriveWalletKey`, `prepareJobModule`, `checkJobResult` and `rerunJobSegment`. They are
/// left out of TypeScript declarations: they are the worker's, not an API.
///
/// Exports are made by the bundle's own crate (a library's would be linked into every bundle
/// that depends on it, the app's page included), so the crate invokes this once at its root;
/// it must depend on `wasm-bindgen`.
#[macro_export]
macro_rules! worker_exports {
    () => {
        /// Argon2id for the worker's `kdf` (see `client_core::worker`).
        #[::wasm_bindgen::prelude::wasm_bindgen(js_name = deriveWalletKey, skip_typescript)]
        pub fn worker_derive_wallet_key(
            password: &str,
            salt: &[u8],
            memory_kib: u32,
            iterations: u32,
            parallelism: u32,
        ) -> Result<Vec<u8>, ::wasm_bindgen::JsValue> {
            $crate::worker::derive_key_here(password, salt, memory_kib, iterations, parallelism)
        }

        /// The worker's `prepare` (see `client_core::worker`).
        #[::wasm_bindgen::prelude::wasm_bindgen(js_name = prepareJobModule, skip_typescript)]
        pub fn worker_prepare_job_module(
            module: &[u8],
        ) -> Result<Vec<u8>, ::wasm_bindgen::JsValue> {
            $crate::worker::prepare_here(module)
        }

        /// The worker's `check` (see `client_core::job_client::check_here`).
        #[::wasm_bindgen::prelude::wasm_bindgen(js_name = checkJobResult, skip_typescript)]
        pub fn worker_check_job_result(
            task: &[u8],
            on_progress: &$crate::worker::ProgressFn,
        ) -> Result<Vec<u8>, ::wasm_bindgen::JsValue> {
            $crate::job_client::check_here(task, on_progress)
        }

        /// The worker's `rerun` (see `client_core::worker`).
        #[::wasm_bindgen::prelude::wasm_bindgen(js_name = rerunJobSegment, skip_typescript)]
        pub fn worker_rerun_job_segment(task: &[u8]) -> Result<Vec<u8>, ::wasm_bindgen::JsValue> {
            $crate::worker::rerun_here(task)
        }
    };
}

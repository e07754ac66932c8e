//! The app's worker bundle (`aqueduct_worker.wasm`, loaded by `www/worker.js`): the work a page
//! must not wait on, and the code a first visit need not download — the wallet's key
//! derivation (Argon2id, about a second), the job module validator and instrumenter, and the
//! re-execution or sampling of a job's result. The page's own bundle (`main.rs`) links none of
//! the module validator or instrumenter; it asks this worker instead
//! (`client_core::job_client::Engine::Worker`). Built for wasm32 only.
#![cfg(target_arch = "wasm32")]

use client_core::wallet::KdfParams;
use wasm_bindgen::prelude::*;

/// Argon2id of `password` and `salt` under the given parameters: the 32-byte wallet key.
#[wasm_bindgen(js_name = deriveWalletKey)]
pub fn derive_wallet_key(
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

/// Validates and instruments a job module: the encoded prepared module, or an `Error` saying
/// why it cannot run.
#[wasm_bindgen(js_name = prepareJobModule)]
pub fn prepare_job_module(module: &[u8]) -> Result<Vec<u8>, JsValue> {
    client_core::job_client::prepare_here(module)
        .map_err(|reason| js_sys::Error::new(&reason).into())
}

/// Checks a job's result (see `client_core::job_client::check_here`).
#[wasm_bindgen(js_name = checkJobResult)]
pub fn check_job_result(task: &[u8], on_progress: &js_sys::Function) -> Result<Vec<u8>, JsValue> {
    client_core::job_client::check_here(task, on_progress)
}

/// Makes one of a referee's re-runs, the job's initial state or one step (see
/// `client_core::referee_client::rerun_here`).
#[wasm_bindgen(js_name = rerunJobSegment)]
pub fn rerun_job_segment(task: &[u8]) -> Result<Vec<u8>, JsValue> {
    client_core::referee_client::rerun_here(task)
        .map_err(|reason| js_sys::Error::new(&reason).into())
}

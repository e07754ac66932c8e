//! The wallet's key derivation (Argon2id, about a second) off the page's main thread.
//!
//! A module worker (`kdf-worker.js`) loads this same wasm bundle, whose `main` does nothing
//! outside a window, and calls [`derive_wallet_key`]; the page sends the password, salt and
//! parameters and gets the 32-byte key back, then seals or opens the wallet itself (the cheap
//! XChaCha20-Poly1305 step). While the worker works, the page keeps handling input and painting.
//! Where a worker cannot be started, the key is derived on the main thread as before.

use client_core::browser::js_error;
use client_core::wallet::{KdfParams, WalletError};
use futures::channel::oneshot;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

/// Where the worker script is served (beside the bundle, at the site's root).
const WORKER_URL: &str = "/kdf-worker.js";
/// A worker that has not answered by then (its wasm did not load, say) is given up, and the
/// key derived on the main thread instead.
const WORKER_TIMEOUT_MS: u32 = 30_000;

/// The worker's entry point: Argon2id of `password` and `salt` under the given parameters.
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

/// Where the last key was derived, for the page to show (and tests to read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Worker,
    MainThread,
}

/// Derives the wallet key in a worker (or, failing that, here).
pub async fn derive(
    kdf: KdfParams,
    password: &str,
    salt: [u8; 16],
) -> Result<(Zeroizing<[u8; 32]>, Place), WalletError> {
    kdf.check()?;
    match in_worker(kdf, password, salt).await {
        Ok(key) => Ok((key, Place::Worker)),
        Err(reason) => {
            web_sys::console::warn_1(
                &format!("deriving the wallet key on the main thread: {reason}").into(),
            );
            Ok((kdf.derive(password, &salt)?, Place::MainThread))
        }
    }
}

async fn in_worker(
    kdf: KdfParams,
    password: &str,
    salt: [u8; 16],
) -> Result<Zeroizing<[u8; 32]>, String> {
    let options = web_sys::WorkerOptions::new();
    options.set_type(web_sys::WorkerType::Module);
    let worker =
        web_sys::Worker::new_with_options(WORKER_URL, &options).map_err(|e| js_error(&e))?;
    let (tx, rx) = oneshot::channel::<Result<JsValue, String>>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let on_message = {
        let tx = tx.clone();
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(Ok(event.data()));
            }
        })
    };
    let on_error = {
        let tx = tx.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let reason = event
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .unwrap_or_else(|| "the worker could not be started".into());
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(Err(reason));
            }
        })
    };
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let request = js_sys::Object::new();
    let set = |name: &str, value: &JsValue| js_sys::Reflect::set(&request, &name.into(), value);
    set("password", &password.into())
        .and_then(|_| set("salt", &js_sys::Uint8Array::from(&salt[..]).into()))
        .and_then(|_| set("memoryKib", &kdf.memory_kib.into()))
        .and_then(|_| set("iterations", &kdf.iterations.into()))
        .and_then(|_| set("parallelism", &kdf.parallelism.into()))
        .map_err(|e| js_error(&e))?;
    let sent = worker.post_message(&request).map_err(|e| js_error(&e));
    let answer = match sent {
        Ok(()) => match client_core::browser::within(WORKER_TIMEOUT_MS, rx).await {
            Some(Ok(answer)) => answer,
            Some(Err(_)) => Err("the worker went away".into()),
            None => Err(format!(
                "the worker did not answer within {} s",
                WORKER_TIMEOUT_MS / 1000
            )),
        },
        Err(e) => Err(e),
    };
    // Its 64 MiB go with it.
    worker.terminate();
    drop((on_message, on_error));
    let answer = answer?;
    if let Ok(error) = js_sys::Reflect::get(&answer, &"error".into())
        && !error.is_undefined()
    {
        return Err(js_error(&error));
    }
    let key = js_sys::Reflect::get(&answer, &"key".into())
        .ok()
        .and_then(|k| k.dyn_into::<js_sys::Uint8Array>().ok())
        .ok_or_else(|| "the worker's answer has no key".to_owned())?;
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

//! # Aqueduct SDK
//!
//! The light client of `client-core` for web apps that are not ours: a wasm-bindgen API,
//! packaged by `cargo xtask sdk` as an ES module with TypeScript declarations. Everything the
//! Aqueduct app believes, an app using this package believes for the same reasons: a job's
//! result only once its receipt is checked and its computation re-executed, sampled or
//! refereed in the page; ledger values only with a Merkle proof against a block its validators
//! signed, from a genesis the app pinned. The wallet's key never leaves the page's memory.
//! The long computations (Argon2id, preparing a module, re-executing or sampling a result) run
//! in the package's Web Worker, so that the app's page stays responsive.
//!
//! The crate is empty on targets other than wasm32.

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod convert;
#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod pay;
#[cfg(target_arch = "wasm32")]
mod referee;

#[cfg(target_arch = "wasm32")]
pub use api::{Client, Wallet};

// The package's worker (`worker.js`, beside the module) runs this same bundle: Argon2id and
// the job engine's long work go there, off the page's main thread (see `api::worker_url`).
#[cfg(target_arch = "wasm32")]
client_core::worker_exports!();

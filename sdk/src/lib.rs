//! # Aqueduct SDK
//!
//! The light client of `client-core` for web apps that are not ours: a wasm-bindgen API,
//! packaged by `cargo xtask sdk` as an ES module with TypeScript declarations. Everything the
//! Aqueduct app believes, an app using this package believes for the same reasons: a job's
//! result only once its receipt is checked and its computation re-executed, sampled or
//! refereed in the page; ledger values only with a Merkle proof against a block its validators
//! signed, from a genesis the app pinned. The wallet's key never leaves the page's memory.
//!
//! The crate is empty on targets other than wasm32.

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod convert;
#[cfg(target_arch = "wasm32")]
mod error;

#[cfg(target_arch = "wasm32")]
pub use api::{Client, Wallet};

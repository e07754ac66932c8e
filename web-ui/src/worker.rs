//! The app's worker bundle (`aqueduct_worker.wasm`, loaded by `www/worker.js`): the work a page
//! must not wait on, and the code a first visit need not download — the wallet's key
//! derivation (Argon2id, about a second), the job module validator and instrumenter, and the
//! re-execution or sampling of a job's result (see `client_core::worker`). The page's own
//! bundle (`main.rs`) links none of them; it asks this worker instead
//! (`client_core::job_client::Engine::Worker`). Built for wasm32 only.
#![cfg(target_arch = "wasm32")]

client_core::worker_exports!();

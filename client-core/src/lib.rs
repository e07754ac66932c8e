//! # Aqueduct light client core
//!
//! This crate is what the browser, the relay and the tests share. Its pure part — everything
//! except the `browser` module — performs no I/O: no sockets, no files, no clock and no
//! randomness of its own. Time arrives as a `now_ms` argument, bytes arrive as slices, keys
//! arrive as seeds. That is what lets the very same checks run inside the browser's Wasm
//! engine, inside the native relay and inside deterministic tests.
//!
//! A tour, bottom up:
//!
//! - [`hash`]: BLAKE3 digests, the one hash function of the protocol.
//! - [`encoding`]: the one canonical binary encoding (Borsh) for everything hashed, signed or
//!   sent, with size limits enforced before anything is allocated.
//! - [`identity`]: ed25519 keys and the libp2p `PeerId` derived from the same public key, so an
//!   account, a network identity and a signer are one thing.
//! - [`signed`]: `Signed<T>`, a body with its signer and signature, where the signed bytes are
//!   prefixed by a domain tag per message kind.
//! - [`envelope`]: the request envelope (network id, nonce, issue time, expiry) and its
//!   verification, including a bounded replay guard.
//! - [`job`]: job modules (validation, instrumentation, execution on any engine), receipts,
//!   checkpoint commitments and the verification of results.
//! - [`protocol`]: protocol names, message types and their size limits.
//! - [`relay_addr`]: checking a relay's webrtc-direct address (certificate hash, peer id).
//! - [`wire`]: length-prefixed frames over any async byte stream the caller hands in.
//! - [`ledger`]: the marketplace ledger — state machine, Merkle-committed state, blocks,
//!   commits, genesis and the light client that verifies every read.
//! - [`wallet`]: the recovery phrase (BIP-39), the account key derived from it, the key sealed
//!   under a password (Argon2id, XChaCha20-Poly1305), backup files and the idle lock.
//! - [`backoff`]: the reconnection schedule, as a pure function of the attempt number.
//! - [`stats`]: round-trip statistics (median, p90, max) over a bounded window.
//! - `browser` (wasm32, feature `browser`): the browser peer that dials relays over WebRTC and
//!   runs jobs on them.
//! - `ledger_client` (wasm32, feature `browser`): proven ledger reads and transactions from the
//!   page, through the light client.
//! - `storage` (wasm32, feature `browser`): the page's IndexedDB (sealed wallet, job history).
//! - `worker` (wasm32, feature `browser`): the background worker that derives wallet keys and
//!   prepares, checks and re-runs jobs off a page's main thread.
//! - `js_engine` (wasm32, feature `js-engine`): the page's own WebAssembly engine as a job
//!   engine, for re-executing results.

pub mod backoff;
pub mod encoding;
pub mod envelope;
pub mod hash;
pub mod identity;
pub mod job;
pub mod ledger;
pub mod protocol;
pub mod relay_addr;
pub mod signed;
pub mod stats;
pub mod wallet;
pub mod wire;

#[cfg(all(target_arch = "wasm32", feature = "browser"))]
pub mod browser;
#[cfg(all(target_arch = "wasm32", feature = "browser"))]
pub mod job_client;
#[cfg(all(target_arch = "wasm32", feature = "js-engine"))]
pub mod js_engine;
#[cfg(all(target_arch = "wasm32", feature = "browser"))]
pub mod ledger_client;
#[cfg(all(target_arch = "wasm32", feature = "browser"))]
pub mod referee_client;
#[cfg(all(target_arch = "wasm32", feature = "browser"))]
pub mod storage;
#[cfg(all(target_arch = "wasm32", feature = "browser"))]
pub mod worker;

/// The version of this crate, reported by relays and shown by the app.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

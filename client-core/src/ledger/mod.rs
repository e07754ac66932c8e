//! The ledger: the marketplace's state machine, its Merkle commitment, blocks and the light
//! client that checks them.
//!
//! - [`state`]: accounts, providers and offers, payment channels, parameters, and their keys.
//! - [`tx`]: transactions, vouchers and every reason a transaction is refused.
//! - [`apply()`]: the pure, deterministic state machine.
//! - [`merkle`]: the authenticated map over the state (a Jellyfish Merkle tree with BLAKE3),
//!   and proof verification.
//! - [`block`]: headers, commits (validator signatures) and their verification.
//! - [`genesis`]: what a network starts from.
//! - [`gov`]: proposals, delegation, voting power over time, and what passed proposals do.
//! - [`validators`]: the validator set elected from stake at the end of every epoch.
//! - [`evidence`]: consensus votes as validators sign them, and proof of double-signing.
//! - [`chain`]: replaying a chain from genesis, checking every block and state root.
//! - [`light`]: the light client — latest verified header, verified reads.
//! - [`wire`]: the `/aqueduct/ledger/1` protocol's messages.
//!
//! Nothing here does I/O: block time arrives in a [`BlockContext`], storage arrives as a
//! `jmt` tree reader, so the browser, the relay and the tests run the same code.

pub mod apply;
pub mod block;
pub mod chain;
pub mod evidence;
pub mod genesis;
pub mod gov;
pub mod light;
pub mod merkle;
pub mod pay;
pub mod state;
pub mod tx;
pub mod validators;
pub mod wire;

pub use apply::{
    BlockContext, Changes, StateRead, apply, apply_all, apply_block, apply_block_judged,
    apply_verified, apply_verified_judged, end_block,
};
pub use block::{Block, Commit, Header, Validator, ValidatorSet};
pub use genesis::Genesis;
pub use state::{Amount, Params, StateKey, StateValue};
pub use tx::{SignedTx, Tx, TxError, TxKind, Voucher};

/// Accounts in JSON files as peer ids (`12D3KooW…`); hex is accepted on input too.
pub(crate) mod account_text {
    use crate::identity::PublicKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        match key.to_peer_id() {
            Ok(peer) => s.serialize_str(&peer.to_string()),
            Err(_) => s.serialize_str(&hex::encode(key.0)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

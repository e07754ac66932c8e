//! Transactions through the ledger's state machine, as validators and mempools run it on
//! whatever a peer submits: first the raw bytes as a signed transaction (signature checked),
//! then as a sequence of transactions from the network's funded accounts, applied block after
//! block from the genesis state. Refusals are fine; panics and arithmetic overflows (checked
//! in fuzz builds) are not.
#![no_main]

use client_core::encoding::decode;
use client_core::identity::Signature;
use client_core::ledger::apply::merge_into;
use client_core::ledger::tx::MAX_TX_BYTES;
use client_core::ledger::{
    BlockContext, SignedTx, StateKey, StateValue, Tx, apply, apply_verified, end_block,
};
use client_core_fuzz::{NETWORK, genesis, key_of};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let g = genesis();
    let mut state: BTreeMap<StateKey, StateValue> = BTreeMap::new();
    merge_into(&mut state, g.initial_state());
    let mut ctx = BlockContext {
        network_id: NETWORK.to_owned(),
        height: 1,
        time_ms: g.time_ms + 1000,
    };

    if let Ok(tx) = decode::<SignedTx>(data, MAX_TX_BYTES) {
        let _ = apply(&state, &ctx, &tx);
    }

    // Each entry: who sends it, how much block time passes before it, the transaction.
    let Ok(txs) = decode::<Vec<(u8, u32, Tx)>>(data, 64 * 1024) else {
        return;
    };
    for (sender, wait_ms, body) in txs.into_iter().take(64) {
        if wait_ms > 0 {
            let changes = end_block(&state, &ctx);
            merge_into(&mut state, changes);
            ctx.height += 1;
            ctx.time_ms = ctx.time_ms.saturating_add(u64::from(wait_ms));
        }
        let tx = SignedTx {
            body,
            signer: key_of(sender),
            signature: Signature([0; 64]),
        };
        if let Ok(changes) = apply_verified(&state, &ctx, &tx) {
            merge_into(&mut state, changes);
        }
    }
    let changes = end_block(&state, &ctx);
    merge_into(&mut state, changes);
});

//! Every protocol message a peer can send, and what the page stores: decoding is strict, so a
//! message that decodes must encode back to exactly the same bytes (signatures and ids are
//! over the encoding). What the receiver does next with a decoded message is run too: a
//! request's envelope checks, a checkpoint state's checks and hash.
#![no_main]

use client_core::encoding::{decode, encode};
use client_core::envelope::{RequestPolicy, authenticate};
use client_core::job::history::{JobRecord, MAX_RECORD_BYTES};
use client_core::job::profile::Profile;
use client_core::job::{ClientMsg, MAX_JOB_FRAME, RelayMsg, job_id};
use client_core::ledger::light::Trusted;
use client_core::ledger::wire::{
    LedgerRequest, LedgerResponse, MAX_LEDGER_REQUEST, MAX_LEDGER_RESPONSE,
};
use client_core::protocol::{MAX_STATUS_FRAME, StatusRequest, StatusResponse};
use libfuzzer_sys::fuzz_target;

fn canonical<T>(bytes: &[u8], limit: usize) -> Option<T>
where
    T: borsh::BorshDeserialize + borsh::BorshSerialize,
{
    let value = decode::<T>(bytes, limit).ok()?;
    assert_eq!(
        encode(&value),
        bytes,
        "a decoded message encodes differently"
    );
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let [kind, bytes @ ..] = data else {
        return;
    };
    match kind % 8 {
        0 => {
            if let Some(ClientMsg::Submit { request, .. }) =
                canonical::<ClientMsg>(bytes, MAX_JOB_FRAME)
            {
                let policy = RequestPolicy {
                    network_id: client_core_fuzz::NETWORK.into(),
                    max_ttl_ms: 300_000,
                    max_clock_skew_ms: 30_000,
                };
                let _ = authenticate(&request, &policy, 1_700_000_000_000);
                let _ = job_id(&request);
            }
        }
        1 => {
            if let Some(RelayMsg::State { state, .. }) = canonical::<RelayMsg>(bytes, MAX_JOB_FRAME)
                && state.check(&Profile::V1).is_ok()
            {
                let _ = state.hash();
            }
        }
        2 => {
            canonical::<StatusRequest>(bytes, MAX_STATUS_FRAME);
        }
        3 => {
            canonical::<StatusResponse>(bytes, MAX_STATUS_FRAME);
        }
        4 => {
            canonical::<LedgerRequest>(bytes, MAX_LEDGER_REQUEST);
        }
        5 => {
            canonical::<LedgerResponse>(bytes, MAX_LEDGER_RESPONSE);
        }
        6 => {
            canonical::<JobRecord>(bytes, MAX_RECORD_BYTES);
        }
        _ => {
            canonical::<Trusted>(bytes, MAX_LEDGER_RESPONSE);
        }
    }
});

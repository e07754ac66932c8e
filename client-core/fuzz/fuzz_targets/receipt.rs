//! A relay's receipt as the page checks it against its own request, the prepared module and
//! the output it received. The fuzzer writes the request's job, the receipt and the output;
//! the receipt is signed with the relay's key, and the first byte's bits set fields to the
//! values an honest relay would sign, so every check after the signature is reached.
#![no_main]

use borsh::BorshDeserialize;
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::job::profile::{Profile, prepare};
use client_core::job::verify::check_receipt;
use client_core::job::{JobSpec, Receipt, job_id};
use client_core::signed::Signed;
use client_core_fuzz::{NETWORK, job_module, keys};
use libfuzzer_sys::fuzz_target;

#[derive(BorshDeserialize)]
struct Input {
    fixes: u8,
    spec: JobSpec,
    receipt: Receipt,
    output: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(Input {
        fixes,
        mut spec,
        mut receipt,
        output,
    }) = client_core::encoding::decode::<Input>(data, 64 * 1024)
    else {
        return;
    };
    let fix = |bit: u8| fixes & (1 << bit) != 0;
    let Ok(prepared) = prepare(&job_module(fix(7)), &Profile::V1) else {
        panic!("the fixed job module is refused");
    };
    let keys = keys();
    if fix(0) {
        spec.module = prepared.module_hash;
    }
    let request = Signed::sign(
        &keys[2],
        Request::new(NETWORK, 1, 1_700_000_000_000, 60_000, spec),
    );
    if fix(1) {
        receipt.job = job_id(&request);
    }
    if fix(2) {
        receipt.customer = request.signer;
    }
    if fix(3) {
        receipt.module = request.body.body.module;
    }
    if fix(4) {
        receipt.input = Hash::of(&request.body.body.input);
    }
    if fix(5) {
        receipt.output = Hash::of(&output);
    }
    if fix(6) {
        receipt.profile = prepared.profile.version;
    }
    let relay = keys[0].peer_id();
    let signed = Signed::sign(&keys[0], receipt);
    if let Ok(checks) = check_receipt(&request, &prepared, &output, &signed, Some(&relay)) {
        assert!(
            !checks.is_empty(),
            "a passed receipt check lists nothing it checked"
        );
    }
    // Another relay's receipt is never taken for this one's.
    let other = keys[1].peer_id();
    assert!(check_receipt(&request, &prepared, &output, &signed, Some(&other)).is_err());
});

//! The job-module validator and instrumenter, on what a customer can upload. Half the inputs
//! are taken as raw bytes; the other half become valid modules (wasm-smith) with the exports a
//! job needs, using any instruction the profile allows, so the instrumenter sees real code.
//! A module that is accepted must come out as a valid module, the same on every run (both
//! sides of a job must run the very same program), under the profile's memory limit.
#![no_main]

use arbitrary::Unstructured;
use client_core::job::profile::{Profile, prepare};
use client_core_fuzz::job_module;
use libfuzzer_sys::fuzz_target;
use wasmparser::{Validator, WasmFeatures};

fn generated(u: &mut Unstructured<'_>) -> Option<Vec<u8>> {
    let steps: bool = u.arbitrary().ok()?;
    let mut config = wasm_smith::Config {
        exports: Some(job_module(steps)),
        max_imports: 0,
        allow_start_export: false,
        exceptions_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        relaxed_simd_enabled: false,
        simd_enabled: false,
        tail_call_enabled: false,
        threads_enabled: false,
        max_memories: 1,
        max_tables: 1,
        max_memory32_bytes: 64 * 65536,
        ..wasm_smith::Config::default()
    };
    config.max_funcs = 20;
    config.max_instructions = 200;
    wasm_smith::Module::new(config, u)
        .ok()
        .map(|m| m.to_bytes())
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let module = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        match generated(&mut Unstructured::new(rest)) {
            Some(module) => module,
            None => return,
        }
    };
    let Ok(prepared) = prepare(&module, &Profile::V1) else {
        return;
    };
    let features = WasmFeatures::default();
    if let Err(e) = Validator::new_with_features(features).validate_all(&prepared.code) {
        panic!("an accepted module was instrumented into an invalid one: {e}");
    }
    let again = prepare(&module, &Profile::V1).expect("accepted once, accepted again");
    assert_eq!(
        again.code, prepared.code,
        "instrumentation is not deterministic"
    );
});

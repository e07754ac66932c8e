//! The browser's engine against wasmtime: the same example jobs, instrumented by the same code,
//! must give the same output, the same fuel and the same checkpoint hashes in Chromium as the
//! relay's engine gave (vectors written by `tests/tests/job_engine.rs`).
//!
//! Needs the example modules and the vectors, so it only builds with the `engine-vectors`
//! feature and the paths in `AQUEDUCT_JOBS_DIR` and `AQUEDUCT_JOB_VECTORS`; `cargo xtask test`
//! provides all three.

#![cfg(all(target_arch = "wasm32", feature = "engine-vectors"))]

use client_core::hash::Hash;
use client_core::job::exec::{self, Unobserved};
use client_core::job::profile::{self, Profile};
use client_core::js_engine::JsJob;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const VECTORS: &str = include_str!(env!("AQUEDUCT_JOB_VECTORS"));

fn module(name: &str) -> &'static [u8] {
    match name {
        "hash-chain" => include_bytes!(concat!(env!("AQUEDUCT_JOBS_DIR"), "/hash-chain.wasm")),
        "mandelbrot" => include_bytes!(concat!(env!("AQUEDUCT_JOBS_DIR"), "/mandelbrot.wasm")),
        "primes" => include_bytes!(concat!(env!("AQUEDUCT_JOBS_DIR"), "/primes.wasm")),
        other => panic!("no example job {other}"),
    }
}

#[wasm_bindgen_test]
fn chromium_computes_what_wasmtime_computed() {
    let mut seen = 0;
    for line in VECTORS.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('|').collect();
        let [name, input, output, fuel, checkpoints] = fields[..] else {
            panic!("bad vector line {line}");
        };
        let prepared = profile::prepare(module(name), &Profile::V1).expect("accepted");
        let engine = JsJob::compile(&prepared.code).expect("Chromium compiles it");
        let out = exec::execute(
            &engine,
            &prepared,
            input.as_bytes(),
            1 << 40,
            &mut Unobserved,
        )
        .expect("runs in Chromium");
        assert_eq!(Hash::of(&out.output).to_string(), output, "{name}: output");
        assert_eq!(out.fuel_used.to_string(), fuel, "{name}: fuel");
        let mine: Vec<String> = out.checkpoints.iter().map(Hash::to_string).collect();
        assert_eq!(mine.join(","), checkpoints, "{name}: checkpoint hashes");
        seen += 1;
    }
    assert_eq!(seen, 3, "vectors for the three examples");
}

//! What the fuzz targets share: fixed keys, a small network, a valid job module and a reader
//! that hands out its bytes in pieces.
//!
//! Signatures are the first check on most paths, and random bytes never carry a valid one. So
//! the targets that check signed messages re-sign what the fuzzer wrote with these fixed keys
//! when the input asks for it, and the checks behind the signature are fuzzed too.

use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::genesis::{Balance, Genesis};
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::{Params, Validator};
use futures::io::AsyncRead;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemorySection,
    MemoryType, Module, TypeSection, ValType,
};

/// The network the targets' messages are for.
pub const NETWORK: &str = "fuzz";

/// Fixed keypairs: the first two are the genesis validators; all four hold balances. Derived
/// once per process: a key derivation costs more than most inputs, and a target that derived
/// them per input spent nearly all its time there.
pub fn keys() -> &'static [Keypair] {
    static KEYS: OnceLock<Vec<Keypair>> = OnceLock::new();
    KEYS.get_or_init(|| (1u8..=4).map(|i| Keypair::from_seed(&[i; 32])).collect())
}

/// The public key a selector byte names among [`keys`].
pub fn key_of(selector: u8) -> PublicKey {
    let keys = keys();
    keys[usize::from(selector) % keys.len()].public()
}

/// A network of two validators and four funded accounts, with a faucet (built once).
pub fn genesis() -> &'static Genesis {
    static GENESIS: OnceLock<Genesis> = OnceLock::new();
    GENESIS.get_or_init(build_genesis)
}

fn build_genesis() -> Genesis {
    let keys = keys();
    Genesis {
        network_id: NETWORK.to_owned(),
        time_ms: 1_700_000_000_000,
        validators: keys[..2]
            .iter()
            .map(|k| Validator {
                key: k.public(),
                power: 10,
            })
            .collect(),
        balances: keys
            .iter()
            .map(|k| Balance {
                account: k.public(),
                amount: 1_000_000 * UNITS_PER_TOKEN,
            })
            .collect(),
        params: Params::dev(),
        treasury: 1000 * UNITS_PER_TOKEN,
        bootstrap: Default::default(),
    }
}

/// A valid job module: `run(ptr, len) -> i64` when `steps` is false, `init`/`step`/`output`
/// when it is true, both with `alloc` and an exported memory. It loops a little so the
/// instrumenter has a loop to charge.
pub fn job_module(steps: bool) -> Vec<u8> {
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::I32, ValType::I32], [ValType::I64]); // 0: run
    types.ty().function([ValType::I32], [ValType::I32]); // 1: alloc
    types.ty().function([ValType::I32, ValType::I32], []); // 2: init
    types.ty().function([], [ValType::I32]); // 3: step
    types.ty().function([], [ValType::I64]); // 4: output
    let entry: &[(u32, &str)] = if steps {
        &[(2, "init"), (3, "step"), (4, "output")]
    } else {
        &[(0, "run")]
    };
    let mut functions = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    let mut all: Vec<(u32, &str)> = entry.to_vec();
    all.push((1, "alloc"));
    for (index, (ty, name)) in all.iter().enumerate() {
        functions.function(*ty);
        exports.export(name, ExportKind::Func, index as u32);
        let mut f = Function::new([(1, ValType::I32)]);
        // A counted loop over the first local, then a result of the function's type.
        f.instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty));
        f.instruction(&Instruction::LocalGet(if *ty == 0 || *ty == 2 {
            2
        } else {
            0
        }));
        f.instruction(&Instruction::I32Const(1));
        f.instruction(&Instruction::I32Add);
        f.instruction(&Instruction::LocalTee(if *ty == 0 || *ty == 2 {
            2
        } else {
            0
        }));
        f.instruction(&Instruction::I32Const(8));
        f.instruction(&Instruction::I32LtU);
        f.instruction(&Instruction::BrIf(0));
        f.instruction(&Instruction::End);
        match ty {
            0 | 4 => {
                f.instruction(&Instruction::I64Const(0));
            }
            1 | 3 => {
                f.instruction(&Instruction::I32Const(0));
            }
            _ => {}
        }
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    exports.export("memory", ExportKind::Memory, 0);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memories)
        .section(&exports)
        .section(&code);
    module.finish()
}

/// Reads from a byte slice at most `piece` bytes at a time, the way a stream delivers a frame
/// in several packets.
pub struct Pieces<'a> {
    bytes: &'a [u8],
    piece: usize,
}

impl<'a> Pieces<'a> {
    pub fn new(bytes: &'a [u8], piece: usize) -> Self {
        Pieces {
            bytes,
            piece: piece.max(1),
        }
    }
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.piece).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Poll::Ready(Ok(n))
    }
}

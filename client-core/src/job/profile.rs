//! The deterministic profile: which modules are accepted, and how they are instrumented.
//!
//! Both sides run this same code on the same module bytes and get the same instrumented bytes,
//! so the relay (wasmtime) and the browser (its own engine) execute the very same program.
//! Determinism does not depend on the engine because everything engine-specific is moved
//! inside the module:
//!
//! - **Fuel** is a mutable global (`aqueduct_fuel`, remaining fuel, i64). Every straight-line
//!   run of instructions is charged its length before it starts; bulk memory operations and
//!   `memory.grow` are charged by size on top. Fuel below zero traps, checked where a job
//!   could otherwise run on without bound or do unbounded work: on function entry and exit,
//!   at the top of every loop iteration, and before each bulk memory operation or
//!   `memory.grow`. Other charges only subtract, so a job that runs out overruns by at most
//!   one loop-free stretch of one function before it traps — the same stretch in every
//!   engine, so the count stays deterministic — and a tight loop pays one check per
//!   iteration, not one per branch. The code after a block or an `if` (where branches out of
//!   it land) is charged together with the code that opens it, as it runs at most once for
//!   each time that does: a loop whose body is a few branches pays one charge per iteration,
//!   and a branch that leaves past such code has paid for it. Inside a function the count lives in a local, which
//!   engines keep in a register: it is loaded from the global on entry and after every call,
//!   and stored back before every call, on every way out and before the out-of-fuel trap, so
//!   the global is exact whenever the host can look at it (between calls, and after running
//!   out). After any other trap it may be behind.
//! - **Memory**: the maximum size is the profile's everywhere, and growing past it traps.
//! - **Stack depth** is a mutable global (`aqueduct_depth`, i32) raised on function entry by a
//!   weight that grows with the frame's locals and lowered on exit; above
//!   [`Profile::max_depth`] it traps, long before any engine's own stack would overflow.
//! - **NaN canonicalization**: every float instruction that can produce a NaN is followed by
//!   code replacing any NaN by the canonical one, so NaN payloads (which engines may choose
//!   freely) never reach memory.
//! - **Exported state**: every mutable global is exported (`aqueduct_global_N`), next to the
//!   memory, so any engine can snapshot and restore the complete state of an instance.
//!
//! What is refused: imports, a start function, threads and shared memory, SIMD, tail calls,
//! exceptions, GC, several memories, 64-bit memory, passive data segments, table mutation,
//! mutable float or reference globals, multi-value function results, and modules, memories or
//! functions over the profile's limits.

use crate::hash::Hash;
use wasm_encoder::{
    BlockType, ConstExpr, ExportKind, Function, Ieee32, Ieee64, Instruction, SectionId,
};
use wasmparser::{Operator, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures};

/// Export names the instrumentation adds. Modules may not export anything under this prefix.
pub const RESERVED_PREFIX: &str = "aqueduct_";
pub const FUEL_EXPORT: &str = "aqueduct_fuel";
pub const DEPTH_EXPORT: &str = "aqueduct_depth";

/// The limits that are part of the deterministic profile. Both sides must use the same
/// profile: it is named in every receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct Profile {
    /// Identifies this set of rules in receipts.
    pub version: u32,
    pub max_module_bytes: usize,
    /// Largest memory a job can have or grow to, in 64 KiB pages.
    pub max_memory_pages: u32,
    /// Budget of the depth counter; a frame costs `1 + locals / 8`.
    pub max_depth: u32,
    pub max_functions: u32,
    pub max_locals_per_function: u32,
    /// Tables a module may define, and the elements each may hold.
    pub max_tables: u32,
    pub max_table_elements: u32,
}

impl Profile {
    pub const V1: Profile = Profile {
        version: 1,
        max_module_bytes: 4 * 1024 * 1024,
        max_memory_pages: 512,
        max_depth: 2048,
        max_functions: 20_000,
        max_locals_per_function: 4096,
        max_tables: 4,
        max_table_elements: 100_000,
    };
}

/// The two forms a job module can take (see the job ABI in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub enum JobForm {
    /// `alloc(len) -> ptr`, `run(ptr, len) -> packed (ptr << 32 | len)`.
    OneShot,
    /// `alloc(len) -> ptr`, `init(ptr, len)`, `step() -> done (non-zero when finished)`,
    /// `output() -> packed (ptr << 32 | len)`.
    Steps,
}

/// The type of an exported mutable global, which is all snapshots need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub enum GlobalKind {
    I32,
    I64,
}

/// A mutable global of the instrumented module, by export name.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct StateGlobal {
    pub name: String,
    pub kind: GlobalKind,
}

/// A validated, instrumented module ready to run on any engine. It is encoded when the app's
/// worker prepares a module for the page (which then needs no validator or instrumenter).
#[derive(Debug, Clone, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct Prepared {
    /// Hash of the module as uploaded (before instrumentation): its content address.
    pub module_hash: Hash,
    pub form: JobForm,
    /// The instrumented module.
    pub code: Vec<u8>,
    /// Every mutable global in snapshot order: the module's own by index, then fuel, then depth.
    pub globals: Vec<StateGlobal>,
    pub profile: Profile,
}

/// Why a module is refused. Each reason names what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("the module is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("not a valid WebAssembly module (or it uses a feature outside the profile): {0}")]
    Invalid(String),
    #[error("the module imports {0}; job modules may not import anything")]
    Import(String),
    #[error("the module has a start function; put that work in `run` or `init`")]
    StartFunction,
    #[error("the module must export its memory as `memory`")]
    NoMemory,
    #[error("the memory starts at {pages} pages; at most {max} are allowed")]
    MemoryTooLarge { pages: u64, max: u32 },
    #[error("shared or 64-bit memories are not allowed")]
    MemoryKind,
    #[error("export `{0}` uses the reserved prefix `aqueduct_`")]
    ReservedExport(String),
    #[error(
        "the module exports neither the one-shot ABI (`alloc`, `run`) nor the step ABI (`alloc`, `init`, `step`, `output`)"
    )]
    NoEntryPoints,
    #[error("export `{name}` has the wrong signature: expected {expected}")]
    Signature {
        name: String,
        expected: &'static str,
    },
    #[error("global {index} is a mutable {ty}; only i32 and i64 globals may be mutable")]
    MutableGlobal { index: u32, ty: String },
    #[error("function {index} returns several values; job functions return at most one")]
    MultiValue { index: u32 },
    #[error("{what}; at most {max} are allowed")]
    Limit { what: String, max: u32 },
    #[error("passive data segments are not allowed")]
    PassiveData,
    #[error("the instruction `{0}` is not allowed in job modules")]
    Instruction(String),
}

fn invalid(e: impl std::fmt::Display) -> ModuleError {
    ModuleError::Invalid(e.to_string())
}

/// The WebAssembly features a job module may use. Everything else fails validation.
fn features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::FLOATS
        | WasmFeatures::EXTENDED_CONST
}

/// What the first pass learns about a module.
#[derive(Default)]
struct Info {
    /// Signatures by type index: (params, results).
    types: Vec<(Vec<ValType>, Vec<ValType>)>,
    /// Type index of each defined function.
    functions: Vec<u32>,
    /// (type, mutable) of each global.
    globals: Vec<(ValType, bool)>,
    exports: Vec<(String, wasmparser::ExternalKind, u32)>,
}

impl Info {
    fn func_signature(&self, func: u32) -> Option<&(Vec<ValType>, Vec<ValType>)> {
        let ty = *self.functions.get(func as usize)?;
        self.types.get(ty as usize)
    }

    fn export_func(&self, name: &str) -> Option<u32> {
        self.exports
            .iter()
            .find(|(n, kind, _)| n == name && *kind == wasmparser::ExternalKind::Func)
            .map(|(_, _, index)| *index)
    }
}

/// Validates `bytes` against `profile` and instruments it.
pub fn prepare(bytes: &[u8], profile: &Profile) -> Result<Prepared, ModuleError> {
    if bytes.len() > profile.max_module_bytes {
        return Err(ModuleError::TooLarge {
            size: bytes.len(),
            max: profile.max_module_bytes,
        });
    }
    Validator::new_with_features(features())
        .validate_all(bytes)
        .map_err(invalid)?;
    let info = survey(bytes, profile)?;
    let form = entry_points(&info)?;

    let fuel_global = info.globals.len() as u32;
    let depth_global = fuel_global + 1;
    let mut globals: Vec<StateGlobal> = info
        .globals
        .iter()
        .enumerate()
        .filter(|(_, (_, mutable))| *mutable)
        .map(|(i, (ty, _))| StateGlobal {
            name: format!("{RESERVED_PREFIX}global_{i}"),
            kind: if *ty == ValType::I64 {
                GlobalKind::I64
            } else {
                GlobalKind::I32
            },
        })
        .collect();
    globals.push(StateGlobal {
        name: FUEL_EXPORT.into(),
        kind: GlobalKind::I64,
    });
    globals.push(StateGlobal {
        name: DEPTH_EXPORT.into(),
        kind: GlobalKind::I32,
    });

    let mut instrumenter = Instrumenter {
        info: &info,
        profile,
        fuel_global,
        depth_global,
        next_function: 0,
        globals_written: false,
        exports_written: false,
    };
    let code = instrumenter.rewrite(bytes)?;
    Ok(Prepared {
        module_hash: Hash::of(bytes),
        form,
        code,
        globals,
        profile: *profile,
    })
}

/// First pass: collects types, functions, globals and exports, and applies the checks that do
/// not need the code.
fn survey(bytes: &[u8], profile: &Profile) -> Result<Info, ModuleError> {
    let mut info = Info::default();
    let mut has_memory = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    let ty = ty.map_err(invalid)?;
                    info.types
                        .push((ty.params().to_vec(), ty.results().to_vec()));
                }
            }
            Payload::ImportSection(reader) => {
                if let Some(import) = reader.into_iter().next() {
                    let import = import.map_err(invalid)?;
                    let kind = match import.ty {
                        TypeRef::Func(_) => "function",
                        TypeRef::Table(_) => "table",
                        TypeRef::Memory(_) => "memory",
                        TypeRef::Global(_) => "global",
                        TypeRef::Tag(_) => "tag",
                    };
                    return Err(ModuleError::Import(format!(
                        "the {kind} `{}.{}`",
                        import.module, import.name
                    )));
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    info.functions.push(ty.map_err(invalid)?);
                }
                if info.functions.len() > profile.max_functions as usize {
                    return Err(ModuleError::Limit {
                        what: format!("the module defines {} functions", info.functions.len()),
                        max: profile.max_functions,
                    });
                }
            }
            Payload::TableSection(reader) => {
                if reader.count() > profile.max_tables {
                    return Err(ModuleError::Limit {
                        what: format!("the module defines {} tables", reader.count()),
                        max: profile.max_tables,
                    });
                }
                for table in reader {
                    let initial = table.map_err(invalid)?.ty.initial;
                    if initial > u64::from(profile.max_table_elements) {
                        return Err(ModuleError::Limit {
                            what: format!("a table of {initial} elements"),
                            max: profile.max_table_elements,
                        });
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(invalid)?;
                    if memory.shared || memory.memory64 || memory.page_size_log2.is_some() {
                        return Err(ModuleError::MemoryKind);
                    }
                    if memory.initial > u64::from(profile.max_memory_pages) {
                        return Err(ModuleError::MemoryTooLarge {
                            pages: memory.initial,
                            max: profile.max_memory_pages,
                        });
                    }
                    has_memory = true;
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(invalid)?;
                    let ty = global.ty.content_type;
                    let index = info.globals.len() as u32;
                    if global.ty.mutable && !matches!(ty, ValType::I32 | ValType::I64) {
                        return Err(ModuleError::MutableGlobal {
                            index,
                            ty: ty.to_string(),
                        });
                    }
                    info.globals.push((ty, global.ty.mutable));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.name.starts_with(RESERVED_PREFIX) {
                        return Err(ModuleError::ReservedExport(export.name.into()));
                    }
                    info.exports
                        .push((export.name.into(), export.kind, export.index));
                }
            }
            Payload::StartSection { .. } => return Err(ModuleError::StartFunction),
            Payload::DataSection(reader) => {
                for data in reader {
                    if matches!(data.map_err(invalid)?.kind, wasmparser::DataKind::Passive) {
                        return Err(ModuleError::PassiveData);
                    }
                }
            }
            _ => {}
        }
    }
    let memory_exported = info.exports.iter().any(|(name, kind, index)| {
        name == "memory" && *kind == wasmparser::ExternalKind::Memory && *index == 0
    });
    if !has_memory || !memory_exported {
        return Err(ModuleError::NoMemory);
    }
    for (index, ty) in info.functions.iter().enumerate() {
        let results = info.types.get(*ty as usize).map_or(0, |(_, r)| r.len());
        if results > 1 {
            return Err(ModuleError::MultiValue {
                index: index as u32,
            });
        }
    }
    Ok(info)
}

/// Finds the ABI the module implements and checks the signatures of its entry points.
fn entry_points(info: &Info) -> Result<JobForm, ModuleError> {
    use ValType::{I32, I64};
    let check = |name: &str, params: &[ValType], results: &[ValType], expected: &'static str| {
        let func = info.export_func(name);
        match func.and_then(|f| info.func_signature(f)) {
            Some((p, r)) if p == params && r == results => Ok(()),
            _ => Err(ModuleError::Signature {
                name: name.into(),
                expected,
            }),
        }
    };
    let has = |name: &str| info.export_func(name).is_some();
    let form = if has("run") {
        check("run", &[I32, I32], &[I64], "run(ptr: i32, len: i32) -> i64")?;
        JobForm::OneShot
    } else if has("init") || has("step") || has("output") {
        check("init", &[I32, I32], &[], "init(ptr: i32, len: i32)")?;
        check("step", &[], &[I32], "step() -> i32")?;
        check("output", &[], &[I64], "output() -> i64")?;
        JobForm::Steps
    } else {
        return Err(ModuleError::NoEntryPoints);
    };
    check("alloc", &[I32], &[I32], "alloc(len: i32) -> i32")?;
    Ok(form)
}

/// Second pass: re-encodes the module with the instrumentation added.
struct Instrumenter<'a> {
    info: &'a Info,
    profile: &'a Profile,
    fuel_global: u32,
    depth_global: u32,
    next_function: u32,
    globals_written: bool,
    exports_written: bool,
}

/// Section ids by their place in a module, for placing sections a module lacks.
fn section_rank(id: u8) -> u8 {
    use SectionId as S;
    const ORDER: [SectionId; 13] = [
        S::Custom,
        S::Type,
        S::Import,
        S::Function,
        S::Table,
        S::Memory,
        S::Tag,
        S::Global,
        S::Export,
        S::Start,
        S::Element,
        S::DataCount,
        S::Code,
    ];
    ORDER
        .iter()
        .position(|s| *s as u8 == id)
        .map_or(ORDER.len() as u8, |p| p as u8)
}

fn val_type(ty: ValType) -> Result<wasm_encoder::ValType, ModuleError> {
    Ok(match ty {
        ValType::I32 => wasm_encoder::ValType::I32,
        ValType::I64 => wasm_encoder::ValType::I64,
        ValType::F32 => wasm_encoder::ValType::F32,
        ValType::F64 => wasm_encoder::ValType::F64,
        ValType::Ref(r) => wasm_encoder::ValType::Ref(ref_type(r)?),
        ValType::V128 => return Err(invalid("128-bit vectors are not allowed")),
    })
}

fn ref_type(r: wasmparser::RefType) -> Result<wasm_encoder::RefType, ModuleError> {
    if r == wasmparser::RefType::FUNCREF {
        Ok(wasm_encoder::RefType::FUNCREF)
    } else if r == wasmparser::RefType::EXTERNREF {
        Ok(wasm_encoder::RefType::EXTERNREF)
    } else {
        Err(invalid(format!("the reference type {r} is not allowed")))
    }
}

fn table_type(table: wasmparser::TableType) -> Result<wasm_encoder::TableType, ModuleError> {
    Ok(wasm_encoder::TableType {
        element_type: ref_type(table.element_type)?,
        table64: false,
        minimum: table.initial,
        // Tables cannot be changed by job code (table mutation is refused), so fix their size.
        maximum: Some(table.initial),
        shared: false,
    })
}

/// A constant expression as it is (without its `end`, which the encoder adds).
fn const_expr(expr: &wasmparser::ConstExpr<'_>) -> Result<ConstExpr, ModuleError> {
    let mut reader = expr.get_binary_reader();
    let bytes = reader
        .read_bytes(reader.bytes_remaining())
        .map_err(invalid)?;
    match bytes.split_last() {
        Some((0x0b, expr)) => Ok(ConstExpr::raw(expr.iter().copied())),
        _ => Err(invalid("a constant expression without its end")),
    }
}

fn export_kind(kind: wasmparser::ExternalKind) -> ExportKind {
    match kind {
        wasmparser::ExternalKind::Func => ExportKind::Func,
        wasmparser::ExternalKind::Table => ExportKind::Table,
        wasmparser::ExternalKind::Memory => ExportKind::Memory,
        wasmparser::ExternalKind::Global => ExportKind::Global,
        wasmparser::ExternalKind::Tag => ExportKind::Tag,
    }
}

impl Instrumenter<'_> {
    fn add_globals(&mut self, globals: &mut wasm_encoder::GlobalSection) {
        let i64_mut = wasm_encoder::GlobalType {
            val_type: wasm_encoder::ValType::I64,
            mutable: true,
            shared: false,
        };
        let i32_mut = wasm_encoder::GlobalType {
            val_type: wasm_encoder::ValType::I32,
            mutable: true,
            shared: false,
        };
        globals.global(i64_mut, &ConstExpr::i64_const(0));
        globals.global(i32_mut, &ConstExpr::i32_const(0));
        self.globals_written = true;
    }

    fn add_exports(&mut self, exports: &mut wasm_encoder::ExportSection) {
        for (index, (_, mutable)) in self.info.globals.iter().enumerate() {
            if *mutable {
                exports.export(
                    &format!("{RESERVED_PREFIX}global_{index}"),
                    ExportKind::Global,
                    index as u32,
                );
            }
        }
        exports.export(FUEL_EXPORT, ExportKind::Global, self.fuel_global);
        exports.export(DEPTH_EXPORT, ExportKind::Global, self.depth_global);
        self.exports_written = true;
    }

    /// Writes the module again, section by section, with the instrumentation added. Sections
    /// the instrumentation does not touch are copied as they are (every index in them stays
    /// valid: it only appends globals, exports and locals); custom sections (names, debug
    /// information) are dropped, as they do not affect execution.
    fn rewrite(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ModuleError> {
        let mut module = wasm_encoder::Module::new();
        let mut code: Option<wasm_encoder::CodeSection> = None;
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.map_err(invalid)?;
            if let Payload::CodeSectionEntry(body) = payload {
                let Some(code) = code.as_mut() else {
                    return Err(invalid("a function body outside the code section"));
                };
                self.function(code, body)?;
                continue;
            }
            if let Some(code) = code.take() {
                module.section(&code);
            }
            match payload {
                Payload::Version { .. } | Payload::CustomSection(_) => {}
                Payload::End(_) => self.before(&mut module, u8::MAX),
                Payload::CodeSectionStart { .. } => {
                    self.before(&mut module, section_rank(SectionId::Code as u8));
                    code = Some(wasm_encoder::CodeSection::new());
                }
                Payload::MemorySection(reader) => {
                    self.before(&mut module, section_rank(SectionId::Memory as u8));
                    let mut memories = wasm_encoder::MemorySection::new();
                    for memory in reader {
                        memories.memory(self.memory_type(memory.map_err(invalid)?));
                    }
                    module.section(&memories);
                }
                Payload::TableSection(reader) => {
                    self.before(&mut module, section_rank(SectionId::Table as u8));
                    let mut tables = wasm_encoder::TableSection::new();
                    for table in reader {
                        let table = table.map_err(invalid)?;
                        let ty = table_type(table.ty)?;
                        match table.init {
                            wasmparser::TableInit::RefNull => tables.table(ty),
                            wasmparser::TableInit::Expr(expr) => {
                                tables.table_with_init(ty, &const_expr(&expr)?)
                            }
                        };
                    }
                    module.section(&tables);
                }
                Payload::GlobalSection(reader) => {
                    self.before(&mut module, section_rank(SectionId::Global as u8));
                    let end = reader.range().end;
                    let mut globals = wasm_encoder::GlobalSection::new();
                    let mut items = reader.into_iter_with_offsets().peekable();
                    while let Some(item) = items.next() {
                        let (offset, _) = item.map_err(invalid)?;
                        let next = match items.peek() {
                            Some(Ok((next, _))) => *next,
                            _ => end,
                        };
                        let entry = bytes
                            .get(offset..next)
                            .ok_or_else(|| invalid("a global outside the module"))?;
                        globals.raw(entry);
                    }
                    self.add_globals(&mut globals);
                    module.section(&globals);
                }
                Payload::ExportSection(reader) => {
                    self.before(&mut module, section_rank(SectionId::Export as u8));
                    let mut exports = wasm_encoder::ExportSection::new();
                    for export in reader {
                        let export = export.map_err(invalid)?;
                        exports.export(export.name, export_kind(export.kind), export.index);
                    }
                    self.add_exports(&mut exports);
                    module.section(&exports);
                }
                other => {
                    let Some((id, range)) = other.as_section() else {
                        return Err(invalid("an unexpected part of the module"));
                    };
                    self.before(&mut module, section_rank(id));
                    let data = bytes
                        .get(range)
                        .ok_or_else(|| invalid("a section outside the module"))?;
                    module.section(&wasm_encoder::RawSection { id, data });
                }
            }
        }
        Ok(module.finish())
    }

    /// Adds the global and export sections a module lacks, before a section of rank `next`.
    fn before(&mut self, module: &mut wasm_encoder::Module, next: u8) {
        if !self.globals_written && next > section_rank(SectionId::Global as u8) {
            let mut globals = wasm_encoder::GlobalSection::new();
            self.add_globals(&mut globals);
            module.section(&globals);
        }
        // Modules without an export section fail the ABI check before this pass.
        if !self.exports_written && next > section_rank(SectionId::Export as u8) {
            let mut exports = wasm_encoder::ExportSection::new();
            self.add_exports(&mut exports);
            module.section(&exports);
        }
    }

    fn memory_type(&self, memory: wasmparser::MemoryType) -> wasm_encoder::MemoryType {
        // The same maximum in every engine, so `memory.grow` fails at the same size everywhere.
        let cap = u64::from(self.profile.max_memory_pages);
        wasm_encoder::MemoryType {
            minimum: memory.initial,
            maximum: Some(memory.maximum.map_or(cap, |m| m.min(cap))),
            memory64: false,
            shared: false,
            page_size_log2: None,
        }
    }

    fn function(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        body: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ModuleError> {
        let index = self.next_function;
        self.next_function += 1;
        let Some((params, results)) = self.info.func_signature(index) else {
            return Err(invalid(format!("function {index} has no type")));
        };
        let mut locals = Vec::new();
        let mut local_count = params.len() as u64;
        for pair in body.get_locals_reader().map_err(invalid)? {
            let (count, ty) = pair.map_err(invalid)?;
            local_count += u64::from(count);
            locals.push((count, val_type(ty)?));
        }
        if local_count > u64::from(self.profile.max_locals_per_function) {
            return Err(ModuleError::Limit {
                what: format!("function {index} has {local_count} locals"),
                max: self.profile.max_locals_per_function,
            });
        }
        // Scratch locals for the instrumentation, after the function's own, and the fuel's.
        let scratch = Scratch {
            i32: local_count as u32,
            f32: local_count as u32 + 1,
            f64: local_count as u32 + 2,
        };
        let fuel = Fuel {
            global: self.fuel_global,
            local: local_count as u32 + 3,
        };
        locals.push((1, wasm_encoder::ValType::I32));
        locals.push((1, wasm_encoder::ValType::F32));
        locals.push((1, wasm_encoder::ValType::F64));
        locals.push((1, wasm_encoder::ValType::I64));
        let result_type = match results.first() {
            None => BlockType::Empty,
            Some(ty) => BlockType::Result(val_type(*ty)?),
        };
        let weight = 1 + (local_count / 8) as i32;

        // Two passes over the body: the first finds what each run costs and which runs start
        // at the end of a block, the second emits the code with those costs moved to the runs
        // that open the blocks (see `Emitter::plan`).
        let mut plan: Option<Vec<i64>> = None;
        let out = loop {
            let mut out = Emitter {
                func: Function::new(locals.clone()),
                run: Vec::new(),
                run_cost: 0,
                check_next: true,
                fuel,
                runs: 0,
                own: Vec::new(),
                ends: Vec::new(),
                charges: plan.take(),
            };
            // Prologue: count this frame, then wrap the body in a block so that every way out of
            // the function (falling off the end, `return`, a branch to the function's label)
            // passes through the epilogue.
            let depth = self.depth_global;
            let max_depth = self.profile.max_depth as i32;
            out.emit_now(&fuel.load());
            out.emit_now(&[
                Instruction::GlobalGet(depth),
                Instruction::I32Const(weight),
                Instruction::I32Add,
                Instruction::GlobalSet(depth),
                Instruction::GlobalGet(depth),
                Instruction::I32Const(max_depth),
                Instruction::I32GtS,
                Instruction::If(BlockType::Empty),
                Instruction::Unreachable,
                Instruction::End,
                Instruction::Block(result_type),
            ]);

            // The blocks open inside the wrapper: whether each is a loop, and the run it opened in.
            let mut open: Vec<(bool, usize)> = Vec::new();
            // Instructions that pass through unchanged are copied as their original bytes: every
            // index they hold stays valid (the instrumentation only appends globals and locals).
            let bytes = body.as_bytes();
            let base = body.range().start;
            let mut reader = body.get_operators_reader().map_err(invalid)?;
            while !reader.eof() {
                let start = reader.original_position() - base;
                let op = reader.read().map_err(invalid)?;
                let end = reader.original_position() - base;
                let original = bytes.get(start..end).unwrap_or_default();
                match &op {
                    Operator::Block { .. } => {
                        // Only reached by falling in: the run goes on inside.
                        open.push((false, out.runs));
                        out.push_original(original);
                    }
                    Operator::If { .. } => {
                        open.push((false, out.runs));
                        out.push_original(original);
                        out.flush();
                    }
                    Operator::Loop { .. } => {
                        open.push((true, out.runs));
                        out.push_original(original);
                        out.flush();
                        // Every iteration starts here: its charge checks.
                        out.check_next = true;
                    }
                    Operator::Else => {
                        out.push_charged(Instruction::Else);
                        out.flush();
                    }
                    Operator::End if open.is_empty() => {
                        // The function's own end: close the wrapper, then the epilogue.
                        out.push_free(&[Instruction::End]);
                        out.flush();
                        // Every way out passes here: no call returns with the fuel overdrawn.
                        out.emit_now(&[Instruction::LocalGet(fuel.local)]);
                        out.emit_now(&fuel.keep_or_trap());
                        out.emit_now(&fuel.store());
                        out.emit_now(&[
                            Instruction::GlobalGet(depth),
                            Instruction::I32Const(weight),
                            Instruction::I32Sub,
                            Instruction::GlobalSet(depth),
                            Instruction::End,
                        ]);
                    }
                    Operator::End => {
                        // `end` does nothing and costs nothing. The end of a block or an `if` is
                        // where branches land, so a new run starts there; the end of a loop is
                        // only reached by falling out of its body, so the run goes on.
                        out.push_free(&[Instruction::End]);
                        if let Some((false, opened_in)) = open.pop() {
                            out.flush();
                            out.ends.push((opened_in, out.runs));
                        }
                    }
                    Operator::Return => {
                        out.push_charged(Instruction::Br(open.len() as u32));
                        out.flush();
                    }
                    Operator::Br { .. }
                    | Operator::BrIf { .. }
                    | Operator::BrTable { .. }
                    | Operator::Unreachable => {
                        out.push_original(original);
                        out.flush();
                    }
                    Operator::Call { .. } | Operator::CallIndirect { .. } => {
                        // The callee charges the global: hand it the count, take it back after.
                        out.push_free(&fuel.store());
                        out.push_original(original);
                        out.push_free(&fuel.load());
                    }
                    Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } => {
                        // The byte count is on top of the stack: charge one unit per 16 bytes.
                        out.charge_dynamic(
                            scratch.i32,
                            &[Instruction::I64Const(4), Instruction::I64ShrU],
                        );
                        out.push_original(original);
                    }
                    Operator::MemoryGrow { .. } => {
                        // The page count is on top: charge 1024 units per 64 KiB page, and trap
                        // (with the depth counter set to MEMORY_LIMIT_MARK) when the memory would
                        // grow past the profile's limit, rather than let the job carry on with -1.
                        out.charge_dynamic(
                            scratch.i32,
                            &[Instruction::I64Const(10), Instruction::I64Shl],
                        );
                        out.push_free(&[
                            Instruction::LocalGet(scratch.i32),
                            Instruction::I64ExtendI32U,
                            Instruction::MemorySize(0),
                            Instruction::I64ExtendI32U,
                            Instruction::I64Add,
                            Instruction::I64Const(i64::from(self.profile.max_memory_pages)),
                            Instruction::I64GtU,
                            Instruction::If(BlockType::Empty),
                            Instruction::I32Const(MEMORY_LIMIT_MARK),
                            Instruction::GlobalSet(depth),
                            Instruction::Unreachable,
                            Instruction::End,
                        ]);
                        out.push_original(original);
                    }
                    Operator::MemoryInit { .. }
                    | Operator::DataDrop { .. }
                    | Operator::TableSet { .. }
                    | Operator::TableGrow { .. }
                    | Operator::TableFill { .. }
                    | Operator::TableCopy { .. }
                    | Operator::TableInit { .. }
                    | Operator::ElemDrop { .. }
                    | Operator::ReturnCall { .. }
                    | Operator::ReturnCallIndirect { .. } => {
                        return Err(ModuleError::Instruction(operator_name(&op)));
                    }
                    _ => {
                        let nan = nan_kind(&op);
                        out.push_original(original);
                        match nan {
                            Some(FloatKind::F32) => out.push_free(&[
                                Instruction::LocalTee(scratch.f32),
                                Instruction::F32Const(Ieee32::new(CANONICAL_NAN_32)),
                                Instruction::LocalGet(scratch.f32),
                                Instruction::LocalGet(scratch.f32),
                                Instruction::F32Eq,
                                Instruction::Select,
                            ]),
                            Some(FloatKind::F64) => out.push_free(&[
                                Instruction::LocalTee(scratch.f64),
                                Instruction::F64Const(Ieee64::new(CANONICAL_NAN_64)),
                                Instruction::LocalGet(scratch.f64),
                                Instruction::LocalGet(scratch.f64),
                                Instruction::F64Eq,
                                Instruction::Select,
                            ]),
                            None => {}
                        }
                    }
                }
            }
            if out.charges.is_some() {
                break out;
            }
            plan = Some(out.plan());
        };
        code.function(&out.func);
        Ok(())
    }
}

/// The value the depth counter is set to when a job traps for growing its memory past the
/// profile's limit (a depth no real call stack reaches).
pub const MEMORY_LIMIT_MARK: i32 = i32::MAX;

/// The canonical quiet NaNs every NaN result is replaced with.
pub const CANONICAL_NAN_32: u32 = 0x7fc0_0000;
pub const CANONICAL_NAN_64: u64 = 0x7ff8_0000_0000_0000;

struct Scratch {
    i32: u32,
    f32: u32,
    f64: u32,
}

enum FloatKind {
    F32,
    F64,
}

/// Float instructions whose NaN results an engine may encode as it likes.
fn nan_kind(op: &Operator<'_>) -> Option<FloatKind> {
    use Operator as O;
    match op {
        O::F32Add
        | O::F32Sub
        | O::F32Mul
        | O::F32Div
        | O::F32Sqrt
        | O::F32Min
        | O::F32Max
        | O::F32Ceil
        | O::F32Floor
        | O::F32Trunc
        | O::F32Nearest
        | O::F32DemoteF64 => Some(FloatKind::F32),
        O::F64Add
        | O::F64Sub
        | O::F64Mul
        | O::F64Div
        | O::F64Sqrt
        | O::F64Min
        | O::F64Max
        | O::F64Ceil
        | O::F64Floor
        | O::F64Trunc
        | O::F64Nearest
        | O::F64PromoteF32 => Some(FloatKind::F64),
        _ => None,
    }
}

/// The text-format name of an instruction the profile refuses (only those reach here).
fn operator_name(op: &Operator<'_>) -> String {
    let name = match op {
        Operator::MemoryInit { .. } => "memory.init",
        Operator::DataDrop { .. } => "data.drop",
        Operator::TableSet { .. } => "table.set",
        Operator::TableGrow { .. } => "table.grow",
        Operator::TableFill { .. } => "table.fill",
        Operator::TableCopy { .. } => "table.copy",
        Operator::TableInit { .. } => "table.init",
        Operator::ElemDrop { .. } => "elem.drop",
        Operator::ReturnCall { .. } => "return_call",
        Operator::ReturnCallIndirect { .. } => "return_call_indirect",
        _ => "instruction",
    };
    name.to_string()
}

/// Where the fuel count is kept: the exported global, and the running function's local copy.
#[derive(Clone, Copy)]
struct Fuel {
    global: u32,
    local: u32,
}

impl Fuel {
    /// Keeps the fuel left (on the stack) in the local; if it went below zero, stores it in
    /// the global (so the host sees why) and traps.
    fn keep_or_trap(self) -> [Instruction<'static>; 8] {
        [
            Instruction::LocalTee(self.local),
            Instruction::I64Const(0),
            Instruction::I64LtS,
            Instruction::If(BlockType::Empty),
            Instruction::LocalGet(self.local),
            Instruction::GlobalSet(self.global),
            Instruction::Unreachable,
            Instruction::End,
        ]
    }

    fn load(self) -> [Instruction<'static>; 2] {
        [
            Instruction::GlobalGet(self.global),
            Instruction::LocalSet(self.local),
        ]
    }

    fn store(self) -> [Instruction<'static>; 2] {
        [
            Instruction::LocalGet(self.local),
            Instruction::GlobalSet(self.global),
        ]
    }
}

/// One instruction of a run: built by the instrumentation, or copied from the module.
enum Piece<'a> {
    Built(Instruction<'static>),
    Original(&'a [u8]),
}

/// Collects a straight-line run of instructions and emits it behind its fuel charge.
struct Emitter<'a> {
    func: Function,
    run: Vec<Piece<'a>>,
    run_cost: i64,
    /// Whether the next charge must also check for running out (it starts a function or a
    /// loop iteration).
    check_next: bool,
    fuel: Fuel,
    /// Runs flushed so far: the index of the run being collected.
    runs: usize,
    /// What each run's own instructions cost, by index.
    own: Vec<i64>,
    /// For each block and `if`: the run it opened in, and the run that starts at its end.
    ends: Vec<(usize, usize)>,
    /// The charge of each run (second pass), from [`Emitter::plan`].
    charges: Option<Vec<i64>>,
}

impl<'a> Emitter<'a> {
    fn emit_now(&mut self, instructions: &[Instruction<'_>]) {
        for ins in instructions {
            self.func.instruction(ins);
        }
    }

    /// An original instruction, rewritten: part of the run and charged.
    fn push_charged(&mut self, ins: Instruction<'static>) {
        self.run.push(Piece::Built(ins));
        self.run_cost += 1;
    }

    /// An original instruction as it is: part of the run and charged.
    fn push_original(&mut self, bytes: &'a [u8]) {
        self.run.push(Piece::Original(bytes));
        self.run_cost += 1;
    }

    /// Instrumentation inside a run: not charged.
    fn push_free(&mut self, instructions: &[Instruction<'static>]) {
        self.run
            .extend(instructions.iter().cloned().map(Piece::Built));
    }

    /// Charges the i32 on top of the stack, transformed by `scale` (as i64), leaving it there.
    fn charge_dynamic(&mut self, scratch: u32, scale: &[Instruction<'static>]) {
        let fuel = self.fuel;
        self.push_free(&[
            Instruction::LocalTee(scratch),
            Instruction::LocalGet(fuel.local),
            Instruction::LocalGet(scratch),
            Instruction::I64ExtendI32U,
        ]);
        self.push_free(scale);
        self.push_free(&[Instruction::I64Sub]);
        self.push_free(&fuel.keep_or_trap());
    }

    /// What each run is charged, from a first pass: its own cost, plus that of the run after
    /// each block it opens (with what those carry in turn), except that runs after a block
    /// are charged nothing themselves.
    fn plan(&self) -> Vec<i64> {
        let mut total = self.own.clone();
        let mut moved = vec![false; total.len()];
        let mut ends = self.ends.clone();
        // Inner ones first: a run after a block may itself open blocks (later runs).
        ends.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (opened_in, after) in ends {
            if opened_in < after && after < total.len() {
                total[opened_in] = total[opened_in].saturating_add(total[after]);
                moved[after] = true;
            }
        }
        for (t, m) in total.iter_mut().zip(moved) {
            if m {
                *t = 0;
            }
        }
        total
    }

    /// Emits the run so far, preceded by one charge for it (see [`Emitter::plan`]).
    fn flush(&mut self) {
        let fuel = self.fuel;
        let cost = match &self.charges {
            Some(charges) => charges.get(self.runs).copied().unwrap_or(self.run_cost),
            None => self.run_cost,
        };
        self.own.push(self.run_cost);
        self.runs += 1;
        if cost > 0 || self.check_next {
            self.emit_now(&[
                Instruction::LocalGet(fuel.local),
                Instruction::I64Const(cost),
                Instruction::I64Sub,
            ]);
            if std::mem::take(&mut self.check_next) {
                self.emit_now(&fuel.keep_or_trap());
            } else {
                self.emit_now(&[Instruction::LocalSet(fuel.local)]);
            }
        }
        for piece in std::mem::take(&mut self.run) {
            match piece {
                Piece::Built(ins) => self.func.instruction(&ins),
                Piece::Original(bytes) => self.func.raw(bytes.iter().copied()),
            };
        }
        self.run_cost = 0;
    }
}

//! The browser's own WebAssembly engine as a job [`Engine`] (wasm32, feature `js-engine`).
//!
//! The instrumented module is compiled by the page's engine (`WebAssembly.Module`), and every
//! instance is driven through its exports: functions, the exported state globals and the
//! memory. This is what lets the browser re-execute a relay's job without trusting the relay's
//! engine, its compiler or its word.

use crate::job::exec::{Engine, Machine, PAGE, Val};
use js_sys::{Array, BigInt, Function, Object, Reflect, Uint8Array, WebAssembly};
use wasm_bindgen::{JsCast, JsValue};

fn message(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// A job module compiled by the browser's engine.
pub struct JsJob {
    module: WebAssembly::Module,
}

impl JsJob {
    /// Compiles instrumented code (synchronously: job modules are small).
    pub fn compile(code: &[u8]) -> Result<JsJob, String> {
        let bytes = Uint8Array::from(code);
        let module = WebAssembly::Module::new(&bytes.into()).map_err(|e| message(&e))?;
        Ok(JsJob { module })
    }
}

/// One instance in the browser's engine.
pub struct JsMachine {
    exports: Object,
    memory: WebAssembly::Memory,
}

impl Engine for JsJob {
    type Machine = JsMachine;

    fn instantiate(&self) -> Result<JsMachine, String> {
        let instance =
            WebAssembly::Instance::new(&self.module, &Object::new()).map_err(|e| message(&e))?;
        let exports = instance.exports();
        let memory = Reflect::get(&exports, &"memory".into())
            .map_err(|e| message(&e))?
            .dyn_into::<WebAssembly::Memory>()
            .map_err(|_| "the module exports no memory".to_string())?;
        Ok(JsMachine { exports, memory })
    }
}

fn to_js(v: Val) -> JsValue {
    match v {
        Val::I32(x) => JsValue::from(x),
        Val::I64(x) => BigInt::from(x).into(),
    }
}

fn from_js(v: &JsValue) -> Result<Val, String> {
    if v.is_bigint() {
        let big = v
            .clone()
            .dyn_into::<BigInt>()
            .map_err(|_| "not a BigInt".to_string())?;
        return i64::try_from(big)
            .map(Val::I64)
            .map_err(|_| "an i64 out of range".to_string());
    }
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && n >= f64::from(i32::MIN) && n <= f64::from(i32::MAX) => {
            Ok(Val::I32(n as i32))
        }
        _ => Err(format!("unexpected value {v:?}")),
    }
}

impl JsMachine {
    fn export(&self, name: &str) -> Result<JsValue, String> {
        let value = Reflect::get(&self.exports, &name.into()).map_err(|e| message(&e))?;
        if value.is_undefined() {
            return Err(format!("no export `{name}`"));
        }
        Ok(value)
    }

    fn buffer(&self) -> Uint8Array {
        Uint8Array::new(&self.memory.buffer())
    }
}

impl Machine for JsMachine {
    fn call(&mut self, name: &str, args: &[Val]) -> Result<Option<Val>, String> {
        let func = self
            .export(name)?
            .dyn_into::<Function>()
            .map_err(|_| format!("`{name}` is not a function"))?;
        let args: Array = args.iter().copied().map(to_js).collect();
        let result = func.apply(&JsValue::NULL, &args).map_err(|e| message(&e))?;
        if result.is_undefined() {
            return Ok(None);
        }
        from_js(&result).map(Some)
    }

    fn global(&mut self, name: &str) -> Result<Val, String> {
        let global = self.export(name)?;
        let value = Reflect::get(&global, &"value".into()).map_err(|e| message(&e))?;
        from_js(&value)
    }

    fn set_global(&mut self, name: &str, value: Val) -> Result<(), String> {
        let global = self.export(name)?;
        Reflect::set(&global, &"value".into(), &to_js(value))
            .map(|_| ())
            .map_err(|e| message(&e))
    }

    fn with_memory<R>(&mut self, f: &mut dyn FnMut(&[u8]) -> R) -> R {
        f(&self.buffer().to_vec())
    }

    fn write_memory(&mut self, offset: usize, bytes: &[u8]) -> Result<(), String> {
        let view = self.buffer();
        let end = offset
            .checked_add(bytes.len())
            .filter(|end| *end <= view.length() as usize)
            .ok_or_else(|| "write outside the memory".to_string())?;
        view.subarray(offset as u32, end as u32).copy_from(bytes);
        Ok(())
    }

    fn grow_memory_to(&mut self, bytes: usize) -> Result<(), String> {
        let current = self.buffer().length() as usize;
        if bytes < current || !bytes.is_multiple_of(PAGE) {
            return Err(format!(
                "cannot resize memory from {current} to {bytes} bytes"
            ));
        }
        let pages = ((bytes - current) / PAGE) as u32;
        if pages > 0 {
            // `grow` throws (a RangeError) past the module's maximum.
            let grow = Reflect::get(&self.memory, &"grow".into())
                .ok()
                .and_then(|g| g.dyn_into::<Function>().ok())
                .ok_or_else(|| "memory.grow is missing".to_string())?;
            grow.call1(&self.memory, &JsValue::from(pages))
                .map_err(|e| message(&e))?;
        }
        Ok(())
    }
}

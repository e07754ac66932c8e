//! Typed errors: every rejected promise and thrown error of the SDK is a JavaScript `Error`
//! named `AqueductError` with a `kind` an app can switch on (and, for a job, the `check` that
//! failed), and a message a person can act on.

use wasm_bindgen::JsValue;

/// What went wrong, as the `kind` property of an `AqueductError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bad argument: a missing module, a malformed account id, a fuel limit of zero.
    Input,
    /// The relay could not be reached or its connection was lost.
    Connection,
    /// The relay's genesis is not the one the app pinned: nothing it says is believed.
    Genesis,
    /// A recovery phrase, backup or password was refused.
    Wallet,
    /// A ledger read failed or did not verify.
    Ledger,
    /// A job did not produce a result (refused, failed to run, not paid).
    Job,
    /// A job's result came back but did not pass verification: the relay's answer is wrong.
    Verification,
    /// The job was cancelled through its `AbortSignal`.
    Cancelled,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Connection => "connection",
            Kind::Genesis => "genesis",
            Kind::Wallet => "wallet",
            Kind::Ledger => "ledger",
            Kind::Job => "job",
            Kind::Verification => "verification",
            Kind::Cancelled => "cancelled",
        }
    }
}

/// An `AqueductError` of `kind` saying `message`.
pub fn error(kind: Kind, message: impl std::fmt::Display) -> JsValue {
    error_with_check(kind, message, None)
}

/// An `AqueductError` that also names the check or step that failed.
pub fn error_with_check(
    kind: Kind,
    message: impl std::fmt::Display,
    check: Option<&str>,
) -> JsValue {
    let err = js_sys::Error::new(&message.to_string());
    err.set_name("AqueductError");
    let value = JsValue::from(err);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&value, &"kind".into(), &kind.name().into());
    if let Some(check) = check {
        let _ = js_sys::Reflect::set(&value, &"check".into(), &check.into());
    }
    value
}

//! What crosses the boundary: plain objects (serde-wasm-bindgen) shaped for JavaScript, with
//! camelCase names, amounts as decimal strings of base units (they can exceed 2^53), keys and
//! hashes as text, bytes as `Uint8Array`. The TypeScript declarations are in `api.rs`.

use crate::error::{Kind, error};
use client_core::identity::PublicKey;
use client_core::job::history::Level;
use client_core::ledger::gov::{DaoView, Proposal};
use client_core::ledger::light::Verified;
use client_core::ledger::state::{Account, Provider};
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};

/// Serializes `value` to a plain JavaScript object.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value
        .serialize(&serializer)
        .map_err(|e| error(Kind::Input, format!("a value could not be converted: {e}")))
}

/// A value read with a proof, and the block it was proven against.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proven<T> {
    pub value: T,
    /// The block whose state root the proof checks against (its commit was verified).
    pub height: u64,
    pub state_root: String,
    /// The block's time (Unix ms): how fresh the value is.
    pub time_ms: u64,
    /// The relay that answered (its answer was checked, not trusted).
    pub relay: String,
}

impl<T> Proven<T> {
    pub fn of<U>(verified: Verified<U>, relay: &str, value: impl FnOnce(U) -> T) -> Self {
        Proven {
            value: value(verified.value),
            height: verified.height,
            state_root: verified.state_root.to_string(),
            time_ms: verified.time_ms,
            relay: relay.to_owned(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub account: String,
    pub balance: String,
    pub nonce: u64,
    pub faucet_used: bool,
}

impl AccountView {
    pub fn new(who: &PublicKey, account: Account) -> Self {
        AccountView {
            account: who.account_id(),
            balance: account.balance.to_string(),
            nonce: account.nonce,
            faucet_used: account.faucet_used,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferView {
    pub provider: String,
    pub stake: String,
    pub price_per_mfuel: String,
    pub max_fuel: u64,
    pub concurrency: u32,
    pub levels: Vec<&'static str>,
    pub addrs: Vec<String>,
    pub attributes: Vec<(String, String)>,
    /// Whether it takes jobs now (registered, not unbonding, not slashed).
    pub active: bool,
    pub candidate: bool,
    pub slashed: bool,
}

impl OfferView {
    pub fn new(key: &PublicKey, p: Provider) -> Self {
        OfferView {
            provider: key.account_id(),
            stake: p.stake.to_string(),
            price_per_mfuel: p.offer.price_per_mfuel.to_string(),
            max_fuel: p.offer.max_fuel,
            concurrency: p.offer.concurrency,
            levels: p.offer.levels.iter().map(|l| l.label()).collect(),
            active: p.active(),
            candidate: p.candidate,
            slashed: p.slashed.is_some(),
            addrs: p.offer.addrs,
            attributes: p.offer.attributes,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TallyView {
    #[serde(rename = "for")]
    pub for_power: String,
    pub against: String,
    pub abstain: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProposalView {
    pub id: u64,
    pub title: String,
    pub description: String,
    pub proposer: String,
    /// pending, active, succeeded, defeated, queued, executed, canceled or expired.
    pub state: &'static str,
    pub start_height: u64,
    pub end_height: u64,
    pub quorum: String,
    pub tally: TallyView,
}

impl ProposalView {
    pub fn new(p: Proposal, height: u64) -> Self {
        ProposalView {
            id: p.id,
            state: p.state(height).label(),
            proposer: p.proposer.account_id(),
            start_height: p.start_height,
            end_height: p.end_height,
            quorum: p.quorum.to_string(),
            tally: TallyView {
                for_power: p.tally.for_power.to_string(),
                against: p.tally.against_power.to_string(),
                abstain: p.tally.abstain_power.to_string(),
            },
            title: p.title,
            description: p.description,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaoInfo {
    pub treasury: String,
    pub max_job_ttl_ms: u64,
    pub proposals: Vec<ProposalView>,
}

impl DaoInfo {
    pub fn new(view: DaoView) -> Self {
        let height = view.height;
        DaoInfo {
            treasury: view.treasury.to_string(),
            max_job_ttl_ms: view.params.max_job_ttl_ms,
            proposals: view
                .proposals
                .into_iter()
                .map(|p| ProposalView::new(p, height))
                .collect(),
        }
    }
}

/// How a job's result was verified, and how strongly.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// `reexecuted`, `sampled` or `refereed`.
    pub method: &'static str,
    /// One line for people, e.g. "sampled 30/1000".
    pub label: String,
    /// Every check that passed, in the words the Aqueduct app shows.
    pub checks: Vec<String>,
    /// Re-executed: the fuel the page spent, and the checkpoints it compared.
    pub fuel: Option<u64>,
    pub checkpoints: Option<u64>,
    /// Sampled: `checked` of `segments` segments re-run in the page, and the chance that a
    /// relay faking 5% of the segments would have been caught.
    pub segments: Option<u64>,
    pub checked: Option<u64>,
    pub caught_if_faking_5_percent: Option<f64>,
    /// Time the page spent verifying.
    pub verify_ms: u64,
}

impl Verification {
    pub fn new(level: &Level, checks: Vec<String>, verify_ms: u64) -> Self {
        let mut v = Verification {
            method: "reexecuted",
            label: level.label(),
            checks,
            fuel: None,
            checkpoints: None,
            segments: None,
            checked: None,
            caught_if_faking_5_percent: None,
            verify_ms,
        };
        match level {
            Level::Reexecuted { fuel, checkpoints } => {
                v.fuel = Some(*fuel);
                v.checkpoints = Some(*checkpoints);
            }
            Level::Sampled {
                segments,
                checked,
                caught_ppm,
            } => {
                v.method = "sampled";
                v.segments = Some(*segments);
                v.checked = Some(*checked);
                v.caught_if_faking_5_percent = Some(f64::from(*caught_ppm) / 1e6);
            }
            Level::Refereed { segments, .. } => {
                v.method = "refereed";
                v.segments = Some(*segments);
            }
        }
        v
    }
}

/// A verified job result, without its output bytes (added as a `Uint8Array`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResultView {
    pub job: String,
    pub relay: String,
    pub module: String,
    pub fuel_used: Option<u64>,
    /// The relay's own (unsigned) account of its execution time.
    pub run_ms: u64,
    pub verification: Verification,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid: Option<crate::pay::PaidView>,
    /// Refereed jobs: the second provider, and what it was paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referee: Option<RefereeView>,
}

/// The second provider of a refereed job.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefereeView {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid: Option<crate::pay::PaidView>,
}

/// Reads an optional property of an options object.
pub fn property(options: &JsValue, name: &str) -> Option<JsValue> {
    if !options.is_object() {
        return None;
    }
    js_sys::Reflect::get(options, &name.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// Reads a byte property: a `Uint8Array`, an `ArrayBuffer` or a string (as UTF-8).
pub fn bytes_property(options: &JsValue, name: &str) -> Result<Option<Vec<u8>>, JsValue> {
    let Some(value) = property(options, name) else {
        return Ok(None);
    };
    if let Some(text) = value.as_string() {
        return Ok(Some(text.into_bytes()));
    }
    if value.is_instance_of::<js_sys::Uint8Array>() || value.is_instance_of::<js_sys::ArrayBuffer>()
    {
        return Ok(Some(js_sys::Uint8Array::new(&value).to_vec()));
    }
    Err(error(
        Kind::Input,
        format!("`{name}` must be a Uint8Array, an ArrayBuffer or a string"),
    ))
}

/// Reads a whole-number property.
pub fn number_property(options: &JsValue, name: &str) -> Result<Option<u64>, JsValue> {
    let Some(value) = property(options, name) else {
        return Ok(None);
    };
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&n) => {
            Ok(Some(n as u64))
        }
        _ => Err(error(
            Kind::Input,
            format!("`{name}` must be a whole number from 0 to 2^53 - 1"),
        )),
    }
}

/// Reads a string property.
pub fn string_property(options: &JsValue, name: &str) -> Result<Option<String>, JsValue> {
    let Some(value) = property(options, name) else {
        return Ok(None);
    };
    value
        .as_string()
        .map(Some)
        .ok_or_else(|| error(Kind::Input, format!("`{name}` must be a string")))
}

/// Reads a function property.
pub fn function_property(
    options: &JsValue,
    name: &str,
) -> Result<Option<js_sys::Function>, JsValue> {
    let Some(value) = property(options, name) else {
        return Ok(None);
    };
    value
        .dyn_into::<js_sys::Function>()
        .map(Some)
        .map_err(|_| error(Kind::Input, format!("`{name}` must be a function")))
}

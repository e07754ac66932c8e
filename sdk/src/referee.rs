//! Refereed jobs: a step job sent to the client's relay and to a second provider (another
//! stake owner, on a relay added by `client.addRelay`), their answers compared and, where they
//! differ, bisected over their signed commitments down to one segment that the page re-runs.
//! The provider that lied is named, and its fraud proof is handed to the app, which may put it
//! on the ledger with `client.submitFraudProof`: the liar's stake is slashed, the job's price
//! comes back to the customer, and a bounty goes to the submitter.

use crate::api::{Client, Inner, Wallet};
use crate::convert::{Proven, bytes_property, function_property, string_property, to_js};
use crate::error::{Kind, error, error_with_check};
use crate::pay::{self, Offers, Promised};
use client_core::encoding::{decode, encode};
use client_core::identity::{Keypair, PublicKey};
use client_core::job::fraud::{FraudProof, MAX_FRAUD_PROOF_BYTES};
use client_core::ledger::TxKind;
use client_core::ledger::state::Amount;
use client_core::ledger_client;
use client_core::referee_client::{self, FraudReport, Second};
use js_sys::Promise;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// What a job failing for want of a second provider names as its check.
const REFEREE: &str = "referee";

/// How `runJob` checks a result (`verify`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refereed when the job is a step job and a second provider can be paid; else here.
    Auto,
    /// Here only: re-executed, or sampled for long step jobs.
    Here,
    /// Refereed, or not run at all (one-shot jobs are re-executed in full here: that is
    /// already complete verification).
    Refereed,
}

pub(crate) fn mode(options: &JsValue) -> Result<Mode, JsValue> {
    match string_property(options, "verify")?.as_deref() {
        None | Some("auto") => Ok(Mode::Auto),
        Some("self") => Ok(Mode::Here),
        Some("refereed") => Ok(Mode::Refereed),
        Some(other) => Err(error(
            Kind::Input,
            format!("`verify` must be \"auto\", \"self\" or \"refereed\", not {other:?}"),
        )),
    }
}

/// The second provider of a refereed job, and the voucher that pays it.
pub(crate) struct Plan {
    pub second: Second,
    pub promised: Option<Promised>,
}

/// The cheapest second provider for a job of `fuel_limit`: on a connected added relay,
/// another stake owner than the client's relay, active, whose offer takes the job, and that
/// is free or paid from one of the wallet's channels. A `job` error with check `referee` says
/// why there is none.
pub(crate) async fn plan(
    inner: &Inner,
    keypair: &Keypair,
    offers: &Offers,
    fuel_limit: u64,
) -> Result<Plan, JsValue> {
    let home = PublicKey::from_peer_id(&inner.relay).ok();
    let others = inner.connected_others();
    let mut candidates: Vec<_> = others
        .iter()
        .filter_map(|peer| {
            let key = PublicKey::from_peer_id(peer).ok()?;
            if Some(key) == home {
                return None;
            }
            let (_, provider) = offers
                .iter()
                .find(|(k, p)| *k == key && p.active() && fuel_limit <= p.offer.max_fuel)?;
            Some((*peer, key, provider.offer.price_for(fuel_limit)))
        })
        .collect();
    if candidates.is_empty() {
        let why = if others.is_empty() {
            "refereeing needs a second provider: add another provider's relay with \
             client.addRelay"
                .to_string()
        } else {
            format!(
                "none of the added relays that are connected ({}) is an active provider of \
                 another stake owner whose offer takes {fuel_limit} fuel",
                others
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(error_with_check(Kind::Job, why, Some(REFEREE)));
    }
    candidates.sort_by_key(|(_, _, price)| *price);
    let mut channels = None;
    for (relay, key, price) in &candidates {
        if *price == 0 {
            return Ok(Plan {
                second: Second {
                    relay: *relay,
                    payment: None,
                    price: 0,
                },
                promised: None,
            });
        }
        let list = match &mut channels {
            Some(list) => list,
            None => channels.insert(pay::channels_of(inner, keypair.public()).await?),
        };
        if let Ok((voucher, promised)) = pay::promise(inner, keypair, list, key, *price) {
            return Ok(Plan {
                second: Second {
                    relay: *relay,
                    payment: Some(voucher),
                    price: *price,
                },
                promised: Some(promised),
            });
        }
    }
    let (_, key, price) = &candidates[0];
    Err(error_with_check(
        Kind::Job,
        format!(
            "no channel of {} can pay a second provider: open one to {} (this job costs \
             {price} units there) with client.openChannel",
            keypair.public().account_id(),
            key.account_id()
        ),
        Some(REFEREE),
    ))
}

/// A provider a refereed job proved to have lied, as the SDK shows it (its `proof` is added
/// as a `Uint8Array`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FraudView {
    provider: String,
    /// The segment its receipt lied about (0: the initial state).
    segment: u64,
    why: String,
    /// The encoded proof's size, and whether it fits a transaction.
    bytes: usize,
    fits: bool,
}

/// `reports` as a JavaScript array, each with its encoded proof.
pub(crate) fn fraud_views(reports: &[FraudReport]) -> Result<JsValue, JsValue> {
    let list = js_sys::Array::new();
    for report in reports {
        let view = to_js(&FraudView {
            provider: report.provider.to_string(),
            segment: report.segment,
            why: report.why.clone(),
            bytes: report.bytes,
            fits: referee_client::fits(report),
        })?;
        let proof = js_sys::Uint8Array::from(encode(&report.proof).as_slice());
        js_sys::Reflect::set(&view, &"proof".into(), &proof)?;
        list.push(&view);
    }
    Ok(list.into())
}

/// A slash as the ledger records it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SlashView {
    provider: String,
    job: String,
    segment: u64,
    /// Taken from the provider's stake.
    amount: String,
    /// Of that: back to the job's customer, and to the proof's submitter.
    refund: String,
    customer: String,
    bounty: String,
    submitter: String,
    /// The provider's stake left, on its way out (unbonding).
    stake_left: String,
    height: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FraudTxResult {
    tx: String,
    height: u64,
    fee: String,
    /// The slash, read back with a proof.
    slash: Proven<SlashView>,
}

fn amount(a: Amount) -> String {
    a.to_string()
}

#[wasm_bindgen]
impl Client {
    /// Puts a fraud proof (`JobResult.fraud[i].proof`) on the ledger, signed by `wallet`, and
    /// resolves once it is in a block and the provider's slash is read back with a proof.
    #[wasm_bindgen(js_name = submitFraudProof, unchecked_return_type = "Promise<FraudTxResult>")]
    pub fn submit_fraud_proof(
        &self,
        wallet: &Wallet,
        #[wasm_bindgen(unchecked_param_type = "SubmitFraudProofOptions")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        let keypair = wallet.keypair();
        future_to_promise(async move {
            let bytes = bytes_property(&options, "proof")?.ok_or_else(|| {
                error(
                    Kind::Input,
                    "`proof` is required: a fraud proof from a refereed job's `fraud` list",
                )
            })?;
            let proof: FraudProof = decode(&bytes, MAX_FRAUD_PROOF_BYTES)
                .map_err(|e| error(Kind::Input, format!("`proof` is not a fraud proof: {e}")))?;
            let on_progress = function_property(&options, "onProgress")?;
            let accused = proof.receipt.signer;
            let job = proof.receipt.body.job;
            let kind = TxKind::FraudProof {
                proof: Box::new(proof),
            };
            let (tx, height, fee) = inner.transact(&keypair, kind, on_progress).await?;
            let providers = inner
                .read(async |light, control, relay| {
                    ledger_client::providers(light, control, relay).await
                })
                .await?;
            let relay = inner.relay_text();
            let slashed = providers
                .value
                .iter()
                .find(|(key, _)| *key == accused)
                .and_then(|(_, p)| p.slashed.clone().map(|s| (s, p.unbonding.clone())));
            let Some((slash, unbonding)) = slashed else {
                return Err(error(
                    Kind::Ledger,
                    format!(
                        "the fraud proof is in block {height}, but provider {} is not slashed \
                         at block {}",
                        accused.account_id(),
                        providers.height
                    ),
                ));
            };
            if slash.job != job {
                return Err(error(
                    Kind::Ledger,
                    format!(
                        "provider {} was already slashed, for job {} in block {}: this proof \
                         (job {job}) changed nothing",
                        accused.account_id(),
                        slash.job,
                        slash.height
                    ),
                ));
            }
            let view = SlashView {
                provider: accused.account_id(),
                job: job.to_string(),
                segment: slash.segment,
                amount: amount(slash.amount),
                refund: amount(slash.refund),
                customer: slash.customer.account_id(),
                bounty: amount(slash.bounty),
                submitter: slash.submitter.account_id(),
                stake_left: amount(unbonding.map_or(0, |u| u.amount)),
                height: slash.height,
            };
            to_js(&FraudTxResult {
                tx: tx.to_string(),
                height,
                fee: fee.to_string(),
                slash: Proven {
                    value: view,
                    height: providers.height,
                    state_root: providers.state_root.to_string(),
                    time_ms: providers.time_ms,
                    relay,
                },
            })
        })
    }
}

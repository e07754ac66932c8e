//! Paying providers: the faucet of a dev network, payment channels (escrow on the ledger for
//! one provider) and the voucher that pays each job from one. A voucher promises a cumulative
//! amount on a channel; the provider settles the latest one on the ledger. What this browser
//! already promised on each channel is kept in `localStorage` (`aqueduct-sdk.promised.<id>`),
//! so a reload does not sign a voucher below one already sent (a provider refuses those).

use crate::api::{Client, Inner, Wallet};
use crate::convert::{function_property, string_property, to_js};
use crate::error::{Kind, error, error_with_check};
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::job_client::{NOT_CHARGED, Order, PAYMENT_REFUSED};
use client_core::ledger::Voucher;
use client_core::ledger::pay::{PickError, pick_channel, voucher_for};
use client_core::ledger::state::{Amount, Channel, Provider, StateKey, StateValue};
use client_core::ledger::tx::{TxKind, channel_id, min_fee_for};
use client_core::ledger_client::{self, TxEvent};
use client_core::signed::Signed;
use js_sys::Promise;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// A channel as the SDK shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelView {
    id: String,
    provider: String,
    /// Everything put in.
    deposit: String,
    /// Already paid out to the provider (settled on the ledger).
    settled: String,
    /// What this browser has promised by vouchers (at least `settled`).
    promised: String,
    /// What is left to promise: `deposit - promised`.
    available: String,
    /// From then on the customer may close the channel and take back the rest (Unix ms).
    expires_at_ms: u64,
}

impl ChannelView {
    fn new(id: &Hash, channel: &Channel) -> Self {
        let promised = promised(id).unwrap_or(0).max(channel.settled);
        ChannelView {
            id: id.to_string(),
            provider: channel.provider.account_id(),
            deposit: channel.deposit.to_string(),
            settled: channel.settled.to_string(),
            promised: promised.to_string(),
            available: channel.deposit.saturating_sub(promised).to_string(),
            expires_at_ms: channel.expires_at_ms,
        }
    }
}

/// A transaction included in a block, its inclusion proven.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TxResult {
    tx: String,
    height: u64,
    fee: String,
    /// `openChannel`: the new channel's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
}

/// A job's payment, in its result.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidView {
    pub amount: String,
    pub channel: String,
    /// The voucher's cumulative amount on the channel.
    pub cumulative: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TxProgress {
    stage: &'static str,
    detail: String,
}

fn promised_key(channel: &Hash) -> String {
    format!("aqueduct-sdk.promised.{channel}")
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// What this browser last promised on `channel`, if it remembers.
fn promised(channel: &Hash) -> Option<Amount> {
    local_storage()?
        .get_item(&promised_key(channel))
        .ok()??
        .parse()
        .ok()
}

fn set_promised(channel: &Hash, cumulative: Amount) {
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(&promised_key(channel), &cumulative.to_string());
    }
}

/// A voucher sent with a job: its channel, the promise it builds on and the one it makes.
pub(crate) struct Promised {
    channel: Hash,
    previous: Amount,
    price: Amount,
}

impl Promised {
    /// The voucher was not sent after all: what was promised before stands.
    pub(crate) fn take_back(&self) {
        set_promised(&self.channel, self.previous);
    }

    /// After the job: a voucher the provider did not take (the payment was refused, or the job
    /// failed on the relay and is not charged) is not kept as promised; otherwise, the
    /// payment to show with the result.
    pub(crate) fn after(&self, failed_check: Option<&str>) -> Option<PaidView> {
        if failed_check.is_some_and(|check| check == PAYMENT_REFUSED || check == NOT_CHARGED) {
            self.take_back();
            return None;
        }
        Some(PaidView {
            amount: self.price.to_string(),
            channel: self.channel.to_string(),
            cumulative: self.previous.saturating_add(self.price).to_string(),
        })
    }
}

/// The registered providers and their offers, proven.
pub(crate) type Offers = Vec<(PublicKey, Provider)>;

/// What a job of `fuel_limit` costs at `provider`'s offer: nothing where it is not an active
/// provider or its offer is free.
pub(crate) fn price_at(offers: &Offers, provider: &PublicKey, fuel_limit: u64) -> Amount {
    offers
        .iter()
        .find(|(key, p)| key == provider && p.active())
        .map_or(0, |(_, p)| p.offer.price_for(fuel_limit))
}

/// The customer's channels, proven.
pub(crate) async fn channels_of(
    inner: &Inner,
    customer: PublicKey,
) -> Result<Vec<(Hash, Channel)>, JsValue> {
    Ok(inner
        .read(async |light, control, relay| {
            ledger_client::channels(light, control, relay, customer).await
        })
        .await?
        .value)
}

/// A voucher paying `price` to `provider` on the customer's channel to it with the most left,
/// recorded as promised before it is sent (a voucher once sent may be settled).
pub(crate) fn promise(
    inner: &Inner,
    keypair: &Keypair,
    channels: &[(Hash, Channel)],
    provider: &PublicKey,
    price: Amount,
) -> Result<(Signed<Voucher>, Promised), PickError> {
    let (channel, previous) = pick_channel(channels, provider, price, promised)?;
    let voucher = voucher_for(keypair, &inner.genesis.network_id, channel, previous, price);
    set_promised(&channel, voucher.body.cumulative);
    Ok((
        voucher,
        Promised {
            channel,
            previous,
            price,
        },
    ))
}

/// The payment a job of `order` needs on the client's relay: none where the relay is not an
/// active provider or its offer is free; else a voucher on the wallet's channel to it with the
/// most left.
pub(crate) async fn pay(
    inner: &Inner,
    keypair: &Keypair,
    order: Order,
    offers: &Offers,
) -> Result<(Order, Option<Promised>), JsValue> {
    let Ok(provider) = PublicKey::from_peer_id(&inner.relay) else {
        return Ok((order, None));
    };
    let price = price_at(offers, &provider, order.fuel_limit);
    if price == 0 {
        return Ok((order, None));
    }
    let customer = keypair.public();
    let channels = channels_of(inner, customer).await?;
    let (voucher, promised) =
        promise(inner, keypair, &channels, &provider, price).map_err(|e| {
            let why = match e {
                PickError::NoChannel => format!(
                    "no payment channel from {} to provider {}: open one with \
                     client.openChannel",
                    customer.account_id(),
                    provider.account_id()
                ),
                PickError::NotEnough { available, .. } => format!(
                    "the channel to provider {} has {available} units left to promise: open \
                     another with client.openChannel",
                    provider.account_id()
                ),
            };
            error_with_check(
                Kind::Job,
                format!("{PAYMENT_REFUSED}: this job costs {price} units; {why}"),
                Some(PAYMENT_REFUSED),
            )
        })?;
    let order = Order {
        payment: Some(voucher),
        price,
        ..order
    };
    Ok((order, Some(promised)))
}

impl Inner {
    /// Signs `kind` at the minimum fee, submits it and waits for its block, reporting progress
    /// to `on_progress`; its inclusion is proven.
    pub(crate) async fn transact(
        &self,
        keypair: &Keypair,
        kind: TxKind,
        on_progress: Option<js_sys::Function>,
    ) -> Result<(Hash, u64, Amount), JsValue> {
        // The fee the network's current parameters ask (the DAO may have changed them).
        let params = self
            .read(async |light, control, relay| {
                ledger_client::read(light, control, relay, vec![StateKey::Params]).await
            })
            .await?;
        let params = match params.value.into_iter().next() {
            Some(Some(StateValue::Params(p))) => p,
            _ => self.genesis.params.clone(),
        };
        let fee = min_fee_for(&params, &self.genesis.network_id, &kind);
        let on_event = |event: TxEvent| {
            let Some(f) = &on_progress else { return };
            let (stage, detail) = match event {
                TxEvent::Signed { tx } => ("signed", format!("signed {tx}, sending")),
                TxEvent::Pending { pending } => (
                    "pending",
                    format!("in the relay's mempool ({pending} pending), waiting for a block"),
                ),
                TxEvent::StillPending { waits } => (
                    "pending",
                    format!("no block has included it yet ({waits} waits); submitted again"),
                ),
                TxEvent::Included { height } => ("included", format!("included in block {height}")),
            };
            if let Ok(value) = to_js(&TxProgress { stage, detail }) {
                let _ = f.call1(&JsValue::NULL, &value);
            }
        };
        self.wait_connected().await?;
        let mut control = self.control();
        let (tx, height) = ledger_client::transact(
            &self.light,
            &mut control,
            self.relay,
            keypair,
            kind,
            fee,
            &on_event,
        )
        .await
        .map_err(|e| error(Kind::Ledger, e))?;
        Ok((tx, height, fee))
    }
}

#[wasm_bindgen]
impl Client {
    /// Draws the dev network's faucet into the wallet's account (once per account; networks
    /// without a faucet refuse it with a `ledger` error).
    #[wasm_bindgen(unchecked_return_type = "Promise<TxResult>")]
    pub fn faucet(
        &self,
        wallet: &Wallet,
        #[wasm_bindgen(unchecked_param_type = "TxOptions | undefined")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        let keypair = wallet.keypair();
        future_to_promise(async move {
            let on_progress = function_property(&options, "onProgress")?;
            let (tx, height, fee) = inner
                .transact(&keypair, TxKind::Faucet, on_progress)
                .await?;
            to_js(&TxResult {
                tx: tx.to_string(),
                height,
                fee: fee.to_string(),
                channel: None,
            })
        })
    }

    /// Opens a payment channel from the wallet's account to `provider` (its account id),
    /// escrowing `amount` units (a decimal string or a number): jobs on that provider's relay
    /// are then paid from it by vouchers. Resolves once the transaction's inclusion is proven.
    #[wasm_bindgen(js_name = openChannel, unchecked_return_type = "Promise<TxResult>")]
    pub fn open_channel(
        &self,
        wallet: &Wallet,
        #[wasm_bindgen(unchecked_param_type = "OpenChannelOptions")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        let keypair = wallet.keypair();
        future_to_promise(async move {
            let provider = string_property(&options, "provider")?
                .ok_or_else(|| error(Kind::Input, "`provider` is required: its account id"))?;
            let provider = PublicKey::parse(&provider).map_err(|e| error(Kind::Input, e))?;
            let amount = amount_property(&options, "amount")?;
            let on_progress = function_property(&options, "onProgress")?;
            let nonce = inner
                .read(async |light, control, relay| {
                    ledger_client::account(light, control, relay, keypair.public()).await
                })
                .await?
                .value
                .nonce;
            let kind = TxKind::OpenChannel { provider, amount };
            let (tx, height, fee) = inner.transact(&keypair, kind, on_progress).await?;
            // The channel's id is the sender's and the nonce the transaction was signed at;
            // read back with a proof, it must be there.
            let id = channel_id(&keypair.public(), nonce);
            let customer = keypair.public();
            let channels = inner
                .read(async |light, control, relay| {
                    ledger_client::channels(light, control, relay, customer).await
                })
                .await?;
            if !channels.value.iter().any(|(c, _)| *c == id) {
                return Err(error(
                    Kind::Ledger,
                    format!("the channel {id} is not among the account's proven channels"),
                ));
            }
            to_js(&TxResult {
                tx: tx.to_string(),
                height,
                fee: fee.to_string(),
                channel: Some(id.to_string()),
            })
        })
    }

    /// An account's payment channels, proven, with what this browser has promised on each.
    #[wasm_bindgen(unchecked_return_type = "Promise<Proven<ChannelView[]>>")]
    pub fn channels(&self, account: String) -> Promise {
        self.proven_about(
            &account,
            async |light, control, relay, who| {
                ledger_client::channels(light, control, relay, who).await
            },
            |_, list: Vec<(Hash, Channel)>| {
                list.iter()
                    .map(|(id, c)| ChannelView::new(id, c))
                    .collect::<Vec<_>>()
            },
        )
    }
}

/// An amount of base units: a decimal string, or a whole number up to 2^53.
fn amount_property(options: &JsValue, name: &str) -> Result<Amount, JsValue> {
    let value = crate::convert::property(options, name)
        .ok_or_else(|| error(Kind::Input, format!("`{name}` is required: units")))?;
    let amount = if let Some(text) = value.as_string() {
        text.trim().parse::<Amount>().ok()
    } else {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= 9_007_199_254_740_992.0)
            .map(|n| n as Amount)
    };
    amount.filter(|a| *a > 0).ok_or_else(|| {
        error(
            Kind::Input,
            format!("`{name}` must be a positive whole number of units (a decimal string)"),
        )
    })
}

//! The jobs page: pick an example or upload a module, edit the input, submit, watch progress,
//! cancel, see the output and what was verified, and reopen past results. The work is in
//! `client_core::job_client::run`; the history records are `client_core::job::history`.

use crate::ledger::LedgerState;
use crate::network::NetworkState;
use crate::pages::market::TxStatus;
use crate::pages::wallet::UnlockForm;
use crate::wallet::{WalletState, WalletStatus};
use crate::widgets::{chosen_file_name, local_storage, read_file_bytes};
use client_core::browser;
use client_core::browser::PeerId;
use client_core::hash::Hash;
use client_core::identity::PublicKey;
use client_core::job::MAX_INPUT_BYTES;
use client_core::job::history::{self, JobRecord, Level, Outcome};
use client_core::job::profile::{JobForm as Form, Profile};
use client_core::job_client::{
    self, Cancel, Engine, NOT_CHARGED, Order, PAYMENT_REFUSED, RunEvent, Submitter,
};
use client_core::ledger::Amount;
use client_core::ledger::TxKind;
use client_core::ledger::pay::{pick_channel, voucher_for};
use client_core::ledger::state::{Offer, format_amount, format_count, format_fuel};
use client_core::referee_client::{self, FraudReport, Second};
use client_core::storage::Storage;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The app prepares job modules and checks results in its worker (`www/worker.js`, with its own
/// wasm), so the page's bundle carries no module validator or instrumenter and stays responsive.
const ENGINE: Engine<'static> = Engine::Worker(crate::kdf::WORKER_URL);

/// The example jobs built from `www/jobs` and served under `/jobs/`.
pub struct Example {
    pub name: &'static str,
    pub title: &'static str,
    pub input: &'static str,
    pub help: &'static str,
    pub fuel: u64,
    /// The step limit the form starts with (step jobs; one-shot jobs take no steps).
    pub steps: u32,
}

pub const EXAMPLES: [Example; 3] = [
    Example {
        name: "hash-chain",
        title: "Hash chain (step job: refereed or sampled)",
        input: "1000 2000 aqueduct",
        help: "STEPS ROUNDS SEED — a BLAKE3 chain of STEPS × ROUNDS hashes, checkpointed every step",
        fuel: 20_000_000_000,
        steps: 1000,
    },
    Example {
        name: "mandelbrot",
        title: "Mandelbrot image (one-shot: re-executed)",
        input: "320 240 256",
        help: "WIDTH HEIGHT ITERATIONS — returns a BMP image",
        fuel: 5_000_000_000,
        steps: 1,
    },
    Example {
        name: "primes",
        title: "Count primes (one-shot: re-executed)",
        input: "2000000",
        help: "N — counts the primes below N with a sieve",
        fuel: 5_000_000_000,
        steps: 1,
    },
];

/// The value of the source picker that means "my own module".
const UPLOAD: usize = usize::MAX;
const DEFAULT_UPLOAD_FUEL: u64 = 1_000_000_000;
const DEFAULT_UPLOAD_STEPS: u32 = 1000;

/// The job history of this browser, shared by the pages.
#[derive(Clone, Copy)]
pub struct JobsState {
    pub history: RwSignal<Vec<JobRecord>>,
    pub history_error: RwSignal<Option<String>>,
    storage: StoredValue<Option<Storage>, LocalStorage>,
    /// The example modules, fetched once from the serving relay: kept so that jobs still go
    /// out (through another relay) if the relay that served the page goes away.
    examples: StoredValue<Vec<(&'static str, Vec<u8>)>>,
}

impl JobsState {
    pub fn start() -> Self {
        let state = JobsState {
            history: RwSignal::new(Vec::new()),
            history_error: RwSignal::new(None),
            storage: StoredValue::new_local(None),
            examples: StoredValue::new(Vec::new()),
        };
        // The examples are small (tens of KB together); fetch them once the page has settled.
        leptos::task::spawn_local(async move {
            browser::pause(1_500).await;
            for ex in &EXAMPLES {
                let _ = state.example(ex.name).await;
            }
        });
        leptos::task::spawn_local(async move {
            match Storage::open().await {
                Ok(storage) => {
                    match storage.jobs().await {
                        Ok(raw) => {
                            let mut records: Vec<JobRecord> = raw
                                .iter()
                                .filter_map(|bytes| JobRecord::decode(bytes).ok())
                                .collect();
                            let skipped = raw.len() - records.len();
                            history::newest_first(&mut records, history::MAX_RECORDS);
                            if skipped > 0 {
                                state.history_error.set(Some(format!(
                                    "{skipped} stored records could not be read and are not shown"
                                )));
                            }
                            state.history.set(records);
                        }
                        Err(e) => state.history_error.set(Some(e.to_string())),
                    }
                    state.storage.set_value(Some(storage));
                }
                Err(e) => state.history_error.set(Some(e.to_string())),
            }
        });
        state
    }

    /// An example module's bytes, from memory or fetched from the serving relay.
    async fn example(&self, name: &'static str) -> Result<Vec<u8>, String> {
        if let Some(bytes) = self
            .examples
            .with_value(|e| e.iter().find(|(n, _)| *n == name).map(|(_, b)| b.clone()))
        {
            return Ok(bytes);
        }
        let bytes = fetch_bytes(&format!("/jobs/{name}.wasm")).await?;
        self.examples.update_value(|e| {
            if !e.iter().any(|(n, _)| *n == name) {
                e.push((name, bytes.clone()));
            }
        });
        Ok(bytes)
    }

    /// Adds a finished job to the history (memory and IndexedDB), pruning the oldest.
    async fn record(&self, record: JobRecord) {
        let mut all = self.history.get_untracked();
        all.retain(|r| r.base.job != record.base.job);
        all.push(record.clone());
        let dropped = history::newest_first(&mut all, history::MAX_RECORDS);
        all.truncate(history::MAX_RECORDS);
        self.history.set(all);
        let Some(storage) = self.storage.get_value() else {
            self.history_error.set(Some(
                "browser storage is not open: this result is not saved".into(),
            ));
            return;
        };
        if let Err(e) = storage.put_job(&record.key(), &record.encode()).await {
            self.history_error
                .set(Some(format!("this result was not saved: {e}")));
        }
        for key in dropped {
            let _ = storage.delete_job(&key).await;
        }
    }
}

#[derive(Clone, PartialEq)]
enum Rendered {
    Text(String),
    Image(String),
    Bytes(String),
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|_| format!("could not fetch {url}"))?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "not a response")?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|_| "no body")?)
        .await
        .map_err(|_| "could not read the body")?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

fn render_output(bytes: &[u8]) -> Rendered {
    if bytes.starts_with(b"BM") {
        let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
        let options = web_sys::BlobPropertyBag::new();
        options.set_type("image/bmp");
        if let Ok(blob) = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
            && let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob)
        {
            return Rendered::Image(url);
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Rendered::Text(text.to_string()),
        Err(_) => {
            let mut hex: String = bytes.iter().take(512).map(|b| format!("{b:02x}")).collect();
            if bytes.len() > 512 {
                hex.push_str(&format!("… ({} bytes)", bytes.len()));
            }
            Rendered::Bytes(hex)
        }
    }
}

#[component]
fn OutputView(bytes: Vec<u8>) -> impl IntoView {
    match render_output(&bytes) {
        Rendered::Text(t) => {
            view! { <pre class="output mono" data-testid="job-output">{t}</pre> }.into_any()
        }
        Rendered::Image(url) => view! {
            <img class="output" data-testid="job-output" src=url alt="image returned by the job"/>
        }
        .into_any(),
        Rendered::Bytes(hex) => {
            view! { <pre class="output mono wrap" data-testid="job-output">{hex}</pre> }.into_any()
        }
    }
}

fn level_line(level: &Level, run_ms: u64) -> String {
    match level {
        Level::Refereed {
            second,
            segments,
            rounds,
            liar,
            referee_ms,
        } => {
            let cost = if run_ms > 0 {
                format!(
                    " Refereeing took {referee_ms} ms here, {:.2}% of the providers' {run_ms} ms.",
                    *referee_ms as f64 * 100.0 / run_ms as f64
                )
            } else {
                String::new()
            };
            match liar {
                None => format!(
                    "Level: refereed — two providers with different stakes ({second} was the second) committed to the same {segments}-segment trace and output. Correct unless both lied; it does not hold if they colluded.{cost}"
                ),
                Some((liar, segment)) => format!(
                    "Level: refereed — the providers disagreed; {rounds} rounds of bisection found segment {segment}, re-run here: {liar} lied, with certainty (its own signatures show it). The other's result is shown: correct unless it lied too.{cost}"
                ),
            }
        }
        Level::Reexecuted { .. } => "Level: full re-execution in this browser.".into(),
        Level::Sampled {
            segments,
            checked,
            caught_ppm,
        } => format!(
            "Level: evidence of work (commit, then sample) — {checked} of {segments} segments re-run; a relay that skipped 5% of the work is caught with probability {:.2}%, one that forged a single step only with {:.1}%. It does not show that the output is correct: only full re-execution, or a second provider's matching result, does.",
            f64::from(*caught_ppm) / 10_000.0,
            client_core::job::verify::single_step_catch(*segments, *checked) * 100.0
        ),
    }
}

/// What a job paid, for tables: nothing when its payment was refused.
fn paid_cell(record: &JobRecord) -> String {
    let refused = matches!(&record.outcome, Outcome::Failed { check, .. } if check == PAYMENT_REFUSED || check == NOT_CHARGED);
    match record.base.paid {
        Some(amount) if !refused => format_amount(amount),
        _ => "–".into(),
    }
}

/// A finished job: output, verification panel, timing.
#[component]
fn RecordView(record: JobRecord) -> impl IntoView {
    let relay = record.base.relay.clone();
    let paid = paid_cell(&record);
    let paid = (paid != "–").then(|| {
        view! { <p class="muted" data-testid="job-paid">{format!("Paid {paid} by a voucher on the payment channel.")}</p> }
    });
    match record.outcome {
        Outcome::Verified {
            output,
            checks,
            level,
            run_ms,
            verify_ms,
            ..
        } => view! {
            <h3>"Output"</h3>
            <OutputView bytes=output/>
            <div data-testid="job-verification" class="verification">
                <h3>{match level {
                    Level::Sampled { .. } => "Receipt checked, work sampled",
                    Level::Reexecuted { .. } => "Verified",
                    Level::Refereed { liar: None, .. } => "Refereed: two providers agree",
                    Level::Refereed { liar: Some(_), .. } => "Refereed: a lying provider caught",
                }}</h3>
                <ul class="checks">
                    {checks.into_iter().map(|c| view! { <li class="ok">{c}</li> }).collect_view()}
                </ul>
                <p class="muted" data-testid="job-level" data-level=level.label()>{level_line(&level, run_ms)}</p>
                <p class="muted">"Run by relay "<span class="mono">{relay}</span></p>
                {paid}
                <p class="muted" data-testid="job-timing" data-run-ms=run_ms.to_string() data-verify-ms=verify_ms.to_string()>
                    {format!("The relay ran it in {run_ms} ms; checking it here took {verify_ms} ms.")}
                </p>
            </div>
        }
        .into_any(),
        Outcome::Failed { check, reason } => view! {
            <div data-testid="job-verification" class="verification">
                <h3>"Not verified"</h3>
                <p class="bad">{format!("Failed check: {check}")}</p>
                <p>{reason}</p>
                <p class="muted">"Relay "<span class="mono">{relay}</span></p>
                {paid}
            </div>
        }
        .into_any(),
        Outcome::Cancelled => view! {
            <div data-testid="job-verification" class="verification">
                <h3>"Cancelled"</h3>
                <p class="muted">"You stopped this job before it finished; there is nothing to verify."</p>
                {paid}
            </div>
        }
        .into_any(),
    }
}

/// Shown instead of the form while there is no unlocked key.
#[component]
fn NeedsKey() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    move || {
        match wallet.status.get() {
        WalletStatus::Locked { .. } => view! {
            <p>"Jobs are signed with your account key. Unlock it to submit."</p>
            <crate::pages::wallet::Busy/>
            <UnlockForm/>
        }
        .into_any(),
        WalletStatus::Loading => view! { <p class="muted">"Reading this browser's storage…"</p> }.into_any(),
        _ => view! {
            <p>"Jobs are signed with your account key. "<a href="/wallet" data-testid="jobs-create-wallet">"Create or restore an account"</a>" first."</p>
        }
        .into_any(),
    }
    }
}

#[component]
pub fn JobsPage() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    view! {
        <section class="card">
            <h1>"Run a job"</h1>
            <p class="muted">
                "The relay runs your WebAssembly module; this browser then checks the signed receipt and re-runs the job, or samples it, in its own engine."
            </p>
            {move || if matches!(wallet.status.get(), WalletStatus::Unlocked { .. }) {
                view! { <JobForm/> }.into_any()
            } else {
                view! { <NeedsKey/> }.into_any()
            }}
        </section>
        <History/>
    }
}

/// Where a job goes, and the offer it pays under (`None`: the relay is not a provider, the job
/// is free). The chosen offer (Marketplace page) wins; otherwise the first connected relay.
fn job_target(
    network: NetworkState,
    ledger: LedgerState,
) -> Result<(PeerId, Option<(PublicKey, Offer)>), String> {
    let relay = match ledger.chosen.get() {
        Some(key) => {
            let peer = key
                .to_peer_id()
                .map_err(|e| format!("the chosen provider's key: {e}"))?;
            if !network.is_connected(&peer) {
                return Err(format!(
                    "the chosen provider {peer} is not connected: add its address on the Relays page, or choose another offer on the Marketplace page"
                ));
            }
            peer
        }
        None => network.job_relay().ok_or_else(|| {
            "no relay of this network is connected right now; see the Relays page".to_string()
        })?,
    };
    let key = PublicKey::from_peer_id(&relay).ok();
    let offer = ledger.providers.get().and_then(|verified| {
        verified
            .value
            .into_iter()
            .find(|(k, p)| Some(*k) == key && p.active())
            .map(|(k, p)| (k, p.offer))
    });
    Ok((relay, offer))
}

/// A second provider: its relay, key, price for the job, and the channel and previous amount
/// its voucher builds on (`None`: free).
type SecondPlan = (PeerId, PublicKey, Amount, Option<(Hash, Amount)>);

/// The second provider of a refereed job: an active provider other than `first` (its stake is
/// its own), connected, that this account can pay for `fuel_limit` (free, or a channel covers
/// its price); the cheapest such. With its offer and its voucher's channel and previous amount.
fn second_provider(
    network: NetworkState,
    ledger: LedgerState,
    first: &PeerId,
    fuel_limit: u64,
) -> Result<SecondPlan, String> {
    let first_key = PublicKey::from_peer_id(first).ok();
    let providers = ledger
        .providers
        .get_untracked()
        .map(|v| v.value)
        .unwrap_or_default();
    let channels = ledger.channels.get_untracked();
    let mut candidates: Vec<SecondPlan> = providers
        .into_iter()
        .filter(|(key, p)| Some(*key) != first_key && p.active() && fuel_limit <= p.offer.max_fuel)
        .filter_map(|(key, p)| {
            let peer = key.to_peer_id().ok()?;
            if !network.is_connected(&peer) {
                return None;
            }
            let price = p.offer.price_for(fuel_limit);
            if price == 0 {
                return Some((peer, key, 0, None));
            }
            let (channel, previous) = pick_channel(&channels, &key, price, promised).ok()?;
            Some((peer, key, price, Some((channel, previous))))
        })
        .collect();
    candidates.sort_by_key(|(_, _, price, _)| *price);
    candidates.into_iter().next().ok_or_else(|| {
        "refereeing needs a second provider (another stake owner) that is connected and that you can pay: open a channel to one on the Marketplace page, or add its relay on the Relays page".to_string()
    })
}

fn promised_key(channel: &Hash) -> String {
    format!("aqueduct.promised.{channel}")
}

/// What this browser last promised on `channel` (its latest voucher), if it remembers.
fn promised(channel: &Hash) -> Option<Amount> {
    local_storage()?
        .get_item(&promised_key(channel))
        .ok()
        .flatten()?
        .parse()
        .ok()
}

fn set_promised(channel: &Hash, cumulative: Amount) {
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(&promised_key(channel), &cumulative.to_string());
    }
}

/// The price line above the submit button: what the job will cost and where it is paid from.
/// A whole number as a person types it: spaces around, `_` or `,` between digits allowed.
fn whole_number(text: &str) -> Option<u64> {
    text.trim().replace(['_', ','], "").parse().ok()
}

fn price_line(
    network: NetworkState,
    ledger: LedgerState,
    fuel_limit: Option<u64>,
) -> (bool, String) {
    let (relay, offer) = match job_target(network, ledger) {
        Ok(t) => t,
        Err(e) => return (false, e),
    };
    let Some((provider, offer)) = offer else {
        return (
            true,
            format!(
                "Free: relay {relay} is not a provider on this network's ledger, so no payment is sent."
            ),
        );
    };
    let Some(fuel) = fuel_limit else {
        return (false, "Enter a fuel limit to see the price.".into());
    };
    let price = offer.price_for(fuel);
    let what = format!(
        "Price: {} ({} per million fuel × {} fuel, {}) to provider {relay}",
        format_amount(price),
        format_amount(offer.price_per_mfuel),
        format_count(fuel),
        format_fuel(fuel)
    );
    if price == 0 {
        return (true, format!("{what}."));
    }
    let channels = ledger.channels.get();
    match pick_channel(&channels, &provider, price, promised) {
        Ok((channel, previous)) => {
            let left = channels
                .iter()
                .find(|(id, _)| *id == channel)
                .map_or(0, |(_, c)| c.deposit.saturating_sub(previous));
            let short = channel.to_string();
            (
                true,
                format!(
                    "{what}, paid by a voucher on channel {}… ({} left to spend on it).",
                    &short[..12],
                    format_amount(left)
                ),
            )
        }
        Err(e) => (false, format!("{what}: {e}.")),
    }
}

#[component]
pub fn JobForm() -> impl IntoView {
    let network = expect_context::<NetworkState>();
    let wallet = expect_context::<WalletState>();
    let jobs = expect_context::<JobsState>();
    let ledger = expect_context::<LedgerState>();
    // The offers and this account's channels, verified, for the price line.
    Effect::new(move |_| {
        if ledger.genesis.get().is_some() {
            ledger.refresh_market();
            if let Some(keypair) = wallet.keypair() {
                ledger.refresh_account(keypair.public());
            }
        }
    });
    let source = RwSignal::new(0usize);
    let input = RwSignal::new(EXAMPLES[0].input.to_string());
    let fuel = RwSignal::new(EXAMPLES[0].fuel.to_string());
    let steps = RwSignal::new(EXAMPLES[0].steps.to_string());
    // An uploaded module: (file name, bytes) once it passed validation.
    let upload = StoredValue::new(None::<(String, Vec<u8>)>);
    let module_info = RwSignal::new(None::<Result<String, String>>);
    let module_file = NodeRef::<leptos::html::Input>::new();
    // Input from a file instead of the text field: (file name, bytes).
    let input_file = RwSignal::new(None::<(String, Vec<u8>)>);
    let input_file_ref = NodeRef::<leptos::html::Input>::new();
    let input_error = RwSignal::new(None::<String>);

    let status = RwSignal::new("idle".to_string());
    let detail = RwSignal::new(String::new());
    let progress = RwSignal::new(None::<f64>);
    let live_output = RwSignal::new(None::<Vec<u8>>);
    let result = RwSignal::new(None::<JobRecord>);
    let cancel = StoredValue::new_local(None::<Cancel>);
    let busy = RwSignal::new(false);
    // How the result is checked: "auto" (refereed for step jobs when a second provider can be
    // paid, else in this browser), "self" or "refereed".
    let mode = RwSignal::new("auto".to_string());
    // Providers a refereed job proved to have lied, with their fraud proofs.
    let fraud = RwSignal::new(Vec::<FraudReport>::new());

    let choose = move |value: String| {
        if value == "upload" {
            source.set(UPLOAD);
            input.set(String::new());
            fuel.set(DEFAULT_UPLOAD_FUEL.to_string());
            steps.set(DEFAULT_UPLOAD_STEPS.to_string());
        } else if let Ok(i) = value.parse::<usize>() {
            let i = i.min(EXAMPLES.len() - 1);
            source.set(i);
            input.set(EXAMPLES[i].input.to_string());
            fuel.set(EXAMPLES[i].fuel.to_string());
            steps.set(EXAMPLES[i].steps.to_string());
        }
    };

    let module_chosen = move || {
        let Some(el) = module_file.get_untracked() else {
            return;
        };
        upload.set_value(None);
        module_info.set(None);
        leptos::task::spawn_local(async move {
            let checked = match read_file_bytes(&el, Profile::V1.max_module_bytes).await {
                Ok((name, bytes)) => match ENGINE.prepare(&bytes).await {
                    Ok(prepared) => {
                        let form = match prepared.form {
                            Form::OneShot => "one-shot job (re-executed to verify)",
                            Form::Steps => "step job (sampled to verify when long)",
                        };
                        let info = format!(
                            "{name}: {} bytes, a valid {form}; module {}",
                            bytes.len(),
                            prepared.module_hash
                        );
                        upload.set_value(Some((name, bytes)));
                        Ok(info)
                    }
                    Err(e) => Err(format!("{name} cannot run here: {e}")),
                },
                Err(e) => Err(e),
            };
            module_info.set(Some(checked));
        });
    };

    let input_chosen = move || {
        let Some(el) = input_file_ref.get_untracked() else {
            return;
        };
        if chosen_file_name(&el).is_none() {
            input_file.set(None);
            return;
        }
        leptos::task::spawn_local(async move {
            match read_file_bytes(&el, MAX_INPUT_BYTES).await {
                Ok(file) => {
                    input_file.set(Some(file));
                    input_error.set(None);
                }
                Err(e) => {
                    input_file.set(None);
                    input_error.set(Some(e));
                }
            }
        });
    };

    let submit = move || {
        let which = source.get_untracked();
        let input_bytes = match input_file.get_untracked() {
            Some((_, bytes)) => bytes,
            None => input.get_untracked().into_bytes(),
        };
        let fuel_limit = match whole_number(&fuel.get_untracked()) {
            Some(f) if f > 0 => f,
            _ => {
                input_error.set(Some(
                    "the fuel limit must be a positive whole number".into(),
                ));
                return;
            }
        };
        let max_steps =
            match whole_number(&steps.get_untracked()).and_then(|s| u32::try_from(s).ok()) {
                Some(s) if (1..=client_core::job::exec::MAX_STEPS).contains(&s) => s,
                _ => {
                    input_error.set(Some(format!(
                        "the step limit must be a whole number from 1 to {}",
                        format_count(u64::from(client_core::job::exec::MAX_STEPS))
                    )));
                    return;
                }
            };
        input_error.set(None);
        let Some(keypair) = wallet.keypair() else {
            input_error.set(Some("the wallet is locked".into()));
            return;
        };
        let (Some(handle), Some(network_id)) =
            (network.peer.get_value(), network.network_id.get_untracked())
        else {
            input_error.set(Some("not connected to a relay yet".into()));
            return;
        };
        let (relay, offer) = match job_target(network, ledger) {
            Ok(target) => target,
            Err(e) => {
                input_error.set(Some(e));
                return;
            }
        };
        // Pay under the relay's verified offer: a voucher on the customer's channel to it.
        let (payment, price) = match offer {
            Some((provider, offer)) if offer.price_for(fuel_limit) > 0 => {
                let price = offer.price_for(fuel_limit);
                let channels = ledger.channels.get_untracked();
                match pick_channel(&channels, &provider, price, promised) {
                    Ok((channel, previous)) => {
                        let voucher = voucher_for(&keypair, &network_id, channel, previous, price);
                        // Remembered before sending: a voucher once sent may be settled.
                        set_promised(&channel, voucher.body.cumulative);
                        (Some((voucher, previous)), price)
                    }
                    Err(e) => {
                        input_error.set(Some(format!(
                            "this job costs {}: {e}",
                            format_amount(price)
                        )));
                        return;
                    }
                }
            }
            _ => (None, 0),
        };
        let second = match mode.get_untracked().as_str() {
            "self" => None,
            "refereed" => match second_provider(network, ledger, &relay, fuel_limit) {
                Ok(second) => Some(second),
                Err(e) => {
                    input_error.set(Some(e));
                    if let Some((voucher, previous)) = &payment {
                        set_promised(&voucher.body.channel, *previous);
                    }
                    return;
                }
            },
            _ => second_provider(network, ledger, &relay, fuel_limit).ok(),
        };
        let token = Cancel::new();
        cancel.set_value(Some(token.clone()));
        busy.set(true);
        result.set(None);
        live_output.set(None);
        fraud.set(Vec::new());
        progress.set(None);
        status.set("preparing".into());
        detail.set(String::new());
        leptos::task::spawn_local(async move {
            let module = if which == UPLOAD {
                upload
                    .get_value()
                    .ok_or_else(|| "choose a valid .wasm file first".to_string())
            } else {
                let name = EXAMPLES[which].name;
                detail.set(format!("fetching /jobs/{name}.wasm"));
                jobs.example(name)
                    .await
                    .map(|bytes| (name.to_string(), bytes))
            };
            let randomness = browser::random_bytes::<16>();
            // Refereeing is for step jobs: a one-shot job is re-executed in full here anyway.
            let steps = match (&second, &module) {
                (Some(_), Ok((_, bytes))) => ENGINE
                    .prepare(bytes)
                    .await
                    .is_ok_and(|p| p.form == Form::Steps),
                _ => false,
            };
            let second = second.filter(|_| steps);
            let second_payment = second.as_ref().and_then(|(_, _, price, channel)| {
                let (channel, previous) = (*channel)?;
                let voucher = voucher_for(&keypair, &network_id, channel, previous, *price);
                set_promised(&channel, voucher.body.cumulative);
                Some((voucher, previous))
            });
            let record = match (module, randomness) {
                (Ok((name, module)), Ok(nonces)) => {
                    let mut first_nonce = [0u8; 8];
                    first_nonce.copy_from_slice(&nonces[..8]);
                    let mut second_nonce = [0u8; 8];
                    second_nonce.copy_from_slice(&nonces[8..]);
                    let on = move |event: RunEvent| match event {
                        RunEvent::Stage { stage, detail: d } => {
                            status.set(stage.label().into());
                            detail.set(d);
                        }
                        RunEvent::Progress(p) => progress.set(Some(p.clamp(0.0, 1.0))),
                        RunEvent::Output(bytes) => live_output.set(Some(bytes)),
                    };
                    let submitter = Submitter {
                        keypair: &keypair,
                        network_id: &network_id,
                        control: handle.control.clone(),
                        relay,
                        engine: ENGINE,
                    };
                    // The request lives 5 minutes, or what the network allows if less.
                    let ttl_ms = ledger.params().map_or(job_client::REQUEST_TTL_MS, |p| {
                        job_client::REQUEST_TTL_MS.min(p.max_job_ttl_ms)
                    });
                    let order = Order {
                        ttl_ms,
                        name,
                        module,
                        input: input_bytes,
                        fuel_limit,
                        max_steps,
                        payment: payment.as_ref().map(|(voucher, _)| voucher.clone()),
                        price,
                    };
                    let now = js_sys::Date::now() as u64;
                    match &second {
                        Some((second_relay, _, second_price, _)) => {
                            let ran = referee_client::run_refereed(
                                submitter,
                                order,
                                Second {
                                    relay: *second_relay,
                                    payment: second_payment.as_ref().map(|(v, _)| v.clone()),
                                    price: *second_price,
                                },
                                now,
                                [
                                    u64::from_le_bytes(first_nonce),
                                    u64::from_le_bytes(second_nonce),
                                ],
                                &token,
                                &on,
                            )
                            .await;
                            fraud.set(ran.fraud);
                            Some(ran.record)
                        }
                        None => Some(
                            job_client::run(
                                submitter,
                                order,
                                now,
                                u64::from_le_bytes(first_nonce),
                                &token,
                                &on,
                            )
                            .await,
                        ),
                    }
                }
                (Err(e), _) => {
                    input_error.set(Some(e));
                    None
                }
                (_, Err(e)) => {
                    input_error.set(Some(e.to_string()));
                    None
                }
            };
            // A refused payment was not taken, and a job the relay failed to run is not
            // charged: the next voucher builds on the previous one.
            let refused = record.as_ref().is_none_or(|r| {
                matches!(&r.outcome, Outcome::Failed { check, .. } if check == PAYMENT_REFUSED || check == NOT_CHARGED)
            });
            for (voucher, previous) in payment.iter().chain(second_payment.iter()) {
                if refused && promised(&voucher.body.channel) == Some(voucher.body.cumulative) {
                    set_promised(&voucher.body.channel, *previous);
                }
            }
            if (payment.is_some() || second_payment.is_some())
                && let Some(keypair) = wallet.keypair()
            {
                ledger.refresh_account(keypair.public());
            }
            match record {
                Some(record) => {
                    status.set(record.status().into());
                    detail.set(String::new());
                    live_output.set(None);
                    result.set(Some(record.clone()));
                    jobs.record(record).await;
                }
                None => {
                    status.set("idle".into());
                    detail.set(String::new());
                }
            }
            cancel.set_value(None);
            busy.set(false);
        });
    };

    view! {
        <form class="grid-form job-form" on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <label for="job-example">"Module"</label>
            <select id="job-example" data-testid="job-example"
                on:change=move |ev| choose(event_target_value(&ev))>
                {EXAMPLES.iter().enumerate().map(|(i, ex)| view! {
                    <option value=i.to_string() selected=move || source.get() == i>{ex.title}</option>
                }).collect_view()}
                <option value="upload" selected=move || source.get() == UPLOAD>"Upload a .wasm file…"</option>
            </select>
            {move || (source.get() == UPLOAD).then(|| view! {
                <label for="job-file">"Module file"</label>
                <div>
                    <input id="job-file" type="file" accept=".wasm,application/wasm" data-testid="job-file"
                        node_ref=module_file on:change=move |_| module_chosen()/>
                    {move || module_info.get().map(|r| match r {
                        Ok(info) => view! { <p class="ok-line" data-testid="job-module-info">{info}</p> }.into_any(),
                        Err(e) => view! { <p class="bad" role="alert" data-testid="job-module-error">{e}</p> }.into_any(),
                    })}
                </div>
            })}
            <label for="job-input">"Input"</label>
            <div>
                <input id="job-input" data-testid="job-input" class="mono"
                    disabled=move || input_file.get().is_some()
                    prop:value=move || input.get()
                    on:input=move |ev| input.set(event_target_value(&ev))/>
                <small class="muted">{move || {
                    let s = source.get();
                    if s == UPLOAD { "The bytes your module's run or init receives.".to_string() } else { EXAMPLES[s].help.to_string() }
                }}</small>
            </div>
            <label for="job-input-file">"…or input file"</label>
            <div>
                <input id="job-input-file" type="file" data-testid="job-input-file"
                    node_ref=input_file_ref on:change=move |_| input_chosen()/>
                {move || input_file.get().map(|(name, bytes)| view! {
                    <small class="muted">{format!(" using {name} ({} bytes) as the input ", bytes.len())}</small>
                    <button type="button" class="small" on:click=move |_| {
                        input_file.set(None);
                        if let Some(el) = input_file_ref.get_untracked() { el.set_value(""); }
                    }>"Use the text instead"</button>
                })}
            </div>
            <label for="job-fuel">"Fuel limit"</label>
            <div>
                <input id="job-fuel" data-testid="job-fuel" inputmode="numeric" class="mono"
                    prop:value=move || fuel.get()
                    on:input=move |ev| fuel.set(event_target_value(&ev))/>
                <small class="muted" data-testid="job-fuel-readable">{move || {
                    match whole_number(&fuel.get()) {
                        Some(f) => format!("{} = {}", format_count(f), format_fuel(f)),
                        None => "a whole number of fuel units".to_string(),
                    }
                }}</small>
            </div>
            <label for="job-steps">"Step limit"</label>
            <div>
                <input id="job-steps" data-testid="job-steps" inputmode="numeric" class="mono"
                    prop:value=move || steps.get()
                    on:input=move |ev| steps.set(event_target_value(&ev))/>
                <small class="muted">"Step jobs: the most steps the relay may run and commit to. Sampling is measured against the relay's steps, so you, not the relay, set how many there can be. One-shot jobs ignore it."</small>
            </div>
            <label for="job-verify-mode">"Verification"</label>
            <div>
                <select id="job-verify-mode" data-testid="job-verify-mode"
                    on:change=move |ev| mode.set(event_target_value(&ev))>
                    <option value="auto" selected=move || mode.get() == "auto">"Automatic: refereed when a second provider can be paid, else in this browser"</option>
                    <option value="self" selected=move || mode.get() == "self">"In this browser: re-execute, or sample long step jobs"</option>
                    <option value="refereed" selected=move || mode.get() == "refereed">"Refereed: two providers, bisected if they disagree"</option>
                </select>
                <small class="muted" data-testid="job-verify-plan">{move || {
                    let _ = (ledger.providers.get(), ledger.channels.get(), network.relays.get());
                    let fuel_limit = whole_number(&fuel.get()).filter(|f| *f > 0).unwrap_or(1);
                    let second = job_target(network, ledger)
                        .ok()
                        .map(|(first, _)| second_provider(network, ledger, &first, fuel_limit));
                    match (mode.get().as_str(), second) {
                        ("self", _) => "Checked here: re-executed in full, or sampled (evidence of work, not of a correct output) for long step jobs.".to_string(),
                        (_, Some(Ok((peer, _, price, _)))) => format!(
                            "Step jobs also go to {peer} ({}), a provider with its own stake; matching results are correct unless both lied, and a disagreement is bisected until one is proven to have lied.",
                            if price == 0 { "free".to_string() } else { format!("{} from your channel to it", format_amount(price)) }
                        ),
                        ("refereed", Some(Err(e))) => e,
                        _ => "No second provider can be paid right now: results are checked in this browser.".to_string(),
                    }
                }}</small>
            </div>
            <span></span>
            {move || {
                let fuel_limit = whole_number(&fuel.get()).filter(|f| *f > 0);
                let (ok, line) = price_line(network, ledger, fuel_limit);
                view! { <p class=if ok { "muted" } else { "warn" } data-testid="job-price">{line}</p> }
            }}
            <span></span>
            <div class="actions">
                <button type="submit" data-testid="job-submit"
                    disabled=move || busy.get() || (source.get() == UPLOAD && !matches!(module_info.get(), Some(Ok(_))))>
                    "Submit job"
                </button>
                {move || busy.get().then(|| view! {
                    <button type="button" data-testid="job-cancel" on:click=move |_| {
                        if let Some(token) = cancel.get_value() { token.cancel(); }
                    }>"Cancel"</button>
                })}
            </div>
        </form>
        {move || input_error.get().map(|e| view! { <p class="bad" role="alert" data-testid="job-input-error">{e}</p> })}
        <p class="state-line">
            <span class=move || format!("badge job-{}", status.get())>
                <span class="dot" aria-hidden="true"></span>
                <span data-testid="job-status">{move || status.get()}</span>
            </span>
            <span class="muted" data-testid="job-detail">{move || detail.get()}</span>
        </p>
        {move || progress.get().map(|p| view! {
            <progress max="1" value=p.to_string() aria-label="job progress" data-testid="job-progress"></progress>
        })}
        {move || live_output.get().map(|bytes| view! {
            <h3>"Output " <small class="muted">"(not verified yet)"</small></h3>
            <OutputView bytes/>
        })}
        {move || result.get().map(|record| view! { <RecordView record/> })}
        {move || (!fraud.get().is_empty()).then(|| view! { <FraudPanel reports=fraud.get()/> })}
    }
}

/// The liars a refereed job caught, each with its fraud proof and a button to put it on the
/// ledger; once the proof is in a block, the slash as the proven provider list shows it.
#[component]
fn FraudPanel(reports: Vec<FraudReport>) -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    let sent = RwSignal::new(false);
    view! {
        <div class="verification" data-testid="job-fraud">
            <h3>"Fraud proof"</h3>
            {reports.into_iter().map(|report| {
                let key = PublicKey::from_peer_id(&report.provider).ok();
                let fits = referee_client::fits(&report);
                let submit = {
                    let proof = report.proof.clone();
                    let short = report.provider.to_string();
                    move |_| {
                        let Some(keypair) = wallet.keypair() else { return };
                        sent.set(true);
                        ledger.transact(
                            keypair,
                            TxKind::FraudProof { proof: Box::new(proof.clone()) },
                            format!("fraud proof against {}…", &short[..short.len().min(16)]),
                        );
                    }
                };
                view! {
                    <p class="bad">{format!(
                        "{} signed a false receipt: at segment {}, {}.",
                        report.provider, report.segment, report.why
                    )}</p>
                    <p class="muted">{format!(
                        "The proof carries its receipt, your signed request, the module and the state before that segment ({} bytes; the limit is {}). Any validator re-runs that one segment: if the receipt lied, {} of the provider's stake is slashed, this job's payment comes back to you, and a bounty goes to whoever submits the proof.",
                        format_count(report.bytes as u64),
                        format_count(client_core::job::fraud::MAX_FRAUD_PROOF_BYTES as u64),
                        ledger.genesis.get_untracked().map_or_else(|| "a share".to_string(), |g| format!("{}%", f64::from(g.params.slash_fraction_bps) / 100.0))
                    )}</p>
                    <div class="actions">
                        <button type="button" data-testid="job-submit-fraud"
                            disabled=move || !fits || sent.get() || wallet.keypair().is_none()
                            on:click=submit>"Submit fraud proof"</button>
                    </div>
                    {move || {
                        let slashed = ledger.providers.get().and_then(|verified| {
                            let height = verified.height;
                            verified.value.into_iter()
                                .find(|(k, _)| Some(*k) == key)
                                .and_then(|(_, p)| p.slashed.map(|s| (s, p.unbonding.map_or(0, |u| u.amount), height)))
                        });
                        slashed.map(|(slash, left, proven_at)| view! {
                            <p class="notice" data-testid="job-fraud-slash" data-height=slash.height.to_string()>{format!(
                                "Slashed in block {}: {} taken from its stake ({} left, unbonding); {} refunded to the customer, {} bounty to {}. Read with a Merkle proof against block {}.",
                                slash.height,
                                format_amount(slash.amount),
                                format_amount(left),
                                format_amount(slash.refund),
                                format_amount(slash.bounty),
                                slash.submitter,
                                proven_at
                            )}</p>
                        })
                    }}
                }
            }).collect_view()}
            {move || sent.get().then(|| view! { <TxStatus testid="job-fraud-status"/> })}
        </div>
    }
}

fn when(unix_ms: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64));
    date.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED)
        .as_string()
        .unwrap_or_default()
}

#[component]
fn History() -> impl IntoView {
    let jobs = expect_context::<JobsState>();
    let wallet = expect_context::<WalletState>();
    let shown = RwSignal::new(None::<JobRecord>);
    let mine = move || {
        let account = wallet.status.get().account();
        jobs.history
            .get()
            .into_iter()
            .filter(|r| {
                account.as_deref()
                    == r.base
                        .account
                        .to_peer_id()
                        .ok()
                        .map(|p| p.to_string())
                        .as_deref()
            })
            .collect::<Vec<_>>()
    };
    view! {
        <section class="card">
            <h2>"History"</h2>
            {move || jobs.history_error.get().map(|e| view! { <p class="bad" role="alert">{e}</p> })}
            {move || {
                let rows = mine();
                if rows.is_empty() {
                    view! { <p class="muted" data-testid="job-history-empty">"No jobs from this account in this browser yet."</p> }.into_any()
                } else {
                    view! {
                        <div class="table-wrap">
                        <table data-testid="job-history">
                            <thead><tr>
                                <th scope="col">"When"</th><th scope="col">"Module"</th><th scope="col">"Status"</th>
                                <th scope="col">"Fuel used"</th><th scope="col">"Paid"</th><th scope="col">"Verification"</th><th scope="col"></th>
                            </tr></thead>
                            <tbody>
                                {rows.into_iter().map(|r| {
                                    let open = r.clone();
                                    let level = match &r.outcome {
                                        Outcome::Verified { level, .. } => level.label(),
                                        _ => "–".into(),
                                    };
                                    view! {
                                        <tr data-testid="job-history-row" data-status=r.status()>
                                            <td>{when(r.base.submitted_ms)}</td>
                                            <td>{r.base.name.clone()}</td>
                                            <td>{r.status()}</td>
                                            <td class="num" title=r.fuel_used().map(format_fuel)>{r.fuel_used().map(format_count).unwrap_or_else(|| "–".into())}</td>
                                            <td class="num">{paid_cell(&r)}</td>
                                            <td>{level}</td>
                                            <td><button type="button" class="small" data-testid="job-history-open"
                                                on:click=move |_| shown.set(Some(open.clone()))>"Open"</button></td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                        </div>
                    }.into_any()
                }
            }}
        </section>
        {move || shown.get().map(|record| {
            let recheck = match record.recheck() {
                Ok(()) if matches!(record.outcome, Outcome::Verified { .. }) =>
                    "Re-checked now: the stored receipt's signature is valid and names this output.".to_string(),
                Ok(()) => "Nothing to re-check: this job has no verified result.".to_string(),
                Err(e) => format!("The stored record does not stand: {e}."),
            };
            view! {
                <section class="card" data-testid="job-history-view">
                    <h2>{format!("{} — {}", record.base.name, when(record.base.submitted_ms))}</h2>
                    <p class="muted mono wrap">{format!("job {}", record.base.job)}</p>
                    <p data-testid="job-history-recheck">{recheck}</p>
                    <RecordView record/>
                    <button type="button" on:click=move |_| shown.set(None)>"Close"</button>
                </section>
            }
        })}
    }
}

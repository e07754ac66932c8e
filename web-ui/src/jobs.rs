//! A minimal job form: pick an example, edit its input, submit, watch progress, see the output
//! and what was verified. All the work is in `client_core::job_client`; this only shows it.

use crate::network::NetworkState;
use client_core::envelope::Request;
use client_core::identity::Keypair;
use client_core::job::JobSpec;
use client_core::job::profile::{self, Profile};
use client_core::job::verify::{Strength, Verified};
use client_core::job_client::{self, JobEvent, VerifyProgress};
use client_core::signed::Signed;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The example jobs built from `www/jobs` and served under `/jobs/`.
pub struct Example {
    pub name: &'static str,
    pub title: &'static str,
    pub input: &'static str,
    pub help: &'static str,
    pub fuel: u64,
}

pub const EXAMPLES: [Example; 3] = [
    Example {
        name: "hash-chain",
        title: "Hash chain (step job: sampled)",
        input: "1000 2000 aqueduct",
        help: "STEPS ROUNDS SEED — a BLAKE3 chain of STEPS × ROUNDS hashes, checkpointed every step",
        fuel: 20_000_000_000,
    },
    Example {
        name: "mandelbrot",
        title: "Mandelbrot image (one-shot: re-executed)",
        input: "320 240 256",
        help: "WIDTH HEIGHT ITERATIONS — returns a BMP image",
        fuel: 5_000_000_000,
    },
    Example {
        name: "primes",
        title: "Count primes (one-shot: re-executed)",
        input: "2000000",
        help: "N — counts the primes below N with a sieve",
        fuel: 5_000_000_000,
    },
];

/// How long a signed request stays valid.
const REQUEST_TTL_MS: u64 = 5 * 60 * 1000;

#[derive(Clone, PartialEq)]
enum Output {
    Text(String),
    Image(String),
    Bytes(String),
}

#[derive(Clone, PartialEq)]
enum Verdict {
    Verified(Box<Verified>),
    Failed { check: String, reason: String },
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Some(crypto) = web_sys::window().and_then(|w| w.crypto().ok()) {
        let _ = crypto.get_random_values_with_u8_array(&mut bytes);
    }
    bytes
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

fn render_output(bytes: &[u8]) -> Output {
    if bytes.starts_with(b"BM") {
        let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
        let options = web_sys::BlobPropertyBag::new();
        options.set_type("image/bmp");
        if let Ok(blob) = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
            && let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob)
        {
            return Output::Image(url);
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Output::Text(text.to_string()),
        Err(_) => Output::Bytes(bytes.iter().take(512).map(|b| format!("{b:02x}")).collect()),
    }
}

#[component]
pub fn JobForm() -> impl IntoView {
    let network = expect_context::<NetworkState>();
    // A session key for signing jobs until the wallet exists: made here, never sent anywhere.
    let key = StoredValue::new(Keypair::from_seed(&random_bytes::<32>()));
    let example = RwSignal::new(0usize);
    let input = RwSignal::new(EXAMPLES[0].input.to_string());
    let fuel = RwSignal::new(EXAMPLES[0].fuel.to_string());
    let status = RwSignal::new("idle".to_string());
    let detail = RwSignal::new(String::new());
    let progress = RwSignal::new(None::<f64>);
    let output = RwSignal::new(None::<Output>);
    let verdict = RwSignal::new(None::<Verdict>);
    let busy = RwSignal::new(false);
    // (relay execution ms, verification in this page ms) of the last verified job.
    let timing = RwSignal::new(None::<(u64, f64)>);

    let choose = move |index: usize| {
        example.set(index);
        input.set(EXAMPLES[index].input.to_string());
        fuel.set(EXAMPLES[index].fuel.to_string());
    };

    let submit = move || {
        let ex = &EXAMPLES[example.get_untracked()];
        let name = ex.name;
        let input_bytes = input.get_untracked().into_bytes();
        let fuel_text = fuel.get_untracked();
        busy.set(true);
        timing.set(None);
        output.set(None);
        verdict.set(None);
        progress.set(None);
        leptos::task::spawn_local(async move {
            let fail = |check: &str, reason: String| {
                status.set("failed".into());
                detail.set(String::new());
                verdict.set(Some(Verdict::Failed {
                    check: check.into(),
                    reason,
                }));
            };
            let run = async {
                let fuel_limit: u64 = fuel_text.trim().parse().map_err(|_| {
                    (
                        "fuel limit",
                        "the fuel limit must be a whole number".to_string(),
                    )
                })?;
                job_client::check_input(&input_bytes).map_err(|e| ("input", e))?;
                let (Some(handle), Some(network_id)) =
                    (network.peer.get_value(), network.network_id.get_untracked())
                else {
                    return Err(("connection", "not connected to a relay yet".to_string()));
                };
                let Some(relay) = handle.relay else {
                    return Err(("connection", "the relay's peer id is unknown".to_string()));
                };
                status.set("preparing".into());
                detail.set(format!("fetching and checking /jobs/{name}.wasm"));
                let module = fetch_bytes(&format!("/jobs/{name}.wasm"))
                    .await
                    .map_err(|e| ("module", e))?;
                let prepared = profile::prepare(&module, &Profile::V1)
                    .map_err(|e| ("module", e.to_string()))?;
                let nonce = u64::from_le_bytes(random_bytes::<8>());
                let spec = JobSpec {
                    module: prepared.module_hash,
                    input: input_bytes,
                    fuel_limit,
                };
                let request = Signed::sign(
                    &key.get_value(),
                    Request::new(&network_id, nonce, now_ms(), REQUEST_TTL_MS, spec),
                );
                status.set("submitting".into());
                let on_event = move |event: JobEvent| match event {
                    JobEvent::Uploading { bytes } => {
                        status.set("uploading".into());
                        detail.set(format!(
                            "the relay does not have this module yet: sending {bytes} bytes"
                        ));
                    }
                    JobEvent::Accepted {
                        job,
                        queue_position,
                    } => {
                        status.set("running".into());
                        detail.set(format!(
                            "job {job} accepted ({queue_position} ahead in the queue)"
                        ));
                    }
                    JobEvent::Progress {
                        fuel_used,
                        checkpoints,
                    } => {
                        status.set("running".into());
                        progress.set(Some(fuel_used as f64 / fuel_limit.max(1) as f64));
                        detail.set(format!("{fuel_used} fuel used, {checkpoints} checkpoints"));
                    }
                    JobEvent::Reattaching { attempt, reason } => {
                        detail.set(format!("{reason}; re-attaching (attempt {attempt})"));
                    }
                };
                let mut control = handle.control.clone();
                let mut result =
                    job_client::submit(&mut control, relay, &request, &module, &on_event)
                        .await
                        .map_err(|e| ("execution", e.to_string()))?;
                progress.set(Some(1.0));
                output.set(Some(render_output(&result.output)));
                status.set("verifying".into());
                let on_progress = move |p: VerifyProgress| {
                    detail.set(match p {
                        VerifyProgress::Preparing => "checking the receipt".into(),
                        VerifyProgress::Reexecuting => {
                            "re-executing the job in this browser".into()
                        }
                        VerifyProgress::FetchingStates { received, total } => {
                            format!("fetching sampled checkpoint states: {received} of {total}")
                        }
                        VerifyProgress::Segments { done, total } => {
                            format!("re-running sampled segments: {done} of {total}")
                        }
                    });
                };
                let verify_started = client_core::browser::now_ms();
                let verified =
                    job_client::verify(&mut result, &request, &prepared, &relay, &on_progress)
                        .await
                        .map_err(|e| (e.check(), e.to_string()))?;
                let verify_ms = client_core::browser::now_ms() - verify_started;
                client_core::browser::measure(
                    "aqueduct:job-verify",
                    verify_started,
                    verify_started + verify_ms,
                );
                timing.set(Some((result.run_ms, verify_ms)));
                Ok(verified)
            };
            match run.await {
                Ok(verified) => {
                    status.set("verified".into());
                    detail.set(String::new());
                    verdict.set(Some(Verdict::Verified(Box::new(verified))));
                }
                Err((check, reason)) => fail(check, reason),
            }
            busy.set(false);
        });
    };

    view! {
        <section class="card">
            <h2>"Run a job"</h2>
            <p class="muted">
                "Signed in this page with a session key (the wallet comes later). The relay runs it; this browser then checks the receipt and re-runs the job, or samples it, in its own WebAssembly engine."
            </p>
            <form class="job-form" on:submit=move |ev| { ev.prevent_default(); submit(); }>
                <label for="job-example">"Example"</label>
                <select id="job-example" data-testid="job-example"
                    on:change=move |ev| {
                        if let Ok(i) = event_target_value(&ev).parse::<usize>() { choose(i.min(EXAMPLES.len() - 1)); }
                    }>
                    {EXAMPLES.iter().enumerate().map(|(i, ex)| view! {
                        <option value=i.to_string() selected=move || example.get() == i>{ex.title}</option>
                    }).collect_view()}
                </select>
                <label for="job-input">"Input"</label>
                <div>
                    <input id="job-input" data-testid="job-input" class="mono"
                        prop:value=move || input.get()
                        on:input=move |ev| input.set(event_target_value(&ev))/>
                    <small class="muted">{move || EXAMPLES[example.get()].help}</small>
                </div>
                <label for="job-fuel">"Fuel limit"</label>
                <input id="job-fuel" data-testid="job-fuel" inputmode="numeric" class="mono"
                    prop:value=move || fuel.get()
                    on:input=move |ev| fuel.set(event_target_value(&ev))/>
                <span></span>
                <button type="submit" data-testid="job-submit" disabled=move || busy.get()>"Submit job"</button>
            </form>
            <p class="state-line">
                <span class=move || format!("badge job-{}", status.get())>
                    <span class="dot" aria-hidden="true"></span>
                    <span data-testid="job-status">{move || status.get()}</span>
                </span>
                <span class="muted" data-testid="job-detail">{move || detail.get()}</span>
            </p>
            {move || progress.get().map(|p| view! {
                <progress max="1" value=p.to_string() aria-label="job progress"></progress>
            })}
            {move || output.get().map(|o| view! {
                <h3>"Output"</h3>
                {match o {
                    Output::Text(t) => view! { <pre class="output mono" data-testid="job-output">{t}</pre> }.into_any(),
                    Output::Image(url) => view! { <img class="output" data-testid="job-output" src=url alt="image returned by the job"/> }.into_any(),
                    Output::Bytes(hex) => view! { <pre class="output mono wrap" data-testid="job-output">{hex}</pre> }.into_any(),
                }}
            })}
            <div data-testid="job-verification" class="verification">
                {move || verdict.get().map(|v| match v {
                    Verdict::Verified(v) => view! {
                        <h3>"Verified"</h3>
                        <ul class="checks">
                            {v.checks.iter().map(|c| view! { <li class="ok">{c.clone()}</li> }).collect_view()}
                        </ul>
                        <p class="muted">{match &v.strength {
                            Strength::Reexecuted { .. } => "Level: full re-execution.".to_string(),
                            Strength::Sampled { .. } => "Level: commit-then-sample.".to_string(),
                        }}</p>
                        {move || timing.get().map(|(run, verify)| view! {
                            <p class="muted" data-testid="job-timing" data-run-ms=run.to_string() data-verify-ms=format!("{verify:.1}")>
                                {format!("The relay ran it in {run} ms; checking it here took {verify:.0} ms.")}
                            </p>
                        })}
                    }.into_any(),
                    Verdict::Failed { check, reason } => view! {
                        <h3>"Not verified"</h3>
                        <p class="bad">{format!("Failed check: {check}")}</p>
                        <p>{reason}</p>
                    }.into_any(),
                })}
            </div>
        </section>
    }
}

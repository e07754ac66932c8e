//! Widgets shared by several pages.

use crate::network::NetworkState;
use leptos::prelude::*;

/// The connection state in the header: a dot and a word, on every page.
#[component]
pub fn ConnectionBadge() -> impl IntoView {
    let network = expect_context::<NetworkState>();
    let class = move || format!("badge badge-{}", network.overall());
    view! {
        <span class=class role="status" aria-live="polite">
            <span class="dot" aria-hidden="true"></span>
            <span data-testid="connection-badge">{move || network.overall()}</span>
        </span>
    }
}

/// A milliseconds figure, or a dash while there is none.
pub fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.0}"),
        None => "–".into(),
    }
}

/// A duration in words: "3 h 12 min", "45 s".
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Copies `text` to the clipboard.
pub async fn copy_text(text: &str) -> Result<(), String> {
    let clipboard = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .clipboard();
    wasm_bindgen_futures::JsFuture::from(clipboard.write_text(text))
        .await
        .map(|_| ())
        .map_err(|_| "the browser refused".to_string())
}

/// Offers `text` as a file download named `name`.
pub fn download_text(name: &str, mime: &str, text: &str) -> Result<(), String> {
    use wasm_bindgen::JsCast;
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
        .map_err(|_| "could not make the file")?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| "no object URL")?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let anchor: web_sys::HtmlAnchorElement = document
        .create_element("a")
        .map_err(|_| "no anchor")?
        .dyn_into()
        .map_err(|_| "no anchor")?;
    anchor.set_href(&url);
    anchor.set_download(name);
    anchor.click();
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}

/// The chosen file of a file input, if any.
fn chosen_file(input: &web_sys::HtmlInputElement) -> Result<web_sys::File, String> {
    input
        .files()
        .and_then(|files| files.get(0))
        .ok_or_else(|| "choose a file first".to_string())
}

/// The name of the chosen file of a file input.
pub fn chosen_file_name(input: &web_sys::HtmlInputElement) -> Option<String> {
    chosen_file(input).ok().map(|f| f.name())
}

/// Reads the chosen file of a file input as text.
pub async fn read_file_text(input: &web_sys::HtmlInputElement) -> Result<String, String> {
    let file = chosen_file(input)?;
    let text = wasm_bindgen_futures::JsFuture::from(file.text())
        .await
        .map_err(|_| format!("could not read {}", file.name()))?;
    text.as_string()
        .ok_or_else(|| format!("{} is not a text file", file.name()))
}

/// Reads the chosen file of a file input as bytes, refusing files larger than `max`.
pub async fn read_file_bytes(
    input: &web_sys::HtmlInputElement,
    max: usize,
) -> Result<(String, Vec<u8>), String> {
    let file = chosen_file(input)?;
    let name = file.name();
    if file.size() > max as f64 {
        return Err(format!(
            "{name} is {:.0} bytes; at most {max} are accepted",
            file.size()
        ));
    }
    let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
        .await
        .map_err(|_| format!("could not read {name}"))?;
    Ok((name, js_sys::Uint8Array::new(&buffer).to_vec()))
}

/// The page's `localStorage`, where small settings live (not secrets).
pub fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// What the ledger values on a page were checked against: the block, its state root, and the
/// validator signatures behind it.
#[leptos::component]
pub fn VerifiedLine() -> impl leptos::IntoView {
    use leptos::prelude::*;
    let ledger = expect_context::<crate::ledger::LedgerState>();
    move || {
        ledger.head.get().map(|head| {
            let root = head.state_root.to_string();
            let age_s = ((js_sys::Date::now() - head.time_ms as f64) / 1000.0).max(0.0);
            let relay = ledger
                .answered_by
                .get()
                .map(|r| r.to_string())
                .unwrap_or_default();
            let relay_short = relay.get(relay.len().saturating_sub(8)..).unwrap_or_default().to_owned();
            view! {
                <p class="verified" data-testid="ledger-head" data-height=head.height.to_string() data-relay=relay.clone() data-validator-set=head.validator_set.to_string()>
                    "✓ Verified against block " <strong>{format!("#{}", head.height)}</strong>
                    " (state root " <span class="mono" title=root.clone()>{format!("{}…", &root[..12])}</span>
                    {format!(
                        "): each value by Merkle proof, the block by the signatures of validators holding over two thirds of the voting power ({} validator{} in set {}…, followed from the genesis through every change of set). Block made {:.0} s before it was read; answered by relay …{}, trusted for nothing.",
                        head.validators,
                        if head.validators == 1 { "" } else { "s" },
                        &head.validator_set.to_string()[..8],
                        age_s,
                        relay_short
                    )}
                </p>
            }
        })
    }
}

/// Calls `refresh` every `ms` while the calling component is mounted (a live view of proven
/// state: each call reads again with proofs).
pub fn refresh_while_mounted(ms: u32, refresh: impl Fn() + 'static) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let open = Arc::new(AtomicBool::new(true));
    {
        let open = Arc::clone(&open);
        leptos::task::spawn_local(async move {
            loop {
                client_core::browser::pause(ms).await;
                if !open.load(Ordering::Relaxed) {
                    break;
                }
                refresh();
            }
        });
    }
    on_cleanup(move || open.store(false, Ordering::Relaxed));
}

//! The Aqueduct web app. It is built for wasm32 only (by `cargo xtask run`/`dist`); on other
//! targets this binary just says so, which keeps `cargo build --workspace` working.

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod jobs;
#[cfg(target_arch = "wasm32")]
mod kdf;
#[cfg(target_arch = "wasm32")]
mod ledger;
#[cfg(target_arch = "wasm32")]
mod network;
#[cfg(target_arch = "wasm32")]
mod pages;
#[cfg(target_arch = "wasm32")]
mod wallet;
#[cfg(target_arch = "wasm32")]
mod widgets;

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    client_core::browser::mark("aqueduct:wasm-main");
    // Connect first, then draw. Mounting the app (building the page, then the browser's style,
    // layout and paint of it) keeps the main thread busy for a good part of the time the
    // connection needs it, so it waits until the first attempt to reach the relay has ended,
    // or `MOUNT_WAIT_MS`, whichever comes first. Meanwhile the page shows the static shell of
    // index.html, which says what is happening.
    let (network, first_attempt) = network::NetworkState::start();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = client_core::browser::within(MOUNT_WAIT_MS, first_attempt).await;
        if let Some(shell) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("shell"))
        {
            shell.remove();
        }
        leptos::mount::mount_to_body(move || leptos::view! { <app::App network/> });
        client_core::browser::mark("aqueduct:mounted");
        // The first page is up: now fetch the other pages' code, so that opening one is
        // instant and still works if the relay that served the page goes away.
        app::preload_pages().await;
    });
}

/// The longest the app waits for the first connection before it mounts anyway.
#[cfg(target_arch = "wasm32")]
const MOUNT_WAIT_MS: u32 = 800;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("web-ui runs in the browser: build it with `cargo xtask run` or `cargo xtask dist`.");
}

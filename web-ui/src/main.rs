//! The Aqueduct web app. It is built for wasm32 only (by `cargo xtask run`/`dist`); on other
//! targets this binary just says so, which keeps `cargo build --workspace` working.

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod jobs;
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
    leptos::mount::mount_to_body(app::App);
    client_core::browser::mark("aqueduct:mounted");
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("web-ui runs in the browser: build it with `cargo xtask run` or `cargo xtask dist`.");
}

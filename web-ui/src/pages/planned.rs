//! A page that is on the way: says what it will hold, rather than showing an empty screen.

use leptos::prelude::*;

#[component]
pub fn Planned(title: &'static str, what: &'static str) -> impl IntoView {
    view! {
        <section class="card">
            <h1>{title}</h1>
            <p>{what}</p>
            <p class="muted">"Not available in this version yet."</p>
        </section>
    }
}

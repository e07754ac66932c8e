//! Widgets shared by several pages.

use crate::network::{NetworkState, Phase};
use leptos::prelude::*;

/// The connection state in the header: a dot and a word, on every page.
#[component]
pub fn ConnectionBadge() -> impl IntoView {
    let network = expect_context::<NetworkState>();
    let class = move || format!("badge badge-{}", network.phase.with(Phase::label));
    view! {
        <span class=class role="status" aria-live="polite">
            <span class="dot" aria-hidden="true"></span>
            {move || network.phase.with(Phase::label)}
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

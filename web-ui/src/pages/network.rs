//! The network page: which relay we are connected to, how, and how fast.

use crate::network::{NetworkState, Phase};
use crate::widgets::{ms, uptime};
use leptos::prelude::*;

#[component]
pub fn NetworkPage() -> impl IntoView {
    let network = expect_context::<NetworkState>();
    let phase_detail = move || match network.phase.get() {
        Phase::Discovering => {
            "Asking the relay that served this page for its WebRTC address…".to_string()
        }
        Phase::Connecting { attempt: 0 } => "Opening a WebRTC connection to the relay…".to_string(),
        Phase::Connecting { attempt } => format!("Reconnecting (attempt {})…", attempt + 1),
        Phase::Connected => {
            "Peer-to-peer over WebRTC. The relay proved its peer id during the handshake."
                .to_string()
        }
        Phase::Disconnected {
            reason,
            retry_in_ms,
        } => {
            format!(
                "Lost the relay ({reason}). Next attempt in {:.1} s.",
                retry_in_ms as f64 / 1000.0
            )
        }
        Phase::Failed(reason) => format!("Cannot connect: {reason}"),
    };
    let rtt = move |f: fn(&client_core::stats::RttSummary) -> f64| {
        move || ms(network.rtt.get().map(|s| f(&s)))
    };

    view! {
        <section class="card">
            <h1>"Relay connection"</h1>
            <p class="state-line">
                <span class=move || format!("badge badge-{}", network.phase.with(Phase::label))>
                    <span class="dot" aria-hidden="true"></span>
                    <span data-testid="connection-state">{move || network.phase.with(Phase::label)}</span>
                </span>
                <span class="muted">{phase_detail}</span>
            </p>
            <dl class="facts">
                <dt>"Relay peer id"</dt>
                <dd class="mono" data-testid="relay-peer-id">
                    {move || network.relay_peer_id.get().unwrap_or_else(|| "–".into())}
                </dd>
                <dt>"Address"</dt>
                <dd class="mono wrap" data-testid="relay-addr">
                    {move || network.relay_addr.get().unwrap_or_else(|| "–".into())}
                </dd>
                <dt>"Connection set-up"</dt>
                <dd>{move || network.dial_ms.get().map(|d| format!("{d:.0} ms")).unwrap_or_else(|| "–".into())}</dd>
            </dl>
        </section>
        <section class="card">
            <h2>"Round-trip time"</h2>
            <p class="muted">"Measured on a status stream this page keeps open to the relay."</p>
            <div class="figures">
                <div class="figure">
                    <span class="value" data-testid="rtt-ms">{rtt(|s| s.last_ms)}</span>
                    <span class="unit">"ms, last"</span>
                </div>
                <div class="figure">
                    <span class="value" data-testid="rtt-median">{rtt(|s| s.median_ms)}</span>
                    <span class="unit">"ms, median"</span>
                </div>
                <div class="figure">
                    <span class="value">{rtt(|s| s.p90_ms)}</span>
                    <span class="unit">"ms, p90"</span>
                </div>
                <div class="figure">
                    <span class="value">{rtt(|s| s.max_ms)}</span>
                    <span class="unit">"ms, max"</span>
                </div>
            </div>
            <p class="muted" data-testid="rtt-count">
                {move || network.rtt.get().map(|s| format!("over the last {} of {} probes", s.window, s.total)).unwrap_or_else(|| "no probes yet".into())}
            </p>
        </section>
        <section class="card">
            <h2>"Relay"</h2>
            {move || match network.status.get() {
                None => view! { <p class="muted">"Waiting for the relay's first status report…"</p> }.into_any(),
                Some(status) => view! {
                    <dl class="facts">
                        <dt>"Network"</dt><dd data-testid="network-id">{status.network_id}</dd>
                        <dt>"Version"</dt><dd>{status.version}</dd>
                        <dt>"Up for"</dt><dd>{uptime(status.uptime_ms)}</dd>
                        <dt>"Connected peers"</dt><dd>{status.connected_peers}</dd>
                    </dl>
                    <p class="muted">"As reported by the relay; not yet backed by a signed block."</p>
                }.into_any(),
            }}
        </section>
        <section class="card">
            <h2>"Connection log"</h2>
            <ol class="log" data-testid="connection-log">
                <For
                    each=move || network.log.get()
                    key=|line| (line.at_ms.to_bits(), line.text.clone())
                    children=|line| view! {
                        <li><span class="mono muted">{format!("{:>8.0} ms ", line.at_ms)}</span>{line.text}</li>
                    }
                />
            </ol>
        </section>
    }
}

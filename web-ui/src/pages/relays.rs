//! The relays page: every relay the app keeps a connection to, each with its state and round
//! trip; add one by address, remove one you added. Jobs go to the first connected relay of
//! this network, so when one drops the app carries on through another.

use crate::network::{NetworkState, Phase, Source};
use crate::widgets::ms;
use leptos::prelude::*;

#[component]
pub fn RelaysPage() -> impl IntoView {
    let network = expect_context::<NetworkState>();
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let add = move || match network.add_relay(&text.get_untracked()) {
        Ok(()) => {
            text.set(String::new());
            error.set(None);
        }
        Err(e) => error.set(Some(e)),
    };
    let job_relay = move || {
        network.relays.track();
        network.job_relay()
    };
    view! {
        <section class="card">
            <h1>"Relays"</h1>
            <p class="muted">
                "The app keeps a WebRTC connection to every relay below and measures each one. Jobs go to the first connected relay of this network, in this order."
            </p>
            <div class="table-wrap">
            <table data-testid="relay-table">
                <thead><tr>
                    <th scope="col">"Relay"</th><th scope="col">"State"</th><th scope="col">"RTT median"</th>
                    <th scope="col">"Network"</th><th scope="col">"Source"</th><th scope="col"></th>
                </tr></thead>
                <tbody>
                    {move || {
                        let network_id = network.network_id.get();
                        let chosen = job_relay();
                        network.relays.get().into_iter().map(|r| {
                            let peer = r.relay;
                            let other_network = r.status.as_ref().is_some_and(|s| Some(&s.network_id) != network_id.as_ref());
                            let detail = match &r.phase {
                                Phase::Disconnected { reason, retry_in_ms } => format!("{reason}; retry in {:.1} s", *retry_in_ms as f64 / 1000.0),
                                Phase::Connected => r.dial_ms.map(|d| format!("set up in {d:.0} ms")).unwrap_or_default(),
                                _ => String::new(),
                            };
                            view! {
                                <tr data-testid="relay-row" data-peer=peer.to_string() data-state=r.phase.label()>
                                    <td class="long">
                                        <span class="mono wrap">{peer.to_string()}</span>
                                        {(chosen == Some(peer)).then(|| view! { <small class="ok-line" data-testid="relay-jobs">" ← jobs go here"</small> })}
                                        <br/><small class="muted mono wrap">{r.addr.clone()}</small>
                                    </td>
                                    <td>
                                        <span class=format!("badge badge-{}", r.phase.label())>
                                            <span class="dot" aria-hidden="true"></span>
                                            <span data-testid="relay-state">{r.phase.label()}</span>
                                        </span>
                                        <br/><small class="muted">{detail}</small>
                                    </td>
                                    <td class="num" data-testid="relay-rtt">{ms(r.rtt.map(|s| s.median_ms))}" ms"</td>
                                    <td>
                                        {r.status.as_ref().map(|s| s.network_id.clone()).unwrap_or_else(|| "–".into())}
                                        {other_network.then(|| view! { <br/><small class="bad">"another network: not used for jobs"</small> })}
                                    </td>
                                    <td>{match r.source { Source::Serving => "served this page", Source::Added => "added by you", Source::Discovered => "a provider's offer" }}</td>
                                    <td>{(r.source == Source::Added).then(|| view! {
                                        <button type="button" class="small" data-testid="relay-remove"
                                            on:click=move |_| network.remove_relay(peer)>"Remove"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view()
                    }}
                </tbody>
            </table>
            </div>
        </section>
        <section class="card">
            <h2>"Add a relay"</h2>
            <form class="grid-form" on:submit=move |ev| { ev.prevent_default(); add(); }>
                <label for="relay-add-input">"WebRTC address"</label>
                <div>
                    <input id="relay-add-input" data-testid="relay-add-input" class="mono"
                        placeholder="/ip4/…/udp/…/webrtc-direct/certhash/…/p2p/…"
                        autocomplete="off" spellcheck="false"
                        prop:value=move || text.get()
                        on:input=move |ev| text.set(event_target_value(&ev))/>
                    <small class="muted">"A relay prints it at start-up and with `node-relay id`; its /api/info lists it too."</small>
                </div>
                <span></span>
                <button type="submit" data-testid="relay-add">"Add relay"</button>
            </form>
            {move || error.get().map(|e| view! { <p class="bad" role="alert" data-testid="relay-add-error">{e}</p> })}
        </section>
    }
}

//! The app shell: header, navigation and the page routes.

use crate::network::NetworkState;
use crate::pages::{network::NetworkPage, planned::Planned};
use crate::widgets::ConnectionBadge;
use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

#[component]
pub fn App() -> impl IntoView {
    // One connection for the whole app, started once and shared by every page.
    let network = NetworkState::start();
    provide_context(network);

    view! {
        <Router>
            <header class="top">
                <a class="brand" href="/">"Aqueduct"</a>
                <nav aria-label="Main">
                    <A href="/" exact=true>"Network"</A>
                    <A href="/wallet">"Wallet"</A>
                    <A href="/jobs">"Jobs"</A>
                    <A href="/market">"Marketplace"</A>
                    <A href="/dao">"DAO"</A>
                </nav>
                <ConnectionBadge/>
            </header>
            <main>
                <Routes fallback=|| view! { <p>"No such page."</p> }>
                    <Route path=path!("/") view=NetworkPage/>
                    <Route path=path!("/wallet") view=|| view! {
                        <Planned title="Wallet" what="Create or restore a key, protect it with a password, and sign requests in this page."/>
                    }/>
                    <Route path=path!("/jobs") view=|| view! {
                        <Planned title="Jobs" what="Submit Wasm jobs, watch their progress and see how each result was verified."/>
                    }/>
                    <Route path=path!("/market") view=|| view! {
                        <Planned title="Marketplace" what="Compare providers' offers and pay for jobs through escrowed channels."/>
                    }/>
                    <Route path=path!("/dao") view=|| view! {
                        <Planned title="DAO" what="Read proposals, delegate and vote with your key."/>
                    }/>
                </Routes>
            </main>
        </Router>
    }
}

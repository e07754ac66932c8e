//! The app shell: header, navigation and the page routes.

use crate::jobs::{JobsPage, JobsState};
use crate::ledger::LedgerState;
use crate::network::NetworkState;
use crate::pages::{
    dao::DaoPage, market::MarketPage, network::NetworkPage, relays::RelaysPage, wallet::WalletPage,
};
use crate::wallet::WalletState;
use crate::widgets::ConnectionBadge;
use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

/// The app, around the one connection (started before the mount, shared by every page).
#[component]
pub fn App(network: NetworkState) -> impl IntoView {
    provide_context(network);
    provide_context(WalletState::start());
    provide_context(JobsState::start());
    provide_context(LedgerState::start(network));

    view! {
        <Router>
            <header class="top">
                <a class="brand" href="/">"Aqueduct"</a>
                <nav aria-label="Main">
                    <A href="/" exact=true attr:data-testid="nav-network">"Network"</A>
                    <A href="/relays" attr:data-testid="nav-relays">"Relays"</A>
                    <A href="/wallet" attr:data-testid="nav-wallet">"Wallet"</A>
                    <A href="/jobs" attr:data-testid="nav-jobs">"Jobs"</A>
                    <A href="/market" attr:data-testid="nav-market">"Marketplace"</A>
                    <A href="/dao" attr:data-testid="nav-dao">"DAO"</A>
                </nav>
                <ConnectionBadge/>
            </header>
            <main>
                <Routes fallback=|| view! { <p>"No such page."</p> }>
                    <Route path=path!("/") view=NetworkPage/>
                    <Route path=path!("/relays") view=RelaysPage/>
                    <Route path=path!("/wallet") view=WalletPage/>
                    <Route path=path!("/jobs") view=JobsPage/>
                    <Route path=path!("/market") view=MarketPage/>
                    <Route path=path!("/dao") view=DaoPage/>
                </Routes>
            </main>
        </Router>
    }
}

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
use std::future::Future;
use std::pin::Pin;

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
                    <Route path=path!("/relays") view=|| view! { <LazyPage load=relays_page::load/> }/>
                    <Route path=path!("/wallet") view=|| view! { <LazyPage load=wallet_page::load/> }/>
                    <Route path=path!("/jobs") view=|| view! { <LazyPage load=jobs_page::load/> }/>
                    <Route path=path!("/market") view=|| view! { <LazyPage load=market_page::load/> }/>
                    <Route path=path!("/dao") view=|| view! { <LazyPage load=dao_page::load/> }/>
                </Routes>
            </main>
        </Router>
    }
}

/// Fetches the lazy pages' modules, one after the other (the wallet's first: a newcomer's next
/// stop). Called once the first page is up, so a first visit loads only what it shows. A module
/// that cannot be fetched now is fetched again when its page is opened.
pub async fn preload_pages() {
    client_core::browser::mark("aqueduct:preload-pages");
    let outcomes = [
        wallet_page::preload().await,
        jobs_page::preload().await,
        market_page::preload().await,
        dao_page::preload().await,
        relays_page::preload().await,
    ];
    for e in outcomes.into_iter().filter_map(Result::err) {
        web_sys::console::warn_1(&format!("preloading a page: {e}").into());
    }
    client_core::browser::mark("aqueduct:pages-preloaded");
}

/// Why a lazy page's module could not be loaded.
#[derive(Debug)]
pub struct PageLoadError(String);

impl From<leptos::wasm_split::SplitLoaderError> for PageLoadError {
    fn from(e: leptos::wasm_split::SplitLoaderError) -> Self {
        PageLoadError(e.to_string())
    }
}

type PageLoad = Pin<Box<dyn Future<Output = Result<AnyView, PageLoadError>>>>;

/// A lazy page: its module is loaded (if it is not yet), then the page is drawn; meanwhile the
/// page says it is loading, and if the module cannot be fetched it says so (opening the page
/// again retries).
#[component]
fn LazyPage(load: fn() -> PageLoad) -> impl IntoView {
    let loaded = RwSignal::new_local(None::<Result<(), String>>);
    let page = StoredValue::new_local(None::<AnyView>);
    // Scoped: the page is built when the future resumes, and needs this component's owner
    // (its contexts) then.
    leptos::task::spawn_local_scoped(async move {
        let outcome = match load().await {
            Ok(view) => {
                page.set_value(Some(view));
                Ok(())
            }
            Err(PageLoadError(reason)) => Err(reason),
        };
        // The user may have left the page meanwhile.
        let _ = loaded.try_set(Some(outcome));
    });
    move || match loaded.get() {
        None => view! {
            <p class="busy" data-testid="page-loading">
                <span class="spinner" aria-hidden="true"></span>
                "Loading this page…"
            </p>
        }
        .into_any(),
        Some(Ok(())) => page
            .try_update_value(Option::take)
            .flatten()
            .unwrap_or_else(|| ().into_any()),
        Some(Err(reason)) => {
            let text = format!(
                "This page's code could not be fetched ({reason}). Check your connection and \
                 open the page again."
            );
            view! { <p class="bad" role="alert" data-testid="page-load-error">{text}</p> }
                .into_any()
        }
    }
}

// Every page but the network's is cut, with whatever only it reaches, out of the page's bundle
// into its own wasm module (see `xtask/src/bundle.rs`), fetched after the first page is up (see
// `preload_pages`) or when the page is opened, whichever comes first.
macro_rules! lazy_page {
    ($module:ident, $page:ident) => {
        mod $module {
            use super::*;
            use leptos::wasm_split::wasm_split;

            #[wasm_split($module, fallible, wasm_split_path = ::leptos::wasm_split, preload(preload_module))]
            fn view_page() -> Result<AnyView, PageLoadError> {
                Ok(view! { <$page/> }.into_any())
            }

            pub fn load() -> PageLoad {
                Box::pin(view_page())
            }

            pub async fn preload() -> Result<(), leptos::wasm_split::SplitLoaderError> {
                preload_module().await
            }
        }
    };
}

lazy_page!(relays_page, RelaysPage);
lazy_page!(wallet_page, WalletPage);
lazy_page!(jobs_page, JobsPage);
lazy_page!(market_page, MarketPage);
lazy_page!(dao_page, DaoPage);

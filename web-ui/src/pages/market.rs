//! The marketplace: every provider's offer, verified against a committed block; a provider's
//! detail; opening and topping up payment channels; choosing the offer jobs use.

use crate::ledger::{LedgerState, TxProgress};
use crate::wallet::{WalletState, WalletStatus};
use crate::widgets::VerifiedLine;
use client_core::hash::Hash;
use client_core::identity::PublicKey;
use client_core::ledger::TxKind;
use client_core::ledger::state::{
    Amount, Channel, Provider, UNITS_PER_TOKEN, VerificationLevel, format_amount, format_count,
    format_fuel,
};
use leptos::prelude::*;

/// Which column the table is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Price,
    MaxFuel,
    Stake,
}

/// Parses a token amount typed by the user (`"12.5"` → 12 500 000 base units).
pub fn parse_tokens(text: &str) -> Result<Amount, String> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("enter an amount".into());
    }
    if frac.len() > 6 {
        return Err("at most 6 decimal places".into());
    }
    let whole: Amount = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("{text:?} is not an amount"))?
    };
    let frac_units: Amount = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}")
            .parse()
            .map_err(|_| format!("{text:?} is not an amount"))?
    };
    let units = whole
        .checked_mul(UNITS_PER_TOKEN)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(|| "that amount is too large".to_string())?;
    if units == 0 {
        return Err("the amount must be above zero".into());
    }
    Ok(units)
}

pub fn short(key: &PublicKey) -> String {
    let text = key
        .to_peer_id()
        .map(|p| p.to_string())
        .unwrap_or_else(|_| key.to_string());
    let tail = &text[text.len().saturating_sub(8)..];
    format!("…{tail}")
}

fn levels(offer_levels: &[VerificationLevel]) -> String {
    offer_levels
        .iter()
        .map(|l| l.label())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the offers section shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    Loading,
    Empty,
    Offers,
}

/// How often the open market page reads the offers again.
const LIVE_REFRESH_MS: u32 = 5_000;

#[component]
pub fn MarketPage() -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    ledger.refresh_market();
    // Live offers: a provider that registers while the page is open shows up by itself (the
    // rows are keyed, so a refresh never replaces a row under the pointer).
    crate::widgets::refresh_while_mounted(LIVE_REFRESH_MS, move || ledger.refresh_market());
    if let Some(account) = wallet.status.get_untracked().account()
        && let Ok(key) = PublicKey::parse(&account)
    {
        ledger.refresh_account(key);
    }
    let sort = RwSignal::new(SortBy::Price);
    let level = RwSignal::new(String::from("any"));
    let max_price = RwSignal::new(String::new());
    let selected = RwSignal::new(None::<PublicKey>);

    let shown = Memo::new(move |_| match ledger.providers.get() {
        None => Shown::Loading,
        Some(v) if v.value.is_empty() => Shown::Empty,
        Some(_) => Shown::Offers,
    });
    let rows = move || {
        let providers = ledger.providers.get().map(|v| v.value).unwrap_or_default();
        let wanted = level.get();
        let cap: Option<Amount> = max_price.get().trim().parse().ok();
        let mut rows: Vec<(PublicKey, Provider)> = providers
            .into_iter()
            .filter(|(_, p)| wanted == "any" || p.offer.levels.iter().any(|l| l.label() == wanted))
            .filter(|(_, p)| cap.is_none_or(|c| p.offer.price_per_mfuel <= c))
            .collect();
        match sort.get() {
            SortBy::Price => rows.sort_by_key(|(_, p)| p.offer.price_per_mfuel),
            SortBy::MaxFuel => rows.sort_by_key(|(_, p)| std::cmp::Reverse(p.offer.max_fuel)),
            SortBy::Stake => rows.sort_by_key(|(_, p)| std::cmp::Reverse(bonded(p))),
        }
        rows
    };
    let sort_button = move |by: SortBy, label: &'static str, id: &'static str| {
        view! {
            <button type="button" class="link" data-testid=id
                aria-pressed=move || (sort.get() == by).to_string()
                on:click=move |_| sort.set(by)>
                {label}{move || if sort.get() == by { " ▾" } else { "" }}
            </button>
        }
    };

    view! {
        <section class="card">
            <h1>"Marketplace"</h1>
            <p class="muted">"Every offer below was read from the ledger with a Merkle proof against a block signed by the network's validators; the list of providers is itself one proven value, so none can be left out."</p>
            <LedgerProblem/>
            <VerifiedLine/>
            <div class="filters">
                <label>"Verification "
                    <select data-testid="market-filter-level" on:change=move |ev| level.set(event_target_value(&ev))>
                        <option value="any">"any"</option>
                        <option value="receipt">"receipt"</option>
                        <option value="sampled">"sampled"</option>
                        <option value="full">"full"</option>
                    </select>
                </label>
                <label>"Max price per Mfuel (units) "
                    <input type="number" min="0" data-testid="market-filter-price"
                        prop:value=move || max_price.get()
                        on:input=move |ev| max_price.set(event_target_value(&ev))/>
                </label>
                <button type="button" data-testid="market-refresh" on:click=move |_| {
                    ledger.refresh_market();
                    if let Some(keypair) = wallet.keypair() { ledger.refresh_account(keypair.public()); }
                }>"Refresh"</button>
            </div>
            // Rebuilt only when the list appears, empties or fills: a refresh that brings the
            // same offers keeps every row (the rows below are keyed), so a click is never lost
            // on a row that was just replaced.
            {move || match shown.get() {
                Shown::Loading => view! { <p class="busy" data-testid="market-loading"><span class="spinner" aria-hidden="true"></span>"Reading offers with proofs…"</p> }.into_any(),
                Shown::Empty => view! { <p data-testid="market-empty">"No provider has registered yet."</p> }.into_any(),
                Shown::Offers => view! {
                    <div class="table-wrap">
                    <table class="offers" data-testid="market-offers">
                        <thead><tr>
                            <th>"Provider"</th>
                            <th>{sort_button(SortBy::Price, "Price / Mfuel", "market-sort-price")}</th>
                            <th>{sort_button(SortBy::MaxFuel, "Max fuel", "market-sort-fuel")}</th>
                            <th>"Jobs at once"</th>
                            <th>{sort_button(SortBy::Stake, "Stake", "market-sort-stake")}</th>
                            <th>"Verification"</th>
                            <th>"Status"</th>
                        </tr></thead>
                        <tbody>
                            <For each=rows key=|(k, p)| (*k, p.offer.price_per_mfuel, bonded(p), p.slashed.is_some()) let:row>
                                {
                                    let (key, provider) = row;
                                    let peer = key.to_peer_id().map(|p| p.to_string()).unwrap_or_default();
                                    let peer_attr = peer.clone();
                                    view! {
                                        <tr data-testid="market-offer" data-provider=peer_attr
                                            data-stake=bonded(&provider).to_string()
                                            data-status=status(&provider)
                                            data-price=provider.offer.price_per_mfuel.to_string()
                                            class:selected=move || selected.get() == Some(key)
                                            on:click=move |_| selected.set(Some(key))>
                                            <td class="mono" title=peer>{short(&key)}</td>
                                            <td>{format_count(provider.offer.price_per_mfuel)} <small class="muted">{format!("({})", format_amount(provider.offer.price_per_mfuel))}</small></td>
                                            <td>{format_fuel(provider.offer.max_fuel)} <small class="muted">{format!("({})", format_count(provider.offer.max_fuel))}</small></td>
                                            <td>{provider.offer.concurrency.to_string()}</td>
                                            <td>{format_amount(bonded(&provider))}</td>
                                            <td>{levels(&provider.offer.levels)}</td>
                                            <td class=if provider.slashed.is_some() { "bad" } else { "" }>{status(&provider)}</td>
                                        </tr>
                                    }
                                }
                            </For>
                        </tbody>
                    </table>
                    </div>
                }.into_any(),
            }}
        </section>
        {move || selected.get().and_then(|key| {
            ledger.providers.get().and_then(|v| v.value.into_iter().find(|(k, _)| *k == key))
        }).map(|(key, provider)| view! { <ProviderDetail key provider/> })}
        <Channels/>
        {move || matches!(wallet.status.get(), WalletStatus::Unlocked { .. }).then(|| ()).map_or_else(
            || view! { <p class="card muted" data-testid="market-wallet-hint">"Unlock your wallet to open channels and pay for jobs."</p> }.into_any(),
            |_| ().into_any(),
        )}
    }
}

/// Why the ledger cannot be trusted or reached, with a way out for a reset network.
#[component]
pub fn LedgerProblem() -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    move || {
        ledger.problem.get().map(|problem| {
            let pinned = problem.contains("different history");
            view! {
                <p class="error" role="alert" data-testid="ledger-problem">{problem}</p>
                {pinned.then(|| view! {
                    <button type="button" data-testid="ledger-forget-genesis" on:click=move |_| ledger.forget_pinned_genesis()>
                        "Forget the old genesis and trust this relay's"
                    </button>
                })}
            }
        })
    }
}

/// A provider's stake, bonded or on its way out (what a fraud proof can still slash).
fn bonded(provider: &Provider) -> Amount {
    provider
        .stake
        .saturating_add(provider.unbonding.as_ref().map_or(0, |u| u.amount))
}

/// "active", "leaving" or "slashed".
fn status(provider: &Provider) -> &'static str {
    if provider.slashed.is_some() {
        "slashed"
    } else if provider.active() {
        "active"
    } else {
        "leaving"
    }
}

/// The progress line of the latest transaction.
#[component]
pub fn TxStatus(testid: &'static str) -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    move || {
        ledger.progress.get().map(|p| match p {
            TxProgress::Working(text) => view! {
                <p class="busy" role="status" aria-live="polite" data-testid=testid data-state="working">
                    <span class="spinner" aria-hidden="true"></span>{text}
                </p>
            }
            .into_any(),
            TxProgress::Done(text) => view! {
                <p class="notice" role="status" data-testid=testid data-state="done">{text}</p>
            }
            .into_any(),
            TxProgress::Failed(text) => view! {
                <p class="error" role="alert" data-testid=testid data-state="failed">{text}</p>
            }
            .into_any(),
        })
    }
}

#[component]
fn ProviderDetail(key: PublicKey, provider: Provider) -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    let amount = RwSignal::new(String::from("10"));
    let error = RwSignal::new(None::<String>);
    let peer = key.to_peer_id().map(|p| p.to_string()).unwrap_or_default();
    let open = move |_| {
        let Some(keypair) = wallet.keypair() else {
            error.set(Some("unlock your wallet first".into()));
            return;
        };
        match parse_tokens(&amount.get_untracked()) {
            Ok(units) => {
                error.set(None);
                ledger.transact(
                    keypair,
                    TxKind::OpenChannel {
                        provider: key,
                        amount: units,
                    },
                    format!("open a channel of {}", format_amount(units)),
                );
            }
            Err(e) => error.set(Some(e)),
        }
    };
    let offer = provider.offer.clone();
    let peer_attr = peer.clone();
    view! {
        <section class="card" data-testid="market-provider-detail" data-provider=peer_attr>
            <h2>"Provider " <span class="mono">{short(&key)}</span></h2>
            <dl class="facts">
                <dt>"Account"</dt><dd class="mono wrap">{peer}</dd>
                <dt>"Price"</dt><dd>{format!("{} units ({}) per million fuel", format_count(offer.price_per_mfuel), format_amount(offer.price_per_mfuel))}</dd>
                <dt>"Largest job"</dt><dd>{format!("{} ({} fuel; costs at most {})", format_fuel(offer.max_fuel), format_count(offer.max_fuel), format_amount(offer.price_for(offer.max_fuel)))}</dd>
                <dt>"Stake"</dt><dd>{format_amount(provider.stake)}{provider.unbonding.as_ref().map(|u| format!(" (leaving: {} unlocks at {})", format_amount(u.amount), u.release_at_ms))}</dd>
                {provider.slashed.as_ref().map(|slash| view! {
                    <dt>"Slashed"</dt>
                    <dd class="bad" data-testid="market-provider-slashed">{format!(
                        "in block {}: a fraud proof showed its receipt for job {} false at segment {}; {} of its stake taken ({} refunded to the customer, {} bounty to the submitter)",
                        slash.height, slash.job, slash.segment, format_amount(slash.amount), format_amount(slash.refund), format_amount(slash.bounty)
                    )}</dd>
                })}
                <dt>"Verification"</dt><dd>{levels(&offer.levels)}</dd>
                <dt>"Addresses"</dt><dd class="mono wrap">{offer.addrs.join(" ")}</dd>
                <dt>"Attributes"</dt><dd>{offer.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")}</dd>
            </dl>
            <div class="row">
                <button type="button" data-testid="market-use-offer"
                    on:click=move |_| ledger.chosen.set(Some(key))>
                    {move || if ledger.chosen.get() == Some(key) { "Jobs use this offer ✓" } else { "Use this offer for jobs" }}
                </button>
            </div>
            <h3>"Open a payment channel"</h3>
            <p class="muted">"The amount is escrowed on the ledger for this provider; each job pays with a signed voucher, and what is not spent comes back after the channel expires."</p>
            <div class="row">
                <label>"Amount (AQD) "
                    <input type="text" inputmode="decimal" data-testid="market-channel-amount"
                        prop:value=move || amount.get() on:input=move |ev| amount.set(event_target_value(&ev))/>
                </label>
                <button type="button" data-testid="market-open-channel" on:click=open
                    disabled=move || !provider.active()>"Open channel"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert" data-testid="market-channel-error">{e}</p> })}
            <TxStatus testid="market-tx-status"/>
        </section>
    }
}

#[component]
fn Channels() -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    view! {
        <section class="card">
            <h2>"Your channels"</h2>
            {move || {
                let channels = ledger.channels.get();
                if channels.is_empty() {
                    view! { <p class="muted" data-testid="market-no-channels">"No open channels."</p> }.into_any()
                } else {
                    view! {
                        <div class="table-wrap">
                        <table data-testid="market-channels">
                            <thead><tr><th>"Provider"</th><th>"Deposit"</th><th>"Paid out"</th><th>"Remaining"</th><th>"Expires"</th><th>"Top up"</th></tr></thead>
                            <tbody>
                                {channels.into_iter().map(|(id, channel)| view! { <ChannelRow id channel/> }).collect_view()}
                            </tbody>
                        </table>
                        </div>
                    }.into_any()
                }
            }}
        </section>
    }
}

#[component]
fn ChannelRow(id: Hash, channel: Channel) -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    let amount = RwSignal::new(String::from("5"));
    let top_up = move |_| {
        let Some(keypair) = wallet.keypair() else {
            return;
        };
        if let Ok(units) = parse_tokens(&amount.get_untracked()) {
            ledger.transact(
                keypair,
                TxKind::TopUpChannel {
                    channel: id,
                    amount: units,
                },
                format!("top up the channel by {}", format_amount(units)),
            );
        }
    };
    let expires = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
        channel.expires_at_ms as f64,
    ))
    .to_locale_string("en-GB", &wasm_bindgen::JsValue::UNDEFINED);
    view! {
        <tr data-testid="market-channel" data-channel=id.to_string()
            data-deposit=channel.deposit.to_string() data-settled=channel.settled.to_string()
            data-remaining=channel.remaining().to_string()>
            <td class="mono">{short(&channel.provider)}</td>
            <td>{format_amount(channel.deposit)}</td>
            <td>{format_amount(channel.settled)}</td>
            <td>{format_amount(channel.remaining())}</td>
            <td>{String::from(expires)}</td>
            <td>
                <input type="text" inputmode="decimal" size="6" data-testid="market-topup-amount"
                    prop:value=move || amount.get() on:input=move |ev| amount.set(event_target_value(&ev))/>
                <button type="button" class="small" data-testid="market-topup" on:click=top_up>"Top up"</button>
            </td>
        </tr>
    }
}

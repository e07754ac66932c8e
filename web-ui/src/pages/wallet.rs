//! The wallet page: create, restore, import, unlock, lock, export, delete.

use crate::ledger::LedgerState;
use crate::pages::market::{LedgerProblem, TxStatus};
use crate::wallet::{WalletState, WalletStatus};
use crate::widgets::VerifiedLine;
use crate::widgets::{copy_text, download_text, read_file_text};
use client_core::browser;
use client_core::identity::PublicKey;
use client_core::ledger::TxKind;
use client_core::ledger::state::format_amount;
use client_core::wallet::{Entropy, IdleLock, MIN_PASSWORD_CHARS};
use leptos::prelude::*;

#[component]
pub fn WalletPage() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    view! {
        <section class="card">
            <h1>"Wallet"</h1>
            <p class="state-line">
                <span class=move || format!("badge wallet-{}", wallet.status.with(WalletStatus::label))>
                    <span class="dot" aria-hidden="true"></span>
                    <span data-testid="wallet-state">{move || wallet.status.with(WalletStatus::label)}</span>
                </span>
                <span class="muted">{move || match wallet.status.get() {
                    WalletStatus::Loading => "Reading this browser's storage…".to_string(),
                    WalletStatus::Empty => "No account in this browser yet.".to_string(),
                    WalletStatus::Locked { .. } => "Encrypted in this browser. Enter your password to sign requests.".to_string(),
                    WalletStatus::Unlocked { .. } => "Unlocked: requests are signed in this page, with a key that never leaves it.".to_string(),
                    WalletStatus::Unavailable(reason) => reason,
                }}</span>
            </p>
            <Busy/>
            {move || wallet.notice.get().map(|n| view! { <p class="notice" role="status" data-testid="wallet-notice">{n}</p> })}
            {move || wallet.status.get().account().map(|account| view! { <Account account/> })}
        </section>
        {move || wallet.status.get().account().map(|account| view! { <Balance account/> })}
        {move || match wallet.status.get() {
            WalletStatus::Loading => ().into_any(),
            WalletStatus::Empty | WalletStatus::Unavailable(_) => view! {
                <CreateWallet/>
                <RestoreWallet/>
                <ImportBackup/>
            }.into_any(),
            WalletStatus::Locked { .. } => view! {
                <section class="card"><h2>"Unlock"</h2><UnlockForm/></section>
                <DeleteWallet/>
            }.into_any(),
            WalletStatus::Unlocked { .. } => view! {
                <Unlocked/>
                <DeleteWallet/>
            }.into_any(),
        }}
    }
}

/// The progress line of a key derivation.
#[component]
pub fn Busy() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    move || {
        wallet.busy.get().map(|message| {
            view! {
                <p class="busy" role="status" aria-live="polite" data-testid="wallet-busy">
                    <span class="spinner" aria-hidden="true"></span>{message}
                </p>
            }
        })
    }
}

/// The account's balance, read from the ledger with a proof; the faucet on dev networks.
#[component]
fn Balance(account: String) -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    let ledger = expect_context::<LedgerState>();
    let key = PublicKey::parse(&account).ok();
    // Re-read whenever the ledger becomes available or a new block was verified elsewhere.
    Effect::new(move |_| {
        if ledger.genesis.get().is_some()
            && let Some(key) = key
        {
            ledger.refresh_account(key);
        }
    });
    let faucet = move |_| {
        if let Some(keypair) = wallet.keypair() {
            ledger.transact(keypair, TxKind::Faucet, "draw from the faucet".into());
        }
    };
    let faucet_amount = move || ledger.genesis.get().and_then(|g| g.params.faucet_amount);
    view! {
        <section class="card">
            <h2>"Balance"</h2>
            <LedgerProblem/>
            {move || match ledger.account.get() {
                None => view! {
                    <p class="busy" data-testid="wallet-balance-loading"><span class="spinner" aria-hidden="true"></span>"Reading the balance with a proof…"</p>
                }.into_any(),
                Some(verified) => view! {
                    <p class="balance">
                        <strong data-testid="wallet-balance" data-units=verified.value.balance.to_string()>{format_amount(verified.value.balance)}</strong>
                        <span class="muted">{format!(" · {} transaction{} sent", verified.value.nonce, if verified.value.nonce == 1 { "" } else { "s" })}</span>
                    </p>
                }.into_any(),
            }}
            <VerifiedLine/>
            {move || faucet_amount().map(|amount| {
                let used = ledger.account.get().is_some_and(|a| a.value.faucet_used);
                let unlocked = matches!(wallet.status.get(), WalletStatus::Unlocked { .. });
                view! {
                    <p class="muted">{format!("This is a development network: its faucet gives each new account {} once.", format_amount(amount))}</p>
                    <button type="button" data-testid="wallet-faucet" on:click=faucet disabled=move || used || !unlocked>
                        {if used { "Faucet already used" } else if unlocked { "Get test tokens" } else { "Unlock to use the faucet" }}
                    </button>
                }
            })}
            <TxStatus testid="wallet-tx-status"/>
        </section>
    }
}

#[component]
fn Account(account: String) -> impl IntoView {
    let copied = RwSignal::new(None::<String>);
    let text = account.clone();
    view! {
        <dl class="facts">
            <dt>"Account id"</dt>
            <dd>
                <span class="mono wrap" data-testid="wallet-account">{account}</span>
                " "
                <button type="button" class="small" data-testid="wallet-copy" on:click=move |_| {
                    let text = text.clone();
                    leptos::task::spawn_local(async move {
                        copied.set(Some(match copy_text(&text).await {
                            Ok(()) => "copied".into(),
                            Err(e) => format!("could not copy ({e}): select the id and copy it"),
                        }));
                    });
                }>"Copy"</button>
                {move || copied.get().map(|c| view! { <small class="muted" role="status">" "{c}</small> })}
            </dd>
        </dl>
    }
}

/// A labelled password input.
#[component]
pub fn PasswordField(
    id: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    #[prop(default = "current-password")] autocomplete: &'static str,
) -> impl IntoView {
    view! {
        <label for=id>{label}</label>
        <input id=id type="password" data-testid=id autocomplete=autocomplete
            prop:value=move || value.get()
            on:input=move |ev| value.set(event_target_value(&ev))/>
    }
}

/// Checks a new password and its confirmation.
fn new_password(password: &str, confirm: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password != confirm {
        return Err("the two passwords are not the same".into());
    }
    Ok(())
}

#[component]
pub fn UnlockForm() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move || {
        let pw = password.get_untracked();
        leptos::task::spawn_local(async move {
            match wallet.unlock(pw).await {
                Ok(()) => {
                    password.set(String::new());
                    error.set(None);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <form class="grid-form" on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <PasswordField id="wallet-unlock-password" label="Password" value=password/>
            <span></span>
            <button type="submit" data-testid="wallet-unlock" disabled=move || wallet.busy.get().is_some()>"Unlock"</button>
        </form>
        {move || error.get().map(|e| view! { <p class="bad" role="alert" data-testid="wallet-unlock-error">{e}</p> })}
    }
}

#[component]
fn CreateWallet() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    let entropy = StoredValue::new(None::<Entropy>);
    let phrase = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let generate = move |_| match browser::random_bytes::<32>() {
        Ok(bytes) => {
            let e = Entropy::new(bytes);
            phrase.set(Some(e.phrase().to_string()));
            entropy.set_value(Some(e));
            error.set(None);
        }
        Err(e) => error.set(Some(e.to_string())),
    };
    let save = move || {
        if let Err(e) = new_password(&password.get_untracked(), &confirm.get_untracked()) {
            error.set(Some(e));
            return;
        }
        if !saved.get_untracked() {
            error.set(Some(
                "confirm that you wrote the recovery phrase down: it is the only way back if you forget the password".into(),
            ));
            return;
        }
        let Some(e) = entropy.get_value() else { return };
        let pw = password.get_untracked();
        leptos::task::spawn_local(async move {
            match wallet.save_new(e, pw).await {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Create a new account"</h2>
            {move || match phrase.get() {
                None => view! {
                    <p class="muted">"A new key is made in this page from the browser's random generator. You get a 24-word recovery phrase to write down, then choose a password that encrypts the key in this browser."</p>
                    <button type="button" data-testid="wallet-create" on:click=generate>"Create account"</button>
                }.into_any(),
                Some(words) => view! {
                    <p>"Your recovery phrase. Write the words down, in order, and keep them offline: anyone who has them controls the account."</p>
                    <ol class="phrase mono" data-testid="wallet-phrase" data-phrase=words.clone()>
                        {words.split(' ').map(|w| view! { <li>{w.to_string()}</li> }).collect_view()}
                    </ol>
                    <form class="grid-form" on:submit=move |ev| { ev.prevent_default(); save(); }>
                        <span></span>
                        <label class="check">
                            <input type="checkbox" data-testid="wallet-phrase-saved"
                                prop:checked=move || saved.get()
                                on:change=move |ev| saved.set(event_target_checked(&ev))/>
                            " I have written down these 24 words, in order"
                        </label>
                        <PasswordField id="wallet-new-password" label="Password" value=password autocomplete="new-password"/>
                        <PasswordField id="wallet-new-password-confirm" label="Password again" value=confirm autocomplete="new-password"/>
                        <span></span>
                        <button type="submit" data-testid="wallet-save" disabled=move || wallet.busy.get().is_some()>"Encrypt and save"</button>
                    </form>
                }.into_any(),
            }}
            {move || error.get().map(|e| view! { <p class="bad" role="alert" data-testid="wallet-create-error">{e}</p> })}
        </section>
    }
}

#[component]
fn RestoreWallet() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    let words = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let restore = move || {
        let entropy = match Entropy::from_phrase(&words.get_untracked()) {
            Ok(e) => e,
            Err(e) => {
                error.set(Some(e.to_string()));
                return;
            }
        };
        if let Err(e) = new_password(&password.get_untracked(), &confirm.get_untracked()) {
            error.set(Some(e));
            return;
        }
        let pw = password.get_untracked();
        leptos::task::spawn_local(async move {
            match wallet.save_new(entropy, pw).await {
                Ok(()) => {
                    words.set(String::new());
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Restore from a recovery phrase"</h2>
            <form class="grid-form" on:submit=move |ev| { ev.prevent_default(); restore(); }>
                <label for="wallet-restore-phrase">"Recovery phrase"</label>
                <textarea id="wallet-restore-phrase" data-testid="wallet-restore-phrase" rows="3" class="mono"
                    autocomplete="off" spellcheck="false"
                    prop:value=move || words.get()
                    on:input=move |ev| words.set(event_target_value(&ev))></textarea>
                <PasswordField id="wallet-restore-password" label="New password" value=password autocomplete="new-password"/>
                <PasswordField id="wallet-restore-password-confirm" label="Password again" value=confirm autocomplete="new-password"/>
                <span></span>
                <button type="submit" data-testid="wallet-restore" disabled=move || wallet.busy.get().is_some()>"Restore"</button>
            </form>
            {move || error.get().map(|e| view! { <p class="bad" role="alert" data-testid="wallet-restore-error">{e}</p> })}
        </section>
    }
}

#[component]
fn ImportBackup() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    let file = NodeRef::<leptos::html::Input>::new();
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let import = move || {
        let pw = password.get_untracked();
        let input = file.get_untracked();
        leptos::task::spawn_local(async move {
            let text = match input {
                Some(input) => read_file_text(&input).await,
                None => Err("choose a backup file first".into()),
            };
            let result = match text {
                Ok(text) => wallet.import(text, pw).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Import a backup file"</h2>
            <form class="grid-form" on:submit=move |ev| { ev.prevent_default(); import(); }>
                <label for="wallet-import-file">"Backup file"</label>
                <input id="wallet-import-file" type="file" accept=".json,application/json" data-testid="wallet-import-file" node_ref=file/>
                <PasswordField id="wallet-import-password" label="Its password" value=password/>
                <span></span>
                <button type="submit" data-testid="wallet-import" disabled=move || wallet.busy.get().is_some()>"Import"</button>
            </form>
            {move || error.get().map(|e| view! { <p class="bad" role="alert" data-testid="wallet-import-error">{e}</p> })}
        </section>
    }
}

#[component]
fn Unlocked() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    let phrase = RwSignal::new(None::<String>);
    let export_note = RwSignal::new(None::<String>);
    let lock_in = RwSignal::new(wallet.lock_in_ms());
    // Refresh the countdown once a second while this view is shown.
    let alive = StoredValue::new(true);
    on_cleanup(move || alive.set_value(false));
    leptos::task::spawn_local(async move {
        while alive.try_get_value().unwrap_or(false) {
            lock_in.set(wallet.lock_in_ms());
            browser::pause(1_000).await;
        }
    });
    let export = move |_| {
        let Some(text) = wallet.backup() else { return };
        let account = wallet.status.get_untracked().account().unwrap_or_default();
        let short: String = account
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let name = format!("aqueduct-wallet-{short}.json");
        export_note.set(Some(
            match download_text(&name, "application/json", &text) {
                Ok(()) => format!(
                    "Saved {name}. It is encrypted with your password; keep it somewhere safe."
                ),
                Err(e) => format!("Could not save the file: {e}"),
            },
        ));
    };
    view! {
        <section class="card">
            <h2>"Your key"</h2>
            {move || wallet.last_unlock.get().map(|(ms, kdf)| {
                view! {
                    <p class="muted" data-testid="wallet-unlock-ms" data-ms=format!("{ms:.0}")>
                        {format!("Unlocked in {:.0} ms (Argon2id, {} MiB, {} passes, in a background worker: the page stayed responsive).", ms, kdf.memory_kib / 1024, kdf.iterations)}
                    </p>
                }
            })}
            <div class="actions">
                <button type="button" data-testid="wallet-lock" on:click=move |_| wallet.lock()>"Lock now"</button>
                <button type="button" data-testid="wallet-export" on:click=export>"Export encrypted backup"</button>
                <button type="button" data-testid="wallet-show-phrase" on:click=move |_| {
                    phrase.update(|p| *p = if p.is_some() { None } else { wallet.phrase() });
                }>{move || if phrase.get().is_some() { "Hide recovery phrase" } else { "Show recovery phrase" }}</button>
            </div>
            {move || export_note.get().map(|n| view! { <p class="muted" role="status" data-testid="wallet-export-note">{n}</p> })}
            {move || phrase.get().map(|words| view! {
                <ol class="phrase mono" data-testid="wallet-phrase" data-phrase=words.clone()>
                    {words.split(' ').map(|w| view! { <li>{w.to_string()}</li> }).collect_view()}
                </ol>
            })}
            <form class="grid-form" on:submit=|ev| ev.prevent_default()>
                <label for="wallet-autolock">"Lock after"</label>
                <div>
                    <select id="wallet-autolock" data-testid="wallet-autolock"
                        on:change=move |ev| {
                            if let Ok(m) = event_target_value(&ev).parse::<u32>() { wallet.set_autolock(m); }
                        }>
                        {IdleLock::CHOICES_MIN.iter().map(|m| {
                            let m = *m;
                            view! { <option value=m.to_string() selected=move || wallet.autolock_min.get() == m>{format!("{m} min without activity")}</option> }
                        }).collect_view()}
                    </select>
                    <small class="muted">{move || format!(" locks in {:.0} s unless you use the page", lock_in.get() / 1000.0)}</small>
                </div>
            </form>
        </section>
    }
}

#[component]
fn DeleteWallet() -> impl IntoView {
    let wallet = expect_context::<WalletState>();
    let asking = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    view! {
        <section class="card">
            <h2>"Remove from this browser"</h2>
            {move || if asking.get() {
                view! {
                    <p class="bad">"This deletes the encrypted key from this browser. Without the recovery phrase or a backup file the account cannot be recovered."</p>
                    <div class="actions">
                        <button type="button" class="danger" data-testid="wallet-delete-confirm" on:click=move |_| {
                            leptos::task::spawn_local(async move {
                                match wallet.delete().await {
                                    Ok(()) => { asking.set(false); error.set(None); }
                                    Err(e) => error.set(Some(e)),
                                }
                            });
                        }>"Delete it"</button>
                        <button type="button" on:click=move |_| asking.set(false)>"Keep it"</button>
                    </div>
                }.into_any()
            } else {
                view! {
                    <button type="button" data-testid="wallet-delete" on:click=move |_| asking.set(true)>"Delete wallet…"</button>
                }.into_any()
            }}
            {move || error.get().map(|e| view! { <p class="bad" role="alert">{e}</p> })}
        </section>
    }
}

//! The DAO: proposals by state with verified tallies, your voting power and vote, delegation,
//! and a form for each kind of proposal. Every figure comes from a proven read.

use crate::ledger::LedgerState;
use crate::pages::market::{LedgerProblem, TxStatus, parse_tokens, short};
use crate::wallet::WalletState;
use crate::widgets::VerifiedLine;
use client_core::identity::PublicKey;
use client_core::ledger::TxKind;
use client_core::ledger::gov::{
    Action, Choice, DaoView, MAX_DESCRIPTION, MAX_TITLE, MyGov, PARAM_NAMES, ParamChange, Proposal,
    ProposalState, Status,
};
use client_core::ledger::state::{Amount, Params, format_amount};
use leptos::prelude::*;

/// How often the open DAO page reads proposals and tallies again.
const LIVE_REFRESH_MS: u32 = 2_000;

/// Amount-valued parameters are typed in tokens; the rest as plain numbers.
fn is_amount(name: &str) -> bool {
    matches!(
        name,
        "min_stake" | "base_fee" | "fee_per_byte" | "proposal_threshold" | "quorum"
    )
}

fn show_value(name: &str, value: u64) -> String {
    if is_amount(name) {
        format_amount(value)
    } else {
        value.to_string()
    }
}

fn current_values(params: &Params) -> Vec<(&'static str, u64)> {
    PARAM_NAMES
        .iter()
        .filter_map(|name| ParamChange::parse(name, 0))
        .map(|probe| (probe.name(), probe.current(params)))
        .collect()
}

fn describe(action: &Action) -> String {
    match action {
        Action::Params(changes) => changes
            .iter()
            .map(|c| format!("{} → {}", c.name(), show_value(c.name(), c.value())))
            .collect::<Vec<_>>()
            .join(", "),
        Action::Grant { to, amount } => format!("pay {} to {}", format_amount(*amount), short(to)),
        Action::Text => "no effect on the ledger".into(),
    }
}

/// The states in the order the list groups them.
const GROUPS: [ProposalState; 8] = [
    ProposalState::Active,
    ProposalState::Pending,
    ProposalState::Succeeded,
    ProposalState::Queued,
    ProposalState::Executed,
    ProposalState::Defeated,
    ProposalState::Canceled,
    ProposalState::Expired,
];

#[component]
pub fn DaoPage() -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    let me = move || wallet.keypair().map(|k| k.public());
    ledger.refresh_dao(me());
    // A live tally: read again every few seconds while the page is open.
    crate::widgets::refresh_while_mounted(LIVE_REFRESH_MS, move || ledger.refresh_dao(me()));
    let refresh = move |_| ledger.refresh_dao(me());
    view! {
        <section class="card">
            <h1>"DAO"</h1>
            <p class="muted">"Token holders change the network's parameters and spend its treasury by voting. Every proposal, tally and balance below was read with a Merkle proof against a block signed by the validators; a passed proposal takes effect by itself once its timelock ends."</p>
            <LedgerProblem/>
            <VerifiedLine/>
            <div class="row">
                <button type="button" data-testid="dao-refresh" on:click=refresh>"Refresh"</button>
            </div>
            {move || match ledger.dao.get() {
                None => view! { <p class="busy" data-testid="dao-loading"><span class="spinner" aria-hidden="true"></span>"Reading proposals with proofs…"</p> }.into_any(),
                Some(dao) => view! { <Overview dao=dao.value/> }.into_any(),
            }}
            <Delegation/>
            <TxStatus testid="dao-tx-status"/>
        </section>
        {move || ledger.dao.get().map(|dao| {
            let view = dao.value;
            let height = view.height;
            GROUPS.into_iter().map(|group| {
                let items: Vec<Proposal> = view.proposals.iter()
                    .filter(|p| p.state(height + 1) == group).cloned().collect();
                (!items.is_empty()).then(|| {
                    let me = view.me.clone();
                    let params = view.params.clone();
                    view! {
                        <section class="card" data-testid=format!("dao-group-{}", group.label())>
                            <h2>{format!("{} ({})", capitalize(group.label()), items.len())}</h2>
                            {items.into_iter().map(|p| view! { <ProposalCard proposal=p me=me.clone() height params=params.clone()/> }).collect_view()}
                        </section>
                    }
                })
            }).collect_view()
        })}
        <ProposeForm/>
    }
}

/// Upper-cases the first letter of one of the app's own (ASCII) labels.
fn capitalize(word: &str) -> String {
    let mut out = word.to_owned();
    if let Some(first) = out.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    out
}

#[component]
fn Overview(dao: DaoView) -> impl IntoView {
    let params = dao.params.clone();
    let mine = dao.me.clone().map(|me| {
        let power = me.power.current();
        let delegated = me.delegate;
        view! {
            <dt>"Your voting power"</dt>
            <dd data-testid="dao-my-power" data-power=power.to_string()>
                {format_amount(power)}
                {delegated.map(|d| format!(" — your own balance counts for {} (you delegated to them)", short(&d)))}
            </dd>
        }
    });
    view! {
        <dl class="facts">
            <dt>"Treasury"</dt>
            <dd data-testid="dao-treasury" data-amount=dao.treasury.to_string()>{format_amount(dao.treasury)}</dd>
            <dt>"To propose"</dt><dd>{format!("at least {} of voting power", format_amount(params.gov.proposal_threshold))}</dd>
            <dt>"To pass"</dt><dd>{format!("For + Abstain at least {} (quorum) and more For than Against", format_amount(params.gov.quorum))}</dd>
            <dt>"Timeline"</dt><dd>{format!("voting starts {} blocks after a proposal and lasts {}; a passed proposal runs {} blocks after it is queued", params.gov.voting_delay_blocks, params.gov.voting_period_blocks, params.gov.timelock_blocks)}</dd>
            {mine}
        </dl>
        <details>
            <summary>"Parameters in force"</summary>
            <div class="table-wrap">
            <table data-testid="dao-params">
                <tbody>
                    {current_values(&params).into_iter().map(|(name, value)| view! {
                        <tr data-testid=format!("param-{name}") data-value=value.to_string()>
                            <td class="mono">{name}</td><td>{show_value(name, value)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            </div>
        </details>
    }
}

/// Lending voting power to another account, or taking it back. Rendered once, so a refresh of
/// the figures does not clear what is being typed.
#[component]
fn Delegation() -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    let delegate_to = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let send = move |to: Option<PublicKey>| {
        let Some(keypair) = wallet.keypair() else {
            error.set(Some("unlock your wallet first".into()));
            return;
        };
        error.set(None);
        let what = match to {
            Some(to) => format!("delegate your voting power to {}", short(&to)),
            None => "take your voting power back".to_string(),
        };
        ledger.transact(keypair, TxKind::Delegate { to }, what);
    };
    let delegate = move |_| match PublicKey::parse(delegate_to.get_untracked().trim()) {
        Ok(to) => send(Some(to)),
        Err(e) => error.set(Some(format!("not an account: {e}"))),
    };
    view! {
        <div class="row">
            <label>"Delegate to (account) "
                <input type="text" size="56" data-testid="dao-delegate-to" placeholder="12D3KooW…"
                    prop:value=move || delegate_to.get() on:input=move |ev| delegate_to.set(event_target_value(&ev))/>
            </label>
            <button type="button" data-testid="dao-delegate" on:click=delegate>"Delegate"</button>
            <button type="button" data-testid="dao-undelegate" on:click=move |_| send(None)>"Take back"</button>
        </div>
        {move || error.get().map(|e| view! { <p class="error" role="alert" data-testid="dao-error">{e}</p> })}
    }
}

/// One bar of the tally: `value` against `scale`.
fn bar(label: &'static str, class: &'static str, value: Amount, scale: Amount) -> impl IntoView {
    let percent = if scale == 0 {
        0.0
    } else {
        (value as f64 / scale as f64 * 100.0).min(100.0)
    };
    view! {
        <div class="tally-row">
            <span class="tally-label">{label}</span>
            <span class="tally-bar"><span class=class style=format!("width: {percent:.1}%")></span></span>
            <span class="tally-value">{format_amount(value)}</span>
        </div>
    }
}

#[component]
fn ProposalCard(
    proposal: Proposal,
    me: Option<MyGov>,
    height: u64,
    params: Params,
) -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    let id = proposal.id;
    let state = proposal.state(height + 1);
    let tally = proposal.tally.clone();
    let scale = tally
        .for_power
        .max(tally.against_power)
        .max(tally.abstain_power)
        .max(proposal.quorum);
    let my_power = me.as_ref().map(|m| m.power.before(proposal.start_height));
    let my_vote = me.as_ref().and_then(|m| m.vote(id).cloned());
    let mine = me.as_ref().is_some_and(|m| m.account == proposal.proposer);
    let can_vote = state == ProposalState::Active && my_power.is_some_and(|p| p > 0);
    let vote = move |choice: Choice| {
        if let Some(keypair) = wallet.keypair() {
            ledger.transact(
                keypair,
                TxKind::Vote {
                    proposal: id,
                    choice,
                },
                format!("vote {} on proposal {id}", choice.label()),
            );
        }
    };
    let cancel = move |_| {
        if let Some(keypair) = wallet.keypair() {
            ledger.transact(
                keypair,
                TxKind::CancelProposal { proposal: id },
                format!("cancel proposal {id}"),
            );
        }
    };
    let execution = match proposal.status {
        Status::Queued { eta } => format!("runs at the end of block {eta}"),
        Status::Executed { height } => format!("took effect in block {height}"),
        Status::Expired { height } => {
            format!("expired in block {height} (its action could not apply)")
        }
        Status::Canceled { height } => format!("canceled in block {height}"),
        Status::Defeated { height } => format!("defeated in block {height}"),
        Status::Succeeded { height } => format!(
            "passed in block {height}; queued next block, runs {} blocks later",
            params.gov.timelock_blocks
        ),
        Status::Open => format!(
            "if it passes: queued after block {}, runs {} blocks later",
            proposal.end_height, params.gov.timelock_blocks
        ),
    };
    let quorum_met = tally.quorum_power() >= proposal.quorum;
    view! {
        <article class="proposal" data-testid="dao-proposal" data-id=id.to_string() data-state=state.label()>
            <h3>{format!("#{id} {}", proposal.title)} " " <span class="badge" data-testid=format!("proposal-state-{id}")>{state.label()}</span></h3>
            <p class="muted">{format!("{} · {}", proposal.action.kind(), describe(&proposal.action))}</p>
            {(!proposal.description.is_empty()).then(|| view! { <p class="description">{proposal.description.clone()}</p> })}
            <dl class="facts">
                <dt>"Proposer"</dt><dd class="mono">{short(&proposal.proposer)}</dd>
                <dt>"Timeline"</dt><dd>{format!("proposed in block {}; voting from block {} through {}; {execution}", proposal.created_height, proposal.start_height, proposal.end_height)}</dd>
            </dl>
            <div class="tally" data-testid=format!("proposal-tally-{id}")
                data-for=tally.for_power.to_string() data-against=tally.against_power.to_string()
                data-abstain=tally.abstain_power.to_string() data-quorum=proposal.quorum.to_string()>
                {bar("For", "for", tally.for_power, scale)}
                {bar("Against", "against", tally.against_power, scale)}
                {bar("Abstain", "abstain", tally.abstain_power, scale)}
                <p class="muted">{format!(
                    "Quorum {}: For + Abstain = {} — {}",
                    format_amount(proposal.quorum),
                    format_amount(tally.quorum_power()),
                    if quorum_met { "reached" } else { "not reached" }
                )}</p>
            </div>
            {my_power.map(|power| view! {
                <p data-testid=format!("proposal-my-vote-{id}")>
                    {format!("Your power for this vote (held before block {}): {}. ", proposal.start_height, format_amount(power))}
                    {match &my_vote {
                        Some(v) => format!("You voted {} with {}; you may change it until block {}.", v.choice.label(), format_amount(v.power), proposal.end_height),
                        None if state == ProposalState::Active => "You have not voted.".to_string(),
                        None => String::new(),
                    }}
                </p>
            })}
            {can_vote.then(|| view! {
                <div class="row">
                    <button type="button" data-testid=format!("vote-for-{id}") on:click=move |_| vote(Choice::For)>"Vote For"</button>
                    <button type="button" data-testid=format!("vote-against-{id}") on:click=move |_| vote(Choice::Against)>"Vote Against"</button>
                    <button type="button" data-testid=format!("vote-abstain-{id}") on:click=move |_| vote(Choice::Abstain)>"Abstain"</button>
                </div>
            })}
            {(mine && state == ProposalState::Pending).then(|| view! {
                <button type="button" data-testid=format!("proposal-cancel-{id}") on:click=cancel>"Cancel this proposal"</button>
            })}
        </article>
    }
}

/// The proposal form. Rendered once: the parameters and voting power it checks against are
/// read from the latest verified figures when it is used.
#[component]
fn ProposeForm() -> impl IntoView {
    let ledger = expect_context::<LedgerState>();
    let wallet = expect_context::<WalletState>();
    let kind = RwSignal::new(String::from("params"));
    let title = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let param = RwSignal::new(String::from("min_stake"));
    let value = RwSignal::new(String::new());
    let recipient = RwSignal::new(String::new());
    let amount = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let latest = move || ledger.dao.get_untracked().map(|d| d.value);

    let build = move |params: &Params| -> Result<Action, String> {
        let action = match kind.get_untracked().as_str() {
            "params" => {
                let name = param.get_untracked();
                let text = value.get_untracked();
                let number = if is_amount(&name) {
                    parse_tokens(&text)
                        .or_else(|e| if text.trim() == "0" { Ok(0) } else { Err(e) })?
                } else {
                    text.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("{text:?} is not a whole number"))?
                };
                Action::Params(vec![
                    ParamChange::parse(&name, number).ok_or("that value is out of range")?,
                ])
            }
            "grant" => Action::Grant {
                to: PublicKey::parse(recipient.get_untracked().trim())
                    .map_err(|e| format!("recipient: {e}"))?,
                amount: parse_tokens(&amount.get_untracked())?,
            },
            _ => Action::Text,
        };
        if let Some(problem) = action.problem(params) {
            return Err(problem);
        }
        Ok(action)
    };
    let submit = move |_| {
        let Some(dao) = latest() else {
            problem.set(Some("the ledger has not been read yet".into()));
            return;
        };
        let threshold = dao.params.gov.proposal_threshold;
        let power = dao.me.as_ref().map(|m| m.power.current());
        let Some(keypair) = wallet.keypair() else {
            problem.set(Some("unlock your wallet first".into()));
            return;
        };
        let title_text = title.get_untracked();
        if title_text.trim().is_empty() || title_text.len() > MAX_TITLE {
            problem.set(Some(format!("a title has 1 to {MAX_TITLE} characters")));
            return;
        }
        let text = description.get_untracked();
        if text.len() > MAX_DESCRIPTION {
            problem.set(Some(format!(
                "a description has at most {MAX_DESCRIPTION} bytes"
            )));
            return;
        }
        if power.is_some_and(|p| p < threshold) {
            problem.set(Some(format!(
                "proposing needs {} of voting power; you have {}",
                format_amount(threshold),
                format_amount(power.unwrap_or(0))
            )));
            return;
        }
        match build(&dao.params) {
            Ok(action) => {
                problem.set(None);
                let what = format!("propose “{}”", title_text.trim());
                ledger.transact(
                    keypair,
                    TxKind::Propose {
                        title: title_text.trim().to_string(),
                        description: text,
                        action,
                    },
                    what,
                );
            }
            Err(e) => problem.set(Some(e)),
        }
    };
    let current = move || {
        let name = param.get();
        let Some(dao) = ledger.dao.get() else {
            return String::new();
        };
        current_values(&dao.value.params)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(n, v)| format!("now {}", show_value(n, v)))
            .unwrap_or_default()
    };
    view! {
        <section class="card">
            <h2>"Make a proposal"</h2>
            {move || wallet.keypair().is_none().then(|| view! { <p class="muted" data-testid="dao-wallet-hint">"Unlock your wallet to propose, vote and delegate."</p> })}
            <div class="form">
                <label>"Kind "
                    <select data-testid="proposal-kind" on:change=move |ev| kind.set(event_target_value(&ev))>
                        <option value="params">"Parameter change"</option>
                        <option value="grant">"Treasury grant"</option>
                        <option value="text">"Text"</option>
                    </select>
                </label>
                <label>"Title "
                    <input type="text" data-testid="proposal-title" maxlength=MAX_TITLE.to_string()
                        prop:value=move || title.get() on:input=move |ev| title.set(event_target_value(&ev))/>
                </label>
                <label>"Description "
                    <textarea data-testid="proposal-description" rows="3"
                        prop:value=move || description.get() on:input=move |ev| description.set(event_target_value(&ev))></textarea>
                </label>
                {move || match kind.get().as_str() {
                    "params" => view! {
                        <label>"Parameter "
                            <select data-testid="proposal-param" on:change=move |ev| param.set(event_target_value(&ev))>
                                {PARAM_NAMES.iter().map(|name| view! { <option value=*name>{*name}</option> }).collect_view()}
                            </select>
                        </label>
                        <label>"New value " {move || if is_amount(&param.get()) { "(AQD) " } else { "" }}
                            <input type="text" data-testid="proposal-value"
                                prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))/>
                        </label>
                        <p class="muted" data-testid="proposal-current">{current}</p>
                    }.into_any(),
                    "grant" => view! {
                        <label>"Recipient "
                            <input type="text" size="56" data-testid="proposal-recipient"
                                prop:value=move || recipient.get() on:input=move |ev| recipient.set(event_target_value(&ev))/>
                        </label>
                        <label>"Amount (AQD) "
                            <input type="text" data-testid="proposal-amount"
                                prop:value=move || amount.get() on:input=move |ev| amount.set(event_target_value(&ev))/>
                        </label>
                    }.into_any(),
                    _ => view! { <p class="muted">"A text proposal records what holders think; passing it changes nothing on the ledger."</p> }.into_any(),
                }}
                <button type="button" data-testid="proposal-submit" on:click=submit>"Propose"</button>
            </div>
            {move || problem.get().map(|p| view! { <p class="error" role="alert" data-testid="proposal-problem">{p}</p> })}
        </section>
    }
}

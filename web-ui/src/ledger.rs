//! The ledger as the app sees it: the genesis it trusts, the latest verified header, and
//! verified reads (balance, offers, channels) — plus signing and submitting transactions.
//!
//! Reads go to the relay that served the page; its genesis is pinned in this browser the first
//! time it is seen, so a relay that later presents another history for the same network is
//! caught instead of believed.

use crate::network::{NetworkState, Phase};
use crate::widgets::local_storage;
use client_core::browser::{self, PeerId};
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::gov::DaoView;
use client_core::ledger::light::{LightClient, Trusted, Verified};
use client_core::ledger::state::{Account, Channel, Params, Provider};
use client_core::ledger::tx::min_fee_for;
use client_core::ledger::{Genesis, TxKind};
use client_core::ledger_client::{self, LedgerClientError, TxEvent};
use leptos::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// What the page shows about the chain it verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub height: u64,
    pub state_root: Hash,
    pub time_ms: u64,
    pub validators: usize,
    /// The hash of the validator set the page trusts for this block.
    pub validator_set: Hash,
    /// When this page verified it.
    pub verified_at_ms: f64,
}

/// Every registered provider and its entry.
pub type Offers = Vec<(PublicKey, Provider)>;

/// A transaction in progress or just finished, for the progress line.
#[derive(Debug, Clone, PartialEq)]
pub enum TxProgress {
    Working(String),
    Done(String),
    Failed(String),
}

#[derive(Clone, Copy)]
pub struct LedgerState {
    pub genesis: RwSignal<Option<Genesis>>,
    /// Why the ledger cannot be used (no relay, untrusted genesis, …).
    pub problem: RwSignal<Option<String>>,
    pub head: RwSignal<Option<Head>>,
    /// The wallet account's verified state, with the block it was proven against.
    pub account: RwSignal<Option<Verified<Account>>>,
    pub providers: RwSignal<Option<Verified<Offers>>>,
    pub channels: RwSignal<Vec<(Hash, Channel)>>,
    pub progress: RwSignal<Option<TxProgress>>,
    /// The offer the jobs form uses.
    pub chosen: RwSignal<Option<PublicKey>>,
    /// Governance as last read with proofs (`None` until the DAO page asks).
    pub dao: RwSignal<Option<Verified<DaoView>>>,
    /// The relay whose answer was verified last (reads go to any connected relay).
    pub answered_by: RwSignal<Option<PeerId>>,
    light: StoredValue<Option<Rc<RefCell<LightClient>>>, LocalStorage>,
    network: NetworkState,
}

fn pin_key(network_id: &str) -> String {
    format!("aqueduct.genesis.{network_id}")
}

impl LedgerState {
    pub fn start(network: NetworkState) -> Self {
        let state = LedgerState {
            genesis: RwSignal::new(None),
            problem: RwSignal::new(None),
            head: RwSignal::new(None),
            account: RwSignal::new(None),
            providers: RwSignal::new(None),
            channels: RwSignal::new(Vec::new()),
            progress: RwSignal::new(None),
            chosen: RwSignal::new(None),
            dao: RwSignal::new(None),
            answered_by: RwSignal::new(None),
            light: StoredValue::new_local(None),
            network,
        };
        leptos::task::spawn_local(state.load_genesis());
        state
    }

    /// The connected relays of the network (the serving relay first), once there is one,
    /// with a stream control.
    async fn relays(&self) -> Result<(browser::Control, Vec<PeerId>), String> {
        let network = self.network;
        for _ in 0..600 {
            let relays = network.ledger_relays();
            if let (false, Some(peer)) = (relays.is_empty(), network.peer.get_value()) {
                return Ok((peer.control, relays));
            }
            if let Phase::Failed(reason) = network.phase.get_untracked()
                && network.relays.with_untracked(|r| r.len() <= 1)
            {
                return Err(format!("the relay cannot be reached: {reason}"));
            }
            browser::pause(100).await;
        }
        Err("no relay connected within a minute".into())
    }

    /// The first connected relay, for what must go to one relay from start to end.
    async fn relay(&self) -> Result<(browser::Control, PeerId), String> {
        let (control, relays) = self.relays().await?;
        let first = relays
            .first()
            .copied()
            .ok_or_else(|| "no relay is connected".to_owned())?;
        Ok((control, first))
    }

    /// Asks the connected relays in turn until one gives an answer that verifies: a relay that
    /// cannot be reached, answers nonsense or whose answer fails verification is passed over
    /// (and said so in the network log), so one dead or lying relay does not stop the reads.
    async fn ask<T>(
        &self,
        request: impl AsyncFn(&mut browser::Control, PeerId) -> Result<T, LedgerClientError>,
    ) -> Result<T, LedgerClientError> {
        let (mut control, relays) = self.relays().await.map_err(LedgerClientError::Stream)?;
        let mut last = LedgerClientError::Stream("no relay is connected".into());
        for relay in relays {
            match request(&mut control, relay).await {
                Ok(value) => {
                    if self.answered_by.get_untracked() != Some(relay) {
                        self.answered_by.set(Some(relay));
                    }
                    return Ok(value);
                }
                Err(e @ LedgerClientError::NoBlockYet) => return Err(e),
                Err(e) => {
                    self.network.note_failover(relay, &e.to_string());
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn load_genesis(self) {
        let (mut control, relay) = match self.relay().await {
            Ok(r) => r,
            Err(e) => {
                self.problem.set(Some(e));
                return;
            }
        };
        let genesis = match ledger_client::fetch_genesis(&mut control, relay).await {
            Ok(g) => g,
            Err(e) => {
                self.problem
                    .set(Some(format!("the relay's genesis could not be read: {e}")));
                return;
            }
        };
        let hash = genesis.hash().to_string();
        if let Some(storage) = local_storage() {
            let key = pin_key(&genesis.network_id);
            match storage.get_item(&key).ok().flatten() {
                Some(pinned) if pinned != hash => {
                    self.problem.set(Some(format!(
                        "this relay presents a different history for network {:?} (genesis {}…) \
                         than the one this browser trusted before ({}…). Nothing it says about \
                         the ledger is believed. If the network was deliberately reset, forget \
                         the old genesis below.",
                        genesis.network_id,
                        &hash[..12],
                        &pinned[..pinned.len().min(12)]
                    )));
                    self.genesis.set(Some(genesis));
                    return;
                }
                Some(_) => {}
                None => {
                    let _ = storage.set_item(&key, &hash);
                }
            }
        }
        let light = match restore_light(&genesis).await {
            Some(light) => light,
            None => LightClient::new(&genesis),
        };
        self.light.set_value(Some(Rc::new(RefCell::new(light))));
        self.genesis.set(Some(genesis));
        self.refresh_market();
    }

    /// Forgets the pinned genesis of the current network and trusts the relay's.
    pub fn forget_pinned_genesis(&self) {
        if let (Some(storage), Some(genesis)) = (local_storage(), self.genesis.get_untracked()) {
            let _ = storage.remove_item(&pin_key(&genesis.network_id));
        }
        self.problem.set(None);
        leptos::task::spawn_local(self.load_genesis());
    }

    fn light(&self) -> Option<Rc<RefCell<LightClient>>> {
        self.light.get_value()
    }

    fn note_head(&self, light: &RefCell<LightClient>) {
        let light = light.borrow();
        if let Some(evidence) = light.evidence().last() {
            let signers = evidence.double_signers();
            self.problem.set(Some(format!(
                "two different blocks at height {} carry valid signatures: validators {} signed \
                 both. The network is forked; nothing newer is believed from this relay.",
                evidence.a.0.height,
                signers
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(header) = light.latest() {
            let head = Head {
                height: header.height,
                state_root: header.state_root,
                time_ms: header.time_ms,
                validators: light.validators().validators.len(),
                validator_set: light.validators().hash(),
                verified_at_ms: browser::now_ms(),
            };
            if self.head.get_untracked().map(|h| h.height) != Some(head.height) {
                self.head.set(Some(head));
                if let Some(trusted) = light.trusted() {
                    leptos::task::spawn_local(save_light(trusted));
                }
            }
        }
    }

    /// Reads `who`'s account with a proof.
    pub fn refresh_account(&self, who: PublicKey) {
        let state = *self;
        leptos::task::spawn_local(async move {
            let Some(light) = state.light() else { return };
            let read = state
                .ask(async |control, relay| {
                    ledger_client::account(&light, control, relay, who).await
                })
                .await;
            match read {
                Ok(verified) => {
                    state.note_head(&light);
                    state.account.set(Some(verified));
                }
                Err(LedgerClientError::NoBlockYet) => {}
                Err(e) => state.problem.set(Some(e.to_string())),
            }
            let channels = state
                .ask(async |control, relay| {
                    ledger_client::channels(&light, control, relay, who).await
                })
                .await;
            if let Ok(channels) = channels {
                state.note_head(&light);
                state.channels.set(channels.value);
            }
        });
    }

    /// Reads every provider with proofs.
    pub fn refresh_market(&self) {
        let state = *self;
        leptos::task::spawn_local(async move {
            let Some(light) = state.light() else { return };
            let read = state
                .ask(async |control, relay| ledger_client::providers(&light, control, relay).await)
                .await;
            match read {
                Ok(verified) => {
                    state.note_head(&light);
                    // Every provider's relay is a relay the app can read from and run jobs on.
                    for (_, provider) in &verified.value {
                        for addr in &provider.offer.addrs {
                            state.network.discover_relay(addr);
                        }
                    }
                    state.providers.set(Some(verified));
                }
                Err(LedgerClientError::NoBlockYet) => {}
                Err(e) => state.problem.set(Some(e.to_string())),
            }
        });
    }

    /// Reads governance with proofs: parameters, treasury, proposals and `me`'s power and votes.
    pub fn refresh_dao(&self, me: Option<PublicKey>) {
        let state = *self;
        leptos::task::spawn_local(async move {
            let Some(light) = state.light() else { return };
            let read = state
                .ask(async |control, relay| ledger_client::dao(&light, control, relay, me).await)
                .await;
            match read {
                Ok(verified) => {
                    state.note_head(&light);
                    state.dao.set(Some(verified));
                }
                Err(LedgerClientError::NoBlockYet) => {}
                Err(e) => state.problem.set(Some(e.to_string())),
            }
        });
    }

    /// The parameters in force: the latest verified ones, else the genesis'.
    pub fn params(&self) -> Option<Params> {
        self.dao
            .get_untracked()
            .map(|d| d.value.params)
            .or_else(|| self.genesis.get_untracked().map(|g| g.params))
    }

    /// Signs `kind` with `keypair`, submits it at the minimum fee and waits for its block,
    /// showing progress; then re-reads the account and the market.
    pub fn transact(&self, keypair: Keypair, kind: TxKind, what: String) {
        let state = *self;
        leptos::task::spawn_local(async move {
            let (Some(light), Some(genesis)) = (state.light(), state.genesis.get_untracked())
            else {
                state.progress.set(Some(TxProgress::Failed(
                    "the ledger is not available".into(),
                )));
                return;
            };
            let params = state.params().unwrap_or_else(|| genesis.params.clone());
            let fee = min_fee_for(&params, &genesis.network_id, &kind);
            state
                .progress
                .set(Some(TxProgress::Working(format!("{what}: signing…"))));
            let (mut control, relay) = match state.relay().await {
                Ok(r) => r,
                Err(e) => {
                    state.progress.set(Some(TxProgress::Failed(e)));
                    return;
                }
            };
            let on_event = |event: TxEvent| {
                let line = match event {
                    TxEvent::Signed { tx } => {
                        format!("{what}: signed ({}…), sending…", &tx.to_string()[..12])
                    }
                    TxEvent::Pending { pending } => format!(
                        "{what}: in the relay's mempool ({pending} pending), waiting for a block…"
                    ),
                    TxEvent::StillPending { waits } => format!(
                        "{what}: no block has included it yet (the relay waited {waits} times); still pending, submitted again to keep waiting…"
                    ),
                    TxEvent::Included { height } => format!("{what}: included in block {height}"),
                };
                state.progress.set(Some(TxProgress::Working(line)));
            };
            let result = ledger_client::transact(
                &light,
                &mut control,
                relay,
                &keypair,
                kind,
                fee,
                &on_event,
            )
            .await;
            match result {
                Ok((_, height)) => {
                    state.progress.set(Some(TxProgress::Done(format!(
                        "{what}: included in block {height}, checked by proof; fee {}",
                        client_core::ledger::state::format_amount(fee)
                    ))));
                }
                Err(e) => state
                    .progress
                    .set(Some(TxProgress::Failed(format!("{what}: {e}")))),
            }
            state.refresh_account(keypair.public());
            state.refresh_market();
            if state.dao.get_untracked().is_some() {
                state.refresh_dao(Some(keypair.public()));
            }
        });
    }
}

/// The light client as this browser last left it for `genesis`, if it saved one that fits.
async fn restore_light(genesis: &Genesis) -> Option<LightClient> {
    let storage = client_core::storage::Storage::open().await.ok()?;
    let bytes = storage
        .light_state(&genesis.hash().to_string())
        .await
        .ok()??;
    let trusted: Trusted = client_core::encoding::decode(&bytes, MAX_LIGHT_STATE).ok()?;
    LightClient::restore(genesis, trusted).ok()
}

/// Saves the light client's latest verified header and sets, for the next page load.
async fn save_light(trusted: Trusted) {
    let Ok(storage) = client_core::storage::Storage::open().await else {
        return;
    };
    let bytes = client_core::encoding::encode(&trusted);
    let _ = storage
        .put_light_state(&trusted.genesis_hash.to_string(), &bytes)
        .await;
}

/// A saved light-client state is a header, a commit and two validator sets.
const MAX_LIGHT_STATE: usize = 256 * 1024;

//! The JavaScript API: `Wallet` (keys that stay in the page) and `Client` (a connection to one
//! relay of a network whose genesis the app pinned, verified jobs and proven reads).

use crate::convert::{
    AccountView, DaoInfo, JobResultView, OfferView, Proven, RefereeView, Verification,
    bytes_property, function_property, number_property, property, string_property, to_js,
};
use crate::error::{Kind, error, error_with_check};
use crate::referee::{self, Mode};
use client_core::browser::{self, Control, PeerConfig, PeerEvent, PeerHandle, PeerId, WorkerError};
use client_core::identity::{Keypair, PublicKey};
use client_core::job::history::Outcome;
use client_core::job::profile::JobForm;
use client_core::job_client::{self, Cancel, Engine, Order, RunEvent, Submitter};
use client_core::ledger::Genesis;
use client_core::ledger::light::{LightClient, Verified};
use client_core::ledger::state::{StateKey, StateValue};
use client_core::ledger_client::{self, LedgerClientError};
use client_core::referee_client::run_refereed;
use client_core::wallet::{
    ENTROPY_LEN, Entropy, KdfParams, SealRandomness, SealedWallet, Unlocked, WalletError,
};
use js_sys::Promise;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use zeroize::Zeroizing;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Every rejected promise of the SDK is an `AqueductError`. */
export interface AqueductError extends Error {
  name: "AqueductError";
  kind: "input" | "connection" | "genesis" | "wallet" | "ledger" | "job" | "verification" | "cancelled";
  /** For `job`, `verification` and `input` errors of a job: the step or check that failed. */
  check?: string;
  /** A refereed job whose two providers both lied: the proof against each. */
  fraud?: FraudReport[];
}

export interface AddRelayOptions {
  /** How long to wait for the relay's connection (default 30 000 ms). */
  timeoutMs?: number;
}

export interface ConnectOptions {
  /** The relay's HTTP address (`https://relay.example:8080`; default: this page's origin),
   *  or its webrtc-direct multiaddr (`/ip4/…/udp/…/webrtc-direct/certhash/…/p2p/…`). */
  relay?: string;
  /** The hash of the network's genesis, as its operators publish it (`node-relay` prints it).
   *  A relay presenting another genesis is refused: nothing it says is believed. */
  genesis: string;
  /** Called on every change of the connection and every round-trip probe. */
  onState?: (state: ConnectionState) => void;
  /** How long to wait for the first connection (default 30000). */
  timeoutMs?: number;
}

export interface ConnectionState {
  relay: string;
  state: "connecting" | "connected" | "disconnected";
  addr?: string;
  attempt?: number;
  dialMs?: number;
  rttMs?: number;
  connectedPeers?: number;
  reason?: string;
  retryInMs?: number;
}

export interface JobOptions {
  /** The job's WebAssembly module (Aqueduct job profile). */
  module: Uint8Array | ArrayBuffer;
  /** The job's input (a string is sent as UTF-8). */
  input?: Uint8Array | ArrayBuffer | string;
  /** The most fuel the relay may spend (default 1e9). */
  fuelLimit?: number;
  /** Step jobs: the most steps (default 1000). */
  maxSteps?: number;
  /** A name for the job, for your own records. */
  name?: string;
  /** Called as the job moves through its stages, including verification. */
  onProgress?: (progress: JobProgress) => void;
  /** Cancels the job. */
  signal?: AbortSignal;
  /** How the result is checked. `"self"`: in this page — re-executed, or sampled for long
   *  step jobs. `"refereed"`: a step job also goes to a second provider (another stake owner,
   *  on a relay added by `client.addRelay`, free or paid from one of the wallet's channels);
   *  where the two disagree, the page bisects their commitments and names the liar, with a
   *  fraud proof. One-shot jobs are re-executed in full in the page either way. `"auto"`
   *  (the default): refereed when a second provider can be used, else `"self"`. */
  verify?: "auto" | "self" | "refereed";
}

export interface JobProgress {
  stage: "preparing" | "submitting" | "uploading" | "running" | "verifying";
  detail: string;
  /** Fraction of the fuel limit used so far, per the relay's reports. */
  fraction?: number;
}

export interface Verification {
  method: "reexecuted" | "sampled" | "refereed";
  label: string;
  checks: string[];
  fuel?: number;
  checkpoints?: number;
  segments?: number;
  checked?: number;
  /** Sampled: the chance a relay faking 5% of the segments would have been caught. */
  caughtIfFaking5Percent?: number;
  verifyMs: number;
}

export interface JobResult {
  job: string;
  relay: string;
  module: string;
  output: Uint8Array;
  fuelUsed?: number;
  runMs: number;
  verification: Verification;
  /** Where the relay's provider charges: what this job paid, by a voucher on a channel. */
  paid?: Paid;
  /** Refereed jobs: the second provider, and what it was paid. */
  referee?: { provider: string; paid?: Paid };
  /** Refereed jobs whose providers disagreed: each provider proven to have lied. */
  fraud?: FraudReport[];
}

export interface Paid { amount: string; channel: string; cumulative: string; }

/** A provider that signed a false receipt, and the proof of it. */
export interface FraudReport {
  provider: string;
  /** The segment its receipt lied about (0: the initial state). */
  segment: number;
  why: string;
  /** The proof's size, and whether it fits a transaction. */
  bytes: number;
  fits: boolean;
  /** The encoded proof, for `client.submitFraudProof`. */
  proof: Uint8Array;
}

export interface SubmitFraudProofOptions extends TxOptions {
  proof: Uint8Array;
}

/** A slash as the ledger recorded it (amounts in units). */
export interface SlashView {
  provider: string; job: string; segment: number; amount: string; refund: string;
  customer: string; bounty: string; submitter: string; stakeLeft: string; height: number;
}

/** The fraud proof's transaction, included, and the slash read back with a proof. */
export interface FraudTxResult { tx: string; height: number; fee: string; slash: Proven<SlashView>; }

export interface TxOptions {
  /** Called as the transaction is signed, waits in the mempool and is included. */
  onProgress?: (progress: { stage: "signed" | "pending" | "included"; detail: string }) => void;
}

export interface OpenChannelOptions extends TxOptions {
  /** The provider's account id (`OfferView.provider`). */
  provider: string;
  /** Units to escrow (a decimal string, or a whole number). */
  amount: string | number;
}

/** A transaction included in a block; its inclusion was proven. */
export interface TxResult { tx: string; height: number; fee: string; channel?: string; }

/** A payment channel: escrow from a customer for one provider. `promised` is what this browser
 *  has promised by vouchers; `available` what is left to promise. */
export interface ChannelView {
  id: string; provider: string; deposit: string; settled: string; promised: string;
  available: string; expiresAtMs: number;
}

/** A value read with a Merkle proof against a block whose validator signatures were checked. */
export interface Proven<T> {
  value: T;
  height: number;
  stateRoot: string;
  timeMs: number;
  relay: string;
}

/** Amounts are decimal strings of base units (1 token = 1000000 units). */
export interface AccountView { account: string; balance: string; nonce: number; faucetUsed: boolean; }

export interface OfferView {
  provider: string; stake: string; pricePerMfuel: string; maxFuel: number; concurrency: number;
  levels: string[]; addrs: string[]; attributes: [string, string][];
  active: boolean; candidate: boolean; slashed: boolean;
}

export interface ProposalView {
  id: number; title: string; description: string; proposer: string;
  state: "pending" | "active" | "succeeded" | "defeated" | "queued" | "executed" | "canceled" | "expired";
  startHeight: number; endHeight: number; quorum: string;
  tally: { for: string; against: string; abstain: string };
}

export interface DaoInfo { treasury: string; maxJobTtlMs: number; proposals: ProposalView[]; }
"#;

/// Fresh randomness from the browser.
fn random<const N: usize>() -> Result<[u8; N], JsValue> {
    browser::random_bytes::<N>().map_err(|e| error(Kind::Input, e))
}

fn wallet_error(e: WalletError) -> JsValue {
    error(Kind::Wallet, e)
}

/// A wallet: the account key, derived from a 24-word recovery phrase, and the same key sealed
/// under a password (Argon2id, XChaCha20-Poly1305) for the app to store. The key stays in this
/// page's memory; it is wiped when the wallet is freed (`wallet.free()`).
#[wasm_bindgen]
pub struct Wallet {
    sealed: SealedWallet,
    unlocked: Unlocked,
}

#[wasm_bindgen(inline_js = "export function workerUrl() { \
    return new URL('../../worker.js', import.meta.url).href; }")]
extern "C" {
    /// The package's worker script. wasm-bindgen writes this snippet to
    /// `snippets/<crate>/inline0.js` in the package, two directories below `worker.js`
    /// (`cargo xtask sdk` checks that it is there).
    #[wasm_bindgen(js_name = workerUrl)]
    fn worker_url() -> String;

    /// `addRelay`'s options, optional as a whole.
    #[wasm_bindgen(typescript_type = "AddRelayOptions")]
    pub type AddRelayOptions;
}

/// Argon2id of `password` and `salt` under `kdf`: in the package's worker, or in the page
/// where no worker can be started (with a warning: the page's thread is held for a second).
async fn derive_key(
    kdf: KdfParams,
    password: &str,
    salt: [u8; 16],
) -> Result<Zeroizing<[u8; 32]>, JsValue> {
    kdf.check().map_err(wallet_error)?;
    match client_core::worker::derive_key(&worker_url(), kdf, password, salt).await {
        Ok(key) => Ok(key),
        Err(WorkerError::Unavailable(reason)) => {
            web_sys::console::warn_1(
                &format!("deriving the wallet key on the main thread: {reason}").into(),
            );
            kdf.derive(password, &salt).map_err(wallet_error)
        }
        Err(failed) => Err(wallet_error(WalletError::KeyDerivation {
            reason: failed.message(),
        })),
    }
}

impl Wallet {
    async fn seal(entropy: Entropy, password: &str) -> Result<Wallet, JsValue> {
        SealedWallet::check_password(password).map_err(wallet_error)?;
        let randomness = SealRandomness {
            salt: random()?,
            nonce: random()?,
        };
        let kdf = KdfParams::DEFAULT;
        let key = derive_key(kdf, password, randomness.salt).await?;
        let sealed =
            SealedWallet::seal_with_key(&entropy, &key, kdf, randomness).map_err(wallet_error)?;
        let keypair = entropy.keypair();
        Ok(Wallet {
            sealed,
            unlocked: Unlocked { entropy, keypair },
        })
    }

    pub(crate) fn keypair(&self) -> Keypair {
        self.unlocked.keypair.clone()
    }
}

#[wasm_bindgen]
impl Wallet {
    /// A new wallet with a fresh recovery phrase, sealed under `password` (at least 8
    /// characters). Sealing runs Argon2id with 64 MiB: about a second, in the package's worker.
    pub async fn create(password: String) -> Result<Wallet, JsValue> {
        Wallet::seal(Entropy::new(random::<ENTROPY_LEN>()?), &password).await
    }

    /// The wallet of a 24-word recovery phrase, sealed under a new `password`.
    pub async fn restore(phrase: String, password: String) -> Result<Wallet, JsValue> {
        let entropy = Entropy::from_phrase(&phrase).map_err(wallet_error)?;
        Wallet::seal(entropy, &password).await
    }

    /// Opens a sealed wallet (the text `wallet.backup()` returned) with its password.
    pub async fn unlock(backup: String, password: String) -> Result<Wallet, JsValue> {
        let sealed = SealedWallet::from_backup(&backup).map_err(wallet_error)?;
        let key = derive_key(sealed.kdf, &password, sealed.salt).await?;
        let unlocked = sealed.open_with_key(&key).map_err(wallet_error)?;
        Ok(Wallet { sealed, unlocked })
    }

    /// The account id (a libp2p peer id, `12D3KooW…`).
    #[wasm_bindgen(getter)]
    pub fn account(&self) -> String {
        self.sealed.account_id()
    }

    /// The sealed wallet as text, to store (e.g. in IndexedDB) or offer as a backup file:
    /// without the password it reveals only the account id.
    pub fn backup(&self) -> String {
        self.sealed.to_backup()
    }

    /// The 24 words that restore this wallet anywhere. Show them only when the user asks.
    #[wasm_bindgen(js_name = recoveryPhrase)]
    pub fn recovery_phrase(&self) -> String {
        self.unlocked.entropy.phrase().to_string()
    }
}

/// The connection state passed to `onState` listeners.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionState {
    relay: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dial_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connected_peers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_in_ms: Option<u64>,
}

impl ConnectionState {
    fn new(relay: PeerId) -> Self {
        ConnectionState {
            relay: relay.to_string(),
            state: "connecting",
            addr: None,
            attempt: None,
            dial_ms: None,
            rtt_ms: None,
            connected_peers: None,
            reason: None,
            retry_in_ms: None,
        }
    }

    fn apply(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Dialing { addr, attempt, .. } => {
                self.state = "connecting";
                self.addr = Some(addr);
                self.attempt = Some(attempt);
                self.retry_in_ms = None;
            }
            PeerEvent::Connected { addr, dial_ms, .. } => {
                self.state = "connected";
                self.addr = Some(addr);
                self.dial_ms = Some(dial_ms);
                self.reason = None;
                self.retry_in_ms = None;
            }
            PeerEvent::Probe { rtt_ms, status, .. } => {
                self.rtt_ms = Some(rtt_ms);
                self.connected_peers = Some(status.connected_peers);
            }
            PeerEvent::Disconnected {
                reason,
                retry_in_ms,
                ..
            } => {
                self.state = "disconnected";
                self.reason = Some(reason);
                self.retry_in_ms = Some(retry_in_ms);
                self.rtt_ms = None;
            }
        }
    }
}

/// `relay`'s genesis, if its hash is `pinned`; else a `genesis` error ending in `consequence`.
async fn pinned_genesis(
    control: &mut Control,
    relay: PeerId,
    pinned: &str,
    consequence: &str,
) -> Result<Genesis, JsValue> {
    let genesis = ledger_client::fetch_genesis(control, relay)
        .await
        .map_err(|e| error(Kind::Connection, format!("reading the genesis: {e}")))?;
    let hash = genesis.hash().to_string();
    if hash != pinned {
        return Err(error(
            Kind::Genesis,
            format!(
                "relay {relay} presents network {:?} with genesis {hash}, not the pinned \
                 {pinned}: {consequence}",
                genesis.network_id
            ),
        ));
    }
    Ok(genesis)
}

/// The connections (the client's relay first, then those added) and the listeners, shared
/// with the peer's event callback.
struct Connection {
    states: Vec<ConnectionState>,
    listeners: Vec<(u32, js_sys::Function)>,
    next_listener: u32,
}

fn event_relay(event: &PeerEvent) -> &PeerId {
    match event {
        PeerEvent::Dialing { relay, .. }
        | PeerEvent::Connected { relay, .. }
        | PeerEvent::Probe { relay, .. }
        | PeerEvent::Disconnected { relay, .. } => relay,
    }
}

impl Connection {
    fn event(this: &RefCell<Connection>, event: PeerEvent) {
        let relay = event_relay(&event).to_string();
        let (state, listeners) = {
            let mut c = this.borrow_mut();
            // Events of a relay removed since are dropped.
            let Some(state) = c.states.iter_mut().find(|s| s.relay == relay) else {
                return;
            };
            state.apply(event);
            (state.clone(), c.listeners.clone())
        };
        if listeners.is_empty() {
            return;
        }
        if let Ok(value) = to_js(&state) {
            for (_, listener) in listeners {
                // A listener that throws is the app's problem, not the connection's.
                let _ = listener.call1(&JsValue::NULL, &value);
            }
        }
    }

    fn state_of(&self, relay: &PeerId) -> Option<&ConnectionState> {
        let relay = relay.to_string();
        self.states.iter().find(|s| s.relay == relay)
    }

    /// Waits until `relay` is connected, for at most `timeout_ms`.
    async fn ready(
        this: &RefCell<Connection>,
        relay: &PeerId,
        timeout_ms: f64,
    ) -> Result<(), JsValue> {
        let start = browser::now_ms();
        loop {
            let (state, reason) = match this.borrow().state_of(relay) {
                Some(s) => (s.state, s.reason.clone()),
                None => ("removed", None),
            };
            if state == "connected" {
                return Ok(());
            }
            if state == "removed" {
                return Err(error(
                    Kind::Connection,
                    format!("relay {relay} was removed from this client"),
                ));
            }
            if browser::now_ms() - start > timeout_ms {
                return Err(error(
                    Kind::Connection,
                    format!(
                        "relay {relay} was not reached within {} s{}",
                        (timeout_ms / 1000.0).round(),
                        reason.map(|r| format!(": {r}")).unwrap_or_default()
                    ),
                ));
            }
            browser::pause(50).await;
        }
    }
}

/// How long a read or a job waits for a lost connection to come back.
const RECONNECT_WAIT_MS: f64 = 15_000.0;
/// How long a read waits for the network's first block.
const FIRST_BLOCK_WAIT_MS: f64 = 15_000.0;

pub(crate) struct Inner {
    handle: PeerHandle,
    pub(crate) relay: PeerId,
    pub(crate) genesis: Genesis,
    pub(crate) light: RefCell<LightClient>,
    connection: Rc<RefCell<Connection>>,
    /// The network's `max_job_ttl_ms`, once read with a proof.
    max_job_ttl_ms: Cell<Option<u64>>,
}

impl Inner {
    pub(crate) fn control(&self) -> Control {
        self.handle.control.clone()
    }

    /// A proven read, once the relay is connected; waits out "no block yet" for a while.
    pub(crate) async fn read<T>(
        &self,
        request: impl AsyncFn(
            &RefCell<LightClient>,
            &mut Control,
            PeerId,
        ) -> Result<T, LedgerClientError>,
    ) -> Result<T, JsValue> {
        let start = browser::now_ms();
        loop {
            Connection::ready(&self.connection, &self.relay, RECONNECT_WAIT_MS).await?;
            let mut control = self.control();
            match request(&self.light, &mut control, self.relay).await {
                Ok(value) => return Ok(value),
                Err(LedgerClientError::NoBlockYet)
                    if browser::now_ms() - start < FIRST_BLOCK_WAIT_MS =>
                {
                    browser::pause(250).await;
                }
                Err(e) => return Err(error(Kind::Ledger, e)),
            }
        }
    }

    /// Waits until the relay is connected (or gives up as a `connection` error).
    pub(crate) async fn wait_connected(&self) -> Result<(), JsValue> {
        Connection::ready(&self.connection, &self.relay, RECONNECT_WAIT_MS).await
    }

    /// The request lifetime the network allows: five minutes, or its `max_job_ttl_ms` if less.
    async fn job_ttl_ms(&self) -> Result<u64, JsValue> {
        if let Some(ttl) = self.max_job_ttl_ms.get() {
            return Ok(ttl.min(job_client::REQUEST_TTL_MS));
        }
        let verified = self
            .read(async |light, control, relay| {
                ledger_client::read(light, control, relay, vec![StateKey::Params]).await
            })
            .await?;
        let ttl = match verified.value.first() {
            Some(Some(StateValue::Params(p))) => p.max_job_ttl_ms,
            _ => job_client::REQUEST_TTL_MS,
        };
        self.max_job_ttl_ms.set(Some(ttl));
        Ok(ttl.min(job_client::REQUEST_TTL_MS))
    }

    /// Stops connecting to an added relay and forgets its state.
    fn forget(&self, relay: &PeerId) {
        self.handle.remove_relay(*relay);
        let text = relay.to_string();
        self.connection
            .borrow_mut()
            .states
            .retain(|s| s.relay != text);
    }

    /// The added relays that are connected now.
    pub(crate) fn connected_others(&self) -> Vec<PeerId> {
        let c = self.connection.borrow();
        c.states
            .iter()
            .skip(1)
            .filter(|s| s.state == "connected")
            .filter_map(|s| s.relay.parse().ok())
            .collect()
    }

    pub(crate) fn relay_text(&self) -> String {
        self.relay.to_string()
    }
}

/// A connection to a relay of one network: verified jobs and proven ledger reads.
#[wasm_bindgen]
pub struct Client {
    pub(crate) inner: Rc<Inner>,
}

impl Client {
    /// A proven read about `account` (a peer id or 64 hex digits), shown by `view`.
    pub(crate) fn proven_about<T: 'static, V: Serialize>(
        &self,
        account: &str,
        read: impl AsyncFn(
            &RefCell<LightClient>,
            &mut Control,
            PeerId,
            PublicKey,
        ) -> Result<Verified<T>, LedgerClientError>
        + 'static,
        view: impl FnOnce(&PublicKey, T) -> V + 'static,
    ) -> Promise {
        let who = match PublicKey::parse(account) {
            Ok(who) => who,
            Err(e) => return Promise::reject(&error(Kind::Input, e)),
        };
        let inner = self.inner.clone();
        future_to_promise(async move {
            let verified = inner
                .read(async |light, control, relay| read(light, control, relay, who).await)
                .await?;
            to_js(&Proven::of(verified, &inner.relay_text(), |value| {
                view(&who, value)
            }))
        })
    }
}

/// The relay's peer id and addresses from `relay` (an HTTP address or a multiaddr).
async fn relay_config(relay: &str) -> Result<PeerConfig, JsValue> {
    let relay = relay.trim();
    if relay.starts_with('/') {
        return PeerConfig::from_addr(relay).map_err(|e| error(Kind::Input, e));
    }
    let url = format!("{}/api/info", relay.trim_end_matches('/'));
    let info = browser::fetch_relay_info(&url)
        .await
        .map_err(|e| error(Kind::Connection, e))?;
    PeerConfig::from_info(&info).map_err(|e| error(Kind::Connection, e))
}

#[wasm_bindgen]
impl Client {
    /// Connects to a relay and checks that its network is the one whose genesis is pinned.
    pub async fn connect(
        #[wasm_bindgen(unchecked_param_type = "ConnectOptions")] options: JsValue,
    ) -> Result<Client, JsValue> {
        let pinned = string_property(&options, "genesis")?
            .map(|g| g.trim().to_ascii_lowercase())
            .filter(|g| !g.is_empty())
            .ok_or_else(|| {
                error(
                    Kind::Input,
                    "`genesis` is required: the hash of the network's genesis, as its operators \
                     publish it (node-relay prints it at start-up)",
                )
            })?;
        let relay_text = string_property(&options, "relay")?.unwrap_or_default();
        let on_state = function_property(&options, "onState")?;
        let timeout_ms = number_property(&options, "timeoutMs")?.unwrap_or(30_000) as f64;
        let config = relay_config(&relay_text).await?;
        let relay = config.relay;
        let connection = Rc::new(RefCell::new(Connection {
            states: vec![ConnectionState::new(relay)],
            listeners: on_state.into_iter().map(|f| (0, f)).collect(),
            next_listener: 1,
        }));
        let events = connection.clone();
        let handle = browser::spawn(
            config,
            Rc::new(move |event| Connection::event(&events, event)),
        )
        .map_err(|e| error(Kind::Connection, e))?;
        Connection::ready(&connection, &relay, timeout_ms).await?;
        let mut control = handle.control.clone();
        let genesis = pinned_genesis(&mut control, relay, &pinned, "nothing it says is believed")
            .await
            .inspect_err(|_| handle.remove_relay(relay))?;
        let light = RefCell::new(LightClient::new(&genesis));
        Ok(Client {
            inner: Rc::new(Inner {
                handle,
                relay,
                genesis,
                light,
                connection,
                max_job_ttl_ms: Cell::new(None),
            }),
        })
    }

    /// The relay's peer id.
    #[wasm_bindgen(getter)]
    pub fn relay(&self) -> String {
        self.inner.relay_text()
    }

    /// The network's id (from its genesis).
    #[wasm_bindgen(getter, js_name = networkId)]
    pub fn network_id(&self) -> String {
        self.inner.genesis.network_id.clone()
    }

    /// The pinned genesis hash the relay matched.
    #[wasm_bindgen(getter)]
    pub fn genesis(&self) -> String {
        self.inner.genesis.hash().to_string()
    }

    /// The connection to the client's relay as it stands now.
    #[wasm_bindgen(unchecked_return_type = "ConnectionState")]
    pub fn state(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.connection.borrow().states.first())
    }

    /// Every relay's connection: the client's relay first, then those added by `addRelay`.
    #[wasm_bindgen(unchecked_return_type = "ConnectionState[]")]
    pub fn connections(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.connection.borrow().states)
    }

    /// Connects to another relay of the same network (its genesis must be the pinned one) and
    /// resolves with its peer id. Jobs stay on the client's relay and reads are proven through
    /// it; an added relay's provider is a second provider for refereed jobs (`runJob`'s
    /// `verify`). `onState` listeners hear its connection too.
    #[wasm_bindgen(js_name = addRelay, unchecked_return_type = "Promise<string>")]
    pub fn add_relay(&self, relay: String, options: Option<AddRelayOptions>) -> Promise {
        let inner = self.inner.clone();
        let options = options.map_or(JsValue::UNDEFINED, JsValue::from);
        future_to_promise(async move {
            let timeout_ms = number_property(&options, "timeoutMs")?.unwrap_or(30_000) as f64;
            let config = relay_config(&relay).await?;
            let peer = config.relay;
            {
                let mut c = inner.connection.borrow_mut();
                if c.state_of(&peer).is_some() {
                    return Err(error(
                        Kind::Input,
                        format!("relay {peer} is already one of this client's relays"),
                    ));
                }
                c.states.push(ConnectionState::new(peer));
            }
            inner.handle.add_relay(config);
            let checked = async {
                Connection::ready(&inner.connection, &peer, timeout_ms).await?;
                let pinned = inner.genesis.hash().to_string();
                pinned_genesis(&mut inner.control(), peer, &pinned, "it is not added").await?;
                Ok(())
            }
            .await;
            match checked {
                Ok(()) => Ok(JsValue::from(peer.to_string())),
                Err(e) => {
                    inner.forget(&peer);
                    Err(e)
                }
            }
        })
    }

    /// Closes the connection to a relay added by `addRelay` (its peer id).
    #[wasm_bindgen(js_name = removeRelay)]
    pub fn remove_relay(&self, relay: String) -> Result<(), JsValue> {
        let peer: PeerId = relay
            .trim()
            .parse()
            .map_err(|_| error(Kind::Input, format!("{relay:?} is not a peer id")))?;
        if peer == self.inner.relay {
            return Err(error(
                Kind::Input,
                "the client's own relay cannot be removed: connect a new client instead",
            ));
        }
        if self.inner.connection.borrow().state_of(&peer).is_none() {
            return Err(error(
                Kind::Input,
                format!("relay {peer} is not one of this client's relays"),
            ));
        }
        self.inner.forget(&peer);
        Ok(())
    }

    /// Calls `listener` on every change of the connection; returns an id for `unsubscribe`.
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: ConnectionState) => void")]
        listener: js_sys::Function,
    ) -> u32 {
        let mut c = self.inner.connection.borrow_mut();
        let id = c.next_listener;
        c.next_listener += 1;
        c.listeners.push((id, listener));
        id
    }

    /// Stops calling the listener `id` returned by `subscribe`.
    pub fn unsubscribe(&self, id: u32) {
        self.inner
            .connection
            .borrow_mut()
            .listeners
            .retain(|(i, _)| *i != id);
    }

    /// Runs a job signed by `wallet` on the relay and resolves with the result once it is
    /// verified in this page (the receipt's signature and the computation: re-executed,
    /// sampled or refereed — `result.verification` says which and how strongly). A result that
    /// fails verification rejects with an `AqueductError` of kind `verification`.
    #[wasm_bindgen(js_name = runJob, unchecked_return_type = "Promise<JobResult>")]
    pub fn run_job(
        &self,
        wallet: &Wallet,
        #[wasm_bindgen(unchecked_param_type = "JobOptions")] options: JsValue,
    ) -> Promise {
        let order = match job_order(&options) {
            Ok(order) => order,
            Err(e) => return Promise::reject(&e),
        };
        let (on_progress, cancel, mode) = match (
            function_property(&options, "onProgress"),
            abort_signal(&options),
            referee::mode(&options),
        ) {
            (Ok(f), Ok(cancel), Ok(mode)) => (f, cancel, mode),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Promise::reject(&e),
        };
        let inner = self.inner.clone();
        let keypair = wallet.keypair();
        future_to_promise(async move {
            let ttl_ms = inner.job_ttl_ms().await?;
            inner.wait_connected().await?;
            let order = Order { ttl_ms, ..order };
            let worker = worker_url();
            // Off the page's main thread, unless no worker can be started.
            let engine = Engine::WorkerElseHere(&worker, client_core::job::profile::prepare);
            let offers = inner
                .read(async |light, control, relay| {
                    ledger_client::providers(light, control, relay).await
                })
                .await?
                .value;
            // Paid from the wallet's channel to the relay's provider, where its offer charges.
            let (order, promised) = crate::pay::pay(&inner, &keypair, order, &offers).await?;
            // Refereeing is for step jobs: a one-shot job is re-executed in full here anyway.
            let plan = match mode {
                Mode::Here => None,
                Mode::Auto if inner.connected_others().is_empty() => None,
                Mode::Auto | Mode::Refereed => {
                    let steps = engine
                        .prepare(&order.module)
                        .await
                        .is_ok_and(|p| p.form == JobForm::Steps);
                    match steps {
                        false => None,
                        true => {
                            match referee::plan(&inner, &keypair, &offers, order.fuel_limit).await {
                                Ok(plan) => Some(plan),
                                Err(_) if mode == Mode::Auto => None,
                                Err(e) => {
                                    if let Some(p) = &promised {
                                        p.take_back();
                                    }
                                    return Err(e);
                                }
                            }
                        }
                    }
                }
            };
            let nonce = u64::from_le_bytes(random()?);
            let second_nonce = u64::from_le_bytes(random()?);
            let fraction = Cell::new(None::<f64>);
            let on = |event: RunEvent| {
                let (stage, detail) = match event {
                    RunEvent::Stage { stage, detail } => (stage.label(), detail),
                    RunEvent::Progress(f) => {
                        fraction.set(Some(f));
                        return;
                    }
                    RunEvent::Output(_) => return,
                };
                if let Some(f) = &on_progress {
                    let progress = JobProgressView {
                        stage,
                        detail,
                        fraction: fraction.get(),
                    };
                    if let Ok(value) = to_js(&progress) {
                        let _ = f.call1(&JsValue::NULL, &value);
                    }
                }
            };
            let network_id = inner.genesis.network_id.clone();
            let submitter = Submitter {
                keypair: &keypair,
                network_id: &network_id,
                control: inner.control(),
                relay: inner.relay,
                engine,
            };
            let now = js_sys::Date::now() as u64;
            let (record, second, fraud) = match plan {
                Some(plan) => {
                    let relay = plan.second.relay;
                    let ran = run_refereed(
                        submitter,
                        order,
                        plan.second,
                        now,
                        [nonce, second_nonce],
                        &cancel,
                        &on,
                    )
                    .await;
                    (ran.record, Some((relay, plan.promised)), ran.fraud)
                }
                None => {
                    let record = job_client::run(submitter, order, now, nonce, &cancel, &on).await;
                    (record, None, Vec::new())
                }
            };
            let fuel_used = record.fuel_used();
            let failed_check = match &record.outcome {
                Outcome::Failed { check, .. } => Some(check.as_str()),
                _ => None,
            };
            let paid = promised.as_ref().and_then(|p| p.after(failed_check));
            let referee = second.map(|(relay, promised)| RefereeView {
                provider: relay.to_string(),
                paid: promised.as_ref().and_then(|p| p.after(failed_check)),
            });
            match record.outcome {
                Outcome::Verified {
                    output,
                    checks,
                    level,
                    run_ms,
                    verify_ms,
                    ..
                } => {
                    let view = JobResultView {
                        job: record.base.job.to_string(),
                        relay: record.base.relay,
                        module: record.base.module.to_string(),
                        fuel_used,
                        run_ms,
                        verification: Verification::new(&level, checks, verify_ms),
                        paid,
                        referee,
                    };
                    let value = to_js(&view)?;
                    let bytes = js_sys::Uint8Array::from(output.as_slice());
                    js_sys::Reflect::set(&value, &"output".into(), &bytes)?;
                    if !fraud.is_empty() {
                        let fraud = referee::fraud_views(&fraud)?;
                        js_sys::Reflect::set(&value, &"fraud".into(), &fraud)?;
                    }
                    Ok(value)
                }
                Outcome::Failed { check, reason } => {
                    let kind = match check.as_str() {
                        "module" | "input" => Kind::Input,
                        job_client::PAYMENT_REFUSED | job_client::NOT_CHARGED | "execution" => {
                            Kind::Job
                        }
                        _ => Kind::Verification,
                    };
                    let e = error_with_check(kind, format!("{check}: {reason}"), Some(&check));
                    if !fraud.is_empty() {
                        let fraud = referee::fraud_views(&fraud)?;
                        js_sys::Reflect::set(&e, &"fraud".into(), &fraud)?;
                    }
                    Err(e)
                }
                Outcome::Cancelled => Err(error(Kind::Cancelled, "the job was cancelled")),
            }
        })
    }

    /// An account's balance and nonce, proven (`account` is a peer id or 64 hex digits).
    #[wasm_bindgen(unchecked_return_type = "Promise<Proven<AccountView>>")]
    pub fn account(&self, account: String) -> Promise {
        self.proven_about(
            &account,
            async |light, control, relay, who| {
                ledger_client::account(light, control, relay, who).await
            },
            AccountView::new,
        )
    }

    /// Every registered provider and its offer, proven.
    #[wasm_bindgen(unchecked_return_type = "Promise<Proven<OfferView[]>>")]
    pub fn offers(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let verified = inner
                .read(async |light, control, relay| {
                    ledger_client::providers(light, control, relay).await
                })
                .await?;
            to_js(&Proven::of(verified, &inner.relay_text(), |list| {
                list.into_iter()
                    .map(|(key, p)| OfferView::new(&key, p))
                    .collect::<Vec<_>>()
            }))
        })
    }

    /// The DAO's treasury and newest proposals with their tallies, proven.
    #[wasm_bindgen(unchecked_return_type = "Promise<Proven<DaoInfo>>")]
    pub fn proposals(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let verified = inner
                .read(async |light, control, relay| {
                    ledger_client::dao(light, control, relay, None).await
                })
                .await?;
            to_js(&Proven::of(verified, &inner.relay_text(), DaoInfo::new))
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobProgressView {
    stage: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fraction: Option<f64>,
}

/// The order `options` describe (its lifetime is set once the network's limit is known).
fn job_order(options: &JsValue) -> Result<Order, JsValue> {
    let module = bytes_property(options, "module")?
        .ok_or_else(|| error(Kind::Input, "`module` is required: the job's WebAssembly"))?;
    let input = bytes_property(options, "input")?.unwrap_or_default();
    let fuel_limit = number_property(options, "fuelLimit")?.unwrap_or(1_000_000_000);
    if fuel_limit == 0 {
        return Err(error(Kind::Input, "`fuelLimit` must be at least 1"));
    }
    let max_steps = number_property(options, "maxSteps")?.unwrap_or(1000);
    let max_steps = u32::try_from(max_steps)
        .ok()
        .filter(|s| (1..=client_core::job::exec::MAX_STEPS).contains(s))
        .ok_or_else(|| {
            error(
                Kind::Input,
                format!(
                    "`maxSteps` must be from 1 to {}",
                    client_core::job::exec::MAX_STEPS
                ),
            )
        })?;
    let name = string_property(options, "name")?.unwrap_or_else(|| "sdk job".into());
    Ok(Order {
        name,
        module,
        input,
        fuel_limit,
        max_steps,
        payment: None,
        price: 0,
        ttl_ms: job_client::REQUEST_TTL_MS,
    })
}

/// A `Cancel` tied to the options' `signal` (an `AbortSignal`), if any.
fn abort_signal(options: &JsValue) -> Result<Cancel, JsValue> {
    let cancel = Cancel::new();
    let Some(signal) = property(options, "signal") else {
        return Ok(cancel);
    };
    if property(&signal, "aborted").and_then(|a| a.as_bool()) == Some(true) {
        cancel.cancel();
        return Ok(cancel);
    }
    let add = function_property(&signal, "addEventListener")?
        .ok_or_else(|| error(Kind::Input, "`signal` must be an AbortSignal"))?;
    let on_abort = cancel.clone();
    let listener = Closure::once_into_js(move || on_abort.cancel());
    add.call2(&signal, &"abort".into(), &listener)?;
    Ok(cancel)
}

/// The account id (`12D3KooW…`) of an ed25519 public key written as 64 hex digits.
#[wasm_bindgen(js_name = accountId)]
pub fn account_id_of(key: String) -> Result<String, JsValue> {
    PublicKey::parse(&key)
        .map(|k| k.account_id())
        .map_err(|e| error(Kind::Input, e))
}

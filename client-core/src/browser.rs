//! The browser peer (wasm32 only): dials relays over libp2p webrtc-direct, keeps a status
//! stream open to measure round trips and notice a dead relay, and reconnects with backoff.
//!
//! This is a thin shell around the pure core: it owns the clock (`performance.now()`), the
//! randomness for backoff jitter (`Math.random()`), the swarm and the timers, and reports what
//! happens as [`PeerEvent`]s to a callback supplied by the UI.
//!
//! Two transport facts shape it (see the project's notes on the libp2p stack):
//! - the relay never opens streams toward us, so *we* open the status stream, and liveness is
//!   judged from its probes rather than from libp2p ping;
//! - the swarm lives as long as the page: it is moved into a task that never ends, because
//!   dropping it would free callbacks that WebRTC still invokes.

use crate::backoff;
use crate::encoding::{decode, encode};
use crate::protocol::{
    MAX_STATUS_FRAME, RelayInfo, RelayStatus, STATUS_PROTOCOL, StatusRequest, StatusResponse,
};
use crate::relay_addr::{AddrError, parse_relay_addr};
use crate::wire::{read_frame, write_frame};
use futures::StreamExt;
use futures::channel::mpsc;
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;
use gloo_timers::future::TimeoutFuture;
pub use libp2p::PeerId;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, StreamProtocol, Swarm};
pub use libp2p_stream::Control;
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Errors of the browser shell, with the reason in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("could not reach {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the relay's info at {url} is not valid: {reason}")]
    BadInfo { url: String, reason: String },
    #[error("no usable WebRTC address: {reason}")]
    NoAddress { reason: String },
    #[error("could not start the network: {reason}")]
    Setup { reason: String },
}

/// What the peer reports to the UI. Every event names the relay it is about.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A connection attempt started.
    Dialing {
        relay: PeerId,
        addr: String,
        attempt: u32,
    },
    /// The WebRTC connection is up, the relay proved its peer id in the handshake, and the
    /// status stream is open (so the connection carries streams).
    Connected {
        relay: PeerId,
        addr: String,
        dial_ms: f64,
    },
    /// A probe came back.
    Probe {
        relay: PeerId,
        rtt_ms: f64,
        status: RelayStatus,
    },
    /// The connection failed or was lost; the next attempt is scheduled.
    Disconnected {
        relay: PeerId,
        reason: String,
        retry_in_ms: u64,
    },
}

/// How the peer reaches one relay.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The relay's peer id, which every address names.
    pub relay: PeerId,
    /// The relay's webrtc-direct multiaddrs, tried in turn.
    pub addrs: Vec<Multiaddr>,
    /// Pause between probes on the status stream.
    pub probe_interval_ms: u32,
    /// A probe (or the opening of the status stream) slower than this counts as a lost relay.
    pub probe_timeout_ms: u32,
}

impl PeerConfig {
    fn with_addrs(relay: PeerId, addrs: Vec<Multiaddr>) -> Self {
        PeerConfig {
            relay,
            addrs,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 3_000,
        }
    }

    /// Parses the addresses of a relay's `/api/info`.
    pub fn from_info(info: &RelayInfo) -> Result<Self, PeerError> {
        let parsed: Vec<(PeerId, Multiaddr)> = info
            .webrtc
            .iter()
            .filter_map(|a| parse_relay_addr(a).ok())
            .collect();
        let Some((relay, _)) = parsed.first() else {
            return Err(PeerError::NoAddress {
                reason: format!("the relay announced {:?}", info.webrtc),
            });
        };
        let relay = *relay;
        let addrs = parsed
            .into_iter()
            .filter(|(peer, _)| *peer == relay)
            .map(|(_, addr)| addr)
            .collect();
        Ok(Self::with_addrs(relay, addrs))
    }

    /// One address typed or pasted by a person.
    pub fn from_addr(text: &str) -> Result<Self, AddrError> {
        let (relay, addr) = parse_relay_addr(text)?;
        Ok(Self::with_addrs(relay, vec![addr]))
    }
}

/// Milliseconds since the page's navigation started (`performance.now()`).
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Waits `ms` milliseconds without blocking the page; `pause(0)` lets it paint before a long
/// synchronous piece of work (such as deriving a key) starts.
pub async fn pause(ms: u32) {
    TimeoutFuture::new(ms).await;
}

/// Fresh bytes from the browser's CSPRNG (`crypto.getRandomValues`).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], PeerError> {
    let mut bytes = [0u8; N];
    let crypto = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .ok_or_else(|| PeerError::Setup {
            reason: "this browser has no crypto.getRandomValues".into(),
        })?;
    crypto
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(|e| PeerError::Setup {
            reason: format!("crypto.getRandomValues failed: {}", js_error(&e)),
        })?;
    Ok(bytes)
}

/// Records a User Timing mark, visible in devtools and read by the end-to-end benchmark.
pub fn mark(name: &str) {
    if let Some(perf) = web_sys::window().and_then(|w| w.performance()) {
        let _ = perf.mark(name);
    }
}

/// Records a User Timing measure from `start_ms` to `end_ms`.
pub fn measure(name: &str, start_ms: f64, end_ms: f64) {
    let Some(perf) = web_sys::window().and_then(|w| w.performance()) else {
        return;
    };
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"start".into(), &start_ms.into());
    let _ = js_sys::Reflect::set(&options, &"end".into(), &end_ms.into());
    if let Ok(measure) = js_sys::Reflect::get(&perf, &"measure".into())
        && let Ok(measure) = measure.dyn_into::<js_sys::Function>()
    {
        let _ = measure.call2(&perf, &JsValue::from_str(name), &options);
    }
}

/// The serving relay's info: from the request the page's HTML started before the wasm loaded
/// (a promise of the response text in `window.aqueductRelayInfo`), or else fetched from `url`.
pub async fn serving_relay_info(url: &str) -> Result<RelayInfo, PeerError> {
    let early = web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &"aqueductRelayInfo".into()).ok())
        .and_then(|v| v.dyn_into::<js_sys::Promise>().ok());
    if let Some(promise) = early
        && let Ok(text) = JsFuture::from(promise).await
        && let Some(text) = text.as_string()
        && let Ok(info) = serde_json::from_str(&text)
    {
        return Ok(info);
    }
    fetch_relay_info(url).await
}

/// Fetches a relay's `/api/info` (for example `"/api/info"` on the relay that served the page).
pub async fn fetch_relay_info(url: &str) -> Result<RelayInfo, PeerError> {
    let fetch_err = |reason: String| PeerError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let window = web_sys::window().ok_or_else(|| fetch_err("no window".into()))?;
    let response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| fetch_err(js_error(&e)))?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| fetch_err("not an HTTP response".into()))?;
    if !response.ok() {
        return Err(fetch_err(format!("HTTP {}", response.status())));
    }
    let text = JsFuture::from(response.text().map_err(|e| fetch_err(js_error(&e)))?)
        .await
        .map_err(|e| fetch_err(js_error(&e)))?;
    let text = text.as_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| PeerError::BadInfo {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

/// The message of a JavaScript error (or whatever was thrown), for people.
pub fn js_error(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// What the page keeps of a running peer: a handle to open streams to relays, and to add or
/// drop relays.
#[derive(Clone)]
pub struct PeerHandle {
    pub control: libp2p_stream::Control,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Add(PeerConfig),
    Remove(PeerId),
}

impl PeerHandle {
    /// Starts connecting to another relay (and keeps reconnecting to it) alongside the others.
    pub fn add_relay(&self, config: PeerConfig) {
        let _ = self.commands.unbounded_send(Command::Add(config));
    }

    /// Stops connecting to `relay` and closes its connection.
    pub fn remove_relay(&self, relay: PeerId) {
        let _ = self.commands.unbounded_send(Command::Remove(relay));
    }
}

/// Builds the swarm and starts the peer's task, connecting to `first`. Events go to
/// `on_event` for the page's life.
///
/// The browser's network identity is a fresh key per page load; the wallet's key is not
/// needed to reach a relay, only to sign requests.
pub fn spawn(first: PeerConfig, on_event: Rc<dyn Fn(PeerEvent)>) -> Result<PeerHandle, PeerError> {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_wasm_bindgen()
        .with_other_transport(|key| {
            libp2p::webrtc_websys::Transport::new(libp2p::webrtc_websys::Config::new(key))
        })
        .map_err(|e| PeerError::Setup {
            reason: e.to_string(),
        })?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .map_err(|e| PeerError::Setup {
            reason: e.to_string(),
        })?
        // Our status streams keep connections in use; this only matters once they are gone.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let (commands, command_rx) = mpsc::unbounded();
    let handle = PeerHandle {
        control: swarm.behaviour().new_control(),
        commands,
    };
    handle.add_relay(first);
    wasm_bindgen_futures::spawn_local(run(swarm, command_rx, on_event));
    Ok(handle)
}

/// Names the address of the page's first dial to the page (`aqueductEarlyConnection.claim` in
/// `index.html`), which then hands that dial the WebRTC connection it started to the same
/// address while the wasm loaded. Returns when that connection started (ms since navigation),
/// or `None` if the page has none to this address.
fn claim_early_connection(addr: &Multiaddr) -> Option<f64> {
    let window = web_sys::window()?;
    let early = js_sys::Reflect::get(&window, &"aqueductEarlyConnection".into()).ok()?;
    let claim = js_sys::Reflect::get(&early, &"claim".into())
        .ok()?
        .dyn_into::<js_sys::Function>()
        .ok()?;
    claim.call1(&early, &addr.to_string().into()).ok()?.as_f64()
}

/// How long the page gives its status stream to be negotiated before it gives up the connection
/// for a fresh one.
const FIRST_STREAM_TIMEOUT_MS: u32 = 2_000;

/// Awaits `fut` for at most `ms`; `None` on timeout.
pub async fn within<F: Future>(ms: u32, fut: F) -> Option<F::Output> {
    match select(Box::pin(fut), TimeoutFuture::new(ms)).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// One relay the peer keeps a connection to.
struct Slot {
    config: PeerConfig,
    /// The connection the probes run on; probe tasks of older connections stop when it changes.
    current: Rc<Cell<Option<ConnectionId>>>,
    attempt: u32,
    dial_started: f64,
    /// A retry timer is running for this relay.
    retry_pending: bool,
}

type Retries = FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = PeerId>>>>;

async fn run(
    mut swarm: Swarm<libp2p_stream::Behaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    on_event: Rc<dyn Fn(PeerEvent)>,
) {
    let control = swarm.behaviour().new_control();
    let (lost_tx, mut lost_rx) = mpsc::unbounded::<(PeerId, ConnectionId, String)>();
    let mut slots: Vec<Slot> = Vec::new();
    let mut retries: Retries = FuturesUnordered::new();
    // The page-load marks are about the first relay's first connection.
    let mut first_connection = true;
    let first_dial = Cell::new(true);

    let dial = |swarm: &mut Swarm<libp2p_stream::Behaviour>,
                slot: &mut Slot,
                retries: &mut Retries,
                first_connection: bool| {
        let addr = slot.config.addrs[slot.attempt as usize % slot.config.addrs.len()].clone();
        // The page's first dial may take over the connection its HTML started early; that
        // connection's start is then this dial's start.
        let early_start = if first_dial.replace(false) {
            claim_early_connection(&addr)
        } else {
            None
        };
        slot.dial_started = early_start.unwrap_or_else(now_ms);
        if first_connection && early_start.is_none() {
            mark("aqueduct:dial");
        }
        on_event(PeerEvent::Dialing {
            relay: slot.config.relay,
            addr: addr.to_string(),
            attempt: slot.attempt,
        });
        if let Err(e) = swarm.dial(addr) {
            schedule_retry(slot, retries, e.to_string(), &*on_event);
        }
    };

    loop {
        futures::select! {
            command = commands.select_next_some() => match command {
                Command::Add(config) => {
                    if config.addrs.is_empty() || slots.iter().any(|s| s.config.relay == config.relay) {
                        continue;
                    }
                    slots.push(Slot {
                        config,
                        current: Rc::new(Cell::new(None)),
                        attempt: 0,
                        dial_started: 0.0,
                        retry_pending: false,
                    });
                    if let Some(slot) = slots.last_mut() {
                        dial(&mut swarm, slot, &mut retries, first_connection);
                    }
                }
                Command::Remove(relay) => {
                    if let Some(i) = slots.iter().position(|s| s.config.relay == relay) {
                        let slot = slots.remove(i);
                        slot.current.set(None);
                        let _ = swarm.disconnect_peer_id(relay);
                    }
                }
            },
            relay = retries.select_next_some() => {
                if let Some(slot) = slots.iter_mut().find(|s| s.config.relay == relay) {
                    slot.retry_pending = false;
                    if slot.current.get().is_none() {
                        dial(&mut swarm, slot, &mut retries, first_connection);
                    }
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                    let Some(slot) = slots.iter_mut().find(|s| s.config.relay == peer_id) else {
                        // A relay we no longer want (removed while dialing).
                        swarm.close_connection(connection_id);
                        continue;
                    };
                    if slot.current.get().is_some() {
                        // Already connected: a second connection is redundant.
                        swarm.close_connection(connection_id);
                        continue;
                    }
                    slot.current.set(Some(connection_id));
                    slot.attempt = 0;
                    let dial_ms = now_ms() - slot.dial_started;
                    if first_connection {
                        mark("aqueduct:connected");
                        first_connection = false;
                    }
                    let addr = match endpoint {
                        ConnectedPoint::Dialer { address, .. } => address.to_string(),
                        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.to_string(),
                    };
                    // `Connected` is reported once the status stream is open (see probe_loop).
                    wasm_bindgen_futures::spawn_local(probe_loop(
                        control.clone(),
                        Established { peer: peer_id, connection: connection_id, addr, dial_ms },
                        Rc::clone(&slot.current),
                        slot.config.clone(),
                        Rc::clone(&on_event),
                        lost_tx.clone(),
                    ));
                }
                SwarmEvent::ConnectionClosed { peer_id, connection_id, cause, .. } => {
                    if let Some(slot) = slots.iter_mut().find(|s| s.config.relay == peer_id)
                        && slot.current.get() == Some(connection_id)
                    {
                        slot.current.set(None);
                        let reason = cause.map(|c| c.to_string()).unwrap_or_else(|| "connection closed".into());
                        schedule_retry(slot, &mut retries, reason, &*on_event);
                    }
                }
                SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), error, .. } => {
                    if let Some(slot) = slots.iter_mut().find(|s| s.config.relay == peer_id)
                        && slot.current.get().is_none()
                        && !slot.retry_pending
                    {
                        schedule_retry(slot, &mut retries, error.to_string(), &*on_event);
                    }
                }
                _ => {}
            },
            lost = lost_rx.select_next_some() => {
                let (relay, connection_id, reason) = lost;
                if let Some(slot) = slots.iter_mut().find(|s| s.config.relay == relay)
                    && slot.current.get() == Some(connection_id)
                {
                    slot.current.set(None);
                    swarm.close_connection(connection_id);
                    schedule_retry(slot, &mut retries, reason, &*on_event);
                }
            }
        }
    }
}

fn schedule_retry(
    slot: &mut Slot,
    retries: &mut Retries,
    reason: String,
    on_event: &dyn Fn(PeerEvent),
) {
    let delay = backoff::delay_ms(slot.attempt, js_sys::Math::random());
    slot.attempt = slot.attempt.saturating_add(1);
    slot.retry_pending = true;
    let relay = slot.config.relay;
    on_event(PeerEvent::Disconnected {
        relay,
        reason,
        retry_in_ms: delay,
    });
    let ms = u32::try_from(delay).unwrap_or(u32::MAX);
    retries.push(Box::pin(async move {
        TimeoutFuture::new(ms).await;
        relay
    }));
}

/// A connection just established, as the probe loop reports it once its status stream is open.
struct Established {
    peer: PeerId,
    connection: ConnectionId,
    addr: String,
    dial_ms: f64,
}

async fn probe_loop(
    mut control: libp2p_stream::Control,
    established: Established,
    current: Rc<Cell<Option<ConnectionId>>>,
    config: PeerConfig,
    on_event: Rc<dyn Fn(PeerEvent)>,
    lost: mpsc::UnboundedSender<(PeerId, ConnectionId, String)>,
) {
    let Established {
        peer,
        connection,
        addr,
        dial_ms,
    } = established;
    let report = |reason: String| {
        let _ = lost.unbounded_send((peer, connection, reason));
    };
    // The relay's WebRTC stack can accept a data channel opened in the instant after the
    // handshake and never hand it on (README, protocol notes). Opening it again on the same
    // connection does not help: libp2p-stream opens one stream at a time per connection, and
    // the swallowed one holds that turn until its 10 s upgrade timeout, with every job or read
    // queued behind it. So a status stream not negotiated within a short bound (one round trip
    // on a working connection) ends this connection for a fresh one, and the relay counts as
    // connected only once its status stream is open: nothing is sent on a connection in that
    // state.
    let bound = config.probe_timeout_ms.min(FIRST_STREAM_TIMEOUT_MS);
    let protocol = StreamProtocol::new(STATUS_PROTOCOL);
    let mut stream = match within(bound, control.open_stream(peer, protocol)).await {
        Some(Ok(stream)) => stream,
        Some(Err(e)) => return report(format!("could not open the status stream: {e}")),
        None => {
            return report(format!(
                "the relay did not accept the status stream within {bound} ms"
            ));
        }
    };
    on_event(PeerEvent::Connected {
        relay: peer,
        addr,
        dial_ms,
    });
    let mut seq: u64 = 0;
    while current.get() == Some(connection) {
        seq += 1;
        let started = now_ms();
        let exchange = async {
            write_frame(&mut stream, &encode(&StatusRequest::Probe { seq }))
                .await
                .map_err(|e| format!("sending a probe failed: {e}"))?;
            let frame = read_frame(&mut stream, MAX_STATUS_FRAME)
                .await
                .map_err(|e| format!("reading a probe answer failed: {e}"))?
                .ok_or_else(|| "the relay closed the status stream".to_string())?;
            decode::<StatusResponse>(&frame, MAX_STATUS_FRAME)
                .map_err(|e| format!("the relay sent a bad probe answer: {e}"))
        };
        // A page busy with long synchronous work (re-executing a job) delays every timer and
        // event alike: when it is free again the deadline and the answer are both due. So a
        // missed deadline gets one more period, and only a probe still unanswered after that
        // counts as a lost relay.
        let mut exchange = Box::pin(exchange);
        let mut answer = None;
        for _ in 0..2 {
            match select(
                exchange.as_mut(),
                TimeoutFuture::new(config.probe_timeout_ms),
            )
            .await
            {
                Either::Left((result, _)) => {
                    answer = Some(result);
                    break;
                }
                Either::Right(_) => {}
            }
        }
        let answer = match answer {
            Some(Ok(answer)) => answer,
            Some(Err(reason)) => return report(reason),
            None => {
                return report(format!(
                    "no probe answer within {} ms",
                    2 * config.probe_timeout_ms
                ));
            }
        };
        let finished = now_ms();
        match answer {
            StatusResponse::Pong {
                seq: echoed,
                status,
            } if echoed == seq => {
                measure("aqueduct:rtt", started, finished);
                on_event(PeerEvent::Probe {
                    relay: peer,
                    rtt_ms: finished - started,
                    status,
                });
            }
            StatusResponse::Pong { seq: echoed, .. } => {
                return report(format!("probe answer for {echoed}, expected {seq}"));
            }
            StatusResponse::Error(e) => return report(format!("the relay refused: {e}")),
        }
        TimeoutFuture::new(config.probe_interval_ms).await;
    }
}

/// Why a worker gave no answer.
#[derive(Debug)]
pub enum WorkerError {
    /// It could not be started, went away or stalled: the work can be done in the page instead.
    Unavailable(String),
    /// It answered with an error (the message object it posted).
    Failed(JsValue),
}

impl WorkerError {
    /// The worker's `error` text (or why it could not answer).
    pub fn message(&self) -> String {
        match self {
            WorkerError::Unavailable(reason) => reason.clone(),
            WorkerError::Failed(message) => js_sys::Reflect::get(message, &"error".into())
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_else(|| "the worker failed".into()),
        }
    }
}

/// [`call_worker`] with `{kind, [field]: payload}`, where the worker answers bytes: the
/// payload is moved to the worker, and the result's bytes come back.
pub async fn call_worker_bytes(
    url: &str,
    kind: &str,
    field: &str,
    payload: &[u8],
    on_progress: &dyn Fn(JsValue),
    stall_ms: u32,
) -> Result<Vec<u8>, WorkerError> {
    let bytes = js_sys::Uint8Array::from(payload);
    let request = js_sys::Object::new();
    js_sys::Reflect::set(&request, &"kind".into(), &kind.into())
        .and_then(|_| js_sys::Reflect::set(&request, &field.into(), &bytes))
        .map_err(|e| WorkerError::Unavailable(js_error(&e)))?;
    let transfer = js_sys::Array::of1(&bytes.buffer());
    let result = call_worker(
        url,
        &request,
        &transfer,
        on_progress,
        stall_ms,
        WorkerLife::Resident,
    )
    .await?;
    result
        .dyn_into::<js_sys::Uint8Array>()
        .map(|bytes| bytes.to_vec())
        .map_err(|_| WorkerError::Unavailable("the worker's answer is not bytes".into()))
}

/// How long a worker is kept after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerLife {
    /// Started for this call and terminated after it, taking whatever memory it used (the
    /// wallet's key derivation: tens of MiB).
    OneCall,
    /// The page's resident worker for `url`, started by the first call and kept for the next
    /// ones while it answers them: no start-up (script and wasm) per call, and work still runs
    /// after the site's relay went away. A call made while it is busy gets a one-call worker.
    Resident,
}

thread_local! {
    /// The resident worker (see [`WorkerLife::Resident`]): its script's url and the worker,
    /// taken out of here while it works on a call.
    static RESIDENT: std::cell::RefCell<Option<(String, web_sys::Worker)>> =
        const { std::cell::RefCell::new(None) };
}

/// Asks a module worker at `url` to do one piece of work and waits for its answer.
///
/// The worker answers `request` with any number of `{progress}` messages (each handed to
/// `on_progress`), then one `{result}` or `{error}`. A worker silent for `stall_ms` is given
/// up. A one-call worker is terminated once it has answered; a resident one is kept if it
/// answered with a result, and terminated otherwise (its state after an error is not trusted).
pub async fn call_worker(
    url: &str,
    request: &JsValue,
    transfer: &js_sys::Array,
    on_progress: &dyn Fn(JsValue),
    stall_ms: u32,
    life: WorkerLife,
) -> Result<JsValue, WorkerError> {
    let unavailable = |e: &JsValue| WorkerError::Unavailable(js_error(e));
    let resident = match life {
        WorkerLife::OneCall => None,
        WorkerLife::Resident => RESIDENT.with(|r| {
            let mut slot = r.borrow_mut();
            match slot.take() {
                Some((script, worker)) if script == url => Some(worker),
                other => {
                    *slot = other;
                    None
                }
            }
        }),
    };
    let worker = match resident {
        Some(worker) => worker,
        None => {
            let options = web_sys::WorkerOptions::new();
            options.set_type(web_sys::WorkerType::Module);
            web_sys::Worker::new_with_options(url, &options).map_err(|e| unavailable(&e))?
        }
    };
    let (tx, mut rx) = mpsc::unbounded::<Result<JsValue, String>>();
    let on_message = {
        let tx = tx.clone();
        wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                let _ = tx.unbounded_send(Ok(event.data()));
            },
        )
    };
    let script = url.to_owned();
    let on_error = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::Event)>::new(
        move |event: web_sys::Event| {
            let reason = event
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("the worker {script} could not be started"));
            let _ = tx.unbounded_send(Err(reason));
        },
    );
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let answer = match worker.post_message_with_transfer(request, transfer) {
        Err(e) => Err(unavailable(&e)),
        Ok(()) => loop {
            let message = match within(stall_ms, rx.next()).await {
                None => {
                    break Err(WorkerError::Unavailable(format!(
                        "the worker said nothing for {} s",
                        stall_ms / 1000
                    )));
                }
                Some(None) => break Err(WorkerError::Unavailable("the worker went away".into())),
                Some(Some(Err(reason))) => break Err(WorkerError::Unavailable(reason)),
                Some(Some(Ok(message))) => message,
            };
            let field = |name: &str| {
                js_sys::Reflect::get(&message, &name.into())
                    .ok()
                    .filter(|v| !v.is_undefined())
            };
            if let Some(progress) = field("progress") {
                on_progress(progress);
            } else if let Some(result) = field("result") {
                break Ok(result);
            } else if field("error").is_some() {
                break Err(WorkerError::Failed(message));
            } else {
                break Err(WorkerError::Unavailable(
                    "the worker's answer has neither a result nor an error".into(),
                ));
            }
        },
    };
    worker.set_onmessage(None);
    worker.set_onerror(None);
    drop((on_message, on_error));
    let keep = life == WorkerLife::Resident && answer.is_ok();
    // Back to the slot, unless another call's worker took it meanwhile.
    let kept = keep
        && RESIDENT.with(|r| {
            let mut slot = r.borrow_mut();
            let empty = slot.is_none();
            if empty {
                *slot = Some((url.to_owned(), worker.clone()));
            }
            empty
        });
    if !kept {
        worker.terminate();
    }
    answer
}

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
use crate::wire::{read_frame, write_frame};
use futures::channel::mpsc;
use futures::future::{Either, FusedFuture, select};
use futures::{FutureExt, StreamExt};
use gloo_timers::future::TimeoutFuture;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
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

/// What the peer reports to the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A connection attempt started.
    Dialing { addr: String, attempt: u32 },
    /// The WebRTC connection is up and the relay proved its peer id in the handshake.
    Connected {
        peer_id: String,
        addr: String,
        dial_ms: f64,
    },
    /// A probe came back.
    Probe { rtt_ms: f64, status: RelayStatus },
    /// The connection failed or was lost; the next attempt is scheduled.
    Disconnected { reason: String, retry_in_ms: u64 },
}

/// How the peer behaves.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The relay's webrtc-direct multiaddrs, tried in turn.
    pub addrs: Vec<Multiaddr>,
    /// Pause between probes on the status stream.
    pub probe_interval_ms: u32,
    /// A probe (or the opening of the status stream) slower than this counts as a lost relay.
    pub probe_timeout_ms: u32,
}

impl PeerConfig {
    /// Parses the addresses of a relay's `/api/info`.
    pub fn from_info(info: &RelayInfo) -> Result<Self, PeerError> {
        let addrs: Vec<Multiaddr> = info.webrtc.iter().filter_map(|a| a.parse().ok()).collect();
        if addrs.is_empty() {
            return Err(PeerError::NoAddress {
                reason: format!("the relay announced {:?}", info.webrtc),
            });
        }
        Ok(PeerConfig {
            addrs,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 3_000,
        })
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

fn js_error(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// What the page keeps of a running peer: a handle to open streams to the relay.
#[derive(Clone)]
pub struct PeerHandle {
    pub control: libp2p_stream::Control,
    /// The relay's peer id, from its announced addresses.
    pub relay: Option<PeerId>,
}

/// Builds the swarm and starts the peer's task. Events go to `on_event` for the page's life.
///
/// The browser's network identity is a fresh key per page load for now; a wallet's key is
/// not needed to reach a relay, only to sign requests.
pub fn spawn(config: PeerConfig, on_event: Rc<dyn Fn(PeerEvent)>) -> Result<PeerHandle, PeerError> {
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
        // Our status stream keeps the connection in use; this only matters once it is gone.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let relay = config.addrs.iter().find_map(|a| {
        a.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
    });
    let handle = PeerHandle {
        control: swarm.behaviour().new_control(),
        relay,
    };
    wasm_bindgen_futures::spawn_local(run(swarm, config, on_event));
    Ok(handle)
}

/// Awaits `fut` for at most `ms`; `None` on timeout.
async fn within<F: Future>(ms: u32, fut: F) -> Option<F::Output> {
    match select(Box::pin(fut), TimeoutFuture::new(ms)).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

async fn run(
    mut swarm: Swarm<libp2p_stream::Behaviour>,
    config: PeerConfig,
    on_event: Rc<dyn Fn(PeerEvent)>,
) {
    let control = swarm.behaviour().new_control();
    let (lost_tx, mut lost_rx) = mpsc::unbounded::<(ConnectionId, String)>();
    // The connection the probes run on; probe tasks of older connections stop when it changes.
    let current: Rc<Cell<Option<ConnectionId>>> = Rc::new(Cell::new(None));
    let mut attempt: u32 = 0;
    let mut dial_started = 0.0;
    let mut first_connection = true;
    let mut retry = TimeoutFuture::new(0).fuse();

    loop {
        futures::select! {
            () = retry => {
                let addr = config.addrs[attempt as usize % config.addrs.len()].clone();
                dial_started = now_ms();
                if first_connection {
                    mark("aqueduct:dial");
                }
                on_event(PeerEvent::Dialing { addr: addr.to_string(), attempt });
                if let Err(e) = swarm.dial(addr) {
                    retry = schedule_retry(&mut attempt, e.to_string(), &*on_event);
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                    if current.get().is_some() {
                        // Already connected: a second connection is redundant.
                        swarm.close_connection(connection_id);
                        continue;
                    }
                    current.set(Some(connection_id));
                    attempt = 0;
                    let dial_ms = now_ms() - dial_started;
                    if first_connection {
                        mark("aqueduct:connected");
                        first_connection = false;
                    }
                    let addr = match endpoint {
                        ConnectedPoint::Dialer { address, .. } => address.to_string(),
                        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.to_string(),
                    };
                    on_event(PeerEvent::Connected { peer_id: peer_id.to_string(), addr, dial_ms });
                    wasm_bindgen_futures::spawn_local(probe_loop(
                        control.clone(),
                        peer_id,
                        connection_id,
                        Rc::clone(&current),
                        config.clone(),
                        Rc::clone(&on_event),
                        lost_tx.clone(),
                    ));
                }
                SwarmEvent::ConnectionClosed { connection_id, cause, .. }
                    if current.get() == Some(connection_id) =>
                {
                    current.set(None);
                    let reason = cause.map(|c| c.to_string()).unwrap_or_else(|| "connection closed".into());
                    retry = schedule_retry(&mut attempt, reason, &*on_event);
                }
                SwarmEvent::OutgoingConnectionError { error, .. }
                    if current.get().is_none() && retry.is_terminated() =>
                {
                    retry = schedule_retry(&mut attempt, error.to_string(), &*on_event);
                }
                _ => {}
            },
            lost = lost_rx.select_next_some() => {
                let (connection_id, reason) = lost;
                if current.get() == Some(connection_id) {
                    current.set(None);
                    swarm.close_connection(connection_id);
                    retry = schedule_retry(&mut attempt, reason, &*on_event);
                }
            }
        }
    }
}

fn schedule_retry(
    attempt: &mut u32,
    reason: String,
    on_event: &dyn Fn(PeerEvent),
) -> futures::future::Fuse<TimeoutFuture> {
    let delay = backoff::delay_ms(*attempt, js_sys::Math::random());
    *attempt = attempt.saturating_add(1);
    on_event(PeerEvent::Disconnected {
        reason,
        retry_in_ms: delay,
    });
    TimeoutFuture::new(u32::try_from(delay).unwrap_or(u32::MAX)).fuse()
}

async fn probe_loop(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    connection: ConnectionId,
    current: Rc<Cell<Option<ConnectionId>>>,
    config: PeerConfig,
    on_event: Rc<dyn Fn(PeerEvent)>,
    lost: mpsc::UnboundedSender<(ConnectionId, String)>,
) {
    let report = |reason: String| {
        let _ = lost.unbounded_send((connection, reason));
    };
    let protocol = StreamProtocol::new(STATUS_PROTOCOL);
    let mut stream =
        match within(config.probe_timeout_ms, control.open_stream(peer, protocol)).await {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => return report(format!("could not open the status stream: {e}")),
            None => return report("the relay did not accept the status stream in time".into()),
        };
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

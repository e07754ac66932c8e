//! The app's connection to its relay, as signals the pages read.
//!
//! All network logic is in `client_core::browser`; this module only turns its events into
//! reactive state.

use client_core::browser::{self, PeerConfig, PeerEvent, PeerHandle};
use client_core::protocol::RelayStatus;
use client_core::stats::{RttSummary, RttWindow};
use leptos::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Asking the serving relay for its WebRTC address.
    Discovering,
    Connecting {
        attempt: u32,
    },
    Connected,
    Disconnected {
        reason: String,
        retry_in_ms: u64,
    },
    /// Cannot start at all (for example the relay's info is unreadable).
    Failed(String),
}

impl Phase {
    /// The short state name tests and people read.
    pub fn label(&self) -> &'static str {
        match self {
            Phase::Discovering => "discovering",
            Phase::Connecting { .. } => "connecting",
            Phase::Connected => "connected",
            Phase::Disconnected { .. } => "disconnected",
            Phase::Failed(_) => "failed",
        }
    }
}

/// One line of the connection log shown on the network page.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at_ms: f64,
    pub text: String,
}

const LOG_LINES: usize = 12;
const RTT_WINDOW: usize = 100;

#[derive(Clone, Copy)]
pub struct NetworkState {
    pub phase: RwSignal<Phase>,
    pub relay_peer_id: RwSignal<Option<String>>,
    pub relay_addr: RwSignal<Option<String>>,
    pub dial_ms: RwSignal<Option<f64>>,
    pub rtt: RwSignal<Option<RttSummary>>,
    pub status: RwSignal<Option<RelayStatus>>,
    pub log: RwSignal<VecDeque<LogLine>>,
    /// The network the serving relay belongs to (requests are signed for it).
    pub network_id: RwSignal<Option<String>>,
    /// Streams to the relay are opened through this, once the peer is started.
    pub peer: StoredValue<Option<PeerHandle>, LocalStorage>,
}

impl NetworkState {
    /// Creates the state and starts connecting to the relay that served this page.
    pub fn start() -> Self {
        let state = NetworkState {
            phase: RwSignal::new(Phase::Discovering),
            relay_peer_id: RwSignal::new(None),
            relay_addr: RwSignal::new(None),
            dial_ms: RwSignal::new(None),
            rtt: RwSignal::new(None),
            status: RwSignal::new(None),
            log: RwSignal::new(VecDeque::new()),
            network_id: RwSignal::new(None),
            peer: StoredValue::new_local(None),
        };
        leptos::task::spawn_local(state.connect());
        state
    }

    fn note(&self, text: String) {
        self.log.update(|log| {
            if log.len() == LOG_LINES {
                log.pop_back();
            }
            log.push_front(LogLine {
                at_ms: browser::now_ms(),
                text,
            });
        });
    }

    async fn connect(self) {
        self.note("asking the relay for its WebRTC address".into());
        let info = match browser::serving_relay_info("/api/info").await {
            Ok(info) => info,
            Err(e) => {
                self.note(e.to_string());
                self.phase.set(Phase::Failed(e.to_string()));
                return;
            }
        };
        browser::mark("aqueduct:info");
        let mut config = match PeerConfig::from_info(&info) {
            Ok(config) => config,
            Err(e) => {
                self.phase.set(Phase::Failed(e.to_string()));
                return;
            }
        };
        if let Some(ms) = query_u32("probe_ms") {
            // Faster probing, used by the benchmark to collect many samples quickly.
            config.probe_interval_ms = ms.clamp(5, 60_000);
        }
        self.relay_addr
            .set(config.addrs.first().map(ToString::to_string));
        let window = Rc::new(RefCell::new(RttWindow::new(RTT_WINDOW)));
        let on_event = move |event: PeerEvent| self.apply(event, &window);
        self.network_id.set(Some(info.network_id.clone()));
        match browser::spawn(config, Rc::new(on_event)) {
            Ok(handle) => self.peer.set_value(Some(handle)),
            Err(e) => self.phase.set(Phase::Failed(e.to_string())),
        }
    }

    fn apply(&self, event: PeerEvent, window: &RefCell<RttWindow>) {
        match event {
            PeerEvent::Dialing { addr, attempt } => {
                self.note(format!("dialing {addr}"));
                self.relay_addr.set(Some(addr));
                self.phase.set(Phase::Connecting { attempt });
            }
            PeerEvent::Connected {
                peer_id,
                addr,
                dial_ms,
            } => {
                self.note(format!(
                    "connected in {dial_ms:.0} ms; the relay proved it holds the key of {peer_id}"
                ));
                self.relay_peer_id.set(Some(peer_id));
                self.relay_addr.set(Some(addr));
                self.dial_ms.set(Some(dial_ms));
                self.phase.set(Phase::Connected);
            }
            PeerEvent::Probe { rtt_ms, status } => {
                let summary = {
                    let mut window = window.borrow_mut();
                    window.record(rtt_ms);
                    window.summary()
                };
                self.rtt.set(summary);
                if self.status.with_untracked(|s| s.as_ref() != Some(&status)) {
                    self.status.set(Some(status));
                }
            }
            PeerEvent::Disconnected {
                reason,
                retry_in_ms,
            } => {
                self.note(format!("{reason}; retrying in {retry_in_ms} ms"));
                self.phase.set(Phase::Disconnected {
                    reason,
                    retry_in_ms,
                });
            }
        }
    }
}

/// A numeric query parameter of the page's URL.
fn query_u32(name: &str) -> Option<u32> {
    let search = web_sys::window()?.location().search().ok()?;
    search
        .trim_start_matches('?')
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

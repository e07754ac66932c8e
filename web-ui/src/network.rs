//! The app's connection to its relay, as signals the pages read.
//!
//! All network logic is in `client_core::browser`; this module only turns its events into
//! reactive state.

use crate::widgets::local_storage;
use client_core::browser::{self, PeerConfig, PeerEvent, PeerHandle, PeerId};
use client_core::protocol::RelayStatus;
use client_core::stats::{RttSummary, RttWindow};
use futures::channel::oneshot;
use leptos::prelude::*;
use std::collections::{HashMap, VecDeque};
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
const ADDED_RELAYS_KEY: &str = "aqueduct.relays";

/// Where a relay in the list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The relay that served this page.
    Serving,
    /// Added by the user, by address (remembered in this browser).
    Added,
    /// Found in a provider's offer in the proven provider list.
    Discovered,
}

/// The most relays the app connects to on its own from the provider list.
const MAX_DISCOVERED: usize = 4;

/// One relay the app keeps a connection to.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayEntry {
    pub relay: PeerId,
    pub source: Source,
    pub addr: String,
    pub phase: Phase,
    pub dial_ms: Option<f64>,
    pub rtt: Option<RttSummary>,
    pub status: Option<RelayStatus>,
}

#[derive(Clone, Copy)]
pub struct NetworkState {
    /// The serving relay's connection (the network page is about it).
    pub phase: RwSignal<Phase>,
    pub relay_peer_id: RwSignal<Option<String>>,
    pub relay_addr: RwSignal<Option<String>>,
    pub dial_ms: RwSignal<Option<f64>>,
    pub rtt: RwSignal<Option<RttSummary>>,
    pub status: RwSignal<Option<RelayStatus>>,
    pub log: RwSignal<VecDeque<LogLine>>,
    /// The network the serving relay belongs to (requests are signed for it).
    pub network_id: RwSignal<Option<String>>,
    /// Every relay: the serving one first, then those the user added.
    pub relays: RwSignal<Vec<RelayEntry>>,
    /// Streams to relays are opened through this, once the peer is started.
    pub peer: StoredValue<Option<PeerHandle>, LocalStorage>,
    windows: StoredValue<HashMap<PeerId, RttWindow>, LocalStorage>,
    /// Told when the first attempt to reach the serving relay has ended, either way.
    first_attempt: StoredValue<Option<oneshot::Sender<()>>, LocalStorage>,
}

impl NetworkState {
    /// Creates the state and starts connecting to the relay that served this page. The
    /// receiver is told when that first attempt has ended (connected, failed or lost).
    pub fn start() -> (Self, oneshot::Receiver<()>) {
        let (first_attempt, ended) = oneshot::channel();
        let state = NetworkState {
            phase: RwSignal::new(Phase::Discovering),
            relay_peer_id: RwSignal::new(None),
            relay_addr: RwSignal::new(None),
            dial_ms: RwSignal::new(None),
            rtt: RwSignal::new(None),
            status: RwSignal::new(None),
            log: RwSignal::new(VecDeque::new()),
            network_id: RwSignal::new(None),
            relays: RwSignal::new(Vec::new()),
            peer: StoredValue::new_local(None),
            windows: StoredValue::new_local(HashMap::new()),
            first_attempt: StoredValue::new_local(Some(first_attempt)),
        };
        // Started before the app mounts (and so before Leptos sets up its task executor).
        wasm_bindgen_futures::spawn_local(state.connect());
        (state, ended)
    }

    /// The serving relay's connection has a new state; the first one after dialing ends the
    /// first attempt.
    fn set_phase(&self, phase: Phase) {
        if !matches!(phase, Phase::Discovering | Phase::Connecting { .. })
            && let Some(tx) = self.first_attempt.try_update_value(Option::take).flatten()
        {
            let _ = tx.send(());
        }
        self.phase.set(phase);
    }

    /// A relay was passed over for a ledger read, and why.
    pub fn note_failover(&self, relay: PeerId, why: &str) {
        self.note(format!("{relay}: {why}; asking another relay"));
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
                self.set_phase(Phase::Failed(e.to_string()));
                return;
            }
        };
        browser::mark("aqueduct:info");
        let mut config = match PeerConfig::from_info(&info) {
            Ok(config) => config,
            Err(e) => {
                self.set_phase(Phase::Failed(e.to_string()));
                return;
            }
        };
        if let Some(ms) = query_u32("probe_ms") {
            // Faster probing, used by the benchmark to collect many samples quickly.
            config.probe_interval_ms = ms.clamp(5, 2_000);
        }
        let addr = config
            .addrs
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        self.relay_addr.set(Some(addr.clone()));
        self.relays.set(vec![RelayEntry {
            relay: config.relay,
            source: Source::Serving,
            addr,
            phase: Phase::Connecting { attempt: 0 },
            dial_ms: None,
            rtt: None,
            status: None,
        }]);
        self.network_id.set(Some(info.network_id.clone()));
        let on_event = move |event: PeerEvent| self.apply(event);
        match browser::spawn(config, Rc::new(on_event)) {
            Ok(handle) => self.peer.set_value(Some(handle)),
            Err(e) => {
                self.set_phase(Phase::Failed(e.to_string()));
                return;
            }
        }
        // The relays added in earlier visits.
        for text in self.saved_relays() {
            if let Err(e) = self.add_relay(&text) {
                self.note(format!("a remembered relay address was skipped: {e}"));
            }
        }
    }

    fn saved_relays(&self) -> Vec<String> {
        local_storage()
            .and_then(|s| s.get_item(ADDED_RELAYS_KEY).ok().flatten())
            .map(|v| {
                v.lines()
                    .map(str::to_owned)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn save_relays(&self) {
        let added: Vec<String> = self.relays.with_untracked(|relays| {
            relays
                .iter()
                .filter(|r| r.source == Source::Added)
                .map(|r| r.addr.clone())
                .collect()
        });
        if let Some(s) = local_storage() {
            let _ = s.set_item(ADDED_RELAYS_KEY, &added.join("\n"));
        }
    }

    /// Adds a relay by address and starts connecting to it.
    pub fn add_relay(&self, text: &str) -> Result<(), String> {
        let config = PeerConfig::from_addr(text).map_err(|e| e.to_string())?;
        if self
            .relays
            .with_untracked(|r| r.iter().any(|e| e.relay == config.relay))
        {
            return Err(format!("relay {} is already in the list", config.relay));
        }
        let Some(handle) = self.peer.get_value() else {
            return Err("the network is not started yet; try again in a moment".into());
        };
        self.note(format!("added relay {}", config.relay));
        self.connect_relay(&handle, config, Source::Added, text);
        self.save_relays();
        Ok(())
    }

    /// Lists a relay and starts connecting to it.
    fn connect_relay(&self, handle: &PeerHandle, config: PeerConfig, source: Source, addr: &str) {
        self.relays.update(|relays| {
            relays.push(RelayEntry {
                relay: config.relay,
                source,
                addr: addr.trim().to_owned(),
                phase: Phase::Connecting { attempt: 0 },
                dial_ms: None,
                rtt: None,
                status: None,
            })
        });
        handle.add_relay(config);
    }

    /// Connects to a relay found in the proven provider list (at most [`MAX_DISCOVERED`]; not
    /// remembered: the list is read again on every visit). Returns whether it was added.
    pub fn discover_relay(&self, text: &str) -> bool {
        let Ok(config) = PeerConfig::from_addr(text) else {
            return false;
        };
        let (known, discovered) = self.relays.with_untracked(|r| {
            (
                r.iter().any(|e| e.relay == config.relay),
                r.iter().filter(|e| e.source == Source::Discovered).count(),
            )
        });
        if known || discovered >= MAX_DISCOVERED {
            return false;
        }
        let Some(handle) = self.peer.get_value() else {
            return false;
        };
        self.note(format!("found relay {} in the provider list", config.relay));
        self.connect_relay(&handle, config, Source::Discovered, text);
        true
    }

    /// The connected relays of this network, the serving relay first: where the ledger is read.
    pub fn ledger_relays(&self) -> Vec<PeerId> {
        let network = self.network_id.get_untracked();
        self.relays.with_untracked(|relays| {
            relays
                .iter()
                .filter(|r| {
                    r.phase == Phase::Connected
                        && r.status
                            .as_ref()
                            .is_none_or(|s| Some(&s.network_id) == network.as_ref())
                })
                .map(|r| r.relay)
                .collect()
        })
    }

    /// Forgets a relay the user added.
    pub fn remove_relay(&self, relay: PeerId) {
        self.relays
            .update(|r| r.retain(|e| e.relay != relay || e.source == Source::Serving));
        if let Some(handle) = self.peer.get_value() {
            handle.remove_relay(relay);
        }
        self.windows.update_value(|w| {
            w.remove(&relay);
        });
        self.save_relays();
    }

    /// Whether `peer` is one of the relays connected now.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.relays.with(|relays| {
            relays
                .iter()
                .any(|r| r.relay == *peer && r.phase == Phase::Connected)
        })
    }

    /// The relay jobs go to: the first connected relay of this network, in list order (so the
    /// serving relay while it is up, another one when it is not).
    pub fn job_relay(&self) -> Option<PeerId> {
        let network = self.network_id.get_untracked();
        self.relays.with_untracked(|relays| {
            relays
                .iter()
                .find(|r| {
                    r.phase == Phase::Connected
                        && r.status
                            .as_ref()
                            .is_none_or(|s| Some(&s.network_id) == network.as_ref())
                })
                .map(|r| r.relay)
        })
    }

    /// The header's word: connected when any relay is.
    pub fn overall(&self) -> &'static str {
        let any = self
            .relays
            .with(|r| r.iter().any(|e| e.phase == Phase::Connected));
        if any {
            Phase::Connected.label()
        } else {
            self.phase.with(Phase::label)
        }
    }

    fn update_entry(&self, relay: PeerId, f: impl FnOnce(&mut RelayEntry)) {
        self.relays.update(|relays| {
            if let Some(entry) = relays.iter_mut().find(|e| e.relay == relay) {
                f(entry);
            }
        });
    }

    fn is_serving(&self, relay: PeerId) -> bool {
        self.relays.with_untracked(|r| {
            r.first()
                .is_some_and(|e| e.relay == relay && e.source == Source::Serving)
        })
    }

    fn apply(&self, event: PeerEvent) {
        match event {
            PeerEvent::Dialing {
                relay,
                addr,
                attempt,
            } => {
                self.note(format!("dialing {addr}"));
                self.update_entry(relay, |e| e.phase = Phase::Connecting { attempt });
                if self.is_serving(relay) {
                    self.relay_addr.set(Some(addr));
                    self.set_phase(Phase::Connecting { attempt });
                }
            }
            PeerEvent::Connected {
                relay,
                addr,
                dial_ms,
            } => {
                self.note(format!(
                    "connected in {dial_ms:.0} ms; the relay proved it holds the key of {relay}"
                ));
                self.update_entry(relay, |e| {
                    e.phase = Phase::Connected;
                    e.dial_ms = Some(dial_ms);
                });
                if self.is_serving(relay) {
                    self.relay_peer_id.set(Some(relay.to_string()));
                    self.relay_addr.set(Some(addr));
                    self.dial_ms.set(Some(dial_ms));
                    self.set_phase(Phase::Connected);
                }
            }
            PeerEvent::Probe {
                relay,
                rtt_ms,
                status,
            } => {
                let mut summary = None;
                self.windows.update_value(|windows| {
                    let window = windows
                        .entry(relay)
                        .or_insert_with(|| RttWindow::new(RTT_WINDOW));
                    window.record(rtt_ms);
                    summary = window.summary();
                });
                let changed = self.relays.with_untracked(|r| {
                    r.iter()
                        .find(|e| e.relay == relay)
                        .is_some_and(|e| e.status.as_ref() != Some(&status))
                });
                self.update_entry(relay, |e| {
                    e.rtt = summary;
                    if changed {
                        e.status = Some(status.clone());
                    }
                });
                if self.is_serving(relay) {
                    self.rtt.set(summary);
                    if self.status.with_untracked(|s| s.as_ref() != Some(&status)) {
                        self.status.set(Some(status));
                    }
                }
            }
            PeerEvent::Disconnected {
                relay,
                reason,
                retry_in_ms,
            } => {
                self.note(format!("{relay}: {reason}; retrying in {retry_in_ms} ms"));
                let phase = Phase::Disconnected {
                    reason,
                    retry_in_ms,
                };
                self.update_entry(relay, |e| e.phase = phase.clone());
                if self.is_serving(relay) {
                    self.set_phase(phase);
                }
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

//! The relay's libp2p host: one behaviour struct, one event loop.
//!
//! Browsers reach the relay over webrtc-direct; relays reach each other over TCP with Noise
//! and Yamux. Our protocols run on streams the *remote* opens (see `client_core::protocol`):
//! the event loop only keeps listen addresses and connection counts current, while stream
//! handlers run on their own tasks so that no peer can hold up the loop.

use crate::datadir::RelayKeys;
use crate::inbound;
use crate::jobs::{self, JobService};
use crate::ledger::{self, Ledger};
use crate::status;
use anyhow::Context;
use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ListenError;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, noise, tcp, yamux};
use libp2p::{connection_limits, memory_connection_limits};
use libp2p_webrtc::tokio::Certificate;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long a connection with no open stream is kept. Browsers hold a status stream open for
/// as long as they are connected, so this only reaps peers that went quiet.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(NetworkBehaviour)]
pub struct RelayBehaviour {
    /// Caps on connections, checked before a connection is set up: a peer's identity is free,
    /// so per-peer caps alone do not bound what many peers can hold.
    limits: connection_limits::Behaviour,
    /// Refuses new connections while the process's memory is above its limit.
    memory: memory_connection_limits::Behaviour,
    inbound: inbound::Behaviour,
}

/// What the network shares with the HTTP server and the protocol handlers.
pub struct SharedState {
    pub peer_id: PeerId,
    pub network_id: String,
    pub started: Instant,
    listen_addrs: RwLock<Vec<Multiaddr>>,
    connected_peers: AtomicU32,
    /// Peers whose connections the event loop is to close.
    departed: mpsc::Sender<PeerId>,
    /// Connections refused, by the limit that refused them (`memory`, `connections`).
    pub refused_connections: crate::metrics::Labelled,
}

impl SharedState {
    /// The webrtc-direct addresses browsers dial, each ending in `/p2p/<peer id>`.
    pub fn webrtc_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs_with(|p| matches!(p, Protocol::WebRTCDirect))
    }

    /// The TCP addresses other relays dial, each ending in `/p2p/<peer id>`.
    pub fn relay_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs_with(|p| matches!(p, Protocol::Tcp(_)))
    }

    fn listen_addrs_with(&self, wanted: impl Fn(&Protocol<'_>) -> bool) -> Vec<Multiaddr> {
        self.listen_addrs
            .read()
            .map(|addrs| {
                addrs
                    .iter()
                    .filter(|a| a.iter().any(|p| wanted(&p)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn connected_peers(&self) -> u32 {
        self.connected_peers.load(Ordering::Relaxed)
    }

    /// Closes every connection of `peer` (a browser that has gone).
    pub fn disconnect(&self, peer: PeerId) {
        // A full queue means the loop is far behind; the idle timeout still reaps the peer.
        let _ = self.departed.try_send(peer);
    }

    pub fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

pub struct Listen {
    pub webrtc: SocketAddr,
    pub tcp: SocketAddr,
    pub limits: ConnectionCaps,
}

/// How many connections the relay holds: established in all, per peer, and still in their
/// handshake; and the memory above which it takes no more (`None`: 80% of the machine's).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionCaps {
    pub total: u32,
    pub per_peer: u32,
    pub pending: u32,
    pub memory_mb: Option<u64>,
}

impl Default for ConnectionCaps {
    fn default() -> Self {
        ConnectionCaps {
            total: 4096,
            per_peer: 8,
            pending: 256,
            memory_mb: None,
        }
    }
}

/// The share of the machine's memory the relay grows to before refusing new connections,
/// when no limit is given.
const DEFAULT_MEMORY_SHARE: f64 = 0.8;

pub struct Node {
    pub shared: Arc<SharedState>,
    pub task: JoinHandle<()>,
}

/// The address a browser dials for a webrtc-direct listener on `socket`.
pub fn webrtc_multiaddr(socket: SocketAddr, keys: &RelayKeys) -> Multiaddr {
    listen_multiaddr_webrtc(socket)
        .with(Protocol::Certhash(
            keys.certificate.fingerprint().to_multihash(),
        ))
        .with(Protocol::P2p(keys.keypair.peer_id()))
}

fn ip_protocol(ip: IpAddr) -> Protocol<'static> {
    match ip {
        IpAddr::V4(v4) => Protocol::Ip4(v4),
        IpAddr::V6(v6) => Protocol::Ip6(v6),
    }
}

fn listen_multiaddr_webrtc(socket: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(ip_protocol(socket.ip()))
        .with(Protocol::Udp(socket.port()))
        .with(Protocol::WebRTCDirect)
}

fn listen_multiaddr_tcp(socket: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(ip_protocol(socket.ip()))
        .with(Protocol::Tcp(socket.port()))
}

fn build_swarm(keys: &RelayKeys, caps: ConnectionCaps) -> anyhow::Result<Swarm<RelayBehaviour>> {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(caps.total))
        .with_max_established_per_peer(Some(caps.per_peer))
        .with_max_pending_incoming(Some(caps.pending));
    let certificate: Certificate = keys.certificate.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keys.keypair.to_libp2p())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("setting up the TCP transport")?
        .with_other_transport(|key| {
            libp2p_webrtc::tokio::Transport::new(key.clone(), certificate)
                .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
        })
        .context("setting up the WebRTC transport")?
        .with_behaviour(|_| RelayBehaviour {
            limits: connection_limits::Behaviour::new(limits),
            memory: match caps.memory_mb {
                Some(mb) => memory_connection_limits::Behaviour::with_max_bytes(
                    usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
                ),
                None => {
                    memory_connection_limits::Behaviour::with_max_percentage(DEFAULT_MEMORY_SHARE)
                }
            },
            inbound: inbound::Behaviour::default(),
        })
        .context("setting up the network behaviour")?
        .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    Ok(swarm)
}

impl Node {
    /// Starts listening and spawns the event loop. Returns once the listeners are up, so that
    /// the addresses printed and served over HTTP are the real ones.
    pub async fn start(
        keys: &RelayKeys,
        listen: Listen,
        network_id: String,
        jobs: Arc<JobService>,
        ledger: Arc<Ledger>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Node> {
        let mut swarm = build_swarm(keys, listen.limits)?;
        let peer_id = *swarm.local_peer_id();
        let webrtc_id = swarm
            .listen_on(listen_multiaddr_webrtc(listen.webrtc))
            .with_context(|| format!("listening for WebRTC on udp {}", listen.webrtc))?;
        let tcp_id = swarm
            .listen_on(listen_multiaddr_tcp(listen.tcp))
            .with_context(|| format!("listening for relays on tcp {}", listen.tcp))?;

        // Wait until both listeners report an address (or fail).
        let mut pending: HashSet<_> = [webrtc_id, tcp_id].into_iter().collect();
        let mut addrs = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !pending.is_empty() {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        pending.remove(&listener_id);
                        addrs.push(address.with_p2p(peer_id).unwrap_or_else(|a| a));
                    }
                    SwarmEvent::ListenerClosed { reason, .. } => {
                        anyhow::bail!("a listener closed while starting: {reason:?}");
                    }
                    SwarmEvent::ListenerError { error, .. } => {
                        anyhow::bail!("a listener failed while starting: {error}");
                    }
                    _ => {}
                },
                _ = &mut deadline => anyhow::bail!("listeners did not start within 10 s"),
            }
        }

        let (departed, departures) = mpsc::channel(1024);
        let shared = Arc::new(SharedState {
            peer_id,
            network_id,
            started: Instant::now(),
            listen_addrs: RwLock::new(addrs),
            connected_peers: AtomicU32::new(0),
            departed,
            refused_connections: Default::default(),
        });
        let control = swarm.behaviour().inbound.control();
        status::spawn_server(control.clone(), Arc::clone(&shared), shutdown.clone())?;
        jobs::protocol::spawn_server(control.clone(), jobs, shutdown.clone())?;
        ledger::protocol::spawn_server(control, ledger, shutdown.clone())?;
        let task = tokio::spawn(event_loop(swarm, Arc::clone(&shared), departures, shutdown));
        Ok(Node { shared, task })
    }
}

async fn event_loop(
    mut swarm: Swarm<RelayBehaviour>,
    shared: Arc<SharedState>,
    mut departures: mpsc::Receiver<PeerId>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            event = swarm.select_next_some() => handle_event(&mut swarm, &shared, event),
            Some(peer) = departures.recv() => {
                let _ = swarm.disconnect_peer_id(peer);
            }
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("network stopped");
}

fn handle_event(
    swarm: &mut Swarm<RelayBehaviour>,
    shared: &SharedState,
    event: SwarmEvent<RelayBehaviourEvent>,
) {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } => {
            shared
                .connected_peers
                .store(count_peers(swarm), Ordering::Relaxed);
            tracing::info!(%peer_id, addr = %endpoint.get_remote_address(), "peer connected");
        }
        SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
            shared
                .connected_peers
                .store(count_peers(swarm), Ordering::Relaxed);
            tracing::info!(%peer_id, cause = ?cause, "peer disconnected");
        }
        SwarmEvent::NewListenAddr { address, .. } => {
            let address = address.with_p2p(shared.peer_id).unwrap_or_else(|a| a);
            if let Ok(mut addrs) = shared.listen_addrs.write()
                && !addrs.contains(&address)
            {
                addrs.push(address);
            }
        }
        SwarmEvent::ExpiredListenAddr { address, .. } => {
            let address = address.with_p2p(shared.peer_id).unwrap_or_else(|a| a);
            if let Ok(mut addrs) = shared.listen_addrs.write() {
                addrs.retain(|a| a != &address);
            }
        }
        SwarmEvent::IncomingConnectionError {
            error: ListenError::Denied { cause },
            ..
        } => {
            let reason = if cause
                .downcast_ref::<memory_connection_limits::MemoryUsageLimitExceeded>()
                .is_some()
            {
                "memory"
            } else if cause
                .downcast_ref::<connection_limits::Exceeded>()
                .is_some()
            {
                "connections"
            } else {
                "other"
            };
            shared
                .refused_connections
                .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
                .inc();
            tracing::debug!(%cause, "incoming connection refused");
        }
        SwarmEvent::IncomingConnectionError { error, .. } => {
            tracing::debug!(%error, "incoming connection failed");
        }
        _ => {}
    }
}

fn count_peers(swarm: &Swarm<RelayBehaviour>) -> u32 {
    u32::try_from(swarm.connected_peers().count()).unwrap_or(u32::MAX)
}

//! Following other relays: the blocks they made, checked here, and the transactions this relay
//! takes in, passed on to them.
//!
//! A relay that does not make blocks itself (it is not the network's only validator) keeps
//! TCP connections to the relays named with `--peer`, asks them for the blocks after its own
//! latest, and commits each only after [`Ledger::apply_final`] has re-executed it and checked
//! its commit against the validator set its own state names: a peer can withhold blocks but
//! cannot make this relay accept a wrong one. Transactions admitted to this relay's mempool
//! (from browsers, or its own as a provider) are forwarded to a peer, so they reach the
//! validators, and leave the mempool when a followed block includes them.
//!
//! The outbound side is a small libp2p swarm of its own (TCP, Noise, Yamux, outbound streams)
//! under the relay's identity: the main swarm only answers streams that others open.

use crate::ledger::{BlockRejected, Ledger, now_ms};
use anyhow::{Context, bail};
use client_core::encoding::{decode, encode};
use client_core::ledger::SignedTx;
use client_core::ledger::wire::{
    LEDGER_PROTOCOL, LedgerRequest, LedgerResponse, MAX_BLOCKS_PER_REQUEST, MAX_LEDGER_RESPONSE,
};
use client_core::wire::{read_frame, write_frame};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long one request to a peer may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a disconnected peer is dialed again.
const REDIAL_EVERY: Duration = Duration::from_secs(2);
/// How often to ask for new blocks when the last ask found none.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long a transaction is offered to unreachable peers before it is left to the mempool.
const FORWARD_PATIENCE: Duration = Duration::from_secs(120);
/// Forwarded transactions waiting to be sent; beyond this the oldest wait in the mempool and
/// reach the validators when the next one is sent (the mempool itself is bounded).
const FORWARD_QUEUE: usize = 4096;

/// A peer relay: its TCP multiaddr and peer id.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: Multiaddr,
    pub id: PeerId,
}

impl Peer {
    /// Parses a `--peer` value: a multiaddr ending in `/p2p/<peer id>`.
    pub fn parse(text: &str) -> anyhow::Result<Peer> {
        let addr: Multiaddr = text
            .parse()
            .with_context(|| format!("{text:?} is not a multiaddr"))?;
        let Some(libp2p::multiaddr::Protocol::P2p(id)) = addr.iter().last() else {
            bail!("the peer address {text:?} must end in /p2p/<peer id>");
        };
        Ok(Peer { addr, id })
    }
}

/// Outbound connections to peer relays.
#[derive(Clone)]
pub struct Upstream {
    control: libp2p_stream::Control,
    peers: Arc<Vec<Peer>>,
}

impl Upstream {
    /// Starts the outbound swarm and keeps it connected to `peers` until `shutdown`.
    pub fn start(
        keypair: &client_core::identity::Keypair,
        peers: Vec<Peer>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Upstream> {
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.to_libp2p())
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .context("setting up the outbound TCP transport")?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .context("setting up the outbound behaviour")?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let control = swarm.behaviour().new_control();
        let dial_list = peers.clone();
        tokio::spawn(async move {
            let mut redial = tokio::time::interval(REDIAL_EVERY);
            loop {
                tokio::select! {
                    _ = redial.tick() => {
                        for peer in &dial_list {
                            if !swarm.is_connected(&peer.id)
                                && let Err(e) = swarm.dial(peer.addr.clone())
                            {
                                tracing::debug!(peer = %peer.id, %e, "dialing a peer relay failed");
                            }
                        }
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                            tracing::info!(%peer_id, "connected to peer relay");
                        }
                        SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                            tracing::info!(%peer_id, "peer relay disconnected");
                        }
                        _ => {}
                    },
                    _ = shutdown.changed() => break,
                }
            }
        });
        Ok(Upstream {
            control,
            peers: Arc::new(peers),
        })
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// One ledger request to `peer`; every answer until it closes the stream.
    pub async fn call(
        &self,
        peer: PeerId,
        request: &LedgerRequest,
        max_answers: usize,
    ) -> anyhow::Result<Vec<LedgerResponse>> {
        let mut control = self.control.clone();
        let exchange = async {
            let mut stream = control
                .open_stream(peer, StreamProtocol::new(LEDGER_PROTOCOL))
                .await
                .map_err(|e| anyhow::anyhow!("opening a stream: {e}"))?;
            write_frame(&mut stream, &encode(request)).await?;
            let mut answers = Vec::new();
            while let Some(frame) = read_frame(&mut stream, MAX_LEDGER_RESPONSE).await? {
                answers.push(decode(&frame, MAX_LEDGER_RESPONSE)?);
                if answers.len() >= max_answers {
                    break;
                }
            }
            anyhow::Ok(answers)
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}"))?
    }
}

/// Follows the peers' chain into `ledger` until `shutdown`: asks one peer after another for
/// the blocks after the local height and commits each that checks out.
pub fn spawn_follower(
    ledger: Arc<Ledger>,
    upstream: Upstream,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = 0usize;
        loop {
            let count = upstream.peers().len().max(1);
            let peer = upstream.peers()[turn % count].id;
            let progressed = match follow_once(&ledger, &upstream, peer).await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::debug!(%peer, "following: {e:#}");
                    turn += 1;
                    false
                }
            };
            if progressed {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.changed() => break,
            }
        }
        tracing::info!("following stopped");
    })
}

/// Fetches and applies the blocks `peer` has after ours. Returns how many were applied.
async fn follow_once(
    ledger: &Arc<Ledger>,
    upstream: &Upstream,
    peer: PeerId,
) -> anyhow::Result<usize> {
    let from = ledger.snapshot()?.height() + 1;
    let answers = upstream
        .call(
            peer,
            &LedgerRequest::Blocks {
                from,
                count: MAX_BLOCKS_PER_REQUEST,
            },
            1,
        )
        .await?;
    let blocks = match answers.into_iter().next() {
        Some(LedgerResponse::Blocks(blocks)) => blocks,
        Some(LedgerResponse::Refused { reason }) => bail!("the peer refused: {reason}"),
        other => bail!("expected blocks, got {other:?}"),
    };
    let worker = Arc::clone(ledger);
    let applied = tokio::task::spawn_blocking(move || {
        let mut applied = 0;
        for block in &blocks {
            match worker.apply_final(block, now_ms()) {
                Ok(()) => applied += 1,
                Err(BlockRejected::Local(e)) => return Err(e),
                Err(e) => {
                    // A wrong block from a peer: refused with the reason, nothing written.
                    tracing::warn!(%peer, height = block.header.height, "refused a block: {e}");
                    return Err(anyhow::anyhow!("peer {peer} sent an invalid block: {e}"));
                }
            }
        }
        Ok(applied)
    })
    .await
    .context("the block checker stopped")??;
    if applied > 0 {
        tracing::debug!(%peer, applied, height = from + applied as u64 - 1, "followed blocks");
    }
    Ok(applied)
}

/// Forwards transactions admitted here to every peer relay until `shutdown` (whichever
/// proposes next must have them). Each peer has its own queue and task, so a peer that is down
/// delays only what is sent to it: the others get every transaction at once.
pub fn spawn_forwarder(
    upstream: Upstream,
    mut queue: mpsc::Receiver<SignedTx>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lanes = Vec::new();
        for peer in upstream.peers().iter().map(|p| p.id) {
            let (lane, rx) = mpsc::channel(FORWARD_QUEUE);
            tokio::spawn(forward_to_peer(
                upstream.clone(),
                peer,
                rx,
                shutdown.clone(),
            ));
            lanes.push((peer, lane));
        }
        loop {
            let tx = tokio::select! {
                tx = queue.recv() => match tx {
                    Some(tx) => tx,
                    None => break,
                },
                _ = shutdown.changed() => break,
            };
            let queued = tokio::time::Instant::now();
            for (peer, lane) in &lanes {
                if lane.try_send((queued, tx.clone())).is_err() {
                    tracing::warn!(%peer, "the forwarding queue of a peer relay is full; it misses a transaction");
                }
            }
        }
    })
}

/// Sends the transactions of one peer's queue in order. One the peer cannot be given now is
/// tried again, backing off, until it has waited [`FORWARD_PATIENCE`]; then it is left to the
/// other peers.
async fn forward_to_peer(
    upstream: Upstream,
    peer: PeerId,
    mut queue: mpsc::Receiver<(tokio::time::Instant, SignedTx)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(250);
    loop {
        let (queued, tx) = tokio::select! {
            next = queue.recv() => match next {
                Some(next) => next,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let request = LedgerRequest::Submit { tx: Box::new(tx) };
        loop {
            // Only the first answer (taken or refused) is awaited.
            match upstream.call(peer, &request, 1).await {
                Ok(answers) => {
                    if let Some(LedgerResponse::Refused { reason }) = answers.first() {
                        // It has it already, or will never take it.
                        tracing::debug!(%peer, "a forwarded transaction was refused: {reason}");
                    }
                    delay = Duration::from_millis(250);
                    break;
                }
                Err(e) => tracing::debug!(%peer, "forwarding failed: {e:#}"),
            }
            if queued.elapsed() + delay > FORWARD_PATIENCE {
                tracing::warn!(%peer, "a peer relay could not be given a transaction");
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(4));
        }
    }
}

/// The sending side of the forwarding queue, and its receiver for [`spawn_forwarder`].
pub fn forward_queue() -> (mpsc::Sender<SignedTx>, mpsc::Receiver<SignedTx>) {
    mpsc::channel(FORWARD_QUEUE)
}

//! Consensus among several validator relays: Malachite's Tendermint engine (app-channel),
//! driving the ledger's three block steps.
//!
//! Why the engine and not its core over our own libp2p: the engine brings, already tested
//! together, gossip between validators, a write-ahead log (a validator that crashes mid-height
//! comes back without signing anything that contradicts what it signed before) and value sync
//! (a validator that fell behind fetches decided blocks with their certificates). Driving the
//! core ourselves would mean writing all three. The cost is a second libp2p stack (the
//! engine's, on its own TCP port, `--consensus`) beside the relay's.
//!
//! What the engine asks and what the relay answers, all in [`app`]:
//! - a value to propose: [`crate::ledger::Ledger::build_block`], streamed to the other
//!   validators as one proposal part signed by the proposer;
//! - whether a proposal is valid: [`crate::ledger::Ledger::check_block`], re-executing it on
//!   our own state (a validator votes only for a block it has re-executed);
//! - a decision: [`crate::ledger::Ledger::commit_block`] with the precommits as the block's
//!   commit — the very signatures light clients check (see [`context`]);
//! - the next height's validator set: the one the ledger's state names.

mod app;
pub mod codec;
pub mod context;
pub mod signing;

use crate::ledger::Ledger;
use anyhow::Context as _;
use client_core::identity::Keypair;
use codec::BorshCodec;
use context::{Address, Ctx};
use malachitebft_app::config::NodeConfig;
use malachitebft_app_channel::{
    ConsensusContext, NetworkContext, NetworkIdentity, RequestContext, SyncContext, WalContext,
};
use malachitebft_config::{ConsensusConfig, P2pConfig, ValueSyncConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Where the engine listens and whom it keeps connections to.
#[derive(Debug, Clone)]
pub struct ConsensusSettings {
    /// The TCP address of the engine's own network.
    pub listen: SocketAddr,
    /// Other validators' consensus addresses (`/ip4/…/tcp/…/p2p/<peer id>`).
    pub peers: Vec<String>,
    /// The directory of the write-ahead log.
    pub wal_dir: PathBuf,
}

struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.sync
    }

    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.sync
    }
}

/// The running engine.
pub struct Consensus {
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the engine and the loop that answers it, until `shutdown`.
pub async fn start(
    ledger: Arc<Ledger>,
    keypair: Keypair,
    settings: ConsensusSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Consensus> {
    let ctx = Ctx {
        network_id: ledger.network_id().to_owned(),
    };
    let me = keypair.public();
    let engine_key = malachitebft_app::types::Keypair::ed25519_from_bytes(keypair.seed())
        .map_err(|e| anyhow::anyhow!("the relay key as a consensus key: {e}"))?;
    let identity = NetworkIdentity::new(
        format!(
            "aqueduct-{}",
            &me.to_string()[..8.min(me.to_string().len())]
        ),
        engine_key,
        Some(Address(me).to_string()),
    );
    let mut p2p = P2pConfig {
        listen_addr: format!(
            "/ip4/{}/tcp/{}",
            settings.listen.ip(),
            settings.listen.port()
        )
        .parse()
        .context("the consensus listen address")?,
        persistent_peers: Vec::new(),
        persistent_peers_only: false,
        ..P2pConfig::default()
    };
    for peer in &settings.peers {
        p2p.persistent_peers.push(
            peer.parse()
                .with_context(|| format!("the consensus peer {peer:?}"))?,
        );
    }
    let config = EngineConfig {
        moniker: format!("aqueduct-relay-{me}"),
        consensus: ConsensusConfig {
            value_payload: malachitebft_config::ValuePayload::ProposalAndParts,
            p2p,
            ..ConsensusConfig::default()
        },
        sync: ValueSyncConfig {
            enabled: true,
            ..ValueSyncConfig::default()
        },
    };
    std::fs::create_dir_all(&settings.wal_dir)
        .with_context(|| format!("creating {}", settings.wal_dir.display()))?;
    let (channels, _engine) = malachitebft_app_channel::start_engine(
        ctx.clone(),
        config,
        WalContext::new(settings.wal_dir.join("consensus.wal"), BorshCodec),
        NetworkContext::new(identity, BorshCodec),
        ConsensusContext::new_validator(
            Address(me),
            Box::new(signing::RelayVerifier { ctx: ctx.clone() }),
            Box::new(signing::RelaySigner {
                ctx: ctx.clone(),
                keypair: keypair.clone(),
            }),
        ),
        SyncContext::new(BorshCodec),
        RequestContext::new(100),
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting the consensus engine: {e:#}"))?;
    let task = tokio::spawn(app::run(ctx, ledger, keypair, channels, shutdown));
    Ok(Consensus { task })
}

/// Picks a free TCP port for the engine's listener on `addr` (port 0: any), by binding it and
/// letting it go just before the engine binds it: the engine's network reports no address of
/// its own that the relay could print.
pub fn resolve_listen(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr)
        .with_context(|| format!("finding a free port on {}", addr.ip()))?;
    Ok(probe.local_addr()?)
}

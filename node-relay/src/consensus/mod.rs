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
    Channels, ConsensusContext, NetworkContext, NetworkIdentity, RequestContext, SyncContext,
    WalContext,
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
    /// Testing only (the `faulty` feature): misbehaviour, so tests can check that the other
    /// validators withstand it.
    pub byzantine: Byzantine,
}

/// What a byzantine validator does (testing only).
#[derive(Debug, Clone, Copy, Default)]
pub struct Byzantine {
    /// Signs a second, conflicting vote for every vote it casts.
    pub double_sign: bool,
    /// Proposes blocks whose state root does not follow from their transactions.
    pub invalid_blocks: bool,
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
    let wal = WalContext::new(settings.wal_dir.join("consensus.wal"), BorshCodec);
    let consensus = ConsensusContext::new_validator(
        Address(me),
        Box::new(signing::RelayVerifier { ctx: ctx.clone() }),
        Box::new(signing::RelaySigner {
            ctx: ctx.clone(),
            keypair: keypair.clone(),
        }),
    );
    #[cfg(feature = "faulty")]
    let started = if settings.byzantine.double_sign {
        byzantine_engine(&ctx, config, wal, identity, consensus, &keypair).await
    } else {
        start_honest(&ctx, config, wal, identity, consensus).await
    };
    #[cfg(not(feature = "faulty"))]
    let started = start_honest(&ctx, config, wal, identity, consensus).await;
    let channels = started.map_err(|e| anyhow::anyhow!("starting the consensus engine: {e:#}"))?;
    let task = tokio::spawn(app::run(
        ctx,
        ledger,
        keypair,
        channels,
        shutdown,
        #[cfg(feature = "faulty")]
        settings.byzantine,
    ));
    Ok(Consensus { task })
}

async fn start_honest(
    ctx: &Ctx,
    config: EngineConfig,
    wal: WalContext<BorshCodec>,
    identity: NetworkIdentity,
    consensus: ConsensusContext<Ctx>,
) -> eyre::Result<Channels<Ctx>> {
    let (channels, _engine) = malachitebft_app_channel::start_engine(
        ctx.clone(),
        config,
        wal,
        NetworkContext::new(identity, BorshCodec),
        consensus,
        SyncContext::new(BorshCodec),
        RequestContext::new(100),
    )
    .await?;
    Ok(channels)
}

/// The engine behind Malachite's byzantine network proxy, which signs a conflicting vote (for
/// another header, or for one where the vote was for nothing) beside every vote.
#[cfg(feature = "faulty")]
async fn byzantine_engine(
    ctx: &Ctx,
    config: EngineConfig,
    wal: WalContext<BorshCodec>,
    identity: NetworkIdentity,
    consensus: ConsensusContext<Ctx>,
    keypair: &Keypair,
) -> eyre::Result<Channels<Ctx>> {
    use malachitebft_app_channel::{ByzantineContext, EngineBuilder};
    use malachitebft_engine_byzantine::{ByzantineConfig, Trigger};
    tracing::warn!("BYZANTINE VALIDATOR: every vote is signed twice, for different values");
    let conflicting: malachitebft_engine_byzantine::ConflictingVoteValueFn<Ctx> =
        Box::new(|value: Option<&client_core::hash::Hash>| match value {
            Some(id) => client_core::hash::Hash::of(&id.0),
            None => client_core::hash::Hash::of(b"a block nobody proposed"),
        });
    let byzantine = ByzantineContext {
        identity,
        codec: BorshCodec,
        config: ByzantineConfig::new(Some(1)).with_equivocate_votes(Trigger::Always),
        signer: Box::new(signing::RelaySigner {
            ctx: ctx.clone(),
            keypair: keypair.clone(),
        }),
        address: Address(keypair.public()),
        conflicting_value_fn: None,
        conflicting_vote_value_fn: Some(conflicting),
    };
    let (channels, _engine) = EngineBuilder::new(ctx.clone(), config)
        .with_default_wal(wal)
        .with_byzantine_network(byzantine)
        .await?
        .with_default_sync(SyncContext::new(BorshCodec))
        .with_default_consensus(consensus)
        .with_default_request(RequestContext::new(100))
        .build()
        .await?;
    Ok(channels)
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

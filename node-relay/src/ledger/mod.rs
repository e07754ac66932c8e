//! The relay's ledger: mempool, block production, storage and the ledger protocol.
//!
//! A block is made in three steps, the same for the one-node dev network and for consensus:
//! [`Ledger::build_block`] (mempool → apply → state root → header), [`Ledger::check_block`]
//! (a block another validator proposes, re-executed on our state: same roots, parent, time
//! rules, validator sets) and [`Ledger::commit_block`] (the durable write and mempool
//! pruning). Between building and committing, a [`Finalizer`] — the seat of a consensus
//! engine — returns the commit that makes the header final; with one validator that is
//! [`SoloValidator`], which signs at once.

pub mod mempool;
pub mod protocol;
pub mod store;

use crate::recent::Recent;
use anyhow::{Context, bail};
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::job::fraud::Judge;
use client_core::ledger::block::{Block, txs_root, verify_commit};
use client_core::ledger::chain::{self, ReplayError, Tip};
use client_core::ledger::light::{EpochChange, ProvenRead, ProvenReads, TxInclusion};
use client_core::ledger::merkle;
use client_core::ledger::tx::tx_id;
use client_core::ledger::validators;
use client_core::ledger::wire::MAX_EPOCH_CHANGES;
use client_core::ledger::{
    BlockContext, Commit, Genesis, Header, SignedTx, StateKey, StateRead, StateValue, Tx, TxKind,
    apply_block_judged,
};
use client_core::signed::Signed;
use mempool::{AdmitError, Mempool, MempoolLimits};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::LedgerStore;
use tokio::sync::{broadcast, watch};

/// The most transaction bytes one block holds, so that any block fits in a protocol answer.
pub const MAX_BLOCK_TX_BYTES: usize = 2 * 1024 * 1024;

/// How many bytes of blocks one `Blocks` answer carries at most.
pub const BLOCKS_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Makes a proposed header final: the place of a consensus engine.
pub trait Finalizer: Send {
    /// Whether this finalizer alone can make a block of `set` final.
    fn can_finalize(&self, set: &client_core::ledger::ValidatorSet) -> bool;
    fn finalize(&mut self, header: &Header) -> anyhow::Result<Commit>;
}

/// How far ahead of our clock a proposed block's time may be.
pub const MAX_CLOCK_AHEAD_MS: u64 = 5_000;

/// A transaction left out of a block being built, and why.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub sender: PublicKey,
    pub nonce: u64,
    pub id: Hash,
    pub reason: String,
}

/// A block made or checked but not yet final: the header, its transactions, the state-tree
/// nodes that writing it adds, and the transactions left out.
pub struct Built {
    pub header: Header,
    pub txs: Vec<SignedTx>,
    nodes: jmt::storage::NodeBatch,
    pub dropped: Vec<Dropped>,
}

/// Why a proposed or synced block was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BlockRejected {
    #[error(transparent)]
    Invalid(#[from] ReplayError),
    #[error("block {height} is dated {ahead_ms} ms ahead of this relay's clock")]
    FromTheFuture { height: u64, ahead_ms: u64 },
    #[error("this relay could not check the block: {0:#}")]
    Local(anyhow::Error),
}

/// The only validator of its network: its own vote is all the power there is.
pub struct SoloValidator {
    keypair: Keypair,
}

impl SoloValidator {
    pub fn new(keypair: Keypair) -> Self {
        SoloValidator { keypair }
    }
}

impl Finalizer for SoloValidator {
    fn can_finalize(&self, set: &client_core::ledger::ValidatorSet) -> bool {
        matches!(set.validators.as_slice(), [only] if only.key == self.keypair.public())
    }

    fn finalize(&mut self, header: &Header) -> anyhow::Result<Commit> {
        Ok(Commit::signed_by(&[&self.keypair], header, 0))
    }
}

/// Block production settings.
#[derive(Debug, Clone, Copy)]
pub struct LedgerConfig {
    /// How often a block is made when transactions are waiting.
    pub block_interval: Duration,
    /// With nothing to include, a block is still made this often, so that light clients see
    /// the chain is alive and how fresh their reads are.
    pub heartbeat: Duration,
    pub max_block_txs: usize,
    pub mempool: MempoolLimits,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            block_interval: Duration::from_millis(500),
            heartbeat: Duration::from_secs(10),
            max_block_txs: 5_000,
            mempool: MempoolLimits::default(),
        }
    }
}

/// What a block did with the mempool's transactions, for those waiting on them.
#[derive(Debug, Clone)]
pub struct BlockEvent {
    pub height: u64,
    pub included: Vec<Hash>,
    pub dropped: Vec<(Hash, String)>,
}

pub struct Ledger {
    store: LedgerStore,
    mempool: Mutex<Mempool>,
    finalizer: Mutex<Box<dyn Finalizer>>,
    config: LedgerConfig,
    events: broadcast::Sender<BlockEvent>,
    /// Wakes the producer when a transaction arrives.
    wake: watch::Sender<u64>,
    /// Where admitted transactions go on to the relays that make blocks, on a relay that
    /// follows them.
    forward: Mutex<Option<tokio::sync::mpsc::Sender<SignedTx>>>,
    /// The relays transactions are forwarded to (what they forward here is not sent on).
    peer_relays: Mutex<Vec<libp2p::PeerId>>,
    /// Re-runs the segment a fraud proof points at, in the mempool and in every block.
    judge: Box<dyn Judge + Send + Sync>,
    /// The blocks that included the last [`RECENT_TXS`] transactions, by id: a submission
    /// repeated after its transaction was included is answered from here.
    included: Mutex<Recent<Hash, u64>>,
}

/// How many included transactions [`Ledger::included_at`] remembers.
pub const RECENT_TXS: usize = 16_384;

/// The milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Ledger {
    /// Opens the ledger in `dir` (creating it from `genesis`). The relay produces blocks only
    /// if `finalizer`'s validator is in the genesis set; checking that is the caller's job.
    pub fn open(
        dir: &Path,
        genesis: &Genesis,
        finalizer: Box<dyn Finalizer>,
        config: LedgerConfig,
    ) -> anyhow::Result<Arc<Ledger>> {
        let store = LedgerStore::open(dir, genesis)?;
        let (events, _) = broadcast::channel(256);
        let (wake, _) = watch::channel(0);
        Ok(Arc::new(Ledger {
            store,
            mempool: Mutex::new(Mempool::new(config.mempool)),
            finalizer: Mutex::new(finalizer),
            config,
            events,
            wake,
            forward: Mutex::new(None),
            peer_relays: Mutex::new(Vec::new()),
            judge: crate::jobs::engine::fraud_judge()?,
            included: Mutex::new(Recent::new(RECENT_TXS)),
        }))
    }

    /// From now on, passes every admitted transaction to `queue` (to be forwarded to the
    /// relays that make blocks).
    pub fn forward_to(
        &self,
        queue: tokio::sync::mpsc::Sender<SignedTx>,
        peers: Vec<libp2p::PeerId>,
    ) {
        if let Ok(mut forward) = self.forward.lock() {
            *forward = Some(queue);
        }
        if let Ok(mut known) = self.peer_relays.lock() {
            *known = peers;
        }
    }

    /// Whether `peer` is one of the relays this one forwards to.
    pub fn is_peer_relay(&self, peer: &libp2p::PeerId) -> bool {
        self.peer_relays
            .lock()
            .map(|p| p.contains(peer))
            .unwrap_or(false)
    }

    fn forward(&self, tx: &SignedTx) {
        if let Ok(forward) = self.forward.lock()
            && forward.is_some()
            && !self.makes_blocks()
            && let Some(queue) = forward.as_ref()
            && queue.try_send(tx.clone()).is_err()
        {
            tracing::warn!("the forwarding queue is full; a transaction waits in the mempool");
        }
    }

    /// Whether this relay makes blocks by itself: its finalizer alone can finalize a block of
    /// the set that signs the next block.
    pub fn makes_blocks(&self) -> bool {
        let Ok(snapshot) = self.store.snapshot() else {
            return false;
        };
        let Some(set) = validators::current(&snapshot) else {
            return false;
        };
        self.finalizer
            .lock()
            .map(|f| f.can_finalize(&set))
            .unwrap_or(false)
    }

    pub fn genesis(&self) -> &Genesis {
        self.store.genesis()
    }

    pub fn network_id(&self) -> &str {
        &self.store.genesis().network_id
    }

    /// The database (for records beside the state, such as accepted vouchers).
    pub fn store(&self) -> &LedgerStore {
        &self.store
    }

    pub fn snapshot(&self) -> anyhow::Result<store::Snapshot> {
        self.store.snapshot()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BlockEvent> {
        self.events.subscribe()
    }

    /// The block that included transaction `id`, if it is among the last [`RECENT_TXS`] this
    /// relay committed.
    pub fn included_at(&self, id: &Hash) -> Option<u64> {
        self.included.lock().ok().and_then(|r| r.get(id))
    }

    pub fn pending(&self) -> usize {
        self.mempool.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Admits `tx` to the mempool (and forwards it, on a relay that forwards).
    pub fn submit(&self, tx: SignedTx) -> Result<Hash, AdmitError> {
        self.submit_with(tx, true)
    }

    /// Admits `tx` to the mempool, forwarding it only if `forward`.
    pub fn submit_with(&self, tx: SignedTx, forward: bool) -> Result<Hash, AdmitError> {
        let snapshot = self.store.snapshot().map_err(|_| AdmitError::Full(0))?;
        let forwarded = tx.clone();
        let id = {
            let mut pool = self.mempool.lock().map_err(|_| AdmitError::Full(0))?;
            pool.admit(
                &snapshot,
                self.network_id(),
                snapshot.height() + 1,
                now_ms(),
                tx,
                self.judge.as_ref(),
            )?
        };
        if forward {
            self.forward(&forwarded);
        }
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(id)
    }

    /// Signs `kind` with `keypair` as its next transaction (after those it has waiting), with
    /// the minimum fee, and admits it. For the relay's own transactions.
    pub fn submit_own(&self, keypair: &Keypair, kind: TxKind) -> anyhow::Result<Hash> {
        let snapshot = self.store.snapshot()?;
        let me = keypair.public();
        let nonce = match snapshot.get(&StateKey::Account(me)) {
            Some(StateValue::Account(a)) => a.nonce,
            _ => 0,
        };
        let params = match snapshot.get(&StateKey::Params) {
            Some(StateValue::Params(p)) => p,
            _ => anyhow::bail!("the ledger has no parameters"),
        };
        let fee = client_core::ledger::tx::min_fee_for(&params, self.network_id(), &kind);
        let name = kind.name();
        let id = {
            let mut pool = self
                .mempool
                .lock()
                .map_err(|_| anyhow::anyhow!("the mempool is unavailable"))?;
            let tx = Signed::sign(
                keypair,
                Tx {
                    network_id: self.network_id().to_owned(),
                    nonce: pool.next_nonce(&me, nonce),
                    fee,
                    kind,
                },
            );
            let forwarded = tx.clone();
            let id = pool
                .admit(
                    &snapshot,
                    self.network_id(),
                    snapshot.height() + 1,
                    now_ms(),
                    tx,
                    self.judge.as_ref(),
                )
                .map_err(|e| anyhow::anyhow!("the {name} transaction was refused: {e}"))?;
            self.forward(&forwarded);
            id
        };
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(id)
    }

    /// How many of `key`'s transactions wait for a block.
    pub fn pending_from(&self, key: &PublicKey) -> usize {
        self.mempool
            .lock()
            .map(|m| m.pending_from(key))
            .unwrap_or(0)
    }

    /// Values of `keys` at the latest block, with proofs. `None` before the first block.
    pub fn read(&self, keys: &[StateKey]) -> anyhow::Result<Option<ProvenReads>> {
        self.read_at(keys, None)
    }

    /// Values of `keys` at block `height` (the latest when `None`), with proofs. `None` before
    /// the first block or for a height not reached yet.
    pub fn read_at(
        &self,
        keys: &[StateKey],
        height: Option<u64>,
    ) -> anyhow::Result<Option<ProvenReads>> {
        let snapshot = self.store.snapshot()?;
        let height = height.unwrap_or(snapshot.height());
        if height == 0 || height > snapshot.height() {
            return Ok(None);
        }
        let Some(block) = snapshot.block(height)? else {
            return Ok(None);
        };
        let mut reads = Vec::with_capacity(keys.len());
        for key in keys {
            let (value, proof) = merkle::prove(&snapshot, key, height)?;
            reads.push(ProvenRead {
                key: key.clone(),
                value,
                proof,
            });
        }
        Ok(Some(ProvenReads {
            header: block.header,
            commit: block.commit,
            reads,
        }))
    }

    /// Blocks from `from` on that exist: at most `count`, and no more than
    /// [`BLOCKS_ANSWER_BYTES`] of them in all (always at least one, which fits: blocks are
    /// bounded by [`MAX_BLOCK_TX_BYTES`]).
    pub fn blocks(&self, from: u64, count: u32) -> anyhow::Result<Vec<Block>> {
        let snapshot = self.store.snapshot()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for height in from..from.saturating_add(u64::from(count)) {
            let Some(block) = snapshot.block(height)? else {
                break;
            };
            bytes += client_core::encoding::encode(&block).len();
            if bytes > BLOCKS_ANSWER_BYTES && !out.is_empty() {
                break;
            }
            out.push(block);
        }
        Ok(out)
    }

    /// Step 1 of making a block: takes what the mempool has (if there is something to include
    /// or the heartbeat is due: `force`), applies it on the latest state at time `now_ms`, and
    /// returns the header with everything needed to commit it. Transactions that no longer
    /// apply are left out (and dropped from the mempool when the block is committed).
    /// Blocking: runs on a blocking thread.
    pub fn build_block(&self, now_ms: u64, force: bool) -> anyhow::Result<Option<Built>> {
        let snapshot = self.store.snapshot()?;
        let candidates = {
            let pool = self
                .mempool
                .lock()
                .map_err(|_| anyhow::anyhow!("mempool lock poisoned"))?;
            pool.candidates(&snapshot, self.config.max_block_txs, MAX_BLOCK_TX_BYTES)
        };
        if candidates.is_empty() && !force {
            return Ok(None);
        }
        let tip = self.tip(&snapshot)?;
        let height = tip.height + 1;
        let time_ms = now_ms.max(tip.time_ms + 1);
        let ctx = BlockContext {
            network_id: self.network_id().to_owned(),
            height,
            time_ms,
        };
        let signers = validators::current(&snapshot)
            .ok_or_else(|| anyhow::anyhow!("the ledger state holds no validator set"))?;
        let (changes, outcomes) =
            apply_block_judged(&snapshot, &ctx, &candidates, self.judge.as_ref());
        if snapshot.read_failed() {
            bail!("reading the state failed while making block {height}; not producing it");
        }
        let mut txs = Vec::with_capacity(candidates.len());
        let mut dropped = Vec::new();
        for (tx, outcome) in candidates.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => txs.push(tx),
                Err(error) => dropped.push(Dropped {
                    sender: tx.signer,
                    nonce: tx.body.nonce,
                    id: tx_id(&tx),
                    reason: error.to_string(),
                }),
            }
        }
        let next_validators = match changes.get(&StateKey::Validators) {
            Some(Some(StateValue::Validators(set))) => set.hash(),
            _ => signers.hash(),
        };
        let (state_root, nodes) = merkle::update(&snapshot, &changes, height)?;
        let header = Header {
            network_id: self.network_id().to_owned(),
            height,
            prev: tip.hash,
            state_root,
            txs_root: txs_root(&txs),
            time_ms,
            validators: signers.hash(),
            next_validators,
        };
        Ok(Some(Built {
            header,
            txs,
            nodes,
            dropped,
        }))
    }

    /// Step 2: checks a block another validator proposes on top of our latest block — the
    /// rules of [`chain::check_header`], a time not beyond our clock by more than
    /// [`MAX_CLOCK_AHEAD_MS`], every transaction applying, and the same state root and next
    /// validator set as our own re-execution. Returns what committing it needs.
    pub fn check_block(
        &self,
        header: &Header,
        txs: &[SignedTx],
        now_ms: u64,
    ) -> Result<Built, BlockRejected> {
        let snapshot = self.store.snapshot().map_err(BlockRejected::Local)?;
        let tip = self.tip(&snapshot).map_err(BlockRejected::Local)?;
        chain::check_header(
            &snapshot,
            self.network_id(),
            &tip,
            header,
            txs,
            self.config.max_block_txs,
        )?;
        if header.time_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
            return Err(BlockRejected::FromTheFuture {
                height: header.height,
                ahead_ms: header.time_ms - now_ms,
            });
        }
        let executed = chain::execute_block(&snapshot, header, txs, self.judge.as_ref())?;
        if snapshot.read_failed() {
            return Err(BlockRejected::Local(anyhow::anyhow!(
                "reading the state failed while checking block {}",
                header.height
            )));
        }
        let (computed, nodes) = merkle::update(&snapshot, &executed.changes, header.height)
            .map_err(|e| BlockRejected::Local(e.into()))?;
        if computed != header.state_root {
            return Err(ReplayError::Root {
                height: header.height,
                claimed: header.state_root,
                computed,
            }
            .into());
        }
        Ok(Built {
            header: header.clone(),
            txs: txs.to_vec(),
            nodes,
            dropped: Vec::new(),
        })
    }

    /// Step 3: writes a decided block — `built` with the `commit` that makes it final — in one
    /// durable transaction, then prunes the mempool and tells those waiting on transactions.
    pub fn commit_block(&self, built: Built, commit: Commit) -> anyhow::Result<()> {
        let Built {
            header,
            txs,
            nodes,
            dropped,
        } = built;
        let height = header.height;
        let included: Vec<Hash> = txs.iter().map(tx_id).collect();
        let block = Block {
            header,
            txs,
            commit,
        };
        self.store
            .commit_block(&block, &nodes)
            .with_context(|| format!("writing block {height}"))?;

        let after = self.store.snapshot()?;
        let dropped_keys: Vec<(PublicKey, u64)> =
            dropped.iter().map(|d| (d.sender, d.nonce)).collect();
        let removed = {
            let mut pool = self
                .mempool
                .lock()
                .map_err(|_| anyhow::anyhow!("mempool lock poisoned"))?;
            pool.prune(&after, &dropped_keys)
        };
        let mut dropped_events: Vec<(Hash, String)> =
            dropped.into_iter().map(|d| (d.id, d.reason)).collect();
        for id in removed {
            if !dropped_events.iter().any(|(d, _)| *d == id) {
                dropped_events.push((
                    id,
                    "an earlier transaction of the same account was dropped".into(),
                ));
            }
        }
        if let Ok(mut recent) = self.included.lock() {
            for id in &included {
                recent.insert(*id, height);
            }
        }
        let _ = self.events.send(BlockEvent {
            height,
            included,
            dropped: dropped_events,
        });
        Ok(())
    }

    /// Follows a final block made elsewhere: checks it as a proposal, checks its commit against
    /// the set our state says signs it, and commits it.
    pub fn apply_final(&self, block: &Block, now_ms: u64) -> Result<(), BlockRejected> {
        let built = self.check_block(&block.header, &block.txs, now_ms)?;
        let snapshot = self.store.snapshot().map_err(BlockRejected::Local)?;
        let signers = validators::current(&snapshot).ok_or_else(|| {
            BlockRejected::Local(anyhow::anyhow!("the ledger state holds no validator set"))
        })?;
        drop(snapshot);
        verify_commit(&block.header, &block.commit, &signers, self.network_id()).map_err(
            |error| ReplayError::Commit {
                height: block.header.height,
                error,
            },
        )?;
        self.commit_block(built, block.commit.clone())
            .map_err(BlockRejected::Local)
    }

    /// The latest block this relay has committed (the genesis before the first).
    fn tip(&self, snapshot: &store::Snapshot) -> anyhow::Result<Tip> {
        Ok(match snapshot.latest_header()? {
            Some(header) => Tip::of(&header),
            None => Tip::genesis(self.genesis()),
        })
    }

    /// Makes one block through the three steps, finalized by this relay's [`Finalizer`].
    /// Does nothing on a relay that does not make blocks by itself ([`Ledger::makes_blocks`]).
    pub fn produce_block(&self, now_ms: u64, force: bool) -> anyhow::Result<Option<Header>> {
        if !self.makes_blocks() {
            return Ok(None);
        }
        let Some(built) = self.build_block(now_ms, force)? else {
            return Ok(None);
        };
        let commit = self
            .finalizer
            .lock()
            .map_err(|_| anyhow::anyhow!("finalizer lock poisoned"))?
            .finalize(&built.header)?;
        let header = built.header.clone();
        self.commit_block(built, commit)?;
        Ok(Some(header))
    }

    /// Where `tx` is in block `height`, with its proof; `None` if it is not there.
    pub fn tx_inclusion(&self, height: u64, tx: &Hash) -> anyhow::Result<Option<TxInclusion>> {
        let snapshot = self.store.snapshot()?;
        let Some(block) = snapshot.block(height)? else {
            return Ok(None);
        };
        let Some(index) = block.txs.iter().position(|t| tx_id(t) == *tx) else {
            return Ok(None);
        };
        Ok(Some(TxInclusion {
            proof: client_core::ledger::block::txs_proof(&block.txs, index),
            index: u32::try_from(index)?,
            count: u32::try_from(block.txs.len())?,
            header: block.header,
            commit: block.commit,
        }))
    }

    /// The epoch changes at `from` or later, for light clients following the validator set.
    pub fn epochs(&self, from: u64) -> anyhow::Result<Vec<EpochChange>> {
        let snapshot = self.store.snapshot()?;
        let mut out = Vec::new();
        for height in snapshot.epoch_heights(from, MAX_EPOCH_CHANGES)? {
            let block = snapshot
                .block(height)?
                .with_context(|| format!("epoch block {height} is missing"))?;
            let next = match merkle::read(&snapshot, &StateKey::Validators, height)? {
                Some(StateValue::Validators(set)) => set,
                _ => bail!("the validator set elected at block {height} is missing"),
            };
            out.push(EpochChange {
                header: block.header,
                commit: block.commit,
                next,
            });
        }
        Ok(out)
    }

    /// Produces blocks until `shutdown`: at most one per block interval while transactions
    /// wait, and a heartbeat block otherwise.
    pub fn spawn_producer(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let ledger = Arc::clone(self);
        let mut woken = self.wake.subscribe();
        tokio::spawn(async move {
            let mut last_block = tokio::time::Instant::now();
            loop {
                let heartbeat_at = last_block + ledger.config.heartbeat;
                tokio::select! {
                    _ = woken.changed() => {}
                    _ = tokio::time::sleep_until(heartbeat_at) => {}
                    _ = shutdown.changed() => break,
                }
                // Gather what arrives within one interval into the same block.
                let ready_at = last_block + ledger.config.block_interval;
                tokio::select! {
                    _ = tokio::time::sleep_until(ready_at) => {}
                    _ = shutdown.changed() => break,
                }
                let force = tokio::time::Instant::now() >= heartbeat_at;
                let worker = Arc::clone(&ledger);
                let made =
                    tokio::task::spawn_blocking(move || worker.produce_block(now_ms(), force))
                        .await;
                match made {
                    Ok(Ok(Some(header))) => {
                        last_block = tokio::time::Instant::now();
                        tracing::debug!(height = header.height, root = %header.state_root, "block");
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::error!("block production failed: {e:#}");
                        last_block = tokio::time::Instant::now();
                    }
                    Err(e) => {
                        tracing::error!("block production panicked: {e}");
                        last_block = tokio::time::Instant::now();
                    }
                }
            }
            tracing::info!("block production stopped");
        })
    }
}

/// Makes sure `keypair` is registered as a provider with `offer`: registers it (bonding
/// `stake`) if it is not, updates the offer if it differs, and does nothing if it matches.
/// Returns what it did, for the operator.
pub fn ensure_provider(
    ledger: &Ledger,
    keypair: &Keypair,
    stake: client_core::ledger::Amount,
    offer: client_core::ledger::state::Offer,
) -> anyhow::Result<String> {
    let snapshot = ledger.snapshot()?;
    let existing = match snapshot.get(&StateKey::Provider(keypair.public())) {
        Some(StateValue::Provider(p)) => Some(p),
        _ => None,
    };
    drop(snapshot);
    let (kind, what) = match existing {
        Some(p) if !p.active() => {
            bail!(
                "this relay's provider registration is unbonding; withdraw it before registering again"
            )
        }
        Some(p) if p.offer == offer => return Ok("already registered with this offer".into()),
        Some(_) => (TxKind::UpdateOffer { offer }, "offer updated"),
        None => (TxKind::RegisterProvider { stake, offer }, "registered"),
    };
    ledger.submit_own(keypair, kind)?;
    Ok(format!("{what} (transaction submitted, in the next block)"))
}

/// Makes sure `keypair`'s provider registration stands for the validator set.
pub fn ensure_candidacy(ledger: &Ledger, keypair: &Keypair) -> anyhow::Result<String> {
    let snapshot = ledger.snapshot()?;
    let standing = matches!(
        snapshot.get(&StateKey::Provider(keypair.public())),
        Some(StateValue::Provider(p)) if p.candidate
    );
    drop(snapshot);
    if standing {
        return Ok("already standing for the validator set".into());
    }
    ledger.submit_own(keypair, TxKind::Candidacy { candidate: true })?;
    Ok("standing for the validator set from the next epoch (transaction submitted)".into())
}

#[cfg(test)]
mod tests;

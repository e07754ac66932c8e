//! The relay's ledger: mempool, block production, storage and the ledger protocol.
//!
//! Block production goes through [`Finalizer`], the seat of a consensus engine: it is handed
//! a proposed header and returns the commit that makes it final. With one validator (this
//! issue's network) that is [`SoloValidator`], which signs at once; a BFT engine with several
//! validators takes the same seat later without the producer changing.

pub mod mempool;
pub mod protocol;
pub mod store;

use anyhow::{Context, bail};
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::block::{Block, txs_root};
use client_core::ledger::light::{ProvenRead, ProvenReads};
use client_core::ledger::merkle;
use client_core::ledger::tx::tx_id;
use client_core::ledger::{
    BlockContext, Commit, Genesis, Header, SignedTx, StateKey, StateRead, StateValue, Tx, TxKind,
    apply_block,
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
    fn finalize(&mut self, header: &Header) -> anyhow::Result<Commit>;
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
    fn finalize(&mut self, header: &Header) -> anyhow::Result<Commit> {
        Ok(Commit {
            votes: vec![Commit::vote(&self.keypair, header)],
        })
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
}

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
        }))
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

    pub fn pending(&self) -> usize {
        self.mempool.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Admits `tx` to the mempool.
    pub fn submit(&self, tx: SignedTx) -> Result<Hash, AdmitError> {
        let snapshot = self.store.snapshot().map_err(|_| AdmitError::Full(0))?;
        let id = {
            let mut pool = self.mempool.lock().map_err(|_| AdmitError::Full(0))?;
            pool.admit(
                &snapshot,
                self.network_id(),
                snapshot.height() + 1,
                now_ms(),
                tx,
            )?
        };
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
            pool.admit(
                &snapshot,
                self.network_id(),
                snapshot.height() + 1,
                now_ms(),
                tx,
            )
            .map_err(|e| anyhow::anyhow!("the {name} transaction was refused: {e}"))?
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
        let snapshot = self.store.snapshot()?;
        let Some(block) = snapshot.latest_block()? else {
            return Ok(None);
        };
        let height = snapshot.height();
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

    /// Makes one block from the mempool at time `now_ms`, if there is something to include or
    /// the heartbeat is due (`force`). Blocking: runs on a blocking thread.
    pub fn produce_block(&self, now_ms: u64, force: bool) -> anyhow::Result<Option<Header>> {
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
        let previous = snapshot.latest_header()?;
        let height = snapshot.height() + 1;
        let time_ms = match &previous {
            Some(p) => now_ms.max(p.time_ms + 1),
            None => now_ms.max(self.genesis().time_ms + 1),
        };
        let ctx = BlockContext {
            network_id: self.network_id().to_owned(),
            height,
            time_ms,
        };
        let (changes, outcomes) = apply_block(&snapshot, &ctx, &candidates);
        if snapshot.read_failed() {
            bail!("reading the state failed while making block {height}; not producing it");
        }
        let mut txs = Vec::with_capacity(candidates.len());
        let mut dropped = Vec::new();
        let mut dropped_reasons = Vec::new();
        for (tx, outcome) in candidates.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => txs.push(tx),
                Err(error) => {
                    dropped.push((tx.signer, tx.body.nonce));
                    dropped_reasons.push((tx_id(&tx), error.to_string()));
                }
            }
        }
        let (state_root, nodes) = merkle::update(&snapshot, &changes, height)?;
        let header = Header {
            network_id: self.network_id().to_owned(),
            height,
            prev: snapshot.tip_hash(self.genesis())?,
            state_root,
            txs_root: txs_root(&txs),
            time_ms,
            validators: self.genesis().validator_set().hash(),
        };
        let commit = self
            .finalizer
            .lock()
            .map_err(|_| anyhow::anyhow!("finalizer lock poisoned"))?
            .finalize(&header)?;
        let included: Vec<Hash> = txs.iter().map(tx_id).collect();
        let block = Block {
            header: header.clone(),
            txs,
            commit,
        };
        drop(snapshot);
        self.store
            .commit_block(&block, &nodes)
            .with_context(|| format!("writing block {height}"))?;

        let after = self.store.snapshot()?;
        let removed = {
            let mut pool = self
                .mempool
                .lock()
                .map_err(|_| anyhow::anyhow!("mempool lock poisoned"))?;
            pool.prune(&after, &dropped)
        };
        let mut dropped_events = dropped_reasons;
        for id in removed {
            if !dropped_events.iter().any(|(d, _)| *d == id) {
                dropped_events.push((
                    id,
                    "an earlier transaction of the same account was dropped".into(),
                ));
            }
        }
        let _ = self.events.send(BlockEvent {
            height,
            included,
            dropped: dropped_events,
        });
        Ok(Some(header))
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

/// Whether `key` is a validator of `genesis`.
pub fn is_validator(genesis: &Genesis, key: &PublicKey) -> bool {
    genesis.validators.iter().any(|v| v.key == *key)
}

#[cfg(test)]
mod tests;

//! The ledger's database: one redb file, `ledger.redb`, in the data directory.
//!
//! Tables:
//! - `tree_nodes`: Jellyfish Merkle tree nodes (encoded node key → encoded node);
//! - `tree_values`: state values by (key hash, version), newest version wins;
//! - `blocks`: height → encoded block (header, transactions, commit);
//! - `meta`: the genesis, and the latest height;
//! - `vouchers`: channel id → the latest voucher this relay accepted as a provider on it (not
//!   part of the state: what it may still settle);
//! - `proposals`: blocks proposed in consensus and not decided yet;
//! - `double_signs`: proof of double-signing seen in consensus;
//! - `epoch_changes`: the heights of blocks that elect a new validator set.
//!
//! A block's nodes, values, the block and the new latest height are written in one write
//! transaction with immediate durability: after `commit_block` returns, a SIGKILL loses
//! nothing, and before it returns, a SIGKILL leaves the previous block as the latest — never
//! half a block.

use anyhow::{Context, bail};
use client_core::encoding;
use client_core::hash::Hash;
use client_core::ledger::block::Block;
use client_core::ledger::evidence::{DoubleSign, VoteKind};
use client_core::ledger::merkle::{self, TreeError};
use client_core::ledger::{Genesis, Header, StateKey, StateRead, StateValue, Voucher};
use client_core::signed::Signed;
use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tree_nodes");
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tree_values");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOUCHERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vouchers");
/// Blocks proposed in consensus and not yet decided (header hash → height and encoded block),
/// so that a validator that restarts mid-height still has the block its write-ahead log
/// remembers voting for.
const PROPOSALS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("proposals");
/// Proof of double-signing seen in consensus: validator ‖ height ‖ round ‖ vote kind → an
/// encoded [`DoubleSign`], at most [`DOUBLE_SIGNS_PER_VALIDATOR`] per validator (one proof is
/// enough; the bound keeps a misbehaving validator from filling the disk).
const DOUBLE_SIGNS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("double_signs");
pub const DOUBLE_SIGNS_PER_VALIDATOR: usize = 4;
const MAX_DOUBLE_SIGN_BYTES: usize = 4096;
/// The heights of blocks that elect a new validator set.
const EPOCHS: TableDefinition<u64, ()> = TableDefinition::new("epoch_changes");

/// A stored voucher is at most this large (its network id is short).
const MAX_VOUCHER_BYTES: usize = 4096;

const META_GENESIS: &str = "genesis";
const META_HEIGHT: &str = "height";

/// The file name inside the data directory.
pub const LEDGER_FILE: &str = "ledger.redb";

/// Blocks are at most this large when read back (a block holds a bounded number of
/// bounded transactions).
const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;

fn value_key(key_hash: &KeyHash, version: Version) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&key_hash.0);
    out[32..].copy_from_slice(&version.to_be_bytes());
    out
}

/// The ledger database.
pub struct LedgerStore {
    db: Database,
    genesis: Genesis,
}

impl LedgerStore {
    /// Opens (or creates, from `genesis`) the ledger in `dir`. An existing ledger of another
    /// genesis is an error, never overwritten.
    pub fn open(dir: &Path, genesis: &Genesis) -> anyhow::Result<Self> {
        let path = dir.join(LEDGER_FILE);
        let db = Database::create(&path)
            .with_context(|| format!("opening the ledger database {}", path.display()))?;
        let store = LedgerStore {
            db,
            genesis: genesis.clone(),
        };
        let stored = {
            let read = store.db.begin_read()?;
            match read.open_table(META) {
                Ok(meta) => meta.get(META_GENESIS)?.map(|g| g.value().to_vec()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        match stored {
            Some(bytes) => {
                let stored: Genesis =
                    encoding::decode(&bytes, MAX_BLOCK_BYTES).with_context(|| {
                        format!(
                            "the ledger {} was written by an earlier, incompatible version (or is \
                         damaged): its genesis record does not decode. Move it away — and, for \
                         a development chain, genesis.json beside it — to start a new chain; the \
                         relay's identity and certificate are kept",
                            path.display()
                        )
                    })?;
                if stored.hash() != genesis.hash() {
                    bail!(
                        "the ledger in {} belongs to network {:?} (genesis {}), not to the \
                         configured genesis {} of {:?}; use another data directory or the \
                         matching genesis file",
                        path.display(),
                        stored.network_id,
                        stored.hash(),
                        genesis.hash(),
                        genesis.network_id
                    );
                }
            }
            None => store.write_genesis()?,
        }
        Ok(store)
    }

    fn write_genesis(&self) -> anyhow::Result<()> {
        let snapshot = self.snapshot()?;
        let (_, batch) = merkle::update(&snapshot, &self.genesis.initial_state(), 0)?;
        drop(snapshot);
        let write = self.db.begin_write()?;
        {
            write_nodes(&write, &batch)?;
            let mut meta = write.open_table(META)?;
            meta.insert(META_GENESIS, encoding::encode(&self.genesis).as_slice())?;
            meta.insert(META_HEIGHT, 0u64.to_le_bytes().as_slice())?;
            write.open_table(BLOCKS)?;
        }
        write.commit()?;
        Ok(())
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// A consistent view of the database as it is now.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let txn = self.db.begin_read()?;
        let height = match txn.open_table(META) {
            Ok(meta) => meta
                .get(META_HEIGHT)?
                .and_then(|h| h.value().try_into().ok().map(u64::from_le_bytes)),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Snapshot {
            txn,
            height,
            read_failed: std::cell::Cell::new(false),
        })
    }

    /// Writes a finalised block and its tree nodes, atomically and durably.
    pub fn commit_block(&self, block: &Block, nodes: &NodeBatch) -> anyhow::Result<()> {
        let write = self.db.begin_write()?;
        {
            write_nodes(&write, nodes)?;
            let mut blocks = write.open_table(BLOCKS)?;
            blocks.insert(block.header.height, encoding::encode(block).as_slice())?;
            let mut meta = write.open_table(META)?;
            meta.insert(META_HEIGHT, block.header.height.to_le_bytes().as_slice())?;
            if block.header.next_validators != block.header.validators {
                write.open_table(EPOCHS)?.insert(block.header.height, ())?;
            }
        }
        write.commit()?;
        Ok(())
    }

    /// Keeps a proposed block's bytes (`body`) under its header hash until it is decided.
    pub fn put_proposal(&self, hash: &Hash, height: u64, body: &[u8]) -> anyhow::Result<()> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(PROPOSALS)?;
            let mut value = height.to_le_bytes().to_vec();
            value.extend_from_slice(body);
            table.insert(hash.0.as_slice(), value.as_slice())?;
        }
        write.commit()?;
        Ok(())
    }

    /// A kept proposed block's bytes.
    pub fn proposal(&self, hash: &Hash) -> anyhow::Result<Option<Vec<u8>>> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(PROPOSALS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table
            .get(hash.0.as_slice())?
            .and_then(|v| v.value().get(8..).map(<[u8]>::to_vec)))
    }

    /// Forgets the kept proposals of `height` and below.
    pub fn prune_proposals(&self, height: u64) -> anyhow::Result<()> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(PROPOSALS)?;
            let mut done = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let at = value
                    .value()
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .unwrap_or(0);
                if at <= height {
                    done.push(key.value().to_vec());
                }
            }
            for key in done {
                table.remove(key.as_slice())?;
            }
        }
        write.commit()?;
        Ok(())
    }

    /// Records a checked proof of double-signing, durably; false when it was known already or
    /// its signer has as many recorded as are kept.
    pub fn put_double_sign(&self, proof: &DoubleSign) -> anyhow::Result<bool> {
        let vote = &proof.first;
        let prefix = vote.validator.0;
        let mut key = prefix.to_vec();
        key.extend_from_slice(&vote.height.to_be_bytes());
        key.extend_from_slice(&vote.round.to_be_bytes());
        key.push(match vote.kind {
            VoteKind::Prevote => 0,
            VoteKind::Precommit => 1,
        });
        let write = self.db.begin_write()?;
        let added = {
            let mut table = write.open_table(DOUBLE_SIGNS)?;
            let mut end = prefix.to_vec();
            end.extend_from_slice(&[0xff; 13]);
            let known = table.range(prefix.as_slice()..=end.as_slice())?.count();
            if known >= DOUBLE_SIGNS_PER_VALIDATOR || table.get(key.as_slice())?.is_some() {
                false
            } else {
                table.insert(key.as_slice(), encoding::encode(proof).as_slice())?;
                true
            }
        };
        write.commit()?;
        Ok(added)
    }

    /// The recorded proofs of double-signing, at most `limit`.
    pub fn double_signs(&self, limit: usize) -> anyhow::Result<Vec<DoubleSign>> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(DOUBLE_SIGNS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            if out.len() >= limit {
                break;
            }
            let (_, value) = entry?;
            match encoding::decode::<DoubleSign>(value.value(), MAX_DOUBLE_SIGN_BYTES) {
                Ok(proof) => out.push(proof),
                Err(_) => {
                    tracing::warn!("a stored proof of double-signing is damaged; skipping it")
                }
            }
        }
        Ok(out)
    }

    /// Keeps `voucher` as the latest accepted on its channel, durably.
    pub fn put_voucher(&self, voucher: &Signed<Voucher>) -> anyhow::Result<()> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(VOUCHERS)?;
            table.insert(
                voucher.body.channel.0.as_slice(),
                encoding::encode(voucher).as_slice(),
            )?;
        }
        write.commit()?;
        Ok(())
    }

    /// Forgets the voucher of `channel` (settled in full, or the channel is gone).
    pub fn remove_voucher(&self, channel: &Hash) -> anyhow::Result<()> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(VOUCHERS)?;
            table.remove(channel.0.as_slice())?;
        }
        write.commit()?;
        Ok(())
    }

    /// Every kept voucher. A damaged record is skipped with a warning (the channel's payment
    /// is then lost to this relay, not its other records).
    pub fn vouchers(&self) -> anyhow::Result<Vec<Signed<Voucher>>> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(VOUCHERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            match encoding::decode::<Signed<Voucher>>(value.value(), MAX_VOUCHER_BYTES) {
                Ok(v) if v.body.channel.0.as_slice() == key.value() => out.push(v),
                _ => tracing::warn!("a stored voucher is damaged; skipping it"),
            }
        }
        Ok(out)
    }

    /// Size of the database file in bytes.
    pub fn file_size(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(LEDGER_FILE))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

fn write_nodes(write: &redb::WriteTransaction, batch: &NodeBatch) -> anyhow::Result<()> {
    let mut nodes = write.open_table(NODES)?;
    for (key, node) in batch.nodes() {
        nodes.insert(
            encoding::encode(key).as_slice(),
            encoding::encode(node).as_slice(),
        )?;
    }
    let mut values = write.open_table(VALUES)?;
    for ((version, key_hash), value) in batch.values() {
        values.insert(
            value_key(key_hash, *version).as_slice(),
            encoding::encode(value).as_slice(),
        )?;
    }
    Ok(())
}

/// A read transaction: the tree, the state and the blocks as of one moment.
pub struct Snapshot {
    txn: ReadTransaction,
    height: Option<u64>,
    /// Set when a state read failed: whatever was computed from this snapshot is then void.
    read_failed: std::cell::Cell<bool>,
}

impl Snapshot {
    /// The latest committed height (0: only the genesis).
    pub fn height(&self) -> u64 {
        self.height.unwrap_or(0)
    }

    /// Whether a state read through [`StateRead`] failed (and returned nothing).
    pub fn read_failed(&self) -> bool {
        self.read_failed.get()
    }

    pub fn block(&self, height: u64) -> anyhow::Result<Option<Block>> {
        let blocks = match self.txn.open_table(BLOCKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(bytes) = blocks.get(height)? else {
            return Ok(None);
        };
        let block = encoding::decode(bytes.value(), MAX_BLOCK_BYTES)
            .with_context(|| format!("block {height} in the database is damaged"))?;
        Ok(Some(block))
    }

    /// The heights at `from` or later of the blocks that elected a new set, at most `limit`.
    pub fn epoch_heights(&self, from: u64, limit: usize) -> anyhow::Result<Vec<u64>> {
        let table = match self.txn.open_table(EPOCHS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.range(from..)?.take(limit) {
            out.push(entry?.0.value());
        }
        Ok(out)
    }

    /// The latest block's header, or `None` at genesis.
    pub fn latest_block(&self) -> anyhow::Result<Option<Block>> {
        match self.height() {
            0 => Ok(None),
            h => self.block(h),
        }
    }

    pub fn latest_header(&self) -> anyhow::Result<Option<Header>> {
        Ok(self.latest_block()?.map(|b| b.header))
    }

    pub fn state_root(&self) -> Result<Hash, TreeError> {
        merkle::root(self, self.height())
    }
}

fn backend(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("ledger database: {e}")
}

impl TreeReader for Snapshot {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let nodes = match self.txn.open_table(NODES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let Some(bytes) = nodes.get(encoding::encode(node_key).as_slice())? else {
            return Ok(None);
        };
        let node = encoding::decode(bytes.value(), MAX_BLOCK_BYTES).map_err(backend)?;
        Ok(Some(node))
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let values = match self.txn.open_table(VALUES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let low = value_key(&key_hash, 0);
        let high = value_key(&key_hash, max_version);
        let mut range = values.range(low.as_slice()..=high.as_slice())?;
        let Some(entry) = range.next_back() else {
            return Ok(None);
        };
        let (_, bytes) = entry?;
        let value: Option<OwnedValue> =
            encoding::decode(bytes.value(), MAX_BLOCK_BYTES).map_err(backend)?;
        Ok(value)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only used when restoring a tree from a snapshot, which the relay does not do.
        bail!("restoring the state tree from a snapshot is not supported")
    }
}

/// The latest state, for applying transactions and checking them in the mempool.
impl StateRead for Snapshot {
    fn get(&self, key: &StateKey) -> Option<StateValue> {
        match merkle::read(self, key, self.height()) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(%e, ?key, "reading the ledger state failed");
                self.read_failed.set(true);
                None
            }
        }
    }
}

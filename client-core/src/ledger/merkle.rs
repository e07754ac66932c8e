//! The state commitment: a Jellyfish Merkle tree (`jmt`) over the state, hashed with BLAKE3.
//!
//! Each [`StateKey`] sits at the leaf [`StateKey::hash`]; its value is the canonical encoding
//! of the [`StateValue`]. The tree is versioned by block height (genesis is version 0), so a
//! relay can prove a value as of any block it keeps. A proof shows either that the key holds
//! exactly this value or that the key is absent; [`verify_read`] is what the browser runs on
//! every state read.
//!
//! Storage is the caller's: anything implementing `jmt`'s `TreeReader` — the relay's database,
//! or [`MemoryTree`] for tests and benchmarks.

use super::apply::{Changes, StateRead};
use super::state::{StateKey, StateValue};
use crate::encoding;
use crate::hash::Hash;
use borsh::{BorshDeserialize, BorshSerialize};
use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader, TreeWriter};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, Version};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// BLAKE3 as `jmt`'s hash function (for leaves, values and inner nodes).
#[derive(Clone)]
pub struct Blake3Jmt(blake3::Hasher);

impl jmt::SimpleHasher for Blake3Jmt {
    fn new() -> Self {
        Blake3Jmt(blake3::Hasher::new())
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// The largest encoded proof accepted: 256 siblings of 65 bytes plus a leaf, with room.
pub const MAX_PROOF_BYTES: usize = 20 * 1024;

/// The root of an empty tree.
pub fn empty_root() -> Hash {
    Hash(JellyfishMerkleTree::<MemoryTree, Blake3Jmt>::EMPTY_ROOT.0)
}

/// A proof, in its canonical encoding, that a key holds a value or is absent.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateProof(pub Vec<u8>);

/// Why a proven read was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the proof is malformed: {0}")]
    Malformed(String),
    #[error("the proof does not match the state root: {0}")]
    Mismatch(String),
    #[error("the value is not of the kind stored under this key")]
    WrongKind,
}

/// Checks that under `root`, `key` holds `value` (or, for `None`, holds nothing).
pub fn verify_read(
    root: &Hash,
    key: &StateKey,
    value: Option<&StateValue>,
    proof: &StateProof,
) -> Result<(), ProofError> {
    if let Some(value) = value
        && !value.fits(key)
    {
        return Err(ProofError::WrongKind);
    }
    let parsed: jmt::proof::SparseMerkleProof<Blake3Jmt> =
        encoding::decode(&proof.0, MAX_PROOF_BYTES)
            .map_err(|e| ProofError::Malformed(e.to_string()))?;
    let bytes = value.map(encoding::encode);
    parsed
        .verify(RootHash(root.0), KeyHash(key.hash().0), bytes)
        .map_err(|e| ProofError::Mismatch(e.to_string()))
}

/// Reading from a tree storage failed (the relay's database, say).
#[derive(Debug, thiserror::Error)]
#[error("state tree: {0}")]
pub struct TreeError(pub String);

fn tree_error(e: impl std::fmt::Display) -> TreeError {
    TreeError(e.to_string())
}

/// Computes the new root after `changes` at `version`, and the nodes to store. Every version
/// must be written in turn (an empty `changes` carries the root forward).
pub fn update<R: TreeReader>(
    reader: &R,
    changes: &Changes,
    version: Version,
) -> Result<(Hash, NodeBatch), TreeError> {
    let tree = JellyfishMerkleTree::<R, Blake3Jmt>::new(reader);
    let set = changes
        .iter()
        .map(|(key, value)| (KeyHash(key.hash().0), value.as_ref().map(encoding::encode)));
    let (root, batch) = tree.put_value_set(set, version).map_err(tree_error)?;
    Ok((Hash(root.0), batch.node_batch))
}

/// A key's value at `version` and the proof of it (or of its absence).
pub fn prove<R: TreeReader>(
    reader: &R,
    key: &StateKey,
    version: Version,
) -> Result<(Option<StateValue>, StateProof), TreeError> {
    let tree = JellyfishMerkleTree::<R, Blake3Jmt>::new(reader);
    let (bytes, proof) = tree
        .get_with_proof(KeyHash(key.hash().0), version)
        .map_err(tree_error)?;
    let value = bytes
        .map(|b| encoding::decode::<StateValue>(&b, usize::MAX))
        .transpose()
        .map_err(tree_error)?;
    Ok((value, StateProof(encoding::encode(&proof))))
}

/// The root at `version`.
pub fn root<R: TreeReader>(reader: &R, version: Version) -> Result<Hash, TreeError> {
    JellyfishMerkleTree::<R, Blake3Jmt>::new(reader)
        .get_root_hash(version)
        .map(|r| Hash(r.0))
        .map_err(tree_error)
}

/// Reads a value at `version` straight from a tree store, without a proof.
pub fn read<R: TreeReader>(
    reader: &R,
    key: &StateKey,
    version: Version,
) -> Result<Option<StateValue>, TreeError> {
    reader
        .get_value_option(version, KeyHash(key.hash().0))
        .map_err(tree_error)?
        .map(|b| encoding::decode::<StateValue>(&b, usize::MAX))
        .transpose()
        .map_err(tree_error)
}

/// A tree kept in memory: for tests, benchmarks and tools.
#[derive(Default)]
pub struct MemoryTree {
    nodes: RwLock<BTreeMap<NodeKey, Node>>,
    values: RwLock<BTreeMap<(KeyHash, Version), Option<OwnedValue>>>,
    latest: RwLock<Option<Version>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `changes` as the next version, returning the new root.
    pub fn commit(&self, changes: &Changes) -> Result<(Hash, Version), TreeError> {
        let version = self.latest_version().map_or(0, |v| v + 1);
        let (root, batch) = update(self, changes, version)?;
        self.write_node_batch(&batch).map_err(tree_error)?;
        *self.latest.write().map_err(tree_error)? = Some(version);
        Ok((root, version))
    }

    pub fn latest_version(&self) -> Option<Version> {
        self.latest.read().ok().and_then(|v| *v)
    }

    /// How many nodes it holds (for size estimates).
    pub fn node_count(&self) -> usize {
        self.nodes.read().map(|n| n.len()).unwrap_or(0)
    }
}

impl TreeReader for MemoryTree {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let nodes = self.nodes.read().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let values = self
            .values
            .read()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(values
            .range((key_hash, 0)..=(key_hash, max_version))
            .next_back()
            .and_then(|(_, v)| v.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        let nodes = self.nodes.read().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(nodes
            .iter()
            .filter_map(|(k, n)| match n {
                Node::Leaf(leaf) => Some((k.clone(), leaf.clone())),
                _ => None,
            })
            .max_by_key(|(_, leaf)| leaf.key_hash()))
    }
}

impl TreeWriter for MemoryTree {
    fn write_node_batch(&self, batch: &NodeBatch) -> anyhow::Result<()> {
        let mut nodes = self
            .nodes
            .write()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        nodes.extend(batch.nodes().iter().map(|(k, n)| (k.clone(), n.clone())));
        drop(nodes);
        let mut values = self
            .values
            .write()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        values.extend(
            batch
                .values()
                .iter()
                .map(|((version, key), v)| ((*key, *version), v.clone())),
        );
        Ok(())
    }
}

/// The latest state of a [`MemoryTree`], for applying transactions.
impl StateRead for MemoryTree {
    fn get(&self, key: &StateKey) -> Option<StateValue> {
        let version = self.latest_version()?;
        read(self, key, version).ok().flatten()
    }
}

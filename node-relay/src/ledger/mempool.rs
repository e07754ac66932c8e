//! Transactions waiting for a block.
//!
//! Admission checks what can be checked without running the transaction — size, signature,
//! network, fee, nonce window, that the sender can pay the fee — and bounds the pool in total
//! and per sender, so that a flood from one key neither fills the pool nor costs the relay
//! more than a signature check per transaction. What is admitted is ordered by sender and
//! nonce; a block takes each sender's transactions in nonce order, without gaps.

use client_core::encoding;
use client_core::hash::Hash;
use client_core::identity::PublicKey;
use client_core::job::fraud::Judge;
use client_core::ledger::state::Account;
use client_core::ledger::tx::{size_limit, tx_id};
use client_core::ledger::{
    BlockContext, Params, SignedTx, StateKey, StateRead, StateValue, TxError, TxKind,
    apply_verified_judged,
};
use std::collections::{BTreeMap, HashSet};

/// Bounds of the pool.
#[derive(Debug, Clone, Copy)]
pub struct MempoolLimits {
    pub max_txs: usize,
    /// Encoded bytes of all pending transactions (fraud proofs may be 512 KiB each).
    pub max_bytes: usize,
    /// Pending transactions per sender (also how far ahead of its nonce a sender may go).
    pub per_sender: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: 20_000,
            max_bytes: 64 << 20,
            per_sender: 32,
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("{0}")]
    Tx(#[from] TxError),
    #[error("the relay's mempool is full ({0} transactions); try again shortly")]
    Full(usize),
    #[error("this account has {0} transactions pending already; wait for a block")]
    SenderLimit(usize),
    #[error("nonce {nonce} is too far ahead: the account's next nonce is {next}")]
    NonceTooFar { nonce: u64, next: u64 },
    #[error(
        "nonce {nonce} leaves a gap: the account's next nonce, after what is pending, is {next}"
    )]
    NonceGap { nonce: u64, next: u64 },
    #[error("a transaction with nonce {0} from this account is already pending")]
    NonceTaken(u64),
    #[error(
        "a fraud proof must be its sender's next transaction (nothing of it pending): it is checked in full before it is kept"
    )]
    FraudProofQueued,
    #[error("this transaction is already pending")]
    Duplicate,
}

#[derive(Default)]
pub struct Mempool {
    limits: MempoolLimits,
    by_sender: BTreeMap<PublicKey, BTreeMap<u64, (Hash, SignedTx)>>,
    ids: HashSet<Hash>,
    /// Encoded bytes of what is pending.
    bytes: usize,
}

fn account(state: &impl StateRead, key: &PublicKey) -> Account {
    match state.get(&StateKey::Account(*key)) {
        Some(StateValue::Account(a)) => a,
        _ => Account::default(),
    }
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Self {
        Mempool {
            limits,
            ..Mempool::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The nonce `sender`'s next transaction needs: its account's `state_nonce` plus what
    /// it already has waiting here.
    pub fn next_nonce(&self, sender: &PublicKey, state_nonce: u64) -> u64 {
        let waiting = self
            .by_sender
            .get(sender)
            .map_or(0, |p| ready_run(p, state_nonce).len());
        state_nonce + waiting as u64
    }

    /// How many of `sender`'s transactions are waiting.
    pub fn pending_from(&self, sender: &PublicKey) -> usize {
        self.by_sender.get(sender).map_or(0, BTreeMap::len)
    }

    /// Checks `tx` against `state` (the latest block) as the next block, of height
    /// `next_height`, would, and keeps it for a block.
    pub fn admit(
        &mut self,
        state: &impl StateRead,
        network_id: &str,
        next_height: u64,
        now_ms: u64,
        tx: SignedTx,
        judge: &dyn Judge,
    ) -> Result<Hash, AdmitError> {
        let len = encoding::encode(&tx).len();
        let limit = size_limit(&tx.body.kind);
        if len > limit {
            return Err(TxError::TooLarge { len, limit }.into());
        }
        if tx.body.network_id != network_id {
            return Err(TxError::WrongNetwork {
                expected: network_id.to_owned(),
                got: tx.body.network_id.clone(),
            }
            .into());
        }
        let id = tx_id(&tx);
        if self.ids.contains(&id) {
            return Err(AdmitError::Duplicate);
        }
        tx.verify().map_err(|_| TxError::BadSignature)?;
        let params = match state.get(&StateKey::Params) {
            Some(StateValue::Params(p)) => p,
            _ => return Err(TxError::NoGenesis.into()),
        };
        check_fee(&params, len, &tx)?;
        let sender = tx.signer;
        let current = account(state, &sender);
        if tx.body.nonce < current.nonce {
            return Err(TxError::WrongNonce {
                expected: current.nonce,
                got: tx.body.nonce,
            }
            .into());
        }
        let window = u64::try_from(self.limits.per_sender).unwrap_or(u64::MAX);
        if tx.body.nonce >= current.nonce.saturating_add(window) {
            return Err(AdmitError::NonceTooFar {
                nonce: tx.body.nonce,
                next: current.nonce,
            });
        }
        let pending = self.by_sender.get(&sender);
        if pending.is_some_and(|p| p.contains_key(&tx.body.nonce)) {
            return Err(AdmitError::NonceTaken(tx.body.nonce));
        }
        if pending.is_some_and(|p| p.len() >= self.limits.per_sender) {
            return Err(AdmitError::SenderLimit(self.limits.per_sender));
        }
        // No gaps: a transaction must follow the account's nonce and what is already pending,
        // so nothing can sit in the pool that no block could ever take.
        let run = pending.map_or_else(Vec::new, |p| ready_run(p, current.nonce));
        let next = current.nonce + run.len() as u64;
        if tx.body.nonce != next {
            return Err(AdmitError::NonceGap {
                nonce: tx.body.nonce,
                next,
            });
        }
        // Every pending fee, this one included, must be payable from the committed balance
        // (plus the faucet's amount if a pending transaction draws it).
        let faucet = |t: &SignedTx| matches!(t.body.kind, TxKind::Faucet);
        let mut available = current.balance;
        if run.iter().any(|t| faucet(t)) || faucet(&tx) {
            available = available.saturating_add(params.faucet_amount.unwrap_or(0));
        }
        let fees = run
            .iter()
            .fold(tx.body.fee, |sum, t| sum.saturating_add(t.body.fee));
        if fees > available {
            return Err(TxError::InsufficientBalance {
                needed: fees,
                available,
            }
            .into());
        }
        // The first in line runs against the latest state now: what would be refused in the
        // next block (faucet off or used, an invalid offer, an unknown channel, …) is refused
        // here, before it costs a block anything.
        // A large transaction is kept only once checked in full against the latest state: so
        // a fraud proof is its sender's next transaction, never one queued behind others.
        if matches!(tx.body.kind, TxKind::FraudProof { .. }) && !run.is_empty() {
            return Err(AdmitError::FraudProofQueued);
        }
        if run.is_empty() {
            let ctx = BlockContext {
                network_id: network_id.to_owned(),
                height: next_height,
                time_ms: now_ms,
            };
            apply_verified_judged(state, &ctx, &tx, judge)?;
        }
        if self.ids.len() >= self.limits.max_txs
            || self.bytes.saturating_add(len) > self.limits.max_bytes
        {
            return Err(AdmitError::Full(self.limits.max_txs));
        }
        self.ids.insert(id);
        self.bytes += len;
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(tx.body.nonce, (id, tx));
        Ok(id)
    }

    /// Up to `max` transactions for the next block: for each sender, its pending transactions
    /// from its current nonce on, without gaps. Senders take turns, so one busy sender does not
    /// crowd out the rest.
    pub fn candidates(
        &self,
        state: &impl StateRead,
        max: usize,
        max_bytes: usize,
    ) -> Vec<SignedTx> {
        let mut queues: Vec<Vec<&SignedTx>> = self
            .by_sender
            .iter()
            .map(|(sender, txs)| ready_run(txs, account(state, sender).nonce))
            .filter(|run| !run.is_empty())
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut round = 0;
        'rounds: while out.len() < max && queues.iter().any(|q| q.len() > round) {
            for queue in &mut queues {
                if let Some(tx) = queue.get(round) {
                    bytes += encoding::encode(*tx).len();
                    if bytes > max_bytes || out.len() == max {
                        break 'rounds;
                    }
                    out.push((*tx).clone());
                }
            }
            round += 1;
        }
        out
    }

    /// After a block: forgets what was included or can no longer apply (nonce already used),
    /// and the transactions in `dropped` together with their sender's later ones, which now
    /// have a gap before them. Returns the ids removed as dropped.
    pub fn prune(&mut self, state: &impl StateRead, dropped: &[(PublicKey, u64)]) -> Vec<Hash> {
        let mut removed_dropped = Vec::new();
        let mut dropped_from: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for (sender, nonce) in dropped {
            let from = dropped_from.entry(*sender).or_insert(*nonce);
            *from = (*from).min(*nonce);
        }
        let senders: Vec<PublicKey> = self.by_sender.keys().copied().collect();
        for sender in senders {
            let next = account(state, &sender).nonce;
            let Some(txs) = self.by_sender.get_mut(&sender) else {
                continue;
            };
            let stale: Vec<u64> = txs.range(..next).map(|(n, _)| *n).collect();
            for nonce in stale {
                if let Some((id, tx)) = txs.remove(&nonce) {
                    self.ids.remove(&id);
                    self.bytes = self.bytes.saturating_sub(encoding::encode(&tx).len());
                }
            }
            if let Some(from) = dropped_from.get(&sender) {
                let gone: Vec<u64> = txs.range(*from..).map(|(n, _)| *n).collect();
                for nonce in gone {
                    if let Some((id, tx)) = txs.remove(&nonce) {
                        self.ids.remove(&id);
                        self.bytes = self.bytes.saturating_sub(encoding::encode(&tx).len());
                        removed_dropped.push(id);
                    }
                }
            }
            if txs.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        removed_dropped
    }
}

/// A sender's pending transactions with consecutive nonces from `first` on; a gap ends it.
fn ready_run(txs: &BTreeMap<u64, (Hash, SignedTx)>, first: u64) -> Vec<&SignedTx> {
    txs.range(first..)
        .zip(first..)
        .take_while(|((nonce, _), expected)| **nonce == *expected)
        .map(|((_, (_, tx)), _)| tx)
        .collect()
}

fn check_fee(params: &Params, len: usize, tx: &SignedTx) -> Result<(), TxError> {
    let minimum = params.min_fee(len);
    if tx.body.fee < minimum {
        return Err(TxError::FeeTooLow {
            minimum,
            offered: tx.body.fee,
        });
    }
    Ok(())
}

//! The state machine: `apply(state, block context, tx) → changes`, pure and deterministic.
//!
//! A transaction either applies in full or not at all: [`apply`] reads through an [`Overlay`]
//! and returns the changes it would make, which the caller merges (into the next transaction's
//! overlay, into a block, into the database). A refused transaction changes nothing — not even
//! its sender's nonce — so the block producer leaves it out; a block is valid only if every
//! transaction in it applies.

use super::state::{
    Account, Amount, Channel, MAX_CHANNELS_PER_CUSTOMER, MAX_PROVIDERS, Params, Provider, StateKey,
    StateValue, Unbonding,
};
use super::tx::{MAX_TX_BYTES, SignedTx, TxError, TxKind, channel_id};
use crate::encoding;
use crate::hash::Hash;
use crate::identity::PublicKey;
use std::collections::BTreeMap;

/// Reads the current state.
pub trait StateRead {
    fn get(&self, key: &StateKey) -> Option<StateValue>;
}

impl StateRead for BTreeMap<StateKey, StateValue> {
    fn get(&self, key: &StateKey) -> Option<StateValue> {
        BTreeMap::get(self, key).cloned()
    }
}

/// Writes and deletions (`None`) to make to the state.
pub type Changes = BTreeMap<StateKey, Option<StateValue>>;

/// Applies `changes` to an in-memory state.
pub fn merge_into(state: &mut BTreeMap<StateKey, StateValue>, changes: Changes) {
    for (key, value) in changes {
        match value {
            Some(value) => state.insert(key, value),
            None => state.remove(&key),
        };
    }
}

/// Pending changes on top of a base state.
pub struct Overlay<'a, S: ?Sized> {
    base: &'a S,
    changes: Changes,
}

impl<'a, S: StateRead + ?Sized> Overlay<'a, S> {
    pub fn new(base: &'a S) -> Self {
        Overlay {
            base,
            changes: Changes::new(),
        }
    }

    pub fn into_changes(self) -> Changes {
        self.changes
    }

    /// Takes on changes made by an earlier transaction of the same block.
    pub fn extend(&mut self, changes: Changes) {
        self.changes.extend(changes);
    }

    fn put(&mut self, key: StateKey, value: StateValue) {
        self.changes.insert(key, Some(value));
    }

    fn delete(&mut self, key: StateKey) {
        self.changes.insert(key, None);
    }

    fn params(&self) -> Result<Params, TxError> {
        match self.get(&StateKey::Params) {
            Some(StateValue::Params(params)) => Ok(params),
            _ => Err(TxError::NoGenesis),
        }
    }

    fn account(&self, key: &PublicKey) -> Account {
        match self.get(&StateKey::Account(*key)) {
            Some(StateValue::Account(account)) => account,
            _ => Account::default(),
        }
    }

    fn put_account(&mut self, key: PublicKey, account: Account) {
        self.put(StateKey::Account(key), StateValue::Account(account));
    }

    fn provider(&self, key: &PublicKey) -> Option<Provider> {
        match self.get(&StateKey::Provider(*key)) {
            Some(StateValue::Provider(provider)) => Some(provider),
            _ => None,
        }
    }

    fn channel(&self, id: &Hash) -> Result<Channel, TxError> {
        match self.get(&StateKey::Channel(*id)) {
            Some(StateValue::Channel(channel)) => Ok(channel),
            _ => Err(TxError::UnknownChannel(*id)),
        }
    }

    fn keys(&self, key: &StateKey) -> Vec<PublicKey> {
        match self.get(key) {
            Some(StateValue::Keys(keys)) => keys,
            _ => Vec::new(),
        }
    }

    fn hashes(&self, key: &StateKey) -> Vec<Hash> {
        match self.get(key) {
            Some(StateValue::Hashes(hashes)) => hashes,
            _ => Vec::new(),
        }
    }

    fn amount(&self, key: &StateKey) -> Amount {
        match self.get(key) {
            Some(StateValue::Amount(amount)) => amount,
            _ => 0,
        }
    }

    /// Adds `amount` to `key`'s balance.
    fn credit(&mut self, key: &PublicKey, amount: Amount) -> Result<(), TxError> {
        let mut account = self.account(key);
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.put_account(*key, account);
        Ok(())
    }

    /// Takes `amount` from `key`'s balance.
    fn debit(&mut self, key: &PublicKey, amount: Amount) -> Result<(), TxError> {
        let mut account = self.account(key);
        account.balance =
            account
                .balance
                .checked_sub(amount)
                .ok_or(TxError::InsufficientBalance {
                    needed: amount,
                    available: account.balance,
                })?;
        self.put_account(*key, account);
        Ok(())
    }
}

impl<S: StateRead + ?Sized> StateRead for Overlay<'_, S> {
    fn get(&self, key: &StateKey) -> Option<StateValue> {
        match self.changes.get(key) {
            Some(change) => change.clone(),
            None => self.base.get(key),
        }
    }
}

/// Where and when a block's transactions run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockContext {
    pub network_id: String,
    pub height: u64,
    /// The block's time: the only clock the state machine knows.
    pub time_ms: u64,
}

/// Checks `tx`'s signature, then applies it. Returns the changes it makes.
pub fn apply(
    state: &(impl StateRead + ?Sized),
    ctx: &BlockContext,
    tx: &SignedTx,
) -> Result<Changes, TxError> {
    tx.verify().map_err(|_| TxError::BadSignature)?;
    apply_verified(state, ctx, tx)
}

/// [`apply`] for a transaction whose signature the caller has already checked (for instance
/// in a batch).
pub fn apply_verified(
    state: &(impl StateRead + ?Sized),
    ctx: &BlockContext,
    tx: &SignedTx,
) -> Result<Changes, TxError> {
    let mut s = Overlay::new(state);
    let sender = tx.signer;
    let body = &tx.body;
    if body.network_id != ctx.network_id {
        return Err(TxError::WrongNetwork {
            expected: ctx.network_id.clone(),
            got: body.network_id.clone(),
        });
    }
    let len = encoding::encode(tx).len();
    if len > MAX_TX_BYTES {
        return Err(TxError::TooLarge {
            len,
            limit: MAX_TX_BYTES,
        });
    }
    let params = s.params()?;
    let minimum = params.min_fee(len);
    if body.fee < minimum {
        return Err(TxError::FeeTooLow {
            minimum,
            offered: body.fee,
        });
    }

    // The nonce and the fee, which every transaction pays (the faucet's comes out of the
    // amount it gives).
    let mut account = s.account(&sender);
    if body.nonce != account.nonce {
        return Err(TxError::WrongNonce {
            expected: account.nonce,
            got: body.nonce,
        });
    }
    account.nonce += 1;
    if let TxKind::Faucet = body.kind {
        let amount = params.faucet_amount.ok_or(TxError::FaucetDisabled)?;
        if account.faucet_used {
            return Err(TxError::FaucetUsed);
        }
        let net = amount
            .checked_sub(body.fee)
            .ok_or(TxError::FaucetBelowFee)?;
        account.faucet_used = true;
        account.balance = account.balance.checked_add(net).ok_or(TxError::Overflow)?;
    } else {
        account.balance =
            account
                .balance
                .checked_sub(body.fee)
                .ok_or(TxError::InsufficientBalance {
                    needed: body.fee,
                    available: account.balance,
                })?;
    }
    s.put_account(sender, account);
    let treasury = s
        .amount(&StateKey::Treasury)
        .checked_add(body.fee)
        .ok_or(TxError::Overflow)?;
    s.put(StateKey::Treasury, StateValue::Amount(treasury));

    match &body.kind {
        TxKind::Faucet => {}
        TxKind::Transfer { to, amount } => {
            if *amount == 0 {
                return Err(TxError::ZeroAmount);
            }
            s.debit(&sender, *amount)?;
            s.credit(to, *amount)?;
        }
        TxKind::RegisterProvider { stake, offer } => {
            if s.provider(&sender).is_some() {
                return Err(TxError::AlreadyProvider);
            }
            if *stake < params.min_stake {
                return Err(TxError::StakeTooLow {
                    minimum: params.min_stake,
                    offered: *stake,
                });
            }
            if let Some(problem) = offer.problem() {
                return Err(TxError::InvalidOffer(problem));
            }
            let mut providers = s.keys(&StateKey::Providers);
            if providers.len() >= MAX_PROVIDERS {
                return Err(TxError::TooManyProviders {
                    limit: MAX_PROVIDERS,
                });
            }
            s.debit(&sender, *stake)?;
            s.put(
                StateKey::Provider(sender),
                StateValue::Provider(Provider {
                    stake: *stake,
                    offer: offer.clone(),
                    registered_at_ms: ctx.time_ms,
                    unbonding: None,
                }),
            );
            if let Err(at) = providers.binary_search(&sender) {
                providers.insert(at, sender);
            }
            s.put(StateKey::Providers, StateValue::Keys(providers));
        }
        TxKind::UpdateOffer { offer } => {
            let mut provider = s
                .provider(&sender)
                .ok_or(TxError::UnknownProvider(sender))?;
            if !provider.active() {
                return Err(TxError::ProviderUnbonding);
            }
            if let Some(problem) = offer.problem() {
                return Err(TxError::InvalidOffer(problem));
            }
            provider.offer = offer.clone();
            s.put(StateKey::Provider(sender), StateValue::Provider(provider));
        }
        TxKind::Unbond => {
            let mut provider = s
                .provider(&sender)
                .ok_or(TxError::UnknownProvider(sender))?;
            if !provider.active() {
                return Err(TxError::AlreadyUnbonding);
            }
            provider.unbonding = Some(Unbonding {
                amount: provider.stake,
                release_at_ms: ctx.time_ms.saturating_add(params.unbonding_delay_ms),
            });
            provider.stake = 0;
            s.put(StateKey::Provider(sender), StateValue::Provider(provider));
        }
        TxKind::Withdraw => {
            let provider = s
                .provider(&sender)
                .ok_or(TxError::UnknownProvider(sender))?;
            let unbonding = provider.unbonding.ok_or(TxError::NotUnbonding)?;
            if ctx.time_ms < unbonding.release_at_ms {
                return Err(TxError::StillLocked {
                    release_at_ms: unbonding.release_at_ms,
                    now_ms: ctx.time_ms,
                });
            }
            s.credit(&sender, unbonding.amount)?;
            s.delete(StateKey::Provider(sender));
            let mut providers = s.keys(&StateKey::Providers);
            providers.retain(|p| *p != sender);
            s.put(StateKey::Providers, StateValue::Keys(providers));
        }
        TxKind::OpenChannel { provider, amount } => {
            if *amount == 0 {
                return Err(TxError::ZeroAmount);
            }
            if *provider == sender {
                return Err(TxError::SelfChannel);
            }
            let registered = s
                .provider(provider)
                .ok_or(TxError::UnknownProvider(*provider))?;
            if !registered.active() {
                return Err(TxError::ProviderUnbonding);
            }
            let list_key = StateKey::CustomerChannels(sender);
            let mut open = s.hashes(&list_key);
            if open.len() >= MAX_CHANNELS_PER_CUSTOMER {
                return Err(TxError::TooManyChannels {
                    limit: MAX_CHANNELS_PER_CUSTOMER,
                });
            }
            s.debit(&sender, *amount)?;
            let id = channel_id(&sender, body.nonce);
            s.put(
                StateKey::Channel(id),
                StateValue::Channel(Channel {
                    customer: sender,
                    provider: *provider,
                    deposit: *amount,
                    settled: 0,
                    expires_at_ms: ctx.time_ms.saturating_add(params.channel_timeout_ms),
                }),
            );
            open.push(id);
            s.put(list_key, StateValue::Hashes(open));
        }
        TxKind::TopUpChannel {
            channel: id,
            amount,
        } => {
            if *amount == 0 {
                return Err(TxError::ZeroAmount);
            }
            let mut channel = s.channel(id)?;
            if channel.customer != sender {
                return Err(TxError::NotChannelParty { role: "customer" });
            }
            s.debit(&sender, *amount)?;
            channel.deposit = channel
                .deposit
                .checked_add(*amount)
                .ok_or(TxError::Overflow)?;
            channel.expires_at_ms = channel
                .expires_at_ms
                .max(ctx.time_ms.saturating_add(params.channel_timeout_ms));
            s.put(StateKey::Channel(*id), StateValue::Channel(channel));
        }
        TxKind::CloseChannel { channel: id } => {
            let channel = s.channel(id)?;
            if channel.customer != sender {
                return Err(TxError::NotChannelParty { role: "customer" });
            }
            if ctx.time_ms < channel.expires_at_ms {
                return Err(TxError::ChannelNotExpired {
                    expires_at_ms: channel.expires_at_ms,
                    now_ms: ctx.time_ms,
                });
            }
            s.credit(&sender, channel.remaining())?;
            s.delete(StateKey::Channel(*id));
            let list_key = StateKey::CustomerChannels(sender);
            let mut open = s.hashes(&list_key);
            open.retain(|c| c != id);
            if open.is_empty() {
                s.delete(list_key);
            } else {
                s.put(list_key, StateValue::Hashes(open));
            }
        }
        TxKind::Settle { voucher } => {
            let id = voucher.body.channel;
            let mut channel = s.channel(&id)?;
            if channel.provider != sender {
                return Err(TxError::NotChannelParty { role: "provider" });
            }
            if voucher.body.network_id != ctx.network_id {
                return Err(TxError::VoucherNetwork {
                    got: voucher.body.network_id.clone(),
                });
            }
            if voucher.signer != channel.customer || voucher.verify().is_err() {
                return Err(TxError::VoucherSignature);
            }
            let cumulative = voucher.body.cumulative;
            if cumulative <= channel.settled {
                return Err(TxError::StaleVoucher {
                    settled: channel.settled,
                    cumulative,
                });
            }
            if cumulative > channel.deposit {
                return Err(TxError::VoucherExceedsDeposit {
                    cumulative,
                    deposit: channel.deposit,
                });
            }
            s.credit(&sender, cumulative - channel.settled)?;
            channel.settled = cumulative;
            s.put(StateKey::Channel(id), StateValue::Channel(channel));
        }
    }
    Ok(s.into_changes())
}

/// Checks the signatures of `txs`: all at once by batch verification (one multi-scalar
/// multiplication instead of one check each), and one by one — strictly, as [`apply`] does —
/// only if the batch fails, to find which.
///
/// Batch verification uses the cofactored equation and strict verification does not; they can
/// disagree only on signatures built with small-order components, which no honest signer makes
/// and which the relay's mempool (strict, one by one) never lets into a block.
pub fn verify_signatures(txs: &[SignedTx]) -> Vec<bool> {
    let messages: Vec<Vec<u8>> = txs
        .iter()
        .map(|tx| crate::signed::signing_bytes(&tx.body))
        .collect();
    let keys: Option<Vec<ed25519_dalek::VerifyingKey>> = txs
        .iter()
        .map(|tx| tx.signer.verifying_key().filter(|k| !k.is_weak()))
        .collect();
    if let Some(keys) = keys {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<ed25519_dalek::Signature> = txs
            .iter()
            .map(|tx| ed25519_dalek::Signature::from_bytes(&tx.signature.0))
            .collect();
        if ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok() {
            return vec![true; txs.len()];
        }
    }
    txs.iter().map(|tx| tx.verify().is_ok()).collect()
}

/// Applies `txs` in order on top of `state`, checking their signatures as a batch. Returns
/// every change of the transactions that applied, and each transaction's outcome (a refused one
/// contributes nothing).
pub fn apply_all(
    state: &(impl StateRead + ?Sized),
    ctx: &BlockContext,
    txs: &[SignedTx],
) -> (Changes, Vec<Result<(), TxError>>) {
    let signed = verify_signatures(txs);
    let mut overlay = Overlay::new(state);
    let mut outcomes = Vec::with_capacity(txs.len());
    for (tx, signature_ok) in txs.iter().zip(signed) {
        let outcome = if signature_ok {
            apply_verified(&overlay, ctx, tx)
        } else {
            Err(TxError::BadSignature)
        };
        match outcome {
            Ok(changes) => {
                overlay.extend(changes);
                outcomes.push(Ok(()));
            }
            Err(error) => outcomes.push(Err(error)),
        }
    }
    (overlay.into_changes(), outcomes)
}

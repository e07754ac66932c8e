//! The state machine: `apply(state, block context, tx) → changes`, pure and deterministic.
//!
//! A transaction either applies in full or not at all: [`apply`] reads through an [`Overlay`]
//! and returns the changes it would make, which the caller merges (into the next transaction's
//! overlay, into a block, into the database). A refused transaction changes nothing — not even
//! its sender's nonce — so the block producer leaves it out; a block is valid only if every
//! transaction in it applies.

use super::gov::{
    Action, MAX_DESCRIPTION, MAX_OPEN_PROPOSALS, MAX_TITLE, PowerHistory, Proposal, ProposalId,
    ProposalState, Status, Tally, VoteRecord,
};
use super::state::{
    Account, Amount, Channel, MAX_CHANNELS_PER_CUSTOMER, MAX_PROVIDERS, Params, Provider, Slash,
    StateKey, StateValue, Unbonding, fraud_id,
};
use super::tx::{SignedTx, TxError, TxKind, channel_id, size_limit};
use crate::encoding;
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::job::fraud::{self, Judge, NoJudge};
use std::collections::{BTreeMap, BTreeSet};

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

    fn proposal(&self, id: ProposalId) -> Result<Proposal, TxError> {
        match self.get(&StateKey::Proposal(id)) {
            Some(StateValue::Proposal(p)) => Ok(p),
            _ => Err(TxError::UnknownProposal(id)),
        }
    }

    fn ids(&self, key: &StateKey) -> Vec<ProposalId> {
        match self.get(key) {
            Some(StateValue::Ids(ids)) => ids,
            _ => Vec::new(),
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
/// in a batch). Fraud proofs are refused: there is no engine to judge them (see
/// [`apply_verified_judged`]).
pub fn apply_verified(
    state: &(impl StateRead + ?Sized),
    ctx: &BlockContext,
    tx: &SignedTx,
) -> Result<Changes, TxError> {
    apply_verified_judged(state, ctx, tx, &NoJudge)
}

/// [`apply_verified`], judging fraud proofs on `judge`'s engine: what validators, followers and
/// mempools run.
pub fn apply_verified_judged(
    state: &(impl StateRead + ?Sized),
    ctx: &BlockContext,
    tx: &SignedTx,
    judge: &dyn Judge,
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
    let limit = size_limit(&body.kind);
    if len > limit {
        return Err(TxError::TooLarge { len, limit });
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
                    candidate: false,
                    slashed: None,
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
        TxKind::FraudProof { proof } => {
            // Everything cheap first; the judge checks the evidence and re-runs a segment last.
            let receipt = proof
                .receipt
                .verify()
                .map_err(|_| TxError::Fraud(fraud::FraudError::ReceiptSignature))?;
            let liar = proof.receipt.signer;
            let record = StateKey::Fraud(fraud_id(&liar, &receipt.job));
            if s.get(&record).is_some() {
                return Err(TxError::FraudAlreadyProven);
            }
            let mut provider = s.provider(&liar).ok_or(TxError::UnknownProvider(liar))?;
            let proven = judge.verdict(proof).map_err(TxError::Fraud)?;
            let slash = slash(
                &mut provider,
                &params,
                ctx,
                &proven,
                receipt.payment.map_or(0, |p| p.price),
                sender,
            );
            s.credit(&slash.customer, slash.refund)?;
            s.credit(&sender, slash.bounty)?;
            let to_treasury = slash.amount - slash.refund - slash.bounty;
            let treasury = s
                .amount(&StateKey::Treasury)
                .checked_add(to_treasury)
                .ok_or(TxError::Overflow)?;
            s.put(StateKey::Treasury, StateValue::Amount(treasury));
            s.put(record, StateValue::Slash(slash));
            s.put(StateKey::Provider(liar), StateValue::Provider(provider));
        }
        TxKind::Candidacy { candidate } => {
            let mut provider = s
                .provider(&sender)
                .ok_or(TxError::UnknownProvider(sender))?;
            if !provider.active() {
                return Err(TxError::ProviderUnbonding);
            }
            provider.candidate = *candidate;
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
        TxKind::Propose {
            title,
            description,
            action,
        } => {
            let power = power_history(state, &sender).current();
            if power < params.gov.proposal_threshold {
                return Err(TxError::BelowProposalThreshold {
                    needed: params.gov.proposal_threshold,
                    power,
                });
            }
            if title.trim().is_empty() || title.len() > MAX_TITLE {
                return Err(TxError::InvalidProposal(format!(
                    "a title has 1 to {MAX_TITLE} characters"
                )));
            }
            if description.len() > MAX_DESCRIPTION {
                return Err(TxError::InvalidProposal(format!(
                    "a description has at most {MAX_DESCRIPTION} bytes"
                )));
            }
            if let Some(problem) = action.problem(&params) {
                return Err(TxError::InvalidProposal(problem));
            }
            let mut open = s.ids(&StateKey::OpenProposals);
            if open.len() >= MAX_OPEN_PROPOSALS {
                return Err(TxError::TooManyProposals {
                    limit: MAX_OPEN_PROPOSALS,
                });
            }
            let id = s.amount(&StateKey::NextProposal);
            let start_height = ctx.height.saturating_add(params.gov.voting_delay_blocks);
            let proposal = Proposal {
                id,
                proposer: sender,
                title: title.clone(),
                description: description.clone(),
                action: action.clone(),
                created_height: ctx.height,
                start_height,
                end_height: start_height.saturating_add(params.gov.voting_period_blocks - 1),
                quorum: params.gov.quorum,
                tally: Tally::default(),
                status: Status::Open,
            };
            s.put(StateKey::Proposal(id), StateValue::Proposal(proposal));
            s.put(StateKey::NextProposal, StateValue::Amount(id + 1));
            open.push(id);
            s.put(StateKey::OpenProposals, StateValue::Ids(open));
            let oldest = oldest_vote_start(&s).min(start_height);
            s.put(StateKey::OldestVoteStart, StateValue::Amount(oldest));
        }
        TxKind::Vote {
            proposal: id,
            choice,
        } => {
            let mut proposal = s.proposal(*id)?;
            let state_now = proposal.state(ctx.height);
            if state_now != ProposalState::Active {
                return Err(TxError::VotingClosed {
                    id: *id,
                    state: state_now.label(),
                    start: proposal.start_height,
                    end: proposal.end_height,
                });
            }
            let power = power_history(&s, &sender).before(proposal.start_height);
            if power == 0 {
                return Err(TxError::NoVotingPower(*id));
            }
            let key = StateKey::Vote(*id, sender);
            if let Some(StateValue::Vote(earlier)) = s.get(&key) {
                proposal.tally.remove(earlier.choice, earlier.power);
            }
            proposal.tally.add(*choice, power);
            s.put(
                key,
                StateValue::Vote(VoteRecord {
                    choice: *choice,
                    power,
                }),
            );
            s.put(StateKey::Proposal(*id), StateValue::Proposal(proposal));
        }
        TxKind::Delegate { to } => match to {
            Some(to) if *to == sender => return Err(TxError::SelfDelegation),
            Some(to) => s.put(StateKey::Delegate(sender), StateValue::Key(*to)),
            None => s.delete(StateKey::Delegate(sender)),
        },
        TxKind::CancelProposal { proposal: id } => {
            let mut proposal = s.proposal(*id)?;
            if proposal.proposer != sender {
                return Err(TxError::NotProposer);
            }
            let state_now = proposal.state(ctx.height);
            if state_now != ProposalState::Pending {
                return Err(TxError::NotPending {
                    id: *id,
                    state: state_now.label(),
                });
            }
            proposal.status = Status::Canceled { height: ctx.height };
            s.put(StateKey::Proposal(*id), StateValue::Proposal(proposal));
            close_proposals(&mut s, &[*id])?;
        }
    }
    reconcile_power(state, &mut s, ctx.height)?;
    Ok(s.into_changes())
}

fn power_history(state: &(impl StateRead + ?Sized), key: &PublicKey) -> PowerHistory {
    match state.get(&StateKey::Power(*key)) {
        Some(StateValue::Power(history)) => history,
        _ => PowerHistory::default(),
    }
}

fn delegate_of(state: &(impl StateRead + ?Sized), key: &PublicKey) -> PublicKey {
    match state.get(&StateKey::Delegate(*key)) {
        Some(StateValue::Key(to)) => to,
        _ => *key,
    }
}

fn balance_of(state: &(impl StateRead + ?Sized), key: &PublicKey) -> Amount {
    match state.get(&StateKey::Account(*key)) {
        Some(StateValue::Account(account)) => account.balance,
        _ => 0,
    }
}

fn oldest_vote_start(state: &(impl StateRead + ?Sized)) -> u64 {
    match state.get(&StateKey::OldestVoteStart) {
        Some(StateValue::Amount(height)) => height,
        _ => u64::MAX,
    }
}

/// Moves voting power to follow what `s` changed on top of `base`: for every account whose
/// balance or delegate changed, its old balance leaves its old delegate's power and its new
/// balance joins its new delegate's.
fn reconcile_power<S: StateRead + ?Sized>(
    base: &S,
    s: &mut Overlay<'_, S>,
    height: u64,
) -> Result<(), TxError> {
    let touched: BTreeSet<PublicKey> = s
        .changes
        .keys()
        .filter_map(|key| match key {
            StateKey::Account(a) | StateKey::Delegate(a) => Some(*a),
            _ => None,
        })
        .collect();
    let mut deltas: BTreeMap<PublicKey, i128> = BTreeMap::new();
    for account in touched {
        let (old_to, old_balance) = (delegate_of(base, &account), balance_of(base, &account));
        let (new_to, new_balance) = (delegate_of(&*s, &account), balance_of(&*s, &account));
        if (old_to, old_balance) == (new_to, new_balance) {
            continue;
        }
        *deltas.entry(old_to).or_default() -= i128::from(old_balance);
        *deltas.entry(new_to).or_default() += i128::from(new_balance);
    }
    let oldest = oldest_vote_start(&*s);
    for (delegate, delta) in deltas {
        if delta == 0 {
            continue;
        }
        let mut history = power_history(&*s, &delegate);
        let power = i128::from(history.current()) + delta;
        let power = Amount::try_from(power).map_err(|_| TxError::Overflow)?;
        history.record(height, power, oldest);
        s.put(StateKey::Power(delegate), StateValue::Power(history));
    }
    Ok(())
}

/// Takes final proposals off the open list and moves the power-history horizon.
fn close_proposals<S: StateRead + ?Sized>(
    s: &mut Overlay<'_, S>,
    ids: &[ProposalId],
) -> Result<(), TxError> {
    let mut open = s.ids(&StateKey::OpenProposals);
    open.retain(|id| !ids.contains(id));
    let mut oldest = u64::MAX;
    for id in &open {
        oldest = oldest.min(s.proposal(*id)?.start_height);
    }
    s.put(StateKey::OpenProposals, StateValue::Ids(open));
    s.put(StateKey::OldestVoteStart, StateValue::Amount(oldest));
    Ok(())
}

/// What the end of every block does, after its transactions: tallies proposals whose vote
/// ended, queues those that succeeded (one block later), and carries out queued proposals whose
/// timelock has passed. Deterministic and bounded by [`MAX_OPEN_PROPOSALS`].
pub fn end_block(state: &(impl StateRead + ?Sized), ctx: &BlockContext) -> Changes {
    let mut s = Overlay::new(state);
    s.extend(end_proposals(state, ctx));
    // The election comes last, so that stake moved and parameters changed in this block count.
    if let Some(set) = super::validators::election(&s, ctx.height) {
        s.put(StateKey::Validators, StateValue::Validators(set));
    }
    s.into_changes()
}

/// The governance part of [`end_block`]: tallies, queues, executes and expires proposals.
fn end_proposals(state: &(impl StateRead + ?Sized), ctx: &BlockContext) -> Changes {
    let mut s = Overlay::new(state);
    // Most blocks have no open proposal: one read and done.
    let open = s.ids(&StateKey::OpenProposals);
    if open.is_empty() {
        return Changes::new();
    }
    let Ok(params) = s.params() else {
        return Changes::new();
    };
    let height = ctx.height;
    let mut closed = Vec::new();
    for id in open {
        let Ok(mut proposal) = s.proposal(id) else {
            closed.push(id);
            continue;
        };
        let before = proposal.status.clone();
        match proposal.status {
            Status::Open if height >= proposal.end_height => {
                proposal.status = if proposal.tally.passes(proposal.quorum) {
                    Status::Succeeded { height }
                } else {
                    closed.push(id);
                    Status::Defeated { height }
                };
            }
            Status::Succeeded { .. } => {
                proposal.status = Status::Queued {
                    eta: height.saturating_add(params.gov.timelock_blocks),
                };
            }
            Status::Queued { eta } if height >= eta => {
                let outcome = {
                    let mut inner = Overlay::new(&s);
                    execute(&mut inner, &proposal.action).map(|()| inner.into_changes())
                };
                match outcome {
                    Ok(changes) => {
                        s.extend(changes);
                        proposal.status = Status::Executed { height };
                        closed.push(id);
                    }
                    Err(_) if height >= eta.saturating_add(params.gov.grace_blocks) => {
                        proposal.status = Status::Expired { height };
                        closed.push(id);
                    }
                    Err(_) => {}
                }
            }
            _ => {}
        }
        if proposal.status != before {
            s.put(StateKey::Proposal(id), StateValue::Proposal(proposal));
        }
    }
    if !closed.is_empty() && close_proposals(&mut s, &closed).is_err() {
        return Changes::new();
    }
    // A grant moved a balance: its power follows.
    if reconcile_power(state, &mut s, height).is_err() {
        return Changes::new();
    }
    s.into_changes()
}

/// Carries out a passed proposal's action; an error leaves it queued.
fn execute<S: StateRead + ?Sized>(s: &mut Overlay<'_, S>, action: &Action) -> Result<(), TxError> {
    match action {
        Action::Params(changes) => {
            let mut params = s.params()?;
            for change in changes {
                change.apply(&mut params);
            }
            if let Some(problem) = params.problem() {
                return Err(TxError::InvalidProposal(problem));
            }
            s.put(StateKey::Params, StateValue::Params(params));
        }
        Action::Grant { to, amount } => {
            let treasury = s.amount(&StateKey::Treasury);
            let left = treasury
                .checked_sub(*amount)
                .ok_or(TxError::InsufficientBalance {
                    needed: *amount,
                    available: treasury,
                })?;
            s.put(StateKey::Treasury, StateValue::Amount(left));
            s.credit(to, *amount)?;
        }
        Action::Text => {}
    }
    Ok(())
}

/// Takes [`Params::slash_fraction_bps`] of a lying provider's bonded stake (what is unbonding
/// included: the unbonding delay is the window for fraud proofs), and sends it on its way out:
/// its offer leaves the marketplace, it stands down as a validator candidate, and the rest of
/// its stake unbonds from now. Of the amount taken, the job's payment goes back to the
/// customer, half of what is left to the submitter (unless that is the provider itself), the
/// rest to the treasury.
fn slash(
    provider: &mut Provider,
    params: &Params,
    ctx: &BlockContext,
    proven: &fraud::Proven,
    paid: Amount,
    submitter: PublicKey,
) -> Slash {
    let unbonding = provider.unbonding.as_ref().map_or(0, |u| u.amount);
    let bonded = provider.stake.saturating_add(unbonding);
    let amount =
        Amount::try_from(u128::from(bonded) * u128::from(params.slash_fraction_bps) / 10_000)
            .unwrap_or(bonded)
            .min(bonded);
    let left = bonded - amount;
    let release_at_ms = match &provider.unbonding {
        Some(u) => u.release_at_ms,
        None => ctx.time_ms.saturating_add(params.unbonding_delay_ms),
    };
    provider.stake = 0;
    provider.unbonding = Some(Unbonding {
        amount: left,
        release_at_ms,
    });
    provider.candidate = false;
    let refund = paid.min(amount);
    // A provider proving its own lie gets no bounty for it.
    let bounty = if submitter == proven.provider {
        0
    } else {
        (amount - refund) / 2
    };
    let slash = Slash {
        provider: proven.provider,
        job: proven.job,
        segment: proven.segment,
        amount,
        refund,
        customer: proven.customer,
        bounty,
        submitter,
        height: ctx.height,
        time_ms: ctx.time_ms,
    };
    provider.slashed = Some(slash.clone());
    slash
}

/// A whole block: its transactions (see [`apply_all`]), then [`end_block`].
pub fn apply_block(
    state: &(impl StateRead + ?Sized),
    ctx: &BlockContext,
    txs: &[SignedTx],
) -> (Changes, Vec<Result<(), TxError>>) {
    apply_block_judged(state, ctx, txs, &NoJudge)
}

/// [`apply_block`], judging fraud proofs on `judge`'s engine.
pub fn apply_block_judged(
    state: &(impl StateRead + ?Sized),
    ctx: &BlockContext,
    txs: &[SignedTx],
    judge: &dyn Judge,
) -> (Changes, Vec<Result<(), TxError>>) {
    let (mut overlay, outcomes) = apply_txs(state, ctx, txs, judge);
    let after_txs = end_block(&overlay, ctx);
    overlay.extend(after_txs);
    (overlay.into_changes(), outcomes)
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
    let (overlay, outcomes) = apply_txs(state, ctx, txs, &NoJudge);
    (overlay.into_changes(), outcomes)
}

/// [`apply_all`], keeping the changes as an overlay on `state` for what follows in the block.
fn apply_txs<'a, S: StateRead + ?Sized>(
    state: &'a S,
    ctx: &BlockContext,
    txs: &[SignedTx],
    judge: &dyn Judge,
) -> (Overlay<'a, S>, Vec<Result<(), TxError>>) {
    let signed = verify_signatures(txs);
    let mut overlay = Overlay::new(state);
    let mut outcomes = Vec::with_capacity(txs.len());
    for (tx, signature_ok) in txs.iter().zip(signed) {
        let outcome = if signature_ok {
            apply_verified_judged(&overlay, ctx, tx, judge)
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
    (overlay, outcomes)
}

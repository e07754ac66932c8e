//! Paying for jobs: the voucher a job request carries and the check a provider runs on it.
//!
//! A customer escrows tokens in a channel to one provider ([`super::TxKind::OpenChannel`]).
//! Every job it sends that provider carries a [`Voucher`] whose cumulative amount covers all
//! its jobs on the channel so far plus this one's price (the offer's price for the job's fuel
//! limit). The provider accepts the job only if the voucher is the customer's, for one of the
//! provider's open channels, on this network, within the deposit, and at least the price above
//! the last voucher it accepted on that channel. It keeps only the latest voucher per channel
//! and settles it on the ledger ([`super::TxKind::Settle`]) from time to time.
//!
//! The check is pure: the relay supplies the channel as its ledger state has it, the last
//! accepted amount and the time.

use super::state::{Amount, Channel};
use super::tx::Voucher;
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::signed::Signed;
use borsh::{BorshDeserialize, BorshSerialize};

/// What a receipt says was paid for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Payment {
    pub channel: Hash,
    /// The voucher's cumulative amount, this job included.
    pub cumulative: Amount,
    /// This job's price: the offer's price for the job's fuel limit.
    pub price: Amount,
}

/// Why a provider refuses a job's payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error(
        "this provider charges {price} for the job: open a payment channel to it and send a voucher"
    )]
    Missing { price: Amount },
    #[error("the voucher is not signed by the job's customer")]
    Signature,
    #[error("the voucher is for network {got:?}")]
    Network { got: String },
    #[error("channel {0} does not exist (or is not in a block yet)")]
    UnknownChannel(Hash),
    #[error("channel {0} is not between this customer and this provider")]
    NotYourChannel(Hash),
    #[error(
        "channel {channel} expires at {expires_at_ms} (ms since the epoch): too soon for the provider to settle; top it up to extend it"
    )]
    ExpiresTooSoon { channel: Hash, expires_at_ms: u64 },
    #[error(
        "the voucher promises {cumulative} in total but the channel holds {deposit}: top up the channel"
    )]
    OverDeposit { cumulative: Amount, deposit: Amount },
    #[error(
        "the voucher promises {cumulative} in total; with {accepted} already promised on this channel and a price of {price}, it must be at least {needed}"
    )]
    TooLow {
        cumulative: Amount,
        accepted: Amount,
        price: Amount,
        needed: Amount,
    },
}

/// Checks `voucher` as payment of `price` by `customer` to `provider`.
///
/// `channel` is the channel the voucher names, as the provider's latest state has it (`None`
/// if unknown); `accepted` is the largest cumulative amount the provider already holds a
/// voucher for on it (at least what was settled). The channel must stay open at least
/// `settle_margin_ms` after `now_ms`, so the provider can settle before the customer may close
/// it. Returns what the receipt will name.
#[allow(clippy::too_many_arguments)]
pub fn check_voucher(
    voucher: &Signed<Voucher>,
    network_id: &str,
    customer: &PublicKey,
    provider: &PublicKey,
    channel: Option<&Channel>,
    accepted: Amount,
    price: Amount,
    now_ms: u64,
    settle_margin_ms: u64,
) -> Result<Payment, PaymentError> {
    if voucher.signer != *customer || voucher.verify().is_err() {
        return Err(PaymentError::Signature);
    }
    let body = &voucher.body;
    if body.network_id != network_id {
        return Err(PaymentError::Network {
            got: body.network_id.clone(),
        });
    }
    let id = body.channel;
    let channel = channel.ok_or(PaymentError::UnknownChannel(id))?;
    if channel.customer != *customer || channel.provider != *provider {
        return Err(PaymentError::NotYourChannel(id));
    }
    if channel.expires_at_ms < now_ms.saturating_add(settle_margin_ms) {
        return Err(PaymentError::ExpiresTooSoon {
            channel: id,
            expires_at_ms: channel.expires_at_ms,
        });
    }
    if body.cumulative > channel.deposit {
        return Err(PaymentError::OverDeposit {
            cumulative: body.cumulative,
            deposit: channel.deposit,
        });
    }
    let accepted = accepted.max(channel.settled);
    let needed = accepted.saturating_add(price);
    if body.cumulative < needed {
        return Err(PaymentError::TooLow {
            cumulative: body.cumulative,
            accepted,
            price,
            needed,
        });
    }
    Ok(Payment {
        channel: id,
        cumulative: body.cumulative,
        price,
    })
}

/// The voucher for a job of `price` on `channel`, after `previous` was promised in total.
pub fn voucher_for(
    keypair: &crate::identity::Keypair,
    network_id: &str,
    channel: Hash,
    previous: Amount,
    price: Amount,
) -> Signed<Voucher> {
    Signed::sign(
        keypair,
        Voucher {
            network_id: network_id.to_owned(),
            channel,
            cumulative: previous.saturating_add(price),
        },
    )
}

/// Why a job cannot be paid from the customer's channels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("no payment channel to this provider: open one on the Marketplace page")]
    NoChannel,
    #[error(
        "the channel to this provider has {available} left to promise, the job costs {price}: top it up on the Marketplace page"
    )]
    NotEnough { available: Amount, price: Amount },
}

/// The channel a job of `price` to `provider` pays from: of the customer's `channels` to that
/// provider, the one with the most left to promise. `promised` is what this customer already
/// promised on a channel (its last voucher), if it remembers. Returns the channel and the
/// cumulative amount the new voucher builds on.
pub fn pick_channel(
    channels: &[(Hash, Channel)],
    provider: &PublicKey,
    price: Amount,
    promised: impl Fn(&Hash) -> Option<Amount>,
) -> Result<(Hash, Amount), PickError> {
    let best = channels
        .iter()
        .filter(|(_, c)| c.provider == *provider)
        .map(|(id, c)| {
            let previous = promised(id).unwrap_or(0).max(c.settled);
            (*id, previous, c.deposit.saturating_sub(previous))
        })
        .max_by_key(|(_, _, available)| *available)
        .ok_or(PickError::NoChannel)?;
    let (id, previous, available) = best;
    if available < price {
        return Err(PickError::NotEnough { available, price });
    }
    Ok((id, previous))
}

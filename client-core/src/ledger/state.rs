//! What the ledger stores: accounts, providers and their offers, payment channels, the
//! parameters, and the keys they are stored under.
//!
//! The state is a map from [`StateKey`] to [`StateValue`]. The Merkle tree commits to the
//! canonical encoding of each value under the hash of the canonical encoding of its key (see
//! [`StateKey::hash`]), so a key and its value are proven together and a value read under one
//! key can never be passed off as the value of another.

use crate::hash::Hash;
use crate::identity::PublicKey;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// An amount of the network's token, in base units (one token is [`UNITS_PER_TOKEN`] units).
pub type Amount = u64;

/// Base units per whole token.
pub const UNITS_PER_TOKEN: Amount = 1_000_000;

/// The token's symbol, as the app shows it.
pub const TOKEN_SYMBOL: &str = "AQD";

/// Formats base units as a decimal token amount: `1500000` → `"1.5 AQD"`.
pub fn format_amount(units: Amount) -> String {
    let whole = format_count(units / UNITS_PER_TOKEN);
    let frac = units % UNITS_PER_TOKEN;
    if frac == 0 {
        format!("{whole} {TOKEN_SYMBOL}")
    } else {
        let digits = format!("{frac:06}");
        format!("{whole}.{} {TOKEN_SYMBOL}", digits.trim_end_matches('0'))
    }
}

/// A whole number with thousands separators: `20,000,000,000`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Fuel in SI units, to three significant digits at most: `20 G fuel`, `1.5 M fuel`.
pub fn format_fuel(fuel: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1_000_000_000_000_000, "P"),
        (1_000_000_000_000, "T"),
        (1_000_000_000, "G"),
        (1_000_000, "M"),
        (1_000, "k"),
    ];
    for (size, prefix) in UNITS {
        if fuel >= size {
            let value = fuel as f64 / size as f64;
            let text = if value >= 100.0 {
                format!("{value:.0}")
            } else if value >= 10.0 {
                format!("{value:.1}")
            } else {
                format!("{value:.2}")
            };
            let text = if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_owned()
            } else {
                text
            };
            return format!("{text} {prefix} fuel");
        }
    }
    format!("{fuel} fuel")
}

/// The most providers the ledger keeps at once. The provider list is one proven value, so the
/// browser can check it saw every offer; this bound keeps that value (and its proof) small.
pub const MAX_PROVIDERS: usize = 1024;

/// The most channels one customer may have open at once (their list is one proven value).
pub const MAX_CHANNELS_PER_CUSTOMER: usize = 64;

/// Where a value lives in the state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    /// The network's parameters (set at genesis; governed by the DAO later on).
    Params,
    /// The treasury: fees collected.
    Treasury,
    /// Every registered provider, sorted. One value, so completeness is provable.
    Providers,
    Account(PublicKey),
    Provider(PublicKey),
    Channel(Hash),
    /// The channels a customer has open, in the order they were opened.
    CustomerChannels(PublicKey),
    /// The id the next proposal gets (an amount-typed counter).
    NextProposal,
    /// Proposals not yet final, by id.
    OpenProposals,
    Proposal(super::gov::ProposalId),
    /// An account's vote on a proposal.
    Vote(super::gov::ProposalId, PublicKey),
    /// Whom an account delegated its voting power to (absent: itself).
    Delegate(PublicKey),
    /// An account's voting power over recent blocks.
    Power(PublicKey),
    /// The lowest start height of the open proposals: how far back power histories are kept.
    OldestVoteStart,
    /// The validator set that signs the next block (recomputed from stake at the end of each
    /// epoch's last block).
    Validators,
    /// A proven fraud, by [`fraud_id`] of the provider and the job: one slash per lie.
    Fraud(Hash),
}

/// Where the fraud of `provider` on `job` is recorded.
pub fn fraud_id(provider: &PublicKey, job: &Hash) -> Hash {
    Hash::of_encoded(&("aqueduct/v1/fraud", provider, job))
}

impl StateKey {
    /// The key's position in the Merkle map: BLAKE3 of a domain tag and the key's encoding.
    pub fn hash(&self) -> Hash {
        Hash::of_encoded(&("aqueduct/v1/state-key", self))
    }
}

/// A value in the state. The variant always matches the key's kind (checked by
/// [`StateValue::fits`]).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StateValue {
    Params(Params),
    Amount(Amount),
    Keys(Vec<PublicKey>),
    Account(Account),
    Provider(Provider),
    Channel(Channel),
    Hashes(Vec<Hash>),
    Ids(Vec<super::gov::ProposalId>),
    Proposal(super::gov::Proposal),
    Vote(super::gov::VoteRecord),
    Key(PublicKey),
    Power(super::gov::PowerHistory),
    Validators(super::block::ValidatorSet),
    Slash(Slash),
}

impl StateValue {
    /// Whether this value has the type stored under `key`.
    pub fn fits(&self, key: &StateKey) -> bool {
        matches!(
            (key, self),
            (StateKey::Params, StateValue::Params(_))
                | (StateKey::Treasury, StateValue::Amount(_))
                | (StateKey::Providers, StateValue::Keys(_))
                | (StateKey::Account(_), StateValue::Account(_))
                | (StateKey::Provider(_), StateValue::Provider(_))
                | (StateKey::Channel(_), StateValue::Channel(_))
                | (StateKey::CustomerChannels(_), StateValue::Hashes(_))
                | (StateKey::NextProposal, StateValue::Amount(_))
                | (StateKey::OpenProposals, StateValue::Ids(_))
                | (StateKey::Proposal(_), StateValue::Proposal(_))
                | (StateKey::Vote(..), StateValue::Vote(_))
                | (StateKey::Delegate(_), StateValue::Key(_))
                | (StateKey::Power(_), StateValue::Power(_))
                | (StateKey::OldestVoteStart, StateValue::Amount(_))
                | (StateKey::Validators, StateValue::Validators(_))
                | (StateKey::Fraud(_), StateValue::Slash(_))
        )
    }
}

/// An account: its spendable balance and the number of transactions it has sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Account {
    pub balance: Amount,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
    /// Whether it has drawn from the faucet (once per account, dev networks only).
    pub faucet_used: bool,
}

/// How a provider lets customers check its results, as offered in the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum VerificationLevel {
    /// A signed receipt only.
    Receipt,
    /// Receipt plus checkpoint commitments the customer samples and re-executes in part.
    Sampled,
    /// Receipt plus everything needed to re-execute the whole job.
    Full,
}

impl VerificationLevel {
    pub fn label(self) -> &'static str {
        match self {
            VerificationLevel::Receipt => "receipt",
            VerificationLevel::Sampled => "sampled",
            VerificationLevel::Full => "full",
        }
    }
}

/// Limits on what an offer may contain, so that the provider list stays cheap to prove.
pub const MAX_OFFER_ADDRS: usize = 4;
pub const MAX_OFFER_ADDR_LEN: usize = 256;
pub const MAX_OFFER_ATTRIBUTES: usize = 8;
pub const MAX_OFFER_TEXT: usize = 64;

/// A provider's published terms.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Offer {
    /// Price per million fuel units, in base units.
    pub price_per_mfuel: Amount,
    /// The most fuel one job may ask for.
    pub max_fuel: u64,
    /// How many jobs it runs at once.
    pub concurrency: u32,
    /// The verification levels it supports (sorted, no duplicates).
    pub levels: Vec<VerificationLevel>,
    /// Where browsers reach it: webrtc-direct multiaddrs.
    pub addrs: Vec<String>,
    /// Free-form attributes (`region` = `eu-west`, …).
    pub attributes: Vec<(String, String)>,
}

impl Offer {
    /// What a job with `fuel_limit` may cost at most under this offer (rounded up).
    pub fn price_for(&self, fuel_limit: u64) -> Amount {
        let product = u128::from(fuel_limit) * u128::from(self.price_per_mfuel);
        let price = product.div_ceil(1_000_000);
        Amount::try_from(price).unwrap_or(Amount::MAX)
    }

    /// Why this offer cannot be published, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.max_fuel == 0 {
            return Some("max fuel must be above zero".into());
        }
        if self.concurrency == 0 {
            return Some("concurrency must be above zero".into());
        }
        if self.levels.is_empty() {
            return Some("an offer names at least one verification level".into());
        }
        if self.levels.windows(2).any(|w| w[0] >= w[1]) {
            return Some("verification levels must be sorted and distinct".into());
        }
        if self.addrs.len() > MAX_OFFER_ADDRS {
            return Some(format!("at most {MAX_OFFER_ADDRS} addresses"));
        }
        if self
            .addrs
            .iter()
            .any(|a| a.is_empty() || a.len() > MAX_OFFER_ADDR_LEN)
        {
            return Some(format!(
                "an address must have 1 to {MAX_OFFER_ADDR_LEN} characters"
            ));
        }
        if self.attributes.len() > MAX_OFFER_ATTRIBUTES {
            return Some(format!("at most {MAX_OFFER_ATTRIBUTES} attributes"));
        }
        if self
            .attributes
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > MAX_OFFER_TEXT || v.len() > MAX_OFFER_TEXT)
        {
            return Some(format!(
                "attribute names have 1 to {MAX_OFFER_TEXT} characters, values at most \
                 {MAX_OFFER_TEXT}"
            ));
        }
        None
    }
}

/// Stake on its way out: released to the balance at `release_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Unbonding {
    pub amount: Amount,
    pub release_at_ms: u64,
}

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Provider {
    /// Bonded stake (zero once unbonding has begun).
    pub stake: Amount,
    pub offer: Offer,
    pub registered_at_ms: u64,
    pub unbonding: Option<Unbonding>,
    /// Whether it stands for the validator set: its relay takes part in consensus. Among the
    /// active candidates, those with the most stake validate from the next epoch on.
    pub candidate: bool,
    /// Set once a fraud proof against it was accepted: its offer is gone and its stake is on
    /// its way out, less what was slashed.
    pub slashed: Option<Slash>,
}

/// What an accepted fraud proof did.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Slash {
    pub provider: PublicKey,
    /// The job whose receipt lied, and the segment the proof pointed at (0: `init`).
    pub job: Hash,
    pub segment: u64,
    /// Taken from the provider's stake: [`Params::slash_fraction_bps`] of it.
    pub amount: Amount,
    /// Of that: returned to the job's customer (what the job paid), paid to the proof's
    /// submitter, and the rest to the treasury.
    pub refund: Amount,
    pub customer: PublicKey,
    pub bounty: Amount,
    pub submitter: PublicKey,
    pub height: u64,
    pub time_ms: u64,
}

impl Provider {
    /// Whether it takes jobs: bonded, not leaving.
    pub fn active(&self) -> bool {
        self.unbonding.is_none()
    }
}

/// An escrowed payment channel from a customer to a provider.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Channel {
    pub customer: PublicKey,
    pub provider: PublicKey,
    /// Everything the customer has put in.
    pub deposit: Amount,
    /// The cumulative amount already paid out to the provider.
    pub settled: Amount,
    /// From this time on the customer may close the channel and take back the rest.
    pub expires_at_ms: u64,
}

impl Channel {
    /// What is still escrowed.
    pub fn remaining(&self) -> Amount {
        self.deposit.saturating_sub(self.settled)
    }
}

/// The network's parameters: fixed at genesis, changed by the DAO later on.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Params {
    /// Stake a provider must bond to register.
    pub min_stake: Amount,
    /// How long unbonded stake stays locked (a window to present fraud proofs).
    pub unbonding_delay_ms: u64,
    /// How long a channel stays open after opening or its last top-up.
    pub channel_timeout_ms: u64,
    /// Fee every transaction pays, plus [`Params::fee_per_byte`] per byte of its encoding.
    pub base_fee: Amount,
    pub fee_per_byte: Amount,
    /// Longest lifetime a signed request may claim.
    pub max_job_ttl_ms: u64,
    /// What the faucet gives each new account; `None` where there is no faucet.
    pub faucet_amount: Option<Amount>,
    /// Share of a provider's stake taken on a proven fraud, in basis points.
    pub slash_fraction_bps: u16,
    pub gov: super::gov::GovParams,
    /// The most validators a set has: the candidates with the most stake.
    #[serde(default = "default_validator_count")]
    pub validator_count: u64,
    /// Blocks per epoch: the set is recomputed at the end of every block whose height is a
    /// multiple of this.
    #[serde(default = "default_epoch_blocks")]
    pub epoch_blocks: u64,
}

/// The most validators the set can hold (also bounds a certificate's size).
pub const MAX_VALIDATORS: u64 = 100;

fn default_validator_count() -> u64 {
    4
}

fn default_epoch_blocks() -> u64 {
    100
}

impl Params {
    /// Why these parameters cannot run a network, if they cannot: checked at genesis and for
    /// every parameter change the DAO proposes.
    pub fn problem(&self) -> Option<String> {
        if self.channel_timeout_ms == 0 {
            return Some("channel_timeout_ms must be above zero".into());
        }
        if self.base_fee == 0 && self.fee_per_byte == 0 {
            return Some(
                "transactions must cost something: base_fee or fee_per_byte above zero".into(),
            );
        }
        if self.max_job_ttl_ms == 0 {
            return Some("max_job_ttl_ms must be above zero".into());
        }
        if self.validator_count == 0 || self.validator_count > MAX_VALIDATORS {
            return Some(format!("validator_count must be 1 to {MAX_VALIDATORS}"));
        }
        if self.epoch_blocks == 0 {
            return Some("epoch_blocks must be above zero".into());
        }
        if self.slash_fraction_bps > 10_000 {
            return Some("slash_fraction_bps is at most 10000 (all of the stake)".into());
        }
        self.gov.problem()
    }

    /// The least fee a transaction of `encoded_len` bytes must pay.
    pub fn min_fee(&self, encoded_len: usize) -> Amount {
        let bytes = Amount::try_from(encoded_len).unwrap_or(Amount::MAX);
        self.base_fee
            .saturating_add(self.fee_per_byte.saturating_mul(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_format_as_decimal_tokens() {
        assert_eq!(format_amount(0), "0 AQD");
        assert_eq!(format_amount(1_500_000), "1.5 AQD");
        assert_eq!(format_amount(1), "0.000001 AQD");
        assert_eq!(format_amount(12_000_000), "12 AQD");
        assert_eq!(format_amount(1_234_567_500_000), "1,234,567.5 AQD");
    }

    #[test]
    fn counts_and_fuel_read_easily() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1_000), "1,000");
        assert_eq!(format_count(20_000_000_000), "20,000,000,000");
        assert_eq!(format_count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(format_fuel(0), "0 fuel");
        assert_eq!(format_fuel(999), "999 fuel");
        assert_eq!(format_fuel(1_500), "1.5 k fuel");
        assert_eq!(format_fuel(20_000_000_000), "20 G fuel");
        assert_eq!(format_fuel(1_234_567_890), "1.23 G fuel");
        assert_eq!(format_fuel(123_456_789), "123 M fuel");
        assert_eq!(format_fuel(u64::MAX), "18447 P fuel");
    }

    #[test]
    fn price_rounds_up_and_does_not_overflow() {
        let offer = Offer {
            price_per_mfuel: 3,
            max_fuel: 1,
            concurrency: 1,
            levels: vec![VerificationLevel::Receipt],
            addrs: vec![],
            attributes: vec![],
        };
        assert_eq!(offer.price_for(0), 0);
        assert_eq!(offer.price_for(1), 1);
        assert_eq!(offer.price_for(1_000_000), 3);
        assert_eq!(offer.price_for(1_000_001), 4);
        let dear = Offer {
            price_per_mfuel: Amount::MAX,
            ..offer
        };
        assert_eq!(dear.price_for(u64::MAX), Amount::MAX);
    }

    #[test]
    fn key_hashes_differ_by_kind() {
        let key = PublicKey([7; 32]);
        assert_ne!(
            StateKey::Account(key).hash(),
            StateKey::Provider(key).hash()
        );
        assert!(StateValue::Amount(1).fits(&StateKey::Treasury));
        assert!(!StateValue::Amount(1).fits(&StateKey::Account(key)));
    }
}

//! Transactions and payment vouchers, and every reason one is refused.

use super::state::{Amount, Offer};
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::signed::{Domain, Signed};
use borsh::{BorshDeserialize, BorshSerialize};

/// The largest encoded transaction the ledger accepts (fraud proofs have their own limit,
/// [`crate::job::fraud::MAX_FRAUD_PROOF_BYTES`]).
pub const MAX_TX_BYTES: usize = 4096;

/// The size limit for a transaction of `kind`.
pub fn size_limit(kind: &TxKind) -> usize {
    match kind {
        TxKind::FraudProof { .. } => crate::job::fraud::MAX_FRAUD_PROOF_BYTES,
        _ => MAX_TX_BYTES,
    }
}

/// A transaction body: signed by the account it spends from.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tx {
    /// The network it is meant for; a transaction for another network is refused.
    pub network_id: String,
    /// Must equal the sender's account nonce.
    pub nonce: u64,
    /// Paid to the treasury; at least [`super::Params::min_fee`] of the encoded size.
    pub fee: Amount,
    pub kind: TxKind,
}

impl Domain for Tx {
    const TAG: &'static str = "aqueduct/v1/tx";
}

/// A signed transaction.
pub type SignedTx = Signed<Tx>;

/// The transaction's identity: the hash of the whole signed transaction.
pub fn tx_id(tx: &SignedTx) -> Hash {
    Hash::of_encoded(tx)
}

/// The least fee a transaction of `kind` pays under `params`. Nonce, fee, signer and signature
/// are fixed-size, so the size — and with it the fee — is known before signing.
pub fn min_fee_for(params: &super::Params, network_id: &str, kind: &TxKind) -> Amount {
    let probe = Signed {
        body: Tx {
            network_id: network_id.to_owned(),
            nonce: u64::MAX,
            fee: Amount::MAX,
            kind: kind.clone(),
        },
        signer: PublicKey([0; 32]),
        signature: crate::identity::Signature([0; 64]),
    };
    params.min_fee(crate::encoding::encode(&probe).len())
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TxKind {
    Transfer {
        to: PublicKey,
        amount: Amount,
    },
    /// Draw the faucet amount (dev networks only, once per account). The fee comes out of it.
    Faucet,
    /// Become a provider: bond `stake` and publish `offer`.
    RegisterProvider {
        stake: Amount,
        offer: Offer,
    },
    UpdateOffer {
        offer: Offer,
    },
    /// Leave: the stake is locked for the unbonding delay, the offer leaves the marketplace.
    Unbond,
    /// After the unbonding delay: the stake returns to the balance and the provider is removed.
    Withdraw,
    /// Escrow `amount` for `provider`. The channel's id is [`channel_id`] of the sender and the
    /// transaction's nonce.
    OpenChannel {
        provider: PublicKey,
        amount: Amount,
    },
    /// Add to a channel's escrow; extends its expiry.
    TopUpChannel {
        channel: Hash,
        amount: Amount,
    },
    /// The customer takes back what was not settled, once the channel has expired.
    CloseChannel {
        channel: Hash,
    },
    /// The provider is paid up to the customer's latest cumulative voucher.
    Settle {
        voucher: Signed<Voucher>,
    },
    /// Puts a proposal to the token holders (see [`super::gov`]).
    Propose {
        title: String,
        description: String,
        action: super::gov::Action,
    },
    /// Votes on an active proposal, or changes this account's vote on it.
    Vote {
        proposal: super::gov::ProposalId,
        choice: super::gov::Choice,
    },
    /// Lends this account's voting power to `to`; `None` takes it back.
    Delegate {
        to: Option<PublicKey>,
    },
    /// The proposer withdraws a proposal whose vote has not started.
    CancelProposal {
        proposal: super::gov::ProposalId,
    },
    /// A provider stands for the validator set (or stands down): from the end of the epoch on,
    /// the candidates with the most stake validate.
    Candidacy {
        candidate: bool,
    },
    /// Shows that a provider signed a receipt whose trace is false somewhere (see
    /// [`crate::job::fraud`]). Validators re-run that one segment; if the receipt lied, a share
    /// of the provider's stake is slashed: the job's payment goes back to its customer, a
    /// bounty to the submitter, the rest to the treasury, and the provider leaves the
    /// marketplace. Any account may submit it; it pays the fee for its size.
    FraudProof {
        proof: Box<crate::job::fraud::FraudProof>,
    },
}

impl TxKind {
    /// A short name for the user interface and logs.
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Transfer { .. } => "transfer",
            TxKind::Faucet => "faucet",
            TxKind::RegisterProvider { .. } => "register provider",
            TxKind::UpdateOffer { .. } => "update offer",
            TxKind::Unbond => "unbond",
            TxKind::Withdraw => "withdraw",
            TxKind::OpenChannel { .. } => "open channel",
            TxKind::TopUpChannel { .. } => "top up channel",
            TxKind::CloseChannel { .. } => "close channel",
            TxKind::Settle { .. } => "settle channel",
            TxKind::Propose { .. } => "propose",
            TxKind::Vote { .. } => "vote",
            TxKind::Delegate { .. } => "delegate",
            TxKind::CancelProposal { .. } => "cancel proposal",
            TxKind::Candidacy { candidate: true } => "stand for validator",
            TxKind::Candidacy { candidate: false } => "stand down as validator",
            TxKind::FraudProof { .. } => "fraud proof",
        }
    }
}

/// The id of the channel `customer` opens with its transaction of nonce `nonce`.
pub fn channel_id(customer: &PublicKey, nonce: u64) -> Hash {
    Hash::of_encoded(&("aqueduct/v1/channel", customer, nonce))
}

/// A customer's promise: the provider may take up to `cumulative` from `channel` in total.
/// Each job carries a new voucher whose amount covers every job so far, so only the latest one
/// matters and none needs a ledger transaction of its own.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Voucher {
    pub network_id: String,
    pub channel: Hash,
    pub cumulative: Amount,
}

impl Domain for Voucher {
    const TAG: &'static str = "aqueduct/v1/voucher";
}

/// Why a transaction was refused. Nothing of a refused transaction is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("the transaction's signature does not verify")]
    BadSignature,
    #[error("the transaction is for network {got:?}, this is {expected:?}")]
    WrongNetwork { expected: String, got: String },
    #[error("the transaction is {len} bytes; the limit is {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("wrong nonce: the account's next nonce is {expected}, the transaction has {got}")]
    WrongNonce { expected: u64, got: u64 },
    #[error("the fee {offered} is below the minimum {minimum} for this transaction")]
    FeeTooLow { minimum: Amount, offered: Amount },
    #[error("insufficient balance: {needed} needed, {available} available")]
    InsufficientBalance { needed: Amount, available: Amount },
    #[error("an amount of zero does nothing")]
    ZeroAmount,
    #[error("this network has no faucet")]
    FaucetDisabled,
    #[error("this account has already drawn from the faucet")]
    FaucetUsed,
    #[error("the faucet amount does not cover the fee")]
    FaucetBelowFee,
    #[error("{0} is not a registered provider")]
    UnknownProvider(PublicKey),
    #[error("this account is already a registered provider")]
    AlreadyProvider,
    #[error("the stake {offered} is below the minimum {minimum}")]
    StakeTooLow { minimum: Amount, offered: Amount },
    #[error("the offer is invalid: {0}")]
    InvalidOffer(String),
    #[error("the marketplace is full ({limit} providers)")]
    TooManyProviders { limit: usize },
    #[error("the provider is unbonding and takes no new channels or offers")]
    ProviderUnbonding,
    #[error("the provider is already unbonding")]
    AlreadyUnbonding,
    #[error("the provider has not begun unbonding")]
    NotUnbonding,
    #[error("the stake is locked until {release_at_ms} (now {now_ms})")]
    StillLocked { release_at_ms: u64, now_ms: u64 },
    #[error("a channel cannot be opened to oneself")]
    SelfChannel,
    #[error("this account has {limit} channels open already")]
    TooManyChannels { limit: usize },
    #[error("no channel {0}")]
    UnknownChannel(Hash),
    #[error("only the channel's {role} may do this")]
    NotChannelParty { role: &'static str },
    #[error("the channel runs until {expires_at_ms} (now {now_ms})")]
    ChannelNotExpired { expires_at_ms: u64, now_ms: u64 },
    #[error("the voucher is not signed by the channel's customer")]
    VoucherSignature,
    #[error("the voucher is for network {got:?}")]
    VoucherNetwork { got: String },
    #[error("stale voucher: {settled} is already settled, the voucher is for {cumulative}")]
    StaleVoucher { settled: Amount, cumulative: Amount },
    #[error("the voucher for {cumulative} exceeds the channel's deposit of {deposit}")]
    VoucherExceedsDeposit { cumulative: Amount, deposit: Amount },
    #[error("an amount overflowed")]
    Overflow,
    #[error("the state has no parameters: it was not started from a genesis")]
    NoGenesis,
    #[error("proposing needs {needed} of voting power; this account has {power}")]
    BelowProposalThreshold { needed: Amount, power: Amount },
    #[error("the proposal is invalid: {0}")]
    InvalidProposal(String),
    #[error("{limit} proposals are open already; wait until one ends")]
    TooManyProposals { limit: usize },
    #[error("no proposal {0}")]
    UnknownProposal(u64),
    #[error(
        "proposal {id} is {state}, not active: votes are taken from block {start} through {end}"
    )]
    VotingClosed {
        id: u64,
        state: &'static str,
        start: u64,
        end: u64,
    },
    #[error("this account had no voting power when voting on proposal {0} started")]
    NoVotingPower(u64),
    #[error("only the proposer may cancel a proposal")]
    NotProposer,
    #[error("proposal {id} is {state}; only a pending proposal can be canceled")]
    NotPending { id: u64, state: &'static str },
    #[error("an account cannot delegate to itself by name; delegate to nobody instead")]
    SelfDelegation,
    #[error("the fraud proof is refused: {0}")]
    Fraud(crate::job::fraud::FraudError),
    #[error("this lie of this provider was proven already; it is slashed once")]
    FraudAlreadyProven,
}

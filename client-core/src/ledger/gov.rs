//! Governance: proposals, delegation, votes, and what passed proposals do — all inside the
//! state machine, so no key anywhere can change the network's rules or spend the treasury.
//!
//! - **Voting power** is spendable balance (not stake, not escrow). An account counts for itself
//!   unless it delegated to another account; a delegate's power is the sum of the balances
//!   delegated to it. Every block that changes a power records it in that account's
//!   [`PowerHistory`], so a proposal counts each voter's power *as it was when voting started*
//!   (after the block before `start_height`): tokens moved later change nothing.
//! - **Timeline**, in blocks: created at height `c` → pending until `start = c + voting_delay`
//!   → active through `end = start + voting_period − 1` → at the end of block `end` it is tallied:
//!   *succeeded* if For + Abstain reach the quorum and For beats Against, else *defeated* →
//!   the next block queues it, to run `timelock` blocks later → at the end of the first block at
//!   or past that height it is *executed*; if its action cannot apply (a grant larger than the
//!   treasury), it is tried again each block until `grace` blocks have passed, then *expired*.
//!   The proposer may *cancel* it while it is pending.
//! - **Votes** can be changed until the end of voting: a new vote replaces the account's earlier
//!   one, so each account counts once.

use super::state::{Amount, Params};
use crate::identity::PublicKey;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

pub type ProposalId = u64;

/// Proposals not yet final (pending, active, succeeded or queued) at once.
pub const MAX_OPEN_PROPOSALS: usize = 32;
pub const MAX_TITLE: usize = 120;
pub const MAX_DESCRIPTION: usize = 2000;
/// Parameter changes one proposal may carry.
pub const MAX_PARAM_CHANGES: usize = 8;

/// The governance parameters (themselves governed).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct GovParams {
    /// Voting power an account needs to make a proposal.
    pub proposal_threshold: Amount,
    /// For + Abstain power a proposal needs to pass.
    pub quorum: Amount,
    /// Blocks between a proposal and the start of its vote.
    pub voting_delay_blocks: u64,
    /// Blocks the vote lasts.
    pub voting_period_blocks: u64,
    /// Blocks between a proposal being queued and taking effect.
    pub timelock_blocks: u64,
    /// Blocks a queued proposal that cannot apply is retried before it expires.
    pub grace_blocks: u64,
}

/// Upper bounds on the governance windows, so that power histories stay short.
pub const MAX_WINDOW_BLOCKS: u64 = 100_000;

impl GovParams {
    pub fn problem(&self) -> Option<String> {
        let windows = [
            ("voting delay", self.voting_delay_blocks),
            ("voting period", self.voting_period_blocks),
            ("timelock", self.timelock_blocks),
            ("grace period", self.grace_blocks),
        ];
        for (name, blocks) in windows {
            if blocks == 0 || blocks > MAX_WINDOW_BLOCKS {
                return Some(format!(
                    "the {name} must be 1 to {MAX_WINDOW_BLOCKS} blocks"
                ));
            }
        }
        if self.quorum == 0 {
            return Some("the quorum must be above zero".into());
        }
        None
    }
}

/// For, Against or Abstain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum Choice {
    For,
    Against,
    Abstain,
}

impl Choice {
    pub fn label(self) -> &'static str {
        match self {
            Choice::For => "for",
            Choice::Against => "against",
            Choice::Abstain => "abstain",
        }
    }
}

/// One governed parameter and its new value.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ParamChange {
    MinStake(Amount),
    UnbondingDelayMs(u64),
    ChannelTimeoutMs(u64),
    BaseFee(Amount),
    FeePerByte(Amount),
    MaxJobTtlMs(u64),
    SlashFractionBps(u16),
    ProposalThreshold(Amount),
    Quorum(Amount),
    VotingDelayBlocks(u64),
    VotingPeriodBlocks(u64),
    TimelockBlocks(u64),
    GraceBlocks(u64),
    ValidatorCount(u64),
    EpochBlocks(u64),
}

/// Every governed parameter's name, in the order the app lists them.
pub const PARAM_NAMES: [&str; 15] = [
    "min_stake",
    "unbonding_delay_ms",
    "channel_timeout_ms",
    "base_fee",
    "fee_per_byte",
    "max_job_ttl_ms",
    "slash_fraction_bps",
    "proposal_threshold",
    "quorum",
    "voting_delay_blocks",
    "voting_period_blocks",
    "timelock_blocks",
    "grace_blocks",
    "validator_count",
    "epoch_blocks",
];

impl ParamChange {
    /// The change of the parameter called `name` to `value`; `None` for an unknown name or a
    /// value out of the parameter's type.
    pub fn parse(name: &str, value: u64) -> Option<ParamChange> {
        Some(match name {
            "min_stake" => ParamChange::MinStake(value),
            "unbonding_delay_ms" => ParamChange::UnbondingDelayMs(value),
            "channel_timeout_ms" => ParamChange::ChannelTimeoutMs(value),
            "base_fee" => ParamChange::BaseFee(value),
            "fee_per_byte" => ParamChange::FeePerByte(value),
            "max_job_ttl_ms" => ParamChange::MaxJobTtlMs(value),
            "slash_fraction_bps" => ParamChange::SlashFractionBps(u16::try_from(value).ok()?),
            "proposal_threshold" => ParamChange::ProposalThreshold(value),
            "quorum" => ParamChange::Quorum(value),
            "voting_delay_blocks" => ParamChange::VotingDelayBlocks(value),
            "voting_period_blocks" => ParamChange::VotingPeriodBlocks(value),
            "timelock_blocks" => ParamChange::TimelockBlocks(value),
            "grace_blocks" => ParamChange::GraceBlocks(value),
            "validator_count" => ParamChange::ValidatorCount(value),
            "epoch_blocks" => ParamChange::EpochBlocks(value),
            _ => return None,
        })
    }

    /// The parameter's name, as the app and the README call it.
    pub fn name(&self) -> &'static str {
        match self {
            ParamChange::MinStake(_) => "min_stake",
            ParamChange::UnbondingDelayMs(_) => "unbonding_delay_ms",
            ParamChange::ChannelTimeoutMs(_) => "channel_timeout_ms",
            ParamChange::BaseFee(_) => "base_fee",
            ParamChange::FeePerByte(_) => "fee_per_byte",
            ParamChange::MaxJobTtlMs(_) => "max_job_ttl_ms",
            ParamChange::SlashFractionBps(_) => "slash_fraction_bps",
            ParamChange::ProposalThreshold(_) => "proposal_threshold",
            ParamChange::Quorum(_) => "quorum",
            ParamChange::VotingDelayBlocks(_) => "voting_delay_blocks",
            ParamChange::VotingPeriodBlocks(_) => "voting_period_blocks",
            ParamChange::TimelockBlocks(_) => "timelock_blocks",
            ParamChange::GraceBlocks(_) => "grace_blocks",
            ParamChange::ValidatorCount(_) => "validator_count",
            ParamChange::EpochBlocks(_) => "epoch_blocks",
        }
    }

    /// The new value, as a number.
    pub fn value(&self) -> u64 {
        match *self {
            ParamChange::MinStake(v)
            | ParamChange::UnbondingDelayMs(v)
            | ParamChange::ChannelTimeoutMs(v)
            | ParamChange::BaseFee(v)
            | ParamChange::FeePerByte(v)
            | ParamChange::MaxJobTtlMs(v)
            | ParamChange::ProposalThreshold(v)
            | ParamChange::Quorum(v)
            | ParamChange::VotingDelayBlocks(v)
            | ParamChange::VotingPeriodBlocks(v)
            | ParamChange::TimelockBlocks(v)
            | ParamChange::GraceBlocks(v)
            | ParamChange::ValidatorCount(v)
            | ParamChange::EpochBlocks(v) => v,
            ParamChange::SlashFractionBps(v) => u64::from(v),
        }
    }

    /// The parameter's current value in `params`.
    pub fn current(&self, params: &Params) -> u64 {
        match self {
            ParamChange::MinStake(_) => params.min_stake,
            ParamChange::UnbondingDelayMs(_) => params.unbonding_delay_ms,
            ParamChange::ChannelTimeoutMs(_) => params.channel_timeout_ms,
            ParamChange::BaseFee(_) => params.base_fee,
            ParamChange::FeePerByte(_) => params.fee_per_byte,
            ParamChange::MaxJobTtlMs(_) => params.max_job_ttl_ms,
            ParamChange::SlashFractionBps(_) => u64::from(params.slash_fraction_bps),
            ParamChange::ProposalThreshold(_) => params.gov.proposal_threshold,
            ParamChange::Quorum(_) => params.gov.quorum,
            ParamChange::VotingDelayBlocks(_) => params.gov.voting_delay_blocks,
            ParamChange::VotingPeriodBlocks(_) => params.gov.voting_period_blocks,
            ParamChange::TimelockBlocks(_) => params.gov.timelock_blocks,
            ParamChange::GraceBlocks(_) => params.gov.grace_blocks,
            ParamChange::ValidatorCount(_) => params.validator_count,
            ParamChange::EpochBlocks(_) => params.epoch_blocks,
        }
    }

    /// Writes the new value into `params`.
    pub fn apply(&self, params: &mut Params) {
        match *self {
            ParamChange::MinStake(v) => params.min_stake = v,
            ParamChange::UnbondingDelayMs(v) => params.unbonding_delay_ms = v,
            ParamChange::ChannelTimeoutMs(v) => params.channel_timeout_ms = v,
            ParamChange::BaseFee(v) => params.base_fee = v,
            ParamChange::FeePerByte(v) => params.fee_per_byte = v,
            ParamChange::MaxJobTtlMs(v) => params.max_job_ttl_ms = v,
            ParamChange::SlashFractionBps(v) => params.slash_fraction_bps = v,
            ParamChange::ProposalThreshold(v) => params.gov.proposal_threshold = v,
            ParamChange::Quorum(v) => params.gov.quorum = v,
            ParamChange::VotingDelayBlocks(v) => params.gov.voting_delay_blocks = v,
            ParamChange::VotingPeriodBlocks(v) => params.gov.voting_period_blocks = v,
            ParamChange::TimelockBlocks(v) => params.gov.timelock_blocks = v,
            ParamChange::GraceBlocks(v) => params.gov.grace_blocks = v,
            ParamChange::ValidatorCount(v) => params.validator_count = v,
            ParamChange::EpochBlocks(v) => params.epoch_blocks = v,
        }
    }
}

/// What a proposal does once it passes.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Action {
    /// Changes one or more parameters at once.
    Params(Vec<ParamChange>),
    /// Pays `amount` from the treasury to `to`.
    Grant { to: PublicKey, amount: Amount },
    /// A statement to vote on; passing it changes nothing.
    Text,
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Params(_) => "parameter change",
            Action::Grant { .. } => "treasury grant",
            Action::Text => "text",
        }
    }

    /// Why this action cannot be proposed under `params`, if it cannot.
    pub fn problem(&self, params: &Params) -> Option<String> {
        match self {
            Action::Params(changes) => {
                if changes.is_empty() || changes.len() > MAX_PARAM_CHANGES {
                    return Some(format!(
                        "a parameter change names 1 to {MAX_PARAM_CHANGES} parameters"
                    ));
                }
                let mut names: Vec<&str> = changes.iter().map(ParamChange::name).collect();
                names.sort_unstable();
                if names.windows(2).any(|w| w[0] == w[1]) {
                    return Some("each parameter may be named once".into());
                }
                let mut after = params.clone();
                for change in changes {
                    change.apply(&mut after);
                }
                after.problem()
            }
            Action::Grant { amount, .. } => (*amount == 0).then(|| "a grant of zero".into()),
            Action::Text => None,
        }
    }
}

/// A proposal's stored status; [`Proposal::state`] derives what users see from it and the
/// height.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Status {
    /// Pending or active (by height), or ended but not yet tallied.
    Open,
    Canceled {
        height: u64,
    },
    Defeated {
        height: u64,
    },
    Succeeded {
        height: u64,
    },
    Queued {
        eta: u64,
    },
    Executed {
        height: u64,
    },
    Expired {
        height: u64,
    },
}

/// What users see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalState {
    Pending,
    Active,
    Defeated,
    Succeeded,
    Queued,
    Executed,
    Canceled,
    Expired,
}

impl ProposalState {
    pub fn label(self) -> &'static str {
        match self {
            ProposalState::Pending => "pending",
            ProposalState::Active => "active",
            ProposalState::Defeated => "defeated",
            ProposalState::Succeeded => "succeeded",
            ProposalState::Queued => "queued",
            ProposalState::Executed => "executed",
            ProposalState::Canceled => "canceled",
            ProposalState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tally {
    pub for_power: Amount,
    pub against_power: Amount,
    pub abstain_power: Amount,
}

impl Tally {
    pub fn add(&mut self, choice: Choice, power: Amount) {
        let slot = self.slot(choice);
        *slot = slot.saturating_add(power);
    }

    pub fn remove(&mut self, choice: Choice, power: Amount) {
        let slot = self.slot(choice);
        *slot = slot.saturating_sub(power);
    }

    fn slot(&mut self, choice: Choice) -> &mut Amount {
        match choice {
            Choice::For => &mut self.for_power,
            Choice::Against => &mut self.against_power,
            Choice::Abstain => &mut self.abstain_power,
        }
    }

    /// Power that counts toward the quorum.
    pub fn quorum_power(&self) -> Amount {
        self.for_power.saturating_add(self.abstain_power)
    }

    /// Whether a vote with this tally passes under `quorum`.
    pub fn passes(&self, quorum: Amount) -> bool {
        self.quorum_power() >= quorum && self.for_power > self.against_power
    }
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub proposer: PublicKey,
    pub title: String,
    pub description: String,
    pub action: Action,
    pub created_height: u64,
    /// Votes are taken from this height through `end_height`, with each voter's power as it
    /// was before this height.
    pub start_height: u64,
    pub end_height: u64,
    /// The quorum when the proposal was made (a later change does not move the goalposts).
    pub quorum: Amount,
    pub tally: Tally,
    pub status: Status,
}

impl Proposal {
    /// Its state as of block `height` (before that block's end-of-block processing).
    pub fn state(&self, height: u64) -> ProposalState {
        match self.status {
            Status::Canceled { .. } => ProposalState::Canceled,
            Status::Defeated { .. } => ProposalState::Defeated,
            Status::Succeeded { .. } => ProposalState::Succeeded,
            Status::Queued { .. } => ProposalState::Queued,
            Status::Executed { .. } => ProposalState::Executed,
            Status::Expired { .. } => ProposalState::Expired,
            Status::Open if height < self.start_height => ProposalState::Pending,
            Status::Open if height <= self.end_height => ProposalState::Active,
            Status::Open if self.tally.passes(self.quorum) => ProposalState::Succeeded,
            Status::Open => ProposalState::Defeated,
        }
    }
}

/// An account's recorded vote on one proposal.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VoteRecord {
    pub choice: Choice,
    pub power: Amount,
}

/// An account's voting power after each block that changed it, oldest first. Entries no open
/// proposal can ask about are pruned.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PowerHistory(pub Vec<(u64, Amount)>);

impl PowerHistory {
    /// The power after all blocks below `height`.
    pub fn before(&self, height: u64) -> Amount {
        self.0
            .iter()
            .rev()
            .find(|(h, _)| *h < height)
            .map_or(0, |(_, p)| *p)
    }

    /// The latest power.
    pub fn current(&self) -> Amount {
        self.0.last().map_or(0, |(_, p)| *p)
    }

    /// Records `power` as of block `height`, and drops entries older than what a question
    /// about `oldest_needed` (a start height) can need.
    pub fn record(&mut self, height: u64, power: Amount, oldest_needed: u64) {
        match self.0.last_mut() {
            Some((h, p)) if *h == height => *p = power,
            _ => self.0.push((height, power)),
        }
        // Keep the last entry below `oldest_needed` (it answers `before(oldest_needed)`).
        let below = self.0.iter().filter(|(h, _)| *h < oldest_needed).count();
        if below > 1 {
            self.0.drain(..below - 1);
        }
    }
}

/// The most recent proposals the app reads at once.
pub const PROPOSALS_SHOWN: u64 = 40;

/// What the DAO page shows, all from proven reads.
#[derive(Debug, Clone, PartialEq)]
pub struct DaoView {
    pub params: Params,
    pub treasury: Amount,
    /// Newest first.
    pub proposals: Vec<Proposal>,
    /// The viewing account's side, if there is one.
    pub me: Option<MyGov>,
    /// The block the proposals were proven at (they are read after the rest).
    pub height: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MyGov {
    pub account: PublicKey,
    pub power: PowerHistory,
    /// Whom this account lent its power to, if anyone.
    pub delegate: Option<PublicKey>,
    pub votes: Vec<(ProposalId, VoteRecord)>,
}

impl MyGov {
    pub fn vote(&self, id: ProposalId) -> Option<&VoteRecord> {
        self.votes.iter().find(|(p, _)| *p == id).map(|(_, v)| v)
    }
}

/// The ids of the newest proposals, newest first, given the next id.
pub fn newest_ids(next: ProposalId) -> Vec<ProposalId> {
    (next.saturating_sub(PROPOSALS_SHOWN)..next).rev().collect()
}

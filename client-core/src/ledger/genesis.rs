//! Genesis: what a network starts from — its id, validators, balances and parameters.
//!
//! A genesis file is JSON (accounts written as peer ids). Its hash — of the canonical encoding,
//! not of the JSON text — names the network's history: the first block's previous hash is it.

use super::apply::Changes;
use super::block::{Validator, ValidatorSet};
use super::state::{Amount, Params, StateKey, StateValue, UNITS_PER_TOKEN};
use crate::hash::Hash;
use crate::identity::PublicKey;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// An account's balance at genesis.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Balance {
    #[serde(with = "super::account_text")]
    pub account: PublicKey,
    pub amount: Amount,
}

/// A network's starting point.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Genesis {
    pub network_id: String,
    /// The time of the genesis; blocks come after it.
    pub time_ms: u64,
    pub validators: Vec<Validator>,
    pub balances: Vec<Balance>,
    pub params: Params,
    /// What the treasury holds at the start (it also collects every fee).
    #[serde(default)]
    pub treasury: Amount,
}

/// Why a genesis was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("the genesis is not valid JSON of the expected shape: {0}")]
    Parse(String),
    #[error("the network id must have 1 to 64 characters")]
    NetworkId,
    #[error("a genesis needs at least one validator")]
    NoValidators,
    #[error("validator {0} has no voting power")]
    ZeroPower(PublicKey),
    #[error("{0} appears twice")]
    Duplicate(PublicKey),
    #[error("the total supply overflows")]
    Overflow,
    #[error("the parameters are invalid: {0}")]
    Params(String),
}

impl Genesis {
    /// Reads and checks a genesis file.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        let genesis: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        genesis.check()?;
        Ok(genesis)
    }

    pub fn to_json(&self) -> String {
        // Strings, integers and keys only: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The genesis hash, which the first block names as its previous block.
    pub fn hash(&self) -> Hash {
        Hash::of_encoded(&("aqueduct/v1/genesis", self))
    }

    pub fn validator_set(&self) -> ValidatorSet {
        ValidatorSet {
            validators: self.validators.clone(),
        }
    }

    /// Checks what the state machine relies on.
    pub fn check(&self) -> Result<(), GenesisError> {
        if self.network_id.is_empty() || self.network_id.len() > 64 {
            return Err(GenesisError::NetworkId);
        }
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        let mut seen = BTreeSet::new();
        let mut power: u64 = 0;
        for v in &self.validators {
            if v.power == 0 {
                return Err(GenesisError::ZeroPower(v.key));
            }
            if !seen.insert(v.key) {
                return Err(GenesisError::Duplicate(v.key));
            }
            power = power.checked_add(v.power).ok_or(GenesisError::Overflow)?;
        }
        let mut seen = BTreeSet::new();
        let mut supply: Amount = 0;
        for b in &self.balances {
            if !seen.insert(b.account) {
                return Err(GenesisError::Duplicate(b.account));
            }
            supply = supply.checked_add(b.amount).ok_or(GenesisError::Overflow)?;
        }
        supply
            .checked_add(self.treasury)
            .ok_or(GenesisError::Overflow)?;
        if let Some(problem) = self.params.problem() {
            return Err(GenesisError::Params(problem));
        }
        Ok(())
    }

    /// The state before the first block.
    pub fn initial_state(&self) -> Changes {
        let mut changes = Changes::new();
        changes.insert(
            StateKey::Params,
            Some(StateValue::Params(self.params.clone())),
        );
        changes.insert(StateKey::Treasury, Some(StateValue::Amount(self.treasury)));
        changes.insert(StateKey::Providers, Some(StateValue::Keys(Vec::new())));
        changes.insert(
            StateKey::Validators,
            Some(StateValue::Validators(self.validator_set())),
        );
        for b in &self.balances {
            changes.insert(
                StateKey::Power(b.account),
                Some(StateValue::Power(super::gov::PowerHistory(vec![(
                    0, b.amount,
                )]))),
            );
            changes.insert(
                StateKey::Account(b.account),
                Some(StateValue::Account(super::state::Account {
                    balance: b.amount,
                    nonce: 0,
                    faucet_used: false,
                })),
            );
        }
        changes
    }

    /// A single-validator development network with a faucet: what `cargo xtask run` starts.
    pub fn dev(network_id: &str, validator: PublicKey, time_ms: u64) -> Self {
        Genesis {
            network_id: network_id.to_owned(),
            time_ms,
            validators: vec![Validator {
                key: validator,
                power: 1,
            }],
            balances: vec![Balance {
                account: validator,
                amount: 1_000_000 * UNITS_PER_TOKEN,
            }],
            params: Params::dev(),
            treasury: 100_000 * UNITS_PER_TOKEN,
        }
    }
}

impl Params {
    /// Parameters of a development network: a faucet, short delays.
    pub fn dev() -> Self {
        Params {
            min_stake: 100 * UNITS_PER_TOKEN,
            unbonding_delay_ms: 60_000,
            channel_timeout_ms: 60 * 60_000,
            base_fee: 1_000,
            fee_per_byte: 1,
            max_job_ttl_ms: 10 * 60_000,
            faucet_amount: Some(1_000 * UNITS_PER_TOKEN),
            slash_fraction_bps: 1_000,
            gov: super::gov::GovParams {
                proposal_threshold: 100 * UNITS_PER_TOKEN,
                quorum: 1_000 * UNITS_PER_TOKEN,
                voting_delay_blocks: 2,
                voting_period_blocks: 30,
                timelock_blocks: 6,
                grace_blocks: 60,
            },
            validator_count: 4,
            epoch_blocks: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn json_round_trip_with_peer_id_accounts() {
        let key = Keypair::from_seed(&[1; 32]);
        let genesis = Genesis::dev("aqueduct-dev", key.public(), 1_000);
        let json = genesis.to_json();
        assert!(json.contains(&key.peer_id().to_string()), "{json}");
        assert_eq!(Genesis::from_json(&json), Ok(genesis.clone()));
        assert_ne!(
            genesis.hash(),
            Genesis::dev("aqueduct-other", key.public(), 1_000).hash()
        );
    }

    #[test]
    fn bad_genesis_files_are_refused_with_a_reason() {
        let key = Keypair::from_seed(&[1; 32]).public();
        let good = Genesis::dev("n", key, 0);
        let mut g = good.clone();
        g.validators.clear();
        assert_eq!(g.check(), Err(GenesisError::NoValidators));
        let mut g = good.clone();
        g.validators[0].power = 0;
        assert_eq!(g.check(), Err(GenesisError::ZeroPower(key)));
        let mut g = good.clone();
        g.balances.push(g.balances[0].clone());
        assert_eq!(g.check(), Err(GenesisError::Duplicate(key)));
        let mut g = good.clone();
        g.params.base_fee = 0;
        g.params.fee_per_byte = 0;
        assert!(matches!(g.check(), Err(GenesisError::Params(_))));
        let mut g = good;
        g.network_id = String::new();
        assert_eq!(g.check(), Err(GenesisError::NetworkId));
        assert!(matches!(
            Genesis::from_json("{\"network_id\": 3}"),
            Err(GenesisError::Parse(_))
        ));
    }
}

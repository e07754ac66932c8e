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
    /// Where a new relay of this network starts looking for others. Not part of the genesis
    /// hash: the addresses can change (a relay moves, the file gains a peer) without making
    /// another network.
    #[borsh(skip)]
    #[serde(default, skip_serializing_if = "Bootstrap::is_empty")]
    pub bootstrap: Bootstrap,
}

/// Bootstrap peers: relays' relay-to-relay addresses and validators' consensus addresses,
/// each `/ip4/…/tcp/…/p2p/<peer id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    #[serde(default)]
    pub relays: Vec<String>,
    #[serde(default)]
    pub consensus: Vec<String>,
}

/// The most bootstrap addresses of each kind, and the longest one.
pub const MAX_BOOTSTRAP: usize = 64;
pub const MAX_BOOTSTRAP_ADDR: usize = 256;

impl Bootstrap {
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty() && self.consensus.is_empty()
    }
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
    #[error(
        "the bootstrap list is too long (at most {MAX_BOOTSTRAP} addresses of each kind, each \
         at most {MAX_BOOTSTRAP_ADDR} characters)"
    )]
    Bootstrap,
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
        let b = &self.bootstrap;
        if b.relays.len() > MAX_BOOTSTRAP
            || b.consensus.len() > MAX_BOOTSTRAP
            || b.relays
                .iter()
                .chain(&b.consensus)
                .any(|a| a.len() > MAX_BOOTSTRAP_ADDR)
        {
            return Err(GenesisError::Bootstrap);
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
            bootstrap: Bootstrap::default(),
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
        assert!(!json.contains("bootstrap"), "{json}");
        // Bootstrap peers travel in the file but are not part of the network's identity.
        let mut with_peers = genesis.clone();
        with_peers.bootstrap.relays = vec!["/ip4/10.0.0.1/tcp/7001/p2p/x".into()];
        let json = with_peers.to_json();
        assert_eq!(Genesis::from_json(&json), Ok(with_peers.clone()));
        assert_eq!(with_peers.hash(), genesis.hash());
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
        let mut g = good.clone();
        g.bootstrap.relays = vec!["/ip4/127.0.0.1/tcp/1".into(); MAX_BOOTSTRAP + 1];
        assert_eq!(g.check(), Err(GenesisError::Bootstrap));
        let mut g = good.clone();
        g.bootstrap.consensus = vec!["x".repeat(MAX_BOOTSTRAP_ADDR + 1)];
        assert_eq!(g.check(), Err(GenesisError::Bootstrap));
        let mut g = good;
        g.network_id = String::new();
        assert_eq!(g.check(), Err(GenesisError::NetworkId));
        assert!(matches!(
            Genesis::from_json("{\"network_id\": 3}"),
            Err(GenesisError::Parse(_))
        ));
    }
}

//! Everything the light client checks before it believes a relay: headers and their commits,
//! proven state reads, epoch changes, transaction inclusion, double-sign evidence, state
//! proofs against a real state root, and checkpoint proofs of a job's trace. The first byte's
//! bits make a header signable by the genesis validators and re-sign its commit, so the checks
//! behind the signatures are reached.
#![no_main]

use borsh::BorshDeserialize;
use client_core::hash::Hash;
use client_core::job::commit::{Commitment, verify_states};
use client_core::ledger::block::verify_tx_in;
use client_core::ledger::evidence::DoubleSign;
use client_core::ledger::light::{EpochChange, LightClient, ProvenReads, TxInclusion};
use client_core::ledger::merkle::{MemoryTree, StateProof, prove, verify_read};
use client_core::ledger::{Block, Commit, Header, StateKey, StateValue};
use client_core_fuzz::{NETWORK, genesis, keys};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[derive(BorshDeserialize)]
enum Input {
    Reads {
        keys: Vec<StateKey>,
        answer: ProvenReads,
    },
    Blocks(Vec<Block>),
    Epoch(EpochChange),
    Inclusion {
        tx: Hash,
        inclusion: TxInclusion,
    },
    DoubleSign(DoubleSign),
    StateRead {
        key: StateKey,
        value: Option<StateValue>,
        proof: StateProof,
    },
    Checkpoints {
        commitment: Commitment,
        states: Vec<(u64, Hash)>,
        proof: Vec<u8>,
    },
    TxIn {
        root: Hash,
        tx: Hash,
        index: u32,
        count: u32,
        proof: Vec<u8>,
    },
}

/// The genesis state's tree and root.
fn tree() -> &'static (MemoryTree, Hash, u64) {
    static TREE: OnceLock<(MemoryTree, Hash, u64)> = OnceLock::new();
    TREE.get_or_init(|| {
        let tree = MemoryTree::new();
        let (root, version) = tree
            .commit(&genesis().initial_state())
            .expect("the genesis state commits");
        (tree, root, version)
    })
}

/// Applies the fixes the first byte asks for to a header and its commit.
fn fix(fixes: u8, header: &mut Header, commit: &mut Commit) {
    let set = genesis().validator_set().hash();
    if fixes & 1 != 0 {
        header.network_id = NETWORK.to_owned();
        header.validators = set;
        header.next_validators = set;
    }
    if fixes & 2 != 0 {
        let keys = keys();
        *commit = Commit::signed_by(&[&keys[0], &keys[1]], header, commit.round);
    }
}

fuzz_target!(|data: &[u8]| {
    let [fixes, bytes @ ..] = data else {
        return;
    };
    let Ok(input) = client_core::encoding::decode::<Input>(bytes, 256 * 1024) else {
        return;
    };
    let g = genesis();
    let mut light = LightClient::new(g);
    match input {
        Input::Reads { keys, mut answer } => {
            fix(*fixes, &mut answer.header, &mut answer.commit);
            if fixes & 4 != 0 {
                // Real proofs from the genesis tree, for the values the fuzzer claims.
                let (tree, root, version) = tree();
                answer.header.state_root = *root;
                for read in &mut answer.reads {
                    if let Ok((_, proof)) = prove(tree, &read.key, *version) {
                        read.proof = proof;
                    }
                }
                fix(*fixes, &mut answer.header, &mut answer.commit);
            }
            if let Ok(verified) = light.verify(&keys, &answer) {
                assert_eq!(verified.value.len(), keys.len());
                assert_eq!(verified.state_root, answer.header.state_root);
            }
        }
        Input::Blocks(blocks) => {
            for mut block in blocks {
                fix(*fixes, &mut block.header, &mut block.commit);
                let _ = light.accept(&block.header, &block.commit);
            }
        }
        Input::Epoch(mut change) => {
            fix(*fixes, &mut change.header, &mut change.commit);
            let _ = light.follow(&change);
        }
        Input::Inclusion { tx, mut inclusion } => {
            fix(*fixes, &mut inclusion.header, &mut inclusion.commit);
            let _ = light.verify_inclusion(&tx, &inclusion);
        }
        Input::DoubleSign(evidence) => {
            let _ = evidence.check(NETWORK);
        }
        Input::StateRead {
            key,
            value,
            mut proof,
        } => {
            let (tree, root, version) = tree();
            if fixes & 4 != 0
                && let Ok((real, real_proof)) = prove(tree, &key, *version)
            {
                proof = real_proof;
                // The real value with its real proof must verify; a different one must not.
                assert!(verify_read(root, &key, real.as_ref(), &proof).is_ok());
                if value != real {
                    assert!(verify_read(root, &key, value.as_ref(), &proof).is_err());
                }
            }
            let _ = verify_read(root, &key, value.as_ref(), &proof);
        }
        Input::Checkpoints {
            commitment,
            states,
            proof,
        } => {
            let _ = verify_states(&commitment, &states, &proof);
        }
        Input::TxIn {
            root,
            tx,
            index,
            count,
            proof,
        } => {
            let _ = verify_tx_in(&root, &tx, index, count, &proof);
        }
    }
});

//! Writes a starting corpus for every fuzz target: one or a few well-formed inputs each, so
//! the fuzzer starts from messages that pass the first checks and mutates from there.
//! Usage: `seeds <corpus dir> [job module files…]` (the example jobs, for the module target).

use client_core::encoding::encode;
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::job::commit::CheckpointTree;
use client_core::job::exec::SparseSnapshot;
use client_core::job::fraud::Claim;
use client_core::job::profile::Profile;
use client_core::job::{ClientMsg, JobSpec, Receipt, RelayMsg, job_id};
use client_core::ledger::gov::{Action, Choice};
use client_core::ledger::light::{ProvenRead, ProvenReads};
use client_core::ledger::merkle::{MemoryTree, prove};
use client_core::ledger::state::{Offer, VerificationLevel};
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{Commit, Header, StateKey, Tx, TxKind};
use client_core::protocol::StatusRequest;
use client_core::signed::Signed;
use client_core::wallet::{Entropy, KdfParams, SealRandomness, SealedWallet};
use client_core_fuzz::{NETWORK, genesis, job_module, keys};
use std::path::{Path, PathBuf};

fn main() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: seeds <corpus dir> [modules…]")?);
    let modules: Vec<PathBuf> = args.map(PathBuf::from).collect();
    let keys = keys();
    let g = genesis();
    let spec = JobSpec {
        module: Hash::of(&job_module(true)),
        input: b"seed".to_vec(),
        fuel_limit: 1_000_000,
        max_steps: 16,
        payment: None,
    };
    let request = Signed::sign(
        &keys[2],
        Request::new(NETWORK, 1, 1_700_000_000_000, 60_000, spec.clone()),
    );
    let states: Vec<Hash> = (0u64..5).map(|i| Hash::of(&i.to_le_bytes())).collect();
    let tree = CheckpointTree::new(&states);
    let receipt = Receipt {
        profile: Profile::V1.version,
        job: job_id(&request),
        customer: keys[2].public(),
        module: spec.module,
        input: Hash::of(&spec.input),
        output: Hash::of(b"out"),
        fuel_used: 1000,
        commitment: Some(tree.commitment()),
        payment: None,
        completed_at_ms: 1_700_000_001_000,
    };
    let snapshot = SparseSnapshot {
        globals: vec![0, 1_000_000, 0],
        memory_len: 65536,
        chunks: vec![(1, vec![7; 4096])],
    };

    // Frames: piece size, limit, then three frames.
    let mut frames = vec![3u8, 4];
    for body in [&b"hello"[..], &[0u8; 300][..], &[]] {
        frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frames.extend_from_slice(body);
    }
    write(&dir, "frame", "three", &frames)?;

    // Messages: a kind byte, then the message.
    let tagged = |kind: u8, value: &dyn Fn() -> Vec<u8>| [vec![kind], value()].concat();
    let submit = ClientMsg::Submit {
        request: request.clone(),
        module: Some(job_module(true)),
    };
    write(&dir, "messages", "submit", &tagged(0, &|| encode(&submit)))?;
    let sample = ClientMsg::Sample {
        states: vec![1, 3],
        prove: vec![1, 3],
    };
    write(&dir, "messages", "sample", &tagged(0, &|| encode(&sample)))?;
    let state = RelayMsg::State {
        index: 2,
        state: snapshot.clone(),
    };
    write(&dir, "messages", "state", &tagged(1, &|| encode(&state)))?;
    let probe = StatusRequest::Probe { seq: 7 };
    write(&dir, "messages", "probe", &tagged(2, &|| encode(&probe)))?;
    let read = LedgerRequest::Read {
        keys: vec![StateKey::Account(keys[0].public())],
        height: None,
    };
    write(&dir, "messages", "read", &tagged(4, &|| encode(&read)))?;

    // Transactions: (sender, block time passing, transaction) from the funded accounts.
    let offer = Offer {
        price_per_mfuel: 10,
        max_fuel: 1_000_000_000,
        concurrency: 2,
        levels: vec![VerificationLevel::Receipt, VerificationLevel::Sampled],
        addrs: vec!["/ip4/127.0.0.1/udp/1/webrtc-direct".into()],
        attributes: vec![("region".into(), "eu".into())],
    };
    let tx = |nonce: u64, kind: TxKind| Tx {
        network_id: NETWORK.into(),
        nonce,
        fee: 1_000_000,
        kind,
    };
    let txs: Vec<(u8, u32, Tx)> = vec![
        (2, 0, tx(0, TxKind::Faucet)),
        (
            0,
            0,
            tx(
                0,
                TxKind::RegisterProvider {
                    stake: 200_000_000,
                    offer,
                },
            ),
        ),
        (
            2,
            1000,
            tx(
                1,
                TxKind::OpenChannel {
                    provider: keys[0].public(),
                    amount: 5_000_000,
                },
            ),
        ),
        (
            3,
            0,
            tx(
                0,
                TxKind::Transfer {
                    to: keys[1].public(),
                    amount: 3,
                },
            ),
        ),
        (
            1,
            1000,
            tx(
                0,
                TxKind::Propose {
                    title: "seed".into(),
                    description: "a text".into(),
                    action: Action::Text,
                },
            ),
        ),
        (
            1,
            100_000,
            tx(
                1,
                TxKind::Vote {
                    proposal: 1,
                    choice: Choice::For,
                },
            ),
        ),
        (0, 100_000, tx(1, TxKind::Unbond)),
    ];
    write(&dir, "transactions", "sequence", &encode(&txs))?;

    // Receipts: every fix on, then the fuzzer's spec, receipt and output.
    write(
        &dir,
        "receipt",
        "honest",
        &encode(&(0xffu8, spec.clone(), receipt.clone(), b"out".to_vec())),
    )?;

    // Fraud proofs: every fix on, a segment claim.
    let claim = Claim::Segment {
        index: 2,
        pre: snapshot,
        pre_proof: tree.prove(&[1]),
        post: states[2],
        post_proof: tree.prove(&[2]),
    };
    write(
        &dir,
        "fraud_proof",
        "segment",
        &encode(&(0xffu8, 3u8, spec, receipt, job_module(true), claim)),
    )?;

    // Proofs: real reads of the genesis state with a signed header (the enum's first variant).
    let state_tree = MemoryTree::new();
    let (root, version) = state_tree
        .commit(&g.initial_state())
        .map_err(|e| e.to_string())?;
    let read_keys: Vec<StateKey> = keys.iter().map(|k| StateKey::Account(k.public())).collect();
    let reads = read_keys
        .iter()
        .map(|key| {
            let (value, proof) = prove(&state_tree, key, version).map_err(|e| e.to_string())?;
            Ok(ProvenRead {
                key: key.clone(),
                value,
                proof,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let set = g.validator_set().hash();
    let header = Header {
        network_id: NETWORK.into(),
        height: 1,
        prev: g.hash(),
        state_root: root,
        txs_root: Hash([0; 32]),
        time_ms: g.time_ms + 1000,
        validators: set,
        next_validators: set,
    };
    let commit = Commit::signed_by(&[&keys[0], &keys[1]], &header, 0);
    let answer = ProvenReads {
        header,
        commit,
        reads,
    };
    let mut proofs = vec![3u8, 0];
    proofs.extend(encode(&(read_keys, answer.clone())));
    write(&dir, "proofs", "reads", &proofs)?;
    let response = LedgerResponse::Reads(Some(Box::new(answer)));
    write(&dir, "messages", "reads", &tagged(5, &|| encode(&response)))?;

    // A backup file, sealed with the smallest parameters a backup may have.
    let sealed = SealedWallet::seal(
        &Entropy::new([9; 32]),
        "correct horse battery",
        KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        },
        SealRandomness {
            salt: [1; 16],
            nonce: [2; 24],
        },
    )
    .map_err(|e| e.to_string())?;
    write(&dir, "backup", "wallet", sealed.to_backup().as_bytes())?;

    // Modules: the two forms, raw (mode 0), and the example jobs given.
    for (name, module) in [("run", job_module(false)), ("steps", job_module(true))] {
        write(&dir, "module", name, &[vec![0], module].concat())?;
    }
    for path in modules {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job".into());
        write(&dir, "module", &name, &[vec![0], bytes].concat())?;
    }
    Ok(())
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("seed-{name}"));
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

//! How big the relay's ledger database gets: creates `--accounts` new accounts through blocks
//! of transfers (as a real network would: signed, admitted to the mempool, applied, committed
//! to the database file), then reports the file size and bytes per account, and extrapolates to
//! a million accounts.
//!
//! `cargo run --release -p aqueduct-tests --bin ledger-size -- --accounts 100000`

use client_core::identity::Keypair;
use client_core::ledger::genesis::Balance;
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::{Genesis, Tx, TxKind};
use client_core::signed::Signed;
use node_relay::ledger::store::LedgerStore;
use node_relay::ledger::{Ledger, LedgerConfig, SoloValidator};
use std::time::Instant;

const SENDERS: usize = 1000;

fn key(i: u64) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i + 1).to_le_bytes());
    Keypair::from_seed(&seed)
}

fn main() -> anyhow::Result<()> {
    let mut accounts: u64 = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--accounts" => {
                accounts = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--accounts takes a number"))?
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let senders: Vec<Keypair> = (0..SENDERS as u64).map(key).collect();
    let validator = Keypair::from_seed(&[200; 32]);
    let mut genesis = Genesis::dev("aqueduct-size", validator.public(), 0);
    genesis.balances.extend(senders.iter().map(|k| Balance {
        account: k.public(),
        amount: 1_000_000 * UNITS_PER_TOKEN,
    }));
    let dir = aqueduct_tests::temp_dir("ledger-size");
    let ledger = Ledger::open(
        &dir,
        &genesis,
        Box::new(SoloValidator::new(validator)),
        LedgerConfig {
            max_block_txs: SENDERS,
            ..LedgerConfig::default()
        },
    )?;
    let started = Instant::now();
    let mut created: u64 = 0;
    let mut nonce = 0u64;
    let mut blocks = 0u64;
    while created < accounts {
        for sender in &senders {
            if created == accounts {
                break;
            }
            let to = key(1_000_000 + created).public();
            let tx = Signed::sign(
                sender,
                Tx {
                    network_id: genesis.network_id.clone(),
                    nonce,
                    fee: 10_000,
                    kind: TxKind::Transfer { to, amount: 1 },
                },
            );
            ledger
                .submit(tx)
                .map_err(|e| anyhow::anyhow!("admission: {e}"))?;
            created += 1;
        }
        nonce += 1;
        blocks += 1;
        ledger
            .produce_block(blocks, false)?
            .ok_or_else(|| anyhow::anyhow!("no block made"))?;
        if blocks.is_multiple_of(10) {
            eprintln!("{created} accounts, {blocks} blocks");
        }
    }
    drop(ledger);
    let bytes = LedgerStore::file_size(&dir);
    let total_accounts = created + SENDERS as u64 + 1;
    let per_account = bytes as f64 / total_accounts as f64;
    let result = serde_json::json!({
        "accounts": total_accounts,
        "blocks": blocks,
        "transactions": created,
        "file_bytes": bytes,
        "bytes_per_account": per_account,
        "extrapolated_bytes_per_million_accounts": per_account * 1e6,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    println!(
        "{total_accounts} accounts in {blocks} blocks: {:.1} MB, {per_account:.0} bytes per account \
         → about {:.2} GB per million accounts (with every block's history kept)",
        bytes as f64 / 1e6,
        per_account * 1e6 / 1e9
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

//! The relay's ledger survives SIGKILL: transactions stream in from several accounts, the relay
//! is killed mid-stream, and after a restart every transaction it had reported as included is
//! still in its block, and replaying the stored blocks from genesis — checking every commit and
//! every state root — gives the state root the relay serves.

use aqueduct_tests::{
    Relay, RelayPorts, ledger_blocks, ledger_call, relay_bin, tcp_client, temp_dir, www_dir,
};
use client_core::identity::Keypair;
use client_core::ledger::chain::Replica;
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::tx::tx_id;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{StateKey, Tx, TxKind};
use client_core::signed::Signed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCOUNTS: u8 = 6;

/// Sends `who`'s transactions one after another (faucet first, then transfers), recording
/// each one the relay reports as included, until the relay goes away.
async fn stream_transactions(
    mut control: libp2p_stream::Control,
    relay: libp2p::PeerId,
    network_id: String,
    who: Keypair,
    to: client_core::identity::PublicKey,
    included: Arc<Mutex<Vec<(client_core::hash::Hash, u64)>>>,
) {
    // Carry on from the account's nonce as the relay has it (after a restart, say).
    let key = StateKey::Account(who.public());
    let first = match ledger_call(
        &mut control,
        relay,
        &LedgerRequest::Read {
            keys: vec![key],
            height: None,
        },
    )
    .await
    {
        Ok(answers) => match answers.first() {
            Some(LedgerResponse::Reads(Some(reads))) => match &reads.reads[0].value {
                Some(client_core::ledger::StateValue::Account(a)) => a.nonce,
                _ => 0,
            },
            _ => 0,
        },
        Err(_) => return,
    };
    for nonce in first.. {
        let kind = if nonce == 0 {
            TxKind::Faucet
        } else {
            TxKind::Transfer {
                to,
                amount: UNITS_PER_TOKEN / 100,
            }
        };
        let tx = Signed::sign(
            &who,
            Tx {
                network_id: network_id.clone(),
                nonce,
                fee: 10_000,
                kind,
            },
        );
        let id = tx_id(&tx);
        let Ok(answers) = ledger_call(
            &mut control,
            relay,
            &LedgerRequest::Submit { tx: Box::new(tx) },
        )
        .await
        else {
            return;
        };
        match answers.last() {
            Some(LedgerResponse::Included { tx, height }) if *tx == id => {
                if let Ok(mut all) = included.lock() {
                    all.push((id, *height));
                }
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_committed_transaction_is_lost_to_sigkill() -> anyhow::Result<()> {
    let data_dir = temp_dir("ledger-crash");
    let (bin, www) = (relay_bin()?, www_dir()?);
    let args = ["--block-interval-ms", "20"];
    let mut relay = Relay::start_with(&bin, &www, &data_dir, &RelayPorts::any(), &args)?;
    let ports = relay.ports.clone();
    let (mut control, mut peer) = tcp_client(&relay).await?;
    let genesis = aqueduct_tests::ledger_genesis(&mut control, peer).await?;

    // Three times: let transactions stream in, then pull the plug while they are in flight.
    let included = Arc::new(Mutex::new(Vec::new()));
    for round in 1..=3usize {
        if round > 1 {
            relay = Relay::start_with(&bin, &www, &data_dir, &ports, &args)?;
            (control, peer) = tcp_client(&relay).await?;
        }
        let mut tasks = Vec::new();
        for n in 0..ACCOUNTS {
            let who = Keypair::from_seed(&[n + 1; 32]);
            let to = Keypair::from_seed(&[(n + 1) % ACCOUNTS + 1; 32]).public();
            tasks.push(tokio::spawn(stream_transactions(
                control.clone(),
                peer,
                genesis.network_id.clone(),
                who,
                to,
                Arc::clone(&included),
            )));
        }
        let target = round * 80;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while included.lock().map(|i| i.len()).unwrap_or(0) < target {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "transactions were not included:\n{}",
                relay.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        relay.kill();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
    let acknowledged = included.lock().map(|i| i.clone()).unwrap_or_default();
    eprintln!(
        "{} transactions acknowledged across three kills",
        acknowledged.len()
    );

    // Restart on the same data directory.
    let relay = Relay::start_with(&bin, &www, &data_dir, &ports, &args)?;
    let (mut control, peer) = tcp_client(&relay).await?;
    assert_eq!(
        aqueduct_tests::ledger_genesis(&mut control, peer).await?,
        genesis,
        "same genesis after the restart"
    );
    let blocks = ledger_blocks(&mut control, peer).await?;
    let last_acknowledged = acknowledged.iter().map(|(_, h)| *h).max().unwrap_or(0);
    assert!(
        blocks.len() as u64 >= last_acknowledged,
        "blocks went missing: {} stored, {last_acknowledged} acknowledged",
        blocks.len()
    );

    // Every acknowledged transaction is in the block the relay named.
    for (id, height) in &acknowledged {
        let block = &blocks[(*height - 1) as usize];
        assert!(
            block.txs.iter().any(|tx| tx_id(tx) == *id),
            "transaction {id} of block {height} is gone"
        );
    }

    // Replaying from genesis checks every commit, link and root, and ends where the relay is.
    let mut replica = Replica::new(&genesis)?;
    for block in &blocks {
        replica.apply_block(block)?;
    }
    let answer = ledger_call(
        &mut control,
        peer,
        &LedgerRequest::Read {
            keys: vec![StateKey::Params],
            height: None,
        },
    )
    .await?;
    let Some(LedgerResponse::Reads(Some(reads))) = answer.first() else {
        anyhow::bail!("unexpected answer to a read: {answer:?}");
    };
    // The relay may have made a heartbeat block since the list was fetched; compare at the
    // height it reports.
    let mut light = client_core::ledger::light::LightClient::new(&genesis);
    light.verify(&[StateKey::Params], reads)?;
    let served = &reads.header;
    let blocks = ledger_blocks(&mut control, peer).await?;
    for block in blocks.iter().skip(replica.height() as usize) {
        replica.apply_block(block)?;
    }
    assert!(replica.height() >= served.height);
    let served_block = &blocks[(served.height - 1) as usize];
    assert_eq!(served_block.header, *served);
    eprintln!(
        "replayed {} blocks ({} transactions); state root {}",
        replica.height(),
        blocks.iter().map(|b| b.txs.len()).sum::<usize>(),
        replica.state_root()
    );

    // And the chain goes on: a new transaction is included after the restart.
    let newcomer = Keypair::from_seed(&[99; 32]);
    let tx = Signed::sign(
        &newcomer,
        Tx {
            network_id: genesis.network_id.clone(),
            nonce: 0,
            fee: 10_000,
            kind: TxKind::Faucet,
        },
    );
    let answers = ledger_call(
        &mut control,
        peer,
        &LedgerRequest::Submit { tx: Box::new(tx) },
    )
    .await?;
    assert!(
        matches!(
            answers.as_slice(),
            [
                LedgerResponse::Submitted { .. },
                LedgerResponse::Included { .. }
            ]
        ),
        "{answers:?}"
    );

    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// A client that submits the same transaction again — because its first wait ended, or its
/// stream broke — is told where it went: while it is pending the repeat waits for the same
/// block; once it is in a block the repeat is answered with that block, not refused for its
/// nonce.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_submitted_again_is_answered_with_its_one_block() -> anyhow::Result<()> {
    let data_dir = temp_dir("ledger-resubmit");
    let relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &RelayPorts::any(),
        &["--block-interval-ms", "500"],
    )?;
    let (control, peer) = tcp_client(&relay).await?;
    let genesis = aqueduct_tests::ledger_genesis(&mut control.clone(), peer).await?;
    let tx = Signed::sign(
        &Keypair::from_seed(&[42; 32]),
        Tx {
            network_id: genesis.network_id.clone(),
            nonce: 0,
            fee: 10_000,
            kind: TxKind::Faucet,
        },
    );
    let id = tx_id(&tx);
    let submit = |mut control: libp2p_stream::Control| {
        let request = LedgerRequest::Submit {
            tx: Box::new(tx.clone()),
        };
        async move { ledger_call(&mut control, peer, &request).await }
    };
    // Twice at once: both wait for, and are told, the same block.
    let (first, second) = tokio::join!(submit(control.clone()), submit(control.clone()));
    let (first, second) = (first?, second?);
    let height = match (first.last(), second.last()) {
        (
            Some(LedgerResponse::Included { tx: a, height: h }),
            Some(LedgerResponse::Included { tx: b, height: k }),
        ) if *a == id && *b == id && h == k => *h,
        other => anyhow::bail!("two submissions of one transaction: {other:?}"),
    };
    // Once more after its block: answered with that block at once.
    let again = submit(control.clone()).await?;
    assert_eq!(
        again,
        vec![LedgerResponse::Included { tx: id, height }],
        "a submission repeated after its block"
    );
    Ok(())
}

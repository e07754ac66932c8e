//! Relays that do not make blocks: they follow the relay that does, check every block
//! (re-executing it and checking its commit) before storing it, forward the transactions they
//! take in, and serve proven reads — real relay processes on loopback, each binding port 0.

use aqueduct_tests::devnet::{height, peer_id, write_genesis};
use aqueduct_tests::{
    Relay, RelayPorts, ledger_blocks, ledger_call, ledger_genesis, read_verified, relay_bin,
    tcp_client, temp_dir, www_dir,
};
use client_core::identity::Keypair;
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::tx::tx_id;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{Genesis, StateKey, StateValue, Tx, TxKind};
use client_core::signed::Signed;
use std::time::{Duration, Instant};

const NET: &str = "aqueduct-follow";
const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn relays_that_do_not_validate_follow_forward_and_provide() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let root = temp_dir("follow");
    let (dir_a, dir_b, dir_c) = (root.join("a"), root.join("b"), root.join("c"));
    let (id_a, id_b) = (peer_id(&bin, &dir_a)?, peer_id(&bin, &dir_b)?);
    // A validates alone; B is funded so it can stake as a provider.
    let genesis_file = root.join("genesis.json");
    write_genesis(
        &bin,
        NET,
        std::slice::from_ref(&id_a),
        &[(&id_b, 1000)],
        20,
        &genesis_file,
    )?;
    let genesis_arg = genesis_file.to_string_lossy().into_owned();
    let common = ["--network-id", NET, "--block-interval-ms", "100"];

    let a = Relay::start_with(
        &bin,
        &www,
        &dir_a,
        &RelayPorts::any(),
        &[&common[..], &["--genesis", &genesis_arg]].concat(),
    )?;
    let a_addr = a.relay_addr()?;
    // A relay that is down for the whole test: B is told of it too, and must not let it delay
    // what it forwards to A.
    let gone = format!(
        "/ip4/127.0.0.1/tcp/9/p2p/{}",
        peer_id(&bin, &root.join("gone"))?
    );
    // B follows A and registers as a provider: its transaction goes to A through B.
    let b = Relay::start_with(
        &bin,
        &www,
        &dir_b,
        &RelayPorts::any(),
        &[
            &common[..],
            &[
                "--genesis",
                &genesis_arg,
                "--peer",
                &gone,
                "--peer",
                &a_addr,
                "--provide",
            ],
        ]
        .concat(),
    )?;
    let (mut control, relay_b) = tcp_client(&b).await?;
    let genesis = ledger_genesis(&mut control, relay_b).await?;
    let provider_b = client_core::identity::PublicKey::parse(&id_b)?;
    let deadline = Instant::now() + STEP;
    loop {
        let at_a = read_verified(&genesis, &a, StateKey::Provider(provider_b)).await?;
        let at_b = read_verified(&genesis, &b, StateKey::Provider(provider_b)).await;
        if matches!(at_a, Some(StateValue::Provider(_)))
            && matches!(at_b, Ok(Some(StateValue::Provider(_))))
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "B's registration did not reach the chain:\nA: {}\nB: {}",
            a.output(),
            b.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A customer submits through B; B says when a block it followed includes it.
    let customer = Keypair::from_seed(&[77; 32]);
    let tx = Signed::sign(
        &customer,
        Tx {
            network_id: NET.into(),
            nonce: 0,
            fee: 10_000,
            kind: TxKind::Faucet,
        },
    );
    let id = tx_id(&tx);
    let answers = ledger_call(
        &mut control,
        relay_b,
        &LedgerRequest::Submit { tx: Box::new(tx) },
    )
    .await?;
    let Some(LedgerResponse::Included {
        tx,
        height: included,
    }) = answers.last()
    else {
        anyhow::bail!(
            "expected inclusion, got {answers:?}\nA: {}\nB: {}",
            a.output(),
            b.output()
        );
    };
    assert_eq!(*tx, id);
    let balance = |v: Option<StateValue>| match v {
        Some(StateValue::Account(a)) => a.balance,
        _ => 0,
    };
    // Proven in its block, from the follower: the header's commit and the transactions root.
    let proof = ledger_call(
        &mut control,
        relay_b,
        &LedgerRequest::TxProof {
            height: *included,
            tx: id,
        },
    )
    .await?;
    let Some(LedgerResponse::TxProof(Some(inclusion))) = proof.first() else {
        anyhow::bail!("expected an inclusion proof, got {proof:?}");
    };
    assert_eq!(
        client_core::ledger::light::LightClient::new(&genesis).verify_inclusion(&id, inclusion)?,
        *included
    );
    let at_a = balance(read_verified(&genesis, &a, StateKey::Account(customer.public())).await?);
    assert!(at_a > 900 * UNITS_PER_TOKEN, "faucet paid: {at_a}");

    // A late relay, C, syncs the whole chain from B (a follower of a follower), checking every
    // block, and then serves the same proven state. It is given no peer: it finds B in its
    // genesis file's bootstrap list (not part of the genesis hash, so the same network).
    let mut with_bootstrap = Genesis::from_json(&std::fs::read_to_string(&genesis_file)?)?;
    with_bootstrap.bootstrap.relays = vec![b.relay_addr()?];
    let genesis_c = root.join("genesis-c.json");
    std::fs::write(&genesis_c, with_bootstrap.to_json())?;
    let genesis_c = genesis_c.to_string_lossy().into_owned();
    let c = Relay::start_with(
        &bin,
        &www,
        &dir_c,
        &RelayPorts::any(),
        &[&common[..], &["--genesis", &genesis_c]].concat(),
    )?;
    let deadline = Instant::now() + STEP;
    while height(&c).await? < *included {
        anyhow::ensure!(
            Instant::now() < deadline,
            "C did not catch up:\n{}",
            c.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let at_c = balance(read_verified(&genesis, &c, StateKey::Account(customer.public())).await?);
    assert_eq!(at_c, at_a);
    // Every block any of them holds is the same block.
    let mut chains = Vec::new();
    for relay in [&a, &b, &c] {
        let (mut control, peer) = tcp_client(relay).await?;
        chains.push(ledger_blocks(&mut control, peer).await?);
    }
    let shortest = chains.iter().map(Vec::len).min().unwrap_or(0);
    assert!(shortest >= *included as usize);
    for chain in &chains[1..] {
        assert_eq!(&chain[..shortest], &chains[0][..shortest]);
    }
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

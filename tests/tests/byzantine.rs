//! A byzantine validator among four (the faulty relay binary, `--byzantine`): it proposes
//! blocks whose state root is wrong whenever it is the proposer, and signs a second,
//! conflicting vote beside every vote it casts (through Malachite's byzantine network proxy).
//! The three honest validators hold more than two thirds of the power, so blocks go on; none of
//! the invalid blocks is committed, every relay holds the same single chain (one certificate
//! per height), the chain replays from genesis with every block re-executed, and the honest
//! relays record the double-signing as proof anyone can check — durably, across a restart.

use aqueduct_tests::devnet::{Devnet, DevnetOptions, TxStreams, height, same_chain, wait_height};
use aqueduct_tests::{ledger_call, tcp_client};
use client_core::identity::PublicKey;
use client_core::ledger::Genesis;
use client_core::ledger::chain::Replica;
use client_core::ledger::evidence::DoubleSign;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use std::collections::HashSet;

const NET: &str = "aqueduct-byzantine";
const BYZANTINE: usize = 3;

async fn double_signs(relay: &aqueduct_tests::Relay) -> anyhow::Result<Vec<DoubleSign>> {
    let (mut control, peer) = tcp_client(relay).await?;
    match ledger_call(&mut control, peer, &LedgerRequest::Misbehaviour)
        .await?
        .first()
    {
        Some(LedgerResponse::Misbehaviour(proofs)) => Ok(proofs.clone()),
        other => anyhow::bail!("unexpected answer to Misbehaviour: {other:?}"),
    }
}

/// Each proof checks (same validator, slot and different values, both signatures valid) and
/// names the byzantine validator.
fn check_proofs(proofs: &[DoubleSign], liar: &PublicKey) -> anyhow::Result<()> {
    anyhow::ensure!(!proofs.is_empty(), "no double-signing was recorded");
    for proof in proofs {
        let signer = proof
            .check(NET)
            .map_err(|e| anyhow::anyhow!("a recorded proof does not check: {e}"))?;
        anyhow::ensure!(signer == *liar, "an honest validator was accused: {signer}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_byzantine_validator_gets_no_invalid_block_committed_and_its_double_signs_are_recorded()
-> anyhow::Result<()> {
    let byzantine_args: &[&str] = &["--byzantine", "double-sign,invalid-blocks"];
    let mut net = Devnet::start_with(&DevnetOptions {
        validators: 4,
        network_id: NET,
        epoch_blocks: 1000,
        extra: &[],
        funded: &[],
        byzantine: &[(BYZANTINE, byzantine_args)],
    })?;
    let genesis = Genesis::from_json(&std::fs::read_to_string(&net.genesis)?)?;
    let liar = PublicKey::parse(&net.relay(BYZANTINE)?.info()?.peer_id)?;

    // Transactions from three clients through the honest validators, so blocks carry state
    // changes a wrong state root could hide.
    let streams = TxStreams::start(&net, &[(0, 41), (1, 42), (2, 43)]).await?;
    // The byzantine validator is the first proposer of one height in four: by height 12 it
    // has proposed (and been refused) several times.
    wait_height(&net, 0, 12).await?;
    let acknowledged = streams.finish().await;
    let target = height(net.relay(0)?).await?;
    wait_height(&net, BYZANTINE, target).await?;

    // It did propose invalid blocks, and the honest validators refused them.
    let liar_log = net.relay(BYZANTINE)?.output();
    let proposed = liar_log
        .matches("BYZANTINE: proposing a block with a wrong state root")
        .count();
    anyhow::ensure!(
        proposed > 0,
        "the byzantine validator never proposed\n{}",
        net.logs()
    );
    let refused: usize = (0..BYZANTINE)
        .map(|i| {
            net.relay(i)
                .map(|r| r.output().matches("refused a proposed block").count())
                .unwrap_or(0)
        })
        .sum();
    anyhow::ensure!(refused > 0, "no honest validator refused a block");

    // One chain everywhere (the byzantine relay's included): one certificate per height.
    let chain = same_chain(&net).await?;
    anyhow::ensure!(chain.len() as u64 >= target, "the chain is short");
    // Every committed block re-executes from genesis to its header's state root, under the
    // commit of the set of its height.
    let mut replica = Replica::new(&genesis)?;
    for block in &chain {
        replica.apply_block(block)?;
    }
    anyhow::ensure!(!acknowledged.is_empty(), "no transaction was included");
    let in_chain: HashSet<_> = chain
        .iter()
        .flat_map(|b| b.txs.iter().map(client_core::ledger::tx::tx_id))
        .collect();
    anyhow::ensure!(
        acknowledged.iter().all(|id| in_chain.contains(id)),
        "an acknowledged transaction is missing from the chain"
    );

    // Every honest relay recorded the double-signing as proof that checks.
    for i in 0..BYZANTINE {
        check_proofs(&double_signs(net.relay(i)?).await?, &liar)
            .map_err(|e| anyhow::anyhow!("validator {i}: {e}\n{}", net.logs()))?;
    }
    // Durably: a restarted relay still has them.
    net.kill(0);
    net.restart(0)?;
    check_proofs(&double_signs(net.relay(0)?).await?, &liar)?;
    eprintln!(
        "{proposed} invalid proposals refused ({refused} refusals), {} blocks, {} transactions, \
         {} double-sign proofs at validator 0",
        chain.len(),
        acknowledged.len(),
        double_signs(net.relay(0)?).await?.len()
    );
    drop(net.relays);
    let _ = std::fs::remove_dir_all(&net.root);
    Ok(())
}

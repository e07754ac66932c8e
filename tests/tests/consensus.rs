//! Four validator relays running consensus (Malachite) on loopback, each binding its ports as
//! it starts: blocks go on while one validator is SIGKILLed, no acknowledged transaction is
//! lost, the killed validator comes back and catches up to the same chain; with two of four
//! stopped no block is made (and none lost), and the chain resumes once they are back.

use aqueduct_tests::devnet::{Devnet, TxStreams, blocks, height, same_chain, wait_height};
use aqueduct_tests::{ledger_call, tcp_client};
use client_core::hash::Hash;
use client_core::identity::PublicKey;
use client_core::ledger::tx::tx_id;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{Block, Genesis};
use std::time::Duration;

const NET: &str = "aqueduct-bft";
/// How long the page may take to show what the test waits for.
const PAGE_WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn four_validators_survive_one_crash_and_halt_safely_without_a_quorum() -> anyhow::Result<()>
{
    let mut net = Devnet::start(4, NET)?;
    wait_height(&net, 0, 2).await?;

    // A stream of transactions from three clients, each through another validator.
    let streams = TxStreams::start(&net, &[(0, 31), (1, 32), (3, 33)]).await?;
    // Until some are in blocks (a block takes seconds on a loaded machine), and a little more.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while streams.count() == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no transaction was included before the crash\n{}",
            net.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = streams.count();

    // A validator's /metrics carries the consensus engine's figures beside the relay's.
    let metrics = net.relay(0)?.get("/metrics")?;
    anyhow::ensure!(
        metrics.contains("malachitebft_core_consensus_height")
            && metrics.contains("aqueduct_ledger_height"),
        "consensus metrics missing from /metrics:\n{metrics}"
    );

    // SIGKILL validator 3 mid-stream (its client's stream breaks): blocks continue with three
    // of four.
    net.kill(3);
    let h = height(net.relay(0)?).await?;
    wait_height(&net, 0, h + 5).await?;
    let acknowledged = streams.finish().await;
    anyhow::ensure!(
        acknowledged.len() > before_kill,
        "no transaction was included after the crash"
    );

    // The killed validator restarts, catches up, and all four hold the same chain.
    net.restart(3)?;
    let target = height(net.relay(0)?).await?;
    wait_height(&net, 3, target).await?;
    let chain = same_chain(&net).await?;
    let in_chain: std::collections::HashSet<Hash> =
        chain.iter().flat_map(|b| b.txs.iter().map(tx_id)).collect();
    for id in &acknowledged {
        anyhow::ensure!(
            in_chain.contains(id),
            "acknowledged transaction {id} is not in the chain"
        );
    }
    eprintln!(
        "{} transactions acknowledged, all in {} blocks",
        acknowledged.len(),
        chain.len()
    );

    // Two of four stopped: no quorum, no block, nothing lost.
    net.kill(2);
    net.kill(3);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stalled = height(net.relay(0)?).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    anyhow::ensure!(
        height(net.relay(0)?).await? == stalled,
        "a block was made without a quorum"
    );
    anyhow::ensure!(height(net.relay(1)?).await? <= stalled);
    // Back: the chain resumes, and every block from before is still there.
    net.restart(2)?;
    net.restart(3)?;
    wait_height(&net, 0, stalled + 3).await?;
    let resumed = same_chain(&net).await?;
    let hashes = |c: &[Block]| -> Vec<Hash> { c.iter().map(|b| b.header.hash()).collect() };
    anyhow::ensure!(
        hashes(&resumed[..chain.len()]) == hashes(&chain),
        "blocks were lost"
    );
    drop(net.relays);
    let _ = std::fs::remove_dir_all(&net.root);
    Ok(())
}

/// Reads `keys` from `relay` with `light`, following the validator-set changes it has not
/// seen yet through the relay's epoch changes (each signed by the set before it).
async fn read_following(
    light: &mut client_core::ledger::light::LightClient,
    relay: &aqueduct_tests::Relay,
    keys: &[client_core::ledger::StateKey],
) -> anyhow::Result<(u64, Vec<Option<client_core::ledger::StateValue>>)> {
    use client_core::ledger::light::ReadError;
    let (mut control, peer) = tcp_client(relay).await?;
    for _ in 0..8 {
        let answer = ledger_call(
            &mut control,
            peer,
            &LedgerRequest::Read {
                keys: keys.to_vec(),
                height: None,
            },
        )
        .await?;
        let Some(LedgerResponse::Reads(Some(reads))) = answer.first() else {
            anyhow::bail!("unexpected answer {answer:?}");
        };
        match light.verify(keys, reads) {
            Ok(verified) => return Ok((verified.height, verified.value)),
            Err(ReadError::UnknownSet { .. }) => {
                let from = light.epochs_from();
                let answer =
                    ledger_call(&mut control, peer, &LedgerRequest::Epochs { from }).await?;
                let Some(LedgerResponse::Epochs(changes)) = answer.first() else {
                    anyhow::bail!("unexpected answer {answer:?}");
                };
                for change in changes {
                    light.follow(change)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the light client could not catch up with the validator set")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_stakes_more_becomes_a_validator_at_the_next_epoch() -> anyhow::Result<()> {
    use aqueduct_tests::devnet::{DevnetOptions, peer_id};
    use client_core::ledger::light::LightClient;
    use client_core::ledger::{StateKey, StateValue};
    let newcomer_dir = aqueduct_tests::temp_dir("bft-newcomer");
    let newcomer_id = peer_id(&aqueduct_tests::relay_bin()?, &newcomer_dir)?;
    // Four validators standing with 100 tokens each; epochs of 6 blocks.
    let net = Devnet::start_with(&DevnetOptions {
        validators: 4,
        network_id: "aqueduct-epochs",
        epoch_blocks: 6,
        extra: &["--provide", "--validate"],
        byzantine: &[],
        funded: &[(&newcomer_id, 5000)],
    })?;
    let genesis = Genesis::from_json(&std::fs::read_to_string(&net.genesis)?)?;
    let mut light = LightClient::new(&genesis);
    let newcomer_key = PublicKey::parse(&newcomer_id)?;
    // A light client that has seen the genesis set only, and a page in headless Chromium
    // that loaded before the change (verifying the market's provider list under it).
    wait_height(&net, 0, 2).await?;
    read_following(&mut light, net.relay(0)?, &[StateKey::Params]).await?;
    let browser = aqueduct_tests::Browser::start().await?;
    browser.goto(&net.relay(0)?.page("/market")).await?;
    let genesis_set = genesis.validator_set().hash().to_string();
    browser
        .wait_attr(
            "ledger-head",
            "data-validator-set",
            "the market verified under the genesis set",
            PAGE_WAIT,
            |v| v == genesis_set,
        )
        .await?;

    // A fifth relay stakes 1000 and stands: at the next epoch's end it is elected.
    let newcomer = net.join(
        &newcomer_dir,
        &["--provide", "--validate", "--stake", "1000"],
    )?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (elected_at, set) = loop {
        let (h, values) =
            read_following(&mut light, net.relay(0)?, &[StateKey::Validators]).await?;
        if let Some(Some(StateValue::Validators(set))) = values.first()
            && set.power_of(&newcomer_key).is_some()
        {
            break (h, set.clone());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the newcomer was not elected\n{}\n--- newcomer\n{}",
            net.logs(),
            newcomer.output()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Capped at a third of the set's power, so no commit can do without it from now on.
    assert_eq!(set.validators.len(), 4);
    let power = set.power_of(&newcomer_key).unwrap_or(0);
    assert!(u128::from(power) * 3 <= u128::from(set.total_power()));
    // Blocks go on under the new set, and the same light client, which loaded before the
    // change, follows it and verifies reads signed by the new set.
    wait_height(&net, 0, elected_at + 4).await?;
    // Relay 1 may be the validator the newcomer displaced (keys break the stake tie), now a
    // follower a block or two behind: read from it once it has passed the election.
    wait_height(&net, 1, elected_at + 1).await?;
    let (h, _) = read_following(&mut light, net.relay(1)?, &[StateKey::Params]).await?;
    assert!(h > elected_at);
    assert_eq!(light.validators(), &set);
    let chain = blocks(net.relay(0)?).await?;
    let last = chain.last().ok_or_else(|| anyhow::anyhow!("no blocks"))?;
    assert!(
        last.commit
            .votes
            .iter()
            .any(|v| v.validator == newcomer_key),
        "the newcomer signs blocks"
    );
    // The page follows the change too: refreshed, it verifies the market against a block
    // signed by the new set, and lists the newcomer's offer.
    let new_set = set.hash().to_string();
    let deadline = std::time::Instant::now() + PAGE_WAIT;
    loop {
        browser.click("market-refresh").await?;
        let head_set = browser
            .attr("ledger-head", "data-validator-set")
            .await
            .unwrap_or_default();
        let head_height: u64 = browser
            .attr("ledger-head", "data-height")
            .await
            .and_then(|h| h.parse().ok())
            .unwrap_or(0);
        if head_set == new_set && head_height > elected_at {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the page did not follow the new validator set (it shows set {head_set} at block \
             {head_height}; the new set is {new_set}, elected at block {elected_at})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = std::time::Instant::now() + PAGE_WAIT;
    loop {
        let offers = browser.attrs("market-offer", "data-provider").await?;
        if offers.contains(&newcomer_id) {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the newcomer's offer is not listed: {offers:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(newcomer);
    drop(net.relays);
    let _ = std::fs::remove_dir_all(&net.root);
    let _ = std::fs::remove_dir_all(&newcomer_dir);
    Ok(())
}

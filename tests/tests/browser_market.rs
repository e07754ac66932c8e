//! The marketplace end to end: a relay that offers its compute, a new wallet in headless
//! Chromium that draws from the faucet, sees the offer and opens a payment channel — every
//! balance, offer and channel read in the page with a proof against a validator-signed block,
//! and checked again here by a native light client.

use aqueduct_tests::{
    Browser, Relay, RelayPorts, ledger_call, relay_bin, tcp_client, temp_dir, www_dir,
};
use client_core::identity::PublicKey;
use client_core::ledger::light::LightClient;
use client_core::ledger::state::{UNITS_PER_TOKEN, format_amount};
use client_core::ledger::tx::min_fee_for;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{StateKey, StateValue, TxKind};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn new_wallet_faucet_offer_and_channel_all_verified() -> anyhow::Result<()> {
    let data_dir = temp_dir("e2e-market");
    let ports = RelayPorts::pick()?;
    let relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &ports,
        &[
            "--provide",
            "--price-per-mfuel",
            "7",
            "--block-interval-ms",
            "100",
            "--attribute",
            "region=test",
        ],
    )?;
    let relay_id = relay.info()?.peer_id;
    let browser = Browser::start().await?;
    let (_, account) = browser
        .create_wallet(&relay.url(), "correct horse battery")
        .await?;
    let me = PublicKey::parse(&account)?;

    // A fresh account: zero, proven.
    browser
        .wait_attr(
            "wallet-balance",
            "data-units",
            "a zero balance",
            WAIT,
            |v| v == "0",
        )
        .await?;
    let height: u64 = browser
        .wait_attr(
            "ledger-head",
            "data-height",
            "a verified block",
            WAIT,
            |v| v != "0",
        )
        .await?
        .parse()?;
    assert!(height >= 1);

    // The faucet.
    browser.click("wallet-faucet").await?;
    browser
        .wait_attr(
            "wallet-tx-status",
            "data-state",
            "the faucet transaction included",
            WAIT,
            |v| v == "done",
        )
        .await?;
    let (mut control, peer) = tcp_client(&relay).await?;
    let genesis = match ledger_call(&mut control, peer, &LedgerRequest::Genesis)
        .await?
        .as_slice()
    {
        [LedgerResponse::Genesis(g)] => (**g).clone(),
        other => anyhow::bail!("unexpected answer {other:?}"),
    };
    let faucet = genesis
        .params
        .faucet_amount
        .expect("a dev network has a faucet");
    let faucet_fee = min_fee_for(&genesis.params, &genesis.network_id, &TxKind::Faucet);
    let after_faucet = faucet - faucet_fee;
    browser
        .wait_attr(
            "wallet-balance",
            "data-units",
            "the faucet's amount less its fee",
            WAIT,
            |v| v == after_faucet.to_string(),
        )
        .await?;
    browser.screenshot("market-wallet-funded").await?;

    // The relay's offer, in the marketplace.
    browser.nav("market").await?;
    browser
        .wait_attr(
            "market-offer",
            "data-provider",
            "the relay's offer",
            WAIT,
            |v| v == relay_id,
        )
        .await?;
    assert_eq!(
        browser.attr("market-offer", "data-price").await.as_deref(),
        Some("7")
    );
    browser.click("market-offer").await?;
    browser
        .wait_attr(
            "market-provider-detail",
            "data-provider",
            "the provider's detail",
            WAIT,
            |v| v == relay_id,
        )
        .await?;
    browser.screenshot("market-offer").await?;

    // Open a channel of 10 tokens.
    browser.set_value("market-channel-amount", "10").await?;
    browser.click("market-open-channel").await?;
    browser
        .wait_attr(
            "market-tx-status",
            "data-state",
            "the channel opened",
            WAIT,
            |v| v == "done",
        )
        .await?;
    let deposit = (10 * UNITS_PER_TOKEN).to_string();
    browser
        .wait_attr(
            "market-channel",
            "data-deposit",
            "the new channel",
            WAIT,
            |v| v == deposit,
        )
        .await?;
    browser.screenshot("market-channel-open").await?;

    // A native light client sees the same: the channel and the balance, proven.
    let provider = PublicKey::parse(&relay_id)?;
    let open_fee = min_fee_for(
        &genesis.params,
        &genesis.network_id,
        &TxKind::OpenChannel {
            provider,
            amount: 10 * UNITS_PER_TOKEN,
        },
    );
    let keys = vec![StateKey::Account(me), StateKey::CustomerChannels(me)];
    let answer = ledger_call(
        &mut control,
        peer,
        &LedgerRequest::Read { keys: keys.clone() },
    )
    .await?;
    let Some(LedgerResponse::Reads(Some(reads))) = answer.first() else {
        anyhow::bail!("unexpected answer {answer:?}");
    };
    let verified = LightClient::new(&genesis).verify(&keys, reads)?;
    let expected_balance = after_faucet - 10 * UNITS_PER_TOKEN - open_fee;
    assert!(
        matches!(&verified.value[0], Some(StateValue::Account(a)) if a.balance == expected_balance && a.nonce == 2)
    );
    assert!(matches!(&verified.value[1], Some(StateValue::Hashes(ids)) if ids.len() == 1));

    // And the page's balance says so too.
    browser.nav("wallet").await?;
    browser
        .wait_attr(
            "wallet-balance",
            "data-units",
            "the balance after the channel",
            WAIT,
            |v| v == expected_balance.to_string(),
        )
        .await?;
    eprintln!(
        "balance after faucet and channel: {}",
        format_amount(expected_balance)
    );

    let errors = browser.eval("return window.aqueductErrors;").await?;
    assert_eq!(errors, serde_json::json!([]), "no page errors");
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

//! The marketplace end to end: a relay that offers its compute, a new wallet in headless
//! Chromium that draws from the faucet, sees the offer, opens a payment channel and pays for a
//! job with a voucher; the relay settles it — every balance, offer and channel read in the page
//! with a proof against a validator-signed block, and checked again here by a native light
//! client, on the customer's side and on the provider's.

use aqueduct_tests::{
    Browser, Relay, RelayPorts, ledger_genesis, read_verified, read_verified_keys, relay_bin,
    tcp_client, temp_dir, www_dir,
};
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::pay::voucher_for;
use client_core::ledger::state::{UNITS_PER_TOKEN, format_amount};
use client_core::ledger::tx::min_fee_for;
use client_core::ledger::{StateKey, StateValue, TxKind};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn new_wallet_faucet_channel_paid_job_and_settlement_all_verified() -> anyhow::Result<()> {
    let data_dir = temp_dir("e2e-market");
    let relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &RelayPorts::any(),
        &[
            "--provide",
            "--price-per-mfuel",
            "7",
            "--block-interval-ms",
            "100",
            "--attribute",
            "region=test",
            "--settle-interval-secs",
            "1",
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
    let genesis = ledger_genesis(&mut control, peer).await?;
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
    // Waited for, not read once: the list refreshes every few seconds and may be between
    // two renderings at the moment of a single read.
    browser
        .wait_attr(
            "market-offer",
            "data-price",
            "the offer's price",
            WAIT,
            |v| v == "7",
        )
        .await?;
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
    let verified = read_verified_keys(
        &genesis,
        &relay,
        vec![StateKey::Account(me), StateKey::CustomerChannels(me)],
    )
    .await?;
    let expected_balance = after_faucet - 10 * UNITS_PER_TOKEN - open_fee;
    assert!(
        matches!(&verified[0], Some(StateValue::Account(a)) if a.balance == expected_balance && a.nonce == 2)
    );
    assert!(matches!(&verified[1], Some(StateValue::Hashes(ids)) if ids.len() == 1));

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

    // Pay for a job under the relay's offer.
    let Some(StateValue::Hashes(ids)) = &verified[1] else {
        anyhow::bail!("no channel list");
    };
    let channel = ids[0];
    let provider_before = verified_balance(&genesis, &relay, provider).await?;
    browser.nav("market").await?;
    browser
        .wait_attr("market-offer", "data-provider", "the offer", WAIT, |v| {
            v == relay_id
        })
        .await?;
    browser.click("market-offer").await?;
    browser
        .wait_for("market-use-offer", "the offer's detail", WAIT, |_| true)
        .await?;
    browser.click("market-use-offer").await?;
    browser.nav("jobs").await?;
    let price_line = browser
        .wait_for("job-price", "the job's price and channel", WAIT, |t| {
            t.starts_with("Price:") && t.contains("paid by a voucher")
        })
        .await?;
    let fuel: u64 = browser
        .eval("return document.querySelector('[data-testid=job-fuel]').value;")
        .await?
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let price = (fuel * 7).div_ceil(1_000_000);
    assert!(
        price_line.contains(&format_amount(price)),
        "{price_line:?} names the price {price}"
    );
    browser.screenshot("market-job-priced").await?;
    browser.click("job-submit").await?;
    assert_eq!(browser.wait_job_end(WAIT).await?, "sampled");
    let checks = browser.text("job-verification").await.unwrap_or_default();
    assert!(
        checks.contains("receipt names the payment"),
        "the verification names the payment: {checks}"
    );
    let paid = browser.text("job-paid").await.unwrap_or_default();
    assert!(paid.contains(&format_amount(price)), "{paid:?}");
    browser.screenshot("market-job-paid").await?;

    // The relay settles the voucher; both sides' balances, proven.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let settled = match read_verified(&genesis, &relay, StateKey::Channel(channel)).await? {
            Some(StateValue::Channel(c)) => c.settled,
            other => anyhow::bail!("channel: {other:?}"),
        };
        if settled == price {
            break;
        }
        assert!(settled < price, "settled {settled} is more than was paid");
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the relay did not settle the voucher in {WAIT:?}:\n{}",
            relay.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The settle transaction's fee depends only on its size, which any voucher of this
    // network shares.
    let settle_fee = min_fee_for(
        &genesis.params,
        &genesis.network_id,
        &TxKind::Settle {
            voucher: voucher_for(
                &Keypair::from_seed(&[9; 32]),
                &genesis.network_id,
                channel,
                0,
                price,
            ),
        },
    );
    let provider_after = verified_balance(&genesis, &relay, provider).await?;
    assert_eq!(
        provider_after,
        provider_before + price - settle_fee,
        "the provider gains the price less the settle fee"
    );
    browser.nav("market").await?;
    browser
        .wait_attr(
            "market-channel",
            "data-settled",
            "the settled voucher in the page",
            WAIT,
            |v| v == price.to_string(),
        )
        .await?;
    browser.nav("wallet").await?;
    browser
        .wait_attr(
            "wallet-balance",
            "data-units",
            "the customer's balance, unchanged by the escrowed payment",
            WAIT,
            |v| v == expected_balance.to_string(),
        )
        .await?;
    browser.screenshot("market-settled").await?;

    let errors = browser.eval("return window.aqueductErrors;").await?;
    assert_eq!(errors, serde_json::json!([]), "no page errors");
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// An account's balance, read from the relay and verified by a native light client.
async fn verified_balance(
    genesis: &client_core::ledger::Genesis,
    relay: &Relay,
    who: PublicKey,
) -> anyhow::Result<u64> {
    match read_verified(genesis, relay, StateKey::Account(who)).await? {
        Some(StateValue::Account(a)) => Ok(a.balance),
        other => anyhow::bail!("account {who}: {other:?}"),
    }
}

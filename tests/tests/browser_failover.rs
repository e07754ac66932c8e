//! A browser that outlives its relay: the page, served by the validator's relay, finds a second
//! relay in the proven provider list, connects to it, pays it for a job; then the serving relay
//! is killed and the page keeps reading proven balances and runs another job, all through the
//! second relay — real relay processes and headless Chromium.

use aqueduct_tests::devnet::{peer_id, write_genesis};
use aqueduct_tests::{Browser, Relay, RelayPorts, relay_bin, temp_dir, www_dir};
use std::time::{Duration, Instant};

const NET: &str = "aqueduct-failover";
const WAIT: Duration = Duration::from_secs(60);

/// Waits until the Relays page lists `peer` as connected.
async fn wait_relay_connected(browser: &Browser, peer: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    let script = format!(
        "return !!document.querySelector('[data-testid=relay-row][data-peer=\"{peer}\"][data-state=connected]');"
    );
    loop {
        if browser.eval(&script).await?.as_bool() == Some(true) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "relay {peer} did not connect in the page"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_reads_and_runs_jobs_through_another_relay_when_its_relay_dies()
-> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let root = temp_dir("failover");
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    let (id_a, id_b) = (peer_id(&bin, &dir_a)?, peer_id(&bin, &dir_b)?);
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
    let common = [
        "--network-id",
        NET,
        "--genesis",
        &genesis_arg,
        "--block-interval-ms",
        "100",
    ];
    // A makes the blocks and serves the page; B follows A and offers its compute.
    let mut a = Relay::start_with(&bin, &www, &dir_a, &RelayPorts::any(), &common)?;
    let a_addr = a.relay_addr()?;

    let browser = Browser::start().await?;
    browser
        .create_wallet(&a.url(), "correct horse battery")
        .await?;
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

    // The market is empty when the page opens it; then B starts and registers, and its offer
    // appears in the proven provider list by itself (the open page reads it again), and the
    // page connects to B from its address.
    browser.nav("market").await?;
    browser
        .wait_for("market-empty", "an empty market", WAIT, |_| true)
        .await?;
    let b = Relay::start_with(
        &bin,
        &www,
        &dir_b,
        &RelayPorts::any(),
        &[
            &common[..],
            &["--peer", &a_addr, "--provide", "--price-per-mfuel", "7"],
        ]
        .concat(),
    )?;
    browser
        .wait_attr("market-offer", "data-provider", "B's offer", WAIT, |v| {
            v == id_b
        })
        .await?;
    browser.click("market-offer").await?;
    browser.set_value("market-channel-amount", "10").await?;
    browser.click("market-open-channel").await?;
    browser
        .wait_attr(
            "market-tx-status",
            "data-state",
            "the channel to B opened",
            WAIT,
            |v| v == "done",
        )
        .await?;
    browser.click("market-use-offer").await?;
    browser.nav("relays").await?;
    wait_relay_connected(&browser, &id_b).await?;

    browser.nav("jobs").await?;
    browser
        .wait_for("job-price", "the job's price", WAIT, |t| {
            t.contains("paid by a voucher")
        })
        .await?;
    browser.click("job-submit").await?;
    expect_job_end(&browser, "sampled").await?;

    // The relay that served the page dies.
    a.kill();
    browser.nav("wallet").await?;
    browser
        .wait_attr(
            "ledger-head",
            "data-relay",
            "a verified read answered by B",
            WAIT,
            |v| v == id_b,
        )
        .await?;
    let units: u64 = browser
        .wait_attr(
            "wallet-balance",
            "data-units",
            "the balance, proven",
            WAIT,
            |v| v.parse::<u64>().is_ok_and(|u| u > 0),
        )
        .await?
        .parse()?;
    assert!(units > 0);
    browser.screenshot("failover-balance-through-b").await?;

    // And a job still runs, on B, paid and verified.
    browser.nav("jobs").await?;
    browser.click("job-submit").await?;
    expect_job_end(&browser, "sampled").await?;
    let checks = browser.text("job-verification").await.unwrap_or_default();
    assert!(
        checks.contains("receipt names the payment"),
        "the job on B was paid: {checks}"
    );
    browser.screenshot("failover-job-on-b").await?;
    browser.close().await;
    drop(b);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Waits for the job on the jobs page to end as `expected`; the page's account of it if not.
async fn expect_job_end(browser: &Browser, expected: &str) -> anyhow::Result<()> {
    let status = browser.wait_job_end(WAIT).await?;
    anyhow::ensure!(
        status == expected,
        "the job ended {status}, not {expected}: {:?} {:?}",
        browser.text("job-detail").await,
        browser.text("job-verification").await
    );
    Ok(())
}

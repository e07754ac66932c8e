//! Refereed verification in headless Chromium, on a four-validator network whose relays all
//! offer their compute: one of them forges one transition of every step job (and computes the
//! rest honestly from it — the cheater sampling misses 91% of the time). The customer picks
//! that provider's offer and "refereed"; the page sends the job to it and to an honest
//! provider, bisects their commitments, names the liar, submits the fraud proof, and sees the
//! slash in a block — the liar's stake visibly lower on the marketplace page. A native light
//! client then checks the slash against the validators' signatures.

use aqueduct_tests::devnet::{Devnet, DevnetOptions};
use aqueduct_tests::{Browser, ledger_genesis, read_verified, tcp_client};
use client_core::identity::PublicKey;
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::{StateKey, StateValue};
use std::time::Duration;

const NET: &str = "aqueduct-referee";
const WAIT: Duration = Duration::from_secs(90);
const LIAR: usize = 3;
/// A provider that forges too, and goes quiet when the referee asks about its trace.
const SILENT: usize = 2;
const FORGED_STEP: &str = "437";
/// The stake `--provide` bonds by default, and what a 10% slash leaves of it.
const STAKE: u64 = 100 * UNITS_PER_TOKEN;

#[tokio::test(flavor = "multi_thread")]
async fn the_page_referees_two_providers_catches_the_liar_and_gets_it_slashed() -> anyhow::Result<()>
{
    // The forgers charge (1 unit per million fuel): the customer pays each with a voucher on
    // its own channel, and no page picks one as the free second provider.
    let liar_args: &[&str] = &[
        "--faulty",
        "fabricate-step",
        "--fault-step",
        FORGED_STEP,
        "--price-per-mfuel",
        "1",
    ];
    let silent_args: &[&str] = &[
        "--faulty",
        "silent-fabricate-step",
        "--fault-step",
        "300",
        "--price-per-mfuel",
        "1",
    ];
    let net = Devnet::start_with(&DevnetOptions {
        validators: 4,
        network_id: NET,
        epoch_blocks: 1000,
        extra: &["--provide", "--price-per-mfuel", "0"],
        funded: &[],
        byzantine: &[(LIAR, liar_args), (SILENT, silent_args)],
    })?;
    let home = net.relays[0]
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("relay 0 is not running"))?;
    let liar = net.relays[LIAR]
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the liar is not running"))?
        .info()?
        .peer_id;

    let browser = Browser::start().await?;
    browser
        .create_wallet(&home.url(), "correct horse battery")
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

    // Every relay registered as a provider; choose the liar's offer.
    browser.nav("market").await?;
    // The relays register as they start; the list is read again until all four are in.
    until("all four offers listed", async || {
        if browser.attrs("market-offer", "data-provider").await?.len() == 4 {
            return Ok(true);
        }
        browser.click("market-refresh").await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        Ok(false)
    })
    .await?;
    let stake_before = offer_attr(&browser, &liar, "data-stake").await?;
    assert_eq!(stake_before, STAKE.to_string());
    choose_and_pay(&browser, &liar).await?;

    // Refereed: the page names the second provider it will use.
    browser.nav("jobs").await?;
    browser.set_value("job-verify-mode", "refereed").await?;
    browser
        .wait_for("job-verify-plan", "a second provider named", WAIT, |t| {
            t.contains("also go to") && !t.contains(&liar)
        })
        .await?;
    browser
        .wait_for("job-price", "the liar paid by a voucher", WAIT, |t| {
            t.contains("paid by a voucher")
        })
        .await?;
    browser.set_value("job-input", "1000 200 refereed").await?;
    browser.screenshot("referee-form").await?;
    browser.click("job-submit").await?;
    assert_eq!(browser.wait_job_end(WAIT).await?, "refereed");
    let level = browser
        .attr("job-level", "data-level")
        .await
        .unwrap_or_default();
    assert_eq!(
        level,
        format!("refereed: a liar caught at segment {FORGED_STEP}")
    );
    let panel = browser.text("job-verification").await.unwrap_or_default();
    // The page's own figures: refereeing time against the providers' run time.
    eprintln!("{}", browser.text("job-level").await.unwrap_or_default());
    assert!(
        panel.contains(&format!("{liar} lied")),
        "the panel names the liar: {panel}"
    );
    assert!(panel.contains("rounds of bisection"), "{panel}");
    // The referee's re-runs (the initial state, the disputed step) ran off the main thread.
    assert!(
        panel.contains("re-run in a Web Worker, off the page's main thread"),
        "{panel}"
    );
    let fraud = browser.text("job-fraud").await.unwrap_or_default();
    assert!(fraud.contains(&liar), "{fraud}");
    browser.screenshot("referee-caught").await?;

    // The proof goes on the ledger; the slash comes back proven.
    browser.click("job-submit-fraud").await?;
    if let Err(e) = browser
        .wait_attr(
            "job-fraud-status",
            "data-state",
            "the fraud proof included",
            WAIT,
            |v| v == "done",
        )
        .await
    {
        anyhow::bail!("{e}\n{}", net.logs());
    }
    let slashed_at: u64 = browser
        .wait_attr(
            "job-fraud-slash",
            "data-height",
            "the slash read with a proof",
            WAIT,
            |v| v.parse::<u64>().is_ok(),
        )
        .await?
        .parse()?;
    browser.screenshot("referee-slashed").await?;

    // On the marketplace: marked slashed, stake lower.
    browser.nav("market").await?;
    until("the liar marked slashed", async || {
        if offer_attr(&browser, &liar, "data-status").await? == "slashed" {
            return Ok(true);
        }
        browser.click("market-refresh").await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        Ok(false)
    })
    .await?;
    let stake_after: u64 = offer_attr(&browser, &liar, "data-stake").await?.parse()?;
    assert_eq!(stake_after, STAKE - STAKE / 10, "10% slashed");
    browser.screenshot("referee-market-slashed").await?;

    // A forger that stops answering the referee: the page says which, and falls back to
    // checking the other provider's result itself.
    let silent = net.relays[SILENT]
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the silent forger is not running"))?
        .info()?
        .peer_id;
    browser.nav("market").await?;
    choose_and_pay(&browser, &silent).await?;
    browser.nav("jobs").await?;
    browser.set_value("job-verify-mode", "refereed").await?;
    browser
        .wait_for("job-verify-plan", "a second provider named", WAIT, |t| {
            t.contains("also go to") && !t.contains(&silent) && !t.contains(&liar)
        })
        .await?;
    browser
        .wait_for(
            "job-price",
            "the silent forger paid by a voucher",
            WAIT,
            |t| t.contains("paid by a voucher"),
        )
        .await?;
    browser.set_value("job-input", "1000 200 quiet").await?;
    browser.click("job-submit").await?;
    assert_eq!(browser.wait_job_end(WAIT).await?, "sampled");
    let panel = browser.text("job-verification").await.unwrap_or_default();
    assert!(
        panel.contains(&format!("{silent} stopped answering")),
        "the panel names the provider that went quiet: {panel}"
    );
    assert!(
        panel.contains("checking the other provider's result here instead"),
        "{panel}"
    );
    browser.screenshot("referee-silent-fallback").await?;

    // Checked again natively, against the validators' signatures.
    let (mut control, peer) = tcp_client(home).await?;
    let genesis = ledger_genesis(&mut control, peer).await?;
    let key = PublicKey::parse(&liar)?;
    match read_verified(&genesis, home, StateKey::Provider(key)).await? {
        Some(StateValue::Provider(provider)) => {
            assert!(!provider.active());
            let slash = provider.slashed.expect("slashed on the ledger");
            assert_eq!(slash.height, slashed_at);
            assert_eq!(slash.amount, STAKE / 10);
            // The job's price (20 G fuel at 1 unit per million) back to the customer.
            assert_eq!(slash.refund, 20_000);
            assert_eq!(slash.segment, FORGED_STEP.parse::<u64>()?);
        }
        other => panic!("the liar's provider entry: {other:?}"),
    }
    browser.close().await;
    Ok(())
}

/// An attribute of the liar's row in the offers table.
async fn offer_attr(browser: &Browser, provider: &str, name: &str) -> anyhow::Result<String> {
    let value = browser
        .eval(&format!(
            "const row = document.querySelector('[data-testid=market-offer][data-provider=\"{provider}\"]'); return row ? row.getAttribute('{name}') : null;"
        ))
        .await?;
    Ok(value.as_str().unwrap_or_default().to_owned())
}

/// Waits until `check` holds, up to [`WAIT`].
async fn until(what: &str, check: impl AsyncFn() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Picks `provider`'s offer on the marketplace page, opens a 10 AQD channel to it and uses the
/// offer for jobs.
async fn choose_and_pay(browser: &Browser, provider: &str) -> anyhow::Result<()> {
    browser
        .eval(&format!(
            "document.querySelector('[data-testid=market-offer][data-provider=\"{provider}\"]').click(); return true;"
        ))
        .await?;
    browser
        .wait_attr(
            "market-provider-detail",
            "data-provider",
            "the offer's detail",
            WAIT,
            |v| v == provider,
        )
        .await?;
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
    browser.click("market-use-offer").await?;
    Ok(())
}

//! Several relays end to end: the page keeps connections to the relay that served it and to
//! one added by address, remembers the added one across a reload, and when the serving relay
//! is killed, jobs carry on through the other one.

use aqueduct_tests::{Browser, Relay, RelayPorts, relay_bin, temp_dir, www_dir};
use std::time::{Duration, Instant};

const PASSWORD: &str = "relays e2e password";
const WAIT: Duration = Duration::from_secs(30);

/// The `data-state` of the relay row for `peer`, if the row is there.
async fn relay_state(browser: &Browser, peer: &str) -> anyhow::Result<Option<String>> {
    let v = browser
        .client
        .execute(
            "const r = document.querySelector(`[data-testid=\"relay-row\"][data-peer=\"${arguments[0]}\"]`); return r ? r.dataset.state : null;",
            vec![peer.into()],
        )
        .await?;
    Ok(v.as_str().map(str::to_owned))
}

async fn wait_relay(
    browser: &Browser,
    peer: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = relay_state(browser, peer).await?;
        if state.as_deref().is_some_and(&check) {
            return Ok(());
        }
        if Instant::now() > deadline {
            browser.screenshot("relays-timeout").await?;
            anyhow::bail!("relay {peer} is {state:?}, expected {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_carry_on_through_another_relay_when_one_drops() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let (dir_a, dir_b) = (temp_dir("e2e-relay-a"), temp_dir("e2e-relay-b"));
    let mut a = Relay::start(&bin, &www, &dir_a, &RelayPorts::any())?;
    let b = Relay::start(&bin, &www, &dir_b, &RelayPorts::any())?;
    let (info_a, info_b) = (a.info()?, b.info()?);

    let browser = Browser::start().await?;
    browser.create_wallet(&a.url(), PASSWORD).await?;
    browser.nav("relays").await?;
    wait_relay(&browser, &info_a.peer_id, "connected", |s| s == "connected").await?;

    // An address a browser cannot use is refused with what is missing.
    browser
        .set_value("relay-add-input", "/ip4/127.0.0.1/tcp/9999")
        .await?;
    browser.click("relay-add").await?;
    let error = browser
        .wait_for("relay-add-error", "a refusal", WAIT, |t| !t.is_empty())
        .await;
    browser.screenshot("relays-bad-address").await?;
    assert!(error?.contains("webrtc-direct"));

    // Relay B by address: both connected, each with its own round trip.
    let b_addr = info_b.webrtc.first().cloned().unwrap_or_default();
    browser.set_value("relay-add-input", &b_addr).await?;
    browser.click("relay-add").await?;
    wait_relay(&browser, &info_b.peer_id, "connected", |s| s == "connected").await?;
    let rtts = browser
        .wait_for("relay-rtt", "a round trip", WAIT, |t| t != "– ms")
        .await;
    browser.screenshot("relays-two-connected").await?;
    rtts?;

    // Remembered across a reload.
    browser.goto(&a.page("/relays")).await?;
    wait_relay(&browser, &info_b.peer_id, "connected again", |s| {
        s == "connected"
    })
    .await?;
    browser.nav("wallet").await?;
    browser
        .set_value("wallet-unlock-password", PASSWORD)
        .await?;
    browser.click("wallet-unlock").await?;
    browser
        .wait_for("wallet-state", "unlocked", WAIT, |t| t == "unlocked")
        .await?;

    // The example modules come from the serving relay, which the page fetches 1.5 s after it
    // mounts; A must not die before that (a fast unlock gets here sooner).
    let fetched = "return performance.getEntriesByType('resource')
        .some(e => e.name.endsWith('/jobs/primes.wasm') && e.responseStatus === 200);";
    let deadline = Instant::now() + WAIT;
    while browser.eval(fetched).await? != serde_json::json!(true) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the page did not fetch the example modules from its relay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The serving relay dies; the page says so and jobs go to B.
    browser.nav("relays").await?;
    a.kill();
    wait_relay(&browser, &info_a.peer_id, "not connected", |s| {
        s != "connected"
    })
    .await?;
    browser.screenshot("relays-one-down").await?;
    assert_eq!(
        relay_state(&browser, &info_b.peer_id).await?.as_deref(),
        Some("connected")
    );

    browser.nav("jobs").await?;
    browser.set_value("job-example", "2").await?;
    browser.set_value("job-input", "100000").await?;
    browser.click("job-submit").await?;
    let status = browser.wait_job_end(Duration::from_secs(120)).await;
    browser.screenshot("relays-job-through-b").await?;
    let verification = browser.text("job-verification").await.unwrap_or_default();
    assert_eq!(status?, "verified", "{verification}");
    assert!(
        verification.contains(&info_b.peer_id),
        "the result names relay B: {verification}"
    );

    browser.close().await;
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
    Ok(())
}

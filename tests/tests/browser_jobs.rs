//! Jobs end to end: a real relay, a real headless Chromium. Each example job is submitted from
//! the page, signed there, run by the relay and verified by the page's own engine; a faulty
//! relay (built with the `faulty` feature) lies in four ways and the page names each failed
//! check.

use aqueduct_tests::{Browser, Relay, RelayPorts, faulty_relay_bin, relay_bin, temp_dir, www_dir};
use std::time::Duration;

const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// Picks example `index`, sets its input (and step limit), submits, and waits for the job to
/// end.
async fn run_job(
    browser: &Browser,
    index: usize,
    input: &str,
    steps: Option<u32>,
) -> anyhow::Result<String> {
    browser.set_value("job-example", &index.to_string()).await?;
    browser.set_value("job-input", input).await?;
    if let Some(steps) = steps {
        browser.set_value("job-steps", &steps.to_string()).await?;
    }
    // A job that ends is added to the history in the same step that sets its end state, so
    // one more history row means this job's end state is showing (a fast job may pass
    // through "running" between two looks at the page).
    let before = history_rows(browser, None).await?;
    browser.click("job-submit").await?;
    let deadline = std::time::Instant::now() + JOB_TIMEOUT;
    while history_rows(browser, None).await? <= before {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the job did not end within {JOB_TIMEOUT:?}; status {:?}, {:?}",
            browser.text("job-status").await,
            browser.text("job-detail").await,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .wait_for(
            "job-status",
            "verified, sampled or failed",
            Duration::from_secs(5),
            |t| matches!(t, "verified" | "sampled" | "failed"),
        )
        .await
}

/// Scrolls the job's result into view for the screenshot.
async fn show_result(browser: &Browser) -> anyhow::Result<()> {
    browser
        .eval(
            "document.querySelector('[data-testid=\"job-status\"]').scrollIntoView({block: 'start'});",
        )
        .await?;
    Ok(())
}

/// A fresh browser profile with a new account, on the jobs page, connected.
async fn open_page(relay: &Relay) -> anyhow::Result<Browser> {
    let browser = Browser::start().await?;
    browser.create_wallet(&relay.url(), PASSWORD).await?;
    browser.nav("jobs").await?;
    browser.wait_connected(Duration::from_secs(30)).await?;
    Ok(browser)
}

const PASSWORD: &str = "e2e password";

#[tokio::test(flavor = "multi_thread")]
async fn every_example_job_comes_back_verified() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-jobs");
    let relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let browser = open_page(&relay).await?;

    for (index, name, input, level, expected) in [
        (
            0,
            "hash-chain",
            "200 300 e2e",
            "evidence of work",
            "sampled",
        ),
        (
            1,
            "mandelbrot",
            "160 120 128",
            "re-executed in full",
            "verified",
        ),
        (2, "primes", "300000", "re-executed in full", "verified"),
    ] {
        let status = run_job(&browser, index, input, None).await;
        show_result(&browser).await?;
        browser.screenshot(&format!("job-{name}")).await?;
        let verification = browser.text("job-verification").await.unwrap_or_default();
        if status.as_deref().ok() != Some(expected) {
            eprintln!("relay output:\n{}", relay.output());
        }
        assert_eq!(status?, expected, "{name}: {verification}");
        assert!(
            verification.contains(level) && verification.contains("receipt signed by relay"),
            "{name}: the page says what it checked: {verification}"
        );
        assert!(
            verification.contains("checked in a Web Worker"),
            "{name}: the check ran off the page's main thread: {verification}"
        );
        let output = browser.text("job-output").await;
        if name == "primes" {
            assert_eq!(
                output.as_deref(),
                Some("25997 primes below 300000 (largest 299993)")
            );
        }
        if name == "hash-chain" {
            assert!(output.is_some_and(|o| o.starts_with("after 60000 hashes: ")));
            // Sampling is said to be evidence of work, with the odds, never a correct output.
            assert!(
                verification.contains("99")
                    && verification.contains("not of a correct output")
                    && verification.contains("one forged step only with"),
                "detection odds and what they do not show: {verification}"
            );
        }
    }
    assert_eq!(history_rows(&browser, Some("verified")).await?, 2);
    assert_eq!(history_rows(&browser, Some("sampled")).await?, 1);
    // The three jobs, the first one sampled, went on one job stream: one WebRTC data channel.
    assert_eq!(
        relay.metric("aqueduct_job_streams_total")?,
        1.0,
        "the page reuses its job stream"
    );

    // The step limit is the customer's: a chain of 300 steps under a limit of 100 stops
    // there, and the page says why.
    let status = run_job(&browser, 0, "300 10 bounded", Some(100)).await?;
    let verification = browser.text("job-verification").await.unwrap_or_default();
    assert_eq!(status, "failed", "{verification}");
    assert!(
        verification.contains("more than 100 steps"),
        "{verification}"
    );

    // A long job can be cancelled while it runs; the relay stops it and the page says so.
    browser.set_value("job-example", "0").await?;
    browser.set_value("job-input", "100000 5000 long").await?;
    browser.set_value("job-steps", "65535").await?;
    browser.click("job-submit").await?;
    browser
        .wait_for("job-progress", "progress", JOB_TIMEOUT, |_| true)
        .await?;
    browser.click("job-cancel").await?;
    let status = browser.wait_job_end(Duration::from_secs(30)).await;
    browser.screenshot("job-cancelled").await?;
    assert_eq!(status?, "cancelled");
    assert_eq!(history_rows(&browser, Some("cancelled")).await?, 1);

    // The history survives a reload: unlock on the jobs page and reopen a past result, which
    // the page re-checks from what it stored.
    browser.goto(&relay.page("/jobs")).await?;
    browser
        .wait_for(
            "wallet-unlock-password",
            "the unlock form",
            Duration::from_secs(20),
            |_| true,
        )
        .await?;
    browser
        .set_value("wallet-unlock-password", PASSWORD)
        .await?;
    browser.click("wallet-unlock").await?;
    browser
        .wait_for(
            "job-submit",
            "the job form",
            Duration::from_secs(30),
            |_| true,
        )
        .await?;
    browser
        .wait_for(
            "job-history-open",
            "the history",
            Duration::from_secs(10),
            |_| true,
        )
        .await?;
    assert_eq!(history_rows(&browser, Some("verified")).await?, 2);
    assert_eq!(history_rows(&browser, Some("sampled")).await?, 1);
    browser
        .eval("document.querySelector('[data-testid=\"job-history-row\"][data-status=\"verified\"] [data-testid=\"job-history-open\"]').click();")
        .await?;
    let recheck = browser
        .wait_for(
            "job-history-recheck",
            "a re-check",
            Duration::from_secs(10),
            |_| true,
        )
        .await?;
    browser
        .eval("document.querySelector('[data-testid=\"job-history-view\"]').scrollIntoView();")
        .await?;
    browser.screenshot("job-history-reopened").await?;
    assert!(recheck.contains("signature is valid"), "{recheck}");

    let errors = browser.eval("return window.aqueductErrors;").await?;
    assert_eq!(errors, serde_json::json!([]), "no page errors");
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// A long check runs in the app's worker: meanwhile the page's own thread keeps running (a
/// 10 ms timer is never held up for long), and the page says where the check ran. The job is
/// a hash chain of 20 steps, re-executed in full (six million hashes), so nearly all of its
/// check is computing (a sampled check spends much of its time fetching states).
#[tokio::test(flavor = "multi_thread")]
async fn a_long_check_runs_in_the_worker_while_the_page_stays_responsive() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-job-worker");
    let relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let browser = open_page(&relay).await?;
    browser
        .eval(
            "window.ticks = []; \
             window.ticker = setInterval(() => window.ticks.push(performance.now()), 10);",
        )
        .await?;
    let status = run_job(&browser, 0, "20 300000 responsive", None).await?;
    let verification = browser.text("job-verification").await.unwrap_or_default();
    assert_eq!(status, "verified", "{verification}");
    let figures = browser
        .eval(
            "clearInterval(window.ticker); \
             const m = performance.getEntriesByName('aqueduct:job-verify').pop(); \
             const t = window.ticks; let gap = 0; \
             for (let i = 1; i < t.length; i++) \
               if (t[i] >= m.startTime && t[i - 1] <= m.startTime + m.duration) \
                 gap = Math.max(gap, t[i] - t[i - 1]); \
             return { gap, verify: m.duration };",
        )
        .await?;
    let gap = figures["gap"].as_f64().unwrap_or(f64::MAX);
    let verify_ms = figures["verify"].as_f64().unwrap_or(0.0);
    eprintln!(
        "re-executing a job took {verify_ms:.0} ms; the page's longest pause meanwhile: \
         {gap:.0} ms"
    );
    assert!(
        verify_ms > 0.0 && gap < verify_ms / 2.0,
        "the page's thread paused {gap:.0} ms during a {verify_ms:.0} ms check"
    );
    assert!(
        verification.contains("checked in a Web Worker"),
        "the check ran in the worker: {verification}"
    );
    let errors = browser.eval("return window.aqueductErrors;").await?;
    assert_eq!(errors, serde_json::json!([]), "no page errors");
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// How many rows the job history shows, of one status or of any.
async fn history_rows(browser: &Browser, status: Option<&str>) -> anyhow::Result<usize> {
    let statuses = browser.attrs("job-history-row", "data-status").await?;
    Ok(statuses
        .iter()
        .filter(|s| status.is_none_or(|wanted| wanted == s.as_str()))
        .count())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_relay_is_caught_and_the_failed_check_named() -> anyhow::Result<()> {
    let (bin, www) = (faulty_relay_bin()?, www_dir()?);
    for (fault, index, input, checks) in [
        ("wrong-output", 2, "100000", &["output"][..]),
        ("wrong-fuel", 1, "64 48 64", &["fuel"][..]),
        ("bad-signature", 2, "100000", &["receipt signature"][..]),
        (
            "wrong-checkpoint",
            0,
            "120 100 lie",
            &["Merkle proof", "checkpoint"][..],
        ),
        // One forged transition, the trace honest from it on: at the last step, which
        // sampling always checks (elsewhere it is caught only by chance; see forged_step.rs).
        (
            "fabricate-step",
            0,
            "120 100 lie",
            &["output", "Merkle proof", "checkpoint"][..],
        ),
    ] {
        let data_dir = temp_dir(&format!("e2e-{fault}"));
        let relay = Relay::start_with(
            &bin,
            &www,
            &data_dir,
            &RelayPorts::any(),
            &["--faulty", fault, "--fault-step", "120"],
        )?;
        let browser = open_page(&relay).await?;
        let status = run_job(&browser, index, input, None).await;
        show_result(&browser).await?;
        browser.screenshot(&format!("job-faulty-{fault}")).await?;
        let verification = browser.text("job-verification").await.unwrap_or_default();
        assert_eq!(status?, "failed", "{fault}: {verification}");
        assert!(
            checks
                .iter()
                .any(|c| verification.contains(&format!("Failed check: {c}"))),
            "{fault}: expected a failed {checks:?} check, the page says: {verification}"
        );
        browser.close().await;
        drop(relay);
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}

/// The page's bundle leaves the job module validator and instrumenter to the worker's bundle,
/// so a first visit does not download them: the validator's operator errors ("type mismatch
/// …", wasmparser's) are in the worker's wasm and nowhere in the page's.
#[test]
fn the_module_validator_is_in_the_worker_bundle_only() -> anyhow::Result<()> {
    let www = www_dir()?;
    let count = |file: &str| -> anyhow::Result<usize> {
        let bytes = std::fs::read(www.join(file))?;
        let needle = b"type mismatch";
        Ok(bytes.windows(needle.len()).filter(|w| w == needle).count())
    };
    let (page, worker) = (
        count("aqueduct_bg.wasm")?,
        count("aqueduct_worker_bg.wasm")?,
    );
    assert!(worker > 0, "the worker's bundle validates modules");
    assert_eq!(page, 0, "the page's bundle links the module validator");
    Ok(())
}

//! End-to-end benchmark (`cargo xtask bench`): a release relay on loopback, headless Chromium.
//!
//! - page load: over `--loads` fresh browser profiles (nothing cached, the site never seen),
//!   each opened once the browser has finished starting (as in a browser the user already has
//!   open; `--cold-browser` opens it at once instead), the time from navigation start to
//!   "connected", and from the start of the WebRTC dial to "connected"; `--trace` prints each
//!   load's timeline (marks and when each file arrived), `--loads-only` stops after the loads;
//! - round trip: `--probes` status probes on one page's long-lived stream.
//!
//! Times come from the page's own User Timing marks (`aqueduct:dial`, `aqueduct:connected`)
//! and measures (`aqueduct:rtt`), so the harness's WebDriver overhead is not in the figures.
//! Results are printed and written to `target/bench/e2e.json`.

use anyhow::Context;
use aqueduct_tests::{Browser, Relay, RelayPorts, artifacts_dir, relay_bin, temp_dir, www_dir};
use client_core::stats::percentile;
use std::time::{Duration, Instant};

struct Args {
    loads: u32,
    probes: u32,
    /// Print each load's timeline (every mark, and when each file finished arriving).
    trace: bool,
    /// Stop after the page loads (for working on the load time).
    loads_only: bool,
    /// Open the page the moment the browser has started, while it is still busy starting.
    cold_browser: bool,
}

/// How long a new browser is left to finish starting before the page is opened.
const BROWSER_SETTLE: Duration = Duration::from_secs(2);

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        loads: 12,
        probes: 300,
        trace: false,
        loads_only: false,
        cold_browser: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--trace" => args.trace = true,
            "--loads-only" => args.loads_only = true,
            "--cold-browser" => args.cold_browser = true,
            "--loads" => args.loads = value()?.parse()?,
            "--probes" => args.probes = value()?.parse()?,
            other => anyhow::bail!(
                "unknown flag {other}; expected --loads N --probes N --trace --loads-only \
                 --cold-browser"
            ),
        }
    }
    Ok(args)
}

#[derive(serde::Serialize)]
struct Summary {
    n: usize,
    median: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn summarize(mut v: Vec<f64>) -> Summary {
    v.sort_by(f64::total_cmp);
    Summary {
        n: v.len(),
        median: percentile(&v, 0.5),
        p90: percentile(&v, 0.9),
        p99: percentile(&v, 0.99),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

const MARKS: &str = r#"
    const t = n => { const e = performance.getEntriesByName(n)[0]; return e ? e.startTime : null; };
    const nav = performance.getEntriesByType("navigation")[0];
    return { boot: t("aqueduct:boot"), wasm_main: t("aqueduct:wasm-main"), mounted: t("aqueduct:mounted"), info: t("aqueduct:info"),
             dial: t("aqueduct:dial"), connected: t("aqueduct:connected"),
             dom_interactive: nav ? nav.domInteractive : null };
"#;

/// A new browser with an empty profile. A user opens the app in a browser that is already
/// running, so unless `cold`, this one is left to finish starting (its own start-up work
/// competes for the CPU) before the page is opened.
async fn started_browser(cold: bool) -> anyhow::Result<Browser> {
    let browser = Browser::start().await?;
    if !cold {
        browser.goto("about:blank").await?;
        tokio::time::sleep(BROWSER_SETTLE).await;
    }
    Ok(browser)
}

/// A load's timeline: when each file finished arriving and every mark, in time order.
const TIMELINE: &str = r#"
    const rows = performance.getEntriesByType('resource').map(e => [e.responseEnd, 'got ' + new URL(e.name).pathname + ' (asked at ' + e.startTime.toFixed(1) + ', fetch ' + e.fetchStart.toFixed(1) + ', connect ' + e.connectStart.toFixed(1) + '-' + e.connectEnd.toFixed(1) + ', request ' + e.requestStart.toFixed(1) + ', first byte ' + e.responseStart.toFixed(1) + ')']);
    const nav = performance.getEntriesByType('navigation')[0];
    if (nav) rows.push([nav.responseEnd, 'got the page'], [nav.domInteractive, 'dom interactive']);
    for (const e of performance.getEntriesByType('mark')) rows.push([e.startTime, e.name]);
    rows.sort((a, b) => a[0] - b[0]);
    return rows.map(([t, what]) => t.toFixed(1).padStart(7) + ' ms  ' + what).join('\n');
"#;

/// Runs each example job from a page and reads how long the relay took to run it and how long
/// the page took to verify it (re-execution for one-shot jobs, sampling for the step job).
const PASSWORD: &str = "benchmark password";

/// Creates a wallet, then reloads and unlocks it `times` times: the unlock durations (Argon2id
/// with the app's parameters, as the page measured them), and the longest task the page's main
/// thread ran during each (the Long Tasks API reports tasks over 50 ms; none counts as 0).
/// Leaves the browser unlocked.
async fn unlock_timings(
    browser: &Browser,
    relay: &Relay,
    times: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    browser.create_wallet(&relay.url(), PASSWORD).await?;
    let mut out = Vec::new();
    let mut longest = Vec::new();
    for _ in 0..times {
        browser.goto(&relay.page("/wallet")).await?;
        browser
            .wait_for("wallet-state", "locked", Duration::from_secs(30), |t| {
                t == "locked"
            })
            .await?;
        browser
            .set_value("wallet-unlock-password", PASSWORD)
            .await?;
        browser
            .eval(
                "window.longestTask = 0; new PerformanceObserver((list) => { \
                   for (const e of list.getEntries()) \
                     window.longestTask = Math.max(window.longestTask, e.duration); \
                 }).observe({ type: 'longtask' });",
            )
            .await?;
        browser.click("wallet-unlock").await?;
        browser
            .wait_for("wallet-state", "unlocked", Duration::from_secs(30), |t| {
                t == "unlocked"
            })
            .await?;
        let ms: f64 = browser
            .attr("wallet-unlock-ms", "data-ms")
            .await
            .and_then(|v| v.parse().ok())
            .context("the page shows its unlock time")?;
        let task = browser
            .eval("return window.longestTask;")
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        eprintln!(
            "unlock: {ms:.0} ms, longest main-thread task meanwhile {task:.0} ms (0: none over \
             50 ms)"
        );
        out.push(ms);
        longest.push(task);
    }
    Ok((out, longest))
}

/// The page's performance measures named `<prefix><count>`: (count, duration in ms) each.
async fn counted_measures(browser: &Browser, prefix: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let entries = browser
        .eval(&format!(
            "return performance.getEntriesByType('measure').filter(e => e.name.startsWith('{prefix}'))
                .map(e => [Number(e.name.slice({})), e.duration]);",
            prefix.len()
        ))
        .await?;
    Ok(entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e[0].as_f64().unwrap_or(0.0),
                e[1].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect())
}

/// Opens the wallet and marketplace pages (balance, channels, every offer: all proven reads)
/// and returns how long the page took to verify each answer, and per key read.
async fn ledger_read_timings(browser: &Browser) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    for _ in 0..10 {
        browser.nav("market").await?;
        browser
            .wait_attr(
                "market-offer",
                "data-provider",
                "an offer",
                Duration::from_secs(60),
                |_| true,
            )
            .await?;
        browser.nav("wallet").await?;
        browser
            .wait_attr(
                "wallet-balance",
                "data-units",
                "a balance",
                Duration::from_secs(60),
                |_| true,
            )
            .await?;
    }
    let mut per_answer = Vec::new();
    let mut per_key = Vec::new();
    for (keys, ms) in counted_measures(browser, "aqueduct:ledger-verify:").await? {
        let keys = keys.max(1.0);
        per_answer.push(ms);
        per_key.push(ms / keys);
    }
    anyhow::ensure!(
        !per_answer.is_empty(),
        "the page recorded no verified ledger reads"
    );
    Ok((per_answer, per_key))
}

/// Puts `count` proposals on the ledger from a native account (faucet, then proposals), so
/// that the DAO page has tallies to verify.
async fn make_proposals(relay: &Relay, count: u64) -> anyhow::Result<()> {
    use client_core::ledger::gov::Action;
    use client_core::ledger::tx::min_fee_for;
    use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
    use client_core::ledger::{Tx, TxKind};
    let (mut control, peer) = aqueduct_tests::tcp_client(relay).await?;
    let genesis = aqueduct_tests::ledger_genesis(&mut control, peer).await?;
    let key = client_core::identity::Keypair::from_seed(&[77; 32]);
    let mut kinds = vec![TxKind::Faucet];
    kinds.extend((0..count).map(|i| TxKind::Propose {
        title: format!("Benchmark proposal {i}"),
        description: "Read and verified by the page.".into(),
        action: Action::Text,
    }));
    for (nonce, kind) in kinds.into_iter().enumerate() {
        let fee = min_fee_for(&genesis.params, &genesis.network_id, &kind);
        let tx = client_core::signed::Signed::sign(
            &key,
            Tx {
                network_id: genesis.network_id.clone(),
                nonce: nonce as u64,
                fee,
                kind,
            },
        );
        let answer = aqueduct_tests::ledger_call(
            &mut control,
            peer,
            &LedgerRequest::Submit { tx: Box::new(tx) },
        )
        .await?;
        anyhow::ensure!(
            matches!(answer.last(), Some(LedgerResponse::Included { .. })),
            "not included: {answer:?}"
        );
    }
    Ok(())
}

/// Opens the DAO page ten times; returns how long the page took to verify every proof behind
/// it (parameters, treasury, each proposal with its tally), per load and per proposal.
async fn dao_timings(browser: &Browser, proposals: u64) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    for _ in 0..10 {
        browser.nav("wallet").await?;
        browser.nav("dao").await?;
        browser
            .wait_attr(
                "dao-proposal",
                "data-id",
                "a proposal",
                Duration::from_secs(60),
                |_| true,
            )
            .await?;
    }
    let mut per_load = Vec::new();
    let mut per_proposal = Vec::new();
    for (count, ms) in counted_measures(browser, "aqueduct:dao-verify:").await? {
        if count < proposals as f64 {
            continue;
        }
        per_load.push(ms);
        per_proposal.push(ms / count);
    }
    anyhow::ensure!(
        !per_load.is_empty(),
        "the page recorded no DAO verification"
    );
    Ok((per_load, per_proposal))
}

async fn job_timings(browser: &Browser) -> anyhow::Result<Vec<serde_json::Value>> {
    browser.nav("jobs").await?;
    browser.wait_connected(Duration::from_secs(30)).await?;
    let mut out = Vec::new();
    for (index, name, input) in [
        (0, "hash-chain", "1000 2000 bench"),
        // 20 steps: re-executed in full, six million hashes.
        (0, "hash-chain", "20 300000 bench"),
        (1, "mandelbrot", "320 240 256"),
        (2, "primes", "2000000"),
    ] {
        browser.set_value("job-example", &index.to_string()).await?;
        browser.set_value("job-input", input).await?;
        // The longest main-thread task (Long Tasks API: those over 50 ms) from submitting to
        // the end of the check.
        browser
            .eval(
                "window.jobTask = 0; if (!window.jobObserver) { \
                   window.jobObserver = new PerformanceObserver((list) => { \
                     for (const e of list.getEntries()) \
                       window.jobTask = Math.max(window.jobTask, e.duration); }); \
                   window.jobObserver.observe({ type: 'longtask' }); }",
            )
            .await?;
        browser.click("job-submit").await?;
        browser
            .wait_for("job-status", "running", Duration::from_secs(20), |t| {
                !matches!(t, "idle" | "verified" | "sampled" | "failed")
            })
            .await?;
        let status = browser
            .wait_for("job-status", "the end", Duration::from_secs(300), |t| {
                matches!(t, "verified" | "sampled" | "failed")
            })
            .await?;
        anyhow::ensure!(status != "failed", "{name} was not verified");
        let timing = browser
            .eval(
                r#"const t = document.querySelector('[data-testid="job-timing"]');
                   const v = document.querySelector('[data-testid="job-verification"]');
                   return { run: Number(t.dataset.runMs), verify: Number(t.dataset.verifyMs),
                            sampled: v.textContent.includes("sampled") };"#,
            )
            .await?;
        let run = timing["run"].as_f64().unwrap_or(f64::NAN);
        let verify = timing["verify"].as_f64().unwrap_or(f64::NAN);
        // Long-task entries arrive after the task: give the last one time to.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let longest_task = browser
            .eval("return window.jobTask;")
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        let level = if timing["sampled"].as_bool() == Some(true) {
            "sampled (99% at 5%)"
        } else {
            "full re-execution"
        };
        eprintln!(
            "{name}: relay {run:.0} ms, browser verification {verify:.0} ms ({level}), longest \
             main-thread task {longest_task:.0} ms"
        );
        out.push(serde_json::json!({
            "job": name, "input": input, "relay_run_ms": run, "browser_verify_ms": verify,
            "ratio": verify / run.max(1.0), "level": level,
            "longest_main_task_ms": longest_task,
        }));
    }
    Ok(out)
}

/// Bytes the browser fetched for a cold load of the app, by resource (from Resource Timing:
/// `transferSize` is what came over the wire, compressed, headers included).
const TRANSFERS: &str = r#"
    return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
        .map(e => ({ name: new URL(e.name).pathname, transfer: e.transferSize, body: e.encodedBodySize, decoded: e.decodedBodySize }));
"#;

/// Whether the app has fetched every lazy page's module (its mark).
const PAGES_PRELOADED: &str =
    "return performance.getEntriesByName('aqueduct:pages-preloaded').length > 0;";

/// A module of a lazy page (cut out of the page's bundle by `cargo xtask`'s splitter).
fn is_lazy_module(path: &str) -> bool {
    path.starts_with("/split_") || path.starts_with("/chunk_")
}

/// The page-load figures, in the order a load passes them.
const PAGE_LOAD_KEYS: [&str; 6] = [
    "navigation_to_script_start_ms",
    "navigation_to_wasm_main_ms",
    "navigation_to_app_mounted_ms",
    "navigation_to_relay_info_ms",
    "navigation_to_connected_ms",
    "dial_to_connected_ms",
];

/// Prints the summaries under `keys` of `results`, one row each.
fn print_table(results: &serde_json::Value, keys: &[&str]) {
    println!(
        "\n{:<32} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "metric (ms)", "n", "median", "p90", "p99", "max"
    );
    for key in keys {
        let s = &results[key];
        let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<32} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            key.trim_end_matches("_ms"),
            s["n"],
            f("median"),
            f("p90"),
            f("p99"),
            f("max")
        );
    }
}

/// Proposals the DAO step puts on the ledger before timing the page.
const DAO_PROPOSALS: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("bench");
    // Offering its compute, so the marketplace has an offer to read; at price zero, so the
    // job timings measure running and verifying, not funding a channel.
    let relay = Relay::start_with(
        &bin,
        &www,
        &data_dir,
        &RelayPorts::any(),
        &["--provide", "--price-per-mfuel", "0"],
    )?;
    let url = relay.url();

    // One list of samples per figure, in `PAGE_LOAD_KEYS` order.
    let mut page_loads: [Vec<f64>; PAGE_LOAD_KEYS.len()] = Default::default();
    let mut transfers = serde_json::Value::Null;
    for i in 0..args.loads {
        let browser = started_browser(args.cold_browser).await?;
        browser.goto(&url).await?;
        browser.wait_connected(Duration::from_secs(30)).await?;
        let marks = browser.eval(MARKS).await?;
        let get = |k: &str| marks.get(k).and_then(serde_json::Value::as_f64);
        let (Some(dial), Some(connected)) = (get("dial"), get("connected")) else {
            anyhow::bail!("load {i}: the page recorded no dial/connected marks: {marks}");
        };
        if i == 0 {
            // Once the other pages' modules are in too, so that both totals are whole.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while browser.eval(PAGES_PRELOADED).await? != serde_json::json!(true) {
                if std::time::Instant::now() > deadline {
                    anyhow::bail!("the app did not preload its pages within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            transfers = browser.eval(TRANSFERS).await?;
        }
        if args.trace {
            let timeline = browser.eval(TIMELINE).await?;
            eprintln!("{}", timeline.as_str().unwrap_or_default());
        }
        let figures = [
            get("boot"),
            get("wasm_main"),
            get("mounted"),
            get("info"),
            Some(connected),
            Some(connected - dial),
        ];
        for (samples, figure) in page_loads.iter_mut().zip(figures) {
            samples.extend(figure);
        }
        eprintln!(
            "load {:>2}: navigation→connected {connected:6.1} ms, dial→connected {:6.1} ms",
            i + 1,
            connected - dial
        );
        browser.close().await;
    }
    let mut results = serde_json::Value::Object(
        PAGE_LOAD_KEYS
            .iter()
            .zip(page_loads)
            .map(|(key, samples)| ((*key).to_owned(), serde_json::json!(summarize(samples))))
            .collect(),
    );
    print_table(&results, &PAGE_LOAD_KEYS);
    if args.loads_only {
        return Ok(());
    }

    let browser = started_browser(args.cold_browser).await?;
    browser.goto(&format!("{url}?probe_ms=10")).await?;
    browser.wait_connected(Duration::from_secs(30)).await?;
    let started = Instant::now();
    let rtts: Vec<f64> = loop {
        let v = browser
            .eval("return performance.getEntriesByName('aqueduct:rtt').map(e => e.duration);")
            .await?;
        let list: Vec<f64> = v
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        if list.len() >= args.probes as usize {
            break list.into_iter().take(args.probes as usize).collect();
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("only {} probes after 120 s", list.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    browser.close().await;

    let browser = Browser::start().await?;
    let (unlocks, unlock_tasks) = unlock_timings(&browser, &relay, 5).await?;
    let (ledger_answers, ledger_keys) = ledger_read_timings(&browser).await?;
    let jobs = job_timings(&browser).await?;
    make_proposals(&relay, DAO_PROPOSALS).await?;
    let (dao_loads, dao_per_proposal) = dao_timings(&browser, DAO_PROPOSALS).await?;
    browser.close().await;
    // The first visit's bytes, and the lazy pages' modules the app fetches after it is up.
    let transferred = |lazy: bool| -> f64 {
        transfers
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                let name = e["name"].as_str().unwrap_or("");
                !name.starts_with("/api/") && is_lazy_module(name) == lazy
            })
            .filter_map(|e| e["transfer"].as_f64())
            .sum()
    };
    let (first_visit, lazy_pages) = (transferred(false), transferred(true));
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);

    results["round_trip_ms"] = serde_json::json!(summarize(rtts));
    results["unlock_ms"] = serde_json::json!(summarize(unlocks));
    results["unlock_longest_main_task_ms"] = serde_json::json!(summarize(unlock_tasks));
    results["dao_verify_ms"] = serde_json::json!(summarize(dao_loads));
    results["dao_verify_per_proposal_ms"] = serde_json::json!(summarize(dao_per_proposal));
    results["dao_proposals"] = serde_json::json!(DAO_PROPOSALS);
    results["ledger_answer_verify_ms"] = serde_json::json!(summarize(ledger_answers));
    results["ledger_verify_per_key_ms"] = serde_json::json!(summarize(ledger_keys));
    results["cold_load_transfer_bytes"] = serde_json::json!(first_visit);
    results["lazy_pages_transfer_bytes"] = serde_json::json!(lazy_pages);
    results["cold_load_resources"] = transfers;
    results["jobs"] = serde_json::json!(jobs);
    print_table(
        &results,
        &[
            "round_trip_ms",
            "unlock_ms",
            "unlock_longest_main_task_ms",
            "ledger_answer_verify_ms",
            "ledger_verify_per_key_ms",
            "dao_verify_ms",
            "dao_verify_per_proposal_ms",
        ],
    );
    println!(
        "\ncold load of the app (html, js, wasm, css, icon; as transferred): {:.1} KB; \
         then the other pages' modules, preloaded: {:.1} KB",
        first_visit / 1024.0,
        lazy_pages / 1024.0
    );
    println!(
        "\n{:<12} {:<20} {:>12} {:>14} {:>8} {:>10}  level",
        "job", "input", "relay (ms)", "browser (ms)", "ratio", "task (ms)"
    );
    println!(
        "(task: the page's longest main-thread task meanwhile; the Long Tasks API reports only \
         tasks over 50 ms, so 0 means none was longer)"
    );
    for job in results["jobs"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {:<20} {:>12} {:>14.0} {:>8.2} {:>10.0}  {}",
            job["job"].as_str().unwrap_or("?"),
            job["input"].as_str().unwrap_or("?"),
            job["relay_run_ms"],
            job["browser_verify_ms"].as_f64().unwrap_or(f64::NAN),
            job["ratio"].as_f64().unwrap_or(f64::NAN),
            job["longest_main_task_ms"].as_f64().unwrap_or(f64::NAN),
            job["level"].as_str().unwrap_or("?"),
        );
    }
    let path = artifacts_dir("bench").join("e2e.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

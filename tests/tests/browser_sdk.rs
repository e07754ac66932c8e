//! The SDK end to end: the example page (`www/examples/sdk.html`, which uses only the SDK
//! package) in a real headless Chromium against a real relay. It refuses a relay whose genesis
//! is not the pinned one, connects to the right one, makes a wallet in the page, runs a step job
//! (verified by sampling) and a one-shot job (re-executed) and reads the ledger with proofs;
//! against a relay that lies about an output, the SDK rejects the result as a failed
//! verification and names the check. Argon2id and the check run in the SDK's worker, off the
//! page's main thread. On a two-validator network whose second relay forges one step, the SDK
//! (and the example page) referee a step job across both providers, name the forger and put its
//! fraud proof on the ledger.

use aqueduct_tests::{Browser, Relay, RelayPorts, faulty_relay_bin, relay_bin, temp_dir, www_dir};
use std::time::Duration;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// The genesis hash the relay printed at start-up, as its operator would publish it.
fn printed_genesis(relay: &Relay) -> anyhow::Result<String> {
    relay
        .output()
        .lines()
        .find_map(|l| l.trim().strip_prefix("genesis:"))
        .map(|g| g.trim().to_owned())
        .ok_or_else(|| anyhow::anyhow!("the relay printed no genesis: {}", relay.output()))
}

/// A relay serving `www` whose provider's offer is free, as `cargo xtask run --
/// --price-per-mfuel 0` starts it (the SDK sends jobs unpaid), its printed genesis, and a
/// browser.
async fn free_provider(
    www: &std::path::Path,
    data_dir: &std::path::Path,
) -> anyhow::Result<(Relay, String, Browser)> {
    let relay = Relay::start_with(
        &relay_bin()?,
        www,
        data_dir,
        &RelayPorts::any(),
        &["--provide", "--price-per-mfuel", "0"],
    )?;
    let genesis = printed_genesis(&relay)?;
    Ok((relay, genesis, Browser::start().await?))
}

/// Opens the example page pinned to `genesis` and clicks "Connect".
async fn connect(browser: &Browser, relay: &Relay, genesis: &str) -> anyhow::Result<String> {
    browser
        .goto(&relay.page(&format!("/examples/sdk.html?genesis={genesis}")))
        .await?;
    browser.click("connect").await?;
    browser
        .wait_for(
            "network-status",
            "verified or refused",
            Duration::from_secs(40),
            |s| matches!(s, "verified" | "refused"),
        )
        .await
}

/// Picks an example, sets its input, runs it and waits for its end; returns the stage shown.
async fn run_job(browser: &Browser, example: &str, input: &str) -> anyhow::Result<String> {
    browser.set_value("example", example).await?;
    browser.set_value("job-input", input).await?;
    browser.click("run-job").await?;
    browser
        .wait_for("job-stage", "the job's end", JOB_TIMEOUT, |s| {
            matches!(s, "verified" | "failed" | "failed verification")
        })
        .await
}

/// Waits for the page to show a wallet's account id (after making, unlocking or restoring it).
async fn wait_account(browser: &Browser) -> anyhow::Result<String> {
    browser
        .wait_for("account", "an account id", Duration::from_secs(30), |a| {
            a.starts_with("12D3KooW")
        })
        .await
}

/// The checks the example page lists for the last job's result.
async fn job_checks(browser: &Browser) -> anyhow::Result<Vec<String>> {
    let texts = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=\"job-check\"]')]\
             .map(e => e.textContent);",
        )
        .await?;
    Ok(serde_json::from_value(texts)?)
}

async fn error_text(browser: &Browser) -> String {
    browser.text("sdk-error").await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_using_only_the_sdk_runs_verified_jobs_and_proven_reads() -> anyhow::Result<()> {
    let data_dir = temp_dir("e2e-sdk");
    let (relay, genesis, browser) = free_provider(&www_dir()?, &data_dir).await?;

    // Another network's genesis pinned: refused, with the reason.
    let wrong = "0".repeat(genesis.len());
    assert_eq!(connect(&browser, &relay, &wrong).await?, "refused");
    let error = error_text(&browser).await;
    assert!(
        error.starts_with("genesis:") && error.contains(&genesis),
        "expected a genesis error naming the relay's genesis, got {error:?}"
    );

    // The right one.
    let state = connect(&browser, &relay, &genesis).await;
    browser.screenshot("sdk-connected").await?;
    assert_eq!(state?, "verified", "{}", error_text(&browser).await);
    let detail = browser.text("network-detail").await.unwrap_or_default();
    let peer_id = relay.info()?.peer_id;
    assert!(
        detail.contains(&peer_id) && detail.contains("aqueduct-dev") && detail.contains(&genesis),
        "{detail}"
    );
    // The connection state the SDK reports to its subscribers, with a round-trip time.
    browser
        .wait_for(
            "connection-detail",
            "the relay and a round-trip time",
            Duration::from_secs(15),
            |d| d.starts_with(&peer_id) && d.contains("round trip"),
        )
        .await?;
    assert_eq!(
        browser.text("connection-state").await.as_deref(),
        Some("connected")
    );

    browser.click("create-wallet").await?;
    let account = wait_account(&browser).await?;

    // The stored (sealed) wallet: a wrong password is refused, the right one opens the same
    // account; the recovery phrase restores it too.
    browser.set_value("password", "not the password").await?;
    browser.click("unlock-wallet").await?;
    browser
        .wait_for("account", "locked", Duration::from_secs(30), |a| {
            a == "locked"
        })
        .await?;
    let error = error_text(&browser).await;
    assert!(error.starts_with("wallet:"), "{error}");
    browser
        .set_value("password", "correct horse battery")
        .await?;
    browser.click("unlock-wallet").await?;
    let unlocked = wait_account(&browser).await?;
    assert_eq!(unlocked, account, "unlocking opens the same account");
    browser.click("show-phrase").await?;
    let phrase: String = browser
        .eval("return document.querySelector('[data-testid=\"phrase\"]').value;")
        .await?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(phrase.split_whitespace().count(), 24, "{phrase:?}");
    let words: Vec<&str> = phrase.split_whitespace().collect();
    // A phrase with a word that is not in the list is refused, naming it.
    let bad = std::iter::once("notaword")
        .chain(words[1..].iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    browser.set_value("phrase", &bad).await?;
    browser.click("restore-wallet").await?;
    browser
        .wait_for(
            "sdk-error",
            "a wallet error",
            Duration::from_secs(30),
            |e| e.starts_with("wallet:") && e.contains("notaword"),
        )
        .await?;
    browser.set_value("phrase", &phrase).await?;
    browser.click("restore-wallet").await?;
    browser
        .wait_for(
            "sdk-error",
            "no error",
            Duration::from_secs(30),
            str::is_empty,
        )
        .await?;
    let restored = wait_account(&browser).await?;
    assert_eq!(restored, account, "the phrase restores the same account");

    // Argon2id runs in the SDK's worker: making and unlocking a wallet (two derivations, about
    // a second each) leaves the page's own thread free; a 10 ms timer is never held up for
    // more than a fraction of it (on the main thread, each derivation would hold it whole).
    let figures = browser
        .eval(
            "return (async () => { \
               const { Wallet } = await import('/sdk/aqueduct_sdk.js'); \
               const ticks = []; \
               const ticker = setInterval(() => ticks.push(performance.now()), 10); \
               const start = performance.now(); \
               const made = await Wallet.create('correct horse battery'); \
               const opened = await Wallet.unlock(made.backup(), 'correct horse battery'); \
               const ms = performance.now() - start; \
               clearInterval(ticker); \
               let gap = 0; \
               for (let i = 1; i < ticks.length; i++) gap = Math.max(gap, ticks[i] - ticks[i - 1]); \
               const same = made.account === opened.account; \
               made.free(); opened.free(); \
               return { gap, ms, same }; \
             })();",
        )
        .await?;
    let gap = figures["gap"].as_f64().unwrap_or(f64::MAX);
    let ms = figures["ms"].as_f64().unwrap_or(0.0);
    eprintln!(
        "making and unlocking a wallet took {ms:.0} ms; the page's longest pause: {gap:.0} ms"
    );
    assert_eq!(figures["same"], serde_json::json!(true), "{figures}");
    assert!(
        ms > 0.0 && gap < ms / 4.0,
        "the page's thread paused {gap:.0} ms while a wallet was made and unlocked in {ms:.0} ms"
    );

    // A step job, verified by sampling in the page.
    let stage = run_job(&browser, "hash-chain", "200 500 sdk").await?;
    browser.screenshot("sdk-job-sampled").await?;
    assert_eq!(stage, "verified", "{}", error_text(&browser).await);
    assert_eq!(browser.text("job-method").await.as_deref(), Some("sampled"));
    let strength = browser.text("job-strength").await.unwrap_or_default();
    assert!(
        strength.contains("caught with probability 0.9"),
        "sampling should catch a relay faking 5% of 200 steps with high probability: {strength}"
    );
    let checks = job_checks(&browser).await?;
    assert!(
        checks.len() >= 3,
        "the checks that passed are listed: {checks:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.starts_with("checked in a Web Worker")),
        "the sampled check ran in the SDK's worker: {checks:?}"
    );

    // A one-shot job, re-executed in the page: the output is the right count.
    let stage = run_job(&browser, "primes", "200000").await?;
    assert_eq!(stage, "verified", "{}", error_text(&browser).await);
    assert_eq!(
        browser.text("job-method").await.as_deref(),
        Some("reexecuted")
    );
    let output = browser.text("job-output").await.unwrap_or_default();
    assert!(output.contains("17984"), "primes below 200000: {output:?}");

    // Proven ledger reads.
    browser.click("read-ledger").await?;
    let proof = browser
        .wait_for(
            "balance-proof",
            "a proof's block and state root",
            Duration::from_secs(30),
            |p| p.starts_with("proven at block "),
        )
        .await?;
    assert!(proof.contains("state root"), "{proof}");
    browser
        .wait_for(
            "proposals",
            "the proposal count",
            Duration::from_secs(30),
            |p| p.contains("proven at block"),
        )
        .await?;
    let offers = browser.text("offers").await.unwrap_or_default();
    assert!(offers.contains("proven at block"), "{offers}");
    assert_eq!(error_text(&browser).await, "", "account {account}");
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_rejects_a_lying_relays_result_and_names_the_check() -> anyhow::Result<()> {
    let (bin, www) = (faulty_relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-sdk-faulty");
    let relay = Relay::start_with(
        &bin,
        &www,
        &data_dir,
        &RelayPorts::any(),
        &["--faulty", "wrong-output"],
    )?;
    let genesis = printed_genesis(&relay)?;
    let browser = Browser::start().await?;
    assert_eq!(connect(&browser, &relay, &genesis).await?, "verified");
    browser.click("create-wallet").await?;
    wait_account(&browser).await?;
    let stage = run_job(&browser, "primes", "100000").await?;
    browser.screenshot("sdk-job-lie-caught").await?;
    let error = error_text(&browser).await;
    assert_eq!(stage, "failed verification", "{error}");
    assert!(
        error.starts_with("verification (output)"),
        "the SDK names the failed check: {error}"
    );
    assert_eq!(browser.text("job-output").await.as_deref(), Some(""));
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Runs `body` (the statements of an async function) in the page; returns what it returns.
async fn run_async(browser: &Browser, body: &str) -> anyhow::Result<serde_json::Value> {
    browser
        .eval(&format!("return (async () => {{ {body} }})();"))
        .await
}

/// Paying a provider through the SDK alone: a job on a charging provider's relay without a
/// channel is refused before anything is sent, naming the way out; the faucet and a channel
/// opened by the SDK (each transaction's inclusion proven) then pay for jobs by vouchers, each
/// promising the price more on the channel; a reload remembers what was promised.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_pays_a_charging_provider_from_a_channel_it_opened() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-sdk-paid");
    // A provider at the default price: 5 units per million fuel.
    let relay = Relay::start_with(&bin, &www, &data_dir, &RelayPorts::any(), &["--provide"])?;
    let genesis = printed_genesis(&relay)?;
    let browser = Browser::start().await?;
    assert_eq!(connect(&browser, &relay, &genesis).await?, "verified");
    let setup = format!(
        "const {{ Client, Wallet }} = await import('/sdk/aqueduct_sdk.js'); \
         window.client = await Client.connect({{ genesis: '{genesis}' }}); \
         window.wallet = await Wallet.create('correct horse battery'); \
         localStorage.setItem('paid.wallet', window.wallet.backup()); \
         window.job = {{ module: new Uint8Array(await (await fetch('/jobs/primes.wasm')).arrayBuffer()), \
                        input: '100000', fuelLimit: 1000000000 }}; \
         for (let i = 0; i < 100; i++) {{ \
           const offers = (await client.offers()).value.filter(o => o.active); \
           if (offers.length) {{ window.provider = offers[0].provider; return offers[0].pricePerMfuel; }} \
           await new Promise(r => setTimeout(r, 200)); \
         }} \
         return null;"
    );
    let price_per_mfuel = run_async(&browser, &setup).await?;
    assert_eq!(
        price_per_mfuel,
        serde_json::json!("5"),
        "the provider's offer"
    );
    // 1e9 fuel at 5 units per million.
    let price = 5_000u64;

    let refused = run_async(
        &browser,
        "try { await client.runJob(wallet, job); return null; } \
         catch (e) { return { kind: e.kind, check: e.check, message: e.message }; }",
    )
    .await?;
    assert_eq!(refused["kind"], "job", "{refused}");
    assert_eq!(refused["check"], "payment", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("costs 5000 units") && message.contains("client.openChannel"),
        "{message}"
    );

    let opened = run_async(
        &browser,
        "const stages = []; \
         const onProgress = (p) => stages.push(p.stage); \
         const faucet = await client.faucet(wallet, { onProgress }); \
         const opened = await client.openChannel(wallet, { provider, amount: '20000', onProgress }); \
         return { faucet, opened, stages };",
    )
    .await?;
    assert!(opened["faucet"]["height"].as_u64() > Some(0), "{opened}");
    let channel = opened["opened"]["channel"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(channel.len(), 64, "the new channel's id: {opened}");
    let stages = opened["stages"].to_string();
    assert!(
        stages.contains("signed") && stages.contains("included"),
        "{stages}"
    );

    for n in 1..=2u64 {
        let paid = run_async(
            &browser,
            "const r = await client.runJob(wallet, job); \
             return { paid: r.paid, output: new TextDecoder().decode(r.output), \
                      method: r.verification.method };",
        )
        .await?;
        assert_eq!(paid["method"], "reexecuted", "{paid}");
        assert!(
            paid["output"].as_str().unwrap_or_default().contains("9592"),
            "{paid}"
        );
        assert_eq!(paid["paid"]["channel"], channel.as_str(), "{paid}");
        assert_eq!(paid["paid"]["amount"], price.to_string(), "{paid}");
        assert_eq!(
            paid["paid"]["cumulative"],
            (n * price).to_string(),
            "voucher {n} promises the price more: {paid}"
        );
    }

    // A reload: a new client and the unlocked wallet see the channel, proven, with what was
    // promised on it.
    browser
        .goto(&relay.page(&format!("/examples/sdk.html?genesis={genesis}")))
        .await?;
    let after = run_async(
        &browser,
        &format!(
            "const {{ default: init, Client, Wallet }} = await import('/sdk/aqueduct_sdk.js'); \
             await init(); \
             const client = await Client.connect({{ genesis: '{genesis}' }}); \
             const wallet = await Wallet.unlock(localStorage.getItem('paid.wallet'), \
                                                'correct horse battery'); \
             return (await client.channels(wallet.account));"
        ),
    )
    .await?;
    let listed = &after["value"][0];
    assert_eq!(listed["id"], channel.as_str(), "{after}");
    assert_eq!(listed["deposit"], "20000", "{after}");
    assert_eq!(listed["promised"], (2 * price).to_string(), "{after}");
    assert_eq!(
        listed["available"],
        (20_000 - 2 * price).to_string(),
        "{after}"
    );
    assert!(after["height"].as_u64() > Some(0), "{after}");
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Copies the directory `from` to `to`, subdirectories included.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Where the SDK's worker cannot be started (here: a site that left `worker.js` out of the
/// package), the SDK still makes wallets and checks jobs, on the page's main thread, and the
/// result's checks say so and why.
#[tokio::test(flavor = "multi_thread")]
async fn without_its_worker_the_sdk_checks_in_the_page_and_says_so() -> anyhow::Result<()> {
    let www = temp_dir("e2e-sdk-no-worker-www");
    copy_tree(&www_dir()?, &www)?;
    std::fs::remove_file(www.join("sdk/worker.js"))?;
    let data_dir = temp_dir("e2e-sdk-no-worker");
    let (relay, genesis, browser) = free_provider(&www, &data_dir).await?;
    assert_eq!(connect(&browser, &relay, &genesis).await?, "verified");
    browser.click("create-wallet").await?;
    wait_account(&browser).await?;
    let stage = run_job(&browser, "primes", "100000").await?;
    assert_eq!(stage, "verified", "{}", error_text(&browser).await);
    let checks = job_checks(&browser).await?;
    assert!(
        checks
            .iter()
            .any(|c| c.starts_with("checked on the page's main thread") && c.contains("worker")),
        "the checks say where the check ran and why: {checks:?}"
    );
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_dir_all(&www);
    Ok(())
}

/// The step every step job's transition is forged at by the forger of [`forger_net`].
const FORGED_STEP: u64 = 437;

/// A two-validator network whose first relay's provider is free and whose second relay forges
/// one transition of every step job (at [`FORGED_STEP`]) and computes the rest honestly from it,
/// charging `forger_price` units per million fuel; its printed genesis; the forger's peer id;
/// and a browser on the example page, connected to the first relay.
async fn forger_net(
    network_id: &str,
    forger_price: &str,
) -> anyhow::Result<(aqueduct_tests::devnet::Devnet, String, String, Browser)> {
    use aqueduct_tests::devnet::{Devnet, DevnetOptions};
    let step = FORGED_STEP.to_string();
    let forger_args = [
        "--faulty",
        "fabricate-step",
        "--fault-step",
        &step,
        "--price-per-mfuel",
        forger_price,
    ];
    let net = Devnet::start_with(&DevnetOptions {
        validators: 2,
        network_id,
        epoch_blocks: 1000,
        extra: &["--provide", "--price-per-mfuel", "0"],
        funded: &[],
        byzantine: &[(1, &forger_args)],
    })?;
    let genesis = printed_genesis(net.relay(0)?)?;
    let forger_id = net.relay(1)?.info()?.peer_id;
    let browser = Browser::start().await?;
    assert_eq!(
        connect(&browser, net.relay(0)?, &genesis).await?,
        "verified"
    );
    Ok((net, genesis, forger_id, browser))
}

/// Refereeing through the SDK alone, on a two-validator network whose second relay forges one
/// transition of every step job and computes the rest honestly from it (the cheater sampling
/// misses 91% of the time). The SDK refuses to referee without a second provider, then without
/// a channel to pay it; with the forger's relay added and a channel opened, the job goes to both
/// providers, the page bisects their commitments, names the forger with its fraud proof, and
/// the proof put on the ledger through the SDK comes back as a proven slash. With the forger
/// slashed, `verify: "auto"` finds no second provider and samples the job in the page.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_referees_two_providers_and_gets_the_forger_slashed() -> anyhow::Result<()> {
    // The stake `--provide` bonds by default (100 tokens), and the 10% a slash takes.
    const SLASH: u64 = 10_000_000;
    let (net, genesis, forger_id, browser) = forger_net("aqueduct-sdk-referee", "1").await?;
    let forger = net.relay(1)?;

    let setup = format!(
        "const {{ Client, Wallet }} = await import('/sdk/aqueduct_sdk.js'); \
         window.client = await Client.connect({{ genesis: '{genesis}' }}); \
         window.wallet = await Wallet.create('correct horse battery'); \
         window.job = {{ module: new Uint8Array(await (await fetch('/jobs/hash-chain.wasm')).arrayBuffer()), \
                        input: '1000 200 sdk-referee', fuelLimit: 20000000000, maxSteps: 1000, \
                        verify: 'refereed' }}; \
         window.failure = async (options) => {{ \
           try {{ await client.runJob(wallet, options); return null; }} \
           catch (e) {{ return {{ kind: e.kind, check: e.check, message: e.message }}; }} \
         }}; \
         return await failure(job);"
    );
    let alone = run_async(&browser, &setup).await?;
    assert_eq!(alone["kind"], "job", "{alone}");
    assert_eq!(alone["check"], "referee", "{alone}");
    assert!(
        alone["message"]
            .as_str()
            .unwrap_or_default()
            .contains("client.addRelay"),
        "{alone}"
    );

    // The forger's relay added (its genesis checked), and both offers listed.
    let added = run_async(
        &browser,
        &format!(
            "const added = await client.addRelay('{}'); \
             for (let i = 0; i < 150; i++) {{ \
               if ((await client.offers()).value.filter(o => o.active).length == 2) break; \
               await new Promise(r => setTimeout(r, 200)); \
             }} \
             return {{ added, states: client.connections().map(c => [c.relay, c.state]) }};",
            forger.url()
        ),
    )
    .await?;
    assert_eq!(added["added"], forger_id.as_str(), "{added}");
    assert_eq!(
        added["states"][1],
        serde_json::json!([forger_id, "connected"]),
        "{added}"
    );

    // The forger charges: refereeing needs a channel to it.
    let unpaid = run_async(&browser, "return await failure(job);").await?;
    assert_eq!(unpaid["check"], "referee", "{unpaid}");
    let message = unpaid["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("client.openChannel") && message.contains(&forger_id),
        "{unpaid}"
    );
    run_async(
        &browser,
        &format!(
            "await client.faucet(wallet); \
             await client.openChannel(wallet, {{ provider: '{forger_id}', amount: '50000' }}); \
             return null;"
        ),
    )
    .await?;

    let caught = run_async(
        &browser,
        "const stages = []; \
         const r = await client.runJob(wallet, { ...job, onProgress: (p) => stages.push(p.detail) }); \
         window.caught = r; \
         return { verification: r.verification, referee: r.referee, \
                  fraud: r.fraud.map(f => ({ ...f, proof: f.proof.length })), \
                  bisecting: stages.some(s => s.includes('bisecting')), \
                  output: r.output.length };",
    )
    .await?;
    if caught["verification"]["label"]
        != format!("refereed: a liar caught at segment {FORGED_STEP}")
    {
        anyhow::bail!("{caught}\n{}", net.logs());
    }
    assert_eq!(caught["verification"]["method"], "refereed", "{caught}");
    assert!(
        caught["verification"]["checks"]
            .to_string()
            .contains(&format!("{forger_id} lied")),
        "the checks name the forger: {caught}"
    );
    assert_eq!(caught["bisecting"], true, "progress told of the bisection");
    assert_eq!(
        caught["referee"]["provider"],
        forger_id.as_str(),
        "{caught}"
    );
    // 20 G fuel at 1 unit per million, by a voucher on the channel to the forger.
    assert_eq!(caught["referee"]["paid"]["amount"], "20000", "{caught}");
    assert!(caught["output"].as_u64() > Some(0), "{caught}");
    let fraud = &caught["fraud"][0];
    assert_eq!(fraud["provider"], forger_id.as_str(), "{caught}");
    assert_eq!(fraud["segment"], FORGED_STEP, "{caught}");
    assert_eq!(fraud["fits"], true, "{caught}");
    assert_eq!(fraud["proof"], fraud["bytes"], "{caught}");

    // The proof on the ledger, through the SDK: the slash comes back proven.
    let slashed = run_async(
        &browser,
        "const r = await client.submitFraudProof(wallet, { proof: caught.fraud[0].proof }); \
         const offer = (await client.offers()).value.find(o => o.provider == r.slash.value.provider); \
         return { ...r, offer, account: wallet.account };",
    )
    .await?;
    let slash = &slashed["slash"]["value"];
    assert_eq!(slash["provider"], forger_id.as_str(), "{slashed}");
    assert_eq!(slash["segment"], FORGED_STEP, "{slashed}");
    assert_eq!(slash["amount"], SLASH.to_string(), "{slashed}");
    // The job's price back to the customer, and the bounty to the submitter: the page itself.
    assert_eq!(slash["refund"], "20000", "{slashed}");
    assert_eq!(slash["customer"], slashed["account"], "{slashed}");
    assert_eq!(slash["submitter"], slashed["account"], "{slashed}");
    assert_eq!(slash["height"], slashed["height"], "{slashed}");
    assert!(
        slashed["slash"]["height"].as_u64() >= slashed["height"].as_u64(),
        "{slashed}"
    );
    assert_eq!(slashed["offer"]["slashed"], true, "{slashed}");
    assert_eq!(slashed["offer"]["active"], false, "{slashed}");

    // Slashed, the forger is no second provider: `auto` checks in the page.
    let sampled = run_async(
        &browser,
        "const r = await client.runJob(wallet, { ...job, input: '300 200 sdk-auto', verify: 'auto' }); \
         return { method: r.verification.method, referee: r.referee ?? null };",
    )
    .await?;
    assert_eq!(sampled["method"], "sampled", "{sampled}");
    assert_eq!(sampled["referee"], serde_json::Value::Null, "{sampled}");
    browser.close().await;
    Ok(())
}

/// The example page referees too, with nothing but the SDK: the forger's relay added in the
/// page (its connection listed), a step job checked "refereed only" names the forger at the
/// forged segment, and the page's button puts the fraud proof on the ledger and shows the slash
/// read back with a proof. The forger here is free, so no channel is needed.
#[tokio::test(flavor = "multi_thread")]
async fn the_example_page_referees_and_slashes_a_forger() -> anyhow::Result<()> {
    let (net, _, forger_id, browser) = forger_net("aqueduct-sdk-page-referee", "0").await?;
    let forger = net.relay(1)?;
    browser.click("create-wallet").await?;
    wait_account(&browser).await?;
    browser.click("faucet").await?;
    browser
        .wait_for("faucet-result", "the faucet included", JOB_TIMEOUT, |t| {
            t.starts_with("included in block")
        })
        .await?;

    browser.set_value("second-relay", &forger.url()).await?;
    browser.click("add-relay").await?;
    let listed = browser
        .wait_for(
            "connection",
            "the added relay connected",
            JOB_TIMEOUT,
            |t| t.ends_with(": connected"),
        )
        .await;
    assert!(
        listed.as_ref().is_ok_and(|t| t.starts_with(&forger_id)),
        "{listed:?} {}",
        error_text(&browser).await
    );
    // Both relays' providers registered, read with a proof.
    let mut offers = String::new();
    for _ in 0..100 {
        browser.click("read-ledger").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        offers = browser.text("offers").await.unwrap_or_default();
        if offers.starts_with("2 ") {
            break;
        }
    }
    assert!(offers.starts_with("2 "), "{offers}");

    browser.set_value("job-verify", "refereed").await?;
    let stage = run_job(&browser, "hash-chain", "1000 200 sdk-page").await?;
    browser.screenshot("sdk-refereed").await?;
    assert_eq!(
        stage,
        "verified",
        "{}\n{}",
        error_text(&browser).await,
        net.logs()
    );
    assert_eq!(
        browser.text("job-method").await.unwrap_or_default(),
        "refereed"
    );
    assert_eq!(
        browser.text("job-label").await.unwrap_or_default(),
        format!("refereed: a liar caught at segment {FORGED_STEP}")
    );
    let checks = job_checks(&browser).await?;
    assert!(
        checks
            .iter()
            .any(|c| c.contains(&format!("{forger_id} lied"))),
        "{checks:?}"
    );
    let liar = browser.text("liar").await.unwrap_or_default();
    assert!(
        liar.starts_with(&format!("{forger_id} lied at segment {FORGED_STEP}")),
        "{liar}"
    );

    browser.click("submit-proof").await?;
    let slash = browser
        .wait_for("slash", "the slash read back", JOB_TIMEOUT, |t| {
            t.starts_with("slashed")
        })
        .await;
    assert!(
        slash
            .as_ref()
            .is_ok_and(|t| t.starts_with("slashed 10000000 units")),
        "{slash:?} {}",
        error_text(&browser).await
    );
    browser.close().await;
    Ok(())
}

//! The wallet and the jobs page end to end: a real relay, a real headless Chromium, real
//! IndexedDB. Every test saves a screenshot of each page it reaches (under
//! `target/screenshots/`), before its assertions, so a failing test leaves its picture.

use anyhow::Context;
use aqueduct_tests::{Browser, Relay, RelayPorts, relay_bin, temp_dir, www_dir};
use client_core::wallet::{Entropy, SealedWallet, WalletError};
use std::time::Duration;

const PASSWORD: &str = "a long enough password";
const WAIT: Duration = Duration::from_secs(30);

fn start_relay(name: &str) -> anyhow::Result<(Relay, std::path::PathBuf)> {
    let data_dir = temp_dir(name);
    let relay = Relay::start(&relay_bin()?, &www_dir()?, &data_dir, &RelayPorts::any())?;
    Ok((relay, data_dir))
}

/// What IndexedDB holds under the wallet key, read by the page itself.
async fn stored_wallet(browser: &Browser) -> anyhow::Result<Option<String>> {
    let script = r#"
        const done = arguments[arguments.length - 1];
        const open = indexedDB.open("aqueduct");
        open.onerror = () => done(null);
        open.onsuccess = () => {
            const get = open.result.transaction("wallet").objectStore("wallet").get("main");
            get.onsuccess = () => done(get.result ?? null);
            get.onerror = () => done(null);
        };
    "#;
    let value = browser.client.execute_async(script, vec![]).await?;
    Ok(value.as_str().map(str::to_owned))
}

async fn wait_state(browser: &Browser, state: &str) -> anyhow::Result<()> {
    browser
        .wait_for("wallet-state", state, WAIT, |t| t == state)
        .await
        .map(|_| ())
}

/// Every string value (not field name) in a JSON document.
fn string_values(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| string_values(v, out)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| string_values(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wallet_survives_a_reload_and_refuses_a_wrong_password() -> anyhow::Result<()> {
    let (relay, data_dir) = start_relay("e2e-wallet")?;
    let browser = Browser::start().await?;
    let (phrase, account) = browser.create_wallet(&relay.url(), PASSWORD).await?;
    browser.screenshot("wallet-created").await?;

    // The account shown is the one the core derives from the phrase shown.
    assert_eq!(phrase.split(' ').count(), 24);
    let derived = Entropy::from_phrase(&phrase)?
        .keypair()
        .peer_id()
        .to_string();
    assert_eq!(account, derived);

    // At rest there is only the sealed form: a backup-format record, no phrase words in it.
    let stored = stored_wallet(&browser).await?.expect("a stored wallet");
    let sealed = SealedWallet::from_backup(&stored)?;
    assert_eq!(sealed.account_id(), account);
    // Field names such as "salt" or "account" are BIP-39 words too, so look at values only.
    let mut values = Vec::new();
    string_values(&serde_json::from_str(&stored)?, &mut values);
    assert!(
        values.len() >= 6,
        "the stored record has its fields: {stored}"
    );
    for value in &values {
        assert!(
            !value.contains(&phrase) && !phrase.split(' ').any(|word| value == word),
            "the stored wallet leaks the phrase in {value:?}"
        );
    }

    // Reload: locked, same account.
    browser.goto(&relay.page("/wallet")).await?;
    wait_state(&browser, "locked").await?;
    browser.screenshot("wallet-locked").await?;
    assert_eq!(
        browser.text("wallet-account").await.as_deref(),
        Some(account.as_str())
    );

    // A wrong password is refused, and says so where it was typed.
    browser
        .set_value("wallet-unlock-password", "not the password")
        .await?;
    browser.click("wallet-unlock").await?;
    let error = browser
        .wait_for("wallet-unlock-error", "an error", WAIT, |t| !t.is_empty())
        .await?;
    browser.screenshot("wallet-wrong-password").await?;
    assert_eq!(error, "wrong password");
    assert_eq!(
        browser.text("wallet-state").await.as_deref(),
        Some("locked")
    );

    // The right one unlocks, and the page says how long the key derivation took. The key is
    // derived in a worker: a timer on the page's thread keeps firing meanwhile (derived on the
    // page's thread, its longest gap would be about the whole derivation).
    browser
        .set_value("wallet-unlock-password", PASSWORD)
        .await?;
    browser
        .eval(
            "window.ticks = [performance.now()]; \
             window.ticker = setInterval(() => window.ticks.push(performance.now()), 10);",
        )
        .await?;
    browser.click("wallet-unlock").await?;
    wait_state(&browser, "unlocked").await?;
    browser.screenshot("wallet-unlocked").await?;
    let longest_gap = browser
        .eval(
            "clearInterval(window.ticker); const t = window.ticks; let gap = 0; \
             for (let i = 1; i < t.length; i++) gap = Math.max(gap, t[i] - t[i - 1]); \
             return gap;",
        )
        .await?
        .as_f64()
        .unwrap_or(f64::MAX);
    let unlock_ms: f64 = browser
        .attr("wallet-unlock-ms", "data-ms")
        .await
        .and_then(|v| v.parse().ok())
        .expect("the unlock time is shown");
    eprintln!(
        "unlock took {unlock_ms} ms in Chromium; the page's longest pause meanwhile: \
         {longest_gap:.0} ms"
    );
    assert!(unlock_ms > 0.0);
    assert!(
        longest_gap < unlock_ms / 2.0,
        "the page's thread paused {longest_gap:.0} ms during a {unlock_ms:.0} ms unlock"
    );

    // The phrase can be shown again while unlocked; locking forgets the key.
    browser.click("wallet-show-phrase").await?;
    assert_eq!(
        browser
            .attr("wallet-phrase", "data-phrase")
            .await
            .as_deref(),
        Some(phrase.as_str())
    );
    browser.click("wallet-lock").await?;
    wait_state(&browser, "locked").await?;

    let errors = browser.eval("return window.aqueductErrors;").await?;
    assert_eq!(errors, serde_json::json!([]), "no page errors");
    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_account_is_restored_from_its_phrase_in_a_fresh_profile() -> anyhow::Result<()> {
    let (relay, data_dir) = start_relay("e2e-restore")?;
    let first = Browser::start().await?;
    let (phrase, account) = first.create_wallet(&relay.url(), PASSWORD).await?;
    first.close().await;

    let browser = Browser::start().await?;
    browser.goto(&relay.page("/wallet")).await?;
    wait_state(&browser, "none").await?;
    browser
        .set_value("wallet-restore-password", PASSWORD)
        .await?;
    browser
        .set_value("wallet-restore-password-confirm", PASSWORD)
        .await?;

    // Bad phrases: each gets its own message.
    let words: Vec<&str> = phrase.split(' ').collect();
    let mut unknown = words.clone();
    unknown[4] = "aqueduct";
    // Two words swapped: all known, but the checksum fails. One swap in 256 happens to
    // keep a valid checksum (and swapping a repeated word changes nothing), so the swap
    // used is one the phrase checker itself refuses for its checksum.
    let swapped = (1..words.len())
        .rev()
        .map(|j| {
            let mut swapped = words.clone();
            swapped.swap(0, j);
            swapped.join(" ")
        })
        .find(|p| matches!(Entropy::from_phrase(p), Err(WalletError::PhraseChecksum)))
        .context("no swap of two words breaks the checksum")?;
    let cases = [
        (words[..12].join(" ") + " " + words[0], "has 13"),
        (unknown.join(" "), "word 5 (\"aqueduct\")"),
        (swapped, "checksum"),
    ];
    for (bad, expected) in cases {
        browser.set_value("wallet-restore-phrase", &bad).await?;
        browser.click("wallet-restore").await?;
        let error = browser
            .wait_for("wallet-restore-error", expected, WAIT, |t| {
                t.contains(expected)
            })
            .await;
        browser.screenshot("wallet-restore-refused").await?;
        error?;
    }

    // The real phrase, typed sloppily, gives the same account.
    let sloppy = format!("  {}\n", phrase.to_uppercase().replace(' ', "  "));
    browser.set_value("wallet-restore-phrase", &sloppy).await?;
    browser.click("wallet-restore").await?;
    wait_state(&browser, "unlocked").await?;
    browser.screenshot("wallet-restored").await?;
    assert_eq!(browser.text("wallet-account").await, Some(account));

    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_module_is_refused_before_it_is_sent() -> anyhow::Result<()> {
    let (relay, data_dir) = start_relay("e2e-upload")?;
    let browser = Browser::start().await?;
    browser.create_wallet(&relay.url(), PASSWORD).await?;
    browser.nav("jobs").await?;
    browser.wait_connected(WAIT).await?;
    browser.set_value("job-example", "upload").await?;

    let files = temp_dir("e2e-upload-files");
    let cases = [
        (
            "imports.wasm",
            wat::parse_str(
                r#"(module (import "env" "now" (func)) (memory (export "memory") 1)
                   (func (export "alloc") (param i32) (result i32) i32.const 0)
                   (func (export "run") (param i32 i32) (result i64) i64.const 0))"#,
            )?,
            "import",
        ),
        (
            "notes.wasm",
            b"these are not the bytes of a module".to_vec(),
            "notes.wasm cannot run here",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = files.join(name);
        std::fs::write(&path, bytes)?;
        browser.choose_file("job-file", &path).await?;
        let error = browser
            .wait_for("job-module-error", expected, WAIT, |t| t.contains(expected))
            .await;
        browser
            .screenshot(&format!("job-upload-refused-{name}"))
            .await?;
        error?;
        let disabled = browser.attr("job-submit", "disabled").await;
        assert!(
            disabled.is_some(),
            "submit stays disabled for a refused module"
        );
    }

    // A valid module from a file goes through to a verified result.
    let path = files.join("primes.wasm");
    std::fs::write(&path, aqueduct_tests::job_module("primes")?)?;
    browser.choose_file("job-file", &path).await?;
    browser
        .wait_for("job-module-info", "accepted", WAIT, |t| {
            t.contains("valid one-shot job")
        })
        .await?;
    browser.set_value("job-input", "50000").await?;
    browser.click("job-submit").await?;
    let status = browser.wait_job_end(Duration::from_secs(120)).await;
    browser.screenshot("job-upload-verified").await?;
    assert_eq!(status?, "verified");
    assert_eq!(
        browser.text("job-output").await.as_deref(),
        Some("5133 primes below 50000 (largest 49999)")
    );

    // The fuel limit is shown in readable units beside the raw number.
    assert_eq!(
        browser.text("job-fuel-readable").await.as_deref(),
        Some("1,000,000,000 = 1 G fuel")
    );

    // Every page at a small phone's width (360 px), after a job has run and with history
    // present: nothing scrolls sideways (a table may scroll inside its own box). Screenshots
    // are kept for a person to look at.
    browser.client.set_window_size(360, 780).await?;
    let mut too_wide = Vec::new();
    for page in ["jobs", "wallet", "market", "dao", "relays", "network"] {
        browser.nav(page).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        browser.screenshot(&format!("phone-{page}")).await?;
        let measured = browser
            .eval(
                r#"
                // Folded sections count too: open them all.
                document.querySelectorAll("details").forEach(d => { d.open = true; });
                const width = window.innerWidth;
                const page = document.documentElement.scrollWidth;
                // What sticks out, outside any box that scrolls on its own.
                const culprits = [];
                for (const el of document.querySelectorAll("body *")) {
                    const r = el.getBoundingClientRect();
                    if (r.right <= width + 1) continue;
                    let inner = false;
                    for (let p = el.parentElement; p; p = p.parentElement) {
                        const o = getComputedStyle(p).overflowX;
                        if (o === "auto" || o === "scroll" || o === "hidden") { inner = true; break; }
                    }
                    if (!inner) culprits.push(`${el.tagName.toLowerCase()}${el.dataset.testid ? "[" + el.dataset.testid + "]" : ""}${el.className ? "." + el.className : ""} → ${Math.round(r.right)}`);
                }
                return { width, page, culprits: culprits.slice(0, 8) };
                "#,
            )
            .await?;
        let width = measured["width"].as_f64().unwrap_or(0.0);
        let page_width = measured["page"].as_f64().unwrap_or(f64::MAX);
        if page_width > width + 1.0 {
            too_wide.push(format!(
                "{page}: {page_width} px wide in a {width} px window; {}",
                measured["culprits"]
            ));
        }
    }
    assert!(
        too_wide.is_empty(),
        "pages scroll sideways at 360 px:\n{}",
        too_wide.join("\n")
    );

    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_dir_all(&files);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_file_imports_a_damaged_one_is_refused_and_delete_forgets() -> anyhow::Result<()> {
    use client_core::wallet::{KdfParams, SealRandomness};
    let (relay, data_dir) = start_relay("e2e-import")?;
    let browser = Browser::start().await?;
    browser.goto(&relay.page("/wallet")).await?;
    wait_state(&browser, "none").await?;

    // A backup written by the core (cheap Argon2 parameters keep the test quick; the file
    // carries its parameters, so the page uses these).
    let kdf = KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    let randomness = SealRandomness {
        salt: [1; 16],
        nonce: [2; 24],
    };
    let sealed = SealedWallet::seal(&Entropy::new([7; 32]), PASSWORD, kdf, randomness)?;
    let text = sealed.to_backup();
    let ciphertext = hex::encode(&sealed.ciphertext);
    let mut flipped = ciphertext.clone().into_bytes();
    flipped[0] = if flipped[0] == b'a' { b'b' } else { b'a' };
    let damaged = text.replace(&ciphertext, std::str::from_utf8(&flipped)?);
    let files = temp_dir("e2e-import-files");
    let (good_path, damaged_path) = (files.join("backup.json"), files.join("damaged.json"));
    std::fs::write(&good_path, &text)?;
    std::fs::write(&damaged_path, &damaged)?;

    for (path, password, expected) in [
        (&damaged_path, PASSWORD, "corrupted"),
        (&good_path, "not the password", "wrong password"),
    ] {
        browser.choose_file("wallet-import-file", path).await?;
        browser
            .set_value("wallet-import-password", password)
            .await?;
        browser.click("wallet-import").await?;
        let error = browser
            .wait_for("wallet-import-error", expected, WAIT, |t| {
                t.contains(expected)
            })
            .await;
        browser.screenshot("wallet-import-refused").await?;
        error?;
    }
    browser
        .choose_file("wallet-import-file", &good_path)
        .await?;
    browser
        .set_value("wallet-import-password", PASSWORD)
        .await?;
    browser.click("wallet-import").await?;
    wait_state(&browser, "unlocked").await?;
    browser.screenshot("wallet-imported").await?;
    assert_eq!(
        browser.text("wallet-account").await,
        Some(sealed.account_id())
    );

    // Export offers the file; delete asks first, then forgets the wallet in this browser.
    browser.click("wallet-export").await?;
    let note = browser
        .wait_for("wallet-export-note", "a note", WAIT, |t| !t.is_empty())
        .await?;
    assert!(note.starts_with("Saved aqueduct-wallet-"), "{note}");
    browser.click("wallet-delete").await?;
    browser.screenshot("wallet-delete-confirm").await?;
    browser.click("wallet-delete-confirm").await?;
    wait_state(&browser, "none").await?;
    assert_eq!(stored_wallet(&browser).await?, None);

    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_dir_all(&files);
    Ok(())
}

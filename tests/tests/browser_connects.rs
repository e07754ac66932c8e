//! A real relay process, a real headless Chromium: the page connects over WebRTC, shows the
//! relay's peer id and a live round-trip time, and after the relay is killed and restarted on
//! the same data directory it reconnects by itself to the same multiaddr.

use aqueduct_tests::{Browser, Relay, RelayPorts, relay_bin, temp_dir, www_dir};
use std::time::Duration;

fn is_number(text: &str) -> bool {
    text.parse::<f64>().is_ok_and(|v| v >= 0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn page_connects_then_reconnects_after_relay_restart() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-restart");
    let mut relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let ports = relay.ports.clone();
    let info = relay.info()?;

    let browser = Browser::start().await?;
    browser.goto(&relay.url()).await?;
    let connected = browser.wait_connected(Duration::from_secs(30)).await;
    browser.screenshot("network-connected").await?;
    connected?;

    assert_eq!(
        browser.text("relay-peer-id").await.as_deref(),
        Some(info.peer_id.as_str())
    );
    let addr = browser.text("relay-addr").await.unwrap_or_default();
    assert_eq!(
        Some(&addr),
        info.webrtc.first(),
        "the page dialed the announced address"
    );
    // The page's HTML started this connection while the wasm loaded, and the first dial took it
    // over (if the transport's calls change, this is where it shows).
    assert_eq!(
        browser
            .eval("return window.aqueductEarlyConnection.state;")
            .await?,
        serde_json::json!("taken over by the first dial")
    );
    browser
        .wait_for(
            "rtt-ms",
            "a round-trip time",
            Duration::from_secs(10),
            is_number,
        )
        .await?;
    assert_eq!(
        browser.text("network-id").await.as_deref(),
        Some("aqueduct-dev")
    );

    // Crash the relay: the page must notice and say so.
    relay.kill();
    browser
        .wait_for(
            "connection-state",
            "not connected",
            Duration::from_secs(20),
            |t| t != "connected",
        )
        .await?;
    browser.screenshot("network-relay-gone").await?;

    // Same data directory, same ports: same identity, same certificate, same address.
    let relay = Relay::start(&bin, &www, &data_dir, &ports)?;
    let info_after = relay.info()?;
    assert_eq!(info_after.peer_id, info.peer_id);
    assert_eq!(
        info_after.webrtc, info.webrtc,
        "the /certhash/ multiaddr survives a restart"
    );

    let reconnected = browser.wait_connected(Duration::from_secs(40)).await;
    browser.screenshot("network-reconnected").await?;
    reconnected?;
    assert_eq!(browser.text("relay-addr").await, Some(addr));
    assert_eq!(
        browser.text("relay-peer-id").await.as_deref(),
        Some(info.peer_id.as_str())
    );

    // Probes flow again on the new connection.
    let before = browser.text("rtt-count").await.unwrap_or_default();
    browser
        .wait_for("rtt-count", "more probes", Duration::from_secs(10), |t| {
            t != before
        })
        .await?;

    // Nothing went wrong on the page along the way (errors are collected by index.html).
    let errors = browser.eval("return window.aqueductErrors;").await?;
    assert_eq!(errors, serde_json::json!([]), "errors on the page");

    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_stops_cleanly_on_sigterm_and_keeps_its_identity() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-sigterm");
    let mut relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let ports = relay.ports.clone();
    let info = relay.info()?;
    assert!(
        relay.terminate(Duration::from_secs(10)),
        "clean exit:\n{}",
        relay.output()
    );
    assert!(relay.output().contains("Stopped."), "{}", relay.output());

    let out = std::process::Command::new(&bin)
        .args(["id", "--webrtc"])
        .arg(ports.webrtc.to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .output()?;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&info.peer_id), "{printed}");
    assert!(printed.contains(&info.webrtc[0]), "{printed}");
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// The app waits for its first connection before it mounts (see web-ui's `main`), but not
/// for ever: when the relay's WebRTC address does not answer, the page still mounts, says it
/// is connecting, and the static shell it showed meanwhile is gone.
#[tokio::test(flavor = "multi_thread")]
async fn page_mounts_while_the_relay_does_not_answer() -> anyhow::Result<()> {
    use axum::{Json, Router, routing::get};
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-silent");
    // A real relay's info (a valid certhash and peer id), then the relay is stopped: its
    // address answers nothing, while a plain file server serves the app and that info.
    let info = {
        let mut relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
        let info = relay.info()?;
        relay.kill();
        info
    };
    let app = Router::new()
        .route(
            "/api/info",
            get(move || {
                let info = info.clone();
                async move { Json(info) }
            }),
        )
        .fallback_service(tower_http::services::ServeDir::new(&www));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let browser = Browser::start().await?;
    browser.goto(&url).await?;
    let state = browser
        .wait_for(
            "connection-state",
            "the mounted app",
            Duration::from_secs(10),
            |t| !t.is_empty(),
        )
        .await;
    browser.screenshot("network-relay-silent").await?;
    let state = state?;
    assert!(
        matches!(state.as_str(), "connecting" | "disconnected"),
        "a relay that does not answer is not {state:?}"
    );
    let shell = browser
        .eval("return document.getElementById('shell') !== null;")
        .await?;
    assert_eq!(
        shell,
        serde_json::json!(false),
        "the static shell is removed"
    );
    browser.close().await;
    server.abort();
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Waits until the relay counts `want` connected peers; returns how long that took.
async fn peers_become(relay: &Relay, want: f64, within: Duration) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    loop {
        let peers = relay.metric("aqueduct_connected_peers")?;
        if peers == want {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < within,
            "after {within:?} the relay still counts {peers} connected peers, expected {want}:\n{}",
            relay.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_that_leaves_is_noticed_within_seconds() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("e2e-departed");
    let relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;

    // A page that navigates away (tab closed, another site opened) lets its connection go.
    let browser = Browser::start().await?;
    browser.goto(&relay.url()).await?;
    browser.wait_connected(Duration::from_secs(30)).await?;
    peers_become(&relay, 1.0, Duration::from_secs(10)).await?;
    browser.goto("about:blank").await?;
    let left = peers_become(&relay, 0.0, Duration::from_secs(20)).await?;
    eprintln!("a page that navigated away: its connection closed after {left:?}");

    // A browser that vanishes without a word (killed, its network gone) stops probing; the
    // relay lets it go after the status heartbeat lapses, long before any idle timeout.
    browser.goto(&relay.url()).await?;
    browser.wait_connected(Duration::from_secs(30)).await?;
    peers_become(&relay, 1.0, Duration::from_secs(10)).await?;
    drop(browser);
    let vanished = peers_become(&relay, 0.0, Duration::from_secs(30)).await?;
    eprintln!("a browser killed: its connection closed after {vanished:?}");
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// When each resource the page fetched was asked for, by name, and when a performance mark
/// was set (milliseconds since the page started loading).
async fn fetched(browser: &Browser) -> anyhow::Result<Vec<(String, f64)>> {
    let entries = browser
        .eval(
            "return performance.getEntriesByType('resource').map(e => [e.name, e.startTime]) \
             .concat(performance.getEntriesByType('mark').map(e => ['mark:' + e.name, e.startTime]));",
        )
        .await?;
    Ok(serde_json::from_value(entries)?)
}

/// Every page but the network's is cut out of the page's bundle: a first visit fetches their
/// modules only once the first page is up (and then all of them, so that opening one later
/// still works if the relay that served the page has gone).
#[tokio::test(flavor = "multi_thread")]
async fn other_pages_are_fetched_after_the_first_is_up() -> anyhow::Result<()> {
    const PAGES: [&str; 5] = ["relays", "wallet", "jobs", "market", "dao"];
    let (bin, www) = (relay_bin()?, www_dir()?);
    let relay = Relay::start(&bin, &www, &temp_dir("e2e-lazy"), &RelayPorts::any())?;
    let browser = Browser::start().await?;
    browser.goto(&relay.url()).await?;
    browser.wait_connected(Duration::from_secs(30)).await?;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let entries = fetched(&browser).await?;
        if entries
            .iter()
            .any(|(n, _)| n == "mark:aqueduct:pages-preloaded")
        {
            break entries;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the other pages were not preloaded: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at = |suffix: &str| {
        entries
            .iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, t)| *t)
    };
    let bundle = at("/aqueduct_bg.wasm").expect("the page's bundle was fetched");
    let mounted = at("mark:aqueduct:mounted").expect("the app mounted");
    assert!(bundle < mounted);
    for page in PAGES {
        let module = at(&format!("/split_{page}_page.wasm"))
            .unwrap_or_else(|| panic!("the {page} page's module was fetched: {entries:?}"));
        assert!(
            module > mounted,
            "the {page} page's module was asked for at {module} ms, before the first page was up \
             at {mounted} ms"
        );
    }

    // A preloaded page opens (its module is not fetched again).
    browser.nav("dao").await?;
    browser.click("dao-refresh").await?;
    let again = fetched(&browser).await?;
    assert_eq!(
        again
            .iter()
            .filter(|(n, _)| n.ends_with("/split_dao_page.wasm"))
            .count(),
        1
    );
    Ok(())
}

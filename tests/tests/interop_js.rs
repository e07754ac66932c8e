//! An independent libp2p implementation against a real relay: js-libp2p (npm packages pinned in
//! `tests/interop/package-lock.json`) over TCP from Node.js and over webrtc-direct from headless
//! Chromium. Each dials the relay, opens the status protocol right after the handshake,
//! exchanges probes, closes the stream and opens another on the same connection. The relay must
//! answer every first stream (the client reopens one its WebRTC stack swallowed, at most a few
//! times), a close must finish without waiting out js-libp2p's 10 s FIN_ACK timeout, and a
//! browser that leaves must be noticed within a few seconds.

use aqueduct_tests::{
    Browser, Relay, RelayPorts, interop_dir, relay_bin, temp_dir, workspace_root,
};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// js-libp2p gives up waiting for a FIN_ACK after 10 s; a clean close takes milliseconds, so
/// anything near this bound means the close waited for a timeout instead of an answer.
const CLOSE_BOUND_MS: f64 = 5_000.0;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamReport {
    attempts: u32,
    answered: u32,
    network_id: String,
    version: String,
    max_rtt_ms: f64,
    close_ms: f64,
    close_error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionReport {
    remote_peer: String,
    streams: Vec<StreamReport>,
}

#[derive(Debug, Deserialize)]
struct Report {
    ok: bool,
    error: Option<String>,
    #[serde(default)]
    connections: Vec<ConnectionReport>,
}

/// Checks a session report; returns how many first streams had to be opened again.
fn check(report: &Report, relay: &Relay, connections: usize, probes: u32) -> anyhow::Result<u32> {
    anyhow::ensure!(
        report.ok,
        "the js-libp2p session failed: {}\nrelay log:\n{}",
        report.error.as_deref().unwrap_or("(no error given)"),
        relay.output()
    );
    let info = relay.info()?;
    assert_eq!(report.connections.len(), connections);
    let mut reopened = 0;
    for (c, conn) in report.connections.iter().enumerate() {
        assert_eq!(
            conn.remote_peer, info.peer_id,
            "connection {c}: the relay's peer id"
        );
        assert_eq!(conn.streams.len(), 2, "connection {c}: two status streams");
        for (s, stream) in conn.streams.iter().enumerate() {
            assert_eq!(
                stream.answered, probes,
                "connection {c} stream {s}: every probe answered"
            );
            assert_eq!(stream.network_id, info.network_id);
            assert_eq!(stream.version, info.version);
            assert_eq!(
                stream.close_error, None,
                "connection {c} stream {s}: the close finished without an error"
            );
            assert!(
                stream.close_ms < CLOSE_BOUND_MS,
                "connection {c} stream {s}: the close took {:.0} ms (a FIN_ACK timeout?)",
                stream.close_ms
            );
            if s > 0 {
                assert_eq!(
                    stream.attempts, 1,
                    "a later stream is answered the first time"
                );
            }
        }
        reopened += conn.streams[0].attempts - 1;
    }
    Ok(reopened)
}

fn summary(report: &Report) -> String {
    let streams: Vec<&StreamReport> = report
        .connections
        .iter()
        .flat_map(|c| c.streams.iter())
        .collect();
    let max = |f: fn(&StreamReport) -> f64| streams.iter().map(|s| f(s)).fold(0.0, f64::max);
    format!(
        "{} connections, {} streams; slowest close {:.1} ms, slowest probe {:.1} ms",
        report.connections.len(),
        streams.len(),
        max(|s| s.close_ms),
        max(|s| s.max_rtt_ms)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn js_libp2p_over_tcp_from_nodejs() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, interop_dir()?);
    let relay = Relay::start(&bin, &www, &temp_dir("interop-tcp"), &RelayPorts::any())?;
    let (connections, probes) = (3, 5);
    let script = workspace_root().join("tests/interop/node-tcp.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(relay.relay_addr()?)
        .arg(connections.to_string())
        .arg(probes.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .map_err(|_| anyhow::anyhow!("the Node.js client did not finish within 120 s"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no report from the Node.js client:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let report: Report = serde_json::from_str(line)?;
    let reopened = check(&report, &relay, connections, probes)?;
    assert_eq!(
        reopened, 0,
        "over TCP every first stream is answered at once"
    );
    eprintln!("js-libp2p over TCP: {}", summary(&report));
    Ok(())
}

/// Polls the interop page's `window.interop.result` until its `done` is true.
async fn result(browser: &Browser, within: Duration) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let value = browser.eval("return window.interop.result;").await?;
        if value["done"] == serde_json::json!(true) {
            return Ok(value);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the interop page did not finish within {within:?}: {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn js_libp2p_over_webrtc_direct_from_chromium() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, interop_dir()?);
    // The relay serves the interop page itself: same origin, nothing else to start.
    let relay = Relay::start(&bin, &www, &temp_dir("interop-webrtc"), &RelayPorts::any())?;
    let info = relay.info()?;
    let addr = info
        .webrtc
        .first()
        .ok_or_else(|| anyhow::anyhow!("the relay announced no webrtc-direct address"))?;
    let browser = Browser::start().await?;
    browser.goto(&relay.url()).await?;

    // Fresh connections, each opening its first stream the moment the handshake is done: the
    // moment the relay's WebRTC stack can swallow it.
    let (connections, probes) = (10, 5);
    let call = format!(
        "window.interop.run({}, {connections}, {probes});",
        serde_json::to_string(addr)?
    );
    browser.eval(&call).await?;
    let value = result(&browser, Duration::from_secs(150)).await?;
    let report: Report = serde_json::from_value(value)?;
    let reopened = check(&report, &relay, connections, probes)?;
    eprintln!(
        "js-libp2p over webrtc-direct: {}; {reopened} of {connections} first streams reopened",
        summary(&report)
    );

    // A browser that probes once, goes quiet with its stream open, and then leaves the page:
    // no close of any kind reaches the relay.
    let call = format!("window.interop.hold({});", serde_json::to_string(addr)?);
    browser.eval(&call).await?;
    let value = result(&browser, Duration::from_secs(30)).await?;
    anyhow::ensure!(
        value["ok"] == serde_json::json!(true),
        "hold failed: {value}"
    );
    let peer = value["peerId"].as_str().unwrap_or_default().to_owned();
    let left = Instant::now();
    browser.goto("about:blank").await?;
    loop {
        let log = relay.output();
        if log
            .lines()
            .any(|l| l.contains(&peer) && l.contains("the peer has gone"))
        {
            break;
        }
        anyhow::ensure!(
            left.elapsed() < Duration::from_secs(30),
            "the relay did not notice the departed browser {peer} within 30 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "departed js-libp2p browser noticed after {:.1} s",
        left.elapsed().as_secs_f64()
    );
    browser.close().await;
    Ok(())
}

//! Four validators on this machine (release relays, consensus on loopback): how long a
//! transaction takes from submission to a final block, how many transactions per second the
//! network sustains with signatures checked, the block time, and how long the network takes
//! to make its next block after one validator is killed.
//!
//! `cargo xtask bench` runs it; by hand: `cargo run --release -p aqueduct-tests --bin
//! consensus-bench -- [--clients 64] [--in-flight 8] [--seconds 20]` with
//! `AQUEDUCT_RELAY_BIN` pointing at a release relay and `AQUEDUCT_WWW` at a built bundle.

use aqueduct_tests::devnet::{Devnet, blocks, height, wait_height};
use aqueduct_tests::{ledger_call, tcp_client};
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::tx::tx_id;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{Tx, TxKind};
use client_core::signed::Signed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NET: &str = "aqueduct-bench";

struct Options {
    clients: usize,
    in_flight: usize,
    seconds: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        clients: 64,
        in_flight: 8,
        seconds: 20,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair
            .get(1)
            .ok_or_else(|| anyhow::anyhow!("{} needs a value", pair[0]))?;
        match pair[0].as_str() {
            "--clients" => options.clients = value.parse()?,
            "--in-flight" => options.in_flight = value.parse()?,
            "--seconds" => options.seconds = value.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Submits one signed transaction and waits for its block; returns the latency.
async fn submit(
    control: &mut libp2p_stream::Control,
    relay: libp2p::PeerId,
    tx: Signed<Tx>,
) -> anyhow::Result<Duration> {
    let id = tx_id(&tx);
    let started = Instant::now();
    let answers = ledger_call(control, relay, &LedgerRequest::Submit { tx: Box::new(tx) }).await?;
    match answers.last() {
        Some(LedgerResponse::Included { tx, .. }) if *tx == id => Ok(started.elapsed()),
        other => anyhow::bail!("not included: {other:?}"),
    }
}

/// Sends `tx` and waits until the relay has it in its mempool; the returned future ends when
/// a block includes it, with the time since sending.
async fn hand_over(
    control: &libp2p_stream::Control,
    relay: libp2p::PeerId,
    tx: Signed<Tx>,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<Duration>> + use<>> {
    use client_core::ledger::wire::{LEDGER_PROTOCOL, MAX_LEDGER_RESPONSE};
    let id = tx_id(&tx);
    let started = Instant::now();
    let mut control = control.clone();
    let mut stream = control
        .open_stream(relay, libp2p::StreamProtocol::new(LEDGER_PROTOCOL))
        .await?;
    let request = LedgerRequest::Submit { tx: Box::new(tx) };
    client_core::wire::write_frame(&mut stream, &client_core::encoding::encode(&request)).await?;
    let first = client_core::wire::read_frame(&mut stream, MAX_LEDGER_RESPONSE)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the relay closed the stream"))?;
    match client_core::encoding::decode(&first, MAX_LEDGER_RESPONSE)? {
        LedgerResponse::Submitted { .. } => {}
        other => anyhow::bail!("not admitted: {other:?}"),
    }
    Ok(async move {
        while let Some(frame) =
            client_core::wire::read_frame(&mut stream, MAX_LEDGER_RESPONSE).await?
        {
            if let LedgerResponse::Included { tx, .. } =
                client_core::encoding::decode(&frame, MAX_LEDGER_RESPONSE)?
                && tx == id
            {
                return Ok(started.elapsed());
            }
        }
        anyhow::bail!("the relay closed the stream before the transaction was included")
    })
}

fn signed(who: &Keypair, nonce: u64, kind: TxKind) -> Signed<Tx> {
    Signed::sign(
        who,
        Tx {
            network_id: NET.into(),
            nonce,
            fee: 10_000,
            kind,
        },
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut net = Devnet::start(4, NET)?;
    wait_height(&net, 0, 2).await?;

    // Every client draws from the faucet first (one transaction, waited for).
    let mut clients = Vec::new();
    for c in 0..options.clients {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(c as u64 + 1).to_le_bytes());
        let who = Keypair::from_seed(&seed);
        let (control, relay) = tcp_client(net.relay(c % 4)?).await?;
        clients.push((who, control, relay));
    }
    let mut funding = Vec::new();
    for (who, control, relay) in &clients {
        let (who, mut control, relay) = (who.clone(), control.clone(), *relay);
        funding.push(tokio::spawn(async move {
            submit(&mut control, relay, signed(&who, 0, TxKind::Faucet)).await
        }));
    }
    for f in funding {
        f.await??;
    }
    eprintln!("{} clients funded", options.clients);

    // The load: every client keeps `in_flight` transfers waiting for their block at once,
    // for the duration. Each is handed over in nonce order (the mempool takes no gaps): the
    // next is sent once the relay has said the previous is in its mempool.
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let start_height = height(net.relay(0)?).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let mut tasks = Vec::new();
    for (who, control, relay) in clients {
        let latencies = Arc::clone(&latencies);
        let in_flight = options.in_flight;
        tasks.push(tokio::spawn(async move {
            let lanes = Arc::new(tokio::sync::Semaphore::new(in_flight));
            let mut waiting = Vec::new();
            let mut nonce = 1u64;
            while Instant::now() < deadline {
                let Ok(permit) = Arc::clone(&lanes).acquire_owned().await else {
                    break;
                };
                let tx = signed(
                    &who,
                    nonce,
                    TxKind::Transfer {
                        to: PublicKey([9; 32]),
                        amount: 1,
                    },
                );
                match hand_over(&control, relay, tx).await {
                    Ok(included) => {
                        let latencies = Arc::clone(&latencies);
                        waiting.push(tokio::spawn(async move {
                            if let Ok(latency) = included.await
                                && let Ok(mut all) = latencies.lock()
                            {
                                all.push(latency.as_secs_f64() * 1000.0);
                            }
                            drop(permit);
                        }));
                    }
                    Err(e) => {
                        eprintln!("a transaction failed: {e:#}");
                        break;
                    }
                }
                nonce += 1;
            }
            for w in waiting {
                let _ = w.await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let end_height = height(net.relay(0)?).await?;
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort_by(f64::total_cmp);

    // Block time from the headers of the load window.
    let chain = blocks(net.relay(0)?).await?;
    let window: Vec<_> = chain
        .iter()
        .filter(|b| b.header.height > start_height && b.header.height <= end_height)
        .collect();
    let mut gaps: Vec<f64> = window
        .windows(2)
        .map(|w| w[1].header.time_ms.saturating_sub(w[0].header.time_ms) as f64)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let txs_in_window: usize = window.iter().map(|b| b.txs.len()).sum();

    // One validator killed: how long until the next block.
    let before = height(net.relay(0)?).await?;
    net.kill(3);
    let killed_at = Instant::now();
    let mut next_block_ms = f64::NAN;
    while killed_at.elapsed() < Duration::from_secs(60) {
        if height(net.relay(0)?).await? > before {
            next_block_ms = killed_at.elapsed().as_secs_f64() * 1000.0;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    println!("consensus: 4 validators on loopback (release relays)");
    println!(
        "  load: {} clients x {} in flight for {:.1} s",
        options.clients, options.in_flight, elapsed
    );
    println!(
        "  submit -> final: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} transactions)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len()
    );
    println!(
        "  sustained: {:.0} tx/s acknowledged, {:.0} tx/s in blocks ({} in {} blocks)",
        latencies.len() as f64 / elapsed,
        txs_in_window as f64 / elapsed,
        txs_in_window,
        window.len()
    );
    println!(
        "  block time: median {:.0} ms, p90 {:.0} ms",
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.9)
    );
    println!("  one validator killed: next block after {next_block_ms:.0} ms");
    drop(net.relays);
    let _ = std::fs::remove_dir_all(&net.root);
    Ok(())
}

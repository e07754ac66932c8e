//! Relay job throughput (`cargo xtask bench`): N native clients, each with its own key and its
//! own libp2p connection on loopback (webrtc-direct or TCP), submit small jobs back to back for
//! a fixed time, each job on a new stream or all on one stream per client. Reports jobs per
//! second and the latency of each job (submit → signed result), written to
//! `target/bench/jobs-throughput-<transport>-<streams>.json`.

use anyhow::Context;
use aqueduct_tests::{
    Relay, RelayPorts, artifacts_dir, job_module, relay_bin, run_job, run_job_on, temp_dir,
    webrtc_client_retrying, www_dir,
};
use client_core::identity::Keypair;
use client_core::job::JOB_PROTOCOL;
use client_core::stats::percentile;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use std::time::{Duration, Instant};

const INPUT: &[u8] = b"20000";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut clients = 20usize;
    let mut seconds = 10u64;
    let mut transport = String::from("webrtc");
    // `per-job`: a new stream (a new WebRTC data channel) for every job, as pages did before;
    // `one`: each client keeps one job stream and sends job after job on it.
    let mut streams = String::from("one");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--clients" => clients = value.parse()?,
            "--seconds" => seconds = value.parse()?,
            "--transport" => transport = value.to_string(),
            "--streams" => streams = value.to_string(),
            other => anyhow::bail!(
                "unknown flag {other}; expected --clients N --seconds N --transport webrtc|tcp \
                 --streams one|per-job"
            ),
        }
    }
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("throughput");
    let relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let info = relay.info()?;
    let relay_id: PeerId = info.peer_id.parse()?;
    let addr: Multiaddr = info
        .webrtc
        .first()
        .context("the relay announced no webrtc address")?
        .parse()?;
    let module = job_module("primes")?;

    // Connect everyone first, and upload the module once. `--transport tcp` uses the relay's
    // TCP listener (Noise, Yamux) instead: the native WebRTC client's dial times out on some
    // machines, and the executor behind both is the same.
    let mut controls = Vec::new();
    for _ in 0..clients {
        controls.push(match transport.as_str() {
            "tcp" => aqueduct_tests::tcp_client(&relay).await?.0,
            _ => webrtc_client_retrying(&addr).await?,
        });
    }
    let warm_key = Keypair::from_seed(&[200; 32]);
    run_job(&mut controls[0], relay_id, &warm_key, 1, &module, INPUT).await?;
    eprintln!("{clients} clients connected over {transport}; running for {seconds} s");

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut control) in controls.into_iter().enumerate() {
        let module = module.clone();
        let one_stream = streams == "one";
        tasks.push(tokio::spawn(async move {
            let key = Keypair::from_seed(&[i as u8 + 1; 32]);
            let mut latencies = Vec::new();
            let mut nonce = 0;
            let mut stream = match one_stream {
                true => Some(
                    control
                        .open_stream(relay_id, StreamProtocol::new(JOB_PROTOCOL))
                        .await?,
                ),
                false => None,
            };
            while Instant::now() < deadline {
                nonce += 1;
                latencies.push(match &mut stream {
                    Some(stream) => run_job_on(stream, &key, nonce, &module, INPUT).await?,
                    None => run_job(&mut control, relay_id, &key, nonce, &module, INPUT).await?,
                });
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(latencies) => all.extend(latencies),
            Err(e) => anyhow::bail!("{e:#}\nthe relay printed:\n{}", relay.output()),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);

    let mut ms: Vec<f64> = all.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let results = serde_json::json!({
        "transport": transport,
        "streams": streams,
        "clients": clients,
        "jobs": ms.len(),
        "seconds": elapsed,
        "jobs_per_second": ms.len() as f64 / elapsed,
        "latency_ms": { "p50": percentile(&ms, 0.5), "p99": percentile(&ms, 0.99), "max": ms.last() },
        "job": "primes below 20000 (one-shot), module known to the relay",
    });
    println!("{}", serde_json::to_string_pretty(&results)?);
    let path = artifacts_dir("bench").join(format!("jobs-throughput-{transport}-{streams}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("written to {}", path.display());
    Ok(())
}

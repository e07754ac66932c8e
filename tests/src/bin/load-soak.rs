//! Load and soak (`cargo xtask bench`): many peers, each with its own libp2p identity and its
//! own signing key, use one relay the way pages do for a long time — 200 over TCP and 20 over
//! webrtc-direct by default, for 10 minutes. Each keeps a status stream open and probes it
//! every second, runs a small job every two seconds and reads its own account from the ledger
//! (proven, checked by a light client) every three seconds.
//!
//! Every request must get its answer: a request without one is a lost answer, and the run
//! fails if there is any. Every ten seconds the relay's memory (resident set), open file
//! descriptors and the files in its data directory are sampled, to show they stay flat (the
//! relay runs with a 16 MB results budget, so eviction is part of what is measured).
//! Writes `target/bench/load-soak.json`.

use anyhow::Context;
use aqueduct_tests::{
    Relay, RelayPorts, artifacts_dir, job_module, ledger_genesis, relay_bin, run_job, tcp_client,
    temp_dir, webrtc_client_retrying, www_dir,
};
use client_core::encoding::{decode, encode};
use client_core::identity::Keypair;
use client_core::ledger::light::LightClient;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{Genesis, StateKey};
use client_core::protocol::{MAX_STATUS_FRAME, STATUS_PROTOCOL, StatusRequest, StatusResponse};
use client_core::stats::percentile;
use client_core::wire::{read_frame, write_frame};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The job each peer runs: primes below 2000, one-shot.
const INPUT: &[u8] = b"2000";
const PROBE_EVERY: Duration = Duration::from_secs(1);
const JOB_EVERY: Duration = Duration::from_secs(2);
const READ_EVERY: Duration = Duration::from_secs(3);
/// An answer that has not come within this long is lost.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// What every peer adds to as it goes.
#[derive(Default)]
struct Counts {
    probes: AtomicU64,
    jobs: AtomicU64,
    reads: AtomicU64,
    lost: AtomicU64,
}

#[derive(Default)]
struct Latencies {
    probe: Vec<f64>,
    job: Vec<f64>,
    read: Vec<f64>,
    errors: Vec<String>,
}

struct Peer {
    control: libp2p_stream::Control,
    relay: PeerId,
    key: Keypair,
    genesis: Arc<Genesis>,
    module: Arc<Vec<u8>>,
    counts: Arc<Counts>,
    deadline: Instant,
}

impl Peer {
    async fn run(mut self, offset: Duration) -> Latencies {
        let mut out = Latencies::default();
        // Peers start spread over the first periods, as pages would arrive.
        tokio::time::sleep(offset).await;
        let mut status = match self.open_status().await {
            Ok(stream) => stream,
            Err(e) => {
                self.lost(&mut out, format!("opening the status stream: {e:#}"));
                return out;
            }
        };
        let mut light = LightClient::new(&self.genesis);
        let (mut next_probe, mut next_job, mut next_read) =
            (Instant::now(), Instant::now(), Instant::now());
        let (mut seq, mut nonce) = (0u64, 0u64);
        while Instant::now() < self.deadline {
            let now = Instant::now();
            if now >= next_probe {
                next_probe = now + PROBE_EVERY;
                seq += 1;
                match tokio::time::timeout(ANSWER_WITHIN, probe(&mut status, seq)).await {
                    Ok(Ok(())) => {
                        out.probe.push(ms(now.elapsed()));
                        self.counts.probes.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => self.lost(&mut out, format!("probe {seq}: {e:#}")),
                    Err(_) => self.lost(&mut out, format!("probe {seq}: no answer")),
                }
            }
            if now >= next_job {
                next_job = now + JOB_EVERY;
                nonce += 1;
                let job = run_job(
                    &mut self.control,
                    self.relay,
                    &self.key,
                    nonce,
                    &self.module,
                    INPUT,
                );
                match tokio::time::timeout(ANSWER_WITHIN, job).await {
                    Ok(Ok(latency)) => {
                        out.job.push(ms(latency));
                        self.counts.jobs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => self.lost(&mut out, format!("job {nonce}: {e:#}")),
                    Err(_) => self.lost(&mut out, format!("job {nonce}: no answer")),
                }
            }
            if now >= next_read {
                next_read = now + READ_EVERY;
                let started = Instant::now();
                match tokio::time::timeout(ANSWER_WITHIN, self.read(&mut light)).await {
                    Ok(Ok(())) => {
                        out.read.push(ms(started.elapsed()));
                        self.counts.reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => self.lost(&mut out, format!("read: {e:#}")),
                    Err(_) => self.lost(&mut out, "read: no answer".into()),
                }
            }
            let next = next_probe.min(next_job).min(next_read);
            tokio::time::sleep_until(next.into()).await;
        }
        out
    }

    fn lost(&self, out: &mut Latencies, error: String) {
        self.counts.lost.fetch_add(1, Ordering::Relaxed);
        if out.errors.len() < 5 {
            out.errors.push(error);
        }
    }

    async fn open_status(&mut self) -> anyhow::Result<libp2p::Stream> {
        let open = self
            .control
            .open_stream(self.relay, StreamProtocol::new(STATUS_PROTOCOL));
        Ok(tokio::time::timeout(ANSWER_WITHIN, open).await??)
    }

    /// The peer's own account, proven against a header the light client checks.
    async fn read(&mut self, light: &mut LightClient) -> anyhow::Result<()> {
        let keys = vec![StateKey::Account(self.key.public())];
        let request = LedgerRequest::Read {
            keys: keys.clone(),
            height: None,
        };
        let answers = aqueduct_tests::ledger_call(&mut self.control, self.relay, &request).await?;
        match answers.first() {
            Some(LedgerResponse::Reads(Some(reads))) => {
                light.verify(&keys, reads)?;
                Ok(())
            }
            // Before the dev chain's first block there is nothing to prove against: an answer.
            Some(LedgerResponse::Reads(None)) => Ok(()),
            other => anyhow::bail!("expected proven reads, got {other:?}"),
        }
    }
}

async fn probe(stream: &mut libp2p::Stream, seq: u64) -> anyhow::Result<()> {
    write_frame(stream, &encode(&StatusRequest::Probe { seq })).await?;
    let frame = read_frame(stream, MAX_STATUS_FRAME)
        .await?
        .context("the relay closed the status stream")?;
    match decode::<StatusResponse>(&frame, MAX_STATUS_FRAME)? {
        StatusResponse::Pong { seq: got, .. } if got == seq => Ok(()),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One reading of the relay process and its data directory.
#[derive(serde::Serialize)]
struct Sample {
    at_s: u64,
    rss_mb: f64,
    open_fds: usize,
    data_files: usize,
    probes: u64,
    jobs: u64,
    reads: u64,
    lost: u64,
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| {
                let path = e.path();
                if path.is_dir() { count_files(&path) } else { 1 }
            })
            .sum()
    })
}

fn summary(values: &mut [f64]) -> serde_json::Value {
    values.sort_by(f64::total_cmp);
    serde_json::json!({
        "count": values.len(),
        "p50_ms": percentile(values, 0.5),
        "p99_ms": percentile(values, 0.99),
        "max_ms": values.last(),
    })
}

/// Mean of the first and the last quarter of a series: flat when they are close.
fn quarters(series: &[f64]) -> (f64, f64) {
    let n = (series.len() / 4).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    (
        mean(&series[..n.min(series.len())]),
        mean(&series[series.len().saturating_sub(n)..]),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let (mut tcp, mut webrtc, mut seconds) = (200usize, 20usize, 600u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tcp" => tcp = value.parse()?,
            "--webrtc" => webrtc = value.parse()?,
            "--seconds" => seconds = value.parse()?,
            other => anyhow::bail!("unknown flag {other}; expected --tcp N --webrtc N --seconds N"),
        }
    }
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("load-soak");
    // A small results budget, pruned every ten seconds, so the run shows eviction keeping the
    // data directory bounded (the default budget would take hours of this load to fill).
    let relay = Relay::start_with(
        &bin,
        &www,
        &data_dir,
        &RelayPorts::any(),
        &["--results-budget-mb", "16", "--prune-interval-secs", "10"],
    )?;
    let pid = relay.pid();
    let info = relay.info()?;
    let relay_id: PeerId = info.peer_id.parse()?;
    let addr: Multiaddr = info
        .webrtc
        .first()
        .context("the relay announced no webrtc address")?
        .parse()?;
    let module = Arc::new(job_module("primes")?);

    // Every peer connects first (each dial its own identity), then the module is uploaded once.
    eprintln!("connecting {tcp} peers over TCP and {webrtc} over webrtc-direct…");
    let mut controls = Vec::new();
    for i in 0..tcp + webrtc {
        controls.push(if i < tcp {
            tcp_client(&relay).await?.0
        } else {
            webrtc_client_retrying(&addr).await?
        });
        if (i + 1) % 50 == 0 {
            eprintln!("  {} connected", i + 1);
        }
    }
    let genesis = Arc::new(ledger_genesis(&mut controls[0], relay_id).await?);
    run_job(
        &mut controls[0],
        relay_id,
        &Keypair::from_seed(&[250; 32]),
        1,
        &module,
        INPUT,
    )
    .await?;
    let peers = controls.len();
    eprintln!("{peers} peers connected; running for {seconds} s");

    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, control) in controls.into_iter().enumerate() {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let peer = Peer {
            control,
            relay: relay_id,
            key: Keypair::from_seed(&seed),
            genesis: Arc::clone(&genesis),
            module: Arc::clone(&module),
            counts: Arc::clone(&counts),
            deadline,
        };
        let offset = JOB_EVERY.mul_f64(i as f64 / peers as f64);
        tasks.push(tokio::spawn(peer.run(offset)));
    }

    let mut samples = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10).min(deadline - Instant::now())).await;
        let sample = Sample {
            at_s: started.elapsed().as_secs(),
            rss_mb: rss_mb(pid),
            open_fds: open_fds(pid),
            data_files: count_files(&data_dir),
            probes: counts.probes.load(Ordering::Relaxed),
            jobs: counts.jobs.load(Ordering::Relaxed),
            reads: counts.reads.load(Ordering::Relaxed),
            lost: counts.lost.load(Ordering::Relaxed),
        };
        eprintln!(
            "  {:>4} s: relay {:.0} MB, {} fds, {} files; {} probes, {} jobs, {} reads answered, {} lost",
            sample.at_s,
            sample.rss_mb,
            sample.open_fds,
            sample.data_files,
            sample.probes,
            sample.jobs,
            sample.reads,
            sample.lost
        );
        samples.push(sample);
    }
    let mut all = Latencies::default();
    for task in tasks {
        let mut one = task.await?;
        all.probe.append(&mut one.probe);
        all.job.append(&mut one.job);
        all.read.append(&mut one.read);
        all.errors.append(&mut one.errors);
    }
    all.errors.truncate(10);
    let elapsed = started.elapsed().as_secs_f64();
    let relay_output = relay.output();
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);

    let rss: Vec<f64> = samples.iter().map(|s| s.rss_mb).collect();
    let files: Vec<f64> = samples.iter().map(|s| s.data_files as f64).collect();
    let fds: Vec<f64> = samples.iter().map(|s| s.open_fds as f64).collect();
    let lost = counts.lost.load(Ordering::Relaxed);
    let (rss_first, rss_last) = quarters(&rss);
    let (files_first, files_last) = quarters(&files);
    let (fds_first, fds_last) = quarters(&fds);
    let results = serde_json::json!({
        "peers": { "tcp": tcp, "webrtc": webrtc },
        "seconds": elapsed,
        "per_second": {
            "probes": all.probe.len() as f64 / elapsed,
            "jobs": all.job.len() as f64 / elapsed,
            "reads": all.read.len() as f64 / elapsed,
        },
        "probe": summary(&mut all.probe),
        "job": summary(&mut all.job),
        "read": summary(&mut all.read),
        "lost_answers": lost,
        "first_errors": all.errors,
        "relay_rss_mb": { "first_quarter": rss_first, "last_quarter": rss_last },
        "relay_open_fds": { "first_quarter": fds_first, "last_quarter": fds_last },
        "data_files": { "first_quarter": files_first, "last_quarter": files_last },
        "samples": samples,
        "job_kind": "primes below 2000 (one-shot), module known to the relay",
    });
    println!("{}", serde_json::to_string_pretty(&results)?);
    let path = artifacts_dir("bench").join("load-soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("written to {}", path.display());
    if lost > 0 {
        anyhow::bail!(
            "{lost} answers were lost; first errors: {:?}\nthe relay printed (last lines):\n{}",
            all.errors,
            relay_output
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

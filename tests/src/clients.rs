//! Native clients, as benchmarks and load runs use them: one connection with its own identity
//! over webrtc-direct, and jobs submitted the way the page submits them.

use crate::dial_and_drive;
use anyhow::Context;
use client_core::encoding::{decode, encode};
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::identity::Keypair;
use client_core::job::{ClientMsg, JOB_PROTOCOL, JobSpec, MAX_JOB_FRAME, RelayMsg};
use client_core::protocol::DEV_NETWORK_ID;
use client_core::signed::Signed;
use client_core::wire::{read_frame, write_frame};
use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Transport};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A native client with its own identity connected to `addr` over webrtc-direct.
pub async fn webrtc_client(addr: &Multiaddr) -> anyhow::Result<libp2p_stream::Control> {
    let certificate = libp2p_webrtc::tokio::Certificate::generate(&mut rand::rng())
        .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            libp2p_webrtc::tokio::Transport::new(key.clone(), certificate)
                .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
        })?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    // The native WebRTC transport dials from the UDP socket it listens on, so it needs one.
    swarm.listen_on("/ip4/127.0.0.1/udp/0/webrtc-direct".parse()?)?;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::NewListenAddr { .. } = swarm.select_next_some().await {
                break;
            }
        }
    })
    .await
    .context("the client's WebRTC listener did not start")?;
    dial_and_drive(swarm, addr.clone()).await
}

/// The native WebRTC client's data channel sometimes fails to open within its 10 s on a
/// loaded machine; the bench measures jobs, not dials, so a failed dial is tried again.
pub async fn webrtc_client_retrying(addr: &Multiaddr) -> anyhow::Result<libp2p_stream::Control> {
    let mut attempt = 1;
    loop {
        match webrtc_client(addr).await {
            Ok(control) => return Ok(control),
            Err(e) if attempt < 3 => {
                eprintln!("dial {attempt} failed ({e:#}); trying again");
                attempt += 1;
            }
            Err(e) => return Err(e.context("dialing the relay over webrtc-direct, 3 attempts")),
        }
    }
}

/// Submits one job (on a stream of its own, `module` sent when the relay asks for it) signed
/// by `key` with `nonce`, and waits for its signed result; returns the latency.
pub async fn run_job(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    key: &Keypair,
    nonce: u64,
    module: &[u8],
    input: &[u8],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = control
        .open_stream(relay, StreamProtocol::new(JOB_PROTOCOL))
        .await
        .context("opening a job stream")?;
    run_job_on(&mut stream, key, nonce, module, input).await?;
    Ok(started.elapsed())
}

/// [`run_job`] on a job stream already open (the relay takes job after job on one stream);
/// returns the latency.
pub async fn run_job_on(
    stream: &mut libp2p::Stream,
    key: &Keypair,
    nonce: u64,
    module: &[u8],
    input: &[u8],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let spec = JobSpec {
        module: Hash::of(module),
        input: input.to_vec(),
        fuel_limit: 1_000_000_000,
        max_steps: client_core::job::exec::MAX_STEPS,
        payment: None,
    };
    let request = Signed::sign(
        key,
        Request::new(DEV_NETWORK_ID, nonce, now_ms(), 60_000, spec),
    );
    let mut submit = ClientMsg::Submit {
        request: request.clone(),
        module: None,
    };
    write_frame(stream, &encode(&submit))
        .await
        .context("sending the job")?;
    loop {
        let frame =
            tokio::time::timeout(Duration::from_secs(60), read_frame(stream, MAX_JOB_FRAME))
                .await
                .context("no answer within 60 s")?
                .context("reading the relay's answer")?
                .context("the relay closed the stream")?;
        match decode::<RelayMsg>(&frame, MAX_JOB_FRAME)? {
            RelayMsg::NeedModule { .. } => {
                submit = ClientMsg::Submit {
                    request: request.clone(),
                    module: Some(module.to_vec()),
                };
                write_frame(stream, &encode(&submit)).await?;
            }
            RelayMsg::Accepted { .. } | RelayMsg::Progress { .. } => {}
            RelayMsg::Done { .. } => return Ok(started.elapsed()),
            other => anyhow::bail!("job failed: {other:?}"),
        }
    }
}

//! A native libp2p client misbehaves on `/aqueduct/status/1`: garbage, oversized and
//! truncated frames, too many streams. The relay answers with an error or closes that stream,
//! keeps serving a well-behaved stream opened before, and never panics.

use aqueduct_tests::{Relay, RelayPorts, relay_bin, tcp_client, temp_dir, www_dir};
use client_core::encoding::{decode, encode};
use client_core::protocol::{
    ErrorCode, MAX_STATUS_FRAME, STATUS_PROTOCOL, StatusRequest, StatusResponse,
};
use client_core::wire::{read_frame, write_frame};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(10);

async fn open(control: &mut libp2p_stream::Control, peer: PeerId) -> anyhow::Result<Stream> {
    Ok(tokio::time::timeout(
        STEP,
        control.open_stream(peer, StreamProtocol::new(STATUS_PROTOCOL)),
    )
    .await??)
}

async fn probe(stream: &mut Stream, seq: u64) -> anyhow::Result<()> {
    write_frame(stream, &encode(&StatusRequest::Probe { seq })).await?;
    let frame = tokio::time::timeout(STEP, read_frame(stream, MAX_STATUS_FRAME))
        .await??
        .ok_or_else(|| anyhow::anyhow!("stream closed"))?;
    match decode::<StatusResponse>(&frame, MAX_STATUS_FRAME)? {
        StatusResponse::Pong { seq: got, status } if got == seq => {
            anyhow::ensure!(status.network_id == "aqueduct-dev");
            Ok(())
        }
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

/// Reads what the relay sends after bad input: an error frame (if any), then the end.
async fn answer_then_close(stream: &mut Stream) -> anyhow::Result<Option<ErrorCode>> {
    let code = match tokio::time::timeout(STEP, read_frame(stream, MAX_STATUS_FRAME)).await? {
        Ok(Some(frame)) => match decode::<StatusResponse>(&frame, MAX_STATUS_FRAME)? {
            StatusResponse::Error(e) => Some(e.code),
            other => anyhow::bail!("expected an error, got {other:?}"),
        },
        Ok(None) | Err(_) => None,
    };
    // After an error the stream must end (EOF or reset), not hang.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut rest)).await?;
    anyhow::ensure!(rest.is_empty(), "data after the error: {rest:?}");
    Ok(code)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_an_error_and_others_keep_being_served() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("hostile");
    let mut relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let (mut control, peer) = tcp_client(&relay).await?;

    // A well-behaved stream, open through everything below.
    let mut good = open(&mut control, peer).await?;
    probe(&mut good, 1).await?;

    // Garbage that is a well-formed frame but not a message.
    let mut s = open(&mut control, peer).await?;
    write_frame(&mut s, b"\xff\x00garbage").await?;
    assert_eq!(answer_then_close(&mut s).await?, Some(ErrorCode::Malformed));
    probe(&mut good, 2).await?;

    // A valid message followed by trailing bytes in the same frame.
    let mut s = open(&mut control, peer).await?;
    let mut bytes = encode(&StatusRequest::Probe { seq: 9 });
    bytes.push(0);
    write_frame(&mut s, &bytes).await?;
    assert_eq!(answer_then_close(&mut s).await?, Some(ErrorCode::Malformed));

    // A frame claiming 2 GiB: refused from its length prefix alone.
    let mut s = open(&mut control, peer).await?;
    s.write_all(&0x7fff_ffffu32.to_be_bytes()).await?;
    s.flush().await?;
    assert_eq!(answer_then_close(&mut s).await?, Some(ErrorCode::TooLarge));
    probe(&mut good, 3).await?;

    // Just over the limit.
    let mut s = open(&mut control, peer).await?;
    write_frame(&mut s, &vec![0u8; MAX_STATUS_FRAME + 1]).await?;
    assert_eq!(answer_then_close(&mut s).await?, Some(ErrorCode::TooLarge));

    // Truncated frame: promises 100 bytes, sends 10, closes its side.
    let mut s = open(&mut control, peer).await?;
    s.write_all(&100u32.to_be_bytes()).await?;
    s.write_all(&[0u8; 10]).await?;
    s.close().await?;
    assert_eq!(answer_then_close(&mut s).await?, None);

    // Half a length prefix, then close.
    let mut s = open(&mut control, peer).await?;
    s.write_all(&[0, 0]).await?;
    s.close().await?;
    assert_eq!(answer_then_close(&mut s).await?, None);
    probe(&mut good, 4).await?;

    // Too many streams from one peer: the extra one is refused as busy. The relay releases
    // the slots of the streams just closed when their tasks end, so a held stream refused as
    // busy in that moment is opened again.
    let mut held = Vec::new();
    for seq in 0..3 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let s = loop {
            let mut s = open(&mut control, peer).await?;
            match probe(&mut s, 100 + seq).await {
                Ok(()) => break s,
                Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        held.push(s);
    }
    let mut extra = open(&mut control, peer).await?;
    let _ = write_frame(&mut extra, &encode(&StatusRequest::Probe { seq: 200 })).await;
    assert_eq!(answer_then_close(&mut extra).await?, Some(ErrorCode::Busy));
    drop(held);
    probe(&mut good, 5).await?;

    // The relay is alive, healthy and never panicked.
    assert!(relay.is_running(), "relay exited:\n{}", relay.output());
    assert!(relay.get("/healthz")?.contains("\"ok\""));
    let output = relay.output();
    assert!(!output.contains("panicked"), "{output}");
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Many peers opening streams at the same moment are all served: none is dropped on the way
/// from the connection to the protocol's accept loop.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_streams_from_many_peers_is_served_in_full() -> anyhow::Result<()> {
    const PEERS: usize = 16;
    const STREAMS_EACH: u64 = 4;
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("burst");
    let relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let mut clients = Vec::new();
    for _ in 0..PEERS {
        clients.push(tcp_client(&relay).await?);
    }
    let mut tasks = Vec::new();
    for (control, peer) in &clients {
        for seq in 0..STREAMS_EACH {
            let (mut control, peer) = (control.clone(), *peer);
            tasks.push(tokio::spawn(async move {
                let mut stream = open(&mut control, peer).await?;
                probe(&mut stream, seq).await
            }));
        }
    }
    let mut failed = Vec::new();
    for task in tasks {
        if let Err(e) = task.await? {
            failed.push(format!("{e:#}"));
        }
    }
    let output = relay.output();
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} streams opened at once were not answered: {failed:?}\nrelay:\n{output}",
        failed.len(),
        PEERS * STREAMS_EACH as usize
    );
    Ok(())
}

/// Identities are free, so the relay caps connections in total: with room for two, two peers
/// are served and a third is refused (it may finish its handshake, but the relay closes the
/// connection before any stream), while the two keep being served.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_are_refused_and_those_held_are_still_served() -> anyhow::Result<()>
{
    let data_dir = temp_dir("conn-cap");
    let relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &RelayPorts::any(),
        &["--max-connections", "2"],
    )?;
    let (mut first, peer) = tcp_client(&relay).await?;
    let mut first_stream = open(&mut first, peer).await?;
    probe(&mut first_stream, 1).await?;
    let (mut second, _) = tcp_client(&relay).await?;
    let mut second_stream = open(&mut second, peer).await?;
    probe(&mut second_stream, 1).await?;

    let refused = match tcp_client(&relay).await {
        Err(_) => true,
        Ok((mut third, _)) => match open(&mut third, peer).await {
            Err(_) => true,
            Ok(mut stream) => probe(&mut stream, 1).await.is_err(),
        },
    };
    assert!(refused, "a third connection was served past a cap of two");
    probe(&mut first_stream, 2).await?;
    probe(&mut second_stream, 2).await?;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn over_its_memory_limit_the_relay_refuses_new_connections_and_says_why() -> anyhow::Result<()>
{
    // A limit below what the relay already uses: every new connection is refused, as it would
    // be once a flood had filled its memory, while its HTTP side still tells the operator why.
    let data_dir = temp_dir("memory-limit");
    let relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &RelayPorts::any(),
        &["--max-memory-mb", "1"],
    )?;
    let refused = match tcp_client(&relay).await {
        Err(_) => true,
        Ok((mut control, peer)) => match open(&mut control, peer).await {
            Err(_) => true,
            Ok(mut stream) => probe(&mut stream, 1).await.is_err(),
        },
    };
    assert!(refused, "a connection was served above the memory limit");
    let metrics = relay.get("/metrics")?;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("aqueduct_connections_refused_total{reason=\"memory\"}")
            && !l.ends_with(" 0")),
        "the refusal is counted by its reason:\n{metrics}"
    );
    drop(relay);

    // The same relay with the default limit (80% of the machine) serves the same client.
    let relay = Relay::start(&relay_bin()?, &www_dir()?, &data_dir, &RelayPorts::any())?;
    let (mut control, peer) = tcp_client(&relay).await?;
    let mut stream = open(&mut control, peer).await?;
    probe(&mut stream, 1).await?;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

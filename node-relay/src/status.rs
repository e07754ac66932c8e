//! Serves `/aqueduct/status/1`: the browser's status and round-trip probe.
//!
//! Each inbound stream gets its own task. Limits keep a hostile peer from tying the relay up:
//! a cap on concurrent status streams in total and per peer, a frame size limit checked before
//! reading, and an idle timeout. Bad input is answered with a [`ProtocolError`] and the stream
//! is closed; nothing a peer sends can panic the relay or reach other peers' streams.

use crate::network::SharedState;
use crate::slots::Slots;
use client_core::encoding::{decode, encode};
use client_core::protocol::{
    ErrorCode, MAX_STATUS_FRAME, ProtocolError, RelayStatus, STATUS_PROTOCOL, StatusRequest,
    StatusResponse,
};
use client_core::wire::{FrameError, read_frame, write_frame};
use futures::AsyncWriteExt;
use libp2p::{PeerId, Stream, StreamProtocol};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Concurrent status streams across all peers.
const MAX_STREAMS_TOTAL: usize = 4096;
/// Concurrent status streams one peer may hold (a browser needs one).
const MAX_STREAMS_PER_PEER: u32 = 4;
/// The heartbeat: a peer holding a status stream probes at least this often (the page probes
/// every second). A stream silent for longer belongs to a browser that has gone — closed,
/// crashed or cut off — which the WebRTC stack does not report (see the README's protocol
/// notes): the stream is dropped and, unless the peer holds another status stream, its
/// connections are closed, so a departed browser costs nothing after a few seconds.
pub const HEARTBEAT_LAPSE: Duration = Duration::from_secs(5);
/// A peer that does not take an answer (or the close) within this long is dropped: a reader
/// that stops reading cannot hold a stream's slot and task for ever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one frame, giving up after [`WRITE_TIMEOUT`].
async fn send(stream: &mut Stream, response: &StatusResponse) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, write_frame(stream, &encode(response))).await,
        Ok(Ok(()))
    )
}

/// Closes the stream, giving up after [`WRITE_TIMEOUT`].
async fn close(stream: &mut Stream) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.close()).await;
}

/// Registers the protocol and spawns the accept loop.
pub fn spawn_server(
    mut control: crate::inbound::Control,
    shared: Arc<SharedState>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut incoming = control
        .accept(StreamProtocol::new(STATUS_PROTOCOL))
        .map_err(|e| anyhow::anyhow!("registering {STATUS_PROTOCOL}: {e}"))?;
    let slots = Slots::new(MAX_STREAMS_TOTAL, MAX_STREAMS_PER_PEER);
    tokio::spawn(async move {
        loop {
            let (peer, stream) = tokio::select! {
                next = incoming.next() => match next {
                    Some(next) => next,
                    None => break,
                },
                _ = shutdown.changed() => break,
            };
            match slots.take(peer) {
                Some(slot) => {
                    tokio::spawn(serve(stream, Arc::clone(&shared), slot));
                }
                None => {
                    tracing::debug!(%peer, "status stream refused: too many open");
                    tokio::spawn(refuse(stream));
                }
            }
        }
    });
    Ok(())
}

async fn refuse(mut stream: Stream) {
    let error = ProtocolError {
        code: ErrorCode::Busy,
        message: format!("at most {MAX_STREAMS_PER_PEER} status streams per peer"),
    };
    send(&mut stream, &StatusResponse::Error(error)).await;
    close(&mut stream).await;
}

async fn serve(mut stream: Stream, shared: Arc<SharedState>, slot: crate::slots::Slot) {
    let peer = slot.peer();
    loop {
        let frame = match tokio::time::timeout(
            HEARTBEAT_LAPSE,
            read_frame(&mut stream, MAX_STATUS_FRAME),
        )
        .await
        {
            Err(_) => {
                // Gone: no close handshake to wait for.
                drop(stream);
                if slot.release() == 0 {
                    tracing::info!(%peer, "no probe for {HEARTBEAT_LAPSE:?}: the peer has gone");
                    shared.disconnect(peer);
                }
                return;
            }
            Ok(Ok(None)) => {
                // The peer closed its half and everything it asked is answered: drop the stream
                // rather than close ours (README, protocol notes). Over WebRTC a drop resets the
                // data channel, which a js-libp2p peer takes as the end of a close it would
                // otherwise wait on for a FIN_ACK this libp2p cannot send, and which frees the
                // channel on both sides; over Yamux the dropped stream is closed as usual.
                return;
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(Err(FrameError::TooLarge { len, limit })) => {
                let message = format!("frame of {len} bytes exceeds the limit of {limit}");
                fail(&mut stream, peer, ErrorCode::TooLarge, message).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "status stream ended");
                break;
            }
        };
        let request = match decode::<StatusRequest>(&frame, MAX_STATUS_FRAME) {
            Ok(request) => request,
            Err(e) => {
                fail(&mut stream, peer, ErrorCode::Malformed, e.to_string()).await;
                return;
            }
        };
        let response = match request {
            StatusRequest::Probe { seq } => StatusResponse::Pong {
                seq,
                status: RelayStatus {
                    network_id: shared.network_id.clone(),
                    version: client_core::VERSION.to_owned(),
                    uptime_ms: shared.uptime_ms(),
                    connected_peers: shared.connected_peers(),
                },
            },
        };
        if !send(&mut stream, &response).await {
            break;
        }
    }
    close(&mut stream).await;
}

async fn fail(stream: &mut Stream, peer: PeerId, code: ErrorCode, message: String) {
    tracing::info!(%peer, ?code, %message, "refusing a bad status frame");
    let error = ProtocolError { code, message };
    send(stream, &StatusResponse::Error(error)).await;
    close(stream).await;
}

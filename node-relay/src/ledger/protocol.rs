//! Serves `/aqueduct/ledger/1` (messages in `client_core::ledger::wire`).
//!
//! One request per stream. Reads and block fetches are answered from a database snapshot on a
//! blocking thread; a submission is answered when it enters the mempool and again when a block
//! includes or drops it. Streams are capped in total and per peer, frames are size-checked
//! before they are read, and every read and write has a timeout.

use super::Ledger;
use super::mempool::AdmitError;
use crate::slots::Slots;
use client_core::encoding::{decode, encode};
use client_core::ledger::tx::tx_id;
use client_core::ledger::wire::{
    LEDGER_PROTOCOL, LedgerRequest, LedgerResponse, MAX_BLOCKS_PER_REQUEST, MAX_LEDGER_REQUEST,
    MAX_MISBEHAVIOUR, MAX_READ_KEYS,
};
use client_core::wire::{read_frame, write_frame};
use futures::AsyncWriteExt;
use libp2p::{Stream, StreamProtocol};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const MAX_STREAMS_TOTAL: usize = 2048;
const MAX_STREAMS_PER_PEER: u32 = 8;
const READ_TIMEOUT: Duration = Duration::from_secs(20);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a submission's stream waits for the block that includes it.
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(60);

pub fn spawn_server(
    mut control: crate::inbound::Control,
    ledger: Arc<Ledger>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut incoming = control
        .accept(StreamProtocol::new(LEDGER_PROTOCOL))
        .map_err(|e| anyhow::anyhow!("registering {LEDGER_PROTOCOL}: {e}"))?;
    let slots = Slots::new(MAX_STREAMS_TOTAL, MAX_STREAMS_PER_PEER);
    tokio::spawn(async move {
        loop {
            let (peer, mut stream) = tokio::select! {
                next = incoming.next() => match next {
                    Some(next) => next,
                    None => break,
                },
                _ = shutdown.changed() => break,
            };
            match slots.take(peer) {
                Some(slot) => {
                    let ledger = Arc::clone(&ledger);
                    tokio::spawn(async move {
                        serve(&mut stream, ledger, peer).await;
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.close()).await;
                        drop(slot);
                    });
                }
                None => {
                    // Over the cap: dropped without an answer, so a flood costs no task.
                    tracing::debug!(%peer, "ledger stream refused: too many open");
                    drop(stream);
                }
            }
        }
    });
    Ok(())
}

async fn send(stream: &mut Stream, response: &LedgerResponse) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, write_frame(stream, &encode(response))).await,
        Ok(Ok(()))
    )
}

fn refused(reason: impl Into<String>) -> LedgerResponse {
    LedgerResponse::Refused {
        reason: reason.into(),
    }
}

async fn serve(stream: &mut Stream, ledger: Arc<Ledger>, peer: libp2p::PeerId) {
    let frame =
        match tokio::time::timeout(READ_TIMEOUT, read_frame(stream, MAX_LEDGER_REQUEST)).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                let _ = send(stream, &refused(format!("unreadable request: {e}"))).await;
                return;
            }
            Err(_) => return,
        };
    let request: LedgerRequest = match decode(&frame, MAX_LEDGER_REQUEST) {
        Ok(request) => request,
        Err(e) => {
            let _ = send(stream, &refused(format!("malformed request: {e}"))).await;
            return;
        }
    };
    match request {
        LedgerRequest::Genesis => {
            let genesis = LedgerResponse::Genesis(Box::new(ledger.genesis().clone()));
            send(stream, &genesis).await;
        }
        LedgerRequest::Read { keys, height } => {
            if keys.len() > MAX_READ_KEYS {
                send(
                    stream,
                    &refused(format!("at most {MAX_READ_KEYS} keys per read")),
                )
                .await;
                return;
            }
            let worker = Arc::clone(&ledger);
            let answer = tokio::task::spawn_blocking(move || worker.read_at(&keys, height)).await;
            let response = match answer {
                Ok(Ok(reads)) => LedgerResponse::Reads(reads.map(Box::new)),
                Ok(Err(e)) => {
                    tracing::error!("ledger read failed: {e:#}");
                    refused("the relay could not read its ledger")
                }
                Err(_) => refused("the relay could not read its ledger"),
            };
            send(stream, &response).await;
        }
        LedgerRequest::Blocks { from, count } => {
            let count = count.min(MAX_BLOCKS_PER_REQUEST);
            let worker = Arc::clone(&ledger);
            let answer = tokio::task::spawn_blocking(move || worker.blocks(from, count)).await;
            let response = match answer {
                Ok(Ok(blocks)) => LedgerResponse::Blocks(blocks),
                _ => refused("the relay could not read its blocks"),
            };
            send(stream, &response).await;
        }
        LedgerRequest::TxProof { height, tx } => {
            let worker = Arc::clone(&ledger);
            let answer =
                tokio::task::spawn_blocking(move || worker.tx_inclusion(height, &tx)).await;
            let response = match answer {
                Ok(Ok(found)) => LedgerResponse::TxProof(found.map(Box::new)),
                _ => refused("the relay could not read its blocks"),
            };
            send(stream, &response).await;
        }
        LedgerRequest::Epochs { from } => {
            let worker = Arc::clone(&ledger);
            let answer = tokio::task::spawn_blocking(move || worker.epochs(from)).await;
            let response = match answer {
                Ok(Ok(changes)) => LedgerResponse::Epochs(changes),
                Ok(Err(e)) => {
                    tracing::error!("reading epoch changes failed: {e:#}");
                    refused("the relay could not read its blocks")
                }
                Err(_) => refused("the relay could not read its blocks"),
            };
            send(stream, &response).await;
        }
        LedgerRequest::Misbehaviour => {
            let worker = Arc::clone(&ledger);
            let answer =
                tokio::task::spawn_blocking(move || worker.store().double_signs(MAX_MISBEHAVIOUR))
                    .await;
            let response = match answer {
                Ok(Ok(proofs)) => LedgerResponse::Misbehaviour(proofs),
                _ => refused("the relay could not read its records"),
            };
            send(stream, &response).await;
        }
        LedgerRequest::Submit { tx } => {
            // Subscribe before admitting, so the block that includes it cannot be missed.
            let mut events = ledger.subscribe();
            let worker = Arc::clone(&ledger);
            // A transaction a peer relay forwarded has been offered to every relay already.
            let forward = !ledger.is_peer_relay(&peer);
            let id = tx_id(&tx);
            // A submission repeated after a block took it in is answered with that block.
            if let Some(height) = ledger.included_at(&id) {
                send(stream, &LedgerResponse::Included { tx: id, height }).await;
                return;
            }
            let admitted =
                tokio::task::spawn_blocking(move || worker.submit_with(*tx, forward)).await;
            match admitted {
                Ok(Ok(_)) => {}
                // A client submitting again while it waits: wait for it again. (A peer relay
                // forwarding it again is only told it is known.)
                Ok(Err(AdmitError::Duplicate)) if forward => {}
                Ok(Err(e)) => {
                    // Included between the check above and this refusal of its nonce.
                    if let Some(height) = ledger.included_at(&id) {
                        send(stream, &LedgerResponse::Included { tx: id, height }).await;
                        return;
                    }
                    send(stream, &refused(e.to_string())).await;
                    return;
                }
                Err(_) => {
                    send(
                        stream,
                        &refused("the relay failed to check the transaction"),
                    )
                    .await;
                    return;
                }
            };
            let pending = u32::try_from(ledger.pending()).unwrap_or(u32::MAX);
            if !send(stream, &LedgerResponse::Submitted { tx: id, pending }).await {
                return;
            }
            let outcome = tokio::time::timeout(INCLUSION_TIMEOUT, async {
                loop {
                    match events.recv().await {
                        Ok(event) => {
                            if event.included.contains(&id) {
                                return Some(LedgerResponse::Included {
                                    tx: id,
                                    height: event.height,
                                });
                            }
                            if let Some((_, reason)) = event.dropped.iter().find(|(d, _)| *d == id)
                            {
                                return Some(LedgerResponse::Dropped {
                                    tx: id,
                                    reason: reason.clone(),
                                });
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .await;
            match outcome {
                Ok(Some(response)) => {
                    send(stream, &response).await;
                }
                _ => {
                    send(stream, &LedgerResponse::StillPending { tx: id }).await;
                }
            }
        }
    }
}

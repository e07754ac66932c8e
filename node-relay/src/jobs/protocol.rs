//! Serves `/aqueduct/job/1` (see `client_core::job` for the messages).
//!
//! A stream opened by the browser carries one job at a time: it submits (uploading the module
//! only if asked), then hears `Accepted`, `Progress` and finally `Done` or `Failed`, and may
//! then ask for checkpoint states to sample. After that the same stream takes the next
//! `Submit` or `Attach`, so a page running many jobs opens one stream (one WebRTC data
//! channel), not one per job; a refused request leaves the stream open too. Only a bad frame,
//! a message out of order, or a minute without any message ends it. A browser that lost its
//! stream opens a new one and attaches to the job by id.
//!
//! Reading and writing run side by side: a reader task decodes frames into a channel, so
//! `Cancel` is heard while progress is being written, and a frame is never half-read when the
//! handler turns to something else. Every write has a timeout, so a peer that stops reading
//! cannot hold a task forever.

use super::{JobService, JobState, Live, SubmitError};
use crate::slots::Slots;
use client_core::encoding::{decode, encode};
use client_core::hash::Hash;
use client_core::job::{
    ClientMsg, JOB_PROTOCOL, JobFailure, MAX_JOB_FRAME, MAX_SAMPLE_STATES, Refusal, RelayMsg,
};
use client_core::wire::{FrameError, read_frame, write_frame};
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Concurrent job streams across all peers, and per peer.
const MAX_STREAMS_TOTAL: usize = 1024;
const MAX_STREAMS_PER_PEER: u32 = 8;
/// A stream waiting for a message (not for its job) for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A write the peer does not take within this time ends the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// Registers the protocol and spawns the accept loop.
pub fn spawn_server(
    mut control: crate::inbound::Control,
    service: Arc<JobService>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut incoming = control
        .accept(StreamProtocol::new(JOB_PROTOCOL))
        .map_err(|e| anyhow::anyhow!("registering {JOB_PROTOCOL}: {e}"))?;
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
                    service.stream_opened();
                    let service = Arc::clone(&service);
                    tokio::spawn(async move {
                        serve(stream, peer, service).await;
                        drop(slot);
                    });
                }
                None => {
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let msg = refused(
                            Refusal::Busy,
                            format!("at most {MAX_STREAMS_PER_PEER} job streams per peer"),
                        );
                        let _ = tokio::time::timeout(
                            WRITE_TIMEOUT,
                            write_frame(&mut stream, &encode(&msg)),
                        )
                        .await;
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.close()).await;
                    });
                }
            }
        }
    });
    Ok(())
}

fn refused(reason: Refusal, message: String) -> RelayMsg {
    RelayMsg::Refused { reason, message }
}

/// What the reader task hands over: a message, or why the stream cannot be read further.
type Incoming = Result<ClientMsg, RelayMsg>;

async fn read_messages(mut reader: ReadHalf<Stream>, tx: mpsc::Sender<Incoming>) {
    loop {
        let frame = match read_frame(&mut reader, MAX_JOB_FRAME).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(FrameError::TooLarge { len, limit }) => {
                let msg = refused(
                    Refusal::TooLarge,
                    format!("frame of {len} bytes exceeds the limit of {limit}"),
                );
                let _ = tx.send(Err(msg)).await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "job stream ended");
                return;
            }
        };
        let msg = decode::<ClientMsg>(&frame, MAX_JOB_FRAME)
            .map_err(|e| refused(Refusal::Malformed, e.to_string()));
        let stop = msg.is_err();
        if tx.send(msg).await.is_err() || stop {
            return;
        }
    }
}

struct Conn {
    writer: WriteHalf<Stream>,
    rx: mpsc::Receiver<Incoming>,
    peer: PeerId,
}

impl Conn {
    async fn send(&mut self, msg: &RelayMsg) -> bool {
        matches!(
            tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut self.writer, &encode(msg))).await,
            Ok(Ok(()))
        )
    }

    /// The next message, or `None` when the stream ended, went idle or sent garbage (the
    /// garbage is answered first).
    async fn next(&mut self) -> Option<ClientMsg> {
        match tokio::time::timeout(IDLE_TIMEOUT, self.rx.recv()).await {
            Ok(Some(Ok(msg))) => Some(msg),
            Ok(Some(Err(refusal))) => {
                tracing::info!(peer = %self.peer, "refusing a bad job frame");
                self.send(&refusal).await;
                None
            }
            Ok(None) | Err(_) => None,
        }
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, self.writer.close()).await;
    }
}

/// How long a job paying on an unknown channel waits for this relay to follow the block that
/// opened it.
const CHANNEL_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve(stream: Stream, peer: PeerId, service: Arc<JobService>) {
    let (reader, writer) = stream.split();
    let (tx, rx) = mpsc::channel(4);
    let reader_task = tokio::spawn(read_messages(reader, tx));
    let mut conn = Conn { writer, rx, peer };
    handle(&mut conn, &service).await;
    reader_task.abort();
    conn.close().await;
}

/// Serves jobs one after another until the stream ends.
async fn handle(conn: &mut Conn, service: &Arc<JobService>) {
    let mut next = conn.next().await;
    while let Some(msg) = next.take() {
        next = match one_job(conn, service, msg).await {
            Next::Message(msg) => Some(*msg),
            Next::Wait => conn.next().await,
            Next::End => None,
        };
    }
}

/// What the stream does after a job: take a message already read, wait for one, or end.
enum Next {
    Message(Box<ClientMsg>),
    Wait,
    End,
}

/// Serves one job from its first message to its end (results sampled included).
async fn one_job(conn: &mut Conn, service: &Arc<JobService>, first: ClientMsg) -> Next {
    let mut first = Some(first);
    loop {
        match first.take() {
            Some(ClientMsg::Submit { request, module }) => {
                let job = client_core::job::job_id(&request);
                // A signed request paying on a channel this relay has not seen yet: its block
                // may be final elsewhere and on its way here.
                if let Some(voucher) = &request.body.body.payment
                    && request.verify().is_ok()
                {
                    service
                        .payments()
                        .await_channel(&voucher.body.channel, CHANNEL_CATCH_UP)
                        .await;
                }
                let svc = Arc::clone(service);
                let submitted =
                    tokio::task::spawn_blocking(move || svc.submit(request, module.as_deref()))
                        .await;
                let answered = match submitted {
                    Ok(Ok((live, position))) => {
                        let accepted = RelayMsg::Accepted {
                            job: live.job,
                            queue_position: position,
                        };
                        if !conn.send(&accepted).await {
                            return Next::End;
                        }
                        return follow(conn, service, live).await;
                    }
                    Ok(Err(SubmitError::NeedModule(module))) => {
                        if !conn.send(&RelayMsg::NeedModule { module }).await {
                            return Next::End;
                        }
                        // The next message should be the same request with the bytes.
                        first = conn.next().await;
                        continue;
                    }
                    Ok(Err(SubmitError::Module(_, error))) => {
                        let failure = JobFailure::Module(error.to_string());
                        conn.send(&RelayMsg::Failed { job, failure }).await
                    }
                    Ok(Err(SubmitError::Refused(reason, message))) => {
                        conn.send(&refused(reason, message)).await
                    }
                    Err(_) => {
                        conn.send(&refused(
                            Refusal::Busy,
                            "the relay could not take the job".into(),
                        ))
                        .await
                    }
                };
                return if answered { Next::Wait } else { Next::End };
            }
            Some(ClientMsg::Attach { job }) => {
                return match service.find(&job) {
                    Some(live) => follow(conn, service, live).await,
                    None => {
                        let msg = refused(Refusal::UnknownJob, format!("no job {job} here"));
                        if conn.send(&msg).await {
                            Next::Wait
                        } else {
                            Next::End
                        }
                    }
                };
            }
            Some(ClientMsg::Sample { .. } | ClientMsg::Leaves { .. } | ClientMsg::Cancel) => {
                conn.send(&refused(
                    Refusal::Malformed,
                    "submit or attach to a job first".into(),
                ))
                .await;
                return Next::End;
            }
            None => return Next::End,
        }
    }
}

/// Reports the job's progress until it ends, then serves sample requests.
async fn follow(conn: &mut Conn, service: &Arc<JobService>, live: Arc<Live>) -> Next {
    let mut state = live.subscribe();
    let mut last_sent: Option<(u64, u64)> = None;
    loop {
        let current = state.borrow_and_update().clone();
        match current {
            JobState::Queued { .. } => {}
            JobState::Running {
                fuel_used,
                checkpoints,
            } => {
                if last_sent != Some((fuel_used, checkpoints)) {
                    last_sent = Some((fuel_used, checkpoints));
                    if !conn
                        .send(&RelayMsg::Progress {
                            fuel_used,
                            checkpoints,
                        })
                        .await
                    {
                        return Next::End;
                    }
                }
            }
            JobState::Done(finished) => {
                let done = RelayMsg::Done {
                    output: finished.output.clone(),
                    receipt: Box::new(finished.receipt.clone()),
                    run_ms: finished.run_ms,
                };
                if !conn.send(&done).await {
                    return Next::End;
                }
                return serve_samples(conn, service, &live.job).await;
            }
            JobState::Failed(failure) => {
                let failed = RelayMsg::Failed {
                    job: live.job,
                    failure,
                };
                return if conn.send(&failed).await {
                    Next::Wait
                } else {
                    Next::End
                };
            }
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    // The service dropped the job without an end: report it rather than hang.
                    conn.send(&RelayMsg::Failed { job: live.job, failure: JobFailure::RelayRestarted }).await;
                    return Next::End;
                }
            }
            msg = conn.rx.recv() => match msg {
                Some(Ok(ClientMsg::Cancel)) => live.cancel(),
                Some(Ok(_)) => {
                    conn.send(&refused(Refusal::Malformed, "the job is still running".into())).await;
                    return Next::End;
                }
                Some(Err(refusal)) => {
                    conn.send(&refusal).await;
                    return Next::End;
                }
                // The browser went away; the job carries on and can be attached to again.
                None => return Next::End,
            },
        }
    }
}

/// Answers sample and leaf requests about a finished job until the next job's first message
/// (handed back) or the end of the stream.
async fn serve_samples(conn: &mut Conn, service: &Arc<JobService>, job: &Hash) -> Next {
    while let Some(msg) = conn.next().await {
        let (states, prove, leaves) = match msg {
            ClientMsg::Sample { states, prove } => (states, prove, false),
            // A test relay that forges and then goes quiet when a referee asks.
            ClientMsg::Leaves { .. } if !service.answers_referees() => continue,
            ClientMsg::Leaves { indices } => (Vec::new(), indices, true),
            next @ (ClientMsg::Submit { .. } | ClientMsg::Attach { .. }) => {
                return Next::Message(Box::new(next));
            }
            ClientMsg::Cancel => {
                conn.send(&refused(
                    Refusal::Malformed,
                    "only sample requests or the next job follow a result".into(),
                ))
                .await;
                return Next::End;
            }
        };
        let Some(kept) = service.states(job) else {
            conn.send(&refused(
                Refusal::NoStates,
                "this job's checkpoint states are not kept (one-shot job, or past their retention)"
                    .into(),
            ))
            .await;
            return Next::End;
        };
        let sorted = |v: &[u64]| v.windows(2).all(|w| w[0] < w[1]);
        if states.len() > MAX_SAMPLE_STATES
            || prove.len() > 3 * MAX_SAMPLE_STATES
            || prove.is_empty()
            || !sorted(&states)
            || !sorted(&prove)
            || states.iter().chain(&prove).any(|i| *i >= kept.count())
        {
            conn.send(&refused(
                Refusal::Malformed,
                format!(
                    "ask for at most {MAX_SAMPLE_STATES} sorted, distinct checkpoints below {}",
                    kept.count()
                ),
            ))
            .await;
            return Next::End;
        }
        if leaves {
            let Some(hashes) = prove.iter().map(|i| kept.hash(*i)).collect() else {
                return Next::End;
            };
            let proof = kept.prove(&prove);
            if !conn.send(&RelayMsg::Leaves { hashes, proof }).await {
                return Next::End;
            }
            continue;
        }
        for index in states {
            let Some(state) = kept.state(index) else {
                return Next::End;
            };
            if !conn.send(&RelayMsg::State { index, state }).await {
                return Next::End;
            }
        }
        let proof = kept.prove(&prove);
        if !conn.send(&RelayMsg::Proof { proof }).await {
            return Next::End;
        }
    }
    Next::End
}

//! Running a job on a relay from the browser, and verifying what comes back (wasm32, feature
//! `browser`).
//!
//! [`submit`] sends the signed request on a job stream (the module's bytes only if the relay
//! asks), reports progress, and re-attaches by job id if the connection drops while the job
//! runs. A stream whose job is over goes back to a small pool and carries the next job to the
//! same relay, so a page running many jobs opens one WebRTC data channel, not one per job. [`verify`] then checks the result with the pure checks of
//! [`crate::job::verify`], running the job in this page's own engine: in full for one-shot
//! and short step jobs, by commit-then-sample for long step jobs.

use crate::encoding::{decode, encode};
use crate::hash::Hash;
use crate::job::commit::Commitment;
use crate::job::exec::SparseSnapshot;
use crate::job::profile::{JobForm, ModuleError, Prepared, Profile};
use crate::job::verify::{
    self, CheckMethod, CheckTask, SamplePlan, Strength, Verified, VerifyError,
};
use crate::job::{
    ClientMsg, JOB_PROTOCOL, JobFailure, JobRequest, MAX_JOB_FRAME, Receipt, Refusal, RelayMsg,
};
use crate::js_engine::JsJob;
use crate::signed::Signed;
use crate::wire::{read_frame, write_frame};
use futures::future::{Either, select};
use gloo_timers::future::TimeoutFuture;
use libp2p::{PeerId, Stream, StreamProtocol};
use wasm_bindgen::JsValue;

/// What happens while a job is submitted and runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The relay does not have the module yet: uploading it.
    Uploading {
        bytes: usize,
    },
    Accepted {
        job: Hash,
        queue_position: u32,
    },
    Progress {
        fuel_used: u64,
        checkpoints: u64,
    },
    /// The stream dropped while the job ran; trying to re-attach.
    Reattaching {
        attempt: u32,
        reason: String,
    },
    /// The user asked to stop the job; the relay has been told.
    Cancelling,
}

/// A cancel button's other end: [`Cancel::cancel`] asks a running job to stop.
#[derive(Clone, Default)]
pub struct Cancel(std::rc::Rc<CancelInner>);

#[derive(Default)]
struct CancelInner {
    requested: std::cell::Cell<bool>,
    waker: std::cell::RefCell<Option<std::task::Waker>>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.requested.set(true);
        if let Some(waker) = self.0.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub fn is_requested(&self) -> bool {
        self.0.requested.get()
    }

    /// Resolves once cancellation was asked for.
    fn requested(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.0.requested.get() {
                std::task::Poll::Ready(())
            } else {
                *self.0.waker.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
    }
}

/// Why a job produced no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobClientError {
    #[error("could not talk to the relay: {0}")]
    Stream(String),
    #[error("the relay refused ({reason:?}): {message}")]
    Refused { reason: Refusal, message: String },
    #[error("the job failed: {0}")]
    Failed(JobFailure),
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),
}

/// A result as the relay returned it, not yet verified; the stream stays open for sampling.
pub struct JobResult {
    pub job: Hash,
    pub output: Vec<u8>,
    pub receipt: Signed<Receipt>,
    /// The relay's own account of its execution time (not signed).
    pub run_ms: u64,
    stream: Stream,
    /// To re-attach if the stream breaks while sampling.
    control: libp2p_stream::Control,
    relay: PeerId,
    /// Whether the stream has no question pending, so it can carry the next job.
    reusable: bool,
}

/// Job streams whose job is over, by relay, with when they were put back.
mod idle {
    use libp2p::{PeerId, Stream};
    use std::cell::RefCell;

    /// A relay closes a job stream after a minute without a message; a stream idle for half
    /// that is not reused, so reuse never races that close.
    const MAX_IDLE_MS: f64 = 30_000.0;
    /// Streams kept in all.
    const MAX_KEPT: usize = 4;

    thread_local! {
        static IDLE: RefCell<Vec<(PeerId, Stream, f64)>> = const { RefCell::new(Vec::new()) };
    }

    pub fn put(relay: PeerId, stream: Stream) {
        let now = crate::browser::now_ms();
        IDLE.with_borrow_mut(|idle| {
            idle.push((relay, stream, now));
            if idle.len() > MAX_KEPT {
                idle.remove(0);
            }
        });
    }

    pub fn take(relay: PeerId) -> Option<Stream> {
        let now = crate::browser::now_ms();
        IDLE.with_borrow_mut(|idle| {
            idle.retain(|(_, _, since)| now - since < MAX_IDLE_MS);
            let at = idle.iter().rposition(|(r, _, _)| *r == relay)?;
            Some(idle.remove(at).1)
        })
    }
}

/// How long to wait for any message from the relay while a job is pending.
const MESSAGE_TIMEOUT_MS: u32 = 120_000;
const REATTACH_ATTEMPTS: u32 = 20;

pub(crate) async fn send(stream: &mut Stream, msg: &ClientMsg) -> Result<(), JobClientError> {
    write_frame(stream, &encode(msg))
        .await
        .map_err(|e| JobClientError::Stream(e.to_string()))
}

async fn receive(stream: &mut Stream) -> Result<RelayMsg, JobClientError> {
    receive_within(stream, MESSAGE_TIMEOUT_MS).await
}

/// The next message, if one arrives within `timeout_ms`.
pub(crate) async fn receive_within(
    stream: &mut Stream,
    timeout_ms: u32,
) -> Result<RelayMsg, JobClientError> {
    let read = read_frame(stream, MAX_JOB_FRAME);
    let frame = match select(Box::pin(read), TimeoutFuture::new(timeout_ms)).await {
        Either::Left((frame, _)) => frame,
        Either::Right(_) => {
            return Err(JobClientError::Stream(format!(
                "no message from the relay in {} s",
                timeout_ms / 1000
            )));
        }
    };
    let frame = frame
        .map_err(|e| JobClientError::Stream(e.to_string()))?
        .ok_or_else(|| JobClientError::Stream("the relay closed the job stream".into()))?;
    decode::<RelayMsg>(&frame, MAX_JOB_FRAME).map_err(|e| JobClientError::Protocol(e.to_string()))
}

async fn open(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
) -> Result<Stream, JobClientError> {
    control
        .open_stream(relay, StreamProtocol::new(JOB_PROTOCOL))
        .await
        .map_err(|e| JobClientError::Stream(e.to_string()))
}

/// Submits `request` to `relay` and waits for its result.
pub async fn submit(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    request: &JobRequest,
    module: &[u8],
    cancel: &Cancel,
    on_event: &dyn Fn(JobEvent),
) -> Result<JobResult, JobClientError> {
    let submit_msg = ClientMsg::Submit {
        request: request.clone(),
        module: None,
    };
    // A pooled stream first; if it turns out to be closed before any answer, a fresh one.
    let pooled = idle::take(relay);
    let retried = pooled.is_some();
    let (mut stream, mut first) = match pooled {
        Some(mut pooled) => match send(&mut pooled, &submit_msg).await {
            Ok(()) => match receive(&mut pooled).await {
                Ok(answer) => (pooled, Some(answer)),
                Err(JobClientError::Stream(_)) => (open(control, relay).await?, None),
                Err(e) => return Err(e),
            },
            Err(_) => (open(control, relay).await?, None),
        },
        None => (open(control, relay).await?, None),
    };
    if first.is_none() {
        send(&mut stream, &submit_msg).await?;
        match receive(&mut stream).await? {
            // Refused on a second try: the pooled stream may have carried the request before it
            // broke (a replay now), so the relay may have the job — attach to it.
            RelayMsg::Refused {
                reason: Refusal::Request,
                message,
            } if retried => {
                let job = crate::job::job_id(request);
                stream = open(control, relay).await?;
                send(&mut stream, &ClientMsg::Attach { job }).await?;
                return match follow_to_result(control, relay, stream, job, cancel, on_event).await {
                    // It did not: the refusal stands.
                    Err(JobClientError::Refused {
                        reason: Refusal::UnknownJob,
                        ..
                    }) => Err(JobClientError::Refused {
                        reason: Refusal::Request,
                        message,
                    }),
                    other => other,
                };
            }
            answer => first = Some(answer),
        }
    }
    let mut uploaded = false;
    let job = loop {
        let answer = match first.take() {
            Some(answer) => answer,
            None => receive(&mut stream).await?,
        };
        match answer {
            RelayMsg::NeedModule { .. } if !uploaded => {
                uploaded = true;
                on_event(JobEvent::Uploading {
                    bytes: module.len(),
                });
                send(
                    &mut stream,
                    &ClientMsg::Submit {
                        request: request.clone(),
                        module: Some(module.to_vec()),
                    },
                )
                .await?;
            }
            RelayMsg::Accepted {
                job,
                queue_position,
            } => {
                on_event(JobEvent::Accepted {
                    job,
                    queue_position,
                });
                break job;
            }
            other => return Err(unexpected(other)),
        }
    };
    follow_to_result(control, relay, stream, job, cancel, on_event).await
}

/// Follows job `job` on `stream` to its result, re-attaching on a fresh stream if it breaks.
async fn follow_to_result(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    mut stream: Stream,
    job: Hash,
    cancel: &Cancel,
    on_event: &dyn Fn(JobEvent),
) -> Result<JobResult, JobClientError> {
    let mut attempt = 0;
    loop {
        match follow(&mut stream, job, cancel, on_event).await {
            Ok(result) => return Ok(result.with_stream(stream, control.clone(), relay)),
            Err(JobClientError::Stream(reason)) if attempt < REATTACH_ATTEMPTS => {
                attempt += 1;
                on_event(JobEvent::Reattaching { attempt, reason });
                TimeoutFuture::new(1000).await;
                if let Ok(mut fresh) = open(control, relay).await
                    && send(&mut fresh, &ClientMsg::Attach { job }).await.is_ok()
                {
                    stream = fresh;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

struct Pending {
    job: Hash,
    output: Vec<u8>,
    receipt: Signed<Receipt>,
    run_ms: u64,
}

impl JobResult {
    /// The open job stream, for questions about the result. A stream handed out may be left
    /// with a question unanswered, so it is not reused for another job.
    pub(crate) fn stream_mut(&mut self) -> &mut Stream {
        self.reusable = false;
        &mut self.stream
    }

    /// The output, the receipt and the relay's run time; the stream goes back to the pool for
    /// the next job to this relay if nothing is pending on it.
    pub fn finish(self) -> (Vec<u8>, Signed<Receipt>, u64) {
        if self.reusable {
            idle::put(self.relay, self.stream);
        }
        (self.output, self.receipt, self.run_ms)
    }
}

impl Pending {
    fn with_stream(
        self,
        stream: Stream,
        control: libp2p_stream::Control,
        relay: PeerId,
    ) -> JobResult {
        JobResult {
            control,
            relay,
            job: self.job,
            output: self.output,
            receipt: self.receipt,
            run_ms: self.run_ms,
            stream,
            reusable: true,
        }
    }
}

fn unexpected(msg: RelayMsg) -> JobClientError {
    match msg {
        RelayMsg::Failed { failure, .. } => JobClientError::Failed(failure),
        RelayMsg::Refused { reason, message } => JobClientError::Refused { reason, message },
        other => JobClientError::Protocol(format!("unexpected message {}", kind(&other))),
    }
}

fn kind(msg: &RelayMsg) -> &'static str {
    match msg {
        RelayMsg::NeedModule { .. } => "NeedModule",
        RelayMsg::Accepted { .. } => "Accepted",
        RelayMsg::Progress { .. } => "Progress",
        RelayMsg::Done { .. } => "Done",
        RelayMsg::Failed { .. } => "Failed",
        RelayMsg::State { .. } => "State",
        RelayMsg::Proof { .. } => "Proof",
        RelayMsg::Refused { .. } => "Refused",
        RelayMsg::Leaves { .. } => "Leaves",
    }
}

async fn follow(
    stream: &mut Stream,
    job: Hash,
    cancel: &Cancel,
    on_event: &dyn Fn(JobEvent),
) -> Result<Pending, JobClientError> {
    let mut cancel_sent = false;
    loop {
        let received = if cancel_sent {
            Some(receive(stream).await)
        } else {
            match select(Box::pin(receive(stream)), Box::pin(cancel.requested())).await {
                Either::Left((msg, _)) => Some(msg),
                Either::Right(_) => None,
            }
        };
        let Some(msg) = received else {
            // Ask the relay to stop, then keep reading: it answers with the failure
            // `Cancelled` (or with the result, if the job had just finished).
            cancel_sent = true;
            on_event(JobEvent::Cancelling);
            send(stream, &ClientMsg::Cancel).await?;
            continue;
        };
        let msg = msg?;
        match msg {
            RelayMsg::Progress {
                fuel_used,
                checkpoints,
            } => on_event(JobEvent::Progress {
                fuel_used,
                checkpoints,
            }),
            RelayMsg::Done {
                output,
                receipt,
                run_ms,
            } => {
                return Ok(Pending {
                    job,
                    output,
                    receipt: *receipt,
                    run_ms,
                });
            }
            // After re-attaching, the relay may restate where the job is.
            RelayMsg::Accepted { .. } => {}
            other => return Err(unexpected(other)),
        }
    }
}

/// How verification is going, for a progress bar.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyProgress {
    Preparing,
    Reexecuting,
    FetchingStates {
        received: usize,
        total: usize,
    },
    Segments {
        done: usize,
        total: usize,
    },
    /// The stream broke while fetching sampled states; asking again on a new one.
    Reattaching {
        attempt: u32,
        reason: String,
    },
}

/// Step jobs with at most this many segments are re-executed in full rather than sampled.
pub const FULL_REEXECUTION_MAX_SEGMENTS: u64 = 32;
/// Sampling aims to catch a relay that faked this fraction of the work…
pub const SAMPLING_FRACTION: f64 = 0.05;
/// …with this probability.
pub const SAMPLING_CONFIDENCE: f64 = 0.99;

/// Lets the page paint between long synchronous pieces of work.
async fn yield_to_page() {
    TimeoutFuture::new(0).await;
}

/// Verification progress in words.
pub(crate) fn describe(p: &VerifyProgress) -> String {
    match p {
        VerifyProgress::Preparing => "checking the receipt".into(),
        VerifyProgress::Reexecuting => "re-executing the job in this browser".into(),
        VerifyProgress::FetchingStates { received, total } => {
            format!("fetching sampled checkpoint states: {received} of {total}")
        }
        VerifyProgress::Segments { done, total } => {
            format!("re-running sampled segments: {done} of {total}")
        }
        VerifyProgress::Reattaching { attempt, reason } => {
            format!("{reason}; asking the relay again (attempt {attempt})")
        }
    }
}

/// Checks a result: the receipt here, then re-execution or sampling — in the worker at
/// `worker` when there is one (the page stays responsive), else in this page's engine.
/// `module` is the module as submitted (`prepared` is it, prepared).
pub async fn verify(
    result: &mut JobResult,
    request: &JobRequest,
    prepared: &Prepared,
    module: &[u8],
    relay: &PeerId,
    worker: Option<&str>,
    on_progress: &dyn Fn(VerifyProgress),
) -> Result<Verified, VerifyError> {
    on_progress(VerifyProgress::Preparing);
    let mut checks = verify::check_receipt(
        request,
        prepared,
        &result.output,
        &result.receipt,
        Some(relay),
    )?;
    let receipt = result.receipt.body.clone();
    let segments = receipt
        .commitment
        .map_or(0, |c| c.checkpoints.saturating_sub(1));
    let method = if prepared.form == JobForm::OneShot || segments <= FULL_REEXECUTION_MAX_SEGMENTS {
        on_progress(VerifyProgress::Reexecuting);
        CheckMethod::Reexecute
    } else {
        let commitment = receipt.commitment.ok_or(VerifyError::Commitment(
            "a step job needs a checkpoint commitment",
        ))?;
        let (plan, states, proof) = sample(result, commitment, on_progress).await?;
        CheckMethod::Sample {
            plan,
            states,
            proof,
        }
    };
    let task = CheckTask {
        request: request.clone(),
        receipt: receipt.clone(),
        method,
    };
    let (strength, place) = run_check(&task, prepared, module, worker, on_progress).await?;
    checks.push(strength.describe());
    checks.push(place);
    Ok(Verified {
        relay: result.receipt.signer,
        receipt,
        checks,
        strength,
    })
}

/// What the page says about where a check ran, first words.
pub const CHECKED_IN_WORKER: &str = "checked in a Web Worker";
/// …or, where no worker could do it:
pub const CHECKED_ON_PAGE: &str = "checked on the page's main thread";

/// A check may take minutes for a big job; a worker that said nothing for this long is given
/// up and the check made in the page.
const CHECK_WORKER_STALL_MS: u32 = 10 * 60 * 1000;

/// Runs the computing part of a check in the worker, or else here.
async fn run_check(
    task: &CheckTask,
    prepared: &Prepared,
    module: &[u8],
    worker: Option<&str>,
    on_progress: &dyn Fn(VerifyProgress),
) -> Result<(Strength, String), VerifyError> {
    let mut why_here = "no worker was asked".to_owned();
    if let Some(url) = worker {
        match check_in_worker(url, task, module, on_progress).await {
            Ok(strength) => {
                return Ok((
                    strength,
                    format!("{CHECKED_IN_WORKER}, off the page's main thread"),
                ));
            }
            Err(Ok(failed)) => return Err(failed),
            Err(Err(reason)) => {
                web_sys::console::warn_1(
                    &format!("checking the job on the main thread: {reason}").into(),
                );
                why_here = reason;
            }
        }
    }
    // The page paints the stage before the long synchronous part.
    yield_to_page().await;
    let engine = JsJob::compile(&prepared.code).map_err(VerifyError::Sampling)?;
    let strength = task.run(prepared, &engine, &mut |done, total| {
        on_progress(VerifyProgress::Segments { done, total })
    })?;
    Ok((strength, format!("{CHECKED_ON_PAGE} ({why_here})")))
}

/// The check in the worker at `url`: its verdict, or (`Err(Err)`) why it could not give one.
async fn check_in_worker(
    url: &str,
    task: &CheckTask,
    module: &[u8],
    on_progress: &dyn Fn(VerifyProgress),
) -> Result<Strength, Result<VerifyError, String>> {
    use crate::browser::{WorkerError, call_worker_bytes};
    let payload = encode(&(module.to_vec(), task.clone()));
    let on_message = |progress: JsValue| {
        let number = |name: &str| {
            js_sys::Reflect::get(&progress, &name.into())
                .ok()
                .and_then(|v| v.as_f64())
                .map(|n| n as usize)
        };
        if let (Some(done), Some(total)) = (number("done"), number("total")) {
            on_progress(VerifyProgress::Segments { done, total });
        }
    };
    let answer = call_worker_bytes(
        url,
        "check",
        "task",
        &payload,
        &on_message,
        CHECK_WORKER_STALL_MS,
    )
    .await;
    match answer {
        Ok(bytes) => decode::<Strength>(&bytes, bytes.len())
            .map_err(|e| Err(format!("the worker's answer does not decode: {e}"))),
        Err(WorkerError::Unavailable(reason)) => Err(Err(reason)),
        Err(WorkerError::Failed(message)) => {
            let check = js_sys::Reflect::get(&message, &"check".into())
                .ok()
                .and_then(|v| v.as_string());
            let error = WorkerError::Failed(message).message();
            match check {
                Some(check) => Err(Ok(VerifyError::reported(&check, error))),
                // Not a verdict (its wasm did not load, say): the page checks instead.
                None => Err(Err(error)),
            }
        }
    }
}

/// The worker's `check` (see [`Engine::Worker`]): decodes a module and a [`CheckTask`], runs
/// the check in this thread's engine and returns the encoded [`Strength`]. A failed check
/// throws an `Error` whose `check` names it; anything else throws a plain `Error`.
/// `on_progress({done, total})` is called between sampled segments.
pub fn check_here(task: &[u8], on_progress: &js_sys::Function) -> Result<Vec<u8>, JsValue> {
    let plain = |message: String| JsValue::from(js_sys::Error::new(&message));
    let (module, task): (Vec<u8>, CheckTask) =
        decode(task, task.len()).map_err(|e| plain(format!("the check does not decode: {e}")))?;
    let prepared = crate::job::profile::prepare(&module, &Profile::V1)
        .map_err(|e| plain(format!("the module does not prepare: {e}")))?;
    let engine = JsJob::compile(&prepared.code)
        .map_err(|e| plain(format!("this engine cannot compile the module: {e}")))?;
    let progress = |done: usize, total: usize| {
        let value = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&value, &"done".into(), &(done as f64).into());
        let _ = js_sys::Reflect::set(&value, &"total".into(), &(total as f64).into());
        let _ = on_progress.call1(&JsValue::NULL, &value);
    };
    progress(0, 0);
    match task.run(&prepared, &engine, &mut |done, total| progress(done, total)) {
        Ok(strength) => Ok(encode(&strength)),
        Err(failed) => {
            let error = js_sys::Error::new(&failed.to_string());
            let _ = js_sys::Reflect::set(&error, &"check".into(), &failed.check().into());
            Err(error.into())
        }
    }
}

/// Asks the relay for the sampled states and its Merkle proof (re-attaching if the stream
/// breaks meanwhile). The seed is drawn only now, after the relay committed to its checkpoints.
async fn sample(
    result: &mut JobResult,
    commitment: Commitment,
    on_progress: &dyn Fn(VerifyProgress),
) -> Result<(SamplePlan, Vec<(u64, SparseSnapshot)>, Vec<u8>), VerifyError> {
    let plan = SamplePlan::new(
        commitment,
        SAMPLING_FRACTION,
        SAMPLING_CONFIDENCE,
        &crate::browser::random_bytes::<32>().map_err(|e| VerifyError::Sampling(e.to_string()))?,
    );
    let net = |e: JobClientError| VerifyError::Sampling(e.to_string());
    // The relay keeps the checkpoint states after the result, so a stream that breaks while we
    // fetch them (a connection lost and re-established) is re-attached and asked again.
    let mut attempt = 0;
    // Not reusable while sample requests are pending on the stream.
    result.reusable = false;
    let (states, proof) = loop {
        match fetch_samples(&mut result.stream, &plan, on_progress).await {
            Ok(fetched) => break fetched,
            Err(SampleFetch::Check(e)) => return Err(e),
            Err(SampleFetch::Net(e)) if attempt >= SAMPLE_REATTACH_ATTEMPTS => return Err(net(e)),
            Err(SampleFetch::Net(e)) => {
                attempt += 1;
                on_progress(VerifyProgress::Reattaching {
                    attempt,
                    reason: e.to_string(),
                });
                TimeoutFuture::new(1000).await;
                if let Err(e) = reattach(result).await {
                    on_progress(VerifyProgress::Reattaching {
                        attempt,
                        reason: e.to_string(),
                    });
                }
            }
        }
    };
    result.reusable = true;
    Ok((plan, states, proof))
}

const SAMPLE_REATTACH_ATTEMPTS: u32 = 5;

enum SampleFetch {
    Net(JobClientError),
    Check(VerifyError),
}

/// Asks for the sampled states and the proof on the result's stream; only states the plan
/// names are taken, each once (what they hold is checked with the rest).
async fn fetch_samples(
    stream: &mut Stream,
    plan: &SamplePlan,
    on_progress: &dyn Fn(VerifyProgress),
) -> Result<(Vec<(u64, SparseSnapshot)>, Vec<u8>), SampleFetch> {
    send(
        stream,
        &ClientMsg::Sample {
            states: plan.states.clone(),
            prove: plan.prove.clone(),
        },
    )
    .await
    .map_err(SampleFetch::Net)?;
    let total = plan.states.len();
    let mut states: Vec<(u64, SparseSnapshot)> = Vec::with_capacity(total);
    loop {
        match receive(stream).await.map_err(SampleFetch::Net)? {
            RelayMsg::State { index, state } => {
                if !plan.states.contains(&index) || states.iter().any(|(i, _)| *i == index) {
                    return Err(SampleFetch::Check(VerifyError::Sampling(format!(
                        "unexpected state {index}"
                    ))));
                }
                states.push((index, state));
                on_progress(VerifyProgress::FetchingStates {
                    received: states.len(),
                    total,
                });
            }
            RelayMsg::Proof { proof } => return Ok((states, proof)),
            other => {
                return Err(SampleFetch::Check(VerifyError::Sampling(
                    unexpected(other).to_string(),
                )));
            }
        }
    }
}

/// Opens a new stream to the relay and attaches to the finished job: the relay restates the
/// result, which must be the one we hold.
async fn reattach(result: &mut JobResult) -> Result<(), JobClientError> {
    let mut stream = open(&mut result.control, result.relay).await?;
    send(&mut stream, &ClientMsg::Attach { job: result.job }).await?;
    loop {
        match receive(&mut stream).await? {
            RelayMsg::Accepted { .. } | RelayMsg::Progress { .. } => {}
            RelayMsg::Done { receipt, .. } if *receipt == result.receipt => {
                result.stream = stream;
                return Ok(());
            }
            RelayMsg::Done { .. } => {
                return Err(JobClientError::Protocol(
                    "after re-attaching, the relay returned a different receipt".into(),
                ));
            }
            other => return Err(unexpected(other)),
        }
    }
}

/// Limits a page applies before it even asks a relay.
pub fn check_input(input: &[u8]) -> Result<(), String> {
    if input.len() > crate::job::MAX_INPUT_BYTES {
        return Err(format!(
            "the input is {} bytes; at most {} are accepted",
            input.len(),
            crate::job::MAX_INPUT_BYTES
        ));
    }
    Ok(())
}

/// A job the user wants run: a module (an example's or an uploaded file's) and its input.
pub struct Order {
    /// The example's name or the uploaded file's name, for the history.
    pub name: String,
    pub module: Vec<u8>,
    pub input: Vec<u8>,
    pub fuel_limit: u64,
    /// Step jobs: the most steps the relay may run.
    pub max_steps: u32,
    /// The voucher paying the relay, where it charges (see [`crate::ledger::pay`]).
    pub payment: Option<Signed<crate::ledger::Voucher>>,
    /// The price the voucher pays (the offer's price for the fuel limit).
    pub price: crate::ledger::Amount,
    /// How long the signed request stays valid: [`REQUEST_TTL_MS`], or less where the network
    /// governs a shorter `max_job_ttl_ms`.
    pub ttl_ms: u64,
}

/// Where a job stands, for the page.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Preparing,
    Submitting,
    Uploading,
    Running,
    Verifying,
}

impl Stage {
    /// The status word tests and people read (`data-testid="job-status"`).
    pub fn label(&self) -> &'static str {
        match self {
            Stage::Preparing => "preparing",
            Stage::Submitting => "submitting",
            Stage::Uploading => "uploading",
            Stage::Running => "running",
            Stage::Verifying => "verifying",
        }
    }
}

/// What [`run`] reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    Stage {
        stage: Stage,
        detail: String,
    },
    /// Fraction of the fuel limit used so far, per the relay's progress reports.
    Progress(f64),
    /// The relay's output arrived; it is shown as "unverified" until verification ends.
    Output(Vec<u8>),
}

/// Who signs and where the job goes.
pub struct Submitter<'a> {
    pub keypair: &'a crate::identity::Keypair,
    pub network_id: &'a str,
    pub control: libp2p_stream::Control,
    pub relay: PeerId,
    /// Where modules are prepared and results checked.
    pub engine: Engine<'a>,
}

/// Where a page validates and instruments job modules and checks results.
#[derive(Clone, Copy)]
pub enum Engine<'a> {
    /// In the app's worker, this script: it answers `prepare` and `check` requests (see
    /// `www/worker.js`), so that neither holds up the page, and the page's own bundle need not
    /// contain the module validator and instrumenter at all. A check the worker cannot make
    /// (it did not start) is made in the page; a module it cannot prepare is not submitted.
    Worker(&'a str),
    /// In the worker at this script, or with this function in this thread where the worker
    /// cannot be started (a page whose bundle has the validator and instrumenter anyway: the
    /// SDK's).
    WorkerElseHere(&'a str, PrepareFn),
    /// In this thread, with this function (normally [`crate::job::profile::prepare`]).
    Here(PrepareFn),
}

/// Validates and instruments a module in this thread ([`crate::job::profile::prepare`]).
pub type PrepareFn = fn(&[u8], &Profile) -> Result<Prepared, ModuleError>;

impl Engine<'_> {
    /// The worker script, if checks go to one.
    pub fn worker(&self) -> Option<&str> {
        match self {
            Engine::Worker(url) | Engine::WorkerElseHere(url, _) => Some(url),
            Engine::Here(_) => None,
        }
    }

    /// Validates and instruments `module` under [`Profile::V1`]; the error says why it cannot
    /// run (or that the worker could not be asked).
    pub async fn prepare(&self, module: &[u8]) -> Result<Prepared, String> {
        match self {
            Engine::Here(prepare) => prepare(module, &Profile::V1).map_err(|e| e.to_string()),
            Engine::Worker(url) => prepare_in_worker(url, module)
                .await
                .map_err(|e| e.unwrap_or_else(|reason| reason)),
            Engine::WorkerElseHere(url, prepare) => match prepare_in_worker(url, module).await {
                Err(Err(reason)) => {
                    web_sys::console::warn_1(
                        &format!("preparing the job's module on the main thread: {reason}").into(),
                    );
                    prepare(module, &Profile::V1).map_err(|e| e.to_string())
                }
                other => other.map_err(|e| e.unwrap_or_else(|reason| reason)),
            },
        }
    }
}

/// A module's preparation may take a moment for a big module; a worker that said nothing for
/// this long is given up.
const PREPARE_WORKER_STALL_MS: u32 = 60 * 1000;

/// The module prepared by the worker at `url`; `Err(Ok)` says why it cannot run, `Err(Err)` why
/// the worker could not be asked.
async fn prepare_in_worker(url: &str, module: &[u8]) -> Result<Prepared, Result<String, String>> {
    use crate::browser::{WorkerError, call_worker_bytes};
    match call_worker_bytes(
        url,
        "prepare",
        "module",
        module,
        &|_| {},
        PREPARE_WORKER_STALL_MS,
    )
    .await
    {
        Ok(bytes) => decode::<Prepared>(&bytes, bytes.len())
            .map_err(|e| Err(format!("the worker's prepared module does not decode: {e}"))),
        Err(WorkerError::Unavailable(reason)) => Err(Err(format!(
            "the worker, which checks modules, could not be asked: {reason}"
        ))),
        Err(failed) => Err(Ok(failed.message())),
    }
}

/// The worker's `prepare` (see [`Engine::Worker`]): the encoded [`Prepared`] module, or why it
/// cannot run.
pub fn prepare_here(module: &[u8]) -> Result<Vec<u8>, String> {
    crate::job::profile::prepare(module, &Profile::V1)
        .map(|prepared| encode(&prepared))
        .map_err(|e| e.to_string())
}

/// The failed check of a job whose payment the relay refused (the voucher was not taken).
pub const PAYMENT_REFUSED: &str = "payment";
/// The failed check of a job the relay failed to run: not charged (see
/// [`crate::job::JobFailure::charged`]); the voucher's increment is not kept.
pub const NOT_CHARGED: &str = "relay";

/// How long a signed job request stays valid.
pub const REQUEST_TTL_MS: u64 = 5 * 60 * 1000;

/// The signed request for `order`, paid by `payment`.
fn request_for(
    keypair: &crate::identity::Keypair,
    network_id: &str,
    module: Hash,
    order: &Order,
    payment: Option<Signed<crate::ledger::Voucher>>,
    now_ms: u64,
    nonce: u64,
) -> JobRequest {
    Signed::sign(
        keypair,
        crate::envelope::Request::new(
            network_id,
            nonce,
            now_ms,
            order.ttl_ms,
            crate::job::JobSpec {
                module,
                input: order.input.clone(),
                fuel_limit: order.fuel_limit,
                max_steps: order.max_steps,
                payment: payment.map(Box::new),
            },
        ),
    )
}

/// [`request_for`] a prepared module.
pub(crate) fn sign_request(
    keypair: &crate::identity::Keypair,
    network_id: &str,
    prepared: &Prepared,
    order: &Order,
    payment: Option<Signed<crate::ledger::Voucher>>,
    now_ms: u64,
    nonce: u64,
) -> JobRequest {
    request_for(
        keypair,
        network_id,
        prepared.module_hash,
        order,
        payment,
        now_ms,
        nonce,
    )
}

/// Validates the module, signs the request, submits it, follows it, verifies the result and
/// returns the history record: every ending (verified, failed at a named step, cancelled) is a
/// record, so the page has one thing to show and to store. `now_ms` is Unix time and `nonce`
/// fresh randomness, both from the caller.
pub async fn run(
    submitter: Submitter<'_>,
    order: Order,
    now_ms: u64,
    nonce: u64,
    cancel: &Cancel,
    on: &dyn Fn(RunEvent),
) -> crate::job::history::JobRecord {
    use crate::job::history::{Outcome, RecordBase};
    let stage = |stage: Stage, detail: String| on(RunEvent::Stage { stage, detail });
    stage(
        Stage::Preparing,
        format!("checking the module ({} bytes)", order.module.len()),
    );
    let prepared = submitter.engine.prepare(&order.module).await;
    let module_hash = prepared
        .as_ref()
        .map_or_else(|_| Hash::of(&order.module), |p| p.module_hash);
    let request = request_for(
        submitter.keypair,
        submitter.network_id,
        module_hash,
        &order,
        order.payment.clone(),
        now_ms,
        nonce,
    );
    let base = RecordBase {
        job: crate::job::job_id(&request),
        account: submitter.keypair.public(),
        submitted_ms: now_ms,
        name: order.name.clone(),
        module: module_hash,
        input: order.input.clone(),
        fuel_limit: order.fuel_limit,
        relay: submitter.relay.to_string(),
        paid: order.payment.as_ref().map(|_| order.price),
    };
    let failed = |check: &str, reason: String| Outcome::Failed {
        check: check.to_owned(),
        reason,
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return base.ended(failed("module", e)),
    };
    if let Err(e) = check_input(&order.input) {
        return base.ended(failed("input", e));
    }
    stage(Stage::Submitting, format!("job {}", base.job));
    let fuel_limit = order.fuel_limit.max(1);
    let on_event = |event: JobEvent| match event {
        JobEvent::Uploading { bytes } => stage(
            Stage::Uploading,
            format!("the relay does not have this module yet: sending {bytes} bytes"),
        ),
        JobEvent::Accepted {
            job,
            queue_position,
        } => stage(
            Stage::Running,
            format!("job {job} accepted ({queue_position} ahead in the queue)"),
        ),
        JobEvent::Progress {
            fuel_used,
            checkpoints,
        } => {
            on(RunEvent::Progress(fuel_used as f64 / fuel_limit as f64));
            stage(
                Stage::Running,
                format!("{fuel_used} fuel used, {checkpoints} checkpoints"),
            );
        }
        JobEvent::Reattaching { attempt, reason } => stage(
            Stage::Running,
            format!("{reason}; re-attaching (attempt {attempt})"),
        ),
        JobEvent::Cancelling => stage(Stage::Running, "asking the relay to stop the job".into()),
    };
    let mut control = submitter.control;
    let relay = submitter.relay;
    let worker = submitter.engine.worker();
    let mut result = match submit(
        &mut control,
        relay,
        &request,
        &order.module,
        cancel,
        &on_event,
    )
    .await
    {
        Ok(result) => result,
        Err(JobClientError::Failed(JobFailure::Cancelled)) => {
            return base.ended(Outcome::Cancelled);
        }
        Err(JobClientError::Refused {
            reason: Refusal::Payment,
            message,
        }) => return base.ended(failed(PAYMENT_REFUSED, message)),
        Err(JobClientError::Failed(failure)) if !failure.charged() => {
            return base.ended(failed(NOT_CHARGED, failure.to_string()));
        }
        Err(e) => return base.ended(failed("execution", e.to_string())),
    };
    if cancel.is_requested() {
        return base.ended(Outcome::Cancelled);
    }
    on(RunEvent::Progress(1.0));
    on(RunEvent::Output(result.output.clone()));
    stage(Stage::Verifying, "checking the receipt".into());
    let on_progress = |p: VerifyProgress| stage(Stage::Verifying, describe(&p));
    let started = crate::browser::now_ms();
    let verified = verify(
        &mut result,
        &request,
        &prepared,
        &order.module,
        &relay,
        worker,
        &on_progress,
    )
    .await;
    let verify_ms = crate::browser::now_ms() - started;
    crate::browser::measure("aqueduct:job-verify", started, started + verify_ms);
    let (output, receipt, run_ms) = result.finish();
    match verified {
        Ok(verified) => base.ended(Outcome::Verified {
            output,
            receipt: Box::new(receipt),
            checks: verified.checks,
            level: crate::job::history::Level::of(&verified.strength),
            run_ms,
            verify_ms: verify_ms.round() as u64,
        }),
        Err(e) => base.ended(failed(e.check(), e.to_string())),
    }
}

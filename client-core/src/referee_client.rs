//! Refereed jobs from the browser (wasm32, feature `browser`): the same job sent to two
//! providers with different stake owners, their answers compared, and — when they differ — a
//! bisection over their signed commitments ([`crate::job::referee::referee`]) that names the
//! one that lied and hands back the fraud proof that shows it to the ledger.
//!
//! Each provider gets its own signed request (each carries its own voucher, so each is paid by
//! its own channel); module, input, fuel limit and step limit are the same, so the traces must
//! be. A provider that fails, whose receipt does not check, or that stops answering while the
//! referee asks, is named, and the page falls back to checking the other's result itself.

use crate::encoding::{decode, encode};
use crate::hash::Hash;
use crate::job::exec::{JobError, SegmentRun, SparseSnapshot};
use crate::job::fraud::{FraudProof, MAX_FRAUD_PROOF_BYTES};
use crate::job::history::{JobRecord, Level, Outcome, RecordBase};
use crate::job::profile::{JobForm, Prepared};
use crate::job::referee::{self, Next, Questions, Refereed, Side, Verdict};
use crate::job::verify;
use crate::job::{ClientMsg, JobRequest, RelayMsg};
use crate::job_client::{
    Cancel, JobEvent, JobResult, Order, RunEvent, Stage, Submitter, VerifyProgress, receive_within,
    send, sign_request, submit, verify as check_alone,
};
use crate::js_engine::JsJob;
use crate::ledger::{Amount, Voucher};
use crate::signed::Signed;
use futures::future::join;
use libp2p::PeerId;

/// The second provider of a refereed job, and how it is paid.
pub struct Second {
    pub relay: PeerId,
    pub payment: Option<Signed<Voucher>>,
    pub price: Amount,
}

/// A provider proven to have lied, with the proof ready to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct FraudReport {
    pub provider: PeerId,
    pub segment: u64,
    pub why: String,
    pub proof: FraudProof,
    /// Its encoded size, against [`MAX_FRAUD_PROOF_BYTES`].
    pub bytes: usize,
}

/// What a refereed run ends with: the history record, and fraud proofs for every liar.
pub struct RefereedRun {
    pub record: JobRecord,
    pub fraud: Vec<FraudReport>,
}

/// How long the referee waits for one answer before it calls the provider gone.
const QUESTION_TIMEOUT_MS: u32 = 20_000;

/// The two providers' result streams, as the bisection asks them.
struct Streams<'a> {
    results: [&'a mut JobResult; 2],
    on: &'a dyn Fn(RunEvent),
}

fn index(side: Side) -> usize {
    usize::from(side == Side::B)
}

/// One `Leaves` question on one provider's stream.
async fn ask_leaf(result: &mut JobResult, at: u64) -> Result<(Hash, Vec<u8>), String> {
    let stream = result.stream_mut();
    send(stream, &ClientMsg::Leaves { indices: vec![at] })
        .await
        .map_err(|e| e.to_string())?;
    match receive_within(stream, QUESTION_TIMEOUT_MS)
        .await
        .map_err(|e| e.to_string())?
    {
        RelayMsg::Leaves { hashes, proof } if hashes.len() == 1 => Ok((hashes[0], proof)),
        RelayMsg::Refused { message, .. } => Err(format!("it refused: {message}")),
        _ => Err(format!("it did not answer for checkpoint {at}")),
    }
}

impl Questions for Streams<'_> {
    async fn leaf(&mut self, side: Side, at: u64) -> Result<(Hash, Vec<u8>), String> {
        ask_leaf(self.results[index(side)], at).await
    }

    async fn leaves(&mut self, at: u64) -> [Result<(Hash, Vec<u8>), String>; 2] {
        let [a, b] = &mut self.results;
        let (a, b) = join(ask_leaf(a, at), ask_leaf(b, at)).await;
        [a, b]
    }

    async fn state(&mut self, side: Side, at: u64) -> Result<SparseSnapshot, String> {
        let stream = self.results[index(side)].stream_mut();
        send(
            stream,
            &ClientMsg::Sample {
                states: vec![at],
                prove: vec![at],
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let state = match receive_within(stream, QUESTION_TIMEOUT_MS)
            .await
            .map_err(|e| e.to_string())?
        {
            RelayMsg::State { index: i, state } if i == at => state,
            RelayMsg::Refused { message, .. } => return Err(format!("it refused: {message}")),
            _ => return Err(format!("it did not send state {at}")),
        };
        match receive_within(stream, QUESTION_TIMEOUT_MS)
            .await
            .map_err(|e| e.to_string())?
        {
            RelayMsg::Proof { .. } => Ok(state),
            _ => Err("it did not end its answer".into()),
        }
    }

    fn progress(&mut self, rounds: u32, next: Next) {
        let detail = match next {
            Next::Leaf(i) => format!(
                "the providers disagree: bisecting, round {}: asking both for checkpoint {i}",
                rounds + 1
            ),
            Next::Judge { segment } => format!(
                "the providers part at segment {segment} (after {rounds} rounds): re-running it here"
            ),
        };
        (self.on)(RunEvent::Stage {
            stage: Stage::Verifying,
            detail,
        });
    }
}

fn peer_text(peer: &PeerId) -> String {
    peer.to_string()
}

/// Runs `order` on the submitter's relay and on `second`, and referees them. One-shot jobs are
/// re-executed in full instead (that is already complete verification): this is
/// [`crate::job_client::run`] for them.
#[allow(clippy::too_many_arguments)]
pub async fn run_refereed(
    submitter: Submitter<'_>,
    order: Order,
    second: Second,
    now_ms: u64,
    nonces: [u64; 2],
    cancel: &Cancel,
    on: &dyn Fn(RunEvent),
) -> RefereedRun {
    let stage = |stage: Stage, detail: String| on(RunEvent::Stage { stage, detail });
    stage(
        Stage::Preparing,
        format!("checking the module ({} bytes)", order.module.len()),
    );
    let prepared = match submitter.engine.prepare(&order.module).await {
        Ok(p) if p.form == JobForm::Steps => p,
        _ => {
            // One-shot (or refused) modules: the ordinary run re-executes or reports why not.
            let record =
                crate::job_client::run(submitter, order, now_ms, nonces[0], cancel, on).await;
            return RefereedRun {
                record,
                fraud: Vec::new(),
            };
        }
    };
    // The referee's re-runs (needed only if the providers disagree) go to the worker when
    // there is one; here, the module is compiled while the providers run.
    let here = match submitter.engine.worker() {
        Some(_) => None,
        None => match JsJob::compile(&prepared.code) {
            Ok(engine) => Some(engine),
            // This browser cannot run the module: the plain run says so in its verification.
            Err(_) => {
                let record =
                    crate::job_client::run(submitter, order, now_ms, nonces[0], cancel, on).await;
                return RefereedRun {
                    record,
                    fraud: Vec::new(),
                };
            }
        },
    };
    let peers = [submitter.relay, second.relay];
    let submitter_worker = submitter.engine.worker();
    let requests = [
        sign_request(
            submitter.keypair,
            submitter.network_id,
            &prepared,
            &order,
            order.payment.clone(),
            now_ms,
            nonces[0],
        ),
        sign_request(
            submitter.keypair,
            submitter.network_id,
            &prepared,
            &order,
            second.payment.clone(),
            now_ms,
            nonces[1],
        ),
    ];
    let mut base = RecordBase {
        job: crate::job::job_id(&requests[0]),
        account: submitter.keypair.public(),
        submitted_ms: now_ms,
        name: order.name.clone(),
        module: prepared.module_hash,
        input: order.input.clone(),
        fuel_limit: order.fuel_limit,
        relay: peer_text(&peers[0]),
        paid: order
            .payment
            .as_ref()
            .map(|_| order.price)
            .into_iter()
            .chain(second.payment.as_ref().map(|_| second.price))
            .reduce(|a, b| a.saturating_add(b)),
    };
    if let Err(e) = crate::job_client::check_input(&order.input) {
        return ended(base, failed("input", e));
    }
    stage(
        Stage::Submitting,
        format!("sending the job to {} and to {}", peers[0], peers[1]),
    );
    let events = |who: usize| {
        move |event: JobEvent| {
            let name = if who == 0 {
                "first provider"
            } else {
                "second provider"
            };
            let detail = match event {
                JobEvent::Uploading { bytes } => {
                    format!("{name}: sending the module ({bytes} bytes)")
                }
                JobEvent::Accepted { queue_position, .. } => {
                    format!("{name}: accepted ({queue_position} ahead in its queue)")
                }
                JobEvent::Progress {
                    fuel_used,
                    checkpoints,
                } => {
                    if who == 0 {
                        on(RunEvent::Progress(
                            fuel_used as f64 / order.fuel_limit.max(1) as f64,
                        ));
                    }
                    format!("{name}: {fuel_used} fuel used, {checkpoints} checkpoints")
                }
                JobEvent::Reattaching { attempt, reason } => {
                    format!("{name}: {reason}; re-attaching (attempt {attempt})")
                }
                JobEvent::Cancelling => format!("{name}: asking it to stop"),
            };
            on(RunEvent::Stage {
                stage: Stage::Running,
                detail,
            });
        }
    };
    let (on_a, on_b) = (events(0), events(1));
    let (mut control_a, mut control_b) = (submitter.control.clone(), submitter.control.clone());
    let (a, b) = join(
        submit(
            &mut control_a,
            peers[0],
            &requests[0],
            &order.module,
            cancel,
            &on_a,
        ),
        submit(
            &mut control_b,
            peers[1],
            &requests[1],
            &order.module,
            cancel,
            &on_b,
        ),
    )
    .await;
    if cancel.is_requested() {
        return ended(base, Outcome::Cancelled);
    }
    on(RunEvent::Progress(1.0));
    stage(Stage::Verifying, "checking both receipts".into());
    let started = crate::browser::now_ms();
    // Each provider's result and receipt checks, or why it has none.
    let checked = |result: Result<JobResult, crate::job_client::JobClientError>,
                   request: &JobRequest,
                   peer: &PeerId| {
        let result = result.map_err(|e| e.to_string())?;
        let checks = verify::check_receipt(
            request,
            &prepared,
            &result.output,
            &result.receipt,
            Some(peer),
        )
        .map_err(|e| format!("its receipt does not check: {e}"))?;
        Ok::<_, String>((result, checks))
    };
    let a = checked(a, &requests[0], &peers[0]);
    let b = checked(b, &requests[1], &peers[1]);
    let (mut a, mut b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(ea), Err(eb)) => {
            return ended(
                base,
                failed(
                    "execution",
                    format!(
                        "neither provider gave a result: {} — {ea}; {} — {eb}",
                        peers[0], peers[1]
                    ),
                ),
            );
        }
        (Ok(a), Err(e)) => {
            let note = format!(
                "refereeing needed both providers, but {} gave no usable result ({e})",
                peers[1]
            );
            return alone(
                base,
                a.0,
                &requests[0],
                &prepared,
                &order.module,
                peers[0],
                submitter_worker,
                note,
                on,
            )
            .await;
        }
        (Err(e), Ok(b)) => {
            let note = format!(
                "refereeing needed both providers, but {} gave no usable result ({e})",
                peers[0]
            );
            second_is_shown(&mut base, &peers, &requests);
            return alone(
                base,
                b.0,
                &requests[1],
                &prepared,
                &order.module,
                peers[1],
                submitter_worker,
                note,
                on,
            )
            .await;
        }
    };
    on(RunEvent::Output(a.0.output.clone()));
    let receipts = [a.0.receipt.body.clone(), b.0.receipt.body.clone()];
    let spec = requests[0].body.body.clone();
    let (refereed, reran) = {
        let mut streams = Streams {
            results: [&mut a.0, &mut b.0],
            on,
        };
        let rerun = Reruns {
            worker: submitter_worker,
            module: &order.module,
            prepared: &prepared,
            here: std::cell::RefCell::new(here),
            place: std::cell::RefCell::new(None),
        };
        let refereed = referee::referee_with(
            &rerun,
            &prepared,
            &spec,
            [&receipts[0], &receipts[1]],
            &mut streams,
        )
        .await;
        (refereed, rerun.place.into_inner())
    };
    let referee_ms = (crate::browser::now_ms() - started).round() as u64;
    crate::browser::measure("aqueduct:job-referee", started, started + referee_ms as f64);
    let segments = receipts[0]
        .commitment
        .map_or(0, |c| c.checkpoints.saturating_sub(1));
    let run_ms = a.0.run_ms.max(b.0.run_ms);
    let refereed = match refereed {
        Ok(r) => r,
        Err(e) => return ended(base, failed("referee", e.to_string())),
    };
    let results = [a, b];
    match refereed {
        Refereed::Verdict {
            verdict: Verdict::Agree,
            ..
        } => {
            let [(result, mut checks), (_, checks_b)] = results;
            checks.extend(
                checks_b
                    .into_iter()
                    .map(|c| format!("second provider: {c}")),
            );
            checks.push(format!(
                "{} and {} — providers with different stakes — returned the same output, fuel and checkpoint root over {segments} segments: correct unless both lied",
                peers[0], peers[1]
            ));
            ended(
                base,
                Outcome::Verified {
                    output: result.output,
                    receipt: Box::new(result.receipt),
                    checks,
                    level: Level::Refereed {
                        second: peer_text(&peers[1]),
                        segments,
                        rounds: 0,
                        liar: None,
                        referee_ms,
                    },
                    run_ms,
                    verify_ms: referee_ms,
                },
            )
            .into_refereed(Vec::new())
        }
        Refereed::Verdict {
            verdict:
                Verdict::Lied {
                    liars,
                    segment,
                    why,
                },
            rounds,
            claims,
        } => {
            let fraud: Vec<FraudReport> = claims
                .into_iter()
                .map(|(side, claim)| {
                    let i = index(side);
                    let proof = FraudProof {
                        receipt: results[i].0.receipt.clone(),
                        request: requests[i].clone(),
                        module: order.module.clone(),
                        claim,
                    };
                    let bytes = encode(&proof).len();
                    FraudReport {
                        provider: peers[i],
                        segment,
                        why: why.clone(),
                        proof,
                        bytes,
                    }
                })
                .collect();
            if liars.len() != 1 {
                return ended(
                    base,
                    failed(
                        "referee",
                        format!("both providers lied at segment {segment}: {why}"),
                    ),
                )
                .into_refereed(fraud);
            }
            let liar = liars[0];
            let honest = index(liar) ^ 1;
            let honest_peer = peers[honest];
            let [first, second_result] = results;
            let (result, mut checks) = if honest == 0 { first } else { second_result };
            if honest == 1 {
                second_is_shown(&mut base, &peers, &requests);
            }
            let reran = reran.unwrap_or_else(|| "re-run here".into());
            checks.push(format!(
                "the two providers disagreed; {rounds} rounds of bisection over their signed checkpoints found segment {segment}, {reran}: {} lied ({why})",
                peers[index(liar)]
            ));
            checks.push(format!(
                "{honest_peer}'s trace follows through that segment: its result is taken — correct unless it lied too"
            ));
            ended(
                base,
                Outcome::Verified {
                    output: result.output,
                    receipt: Box::new(result.receipt),
                    checks,
                    level: Level::Refereed {
                        second: peer_text(&peers[index(liar)]),
                        segments,
                        rounds,
                        liar: Some((peer_text(&peers[index(liar)]), segment)),
                        referee_ms,
                    },
                    run_ms,
                    verify_ms: referee_ms,
                },
            )
            .into_refereed(fraud)
        }
        Refereed::Verdict {
            verdict: Verdict::Undecided(why),
            ..
        } => ended(base, failed("referee", why)).into_refereed(Vec::new()),
        Refereed::Stopped {
            side,
            reason,
            rounds,
        } => {
            let gone = peers[index(side)];
            let other = index(side) ^ 1;
            let note = format!(
                "refereeing stopped after {rounds} rounds: {gone} stopped answering ({reason}); checking the other provider's result here instead"
            );
            let [first, second_result] = results;
            let (result, _) = if other == 0 { first } else { second_result };
            if other == 1 {
                second_is_shown(&mut base, &peers, &requests);
            }
            alone(
                base,
                result,
                &requests[other],
                &prepared,
                &order.module,
                peers[other],
                submitter_worker,
                note,
                on,
            )
            .await
        }
    }
}

/// The record names the second provider's run: its relay and its job.
fn second_is_shown(base: &mut RecordBase, peers: &[PeerId; 2], requests: &[JobRequest; 2]) {
    base.relay = peer_text(&peers[1]);
    base.job = crate::job::job_id(&requests[1]);
}

fn failed(check: &str, reason: String) -> Outcome {
    Outcome::Failed {
        check: check.to_owned(),
        reason,
    }
}

fn ended(base: RecordBase, outcome: Outcome) -> RefereedRun {
    RefereedRun {
        record: base.ended(outcome),
        fraud: Vec::new(),
    }
}

impl RefereedRun {
    fn into_refereed(mut self, fraud: Vec<FraudReport>) -> Self {
        self.fraud = fraud;
        self
    }
}

/// The fallback: one provider's result checked as an unrefereed job is, with `note` saying
/// why.
#[allow(clippy::too_many_arguments)]
async fn alone(
    base: RecordBase,
    mut result: JobResult,
    request: &JobRequest,
    prepared: &Prepared,
    module: &[u8],
    relay: PeerId,
    worker: Option<&str>,
    note: String,
    on: &dyn Fn(RunEvent),
) -> RefereedRun {
    on(RunEvent::Output(result.output.clone()));
    on(RunEvent::Stage {
        stage: Stage::Verifying,
        detail: note.clone(),
    });
    let started = crate::browser::now_ms();
    let on_progress = |p: VerifyProgress| {
        on(RunEvent::Stage {
            stage: Stage::Verifying,
            detail: format!("{note} — {}", crate::job_client::describe(&p)),
        })
    };
    let checked = check_alone(
        &mut result,
        request,
        prepared,
        module,
        &relay,
        worker,
        &on_progress,
    )
    .await;
    let verify_ms = (crate::browser::now_ms() - started).round() as u64;
    match checked {
        Ok(verified) => {
            let mut checks = vec![note];
            checks.extend(verified.checks);
            ended(
                base,
                Outcome::Verified {
                    output: result.output,
                    receipt: Box::new(result.receipt),
                    checks,
                    level: Level::of(&verified.strength),
                    run_ms: result.run_ms,
                    verify_ms,
                },
            )
        }
        Err(e) => ended(base, failed(e.check(), format!("{note}; then: {e}"))),
    }
}

/// Whether a fraud proof fits a transaction.
pub fn fits(report: &FraudReport) -> bool {
    report.bytes + 1024 <= MAX_FRAUD_PROOF_BYTES
}

/// What the referee asks the worker to re-run (with the module).
#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
enum RerunTask {
    Initial {
        input: Vec<u8>,
        fuel_limit: u64,
    },
    Segment {
        pre: SparseSnapshot,
        fuel_limit: u64,
    },
}

/// The worker's answer to a [`RerunTask`].
#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
enum Rerun {
    Initial(Hash),
    Segment(SegmentRun),
}

/// The referee's re-runs: in the worker at `worker`, or — where there is none, or it could not
/// be started — in this page's engine. `place` says where the last one ran.
struct Reruns<'a> {
    worker: Option<&'a str>,
    module: &'a [u8],
    prepared: &'a Prepared,
    here: std::cell::RefCell<Option<JsJob>>,
    place: std::cell::RefCell<Option<String>>,
}

/// A re-run is one step of a job (and the job's `init` for checkpoint 0); a worker that said
/// nothing for this long is given up and the step re-run in the page.
const RERUN_WORKER_STALL_MS: u32 = 5 * 60 * 1000;

impl Reruns<'_> {
    async fn run(&self, task: RerunTask) -> Result<Rerun, JobError> {
        let mut why_here = "no worker was asked".to_owned();
        if let Some(url) = self.worker {
            match rerun_in_worker(url, self.module, &task).await {
                Ok(done) => {
                    *self.place.borrow_mut() =
                        Some("re-run in a Web Worker, off the page's main thread".into());
                    return done;
                }
                Err(reason) => {
                    web_sys::console::warn_1(
                        &format!("re-running the segment on the main thread: {reason}").into(),
                    );
                    why_here = reason;
                }
            }
        }
        *self.place.borrow_mut() = Some(format!("re-run on the page's main thread ({why_here})"));
        let mut here = self.here.borrow_mut();
        if here.is_none() {
            *here = Some(JsJob::compile(&self.prepared.code).map_err(JobError::Engine)?);
        }
        let engine = here
            .as_ref()
            .ok_or_else(|| JobError::Engine("no engine".into()))?;
        run_task(engine, self.prepared, task)
    }
}

impl referee::Rerun for Reruns<'_> {
    async fn initial(&self, input: &[u8], fuel_limit: u64) -> Result<Hash, JobError> {
        let task = RerunTask::Initial {
            input: input.to_vec(),
            fuel_limit,
        };
        match self.run(task).await? {
            Rerun::Initial(hash) => Ok(hash),
            Rerun::Segment(_) => Err(JobError::Engine(
                "the worker answered another question".into(),
            )),
        }
    }

    async fn segment(&self, pre: &SparseSnapshot, fuel_limit: u64) -> Result<SegmentRun, JobError> {
        let task = RerunTask::Segment {
            pre: pre.clone(),
            fuel_limit,
        };
        match self.run(task).await? {
            Rerun::Segment(run) => Ok(run),
            Rerun::Initial(_) => Err(JobError::Engine(
                "the worker answered another question".into(),
            )),
        }
    }
}

fn run_task(engine: &JsJob, prepared: &Prepared, task: RerunTask) -> Result<Rerun, JobError> {
    use crate::job::exec;
    match task {
        RerunTask::Initial { input, fuel_limit } => {
            exec::initial_state(engine, prepared, &input, fuel_limit).map(Rerun::Initial)
        }
        RerunTask::Segment { pre, fuel_limit } => {
            let fresh = exec::fresh_chunks(engine)?;
            exec::run_segment(engine, prepared, &pre, &fresh, fuel_limit).map(Rerun::Segment)
        }
    }
}

/// Asks the worker; `Err` says why it could not answer (the page then re-runs itself).
async fn rerun_in_worker(
    url: &str,
    module: &[u8],
    task: &RerunTask,
) -> Result<Result<Rerun, JobError>, String> {
    use crate::browser::call_worker_bytes;
    let payload = encode(&(module, task));
    let bytes = call_worker_bytes(
        url,
        "rerun",
        "task",
        &payload,
        &|_| {},
        RERUN_WORKER_STALL_MS,
    )
    .await
    .map_err(|e| e.message())?;
    decode::<Result<Rerun, JobError>>(&bytes, bytes.len())
        .map_err(|e| format!("the worker's answer does not decode: {e}"))
}

/// The worker's `rerun`: decodes a module and a re-run the referee asks for, makes it in this
/// thread's engine and returns the encoded outcome (a failed step is an outcome the referee
/// judges, not an error).
pub fn rerun_here(task: &[u8]) -> Result<Vec<u8>, String> {
    let (module, task): (Vec<u8>, RerunTask) =
        decode(task, task.len()).map_err(|e| format!("the re-run does not decode: {e}"))?;
    let outcome = crate::job::profile::prepare(&module, &crate::job::profile::Profile::V1)
        .map_err(|e| JobError::Engine(format!("the module does not prepare: {e}")))
        .and_then(|prepared| {
            let engine = JsJob::compile(&prepared.code).map_err(JobError::Engine)?;
            run_task(&engine, &prepared, task)
        });
    Ok(encode(&outcome))
}

//! Refereeing two providers, against real relay processes: the same signed step job goes to an
//! honest relay and to one that forges a single transition (and computes the rest honestly from
//! it — the cheater sampling catches only by chance). The referee bisects over the two signed
//! commitments with `Leaves` answers, re-runs the one segment where they part, and names the
//! liar every time, wherever the forged step is (first, middle, last); a relay whose trace is
//! honest but whose output is not is named at the last segment; two honest relays agree.

use aqueduct_tests::{
    Relay, RelayPorts, faulty_relay_bin, job_module, relay_bin, tcp_client, temp_dir, www_dir,
};
use client_core::encoding::{decode, encode};
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::identity::Keypair;
use client_core::job::exec::SparseSnapshot;
use client_core::job::fraud::{self, FraudError, FraudProof};
use client_core::job::profile::{self, Prepared, Profile};
use client_core::job::referee::{self, Next, Questions, Refereed, Side, Verdict};
use client_core::job::{
    ClientMsg, JOB_PROTOCOL, JobRequest, JobSpec, MAX_JOB_FRAME, Receipt, RelayMsg,
};
use client_core::protocol::DEV_NETWORK_ID;
use client_core::signed::Signed;
use client_core::wire::{read_frame, write_frame};
use libp2p::{Stream, StreamProtocol};
use node_relay::jobs::engine::{CompiledJob, JobEngine, fraud_judge};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const STEP: Duration = Duration::from_secs(60);
const STEPS: u64 = 1000;
const INPUT: &[u8] = b"1000 200 refereed";
const FUEL: u64 = 50_000_000_000;

async fn send(stream: &mut Stream, msg: &ClientMsg) -> anyhow::Result<()> {
    Ok(write_frame(stream, &encode(msg)).await?)
}

async fn receive(stream: &mut Stream) -> anyhow::Result<RelayMsg> {
    let frame = tokio::time::timeout(STEP, read_frame(stream, MAX_JOB_FRAME))
        .await??
        .ok_or_else(|| anyhow::anyhow!("the relay closed the stream"))?;
    Ok(decode::<RelayMsg>(&frame, MAX_JOB_FRAME)?)
}

/// One provider's run of the job: the stream (kept open for questions), receipt and time.
struct Answer {
    stream: Stream,
    receipt: Signed<Receipt>,
    run_ms: u64,
}

async fn run(relay: &Relay, request: &JobRequest, module: &[u8]) -> anyhow::Result<Answer> {
    let (mut control, peer) = tcp_client(relay).await?;
    let mut stream = control
        .open_stream(peer, StreamProtocol::new(JOB_PROTOCOL))
        .await?;
    send(
        &mut stream,
        &ClientMsg::Submit {
            request: request.clone(),
            module: Some(module.to_vec()),
        },
    )
    .await?;
    loop {
        match receive(&mut stream).await? {
            RelayMsg::Done {
                receipt, run_ms, ..
            } => {
                return Ok(Answer {
                    stream,
                    receipt: *receipt,
                    run_ms,
                });
            }
            RelayMsg::Accepted { .. } | RelayMsg::Progress { .. } => {}
            other => anyhow::bail!("the job did not run: {other:?}"),
        }
    }
}

async fn leaf(stream: &mut Stream, index: u64) -> anyhow::Result<(Hash, Vec<u8>)> {
    send(
        stream,
        &ClientMsg::Leaves {
            indices: vec![index],
        },
    )
    .await?;
    match receive(stream).await? {
        RelayMsg::Leaves { hashes, proof } if hashes.len() == 1 => Ok((hashes[0], proof)),
        other => anyhow::bail!("no leaf {index}: {other:?}"),
    }
}

async fn state(stream: &mut Stream, index: u64) -> anyhow::Result<SparseSnapshot> {
    send(
        stream,
        &ClientMsg::Sample {
            states: vec![index],
            prove: vec![index],
        },
    )
    .await?;
    let state = match receive(stream).await? {
        RelayMsg::State { index: i, state } if i == index => state,
        other => anyhow::bail!("no state {index}: {other:?}"),
    };
    match receive(stream).await? {
        RelayMsg::Proof { .. } => Ok(state),
        other => anyhow::bail!("no proof: {other:?}"),
    }
}

/// The two providers' job streams as the referee asks them; `stop_after` makes provider
/// `Side` unreachable (its relay killed) once that many rounds were answered.
struct Streams<'a> {
    answers: [&'a mut Answer; 2],
    stop: Option<(Side, u32, &'a mut Relay)>,
}

impl Questions for Streams<'_> {
    async fn leaf(&mut self, side: Side, index: u64) -> Result<(Hash, Vec<u8>), String> {
        let i = usize::from(side == Side::B);
        leaf(&mut self.answers[i].stream, index)
            .await
            .map_err(|e| e.to_string())
    }

    async fn state(&mut self, side: Side, index: u64) -> Result<SparseSnapshot, String> {
        let i = usize::from(side == Side::B);
        state(&mut self.answers[i].stream, index)
            .await
            .map_err(|e| e.to_string())
    }

    fn progress(&mut self, rounds: u32, _next: Next) {
        if let Some((_, after, relay)) = &mut self.stop
            && rounds >= *after
        {
            relay.kill();
        }
    }
}

/// Referees two answers to `request` with the page's own driver.
async fn referee(
    job: &CompiledJob,
    prepared: &Prepared,
    request: &JobRequest,
    a: &mut Answer,
    b: &mut Answer,
    stop: Option<(Side, u32, &mut Relay)>,
) -> anyhow::Result<Refereed> {
    let receipts = [a.receipt.body.clone(), b.receipt.body.clone()];
    let mut streams = Streams {
        answers: [a, b],
        stop,
    };
    Ok(referee::referee(
        job,
        prepared,
        &request.body.body,
        [&receipts[0], &receipts[1]],
        &mut streams,
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_referee_names_a_relay_that_forged_one_step_wherever_it_is() -> anyhow::Result<()> {
    let www = www_dir()?;
    let module = job_module("hash-chain")?;
    let prepared = profile::prepare(&module, &Profile::V1)?;
    let engine = JobEngine::new()?;
    let compiled = engine.compile(&prepared.code).map_err(anyhow::Error::msg)?;
    let job = CompiledJob::new(compiled.bounded, &Profile::V1);
    let customer = Keypair::from_seed(&[21; 32]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let mut nonce = 0;
    let mut request = || {
        nonce += 1;
        Signed::sign(
            &customer,
            Request::new(
                DEV_NETWORK_ID,
                nonce,
                now,
                600_000,
                JobSpec {
                    module: prepared.module_hash,
                    input: INPUT.to_vec(),
                    fuel_limit: FUEL,
                    max_steps: STEPS as u32,
                    payment: None,
                },
            ),
        )
    };
    let honest_dir = temp_dir("referee-honest");
    let honest = Relay::start(&relay_bin()?, &www, &honest_dir, &RelayPorts::any())?;

    // Two honest providers agree.
    let second_dir = temp_dir("referee-second");
    let second = Relay::start(&relay_bin()?, &www, &second_dir, &RelayPorts::any())?;
    let req = request();
    let mut a = run(&honest, &req, &module).await?;
    let mut b = run(&second, &req, &module).await?;
    match referee(&job, &prepared, &req, &mut a, &mut b, None).await? {
        Refereed::Verdict {
            verdict: Verdict::Agree,
            rounds: 0,
            claims,
        } => assert!(claims.is_empty()),
        other => panic!("two honest relays: {other:?}"),
    }
    drop(second);

    // A forged step at the first, a middle and the last segment; the liar on either side.
    let judge = fraud_judge()?;
    let faulty_dir = temp_dir("referee-faulty");
    for (fault, at, liar_side) in [
        ("fabricate-step", 1, Side::B),
        ("fabricate-step", 437, Side::A),
        ("fabricate-step", STEPS, Side::B),
        ("wrong-output", STEPS, Side::A),
    ] {
        let _ = std::fs::remove_dir_all(&faulty_dir);
        let liar = Relay::start_with(
            &faulty_relay_bin()?,
            &www,
            &faulty_dir,
            &RelayPorts::any(),
            &["--faulty", fault, "--fault-step", &at.to_string()],
        )?;
        let req = request();
        let mut good = run(&honest, &req, &module).await?;
        let mut bad = run(&liar, &req, &module).await?;
        let started = Instant::now();
        let refereed = match liar_side {
            Side::A => referee(&job, &prepared, &req, &mut bad, &mut good, None).await?,
            Side::B => referee(&job, &prepared, &req, &mut good, &mut bad, None).await?,
        };
        let took = started.elapsed();
        let Refereed::Verdict {
            verdict,
            rounds,
            claims,
        } = refereed
        else {
            panic!("{fault} at {at}: {refereed:?}");
        };
        eprintln!(
            "{fault} at {at}: {verdict:?} after {rounds} rounds; refereeing took {} ms \
             (question round trips and one segment re-run), the relay ran the job in {} ms",
            took.as_millis(),
            good.run_ms
        );
        match verdict {
            Verdict::Lied { liars, segment, .. } => {
                assert_eq!(liars, vec![liar_side], "{fault} at {at}");
                assert_eq!(segment, at, "{fault}: the segment named");
            }
            other => panic!("{fault} at {at}: {other:?}"),
        }
        // log₂(1000) rounds and a few more: never a walk through the trace.
        assert!(rounds <= 14, "{rounds} rounds");
        // The claim, made from the liar's own signed answers, is a fraud proof the relay's
        // judge accepts; the same claim against the honest receipt is refused.
        let [(side, claim)] = claims.as_slice() else {
            panic!("one claim for one liar: {claims:?}");
        };
        assert_eq!(*side, liar_side);
        let proof = FraudProof {
            receipt: bad.receipt.clone(),
            request: req.clone(),
            module: module.clone(),
            claim: claim.clone(),
        };
        let proven = fraud::judge(&proof.check_evidence()?, judge.as_ref())?;
        assert_eq!((proven.segment, proven.provider), (at, bad.receipt.signer));
        let against_honest = FraudProof {
            receipt: good.receipt.clone(),
            ..proof
        };
        assert!(
            matches!(
                against_honest
                    .check_evidence()
                    .map(|e| fraud::judge(&e, judge.as_ref())),
                Err(FraudError::NotCommitted) | Ok(Err(FraudError::Honest { .. }))
            ),
            "a claim against the honest receipt proves nothing"
        );
        drop(liar);
    }

    // A liar that stops answering in the middle of the bisection: named, no verdict.
    let _ = std::fs::remove_dir_all(&faulty_dir);
    let mut liar = Relay::start_with(
        &faulty_relay_bin()?,
        &www,
        &faulty_dir,
        &RelayPorts::any(),
        &["--faulty", "fabricate-step", "--fault-step", "700"],
    )?;
    let req = request();
    let mut good = run(&honest, &req, &module).await?;
    let mut bad = run(&liar, &req, &module).await?;
    let refereed = referee(
        &job,
        &prepared,
        &req,
        &mut good,
        &mut bad,
        Some((Side::B, 4, &mut liar)),
    )
    .await?;
    match refereed {
        Refereed::Stopped {
            side,
            rounds,
            reason,
        } => {
            eprintln!("the liar stopped answering after {rounds} rounds: {reason}");
            assert_eq!(side, Side::B);
            assert!(rounds >= 4, "{rounds}");
        }
        other => panic!("a provider that stops answering: {other:?}"),
    }
    drop(liar);
    drop(honest);
    for dir in [honest_dir, second_dir, faulty_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

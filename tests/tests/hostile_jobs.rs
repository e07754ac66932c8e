//! `/aqueduct/job/1` against a real relay, from a native libp2p client: hostile modules and
//! requests each get their own clear error and the relay keeps serving; results survive a
//! restart; a job in flight when the relay is killed ends as a clear failure, never a hang.

use aqueduct_tests::{Relay, RelayPorts, job_module, relay_bin, tcp_client, temp_dir, www_dir};
use client_core::encoding::{decode, encode};
use client_core::envelope::Request;
use client_core::hash::Hash;
use client_core::identity::Keypair;
use client_core::job::exec::JobError;
use client_core::job::{
    ClientMsg, JOB_PROTOCOL, JobFailure, JobSpec, MAX_JOB_FRAME, Refusal, RelayMsg,
};
use client_core::protocol::DEV_NETWORK_ID;
use client_core::signed::Signed;
use client_core::wire::{read_frame, write_frame};
use libp2p::{PeerId, Stream, StreamProtocol};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const STEP: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Client {
    control: libp2p_stream::Control,
    relay: PeerId,
    key: Keypair,
    nonce: u64,
}

impl Client {
    async fn connect(relay: &Relay, seed: u8) -> anyhow::Result<Client> {
        let (control, relay) = tcp_client(relay).await?;
        Ok(Client {
            control,
            relay,
            key: Keypair::from_seed(&[seed; 32]),
            nonce: 0,
        })
    }

    async fn open(&mut self) -> anyhow::Result<Stream> {
        Ok(tokio::time::timeout(
            STEP,
            self.control
                .open_stream(self.relay, StreamProtocol::new(JOB_PROTOCOL)),
        )
        .await??)
    }

    fn request(&mut self, module: &[u8], input: &[u8], fuel: u64) -> client_core::job::JobRequest {
        self.nonce += 1;
        let spec = JobSpec {
            module: Hash::of(module),
            input: input.to_vec(),
            fuel_limit: fuel,
            max_steps: client_core::job::exec::MAX_STEPS,
            payment: None,
        };
        Signed::sign(
            &self.key,
            Request::new(DEV_NETWORK_ID, self.nonce, now_ms(), 60_000, spec),
        )
    }

    /// Submits (with the module bytes) and returns every message until the stream's last.
    async fn run(
        &mut self,
        request: client_core::job::JobRequest,
        module: &[u8],
    ) -> anyhow::Result<Vec<RelayMsg>> {
        let mut stream = self.open().await?;
        send(
            &mut stream,
            &ClientMsg::Submit {
                request,
                module: Some(module.to_vec()),
            },
        )
        .await?;
        until_end(&mut stream).await
    }
}

async fn send(stream: &mut Stream, msg: &ClientMsg) -> anyhow::Result<()> {
    Ok(write_frame(stream, &encode(msg)).await?)
}

async fn receive(stream: &mut Stream) -> anyhow::Result<Option<RelayMsg>> {
    let frame = tokio::time::timeout(STEP, read_frame(stream, MAX_JOB_FRAME)).await??;
    Ok(match frame {
        Some(frame) => Some(decode::<RelayMsg>(&frame, MAX_JOB_FRAME)?),
        None => None,
    })
}

/// Reads until a final message (Done, Failed, Refused) or the end of the stream.
async fn until_end(stream: &mut Stream) -> anyhow::Result<Vec<RelayMsg>> {
    let mut all = Vec::new();
    while let Some(msg) = receive(stream).await? {
        let last = matches!(
            msg,
            RelayMsg::Done { .. } | RelayMsg::Failed { .. } | RelayMsg::Refused { .. }
        );
        all.push(msg);
        if last {
            break;
        }
    }
    Ok(all)
}

fn last(msgs: &[RelayMsg]) -> &RelayMsg {
    msgs.last().expect("the relay answered")
}

fn refusal(msgs: &[RelayMsg]) -> Option<(Refusal, String)> {
    match last(msgs) {
        RelayMsg::Refused { reason, message } => Some((*reason, message.clone())),
        _ => None,
    }
}

fn failure(msgs: &[RelayMsg]) -> Option<JobFailure> {
    match last(msgs) {
        RelayMsg::Failed { failure, .. } => Some(failure.clone()),
        _ => None,
    }
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test module parses")
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_modules_and_requests_get_clear_errors_and_the_relay_keeps_serving()
-> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("hostile-jobs");
    let relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let result = hostile_session(&relay, &data_dir).await;
    if result.is_err() {
        eprintln!("relay output:\n{}", relay.output());
    }
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn hostile_session(relay: &Relay, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let mut client = Client::connect(relay, 7).await?;
    let primes = job_module("primes")?;

    // Infinite loop: fuel runs out.
    let spin = wat(r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) (loop br 0) i64.const 0))"#);
    let req = client.request(&spin, b"", 50_000_000);
    let msgs = client.run(req, &spin).await?;
    assert_eq!(
        failure(&msgs),
        Some(JobFailure::Execution(JobError::OutOfFuel {
            limit: 50_000_000
        }))
    );

    // Memory bomb and deep recursion.
    let bomb = wat(r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64)
            (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) i64.const 0))"#);
    let req = client.request(&bomb, b"", 1_000_000_000);
    let msgs = client.run(req, &bomb).await?;
    assert_eq!(
        failure(&msgs),
        Some(JobFailure::Execution(JobError::MemoryLimit {
            max_pages: 512
        }))
    );
    let deep = wat(r#"(module (memory (export "memory") 1)
        (func $f (param i32) (result i32) (call $f (local.get 0)))
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) (drop (call $f (i32.const 0))) i64.const 0))"#);
    let req = client.request(&deep, b"", 1_000_000_000);
    let msgs = client.run(req, &deep).await?;
    assert_eq!(
        failure(&msgs),
        Some(JobFailure::Execution(JobError::StackLimit))
    );

    // Modules refused before they run.
    let import = wat(
        r#"(module (import "env" "clock" (func)) (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 0)
        (func (export "run") (param i32 i32) (result i64) i64.const 0))"#,
    );
    let req = client.request(&import, b"", 1_000);
    let msgs = client.run(req, &import).await?;
    assert!(
        matches!(failure(&msgs), Some(JobFailure::Module(m)) if m.contains("env.clock")),
        "{msgs:?}"
    );
    let garbage = b"\0asm\x01\0\0\0this is not wasm".to_vec();
    let req = client.request(&garbage, b"", 1_000);
    let msgs = client.run(req, &garbage).await?;
    assert!(matches!(failure(&msgs), Some(JobFailure::Module(m)) if m.contains("not a valid")));
    let oversized = vec![0u8; 4 * 1024 * 1024 + 1];
    let req = client.request(&oversized, b"", 1_000);
    let msgs = client.run(req, &oversized).await?;
    assert!(matches!(failure(&msgs), Some(JobFailure::Module(m)) if m.contains("at most")));

    // Requests refused before anything runs.
    let req = client.request(&primes, &vec![b'1'; 1024 * 1024 + 1], 1_000_000);
    let msgs = client.run(req, &primes).await?;
    assert_eq!(refusal(&msgs).map(|r| r.0), Some(Refusal::Input));
    for steps in [0, client_core::job::exec::MAX_STEPS + 1] {
        let mut req = client.request(&primes, b"1000", 1_000_000_000);
        req.body.body.max_steps = steps;
        let req = Signed::sign(&client.key, req.body);
        let msgs = client.run(req, &primes).await?;
        assert!(
            matches!(refusal(&msgs), Some((Refusal::Input, m)) if m.contains("step limit")),
            "{msgs:?}"
        );
    }
    // A step job that needs more steps than the customer allowed stops there.
    let chain = aqueduct_tests::job_module("hash-chain")?;
    let mut req = client.request(&chain, b"50 10 bounded", 1_000_000_000);
    req.body.body.max_steps = 20;
    let req = Signed::sign(&client.key, req.body);
    let msgs = client.run(req, &chain).await?;
    assert!(
        matches!(
            failure(&msgs),
            Some(JobFailure::Execution(
                client_core::job::exec::JobError::TooManySteps { max: 20 }
            ))
        ),
        "{msgs:?}"
    );

    let mut forged = client.request(&primes, b"1000", 1_000_000_000);
    forged.body.body.fuel_limit += 1;
    let msgs = client.run(forged, &primes).await?;
    assert!(
        matches!(refusal(&msgs), Some((Refusal::Request, m)) if m.contains("signature")),
        "{msgs:?}"
    );

    // Cheap checks come before expensive work: a module the relay has never seen, sent with a
    // request whose signature does not verify, or with a replayed one, is refused without
    // being parsed, compiled or stored.
    let fresh = wat(r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 2048)
        (func (export "run") (param i32 i32) (result i64) i64.const 7))"#);
    let stored = data_dir
        .join("modules")
        .join(format!("{}.wasm", Hash::of(&fresh)));
    let mut unsigned = client.request(&fresh, b"", 1_000_000);
    unsigned.body.body.input = b"changed".to_vec();
    let msgs = client.run(unsigned, &fresh).await?;
    assert!(
        matches!(refusal(&msgs), Some((Refusal::Request, m)) if m.contains("signature")),
        "{msgs:?}"
    );
    assert!(
        !stored.exists(),
        "a module of an unsigned request was stored"
    );
    let used = client.request(&primes, b"100", 1_000_000_000);
    let msgs = client.run(used.clone(), &primes).await?;
    assert!(matches!(last(&msgs), RelayMsg::Done { .. }), "{msgs:?}");
    let mut replayed = used;
    replayed.body.body.module = Hash::of(&fresh);
    let replayed = Signed::sign(&client.key, replayed.body);
    let msgs = client.run(replayed, &fresh).await?;
    assert!(
        matches!(refusal(&msgs), Some((Refusal::Request, m)) if m.contains("already used")),
        "{msgs:?}"
    );
    assert!(
        !stored.exists(),
        "a module of a replayed request was stored"
    );
    // The same module with an honest request: compiled, stored, run.
    let honest = client.request(&fresh, b"", 1_000_000);
    let msgs = client.run(honest, &fresh).await?;
    assert!(matches!(last(&msgs), RelayMsg::Done { .. }), "{msgs:?}");
    assert!(stored.exists(), "an accepted module is kept");

    client.nonce += 1;
    let expired = Signed::sign(
        &client.key,
        Request::new(
            DEV_NETWORK_ID,
            client.nonce,
            now_ms() - 120_000,
            60_000,
            JobSpec {
                module: Hash::of(&primes),
                input: b"1000".to_vec(),
                fuel_limit: 1_000_000_000,
                max_steps: client_core::job::exec::MAX_STEPS,
                payment: None,
            },
        ),
    );
    let msgs = client.run(expired, &primes).await?;
    assert!(matches!(refusal(&msgs), Some((Refusal::Request, m)) if m.contains("expired")));

    let once = client.request(&primes, b"1000", 1_000_000_000);
    let first = client.run(once.clone(), &primes).await?;
    assert!(matches!(last(&first), RelayMsg::Done { .. }), "{first:?}");
    let again = client.run(once, &primes).await?;
    assert!(matches!(refusal(&again), Some((Refusal::Request, m)) if m.contains("already used")));

    let mut wrong_bytes = client.request(&primes, b"1000", 1_000_000_000);
    wrong_bytes.body.body.module = Hash::of(b"something else");
    let wrong_bytes = Signed::sign(&client.key, wrong_bytes.body);
    let msgs = client.run(wrong_bytes, &primes).await?;
    assert_eq!(refusal(&msgs).map(|r| r.0), Some(Refusal::ModuleMismatch));

    // Garbage on the stream itself.
    let mut stream = client.open().await?;
    write_frame(&mut stream, b"\xff\xfe garbage").await?;
    let msgs = until_end(&mut stream).await?;
    assert_eq!(refusal(&msgs).map(|r| r.0), Some(Refusal::Malformed));

    // After all that, an honest job from another customer still runs, and the module is
    // known by hash now (no upload needed).
    let mut other = Client::connect(relay, 8).await?;
    let req = other.request(&primes, b"1000", 1_000_000_000);
    let mut stream = other.open().await?;
    send(
        &mut stream,
        &ClientMsg::Submit {
            request: req,
            module: None,
        },
    )
    .await?;
    let msgs = until_end(&mut stream).await?;
    match last(&msgs) {
        RelayMsg::Done { output, .. } => assert_eq!(output, b"168 primes below 1000 (largest 997)"),
        other => panic!("expected a result, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn results_survive_a_restart_and_a_killed_job_ends_in_a_clear_failure() -> anyhow::Result<()>
{
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("restart-jobs");
    let mut relay = Relay::start(&bin, &www, &data_dir, &RelayPorts::any())?;
    let ports = relay.ports.clone();
    let mut client = Client::connect(&relay, 9).await?;
    let primes = job_module("primes")?;
    let chain = job_module("hash-chain")?;

    let done_req = client.request(&primes, b"5000", 1_000_000_000);
    let done_id = client_core::job::job_id(&done_req);
    let msgs = client.run(done_req, &primes).await?;
    let RelayMsg::Done { receipt, .. } = last(&msgs).clone() else {
        panic!("expected a result: {msgs:?}");
    };

    // A long job: wait until it is running, then kill the relay.
    let long_req = client.request(&chain, b"60000 20000 long", 50_000_000_000);
    let long_id = client_core::job::job_id(&long_req);
    let mut stream = client.open().await?;
    send(
        &mut stream,
        &ClientMsg::Submit {
            request: long_req,
            module: Some(chain.clone()),
        },
    )
    .await?;
    loop {
        match receive(&mut stream).await? {
            Some(RelayMsg::Progress { .. }) => break,
            Some(RelayMsg::Accepted { .. }) => {}
            other => panic!("expected progress, got {other:?}"),
        }
    }
    relay.kill();
    // The stream ends (an error or a clean end), rather than hanging.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(_)) = read_frame(&mut stream, MAX_JOB_FRAME).await {}
    })
    .await;
    assert!(ended.is_ok(), "the job stream ended when the relay died");

    let relay = Relay::start(&bin, &www, &data_dir, &ports)?;
    let mut client = Client::connect(&relay, 9).await?;
    let mut stream = client.open().await?;
    send(&mut stream, &ClientMsg::Attach { job: long_id }).await?;
    let msgs = until_end(&mut stream).await?;
    assert_eq!(failure(&msgs), Some(JobFailure::RelayRestarted));

    let mut stream = client.open().await?;
    send(&mut stream, &ClientMsg::Attach { job: done_id }).await?;
    let msgs = until_end(&mut stream).await?;
    match last(&msgs) {
        RelayMsg::Done {
            output,
            receipt: again,
            ..
        } => {
            assert_eq!(output, b"669 primes below 5000 (largest 4999)");
            assert_eq!(again, &receipt, "the same signed receipt after the restart");
        }
        other => panic!("expected the stored result, got {other:?}"),
    }
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_job_is_stopped_by_the_wall_clock_or_by_its_fuel() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("time-limit");
    let relay = Relay::start_with(
        &bin,
        &www,
        &data_dir,
        &RelayPorts::any(),
        &["--job-time-limit", "1"],
    )?;
    let mut client = Client::connect(&relay, 11).await?;
    let spin = wat(r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32 i32) (result i64) (loop br 0) i64.const 0))"#);
    // Fuel for hours: only the wall clock can stop it.
    let req = client.request(&spin, b"", 40_000_000_000);
    let started = std::time::Instant::now();
    let msgs = client.run(req, &spin).await?;
    assert_eq!(
        failure(&msgs),
        Some(JobFailure::TimedOut { limit_ms: 1000 })
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // Under the 1 s limit, a job with at most 1 s / 200 ns = 5 million units of fuel runs
    // without the clock's checks: its fuel must end it, and does.
    let limit = node_relay::jobs::engine::fuel_within(Duration::from_secs(1));
    assert_eq!(limit, 5_000_000);
    let req = client.request(&spin, b"", limit);
    let started = std::time::Instant::now();
    let msgs = client.run(req, &spin).await?;
    assert_eq!(
        failure(&msgs),
        Some(JobFailure::Execution(JobError::OutOfFuel { limit }))
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Submits `kind` from `who` at `nonce` with the minimum fee and waits for its block.
async fn transact(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    genesis: &client_core::ledger::Genesis,
    who: &Keypair,
    nonce: u64,
    kind: client_core::ledger::TxKind,
) -> anyhow::Result<()> {
    use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
    let fee = client_core::ledger::tx::min_fee_for(&genesis.params, &genesis.network_id, &kind);
    let tx = Signed::sign(
        who,
        client_core::ledger::Tx {
            network_id: genesis.network_id.clone(),
            nonce,
            fee,
            kind,
        },
    );
    let answer =
        aqueduct_tests::ledger_call(control, relay, &LedgerRequest::Submit { tx: Box::new(tx) })
            .await?;
    anyhow::ensure!(
        matches!(answer.last(), Some(LedgerResponse::Included { .. })),
        "transaction not included: {answer:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_takes_only_jobs_whose_voucher_pays_its_price() -> anyhow::Result<()> {
    use client_core::ledger::pay::{Payment, voucher_for};
    use client_core::ledger::tx::channel_id;
    use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
    use client_core::ledger::{StateKey, StateValue, TxKind};
    let data_dir = temp_dir("paid-jobs");
    let mut relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &RelayPorts::any(),
        &[
            "--provide",
            "--price-per-mfuel",
            "1000",
            "--block-interval-ms",
            "100",
        ],
    )?;
    let ports = relay.ports.clone();
    let mut client = Client::connect(&relay, 42).await?;
    let mut control = client.control.clone();
    let genesis = aqueduct_tests::ledger_genesis(&mut control, client.relay).await?;
    let provider = client_core::identity::PublicKey::from_peer_id(&client.relay)?;
    let customer = client.key.clone();
    transact(
        &mut control,
        client.relay,
        &genesis,
        &customer,
        0,
        TxKind::Faucet,
    )
    .await?;
    let channel = channel_id(&customer.public(), 1);
    let open = TxKind::OpenChannel {
        provider,
        amount: 1_000_000,
    };
    transact(&mut control, client.relay, &genesis, &customer, 1, open).await?;

    let primes = job_module("primes")?;
    let fuel = 10_000_000;
    let price = 10_000; // 1000 per million fuel
    // No voucher: refused, saying what it costs.
    let request = client.request(&primes, b"1000", fuel);
    let msgs = client.run(request, &primes).await?;
    let (reason, message) = refusal(&msgs).expect("refused");
    assert_eq!(reason, Refusal::Payment);
    assert!(message.contains("10000"), "{message}");
    // A voucher one unit short: refused.
    let paid = |client: &mut Client, cumulative: u64| {
        let mut request = client.request(&primes, b"1000", fuel);
        request.body.body.payment = Some(Box::new(voucher_for(
            &customer,
            &genesis.network_id,
            channel,
            0,
            cumulative,
        )));
        // Re-signed with the voucher in it.
        Signed::sign(&customer, request.body)
    };
    let request = paid(&mut client, price - 1);
    let msgs = client.run(request, &primes).await?;
    let (reason, message) = refusal(&msgs).expect("refused");
    assert_eq!(reason, Refusal::Payment);
    assert!(message.contains("at least 10000"), "{message}");
    // Enough: run, and the receipt names the payment.
    let request = paid(&mut client, price);
    let msgs = client.run(request, &primes).await?;
    let RelayMsg::Done { receipt, .. } = last(&msgs) else {
        anyhow::bail!("expected a result: {:?}", last(&msgs));
    };
    assert_eq!(
        receipt.body.payment,
        Some(Payment {
            channel,
            cumulative: price,
            price
        })
    );
    // The same amount again pays nothing new: refused.
    let request = paid(&mut client, price);
    let msgs = client.run(request, &primes).await?;
    let (reason, message) = refusal(&msgs).expect("refused");
    assert_eq!(reason, Refusal::Payment);
    assert!(message.contains("at least 20000"), "{message}");

    // Restarted with --unbond (and a settle interval of a second): the voucher it kept across
    // the restart is settled, the offer leaves the market, and jobs run for free.
    assert!(relay.terminate(Duration::from_secs(10)), "the relay stops");
    let relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &ports,
        &[
            "--unbond",
            "--block-interval-ms",
            "100",
            "--settle-interval-secs",
            "1",
        ],
    )?;
    let mut client = Client::connect(&relay, 42).await?;
    client.nonce = 100;
    let mut control = client.control.clone();
    let mut light = client_core::ledger::light::LightClient::new(&genesis);
    let keys = vec![StateKey::Channel(channel), StateKey::Provider(provider)];
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let answer = aqueduct_tests::ledger_call(
            &mut control,
            client.relay,
            &LedgerRequest::Read {
                keys: keys.clone(),
                height: None,
            },
        )
        .await?;
        let Some(LedgerResponse::Reads(Some(reads))) = answer.first() else {
            anyhow::bail!("unexpected answer {answer:?}");
        };
        let values = light.verify(&keys, reads)?.value;
        let settled = matches!(&values[0], Some(StateValue::Channel(c)) if c.settled == price);
        let unbonding =
            matches!(&values[1], Some(StateValue::Provider(p)) if p.unbonding.is_some());
        if settled && unbonding {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "not settled and unbonding: {values:?}\n{}",
            relay.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let request = client.request(&primes, b"1000", fuel);
    let msgs = client.run(request, &primes).await?;
    let RelayMsg::Done { receipt, .. } = last(&msgs) else {
        anyhow::bail!("expected a free result: {:?}", last(&msgs));
    };
    assert_eq!(receipt.body.payment, None);
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// The request lifetime a relay accepts is the DAO's `max_job_ttl_ms`, not its own default:
/// on a network whose genesis sets it to 30 s, a request living 60 s is refused (the relay's
/// own default would take 10 minutes) and one living 20 s runs.
#[tokio::test(flavor = "multi_thread")]
async fn the_governed_request_lifetime_is_what_the_relay_enforces() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("governed-ttl");
    let me = aqueduct_tests::devnet::peer_id(&bin, &data_dir)?;
    let mut genesis = client_core::ledger::Genesis::dev(
        DEV_NETWORK_ID,
        client_core::identity::PublicKey::parse(&me)?,
        now_ms(),
    );
    genesis.params.max_job_ttl_ms = 30_000;
    let genesis_file = data_dir.with_extension("genesis.json");
    std::fs::write(&genesis_file, genesis.to_json())?;
    let genesis_arg = genesis_file.to_string_lossy().into_owned();
    let relay = Relay::start_with(
        &bin,
        &www,
        &data_dir,
        &RelayPorts::any(),
        &["--genesis", &genesis_arg],
    )?;
    let mut client = Client::connect(&relay, 9).await?;
    let primes = job_module("primes")?;
    let mut with_ttl = |ttl_ms: u64| {
        client.nonce += 1;
        Signed::sign(
            &client.key,
            Request::new(
                DEV_NETWORK_ID,
                client.nonce,
                now_ms(),
                ttl_ms,
                JobSpec {
                    module: Hash::of(&primes),
                    input: b"100".to_vec(),
                    fuel_limit: 1_000_000_000,
                    max_steps: 1,
                    payment: None,
                },
            ),
        )
    };
    let (long, short) = (with_ttl(60_000), with_ttl(20_000));
    let msgs = client.run(long, &primes).await?;
    let result = match refusal(&msgs) {
        Some((Refusal::Request, m)) if m.contains("maximum of 30000 ms") => {
            let msgs = client.run(short, &primes).await?;
            anyhow::ensure!(
                matches!(last(&msgs), RelayMsg::Done { .. }),
                "a request within the governed lifetime: {msgs:?}"
            );
            Ok(())
        }
        _ => Err(anyhow::anyhow!(
            "a request past the governed lifetime: {msgs:?}\n{}",
            relay.output()
        )),
    };
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_file(&genesis_file);
    result
}

/// Disk budgets hold while the relay runs: with no room for modules or results, a module is
/// evicted once another is stored (its customer is asked for the bytes again and served), and
/// stored results are removed within the prune interval — the directories do not grow.
#[tokio::test(flavor = "multi_thread")]
async fn modules_and_results_are_kept_within_their_disk_budgets() -> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let data_dir = temp_dir("disk-budget");
    let relay = Relay::start_with(
        &bin,
        &www,
        &data_dir,
        &RelayPorts::any(),
        &[
            "--modules-budget-mb",
            "0",
            "--results-budget-mb",
            "0",
            "--prune-interval-secs",
            "1",
        ],
    )?;
    let mut client = Client::connect(&relay, 11).await?;
    let primes = job_module("primes")?;
    let other = wat(r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 4096)
        (func (export "run") (param i32 i32) (result i64) i64.const 3))"#);
    let req = client.request(&primes, b"100", 1_000_000_000);
    let msgs = client.run(req, &primes).await?;
    anyhow::ensure!(matches!(last(&msgs), RelayMsg::Done { .. }), "{msgs:?}");
    let req = client.request(&other, b"", 1_000_000);
    let msgs = client.run(req, &other).await?;
    anyhow::ensure!(matches!(last(&msgs), RelayMsg::Done { .. }), "{msgs:?}");

    // The first module is gone: its customer is asked for the bytes, then served.
    let req = client.request(&primes, b"200", 1_000_000_000);
    let mut stream = client.open().await?;
    send(
        &mut stream,
        &ClientMsg::Submit {
            request: req.clone(),
            module: None,
        },
    )
    .await?;
    match receive(&mut stream).await? {
        Some(RelayMsg::NeedModule { module }) => anyhow::ensure!(module == Hash::of(&primes)),
        other => anyhow::bail!("an evicted module was not asked for again: {other:?}"),
    }
    send(
        &mut stream,
        &ClientMsg::Submit {
            request: req,
            module: Some(primes.clone()),
        },
    )
    .await?;
    let msgs = until_end(&mut stream).await?;
    anyhow::ensure!(matches!(last(&msgs), RelayMsg::Done { .. }), "{msgs:?}");

    // The operator sees it on /metrics: three jobs done, the ledger's height, the peers.
    let metrics = relay.get("/metrics")?;
    for expected in [
        "aqueduct_jobs_total{outcome=\"done\"} 3",
        "aqueduct_ledger_height ",
        "aqueduct_connected_peers ",
        "aqueduct_jobs_queued 0",
    ] {
        anyhow::ensure!(
            metrics.contains(expected),
            "/metrics lacks {expected:?}:\n{metrics}"
        );
    }

    // Within a few prune intervals no stored result is left, and at most one module's files.
    let count = |dir: &str, ext: &str| {
        std::fs::read_dir(data_dir.join(dir))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count("jobs", "done") > 0 || count("modules", "wasm") > 1 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "results {} and modules {} left past their budgets",
            count("jobs", "done"),
            count("modules", "wasm")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_follow_one_another_on_one_stream() -> anyhow::Result<()> {
    let data_dir = temp_dir("one-stream");
    let relay = Relay::start(&relay_bin()?, &www_dir()?, &data_dir, &RelayPorts::any())?;
    let mut client = Client::connect(&relay, 21).await?;
    let primes = job_module("primes")?;
    let chain = job_module("hash-chain")?;
    let mut stream = client.open().await?;

    // A step job, its result sampled on the stream it came on…
    let step_req = client.request(&chain, b"50 10 stream", 1_000_000_000);
    let step_id = client_core::job::job_id(&step_req);
    let submit = |request, module: &[u8]| ClientMsg::Submit {
        request,
        module: Some(module.to_vec()),
    };
    send(&mut stream, &submit(step_req, &chain)).await?;
    let msgs = until_end(&mut stream).await?;
    let RelayMsg::Done { receipt, .. } = last(&msgs).clone() else {
        panic!("expected the step job's result: {msgs:?}");
    };
    send(
        &mut stream,
        &ClientMsg::Sample {
            states: vec![1],
            prove: vec![1],
        },
    )
    .await?;
    assert!(matches!(
        receive(&mut stream).await?,
        Some(RelayMsg::State { index: 1, .. })
    ));
    assert!(matches!(
        receive(&mut stream).await?,
        Some(RelayMsg::Proof { .. })
    ));

    // …then another job on the same stream.
    let req = client.request(&primes, b"5000", 1_000_000_000);
    send(&mut stream, &submit(req.clone(), &primes)).await?;
    let msgs = until_end(&mut stream).await?;
    match last(&msgs) {
        RelayMsg::Done { output, .. } => {
            assert_eq!(output, b"669 primes below 5000 (largest 4999)")
        }
        other => panic!("expected the second job's result, got {other:?}"),
    }

    // A refused request (the same one again: a replay) leaves the stream open…
    send(&mut stream, &submit(req, &primes)).await?;
    let msgs = until_end(&mut stream).await?;
    assert!(
        matches!(refusal(&msgs), Some((Refusal::Request, _))),
        "a replay is refused: {msgs:?}"
    );
    // …for the next job, and for attaching to an earlier one.
    let req = client.request(&primes, b"100", 1_000_000_000);
    send(&mut stream, &submit(req, &primes)).await?;
    let msgs = until_end(&mut stream).await?;
    assert!(matches!(last(&msgs), RelayMsg::Done { .. }), "{msgs:?}");
    send(&mut stream, &ClientMsg::Attach { job: step_id }).await?;
    let msgs = until_end(&mut stream).await?;
    match last(&msgs) {
        RelayMsg::Done { receipt: again, .. } => assert_eq!(again, &receipt),
        other => panic!("expected the step job restated, got {other:?}"),
    }

    // A message out of order still ends the stream.
    send(&mut stream, &ClientMsg::Cancel).await?;
    let msgs = until_end(&mut stream).await?;
    assert!(
        matches!(refusal(&msgs), Some((Refusal::Malformed, _))),
        "{msgs:?}"
    );
    assert!(
        receive(&mut stream).await?.is_none(),
        "the stream is closed"
    );
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

//! Harness for end-to-end tests and benchmarks: real relay processes on loopback and a real
//! headless Chromium driven through chromedriver.
//!
//! `cargo xtask test` builds the relay and the web app first and passes their locations in
//! `AQUEDUCT_RELAY_BIN` and `AQUEDUCT_WWW`; without them the harness looks in `target/` and
//! says what to run if nothing is there.

pub mod clients;
pub mod devnet;

pub use clients::{run_job, run_job_on, webrtc_client, webrtc_client_retrying};

use anyhow::{Context, bail};
use client_core::protocol::RelayInfo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn artifact(var: &str, default: &str, what: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(default));
    if !path.exists() {
        bail!(
            "{what} not found at {} — run the tests with `cargo xtask test`, which builds it \
             (or set {var})",
            path.display()
        );
    }
    Ok(path)
}

/// The relay binary under test.
pub fn relay_bin() -> anyhow::Result<PathBuf> {
    artifact(
        "AQUEDUCT_RELAY_BIN",
        "target/debug/node-relay",
        "the relay binary",
    )
}

/// The relay built with the test-only `faulty` feature (`run --faulty …` lies in results).
pub fn faulty_relay_bin() -> anyhow::Result<PathBuf> {
    artifact(
        "AQUEDUCT_FAULTY_RELAY_BIN",
        "target/debug/node-relay-faulty",
        "the faulty relay binary",
    )
}

/// The built web app.
pub fn www_dir() -> anyhow::Result<PathBuf> {
    let dir = artifact("AQUEDUCT_WWW", "target/www", "the built web app")?;
    artifact(
        "AQUEDUCT_WWW",
        "target/www/aqueduct_bg.wasm",
        "the web app's wasm bundle",
    )?;
    Ok(dir)
}

/// The js-libp2p interoperability client built by xtask: its page and browser bundle (the
/// Node.js script runs from `tests/interop`, whose npm packages xtask installs).
pub fn interop_dir() -> anyhow::Result<PathBuf> {
    let dir = artifact(
        "AQUEDUCT_INTEROP",
        "target/interop",
        "the js-libp2p interop client",
    )?;
    let modules = workspace_root().join("tests/interop/node_modules/libp2p");
    if !dir.join("interop.js").exists() || !modules.exists() {
        bail!(
            "the js-libp2p interop client is not built ({} or {} missing) — run the tests with \
             `cargo xtask test`, which installs and bundles it",
            dir.join("interop.js").display(),
            modules.display()
        );
    }
    Ok(dir)
}

/// A directory for test output a person may want to look at (screenshots).
pub fn artifacts_dir(kind: &str) -> PathBuf {
    let dir = workspace_root().join("target").join(kind);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// The bytes of an example job module built by xtask (`<web app>/jobs/<name>.wasm`).
pub fn job_module(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = www_dir()?.join("jobs").join(format!("{name}.wasm"));
    std::fs::read(&path).with_context(|| {
        format!(
            "reading {} — `cargo xtask test` builds the example jobs",
            path.display()
        )
    })
}

/// A native libp2p client connected to `relay` over TCP (Noise, Yamux), as another relay or a
/// native tool would be. Returns a stream control and the relay's peer id.
pub async fn tcp_client(relay: &Relay) -> anyhow::Result<(libp2p_stream::Control, libp2p::PeerId)> {
    let peer: libp2p::PeerId = relay.info()?.peer_id.parse()?;
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let addr: libp2p::Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", relay.ports.tcp.port()).parse()?;
    let control = dial_and_drive(swarm, addr).await?;
    Ok((control, peer))
}

/// One `/aqueduct/ledger/1` request; returns every answer until the relay closes the stream.
pub async fn ledger_call(
    control: &mut libp2p_stream::Control,
    relay: libp2p::PeerId,
    request: &client_core::ledger::wire::LedgerRequest,
) -> anyhow::Result<Vec<client_core::ledger::wire::LedgerResponse>> {
    use client_core::ledger::wire::{LEDGER_PROTOCOL, MAX_LEDGER_RESPONSE};
    let step = Duration::from_secs(90);
    let mut stream = tokio::time::timeout(
        step,
        control.open_stream(relay, libp2p::StreamProtocol::new(LEDGER_PROTOCOL)),
    )
    .await??;
    client_core::wire::write_frame(&mut stream, &client_core::encoding::encode(request)).await?;
    let mut answers = Vec::new();
    while let Some(frame) = tokio::time::timeout(
        step,
        client_core::wire::read_frame(&mut stream, MAX_LEDGER_RESPONSE),
    )
    .await??
    {
        answers.push(client_core::encoding::decode(&frame, MAX_LEDGER_RESPONSE)?);
    }
    Ok(answers)
}

/// The network's genesis, as the relay serves it.
pub async fn ledger_genesis(
    control: &mut libp2p_stream::Control,
    relay: libp2p::PeerId,
) -> anyhow::Result<client_core::ledger::Genesis> {
    use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
    match ledger_call(control, relay, &LedgerRequest::Genesis)
        .await?
        .as_slice()
    {
        [LedgerResponse::Genesis(g)] => Ok((**g).clone()),
        other => bail!("expected the genesis, got {other:?}"),
    }
}

/// Values of `keys` read from `relay` (over a new TCP connection) and verified by a native
/// light client — what a test believes about the ledger.
pub async fn read_verified_keys(
    genesis: &client_core::ledger::Genesis,
    relay: &Relay,
    keys: Vec<client_core::ledger::StateKey>,
) -> anyhow::Result<Vec<Option<client_core::ledger::StateValue>>> {
    use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
    let (mut control, peer) = tcp_client(relay).await?;
    let answer = ledger_call(
        &mut control,
        peer,
        &LedgerRequest::Read {
            keys: keys.clone(),
            height: None,
        },
    )
    .await?;
    let Some(LedgerResponse::Reads(Some(reads))) = answer.first() else {
        bail!("expected proven reads, got {answer:?}");
    };
    Ok(client_core::ledger::light::LightClient::new(genesis)
        .verify(&keys, reads)?
        .value)
}

/// One value, as [`read_verified_keys`] reads it.
pub async fn read_verified(
    genesis: &client_core::ledger::Genesis,
    relay: &Relay,
    key: client_core::ledger::StateKey,
) -> anyhow::Result<Option<client_core::ledger::StateValue>> {
    Ok(read_verified_keys(genesis, relay, vec![key])
        .await?
        .pop()
        .flatten())
}

/// Every block a relay has, from height 1 on.
pub async fn ledger_blocks(
    control: &mut libp2p_stream::Control,
    relay: libp2p::PeerId,
) -> anyhow::Result<Vec<client_core::ledger::Block>> {
    use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
    let mut blocks: Vec<client_core::ledger::Block> = Vec::new();
    loop {
        let from = blocks.len() as u64 + 1;
        let answer =
            ledger_call(control, relay, &LedgerRequest::Blocks { from, count: 64 }).await?;
        match answer.as_slice() {
            [LedgerResponse::Blocks(batch)] if batch.is_empty() => return Ok(blocks),
            [LedgerResponse::Blocks(batch)] => blocks.extend(batch.iter().cloned()),
            other => bail!("unexpected answer to a block request: {other:?}"),
        }
    }
}

/// A job observer that keeps every checkpoint state, as a relay does for sampling.
#[derive(Default)]
pub struct KeepStates(pub Vec<client_core::job::exec::Snapshot>);

impl client_core::job::exec::Observer for KeepStates {
    fn checkpoint(&mut self, _: u64, _: client_core::hash::Hash, globals: &[u64], memory: &[u8]) {
        self.0.push(client_core::job::exec::Snapshot {
            globals: globals.to_vec(),
            memory: memory.to_vec(),
        });
    }
}

/// A step job run once, with everything a verifier needs to check it by sampling: the
/// prepared module and its compiled form (as the relay runs a job its fuel bounds), the signed
/// request and receipt, the checkpoint tree, and every checkpoint's state as a relay sends it.
pub struct SampledJob {
    pub prepared: client_core::job::profile::Prepared,
    pub job: node_relay::jobs::engine::CompiledJob,
    pub request: client_core::job::JobRequest,
    pub receipt: client_core::job::Receipt,
    pub tree: client_core::job::commit::CheckpointTree,
    pub states: Vec<client_core::job::exec::SparseSnapshot>,
}

impl SampledJob {
    /// Sampling plans at 99% detection of 5% skipped work, one per seed, each with the relay's
    /// proof (made here, beforehand: proving is the relay's cost, not the verifier's).
    pub fn plans(&self, seeds: u8) -> Vec<(client_core::job::verify::SamplePlan, Vec<u8>)> {
        (0..seeds)
            .map(|seed| {
                let plan = client_core::job::verify::SamplePlan::new(
                    self.tree.commitment(),
                    0.05,
                    0.99,
                    &[seed; 32],
                );
                let proof = self.tree.prove(&plan.prove);
                (plan, proof)
            })
            .collect()
    }

    /// One whole sampling check of `plan`, as the page makes it once the states arrive.
    pub fn sample(
        &self,
        plan: &client_core::job::verify::SamplePlan,
        proof: &[u8],
    ) -> Result<client_core::job::verify::Strength, client_core::job::verify::VerifyError> {
        let task = client_core::job::verify::CheckTask {
            request: self.request.clone(),
            receipt: self.receipt.clone(),
            method: client_core::job::verify::CheckMethod::Sample {
                plan: plan.clone(),
                states: plan
                    .states
                    .iter()
                    .map(|i| {
                        let state = self.states.get(*i as usize).ok_or_else(|| {
                            client_core::job::verify::VerifyError::Sampling(format!("no state {i}"))
                        })?;
                        Ok((*i, state.clone()))
                    })
                    .collect::<Result<_, client_core::job::verify::VerifyError>>()?,
                proof: proof.to_vec(),
            },
        };
        task.run(&self.prepared, &self.job, &mut |_, _| {})
    }

    /// Re-executes the whole job, as the page does for a one-shot job.
    pub fn reexecute(
        &self,
    ) -> Result<client_core::job::verify::Strength, client_core::job::verify::VerifyError> {
        client_core::job::verify::reexecute(&self.job, &self.prepared, &self.request, &self.receipt)
    }
}

/// Two providers' traces of one job, kept in memory, answering a referee's questions the way
/// relays do (a state hash with its Merkle proof, a whole state) — for tests and benchmarks of
/// refereeing without a network.
pub struct InMemory<'a>(pub [&'a SampledJob; 2]);

impl client_core::job::referee::Questions for InMemory<'_> {
    async fn leaf(
        &mut self,
        side: client_core::job::referee::Side,
        index: u64,
    ) -> Result<(client_core::hash::Hash, Vec<u8>), String> {
        let job = self.0[usize::from(side == client_core::job::referee::Side::B)];
        let state = job.states.get(index as usize).ok_or("no such checkpoint")?;
        Ok((state.hash(), job.tree.prove(&[index])))
    }

    async fn state(
        &mut self,
        side: client_core::job::referee::Side,
        index: u64,
    ) -> Result<client_core::job::exec::SparseSnapshot, String> {
        let job = self.0[usize::from(side == client_core::job::referee::Side::B)];
        job.states
            .get(index as usize)
            .cloned()
            .ok_or_else(|| "no such checkpoint".to_owned())
    }
}

/// Runs the example hash chain on `input` (`"1000 1000 sampling"`: 1000 segments) for
/// [`SampledJob`].
pub fn sampled_hash_chain(
    engine: &node_relay::jobs::engine::JobEngine,
    input: &[u8],
) -> anyhow::Result<SampledJob> {
    hash_chain_job(engine, input, None)
}

/// Like [`sampled_hash_chain`], from a relay that forged the transition of step `step` and
/// computed everything after it honestly from the forged state (its receipt, commitment and
/// states are all consistent with that trace).
pub fn forged_hash_chain(
    engine: &node_relay::jobs::engine::JobEngine,
    input: &[u8],
    step: u64,
) -> anyhow::Result<SampledJob> {
    hash_chain_job(engine, input, Some(step))
}

fn hash_chain_job(
    engine: &node_relay::jobs::engine::JobEngine,
    input: &[u8],
    forge: Option<u64>,
) -> anyhow::Result<SampledJob> {
    use client_core::job::profile::{self, Profile};
    use client_core::job::{JobSpec, Receipt, exec, job_id};
    let fuel = 1 << 50;
    let prepared = profile::prepare(&job_module("hash-chain")?, &Profile::V1)?;
    let module = engine.compile(&prepared.code).map_err(anyhow::Error::msg)?;
    let job = node_relay::jobs::engine::CompiledJob::new(module.bounded, &Profile::V1);
    let customer = client_core::identity::Keypair::from_seed(&[3; 32]);
    let spec = JobSpec {
        module: prepared.module_hash,
        input: input.to_vec(),
        fuel_limit: fuel,
        max_steps: exec::MAX_STEPS,
        payment: None,
    };
    let request = client_core::signed::Signed::sign(
        &customer,
        client_core::envelope::Request::new("bench", 1, 0, 60_000, spec),
    );
    let mut kept = KeepStates::default();
    let outcome = match forge {
        Some(step) => exec::execute(
            &job,
            &prepared,
            input,
            fuel,
            &mut exec::Fabricate::new(step, &mut kept),
        )?,
        None => exec::execute(&job, &prepared, input, fuel, &mut kept)?,
    };
    let tree = client_core::job::commit::CheckpointTree::new(&outcome.checkpoints);
    let receipt = Receipt {
        profile: 1,
        job: job_id(&request),
        customer: request.signer,
        module: prepared.module_hash,
        input: client_core::hash::Hash::of(input),
        output: client_core::hash::Hash::of(&outcome.output),
        fuel_used: outcome.fuel_used,
        commitment: Some(tree.commitment()),
        payment: None,
        completed_at_ms: 0,
    };
    let states = kept.0.iter().map(exec::Snapshot::to_sparse).collect();
    Ok(SampledJob {
        prepared,
        job,
        request,
        receipt,
        tree,
        states,
    })
}

/// Dials `addr`, keeps driving `swarm` on a task for good, and returns a stream control once
/// the connection is up (or the dial's error).
pub async fn dial_and_drive(
    mut swarm: libp2p::Swarm<libp2p_stream::Behaviour>,
    addr: libp2p::Multiaddr,
) -> anyhow::Result<libp2p_stream::Control> {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    let control = swarm.behaviour().new_control();
    swarm.dial(addr)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Err(error.to_string()));
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await??
        .map_err(anyhow::Error::msg)?;
    Ok(control)
}

/// A fresh, empty temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("aqueduct-{name}-{}-{nanos}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Everything `child` writes to its piped stdout and stderr, collected line by line on threads
/// of their own, so that its pipes never fill.
fn collect_output(child: &mut Child) -> Arc<Mutex<String>> {
    let output = Arc::new(Mutex::new(String::new()));
    let stdout = child
        .stdout
        .take()
        .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>);
    for pipe in [stdout, stderr].into_iter().flatten() {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut out) = output.lock() {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        });
    }
    output
}

/// Addresses a relay listens on.
#[derive(Debug, Clone)]
pub struct RelayPorts {
    pub http: SocketAddr,
    pub webrtc: SocketAddr,
    pub tcp: SocketAddr,
}

impl RelayPorts {
    /// Loopback addresses whose ports the relay picks as it binds them (port 0), so that no
    /// other process can take them in between. [`Relay::ports`] holds the ports it got; pass
    /// those to restart it on the same addresses.
    pub fn any() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        RelayPorts {
            http: any,
            webrtc: any,
            tcp: any,
        }
    }

    /// The addresses a relay printed as it started (`webrtc:`, `relays:` and `open the web
    /// app:`, in that order), once it has printed the last of them.
    fn printed(output: &str) -> Option<RelayPorts> {
        let (mut http, mut webrtc, mut tcp) = (None, None, None);
        for line in output.lines().map(str::trim) {
            if let Some(addr) = line.strip_prefix("webrtc:") {
                webrtc = webrtc.or_else(|| socket_of(addr.trim()));
            } else if let Some(addr) = line.strip_prefix("relays:") {
                tcp = tcp.or_else(|| socket_of(addr.trim()));
            } else if let Some(url) = line.strip_prefix("open the web app: http://") {
                http = url.trim_end_matches('/').parse().ok();
            }
        }
        Some(RelayPorts {
            http: http?,
            webrtc: webrtc?,
            tcp: tcp?,
        })
    }
}

/// The IP address and UDP or TCP port of a multiaddr.
fn socket_of(addr: &str) -> Option<SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let addr: libp2p::Multiaddr = addr.parse().ok()?;
    let (mut ip, mut port) = (None, None);
    for part in addr.iter() {
        match part {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Udp(p) | Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// A running relay process. Killed when dropped.
pub struct Relay {
    child: Child,
    pub ports: RelayPorts,
    pub data_dir: PathBuf,
    output: Arc<Mutex<String>>,
}

impl Relay {
    /// Starts `node-relay run` and waits until it has printed its addresses and its HTTP
    /// server answers `/healthz`.
    pub fn start(
        bin: &Path,
        www: &Path,
        data_dir: &Path,
        ports: &RelayPorts,
    ) -> anyhow::Result<Relay> {
        Self::start_with(bin, www, data_dir, ports, &[])
    }

    /// [`Relay::start`] with extra arguments for `node-relay run`.
    pub fn start_with(
        bin: &Path,
        www: &Path,
        data_dir: &Path,
        ports: &RelayPorts,
        extra: &[&str],
    ) -> anyhow::Result<Relay> {
        let mut child = Command::new(bin)
            .arg("run")
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--www")
            .arg(www)
            .arg("--http")
            .arg(ports.http.to_string())
            .arg("--webrtc")
            .arg(ports.webrtc.to_string())
            .arg("--tcp")
            .arg(ports.tcp.to_string())
            .env(
                "RUST_LOG",
                std::env::var("AQUEDUCT_RELAY_LOG").unwrap_or_else(|_| {
                    "info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_sctp=error,dtls=error"
                        .into()
                }),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let output = collect_output(&mut child);
        let mut relay = Relay {
            child,
            ports: ports.clone(),
            data_dir: data_dir.to_path_buf(),
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = relay.child.try_wait() {
                bail!(
                    "the relay exited with {status} while starting:\n{}",
                    relay.output()
                );
            }
            if let Some(ports) = RelayPorts::printed(&relay.output()) {
                relay.ports = ports;
                if relay.get("/healthz").is_ok() {
                    return Ok(relay);
                }
            }
            if Instant::now() > deadline {
                relay.kill();
                bail!(
                    "the relay did not print its addresses and answer /healthz within 30 s:\n{}",
                    relay.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.ports.http)
    }

    /// The URL of a page of the app, e.g. `page("/wallet")`.
    pub fn page(&self, path: &str) -> String {
        format!("http://{}{path}", self.ports.http)
    }

    /// `GET` a path on the relay's HTTP server, as text.
    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("http://{}{path}", self.ports.http);
        let mut response = ureq::get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        Ok(response.body_mut().read_to_string()?)
    }

    /// One unlabelled value from the relay's `/metrics`, e.g. `aqueduct_connected_peers`.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.get("/metrics")?;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .with_context(|| format!("/metrics has no value for {name}:\n{text}"))
    }

    pub fn info(&self) -> anyhow::Result<RelayInfo> {
        Ok(serde_json::from_str(&self.get("/api/info")?)?)
    }

    /// The relay-to-relay address other relays pass to `--peer`.
    pub fn relay_addr(&self) -> anyhow::Result<String> {
        Ok(format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            self.ports.tcp.port(),
            self.info()?.peer_id
        ))
    }

    /// The consensus address the relay printed (`consensus:`), if it runs consensus.
    pub fn consensus_addr(&self) -> Option<String> {
        self.output().lines().find_map(|l| {
            l.trim()
                .strip_prefix("consensus:")
                .map(|a| a.trim().to_owned())
        })
    }

    /// Everything the relay printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The relay process's id (for reading its memory and files under /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no chance to clean up, as in a crash or power loss.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited successfully in time.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A headless Chromium driven through chromedriver. Both processes end when dropped.
pub struct Browser {
    driver: Child,
    pub client: fantoccini::Client,
    profile: PathBuf,
}

fn chromedriver_path() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromedriver"))
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The port chromedriver says it listens on ("… started successfully on port N.").
async fn chromedriver_port(driver: &mut Child, output: &Mutex<String>) -> anyhow::Result<u16> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let printed = output.lock().ok().and_then(|out| {
            let (_, rest) = out.split_once("started successfully on port ")?;
            rest.split('.').next()?.trim().parse().ok()
        });
        if let Some(port) = printed {
            return Ok(port);
        }
        if let Ok(Some(status)) = driver.try_wait() {
            bail!("chromedriver exited with {status} before it said which port it listens on");
        }
        if Instant::now() > deadline {
            bail!("chromedriver did not say which port it listens on within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a new, empty profile.
    pub async fn start() -> anyhow::Result<Browser> {
        let profile = temp_dir("chromium-profile");
        // Chromium's own scratch directories go inside the profile, so they leave with it
        // (killed, it never removes them itself).
        let scratch = profile.join("tmp");
        std::fs::create_dir_all(&scratch)?;
        // Its own process group, so that Chromium and its helpers go with it on drop,
        // even when a failing test never reaches `close`.
        let mut driver = Command::new(chromedriver_path())
            .process_group(0)
            .env("TMPDIR", &scratch)
            // Port 0: it binds a free port itself and prints which, so that browsers started
            // side by side never race for one.
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting chromedriver — `cargo xtask test` installs it (Debian: chromium-driver)",
            )?;
        let output = collect_output(&mut driver);
        let port = match chromedriver_port(&mut driver, &output).await {
            Ok(port) => port,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(e);
            }
        };
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium_path(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut driver = Some(driver);
        let client = loop {
            let attempt = fantoccini::ClientBuilder::new(
                hyper_util::client::legacy::connect::HttpConnector::new(),
            )
            .capabilities(caps.clone())
            .connect(&url)
            .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => {
                    if let Some(mut d) = driver.take() {
                        let _ = d.kill();
                    }
                    bail!("could not start a Chromium session through chromedriver: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let driver = driver.take().context("chromedriver handle")?;
        Ok(Browser {
            driver,
            client,
            profile,
        })
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The text of the element with `data-testid="{id}"`, or `None` if there is none.
    pub async fn text(&self, id: &str) -> Option<String> {
        self.find(id).await.ok()?.text().await.ok()
    }

    /// The element with `data-testid="{id}"`.
    async fn find(&self, id: &str) -> anyhow::Result<fantoccini::elements::Element> {
        let selector = format!("[data-testid=\"{id}\"]");
        self.client
            .find(fantoccini::Locator::Css(&selector))
            .await
            .with_context(|| format!("finding [data-testid={id}]"))
    }

    /// Waits until the job on the jobs page ends; returns `verified` (re-executed), `sampled`
    /// (evidence of work), `refereed` (two providers), `failed` or `cancelled`.
    pub async fn wait_job_end(&self, timeout: Duration) -> anyhow::Result<String> {
        self.wait_for(
            "job-status",
            "verified, sampled, refereed, failed or cancelled",
            timeout,
            |t| {
                matches!(
                    t,
                    "verified" | "sampled" | "refereed" | "failed" | "cancelled"
                )
            },
        )
        .await
    }

    /// The attribute `name` of the element with `data-testid="{id}"`.
    pub async fn attr(&self, id: &str, name: &str) -> Option<String> {
        self.find(id).await.ok()?.attr(name).await.ok().flatten()
    }

    /// The attribute `name` of every element with `data-testid="{id}"`, in page order, read
    /// in one step (rows the page re-renders meanwhile cannot go stale).
    pub async fn attrs(&self, id: &str, name: &str) -> anyhow::Result<Vec<String>> {
        let script = r#"
            const [id, name] = arguments;
            return Array.from(document.querySelectorAll(`[data-testid="${id}"]`))
                .map(el => el.getAttribute(name))
                .filter(v => v !== null);
        "#;
        let value = self
            .client
            .execute(script, vec![id.into(), name.into()])
            .await?;
        Ok(serde_json::from_value(value)?)
    }

    /// Chooses `path` in the file input `data-testid="{id}"`.
    pub async fn choose_file(&self, id: &str, path: &Path) -> anyhow::Result<()> {
        self.find(id)
            .await?
            .send_keys(&path.display().to_string())
            .await
            .with_context(|| format!("choosing {} in [data-testid={id}]", path.display()))?;
        Ok(())
    }

    /// Goes to another page of the app through its navigation (no reload, so an unlocked
    /// wallet stays unlocked): `page` is `network`, `wallet`, `jobs`, `market` or `dao`.
    pub async fn nav(&self, page: &str) -> anyhow::Result<()> {
        self.click(&format!("nav-{page}")).await
    }

    /// Creates an account on the wallet page of `base_url` with `password`; returns its
    /// recovery phrase and account id. The wallet is unlocked afterwards.
    pub async fn create_wallet(
        &self,
        base_url: &str,
        password: &str,
    ) -> anyhow::Result<(String, String)> {
        self.goto(&format!("{}/wallet", base_url.trim_end_matches('/')))
            .await?;
        self.wait_for("wallet-state", "no wallet", Duration::from_secs(20), |t| {
            t == "none"
        })
        .await?;
        self.click("wallet-create").await?;
        let phrase = self
            .attr("wallet-phrase", "data-phrase")
            .await
            .context("the new wallet shows its recovery phrase")?;
        self.click("wallet-phrase-saved").await?;
        self.set_value("wallet-new-password", password).await?;
        self.set_value("wallet-new-password-confirm", password)
            .await?;
        self.click("wallet-save").await?;
        self.wait_for("wallet-state", "unlocked", Duration::from_secs(60), |t| {
            t == "unlocked"
        })
        .await?;
        let account = self
            .text("wallet-account")
            .await
            .context("the wallet shows its account id")?;
        Ok((phrase, account))
    }

    /// Clicks the element with `data-testid="{id}"`, as a person would: waiting (up to 20 s)
    /// for it to appear, and trying again if the page re-rendered it between finding it and
    /// clicking it.
    pub async fn click(&self, id: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = match self.find(id).await {
                Ok(element) => element
                    .click()
                    .await
                    .with_context(|| format!("clicking [data-testid={id}]")),
                Err(e) => Err(e),
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Sets the value of the input or select `data-testid="{id}"` as a person would, firing
    /// the `input` and `change` events the app listens to.
    pub async fn set_value(&self, id: &str, value: &str) -> anyhow::Result<()> {
        let script = r#"
            const [id, value] = arguments;
            const el = document.querySelector(`[data-testid="${id}"]`);
            if (!el) return false;
            el.value = value;
            el.dispatchEvent(new Event("input", { bubbles: true }));
            el.dispatchEvent(new Event("change", { bubbles: true }));
            return true;
        "#;
        // A page's code may still be loading (every page but the first is a lazy module).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .client
                .execute(script, vec![id.into(), value.into()])
                .await?;
            if found == serde_json::Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no element [data-testid={id}]");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `check` accepts the text of `data-testid="{id}"`; returns that text.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let last = self.poll(timeout, || self.text(id), &check).await;
        last.map_err(|last| {
            anyhow::anyhow!("after {timeout:?}, [data-testid={id}] is {last:?}, expected {what}")
        })
    }

    /// Like [`Browser::wait_for`], for an attribute of the element.
    pub async fn wait_attr(
        &self,
        id: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        match self.poll(timeout, || self.attr(id, name), &check).await {
            Ok(value) => Ok(value),
            Err(last) => {
                let problem = self.text("ledger-problem").await;
                let text = self.text(id).await;
                bail!(
                    "after {timeout:?}, [data-testid={id}] {name} is {last:?}, expected {what} \
                     (it reads {text:?}; ledger problem shown: {problem:?})"
                )
            }
        }
    }

    /// Reads with `read` every 50 ms until `check` holds (`Ok` with the value) or `timeout`
    /// passes (`Err` with the last value read, if any).
    async fn poll<F: std::future::Future<Output = Option<String>>>(
        &self,
        timeout: Duration,
        read: impl Fn() -> F,
        check: &impl Fn(&str) -> bool,
    ) -> Result<String, Option<String>> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let value = read().await;
            if let Some(v) = &value
                && check(v)
            {
                return Ok(v.clone());
            }
            last = value.or(last);
            if Instant::now() > deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page says it is connected to its relay.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for("connection-badge", "connected", timeout, |t| {
            t == "connected"
        })
        .await
        .map(|_| ())
    }

    /// Saves a PNG screenshot under `target/screenshots/`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = artifacts_dir("screenshots").join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop kills what is left of the process group.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.driver.id()) {
            // SAFETY: `kill` has no memory-safety preconditions; a negative pid names the
            // process group chromedriver leads (set at spawn), which holds only its Chromium.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium's processes may still be writing into the profile for a moment after the
        // kill; try again briefly rather than leave it behind.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

//! `node-relay`: the binary a provider runs.
//!
//! It serves the web app over HTTP, accepts browsers over libp2p webrtc-direct (and other
//! relays over TCP), and answers our protocols. Its identity key and its WebRTC certificate
//! live in the data directory, so its peer id and `/certhash/` multiaddr survive restarts.

use node_relay::{datadir, http, jobs, ledger, network, payments};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "node-relay",
    version,
    about = "Aqueduct relay: run a provider node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the relay: HTTP (web app and API), WebRTC for browsers, TCP for relays.
    Run(Box<RunArgs>),
    /// Print the relay's peer id and the multiaddrs browsers dial (creating its keys if needed).
    Id(IdArgs),
    /// Write a genesis for a network of several relays: its validators, funded accounts and
    /// the development parameters (with a faucet unless --no-faucet).
    Genesis(GenesisArgs),
}

#[derive(Args)]
struct GenesisArgs {
    /// The new network's id.
    #[arg(long)]
    network_id: String,
    /// A validator's peer id (as `node-relay id` prints it), with its voting power after `=`
    /// (default 1). Repeat for each validator.
    #[arg(long = "validator", required = true, value_parser = parse_weighted)]
    validators: Vec<(String, u64)>,
    /// An account to fund, as `<peer id>=<tokens>` (repeatable). Validators are funded with
    /// 1 000 000 tokens unless listed here.
    #[arg(long = "fund", value_parser = parse_weighted)]
    funds: Vec<(String, u64)>,
    /// Blocks per epoch: the validator set is re-elected from stake at the end of each.
    #[arg(long, default_value_t = 20)]
    epoch_blocks: u64,
    /// No faucet (a network whose tokens exist only through the genesis).
    #[arg(long)]
    no_faucet: bool,
    /// A relay new relays of the network start from: its relay-to-relay TCP multiaddr
    /// (`/ip4/…/tcp/…/p2p/<peer id>`); repeatable. Not part of the genesis hash.
    #[arg(long = "bootstrap-peer", value_parser = parse_peer)]
    bootstrap_peers: Vec<node_relay::upstream::Peer>,
    /// A validator's consensus multiaddr, for relays that run consensus; repeatable.
    #[arg(long = "bootstrap-consensus", value_parser = parse_peer)]
    bootstrap_consensus: Vec<node_relay::upstream::Peer>,
    /// Where to write the genesis JSON (standard output if absent).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_weighted(text: &str) -> Result<(String, u64), String> {
    match text.split_once('=') {
        None => Ok((text.to_owned(), 1)),
        Some((who, n)) => n
            .parse::<u64>()
            .map(|n| (who.to_owned(), n))
            .map_err(|_| format!("{n:?} in {text:?} is not a whole number")),
    }
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Where the relay keeps its identity key, certificate and state.
    #[arg(long, default_value = "relay-data")]
    data_dir: PathBuf,
    /// UDP address of the webrtc-direct listener browsers connect to.
    #[arg(long, default_value = "127.0.0.1:9090")]
    webrtc: SocketAddr,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Settings from a TOML file: keys are these flags' long names (`data-dir = "relay-data"`,
    /// `provide = true`, `peer = ["…"]`); a flag given on the command line wins.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the HTTP server (web app, /api/info, /healthz, /metrics).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// TCP address for relay-to-relay connections (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    tcp: SocketAddr,
    /// Directory holding the built web app (index.html and the wasm bundle).
    #[arg(long, default_value = "target/www")]
    www: PathBuf,
    /// The network this relay belongs to; requests for another network are refused.
    #[arg(long, default_value = client_core::protocol::DEV_NETWORK_ID)]
    network_id: String,
    /// Threads executing jobs (default: one per CPU core; 1 to 48).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=48))]
    job_workers: Option<u16>,
    /// Wall-clock limit of one job, in seconds.
    #[arg(long, default_value_t = 60)]
    job_time_limit: u64,
    /// Disk for stored job results, in MiB; past it the oldest are removed.
    #[arg(long, default_value_t = 1024)]
    results_budget_mb: u64,
    /// Disk for uploaded and compiled job modules, in MiB; past it the least recently used
    /// are removed (their customers are asked for the bytes again).
    #[arg(long, default_value_t = 1024)]
    modules_budget_mb: u64,
    /// How often results and modules past their retention or budget are removed, in seconds.
    #[arg(long, default_value_t = 30)]
    prune_interval_secs: u64,
    /// Connections held at once (browsers and relays, over WebRTC and TCP); more are refused.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Connections one peer may hold at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_peer: u32,
    /// New connections are refused while the relay's resident memory is above this many MB
    /// (those held are served as before). Default: 80% of the machine's physical memory; in a
    /// container with a memory limit, set it below that limit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_memory_mb: Option<u64>,
    /// The network's genesis file (JSON). Without it the relay starts a development network
    /// of its own, with itself as the only validator and a faucet, and keeps that genesis in
    /// the data directory (`genesis.json`).
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Another relay of the network, as the TCP multiaddr it prints under `relays:` (ending in
    /// `/p2p/<peer id>`); repeatable. A relay that does not make blocks itself follows these:
    /// it fetches their blocks, checks each (re-executing it and checking its validators'
    /// signatures) before storing it, and forwards the transactions it takes in to them.
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<node_relay::upstream::Peer>,
    /// Take part in consensus (Malachite, Tendermint) with the other validators: the TCP
    /// address of the consensus network (port 0 picks a free one; printed as `consensus:`).
    /// A relay with this flag makes blocks with the validator set the ledger names instead of
    /// alone, and joins it when it is elected.
    #[arg(long)]
    consensus: Option<SocketAddr>,
    /// Stand for the validator set (with --provide and --consensus): from the end of the
    /// epoch on, the candidates with the most stake validate.
    #[arg(long, requires_all = ["provide", "consensus"])]
    validate: bool,
    /// Another validator's consensus address, as it prints under `consensus:`; repeatable.
    #[arg(long = "consensus-peer", requires = "consensus")]
    consensus_peers: Vec<String>,
    /// How often a block is made while transactions are waiting, in milliseconds.
    #[arg(long, default_value_t = 500)]
    block_interval_ms: u64,
    /// The longest time between blocks, in milliseconds: a block is made this often even with
    /// nothing to include, so that block heights — which governance counts in — keep moving.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_ms: u64,
    /// Offer this relay's compute in the marketplace: register as a provider (bonding
    /// --stake from its own account) and publish the offer below, or update it if it changed.
    #[arg(long)]
    provide: bool,
    /// Tokens to bond when registering as a provider.
    #[arg(long, default_value_t = 100, requires = "provide")]
    stake: u64,
    /// Price per million fuel units, in base units (a millionth of a token).
    #[arg(long, default_value_t = 5, requires = "provide")]
    price_per_mfuel: u64,
    /// Free-form attributes of the offer, as key=value (repeatable), e.g. --attribute region=eu.
    #[arg(long = "attribute", requires = "provide", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// Stop providing: take the offer off the marketplace and start the unbonding delay of the
    /// stake (the relay keeps running, and runs jobs for free).
    #[arg(long, conflicts_with_all = ["provide", "withdraw"])]
    unbond: bool,
    /// After the unbonding delay: return the stake to the relay's balance.
    #[arg(long, conflicts_with_all = ["provide", "unbond"])]
    withdraw: bool,
    /// How often the relay settles the vouchers it was paid with, in seconds.
    #[arg(long, default_value_t = 30)]
    settle_interval_secs: u64,
    /// Testing only: lie in results in the given way, so tests can check that browsers catch it.
    #[cfg(feature = "faulty")]
    #[arg(long, value_enum)]
    faulty: Option<FaultArg>,
    /// Testing only: the step `--faulty fabricate-step` forges (1 is the first).
    #[cfg(feature = "faulty")]
    #[arg(long, default_value_t = 1)]
    fault_step: u64,
    /// Testing only: misbehave as a validator in the given ways, so tests can check that the
    /// other validators withstand it.
    #[cfg(feature = "faulty")]
    #[arg(long, value_enum, value_delimiter = ',')]
    byzantine: Vec<ByzantineArg>,
}

fn parse_peer(text: &str) -> Result<node_relay::upstream::Peer, String> {
    node_relay::upstream::Peer::parse(text).map_err(|e| format!("{e:#}"))
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

#[cfg(feature = "faulty")]
#[derive(Clone, Copy, clap::ValueEnum)]
enum FaultArg {
    WrongOutput,
    WrongFuel,
    WrongCheckpoint,
    BadSignature,
    /// Forge the transition of step `--fault-step` and compute the rest honestly from it.
    FabricateStep,
    /// Like `fabricate-step`, and never answer a referee's questions about the trace.
    SilentFabricateStep,
}

#[cfg(feature = "faulty")]
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ByzantineArg {
    /// Sign a second, conflicting vote beside every vote.
    DoubleSign,
    /// Propose blocks whose state root is wrong.
    InvalidBlocks,
}

#[derive(Args)]
struct IdArgs {
    #[command(flatten)]
    common: CommonArgs,
}

/// The command line, with `run --config FILE`'s settings put before the flags given (which
/// win over them). Clap's own errors (and `--help`) exit here as usual.
fn parse_with_config() -> anyhow::Result<Cli> {
    use clap::CommandFactory;
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let is_run = argv.get(1).is_some_and(|a| a == "run");
    let config = is_run
        .then(|| {
            argv.iter().skip(2).enumerate().find_map(|(i, a)| {
                let a = a.to_str()?;
                if a == "--config" {
                    argv.get(i + 3).map(PathBuf::from)
                } else {
                    a.strip_prefix("--config=").map(PathBuf::from)
                }
            })
        })
        .flatten();
    if let Some(path) = config {
        let command = Cli::command();
        let run = command
            .find_subcommand("run")
            .ok_or_else(|| anyhow::anyhow!("no run subcommand"))?;
        let flags = node_relay::config::flags_from(&path, run, &argv[2..])?;
        let at = 2;
        for (i, flag) in flags.into_iter().enumerate() {
            argv.insert(at + i, flag.into());
        }
    }
    Ok(Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit()))
}

fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = match parse_with_config() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("node-relay: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Id(args) => print_id(args),
        Command::Genesis(args) => write_genesis(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node-relay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    // webrtc-rs is chatty: it logs a harmless warning per DTLS handshake. Keep our own info
    // logs and only its errors, unless RUST_LOG says otherwise.
    let default = "info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_sctp=error,\
                   webrtc_mdns=error,dtls=error,libp2p_webrtc=warn";
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn print_id(args: IdArgs) -> anyhow::Result<()> {
    let keys = datadir::RelayKeys::load_or_create(&args.common.data_dir)?;
    println!("peer id: {}", keys.keypair.peer_id());
    println!(
        "webrtc:  {}",
        network::webrtc_multiaddr(args.common.webrtc, &keys)
    );
    Ok(())
}

fn write_genesis(args: GenesisArgs) -> anyhow::Result<()> {
    use client_core::identity::PublicKey;
    use client_core::ledger::genesis::{Balance, Bootstrap};
    use client_core::ledger::state::UNITS_PER_TOKEN;
    use client_core::ledger::{Genesis, Params, Validator};
    let parse = |who: &str| {
        PublicKey::parse(who).map_err(|e| anyhow::anyhow!("{who:?} is not a peer id: {e}"))
    };
    let mut validators = Vec::new();
    for (who, power) in &args.validators {
        validators.push(Validator {
            key: parse(who)?,
            power: *power,
        });
    }
    let mut balances: Vec<Balance> = Vec::new();
    for (who, tokens) in &args.funds {
        balances.push(Balance {
            account: parse(who)?,
            amount: tokens
                .checked_mul(UNITS_PER_TOKEN)
                .context("a funded amount is too large")?,
        });
    }
    for v in &validators {
        if !balances.iter().any(|b| b.account == v.key) {
            balances.push(Balance {
                account: v.key,
                amount: 1_000_000 * UNITS_PER_TOKEN,
            });
        }
    }
    let mut params = Params::dev();
    params.epoch_blocks = args.epoch_blocks;
    if args.no_faucet {
        params.faucet_amount = None;
    }
    let genesis = Genesis {
        network_id: args.network_id,
        time_ms: ledger::now_ms(),
        validators,
        balances,
        params,
        treasury: 100_000 * UNITS_PER_TOKEN,
        bootstrap: Bootstrap {
            relays: args
                .bootstrap_peers
                .iter()
                .map(|p| p.addr.to_string())
                .collect(),
            consensus: args
                .bootstrap_consensus
                .iter()
                .map(|p| p.addr.to_string())
                .collect(),
        },
    };
    genesis.check().context("the genesis would not be valid")?;
    let json = genesis.to_json();
    match args.out {
        Some(path) => {
            std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{json}"),
    }
    Ok(())
}

/// The relays to follow and the validators to reach in consensus: those given as flags and
/// the genesis file's bootstrap peers, less this relay itself. A bootstrap address that does
/// not parse is skipped with a warning.
fn bootstrap_peers(
    args: &RunArgs,
    genesis: &client_core::ledger::Genesis,
    keypair: &client_core::identity::Keypair,
) -> (Vec<node_relay::upstream::Peer>, Vec<String>) {
    let me = keypair.peer_id();
    let mut peers = args.peers.clone();
    for text in &genesis.bootstrap.relays {
        match node_relay::upstream::Peer::parse(text) {
            Ok(peer) if peer.id != me && !peers.iter().any(|p| p.id == peer.id) => peers.push(peer),
            Ok(_) => {}
            Err(e) => tracing::warn!("skipping a bootstrap peer of the genesis: {e:#}"),
        }
    }
    let mut consensus = args.consensus_peers.clone();
    if args.consensus.is_some() {
        let own = format!("/p2p/{me}");
        for text in &genesis.bootstrap.consensus {
            match node_relay::upstream::Peer::parse(text) {
                Ok(_) if text.ends_with(&own) || consensus.contains(text) => {}
                Ok(_) => consensus.push(text.clone()),
                Err(e) => {
                    tracing::warn!("skipping a bootstrap consensus peer of the genesis: {e:#}")
                }
            }
        }
    }
    (peers, consensus)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let keys = datadir::RelayKeys::load_or_create(&args.common.data_dir)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let job_outcomes = node_relay::metrics::JobOutcomes::default();
    let mut job_config = jobs::JobConfig {
        outcomes: job_outcomes.clone(),
        wall_clock: std::time::Duration::from_secs(args.job_time_limit.max(1)),
        results_budget: args.results_budget_mb.saturating_mul(1 << 20),
        modules_budget: args.modules_budget_mb.saturating_mul(1 << 20),
        prune_interval: std::time::Duration::from_secs(args.prune_interval_secs.max(1)),
        ..jobs::JobConfig::default()
    };
    if let Some(workers) = args.job_workers {
        job_config.workers = usize::from(workers);
    }
    #[cfg(feature = "faulty")]
    if let Some(fault) = args.faulty {
        job_config.fault = match fault {
            FaultArg::WrongOutput => jobs::Fault::WrongOutput,
            FaultArg::WrongFuel => jobs::Fault::WrongFuel,
            FaultArg::WrongCheckpoint => jobs::Fault::WrongCheckpoint,
            FaultArg::BadSignature => jobs::Fault::BadSignature,
            FaultArg::FabricateStep => jobs::Fault::FabricateStep(args.fault_step),
            FaultArg::SilentFabricateStep => jobs::Fault::SilentFabricateStep(args.fault_step),
        };
        tracing::warn!(
            "FAULTY RELAY: results are deliberately wrong ({:?})",
            job_config.fault
        );
    }
    let genesis = datadir::load_or_create_genesis(
        &args.common.data_dir,
        args.genesis.as_deref(),
        &args.network_id,
        &keys.keypair,
    )?;
    let (peers, consensus_peers) = bootstrap_peers(&args, &genesis, &keys.keypair);
    let ledger_config = ledger::LedgerConfig {
        block_interval: std::time::Duration::from_millis(args.block_interval_ms.max(10)),
        heartbeat: std::time::Duration::from_millis(
            args.heartbeat_ms.max(args.block_interval_ms).max(10),
        ),
        ..ledger::LedgerConfig::default()
    };
    let ledger = ledger::Ledger::open(
        &args.common.data_dir,
        &genesis,
        Box::new(ledger::SoloValidator::new(keys.keypair.clone())),
        ledger_config,
    )?;
    // With --consensus, blocks are made by the validator set through the consensus engine;
    // without, here while this relay is the only validator of the current set, and otherwise
    // it follows its peers.
    let consensus_listen = match args.consensus {
        Some(addr) => Some(node_relay::consensus::resolve_listen(addr)?),
        None => None,
    };
    let (producer, consensus) = match consensus_listen {
        Some(listen) => {
            let settings = node_relay::consensus::ConsensusSettings {
                listen,
                peers: consensus_peers,
                wal_dir: args.common.data_dir.join("consensus"),
                #[cfg(feature = "faulty")]
                byzantine: node_relay::consensus::Byzantine {
                    double_sign: args.byzantine.contains(&ByzantineArg::DoubleSign),
                    invalid_blocks: args.byzantine.contains(&ByzantineArg::InvalidBlocks),
                },
                #[cfg(not(feature = "faulty"))]
                byzantine: node_relay::consensus::Byzantine::default(),
            };
            let started = node_relay::consensus::start(
                Arc::clone(&ledger),
                keys.keypair.clone(),
                settings,
                shutdown_rx.clone(),
            )
            .await?;
            (None, Some(started.task))
        }
        None => (Some(ledger.spawn_producer(shutdown_rx.clone())), None),
    };
    let (follower, forwarder) = if peers.is_empty() {
        if !ledger.makes_blocks() && consensus.is_none() {
            tracing::warn!(
                "this relay does not make the blocks of network {:?} and has no --peer to \
                 follow: it serves the state it has",
                genesis.network_id
            );
        }
        (None, None)
    } else {
        let upstream = node_relay::upstream::Upstream::start(
            &keys.keypair,
            peers.clone(),
            shutdown_rx.clone(),
        )?;
        let (queue, queued) = node_relay::upstream::forward_queue();
        ledger.forward_to(queue, peers.iter().map(|p| p.id).collect());
        // A validator in consensus gets its blocks from the engine (and its sync); its peers
        // only receive the transactions it takes in, so that whoever proposes next has them.
        let follower = consensus.is_none().then(|| {
            node_relay::upstream::spawn_follower(
                Arc::clone(&ledger),
                upstream.clone(),
                shutdown_rx.clone(),
            )
        });
        (
            follower,
            Some(node_relay::upstream::spawn_forwarder(
                upstream,
                queued,
                shutdown_rx.clone(),
            )),
        )
    };

    let payments = payments::Payments::open(
        Arc::clone(&ledger),
        keys.keypair.clone(),
        payments::PaymentConfig {
            settle_interval: std::time::Duration::from_secs(args.settle_interval_secs.max(1)),
            ..payments::PaymentConfig::default()
        },
    )?;
    let settler = payments.spawn_settler(shutdown_rx.clone());
    let (job_config_max_fuel, job_workers) = (job_config.max_fuel, job_config.workers);
    let job_service = jobs::JobService::start(
        &args.common.data_dir,
        keys.keypair.clone(),
        args.network_id.clone(),
        job_config,
        Arc::clone(&payments),
    )?;

    let node = network::Node::start(
        &keys,
        network::Listen {
            webrtc: args.common.webrtc,
            tcp: args.tcp,
            limits: network::ConnectionCaps {
                total: args.max_connections,
                per_peer: args.max_connections_per_peer,
                memory_mb: args.max_memory_mb,
                ..network::ConnectionCaps::default()
            },
        },
        args.network_id.clone(),
        Arc::clone(&job_service),
        Arc::clone(&ledger),
        shutdown_rx.clone(),
    )
    .await?;
    let shared = Arc::clone(&node.shared);
    if args.provide {
        use client_core::ledger::state::{Offer, UNITS_PER_TOKEN, VerificationLevel};
        let mut attributes = args.attributes.clone();
        attributes.push((
            "software".into(),
            format!("node-relay {}", client_core::VERSION),
        ));
        let offer = Offer {
            price_per_mfuel: args.price_per_mfuel,
            max_fuel: job_config_max_fuel,
            concurrency: u32::try_from(job_workers).unwrap_or(u32::MAX),
            levels: vec![
                VerificationLevel::Receipt,
                VerificationLevel::Sampled,
                VerificationLevel::Full,
            ],
            addrs: shared
                .webrtc_addrs()
                .iter()
                .map(ToString::to_string)
                .take(client_core::ledger::state::MAX_OFFER_ADDRS)
                .collect(),
            attributes,
        };
        let stake = args.stake.saturating_mul(UNITS_PER_TOKEN);
        match ledger::ensure_provider(&ledger, &keys.keypair, stake, offer) {
            Ok(what) => println!("  provider: {what}"),
            Err(e) => eprintln!("  provider: not registered: {e:#}"),
        }
        if args.validate {
            match ledger::ensure_candidacy(&ledger, &keys.keypair) {
                Ok(what) => println!("  validator: {what}"),
                Err(e) => eprintln!("  validator: not standing: {e:#}"),
            }
        }
    }
    if args.unbond || args.withdraw {
        use client_core::ledger::TxKind;
        let (kind, done) = if args.unbond {
            (
                TxKind::Unbond,
                "unbonding: the offer is withdrawn and the stake locked for the unbonding delay",
            )
        } else {
            (
                TxKind::Withdraw,
                "withdrawn: the stake returns to the relay's balance",
            )
        };
        match ledger.submit_own(&keys.keypair, kind) {
            Ok(tx) => println!("  provider: {done} (transaction {tx}, in the next block)"),
            Err(e) => eprintln!("  provider: {e:#}"),
        }
    }

    let http_listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding the HTTP server to {}", args.http))?;
    let http_addr = http_listener.local_addr()?;
    if !args.www.join("index.html").is_file() {
        tracing::warn!(
            "no web app at {} (index.html missing): build it with `cargo xtask run`",
            args.www.display()
        );
    }
    let metrics = node_relay::metrics::Metrics::register(
        Arc::clone(&shared),
        Arc::clone(&ledger),
        Arc::clone(&job_service),
        &job_outcomes,
    );
    let http = tokio::spawn(http::serve(
        http_listener,
        Arc::clone(&shared),
        metrics,
        args.www.clone(),
        shutdown_rx.clone(),
    ));

    println!("Aqueduct relay {}", shared.peer_id);
    println!("  network:  {}", shared.network_id);
    println!("  genesis:  {}", genesis.hash());
    println!("  data dir: {}", args.common.data_dir.display());
    for addr in shared.webrtc_addrs() {
        println!("  webrtc:   {addr}");
    }
    for addr in shared.relay_addrs() {
        println!("  relays:   {addr}");
    }
    if let Some(listen) = consensus_listen {
        println!(
            "  consensus: /ip4/{}/tcp/{}/p2p/{}",
            listen.ip(),
            listen.port(),
            keys.keypair.peer_id()
        );
    }
    println!("  open the web app: http://{http_addr}/");
    println!("Press Ctrl-C to stop.");

    wait_for_signal().await;
    println!("Shutting down…");
    let _ = shutdown_tx.send(true);
    let (net, web) = tokio::join!(node.task, http);
    for task in [producer, follower, forwarder, consensus]
        .into_iter()
        .flatten()
    {
        let _ = task.await;
    }
    let _ = settler.await;
    net.context("network task")?;
    web.context("http task")??;
    println!("Stopped.");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

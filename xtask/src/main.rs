//! `cargo xtask`: the project's commands. One place builds the web bundle, installs what the
//! tests need and runs everything, so a newcomer needs only `cargo xtask run` and
//! `cargo xtask test`.

mod bundle;
mod fuzz;
mod sdk;
mod setup;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Aqueduct project commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the web app and start a single-node dev relay; prints the URL to open.
    Run {
        /// Extra arguments for `node-relay run` (after `--`), e.g. `-- --http 0.0.0.0:8080`.
        #[arg(last = true)]
        relay_args: Vec<String>,
    },
    /// Install what the tests need (if missing) and run every test: native, wasm in headless
    /// Chromium, end-to-end.
    Test,
    /// Start a network of validator relays on loopback (one genesis, consensus between them)
    /// and print each relay's web app URL; Ctrl-C stops them all.
    Devnet {
        /// How many validators.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
        validators: u16,
    },
    /// Build the web app (and the example jobs) into target/www, as the tests and `run` use it.
    Www,
    /// Release relay plus the optimised web bundle, with the bundle's raw/gzip/brotli sizes.
    Dist,
    /// The JavaScript/TypeScript SDK package (ES module, TypeScript declarations) in
    /// target/sdk/aqueduct-sdk; also copied with the example pages into target/www.
    Sdk,
    /// Formatting and clippy (`-D warnings`), natively and for wasm32.
    Lint,
    /// Coverage-guided fuzzing (libFuzzer) of every decoder of network and file input and of
    /// the job-module instrumenter; the corpus grows in client-core/fuzz/corpus.
    Fuzz {
        /// Executions per target.
        #[arg(long, default_value_t = 10_000_000)]
        runs: u64,
        /// Targets to run (all when none is named).
        #[arg(value_parser = fuzz::TARGETS)]
        targets: Vec<String>,
    },
    /// End-to-end benchmark: page loads and round trips in headless Chromium.
    Bench {
        /// Fresh page loads to measure.
        #[arg(long, default_value_t = 12)]
        loads: u32,
        /// Round-trip probes to measure.
        #[arg(long, default_value_t = 300)]
        probes: u32,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run { relay_args } => run(&relay_args),
        Cmd::Test => test(),
        Cmd::Devnet { validators } => devnet(validators),
        Cmd::Www => bundle::build(None).map(|www| println!("{}", www.display())),
        Cmd::Dist => dist().map(|_| ()),
        Cmd::Sdk => sdk(),
        Cmd::Lint => lint(),
        Cmd::Fuzz { runs, targets } => fuzz_all(runs, &targets),
        Cmd::Bench { loads, probes } => bench(loads, probes),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, failing with the command line if it fails.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

pub fn step(what: &str) {
    eprintln!("==> {what}");
}

fn run(relay_args: &[String]) -> anyhow::Result<()> {
    setup::ensure_wasm_target()?;
    let www = bundle::build(None)?;
    step("building the relay (release)");
    run_cmd(cargo().args(["build", "--release", "--quiet", "-p", "node-relay"]))?;
    let data_dir = root().join(".aqueduct").join("dev");
    step("starting a single-node dev relay (Ctrl-C to stop)");
    let relay = root().join("target/release/node-relay");
    let status = Command::new(relay)
        .arg("run")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--www")
        .arg(&www)
        // The dev network's relay offers its compute, so the marketplace has an offer.
        .args(if relay_args.iter().any(|a| a == "--provide") {
            &[][..]
        } else {
            &["--provide"][..]
        })
        .args(relay_args)
        .status()
        .context("starting node-relay")?;
    if !status.success() {
        bail!("node-relay exited with {status}");
    }
    Ok(())
}

/// The network id of `cargo xtask devnet`.
const DEVNET_ID: &str = "aqueduct-devnet";

fn devnet(validators: u16) -> anyhow::Result<()> {
    setup::ensure_wasm_target()?;
    let www = bundle::build(None)?;
    step("building the relay (release)");
    run_cmd(cargo().args(["build", "--release", "--quiet", "-p", "node-relay"]))?;
    let relay = root().join("target/release/node-relay");
    let home = root()
        .join(".aqueduct")
        .join(format!("devnet-{validators}"));
    let dirs: Vec<PathBuf> = (0..validators)
        .map(|i| home.join(format!("v{i}")))
        .collect();
    let mut ids = Vec::new();
    for dir in &dirs {
        let out = Command::new(&relay)
            .args(["id", "--data-dir"])
            .arg(dir)
            .output()
            .context("running node-relay id")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("peer id:"))
            .map(|id| id.trim().to_owned())
            .with_context(|| format!("node-relay id printed no peer id: {text}"))?;
        ids.push(id);
    }
    // Fixed loopback ports, so that restarting the devnet keeps every address.
    let port = |base: u16, i: u16| base + i;
    let addr = |base: u16, j: u16| {
        format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            port(base, j),
            ids[usize::from(j)]
        )
    };
    // The genesis names every validator's relay and consensus address as bootstrap peers:
    // the relays find each other from it, with no peer flags.
    let genesis = home.join("genesis.json");
    if !genesis.exists() {
        step("writing the devnet genesis");
        let mut cmd = Command::new(&relay);
        cmd.args(["genesis", "--network-id", DEVNET_ID]);
        for (j, id) in ids.iter().enumerate() {
            let j = u16::try_from(j)?;
            cmd.arg("--validator").arg(id);
            cmd.arg("--bootstrap-peer").arg(addr(7001, j));
            cmd.arg("--bootstrap-consensus").arg(addr(26701, j));
        }
        run_cmd(cmd.arg("--out").arg(&genesis))?;
    } else if !std::fs::read_to_string(&genesis)?.contains("\"bootstrap\"") {
        bail!(
            "{} was written by an earlier version, without bootstrap peers; remove {} to start \
             a new devnet",
            genesis.display(),
            home.display()
        );
    }
    step(&format!(
        "starting {validators} validators (Ctrl-C stops them all)"
    ));
    let mut children = Vec::new();
    for i in 0..validators {
        let log_path = dirs[usize::from(i)].join("relay.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(&relay);
        cmd.arg("run")
            .arg("--data-dir")
            .arg(&dirs[usize::from(i)])
            .arg("--www")
            .arg(&www)
            .arg("--genesis")
            .arg(&genesis)
            .args(["--network-id", DEVNET_ID])
            .arg("--http")
            .arg(format!("127.0.0.1:{}", port(8081, i)))
            .arg("--webrtc")
            .arg(format!("127.0.0.1:{}", port(9091, i)))
            .arg("--tcp")
            .arg(format!("127.0.0.1:{}", port(7001, i)))
            .arg("--consensus")
            .arg(format!("127.0.0.1:{}", port(26701, i)))
            .arg("--provide")
            .arg("--validate");
        let child = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting node-relay")?;
        children.push(child);
        println!(
            "  validator {i}: {}  open the web app: http://127.0.0.1:{}/  (log: {})",
            ids[usize::from(i)],
            port(8081, i),
            log_path.display()
        );
    }
    println!(
        "Network {DEVNET_ID}: {validators} validators in {}. Blocks need more than two thirds of \
         them; stop one (or more, up to a third) and the rest carry on. Each stands for the set \
         with its stake, so from the first epoch's end (block 20) the set is elected from stake.",
        home.display()
    );
    let mut failed = false;
    for mut child in children {
        failed |= !child.wait().is_ok_and(|s| s.success());
    }
    if failed {
        bail!("a validator exited with an error; see the logs above");
    }
    Ok(())
}

fn test() -> anyhow::Result<()> {
    setup::ensure_wasm_target()?;
    setup::ensure_test_runner()?;
    let browser = setup::ensure_chromium()?;

    check_formatting()?;
    let interop = setup::ensure_interop()?;

    let www = bundle::build(None)?;
    let package = sdk::build(Some(&www), false)?;
    sdk::type_check(&package)?;
    // The faulty relay (feature `faulty`) lies on purpose; tests check that browsers catch it.
    // Built first and set aside, because both builds write target/debug/node-relay.
    step("building the relay, and a faulty one for tests");
    let faulty = root().join("target/debug/node-relay-faulty");
    run_cmd(cargo().args([
        "build",
        "--quiet",
        "-p",
        "node-relay",
        "--features",
        "faulty",
    ]))?;
    std::fs::copy(root().join("target/debug/node-relay"), &faulty)
        .with_context(|| format!("copying the faulty relay to {}", faulty.display()))?;
    run_cmd(cargo().args(["build", "--quiet", "-p", "node-relay"]))?;

    // The relays, the web app and the browser that the test crate's tests use.
    let with_test_env = |cmd: &mut Command, www: &Path| {
        cmd.env("AQUEDUCT_RELAY_BIN", root().join("target/debug/node-relay"))
            .env("AQUEDUCT_FAULTY_RELAY_BIN", &faulty)
            .env("AQUEDUCT_WWW", www)
            .env("AQUEDUCT_INTEROP", &interop)
            .env("CHROMEDRIVER", &browser.chromedriver)
            .env("CHROMIUM", &browser.chromium);
    };

    step("native tests (unit, jobs on wasmtime, relay, end-to-end in headless Chromium)");
    let mut native = cargo();
    native.args([
        "test",
        "--workspace",
        "--exclude",
        "web-ui",
        "--exclude",
        "aqueduct-sdk",
    ]);
    with_test_env(&mut native, &www);
    run_cmd(&mut native)?;

    step("wasm tests in headless Chromium (client-core; jobs in Chromium's engine vs wasmtime)");
    run_cmd(
        cargo()
            .args([
                "test",
                "-p",
                "client-core",
                "--features",
                "engine-vectors",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .env("AQUEDUCT_JOBS_DIR", www.join("jobs"))
            .env(
                "AQUEDUCT_JOB_VECTORS",
                root().join("target/job-vectors/vectors.txt"),
            )
            .env("CHROMEDRIVER", &browser.chromedriver)
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
    )?;

    // What `cargo xtask dist` ships differs from the tests' bundle: every module (the page's,
    // the lazy pages', the worker's) went through wasm-opt, and the relay serves them brotli'd.
    // The app's loading, its lazy pages and its worker, run on that bundle.
    let dist = dist_bundle()?;
    step("the optimised bundle in headless Chromium: loading, lazy pages, the worker's checks");
    let mut optimised = cargo();
    optimised.args([
        "test",
        "-p",
        "aqueduct-tests",
        "--test",
        "browser_connects",
        "--test",
        "browser_jobs",
    ]);
    with_test_env(&mut optimised, &dist);
    run_cmd(&mut optimised)?;

    step("fuzz smoke: every fuzz target from its seeds, 20 000 executions, fixed seed");
    let smoke = root().join("target/fuzz-smoke");
    // A fresh corpus each time, so the smoke runs the same inputs on every machine.
    if smoke.exists() {
        std::fs::remove_dir_all(&smoke).with_context(|| format!("removing {}", smoke.display()))?;
    }
    let reports = fuzz::run(&fuzz::TARGETS, 20_000, &smoke, Some(1))?;
    fuzz::print(&reports);

    eprintln!("xtask: all tests passed; `cargo xtask lint` runs clippy");
    Ok(())
}

fn fuzz_all(runs: u64, targets: &[String]) -> anyhow::Result<()> {
    // In the order given (all of them when none is named).
    let chosen: Vec<&'static str> = if targets.is_empty() {
        fuzz::TARGETS.to_vec()
    } else {
        targets
            .iter()
            .filter_map(|n| fuzz::TARGETS.iter().copied().find(|t| t == n))
            .collect()
    };
    let reports = fuzz::run(&chosen, runs, &root().join("client-core/fuzz/corpus"), None)?;
    fuzz::print(&reports);
    Ok(())
}

/// `cargo fmt --check` of the workspace and of the fuzz crate (a workspace of its own).
fn check_formatting() -> anyhow::Result<()> {
    step("checking formatting");
    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_cmd(cargo().args([
        "fmt",
        "--manifest-path",
        "client-core/fuzz/Cargo.toml",
        "--",
        "--check",
    ]))
}

fn lint() -> anyhow::Result<()> {
    setup::ensure_wasm_target()?;
    check_formatting()?;
    step("clippy, native");
    run_cmd(cargo().args([
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--features",
        "node-relay/faulty",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("clippy, the fuzz targets");
    run_cmd(cargo().args([
        "clippy",
        "--quiet",
        "--manifest-path",
        "client-core/fuzz/Cargo.toml",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("clippy, wasm32 (client-core with its browser peer, web-ui, the SDK)");
    run_cmd(cargo().args([
        "clippy",
        "--quiet",
        "-p",
        "client-core",
        "-p",
        "web-ui",
        "-p",
        "aqueduct-sdk",
        "--all-targets",
        "--features",
        "client-core/browser",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))
}

fn sdk() -> anyhow::Result<()> {
    setup::ensure_wasm_target()?;
    let www = root().join("target/www");
    sdk::build(www.is_dir().then_some(www.as_path()), true)?;
    Ok(())
}

/// The web app as `dist` ships it, in `target/dist/www`: every module through wasm-opt,
/// precompressed, with the size report printed.
fn dist_bundle() -> anyhow::Result<PathBuf> {
    let www = bundle::build(Some(&root().join("target/dist/www")))?;
    bundle::optimise(&www)?;
    bundle::precompress_and_report(&www)?;
    Ok(www)
}

fn dist() -> anyhow::Result<PathBuf> {
    setup::ensure_wasm_target()?;
    let www = dist_bundle()?;
    step("building the relay (release)");
    run_cmd(cargo().args(["build", "--release", "--quiet", "-p", "node-relay"]))?;
    eprintln!(
        "relay: {}\nweb app: {}",
        root().join("target/release/node-relay").display(),
        www.display()
    );
    Ok(www)
}

/// `cargo run --release` of one of the test crate's benchmark binaries, with `args`.
fn bench_bin(name: &str, args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "aqueduct-tests",
        "--bin",
        name,
        "--",
    ])
    .args(args);
    cmd
}

/// `cargo bench` of one of the test crate's criterion benches.
fn criterion(name: &str) -> Command {
    let mut cmd = cargo();
    cmd.args(["bench", "--quiet", "-p", "aqueduct-tests", "--bench", name]);
    cmd
}

fn bench(loads: u32, probes: u32) -> anyhow::Result<()> {
    let browser = setup::ensure_chromium()?;
    let www = dist()?;
    let relay = root().join("target/release/node-relay");
    step("end-to-end benchmark (release relay, headless Chromium)");
    let (loads, probes) = (loads.to_string(), probes.to_string());
    run_cmd(
        bench_bin("e2e-bench", &["--loads", &loads, "--probes", &probes])
            .env("AQUEDUCT_RELAY_BIN", &relay)
            .env("AQUEDUCT_WWW", &www)
            .env("CHROMEDRIVER", &browser.chromedriver)
            .env("CHROMIUM", &browser.chromium),
    )?;
    for transport in ["webrtc", "tcp"] {
        for streams in ["per-job", "one"] {
            let how = if streams == "one" {
                "all jobs on one stream per client"
            } else {
                "a new stream for every job"
            };
            step(&format!(
                "job throughput: 20 native clients over {transport}, {how}"
            ));
            let args = [
                "--clients",
                "20",
                "--seconds",
                "10",
                "--transport",
                transport,
                "--streams",
                streams,
            ];
            run_cmd(
                bench_bin("job-throughput", &args)
                    .env("AQUEDUCT_RELAY_BIN", &relay)
                    .env("AQUEDUCT_WWW", &www),
            )?;
        }
    }
    step("load and soak: 200 peers over TCP and 20 over webrtc-direct for 10 minutes");
    run_cmd(
        bench_bin(
            "load-soak",
            &["--tcp", "200", "--webrtc", "20", "--seconds", "600"],
        )
        .env("AQUEDUCT_RELAY_BIN", &relay)
        .env("AQUEDUCT_WWW", &www),
    )?;
    step("job speed ratios: native, wasmtime, sampling (interleaved runs)");
    run_cmd(bench_bin("job-ratios", &[]).env("AQUEDUCT_WWW", &www))?;
    step("refereeing two providers: the referee's cost against the job's");
    run_cmd(bench_bin("referee-bench", &[]).env("AQUEDUCT_WWW", &www))?;
    step("job execution and verification costs (criterion)");
    run_cmd(criterion("jobs").env("AQUEDUCT_WWW", &www))?;
    step("ledger: applying transactions, proofs, block production (criterion)");
    run_cmd(&mut criterion("ledger"))?;
    step("consensus: four validators, finality, throughput, a validator killed");
    run_cmd(
        bench_bin("consensus-bench", &[])
            .env("AQUEDUCT_RELAY_BIN", &relay)
            .env("AQUEDUCT_WWW", &www),
    )?;
    step("ledger database size for 100 000 accounts");
    run_cmd(&mut bench_bin("ledger-size", &["--accounts", "100000"]))
}

//! `cargo xtask fuzz`: the coverage-guided fuzz targets of `client-core/fuzz` under libFuzzer
//! (cargo-fuzz, no sanitizer, so the pinned stable toolchain builds them; overflow checks and
//! debug assertions are on). Each target starts from a corpus of well-formed inputs written by
//! the fuzz crate's `seeds` program, runs for a number of executions, and the figures are
//! reported per target. `cargo xtask test` runs a short, seeded smoke of each.

use crate::{root, run_cmd, step};
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Every target in `client-core/fuzz/fuzz_targets`.
pub const TARGETS: [&str; 8] = [
    "frame",
    "messages",
    "transactions",
    "receipt",
    "proofs",
    "fraud_proof",
    "backup",
    "module",
];

/// The cargo-fuzz release these commands are written against.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Installs cargo-fuzz at the pinned version when it is missing.
pub fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if installed.is_some_and(|v| v.contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    step(&format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} (fuzzing driver; takes a minute once)"
    ));
    run_cmd(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
    .with_context(|| {
        format!("run `cargo install cargo-fuzz --version {CARGO_FUZZ_VERSION} --locked` yourself")
    })
}

fn fuzz_dir() -> PathBuf {
    root().join("client-core/fuzz")
}

/// `cargo fuzz` in `client-core`, with the flags every call here shares.
fn cargo_fuzz(sub: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root().join("client-core")).args([
        "fuzz",
        sub,
        "--sanitizer",
        "none",
        "--release",
        "--debug-assertions",
    ]);
    cmd
}

/// Writes the seed corpus of every target into `corpus` (the example jobs too, when built).
fn write_seeds(corpus: &Path) -> anyhow::Result<()> {
    let mut modules: Vec<PathBuf> = std::fs::read_dir(root().join("target/www/jobs"))
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    modules.sort();
    run_cmd(
        Command::new("cargo")
            .current_dir(fuzz_dir())
            .args(["run", "--quiet", "--release", "--example", "seeds", "--"])
            .arg(corpus)
            .args(&modules),
    )
}

/// What one run of one target did.
pub struct Report {
    pub target: &'static str,
    pub executions: u64,
    pub seconds: f64,
    pub corpus: usize,
    pub peak_rss_mb: u64,
}

/// Runs `targets` for `runs` executions each (libFuzzer `-runs`), from `corpus`, with a fixed
/// seed when `seed` is given. Fails on the first crash, naming the input that caused it.
pub fn run(
    targets: &[&'static str],
    runs: u64,
    corpus: &Path,
    seed: Option<u32>,
) -> anyhow::Result<Vec<Report>> {
    ensure_cargo_fuzz()?;
    step("building the fuzz targets (libFuzzer, no sanitizer, overflow checks on)");
    run_cmd(&mut cargo_fuzz("build"))?;
    write_seeds(corpus)?;
    let mut reports = Vec::new();
    for target in targets {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        step(&format!("fuzzing `{target}` for {runs} executions"));
        let mut cmd = cargo_fuzz("run");
        cmd.arg(target)
            .arg(&dir)
            .arg("--")
            .arg(format!("-runs={runs}"))
            .arg("-print_final_stats=1")
            // Long enough for one job module to be validated and instrumented on a busy machine.
            .arg("-timeout=30")
            .arg("-rss_limit_mb=2048")
            .arg("-max_len=65536");
        if let Some(seed) = seed {
            cmd.arg(format!("-seed={seed}"));
        }
        let report = run_target(target, cmd, &dir)?;
        print(std::slice::from_ref(&report));
        reports.push(report);
    }
    Ok(reports)
}

fn run_target(target: &'static str, mut cmd: Command, corpus: &Path) -> anyhow::Result<Report> {
    let start = Instant::now();
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start cargo fuzz for `{target}`"))?;
    let mut executions = 0;
    let mut peak_rss_mb = 0;
    let mut last_shown = Instant::now();
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(n) = stat(&line, "stat::number_of_executed_units:") {
                executions = n;
            }
            if let Some(n) = stat(&line, "stat::peak_rss_mb:") {
                peak_rss_mb = n;
            }
            // libFuzzer's own progress lines, at most one every ten seconds, and its last.
            if line.starts_with("Done")
                || (line.starts_with('#') && last_shown.elapsed().as_secs() >= 10)
            {
                eprintln!("    {target}: {line}");
                last_shown = Instant::now();
            }
            tail.push(line);
            if tail.len() > 60 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    if !status.success() {
        for line in &tail {
            eprintln!("    {line}");
        }
        bail!(
            "fuzz target `{target}` failed ({status}); the input that failed is under \
             client-core/fuzz/artifacts/{target}/ — replay it with \
             `cd client-core && cargo fuzz run -s none --release {target} <file>`"
        );
    }
    let corpus = std::fs::read_dir(corpus).map(|d| d.count()).unwrap_or(0);
    Ok(Report {
        target,
        executions,
        seconds: start.elapsed().as_secs_f64(),
        corpus,
        peak_rss_mb,
    })
}

fn stat(line: &str, key: &str) -> Option<u64> {
    line.strip_prefix(key)?.trim().parse().ok()
}

pub fn print(reports: &[Report]) {
    eprintln!(
        "{:<14} {:>14} {:>10} {:>12} {:>8} {:>9}",
        "target", "executions", "seconds", "execs/s", "corpus", "peak MB"
    );
    for r in reports {
        eprintln!(
            "{:<14} {:>14} {:>10.0} {:>12.0} {:>8} {:>9}",
            r.target,
            r.executions,
            r.seconds,
            r.executions as f64 / r.seconds.max(0.001),
            r.corpus,
            r.peak_rss_mb
        );
    }
}

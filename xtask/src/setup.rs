//! Installs what builds and tests need, when it is missing, and says exactly what to run when
//! it cannot. Quiet when everything is present.

use crate::bundle::locked_wasm_bindgen_version;
use crate::{run_cmd, step};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    output_of(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

/// The wasm32 target of the pinned toolchain (rust-toolchain.toml lists it, but a toolchain
/// installed before that file existed may lack it).
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = output_of(Command::new("rustup").args(["target", "list", "--installed"]));
    match installed {
        Some(list) if list.lines().any(|l| l.trim() == "wasm32-unknown-unknown") => Ok(()),
        Some(_) => {
            step("installing the wasm32-unknown-unknown target");
            run_cmd(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
                .context("run `rustup target add wasm32-unknown-unknown` yourself")
        }
        // No rustup: assume the toolchain was installed some other way, with the target.
        None => Ok(()),
    }
}

/// `wasm-bindgen-test-runner` at exactly the Cargo.lock version of wasm-bindgen.
pub fn ensure_test_runner() -> anyhow::Result<()> {
    let version = locked_wasm_bindgen_version()?;
    let current = output_of(Command::new("wasm-bindgen-test-runner").arg("--version"));
    if current.is_some_and(|v| v.split_whitespace().any(|w| w == version)) {
        return Ok(());
    }
    step(&format!(
        "installing wasm-bindgen-cli {version} (test runner; takes a few minutes once)"
    ));
    run_cmd(Command::new("cargo").args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        &version,
        "--locked",
    ]))
    .with_context(|| {
        format!("run `cargo install wasm-bindgen-cli --version {version} --locked` yourself")
    })
}

pub struct BrowserPaths {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|name| {
        output_of(Command::new("sh").args(["-c", &format!("command -v {name}")]))
            .map(|p| PathBuf::from(p.trim()))
            .filter(|p| p.exists())
    })
}

fn find_browser() -> Option<BrowserPaths> {
    Some(BrowserPaths {
        chromium: find(&["chromium", "chromium-browser"])?,
        chromedriver: find(&["chromedriver"])?,
    })
}

/// `apt-get update`, then `apt-get install` of `packages`, quietly (as root).
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let quiet = |args: &[&str]| {
        run_cmd(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null()),
        )
    };
    quiet(&["update", "-qq"]).context("apt-get update failed")?;
    quiet(&[&["install", "-y", "-qq"], packages].concat()).context("apt-get install failed")
}

/// Debian's chromium and chromium-driver (installed with apt when running as root).
pub fn ensure_chromium() -> anyhow::Result<BrowserPaths> {
    if let Some(paths) = find_browser() {
        return Ok(paths);
    }
    const FIX: &str = "sudo apt-get update && sudo apt-get install -y chromium chromium-driver";
    if !is_root() {
        bail!("headless Chromium and chromedriver are needed for the browser tests; run: {FIX}");
    }
    step("installing chromium and chromium-driver from Debian");
    apt_install(&["chromium", "chromium-driver"])
        .with_context(|| format!("installing from Debian failed; run: {FIX}"))?;
    find_browser().with_context(|| format!("chromium still not found after installing; run: {FIX}"))
}

/// The js-libp2p client of the interoperability tests: its npm packages (exactly as
/// `tests/interop/package-lock.json` pins them, installed with `npm ci` when missing or when the
/// lock file changed) and its browser bundle, written with the page into `target/interop`.
/// Returns that directory.
pub fn ensure_interop() -> anyhow::Result<PathBuf> {
    const FIX: &str = "install Node.js 20 or newer with npm (Debian: apt-get install nodejs npm)";
    let mut node = output_of(Command::new("node").arg("--version"));
    if node.is_none() && is_root() {
        step("installing nodejs and npm from Debian");
        let _ = apt_install(&["nodejs", "npm"]);
        node = output_of(Command::new("node").arg("--version"));
    }
    let major = node.as_deref().and_then(|v| {
        v.trim()
            .trim_start_matches('v')
            .split('.')
            .next()?
            .parse::<u32>()
            .ok()
    });
    match major {
        Some(major) if major >= 20 => {}
        Some(_) => bail!(
            "Node.js {} is too old for the js-libp2p interoperability tests; {FIX}",
            node.as_deref().unwrap_or_default().trim()
        ),
        None => bail!("Node.js is needed for the js-libp2p interoperability tests; {FIX}"),
    }
    let dir = crate::root().join("tests/interop");
    let lock = std::fs::read(dir.join("package-lock.json"))
        .with_context(|| format!("reading {}", dir.join("package-lock.json").display()))?;
    let installed = dir.join("node_modules/.aqueduct-lock");
    if std::fs::read(&installed).ok().as_deref() != Some(lock.as_slice()) {
        step("installing the js-libp2p interoperability client (npm ci)");
        run_cmd(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
        )
        .with_context(|| format!("npm ci failed in {}", dir.display()))?;
        std::fs::write(&installed, &lock)
            .with_context(|| format!("writing {}", installed.display()))?;
    }
    let out = crate::root().join("target/interop");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::copy(dir.join("index.html"), out.join("index.html"))
        .with_context(|| format!("copying the interop page to {}", out.display()))?;
    let outfile = format!("--outfile={}", out.join("interop.js").display());
    run_cmd(
        Command::new(dir.join("node_modules/.bin/esbuild"))
            .args([
                "browser.mjs",
                "--bundle",
                "--format=iife",
                "--platform=browser",
                "--target=chrome120",
                "--log-level=warning",
                &outfile,
            ])
            .current_dir(&dir),
    )
    .context("bundling the js-libp2p browser client")?;
    Ok(out)
}

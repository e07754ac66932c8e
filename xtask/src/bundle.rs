//! Builds the web bundle: the `web-ui` crate for wasm32, wasm-bindgen's JS glue (through the
//! wasm-bindgen library, pinned to the Cargo.lock version), and the static files of `www/`.

use crate::{cargo, root, run_cmd, step};
use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm-bindgen version this xtask's wasm-bindgen-cli-support speaks (see Cargo.toml).
pub const WASM_BINDGEN_VERSION: &str = "0.2.108";
/// binaryen from npm; Debian's older wasm-opt breaks Rust's output (see the README).
const BINARYEN_NPM: &str = "binaryen@132";
/// The name of the generated files: `aqueduct.js` and `aqueduct_bg.wasm`.
const OUT_NAME: &str = "aqueduct";
/// The worker's bundle (web-ui's lib): `aqueduct_worker.js` and `aqueduct_worker_bg.wasm`,
/// loaded by `worker.js` when the page first needs it.
const WORKER_OUT_NAME: &str = "aqueduct_worker";
/// The script that fetches a lazy page's module (written by the splitter).
const SPLIT_LOADER: &str = "./__wasm_split.js";
/// Which modules each lazy page needs (written beside them, read by the size report).
const SPLIT_MANIFEST: &str = "__wasm_split_manifest.json";
/// The lazy pages' modules: `split_<page>.wasm` and the `chunk_<n>.wasm` they share.
const LAZY_MODULES: [&str; 2] = ["split_", "chunk_"];
/// What a first visit does not load: the worker's script and bundle, and the lazy modules.
const ON_DEMAND: [&str; 4] = [
    "worker.js",
    WORKER_OUT_NAME,
    LAZY_MODULES[0],
    LAZY_MODULES[1],
];

/// Reads the wasm-bindgen version Cargo.lock resolved.
pub fn locked_wasm_bindgen_version() -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
        {
            return Ok(version.trim_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock has no wasm-bindgen entry")
}

/// Builds the app into `target/www` (or `out`), returning the directory.
pub fn build(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target/www"));
    step("building the web app and its worker (wasm32, size-optimised)");
    // The page: linked with its relocations and symbols kept, which the splitter needs to cut
    // the lazy pages out (extra flags for this one crate only; its dependencies are shared).
    run_cmd(cargo().args([
        "rustc",
        "--quiet",
        "-p",
        "web-ui",
        "--bin",
        "web-ui",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
        "--",
        "-C",
        "link-arg=--emit-relocs",
        "-C",
        "strip=none",
    ]))?;
    run_cmd(cargo().args([
        "build",
        "--quiet",
        "-p",
        "web-ui",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
    ]))?;
    let locked = locked_wasm_bindgen_version()?;
    if locked != WASM_BINDGEN_VERSION {
        bail!(
            "Cargo.lock has wasm-bindgen {locked}, but xtask generates bindings with \
             {WASM_BINDGEN_VERSION}; set wasm-bindgen-cli-support = \"={locked}\" in xtask/Cargo.toml"
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The lazy modules of an earlier build would otherwise linger beside the new ones.
    for entry in std::fs::read_dir(&out)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if LAZY_MODULES.iter().any(|prefix| name.starts_with(prefix)) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    let built = root().join("target/wasm32-unknown-unknown/wasm-release");
    let main = split(&built.join("web-ui.wasm"), &out)?;
    for (wasm, name, split) in [
        (main, OUT_NAME, true),
        (built.join("aqueduct_worker.wasm"), WORKER_OUT_NAME, false),
    ] {
        wasm_bindgen_cli_support::Bindgen::new()
            .input_path(&wasm)
            .out_name(name)
            .typescript(false)
            .keep_lld_exports(split)
            // `worker.js` calls the worker's `init()` with no argument: its wasm is beside it.
            .omit_default_module_path(split)
            .web(true)?
            .generate(&out)
            .with_context(|| format!("generating JS bindings for {}", wasm.display()))?;
    }
    copy_files(&root().join("www"), &out)?;
    build_jobs(&out.join("jobs"))?;
    Ok(out)
}

/// Cuts the page's lazy pages (`#[wasm_split]`, see `web-ui/src/app.rs`) out of `wasm` into
/// their own modules in `out` (with the `__wasm_split.js` that loads them); returns the main
/// module, still to go through wasm-bindgen.
fn split(wasm: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    step("splitting the lazy pages out of the page's bundle");
    let input = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let work = root().join("target/wasm-split");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let main = work.join("main.wasm");
    let main_module = format!("./{OUT_NAME}.js");
    let mut options = wasm_split_cli_support::Options::new(&input);
    options.output_dir = out;
    options.main_out_path = &main;
    options.main_module = &main_module;
    options.link_name = SPLIT_LOADER;
    let split = wasm_split_cli_support::transform(options)
        .map_err(|e| anyhow::anyhow!("splitting {}: {e:?}", wasm.display()))?;
    // A module that cannot be fetched (the relay went away mid-visit) is not an error of the
    // app: the page that needs it says so and retries when opened again. The loader logs it
    // with `console.error`, which the page shows as "something went wrong"; make it a warning.
    let loader = out.join(SPLIT_LOADER);
    let script = std::fs::read_to_string(&loader)
        .with_context(|| format!("reading {}", loader.display()))?;
    const LOGGED: &str = "console.error(e);";
    if script.matches(LOGGED).count() != 1 {
        bail!(
            "{} no longer logs a failed load with `{LOGGED}` once; see xtask/src/bundle.rs",
            loader.display()
        );
    }
    std::fs::write(
        &loader,
        script.replace(LOGGED, "console.warn(\"fetching a page's module:\", e);"),
    )
    .with_context(|| format!("writing {}", loader.display()))?;
    // Which modules each lazy page needs, for the size report.
    let manifest = serde_json::to_string_pretty(&split.prefetch_map)?;
    std::fs::write(out.join(SPLIT_MANIFEST), manifest)
        .with_context(|| format!("writing {SPLIT_MANIFEST}"))?;
    Ok(main)
}

/// Copies the files of `from` (not its subdirectories) into `to`, creating it.
pub fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The example job modules (`www/jobs/<name>`), served by the relay under `/jobs/`.
pub const EXAMPLE_JOBS: [&str; 3] = ["hash-chain", "mandelbrot", "primes"];

/// Stack of an example job module. Small, so that a job's whole state (which is hashed at every
/// checkpoint and sent when sampled) stays small; the examples use little stack.
const JOB_STACK_BYTES: u32 = 32 * 1024;

/// Builds the example job modules into `out` as `<name>.wasm`.
pub fn build_jobs(out: &Path) -> anyhow::Result<()> {
    step("building the example job modules (wasm32)");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for name in EXAMPLE_JOBS {
        let package = format!("job-{name}");
        run_cmd(cargo().args([
            "rustc",
            "--quiet",
            "-p",
            &package,
            "--lib",
            "--crate-type",
            "cdylib",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "job",
            "--",
            "-C",
            &format!("link-arg=-zstack-size={JOB_STACK_BYTES}"),
        ]))?;
        let built = root()
            .join("target/wasm32-unknown-unknown/job")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = out.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest)
            .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    }
    Ok(())
}

fn wasm_opt() -> anyhow::Result<Option<PathBuf>> {
    let local = root().join("target/tools/node_modules/.bin/wasm-opt");
    if local.exists() {
        return Ok(Some(local));
    }
    step(&format!(
        "installing wasm-opt ({BINARYEN_NPM} from npm) into target/tools"
    ));
    let installed = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(root().join("target/tools"))
        .arg(BINARYEN_NPM)
        .status();
    match installed {
        Ok(s) if s.success() && local.exists() => Ok(Some(local)),
        _ => {
            eprintln!(
                "xtask: warning: could not install wasm-opt; the bundle stays unoptimised by \
                 binaryen. To fix: `npm install --prefix target/tools {BINARYEN_NPM}`"
            );
            Ok(None)
        }
    }
}

/// Runs binaryen's wasm-opt over the bundle's wasm (the page's, its lazy modules, the
/// worker's), in place.
pub fn optimise(www: &Path) -> anyhow::Result<()> {
    let mut modules: Vec<PathBuf> = std::fs::read_dir(www)
        .with_context(|| format!("reading {}", www.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    modules.sort();
    step(&format!(
        "optimising {} wasm modules with wasm-opt -Oz --converge",
        modules.len()
    ));
    for wasm in modules {
        optimise_wasm(&wasm)?;
    }
    Ok(())
}

/// Runs binaryen's wasm-opt over `wasm`, in place (left as it is if wasm-opt is unavailable).
pub fn optimise_wasm(wasm: &Path) -> anyhow::Result<()> {
    let Some(wasm_opt) = wasm_opt()? else {
        return Ok(());
    };
    run_cmd(
        Command::new(wasm_opt)
            .arg("-Oz")
            .arg("--converge")
            .arg("--enable-bulk-memory")
            .arg("--enable-nontrapping-float-to-int")
            .arg("--enable-sign-ext")
            .arg("--enable-mutable-globals")
            .arg("--enable-reference-types")
            .arg("--enable-multivalue")
            .arg(wasm)
            .arg("-o")
            .arg(wasm),
    )
}

/// Writes `.gz` and `.br` beside each text/wasm file (the relay serves them when the browser
/// accepts them) and prints the sizes.
pub fn precompress_and_report(www: &Path) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(www)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !["wasm", "js", "css", "html", "svg"].contains(&ext) {
            continue;
        }
        let raw = std::fs::read(&path)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&raw)?;
        let gz = gz.finish()?;
        let mut br = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(&mut br, 4096, 11, 22);
            writer.write_all(&raw)?;
        }
        std::fs::write(path.with_extension(format!("{ext}.gz")), &gz)?;
        std::fs::write(path.with_extension(format!("{ext}.br")), &br)?;
        rows.push((
            entry.file_name().to_string_lossy().into_owned(),
            raw.len(),
            gz.len(),
            br.len(),
        ));
    }
    let kb = |n: usize| format!("{:.1} KB", n as f64 / 1000.0);
    let line = |name: &str, (raw, gz, br): (usize, usize, usize)| {
        eprintln!("{name:<28} {:>12} {:>12} {:>12}", kb(raw), kb(gz), kb(br))
    };
    eprintln!(
        "{:<28} {:>12} {:>12} {:>12}",
        "file", "raw", "gzip", "brotli"
    );
    let on_demand = |name: &str| ON_DEMAND.iter().any(|prefix| name.starts_with(prefix));
    let (mut first, mut later) = ((0, 0, 0), (0, 0, 0));
    for (name, raw, gz, br) in &rows {
        line(name, (*raw, *gz, *br));
        let sum = if on_demand(name) {
            &mut later
        } else {
            &mut first
        };
        *sum = (sum.0 + raw, sum.1 + gz, sum.2 + br);
    }
    line("first visit (cold load of /)", first);
    line("on demand (worker, lazy pages)", later);
    // Each lazy page: the modules it fetches when first opened.
    let manifest = std::fs::read_to_string(www.join(SPLIT_MANIFEST)).unwrap_or_default();
    let pages: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_str(&manifest).unwrap_or_default();
    for (page, needs) in pages {
        let mut sum = (0, 0, 0);
        for stem in &needs {
            let file = format!("{stem}.wasm");
            if let Some((_, raw, gz, br)) = rows.iter().find(|r| r.0 == file) {
                sum = (sum.0 + raw, sum.1 + gz, sum.2 + br);
            }
        }
        line(&format!("  {page} ({} modules)", needs.len()), sum);
    }
    Ok(())
}

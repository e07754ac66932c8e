//! `cargo xtask sdk`: the JavaScript/TypeScript package of the light client (`sdk/`), as an ES
//! module with TypeScript declarations, a package.json and its README, in
//! `target/sdk/aqueduct-sdk`. With a web directory, the package and the example pages of
//! `www/examples` are also copied there (served by the relay under `/sdk/` and `/examples/`).

use crate::{bundle, cargo, root, run_cmd, step};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The generated files are `aqueduct_sdk.js`, `aqueduct_sdk.d.ts` and `aqueduct_sdk_bg.wasm`.
const OUT_NAME: &str = "aqueduct_sdk";
/// The module `worker.js` imports its functions from.
const WORKER_BINDINGS: &str = "aqueduct_worker.js";
/// The npm package name.
const PACKAGE: &str = "@aqueduct/sdk";

/// Builds the package (optimised with wasm-opt when `optimise`), returning its directory.
pub fn build(www: Option<&Path>, optimise: bool) -> anyhow::Result<PathBuf> {
    step("building the SDK (wasm32, size-optimised)");
    run_cmd(cargo().args([
        "build",
        "--quiet",
        "-p",
        "aqueduct-sdk",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
    ]))?;
    let wasm = root().join("target/wasm32-unknown-unknown/wasm-release/aqueduct_sdk.wasm");
    let out = root().join("target/sdk/aqueduct-sdk");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .out_name(OUT_NAME)
        .typescript(true)
        // `init()` with no argument loads the wasm beside the module (import.meta.url).
        .omit_default_module_path(false)
        .web(true)?
        .generate(&out)
        .with_context(|| format!("generating the SDK's bindings for {}", wasm.display()))?;
    add_worker(&out)?;
    if optimise {
        step("optimising the SDK's wasm with wasm-opt -Oz --converge");
        bundle::optimise_wasm(&out.join(format!("{OUT_NAME}_bg.wasm")))?;
    }
    std::fs::write(out.join("package.json"), package_json())
        .context("writing the SDK's package.json")?;
    let readme = root().join("sdk/README.md");
    std::fs::copy(&readme, out.join("README.md"))
        .with_context(|| format!("copying {}", readme.display()))?;
    if let Some(www) = www {
        copy_tree(&out, &www.join("sdk"))?;
        bundle::copy_files(&root().join("www/examples"), &www.join("examples"))?;
    }
    eprintln!("SDK package: {}", out.display());
    Ok(out)
}

/// The package's worker: the app's `worker.js`, importing the worker's four functions from a
/// module that re-exports them from the SDK's own bundle. The SDK finds the script through a
/// snippet of its bindings (`snippets/<crate>/inline0.js`, resolving `../../worker.js`): the
/// build fails if wasm-bindgen put its snippets elsewhere.
fn add_worker(out: &Path) -> anyhow::Result<()> {
    let script = root().join("www/worker.js");
    std::fs::copy(&script, out.join("worker.js"))
        .with_context(|| format!("copying {}", script.display()))?;
    std::fs::write(
        out.join(WORKER_BINDINGS),
        format!(
            "// The SDK's bundle, as the worker's bindings (see worker.js).\n\
             export {{ default, deriveWalletKey, prepareJobModule, checkJobResult, \
             rerunJobSegment }} from \"./{OUT_NAME}.js\";\n"
        ),
    )
    .with_context(|| format!("writing {WORKER_BINDINGS}"))?;
    let snippets = out.join("snippets");
    let mut found = false;
    for dir in
        std::fs::read_dir(&snippets).with_context(|| format!("reading {}", snippets.display()))?
    {
        let dir = dir?.path();
        let snippet = dir.join("inline0.js");
        let text = std::fs::read_to_string(&snippet).unwrap_or_default();
        found |= text.contains("'../../worker.js'");
    }
    if !found {
        bail!(
            "no snippet of the SDK's bindings at {}/<crate>/inline0.js finds ../../worker.js; \
             see `worker_url` in sdk/src/api.rs",
            snippets.display()
        );
    }
    Ok(())
}

/// Copies the directory `from` into `to`, subdirectories included.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    bundle::copy_files(from, to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Type-checks `sdk/quickstart.ts` (the README's quick start, using every call of the API)
/// against the built package's declarations with `tsc --strict`, from the TypeScript the
/// interoperability client's npm packages install.
pub fn type_check(package: &Path) -> anyhow::Result<()> {
    step("type-checking the SDK's quick start against its TypeScript declarations");
    let dir = package
        .parent()
        .context("the SDK package has no parent directory")?;
    let source = root().join("sdk/quickstart.ts");
    std::fs::copy(&source, dir.join("quickstart.ts"))
        .with_context(|| format!("copying {}", source.display()))?;
    run_cmd(
        std::process::Command::new(root().join("tests/interop/node_modules/.bin/tsc"))
            .current_dir(dir)
            .args([
                "--noEmit",
                "--strict",
                "--target",
                "es2022",
                "--module",
                "es2022",
                "--moduleResolution",
                "bundler",
                "--lib",
                "esnext,dom",
                "quickstart.ts",
            ]),
    )
}

fn package_json() -> String {
    let package = serde_json::json!({
        "name": PACKAGE,
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Aqueduct light client for web apps: verified jobs and proven ledger reads, with keys that stay in the page.",
        "license": "Apache-2.0",
        "type": "module",
        "main": format!("{OUT_NAME}.js"),
        "module": format!("{OUT_NAME}.js"),
        "types": format!("{OUT_NAME}.d.ts"),
        "exports": {
            ".": {
                "types": format!("./{OUT_NAME}.d.ts"),
                "default": format!("./{OUT_NAME}.js"),
            },
            "./aqueduct_sdk_bg.wasm": format!("./{OUT_NAME}_bg.wasm"),
        },
        "files": [
            format!("{OUT_NAME}.js"),
            format!("{OUT_NAME}.d.ts"),
            format!("{OUT_NAME}_bg.wasm"),
            format!("{OUT_NAME}_bg.wasm.d.ts"),
            "worker.js",
            WORKER_BINDINGS,
            "snippets/",
            "README.md",
        ],
        "sideEffects": false,
    });
    // Serialising a JSON value cannot fail.
    serde_json::to_string_pretty(&package).unwrap_or_default() + "\n"
}

//! `node-relay run --config relay.toml`: the same settings as the flags, in a TOML file.
//!
//! A key is a flag's long name (`data-dir = "relay-data"`, `provide = true`,
//! `price-per-mfuel = 5`, `peer = ["/ip4/…", …]`). Flags given on the command line win over
//! the file. The file's settings become flags placed before the command line's, so clap checks
//! them exactly as it checks flags; each is first checked alone, so a bad value is refused
//! with its line named.

use anyhow::{Context, bail};
use std::ffi::OsString;
use std::path::Path;

/// The 1-based line of `key`'s assignment in `text`.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(key)
                .or_else(|| {
                    line.strip_prefix('"')
                        .and_then(|l| l.strip_prefix(key))
                        .and_then(|l| l.strip_prefix('"'))
                })
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

/// A TOML value as the command-line words of flag `--key` (`None`: a `false` switch).
fn words(key: &str, value: &toml::Value, switch: bool) -> Result<Vec<String>, String> {
    let flag = format!("--{key}");
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("`{key}` cannot be a {}", other.type_str())),
    };
    match value {
        toml::Value::Boolean(on) if switch => Ok(if *on { vec![flag] } else { Vec::new() }),
        toml::Value::Boolean(_) => Err(format!("`{key}` takes a value, not true or false")),
        _ if switch => Err(format!("`{key}` is a switch: write `{key} = true`")),
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.push(flag.clone());
                out.push(scalar(item)?);
            }
            Ok(out)
        }
        other => Ok(vec![flag, scalar(other)?]),
    }
}

/// Whether `args` (the command line after the subcommand) sets `--key` itself.
fn given(args: &[OsString], key: &str) -> bool {
    let flag = format!("--{key}");
    let with_value = format!("--{key}=");
    args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with_value))
    })
}

/// The flags `path` sets that the command line (`args`, after the subcommand) does not;
/// `command` is the subcommand's clap definition (its flags' long names and parsers).
pub fn flags_from(
    path: &Path,
    command: &clap::Command,
    args: &[OsString],
) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let line = line_of(&text, key);
        let at = || format!("{}, line {line}", path.display());
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
        else {
            bail!(
                "{}: unknown setting `{key}` (settings are the flags of `run`, without the dashes)",
                at()
            );
        };
        if given(args, key) {
            continue;
        }
        let switch = matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
        );
        let words = words(key, value, switch).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        // The setting alone, through clap: a value it refuses is named with its line.
        let mut alone = vec![command.get_name().to_owned()];
        alone.extend(words.iter().cloned());
        if let Err(e) = command.clone().try_get_matches_from(&alone)
            && matches!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            )
        {
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            bail!("{}: `{key}`: {first}", at());
        }
        out.extend(words);
    }
    Ok(out)
}

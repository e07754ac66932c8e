//! `node-relay run --config relay.toml`: the file's settings are the flags' long names, a flag
//! on the command line wins over the file, and a bad setting is refused with its line named —
//! a real relay process each time.

use aqueduct_tests::{Relay, RelayPorts, relay_bin, temp_dir, www_dir};

#[test]
fn a_config_file_sets_the_flags_the_command_line_overrides_and_bad_lines_are_named()
-> anyhow::Result<()> {
    let (bin, www) = (relay_bin()?, www_dir()?);
    let dir = temp_dir("relay-config");
    std::fs::create_dir_all(&dir)?;

    // Bad settings: each refused before anything starts, naming the file's line.
    for (text, line, says) in [
        (
            "network-id = \"cfg-net\"\nprice-per-mfuel = \"cheap\"\n",
            2,
            "price-per-mfuel",
        ),
        (
            "# a comment\nno-such-flag = 1\n",
            2,
            "unknown setting `no-such-flag`",
        ),
        ("max-connections = 0\n", 1, "max-connections"),
        ("provide = \"yes\"\n", 1, "is a switch"),
        ("network-id = [\n", 1, "unclosed array"),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, text)?;
        let out = std::process::Command::new(&bin)
            .args(["run", "--data-dir"])
            .arg(dir.join("never"))
            .arg("--config")
            .arg(&file)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(!out.status.success(), "{text:?} was accepted");
        anyhow::ensure!(
            stderr.contains(&format!("line {line}")) && stderr.contains(says),
            "{text:?}: the error does not name line {line} and {says:?}: {stderr}"
        );
        anyhow::ensure!(
            !dir.join("never").exists(),
            "a refused config still started a relay"
        );
    }

    // A good file: its network id is the relay's; a flag on the command line wins over it.
    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        "# Aqueduct relay\nnetwork-id = \"cfg-net\"\njob-time-limit = 5\nmax-connections = 64\n",
    )?;
    let config = file.to_string_lossy().into_owned();
    let from_file = Relay::start_with(
        &bin,
        &www,
        &dir.join("a"),
        &RelayPorts::any(),
        &["--config", &config],
    )?;
    assert_eq!(from_file.info()?.network_id, "cfg-net");
    drop(from_file);
    let overridden = Relay::start_with(
        &bin,
        &www,
        &dir.join("b"),
        &RelayPorts::any(),
        &["--config", &config, "--network-id", "flag-net"],
    )?;
    assert_eq!(overridden.info()?.network_id, "flag-net");
    drop(overridden);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

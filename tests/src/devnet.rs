//! A network of validator relays on loopback for tests and benchmarks: one genesis naming
//! them all, consensus between them, each relay binding its own ports as it starts (and
//! told the consensus addresses of those started before it; connections go both ways).

use crate::{
    Relay, RelayPorts, ledger_blocks, ledger_call, relay_bin, tcp_client, temp_dir, www_dir,
};
use client_core::ledger::Block;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The peer id `node-relay id` prints for the relay of `dir` (creating its key).
pub fn peer_id(bin: &Path, dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(["id", "--data-dir"])
        .arg(dir)
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find_map(|l| l.strip_prefix("peer id:"))
        .map(|id| id.trim().to_owned())
        .ok_or_else(|| anyhow::anyhow!("no peer id in {text:?}"))
}

/// Writes `out`, a genesis (`node-relay genesis`) of `network_id` naming `validators` (peer
/// ids), funding `funded` (peer id, tokens), with epochs of `epoch_blocks`.
pub fn write_genesis(
    bin: &Path,
    network_id: &str,
    validators: &[String],
    funded: &[(&str, u64)],
    epoch_blocks: u64,
    out: &Path,
) -> anyhow::Result<()> {
    let mut cmd = Command::new(bin);
    cmd.args(["genesis", "--network-id", network_id, "--epoch-blocks"])
        .arg(epoch_blocks.to_string());
    for (who, tokens) in funded {
        cmd.arg("--fund").arg(format!("{who}={tokens}"));
    }
    for id in validators {
        cmd.arg("--validator").arg(id);
    }
    anyhow::ensure!(
        cmd.arg("--out").arg(out).status()?.success(),
        "node-relay genesis failed"
    );
    Ok(())
}

/// Validators on loopback, started one after another.
pub struct Devnet {
    pub network_id: String,
    bin: PathBuf,
    www: PathBuf,
    pub root: PathBuf,
    pub genesis: PathBuf,
    dirs: Vec<PathBuf>,
    pub relays: Vec<Option<Relay>>,
    /// Each validator's consensus address, as it printed it.
    pub addrs: Vec<String>,
    /// Arguments every relay of this network is started with.
    extra: Vec<String>,
}

/// How a devnet is made.
pub struct DevnetOptions<'a> {
    pub validators: usize,
    pub network_id: &'a str,
    pub epoch_blocks: u64,
    /// Arguments for every relay (e.g. `--provide --validate`).
    pub extra: &'a [&'a str],
    /// Accounts funded at genesis besides the validators (peer id, tokens).
    pub funded: &'a [(&'a str, u64)],
}

impl Devnet {
    /// Starts `n` validators of a new network `network_id` (the relay binary and web app as
    /// the harness finds them).
    pub fn start(n: usize, network_id: &str) -> anyhow::Result<Devnet> {
        Self::start_with(&DevnetOptions {
            validators: n,
            network_id,
            epoch_blocks: 1000,
            extra: &[],
            funded: &[],
        })
    }

    pub fn start_with(options: &DevnetOptions<'_>) -> anyhow::Result<Devnet> {
        let (n, network_id) = (options.validators, options.network_id);
        let (bin, www) = (relay_bin()?, www_dir()?);
        let root = temp_dir("bft");
        let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("v{i}"))).collect();
        let ids = dirs
            .iter()
            .map(|dir| peer_id(&bin, dir))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let genesis = root.join("genesis.json");
        write_genesis(
            &bin,
            network_id,
            &ids,
            options.funded,
            options.epoch_blocks,
            &genesis,
        )?;
        let mut net = Devnet {
            network_id: network_id.to_owned(),
            bin,
            www,
            root,
            genesis,
            dirs,
            relays: Vec::new(),
            addrs: Vec::new(),
            extra: options.extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            let peers = net.addrs.clone();
            let relay = net.launch(i, "127.0.0.1:0", &peers)?;
            net.addrs.push(
                relay
                    .consensus_addr()
                    .ok_or_else(|| anyhow::anyhow!("no consensus address printed"))?,
            );
            net.relays.push(Some(relay));
        }
        Ok(net)
    }

    /// Starts one more relay of this network (not a validator of the genesis) in `dir`, running
    /// consensus with every validator and forwarding what it takes in to their relays.
    pub fn join(&self, dir: &Path, extra: &[&str]) -> anyhow::Result<Relay> {
        let mut args = self.args("127.0.0.1:0", &self.addrs);
        for relay in self.relays.iter().flatten() {
            args.push("--peer".into());
            args.push(relay.relay_addr()?);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Relay::start_with(&self.bin, &self.www, dir, &RelayPorts::any(), &args)
    }

    /// The arguments of a relay of this network listening for consensus on `listen`.
    fn args(&self, listen: &str, consensus_peers: &[String]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--network-id".into(),
            self.network_id.clone(),
            "--genesis".into(),
            self.genesis.to_string_lossy().into_owned(),
            "--consensus".into(),
            listen.into(),
        ];
        for peer in consensus_peers {
            args.push("--consensus-peer".into());
            args.push(peer.clone());
        }
        args
    }

    fn launch(&self, i: usize, listen: &str, peers: &[String]) -> anyhow::Result<Relay> {
        let mut args = self.args(listen, peers);
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Relay::start_with(
            &self.bin,
            &self.www,
            &self.dirs[i],
            &RelayPorts::any(),
            &args,
        )
    }

    /// Restarts validator `i` on its consensus address, told of every other validator.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let listen = self.addrs[i]
            .split("/tcp/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(|port| format!("127.0.0.1:{port}"))
            .ok_or_else(|| anyhow::anyhow!("no port in {}", self.addrs[i]))?;
        let peers: Vec<String> = (0..self.addrs.len())
            .filter(|j| *j != i)
            .map(|j| self.addrs[j].clone())
            .collect();
        self.relays[i] = Some(self.launch(i, &listen, &peers)?);
        Ok(())
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut relay) = self.relays[i].take() {
            relay.kill();
        }
    }

    pub fn relay(&self, i: usize) -> anyhow::Result<&Relay> {
        self.relays[i]
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("validator {i} is stopped"))
    }

    pub fn logs(&self) -> String {
        self.relays
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref()
                    .map(|r| format!("--- validator {i}\n{}", r.output()))
            })
            .collect()
    }
}

pub async fn blocks(relay: &Relay) -> anyhow::Result<Vec<Block>> {
    let (mut control, peer) = tcp_client(relay).await?;
    ledger_blocks(&mut control, peer).await
}

pub async fn height(relay: &Relay) -> anyhow::Result<u64> {
    let (mut control, peer) = tcp_client(relay).await?;
    let answer = ledger_call(
        &mut control,
        peer,
        &LedgerRequest::Read {
            keys: vec![],
            height: None,
        },
    )
    .await?;
    Ok(match answer.first() {
        Some(LedgerResponse::Reads(Some(reads))) => reads.header.height,
        _ => 0,
    })
}

pub async fn wait_height(net: &Devnet, i: usize, at_least: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let h = height(net.relay(i)?).await.unwrap_or(0);
        if h >= at_least {
            return Ok(h);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "validator {i} stayed at height {h}, below {at_least}\n{}",
            net.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

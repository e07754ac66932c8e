//! A network of validator relays on loopback for tests and benchmarks: one genesis naming
//! them all, consensus between them, each relay binding its own ports as it starts (and
//! told the consensus addresses of those started before it; connections go both ways).

use crate::{
    Relay, RelayPorts, faulty_relay_bin, ledger_blocks, ledger_call, relay_bin, tcp_client,
    temp_dir, www_dir,
};
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::block::verify_commit;
use client_core::ledger::state::UNITS_PER_TOKEN;
use client_core::ledger::tx::tx_id;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{Block, Genesis, Tx, TxKind};
use client_core::signed::Signed;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Validators that run the faulty relay binary, with their own arguments.
    byzantine: Vec<(usize, Vec<String>)>,
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
    /// Validators (by index) that run the faulty relay binary with these arguments added
    /// (e.g. `--byzantine double-sign`); a flag given here replaces the same flag of `extra`.
    pub byzantine: &'a [(usize, &'a [&'a str])],
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
            byzantine: &[],
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
            byzantine: options
                .byzantine
                .iter()
                .map(|(i, args)| (*i, args.iter().map(|s| s.to_string()).collect()))
                .collect(),
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
        let mut extra = self.extra.clone();
        let mut bin = self.bin.clone();
        let own = self.byzantine.iter().find(|(j, _)| *j == i);
        if let Some((_, own)) = own {
            // A flag the validator has its own value for replaces the common one.
            for flag in own.iter().filter(|a| a.starts_with("--")) {
                if let Some(at) = extra.iter().position(|a| a == flag) {
                    extra.remove(at);
                    if extra.get(at).is_some_and(|v| !v.starts_with("--")) {
                        extra.remove(at);
                    }
                }
            }
        }
        args.extend(extra);
        if let Some((_, own)) = own {
            bin = faulty_relay_bin()?;
            args.extend(own.iter().cloned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Relay::start_with(&bin, &self.www, &self.dirs[i], &RelayPorts::any(), &args)
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

/// Transactions streamed by several clients, each through validator `i` with the key of
/// `seed`: what each relay reported included, the switch that stops them, their tasks.
pub struct TxStreams {
    pub included: Arc<Mutex<Vec<Hash>>>,
    pub stop: Arc<AtomicBool>,
    pub clients: Vec<tokio::task::JoinHandle<()>>,
}

impl TxStreams {
    pub async fn start(net: &Devnet, clients: &[(usize, u8)]) -> anyhow::Result<TxStreams> {
        let included = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (i, seed) in clients.iter().copied() {
            let (control, peer) = tcp_client(net.relay(i)?).await?;
            let (inc, stop) = (Arc::clone(&included), Arc::clone(&stop));
            let network_id = net.network_id.clone();
            handles.push(tokio::spawn(async move {
                let who = Keypair::from_seed(&[seed; 32]);
                tx_stream(control, peer, &network_id, who, inc, stop).await
            }));
        }
        Ok(TxStreams {
            included,
            stop,
            clients: handles,
        })
    }

    /// How many transactions were reported included so far.
    pub fn count(&self) -> usize {
        self.included.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Stops the clients; returns every transaction reported included.
    pub async fn finish(self) -> Vec<Hash> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            let _ = client.await;
        }
        self.included.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Sends `who`'s transactions to `relay` one after another (faucet first, then transfers),
/// recording each the relay reports as included, until the relay goes away or `stop`.
pub async fn tx_stream(
    mut control: libp2p_stream::Control,
    peer: libp2p::PeerId,
    network_id: &str,
    who: Keypair,
    included: Arc<Mutex<Vec<Hash>>>,
    stop: Arc<AtomicBool>,
) {
    for nonce in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let kind = if nonce == 0 {
            TxKind::Faucet
        } else {
            TxKind::Transfer {
                to: PublicKey([9; 32]),
                amount: UNITS_PER_TOKEN / 100,
            }
        };
        let tx = Signed::sign(
            &who,
            Tx {
                network_id: network_id.into(),
                nonce,
                fee: 10_000,
                kind,
            },
        );
        let id = tx_id(&tx);
        let Ok(answers) = ledger_call(
            &mut control,
            peer,
            &LedgerRequest::Submit { tx: Box::new(tx) },
        )
        .await
        else {
            return;
        };
        match answers.last() {
            Some(LedgerResponse::Included { tx, .. }) if *tx == id => {
                if let Ok(mut all) = included.lock() {
                    all.push(id);
                }
            }
            _ => return,
        }
    }
}

/// Every running validator holds the same headers (each may keep another valid set of
/// precommits for a header: any more than two thirds of the power make a commit), and every
/// block carries a commit of more than two thirds of the genesis set.
pub async fn same_chain(net: &Devnet) -> anyhow::Result<Vec<Block>> {
    let genesis = Genesis::from_json(&std::fs::read_to_string(&net.genesis)?)?;
    let mut chains = Vec::new();
    for relay in net.relays.iter().flatten() {
        chains.push(blocks(relay).await?);
    }
    let shortest = chains.iter().map(Vec::len).min().unwrap_or(0);
    let headers = |chain: &[Block]| -> Vec<Hash> {
        chain[..shortest].iter().map(|b| b.header.hash()).collect()
    };
    for chain in &chains[1..] {
        anyhow::ensure!(
            headers(chain) == headers(&chains[0]),
            "two validators hold different headers"
        );
    }
    let set = genesis.validator_set();
    for chain in &chains {
        for block in chain {
            verify_commit(&block.header, &block.commit, &set, &net.network_id)?;
            anyhow::ensure!(
                client_core::ledger::block::txs_root(&block.txs) == block.header.txs_root,
                "block {} holds other transactions than its header names",
                block.header.height
            );
        }
    }
    Ok(chains.swap_remove(0))
}

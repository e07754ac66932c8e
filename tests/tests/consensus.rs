//! Four validator relays running consensus (Malachite) on loopback, each binding its ports as
//! it starts: blocks go on while one validator is SIGKILLed, no acknowledged transaction is
//! lost, the killed validator comes back and catches up to the same chain; with two of four
//! stopped no block is made (and none lost), and the chain resumes once they are back.

use aqueduct_tests::{
    Relay, RelayPorts, ledger_blocks, ledger_call, relay_bin, tcp_client, temp_dir, www_dir,
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NET: &str = "aqueduct-bft";
const WAIT: Duration = Duration::from_secs(90);

fn peer_id(bin: &Path, dir: &Path) -> anyhow::Result<String> {
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

/// Validators on loopback, started one after another, each told the consensus addresses of
/// those before it (they connect both ways).
struct Devnet {
    bin: PathBuf,
    www: PathBuf,
    root: PathBuf,
    genesis: PathBuf,
    dirs: Vec<PathBuf>,
    relays: Vec<Option<Relay>>,
    /// Each validator's consensus address, as it printed it.
    addrs: Vec<String>,
}

impl Devnet {
    fn start(n: usize) -> anyhow::Result<Devnet> {
        let (bin, www) = (relay_bin()?, www_dir()?);
        let root = temp_dir("bft");
        let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("v{i}"))).collect();
        let mut genesis_cmd = Command::new(&bin);
        genesis_cmd.args(["genesis", "--network-id", NET, "--epoch-blocks", "1000"]);
        for dir in &dirs {
            genesis_cmd.arg("--validator").arg(peer_id(&bin, dir)?);
        }
        let genesis = root.join("genesis.json");
        anyhow::ensure!(
            genesis_cmd.arg("--out").arg(&genesis).status()?.success(),
            "node-relay genesis failed"
        );
        let mut net = Devnet {
            bin,
            www,
            root,
            genesis,
            dirs,
            relays: Vec::new(),
            addrs: Vec::new(),
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

    fn launch(&self, i: usize, listen: &str, peers: &[String]) -> anyhow::Result<Relay> {
        let genesis = self.genesis.to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "--network-id",
            NET,
            "--genesis",
            &genesis,
            "--consensus",
            listen,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for peer in peers {
            args.push("--consensus-peer".into());
            args.push(peer.clone());
        }
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
    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
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

    fn kill(&mut self, i: usize) {
        if let Some(mut relay) = self.relays[i].take() {
            relay.kill();
        }
    }

    fn relay(&self, i: usize) -> anyhow::Result<&Relay> {
        self.relays[i]
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("validator {i} is stopped"))
    }

    fn logs(&self) -> String {
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

async fn blocks(relay: &Relay) -> anyhow::Result<Vec<Block>> {
    let (mut control, peer) = tcp_client(relay).await?;
    ledger_blocks(&mut control, peer).await
}

async fn height(relay: &Relay) -> anyhow::Result<u64> {
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

async fn wait_height(net: &Devnet, i: usize, at_least: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + WAIT;
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

/// Sends `who`'s transactions to `relay` one after another (faucet first, then transfers),
/// recording each the relay reports as included, until the relay goes away or `stop`.
async fn stream(
    mut control: libp2p_stream::Control,
    peer: libp2p::PeerId,
    who: Keypair,
    included: Arc<Mutex<Vec<Hash>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    for nonce in 0u64.. {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
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
                network_id: NET.into(),
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
async fn same_chain(net: &Devnet, genesis: &Genesis) -> anyhow::Result<Vec<Block>> {
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
            verify_commit(&block.header, &block.commit, &set, NET)?;
            anyhow::ensure!(
                client_core::ledger::block::txs_root(&block.txs) == block.header.txs_root,
                "block {} holds other transactions than its header names",
                block.header.height
            );
        }
    }
    Ok(chains.swap_remove(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn four_validators_survive_one_crash_and_halt_safely_without_a_quorum() -> anyhow::Result<()>
{
    let mut net = Devnet::start(4)?;
    let genesis: Genesis = Genesis::from_json(&std::fs::read_to_string(&net.genesis)?)?;
    wait_height(&net, 0, 2).await?;

    // A stream of transactions from three clients, each through another validator.
    let included = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for (i, seed) in [(0usize, 31u8), (1, 32), (3, 33)] {
        let (control, peer) = tcp_client(net.relay(i)?).await?;
        let (inc, stop) = (Arc::clone(&included), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            stream(control, peer, Keypair::from_seed(&[seed; 32]), inc, stop).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before_kill = included.lock().map(|v| v.len()).unwrap_or(0);
    anyhow::ensure!(
        before_kill > 0,
        "no transaction was included before the crash\n{}",
        net.logs()
    );

    // SIGKILL validator 3 mid-stream (its client's stream breaks): blocks continue with three
    // of four.
    net.kill(3);
    let h = height(net.relay(0)?).await?;
    wait_height(&net, 0, h + 5).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    let acknowledged = included.lock().map(|v| v.clone()).unwrap_or_default();
    anyhow::ensure!(
        acknowledged.len() > before_kill,
        "no transaction was included after the crash"
    );

    // The killed validator restarts, catches up, and all four hold the same chain.
    net.restart(3)?;
    let target = height(net.relay(0)?).await?;
    wait_height(&net, 3, target).await?;
    let chain = same_chain(&net, &genesis).await?;
    let in_chain: std::collections::HashSet<Hash> =
        chain.iter().flat_map(|b| b.txs.iter().map(tx_id)).collect();
    for id in &acknowledged {
        anyhow::ensure!(
            in_chain.contains(id),
            "acknowledged transaction {id} is not in the chain"
        );
    }
    eprintln!(
        "{} transactions acknowledged, all in {} blocks",
        acknowledged.len(),
        chain.len()
    );

    // Two of four stopped: no quorum, no block, nothing lost.
    net.kill(2);
    net.kill(3);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stalled = height(net.relay(0)?).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    anyhow::ensure!(
        height(net.relay(0)?).await? == stalled,
        "a block was made without a quorum"
    );
    anyhow::ensure!(height(net.relay(1)?).await? <= stalled);
    // Back: the chain resumes, and every block from before is still there.
    net.restart(2)?;
    net.restart(3)?;
    wait_height(&net, 0, stalled + 3).await?;
    let resumed = same_chain(&net, &genesis).await?;
    let hashes = |c: &[Block]| -> Vec<Hash> { c.iter().map(|b| b.header.hash()).collect() };
    anyhow::ensure!(
        hashes(&resumed[..chain.len()]) == hashes(&chain),
        "blocks were lost"
    );
    drop(net.relays);
    let _ = std::fs::remove_dir_all(&net.root);
    Ok(())
}

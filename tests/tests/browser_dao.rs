//! Governance end to end: three funded accounts — a wallet in headless Chromium and two native
//! clients. The browser proposes raising the minimum stake; the browser and one native account
//! vote for it; it passes, is queued, takes effect by itself after the timelock, and the page
//! shows the new value verified by proof. A native light client checks the same, and the relay
//! refuses a provider who bonds the old minimum. A second proposal, voted against, is defeated
//! and changes nothing.

use aqueduct_tests::{
    Browser, Relay, RelayPorts, ledger_call, ledger_genesis, read_verified, relay_bin, tcp_client,
    temp_dir, www_dir,
};
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::gov::{Action, Choice, ParamChange};
use client_core::ledger::state::{Offer, Params, UNITS_PER_TOKEN, VerificationLevel};
use client_core::ledger::tx::min_fee_for;
use client_core::ledger::wire::{LedgerRequest, LedgerResponse};
use client_core::ledger::{Genesis, StateKey, StateValue, Tx, TxKind};
use client_core::signed::Signed;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const TOKEN: u64 = UNITS_PER_TOKEN;

/// A native account: signs with the parameters in force and waits for inclusion.
struct Native {
    key: Keypair,
    nonce: u64,
}

impl Native {
    async fn send(
        &mut self,
        relay: &Relay,
        genesis: &Genesis,
        kind: TxKind,
    ) -> anyhow::Result<LedgerResponse> {
        let params = match read_verified(genesis, relay, StateKey::Params).await? {
            Some(StateValue::Params(p)) => p,
            other => anyhow::bail!("no parameters: {other:?}"),
        };
        let fee = min_fee_for(&params, &genesis.network_id, &kind);
        let tx = Signed::sign(
            &self.key,
            Tx {
                network_id: genesis.network_id.clone(),
                nonce: self.nonce,
                fee,
                kind,
            },
        );
        let (mut control, peer) = tcp_client(relay).await?;
        let answers = ledger_call(
            &mut control,
            peer,
            &LedgerRequest::Submit { tx: Box::new(tx) },
        )
        .await?;
        let last = answers
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no answer"))?;
        if matches!(last, LedgerResponse::Included { .. }) {
            self.nonce += 1;
        }
        Ok(last)
    }

    async fn must(&mut self, relay: &Relay, genesis: &Genesis, kind: TxKind) -> anyhow::Result<()> {
        let what = kind.name();
        let answer = self.send(relay, genesis, kind).await?;
        anyhow::ensure!(
            matches!(answer, LedgerResponse::Included { .. }),
            "{what}: {answer:?}"
        );
        Ok(())
    }
}

async fn verified_params(genesis: &Genesis, relay: &Relay) -> anyhow::Result<Params> {
    match read_verified(genesis, relay, StateKey::Params).await? {
        Some(StateValue::Params(p)) => Ok(p),
        other => anyhow::bail!("no parameters: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proposal_made_and_voted_in_the_browser_passes_and_takes_effect_verified()
-> anyhow::Result<()> {
    let data_dir = temp_dir("e2e-dao");
    // Quick blocks, so that the dev network's governance windows (in blocks) pass in seconds:
    // a block within 100 ms of a transaction, an empty one every second. The 30-block voting
    // window is then up to 30 s, room for the page to see the vote open and for three votes
    // on a loaded machine.
    let relay = Relay::start_with(
        &relay_bin()?,
        &www_dir()?,
        &data_dir,
        &RelayPorts::any(),
        &["--block-interval-ms", "100", "--heartbeat-ms", "1000"],
    )?;
    let (mut control, peer) = tcp_client(&relay).await?;
    let genesis = ledger_genesis(&mut control, peer).await?;
    let old_min = genesis.params.min_stake;
    let new_min = old_min + 150 * TOKEN;

    // Three funded accounts: the browser's wallet and two native ones, all from the faucet.
    let browser = Browser::start().await?;
    let (_, account) = browser
        .create_wallet(&relay.url(), "correct horse battery")
        .await?;
    let me = PublicKey::parse(&account)?;
    browser.click("wallet-faucet").await?;
    browser
        .wait_attr(
            "wallet-tx-status",
            "data-state",
            "the faucet paid",
            WAIT,
            |v| v == "done",
        )
        .await?;
    let mut second = Native {
        key: Keypair::from_seed(&[41; 32]),
        nonce: 0,
    };
    let mut third = Native {
        key: Keypair::from_seed(&[42; 32]),
        nonce: 0,
    };
    second.must(&relay, &genesis, TxKind::Faucet).await?;
    third.must(&relay, &genesis, TxKind::Faucet).await?;

    // The DAO page: the treasury and this account's power, proven.
    browser.nav("dao").await?;
    browser
        .wait_attr("dao-my-power", "data-power", "voting power", WAIT, |v| {
            v.parse::<u64>().is_ok_and(|p| p > 0)
        })
        .await?;
    let treasury: u64 = browser
        .wait_attr("dao-treasury", "data-amount", "the treasury", WAIT, |v| {
            !v.is_empty()
        })
        .await?
        .parse()?;
    assert!(treasury >= genesis.treasury, "{treasury}");

    // The form refuses what the ledger would refuse, before signing anything.
    browser
        .set_value("proposal-title", "Raise the minimum stake")
        .await?;
    browser
        .set_value("proposal-param", "voting_period_blocks")
        .await?;
    browser.set_value("proposal-value", "0").await?;
    browser.click("proposal-submit").await?;
    browser
        .wait_for("proposal-problem", "a refused value", WAIT, |t| {
            t.contains("voting period")
        })
        .await?;

    // Propose: min_stake → old + 150 tokens.
    browser.set_value("proposal-param", "min_stake").await?;
    browser
        .set_value("proposal-value", &(new_min / TOKEN).to_string())
        .await?;
    browser
        .set_value(
            "proposal-description",
            "Providers should have more at stake.",
        )
        .await?;
    browser.click("proposal-submit").await?;
    browser
        .wait_attr(
            "dao-tx-status",
            "data-state",
            "the proposal included",
            WAIT,
            |v| v == "done",
        )
        .await?;

    // A second proposal, from a native account, that will be voted down.
    third
        .must(
            &relay,
            &genesis,
            TxKind::Propose {
                title: "Cheaper transactions".into(),
                description: String::new(),
                action: Action::Params(vec![ParamChange::BaseFee(1)]),
            },
        )
        .await?;

    // Voting opens: the browser votes For, the second account For, the third Against the
    // second proposal.
    browser
        .wait_for("proposal-state-0", "voting to start", WAIT, |t| {
            t == "active"
        })
        .await?;
    browser.click("vote-for-0").await?;
    let voted = browser
        .wait_attr(
            "dao-tx-status",
            "data-state",
            "the vote included",
            WAIT,
            |v| v != "working",
        )
        .await?;
    anyhow::ensure!(
        voted == "done",
        "the vote failed: {:?}",
        browser.text("dao-tx-status").await
    );
    second
        .must(
            &relay,
            &genesis,
            TxKind::Vote {
                proposal: 0,
                choice: Choice::For,
            },
        )
        .await?;
    third
        .must(
            &relay,
            &genesis,
            TxKind::Vote {
                proposal: 1,
                choice: Choice::Against,
            },
        )
        .await?;
    // The live tally shows both For votes, proven.
    let for_power: u64 = browser
        .wait_attr(
            "proposal-tally-0",
            "data-for",
            "both votes in the tally",
            WAIT,
            |v| v.parse::<u64>().is_ok_and(|p| p > 1_500 * TOKEN),
        )
        .await?
        .parse()?;
    let quorum: u64 = browser
        .attr("proposal-tally-0", "data-quorum")
        .await
        .unwrap_or_default()
        .parse()?;
    assert!(for_power >= quorum, "{for_power} < quorum {quorum}");
    browser.screenshot("dao-voting").await?;

    // It passes, is queued, and takes effect by itself after the timelock.
    browser
        .wait_for("proposal-state-0", "the proposal queued", WAIT, |t| {
            t == "queued" || t == "executed"
        })
        .await?;
    browser
        .wait_for("proposal-state-0", "the proposal executed", WAIT, |t| {
            t == "executed"
        })
        .await?;
    browser
        .wait_attr(
            "param-min_stake",
            "data-value",
            "the new minimum shown",
            WAIT,
            |v| v == new_min.to_string(),
        )
        .await?;
    browser
        .wait_for(
            "proposal-state-1",
            "the second proposal defeated",
            WAIT,
            |t| t == "defeated",
        )
        .await?;
    browser.screenshot("dao-executed").await?;

    // A native light client agrees, and the ledger enforces it.
    let params = verified_params(&genesis, &relay).await?;
    assert_eq!(params.min_stake, new_min);
    assert_eq!(
        params.base_fee, genesis.params.base_fee,
        "defeated: no effect"
    );
    let refused = second
        .send(
            &relay,
            &genesis,
            TxKind::RegisterProvider {
                stake: old_min,
                offer: Offer {
                    price_per_mfuel: 1,
                    max_fuel: 1_000_000,
                    concurrency: 1,
                    levels: vec![VerificationLevel::Receipt],
                    addrs: vec![],
                    attributes: vec![],
                },
            },
        )
        .await?;
    let LedgerResponse::Refused { reason } = &refused else {
        anyhow::bail!("registering with the old minimum was not refused: {refused:?}");
    };
    assert!(reason.contains("below the minimum"), "{reason}");
    // The browser's own power is what the ledger says.
    match read_verified(&genesis, &relay, StateKey::Power(me)).await? {
        Some(StateValue::Power(history)) => {
            let shown: u64 = browser
                .attr("dao-my-power", "data-power")
                .await
                .unwrap_or_default()
                .parse()?;
            assert_eq!(shown, history.current());
        }
        other => anyhow::bail!("no power history for the browser's account: {other:?}"),
    }

    browser.close().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

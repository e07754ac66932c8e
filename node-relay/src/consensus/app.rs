//! The loop that answers the consensus engine with the ledger's three block steps.

use super::context::{self, Address, Ctx, Height, ProposalPart, ValidatorSet, Value};
use crate::ledger::{BlockRejected, Built, Ledger, now_ms};
use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use client_core::hash::Hash;
use client_core::identity::{Keypair, Signature as LedgerSignature};
use client_core::ledger::block::{Commit, Vote, verify_commit};
use client_core::ledger::evidence::DoubleSign;
use client_core::ledger::{Header, SignedTx, validators};
use malachitebft_app::types::streaming::{StreamId, StreamMessage};
use malachitebft_app::types::sync::RawDecidedValue;
use malachitebft_app::types::{LocallyProposedValue, ProposedValue};
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg};
use malachitebft_core_consensus::{MisbehaviorEvidence, VoteExtensionError};
use malachitebft_core_types::{
    CommitCertificate, CommitSignature, ExtendedCommitCertificate, HeightParams, Round, Validity,
    VoteExtensions,
};
use malachitebft_engine::host::{Next, SyncedValueOutcome};
use malachitebft_engine::util::streaming::StreamContent;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How many heights ahead proposal parts are kept, and how many per height.
const EARLY_HEIGHTS: u64 = 8;
const EARLY_PER_HEIGHT: usize = 16;

/// How long a proposer waits for transactions before proposing an empty block.
const IDLE_BLOCK: Duration = Duration::from_millis(1000);

/// A block as it travels in a proposal part and in sync answers.
#[derive(BorshSerialize, BorshDeserialize)]
struct BlockBody {
    header: Header,
    txs: Vec<SignedTx>,
}

struct App {
    ctx: Ctx,
    ledger: Arc<Ledger>,
    keypair: Keypair,
    /// Checked (or built) blocks by header hash, ready to commit once decided.
    built: HashMap<Hash, Built>,
    /// Block contents by header hash (to re-propose a value another validator proposed).
    bodies: HashMap<Hash, (Header, Vec<SignedTx>)>,
    /// This relay's own proposals, by height and round.
    own: HashMap<(u64, u32), Hash>,
    /// Parts for heights this relay has not reached yet.
    early: BTreeMap<u64, Vec<ProposalPart>>,
    /// Values checked, by height and round, for the engine when it starts that round.
    seen: HashMap<(u64, u32), Vec<ProposedValue<Ctx>>>,
    next_stream: u64,
    #[cfg(feature = "faulty")]
    byzantine: super::Byzantine,
}

pub async fn run(
    ctx: Ctx,
    ledger: Arc<Ledger>,
    keypair: Keypair,
    mut channels: Channels<Ctx>,
    mut shutdown: watch::Receiver<bool>,
    #[cfg(feature = "faulty")] byzantine: super::Byzantine,
) {
    let mut app = App {
        ctx,
        ledger,
        keypair,
        built: HashMap::new(),
        bodies: HashMap::new(),
        own: HashMap::new(),
        early: BTreeMap::new(),
        seen: HashMap::new(),
        next_stream: 0,
        #[cfg(feature = "faulty")]
        byzantine,
    };
    loop {
        let msg = tokio::select! {
            msg = channels.consensus.recv() => match msg {
                Some(msg) => msg,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        if let Err(e) = app.handle(msg, &channels.network).await {
            tracing::error!("consensus: {e:#}");
        }
    }
    tracing::info!("consensus stopped");
}

impl App {
    fn tip(&self) -> anyhow::Result<u64> {
        Ok(self.ledger.snapshot()?.height())
    }

    fn params(&self) -> anyhow::Result<HeightParams<Ctx>> {
        let snapshot = self.ledger.snapshot()?;
        let set = validators::current(&snapshot)
            .ok_or_else(|| anyhow::anyhow!("the ledger state holds no validator set"))?;
        Ok(HeightParams::new(
            ValidatorSet::from_ledger(&set),
            context::timeouts(),
            None,
        ))
    }

    async fn handle(
        &mut self,
        msg: AppMsg<Ctx>,
        network: &tokio::sync::mpsc::Sender<NetworkMsg<Ctx>>,
    ) -> anyhow::Result<()> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let height = Height(self.tip()? + 1);
                tracing::info!(%height, "consensus ready");
                let _ = reply.send((height, self.params()?));
            }
            AppMsg::StartedRound {
                height,
                round,
                reply_value,
                ..
            } => {
                // Parts that arrived before this relay reached the height.
                let early = self.early.remove(&height.0).unwrap_or_default();
                for part in early {
                    if let Some(value) = self.check_part(part).await {
                        self.remember(value);
                    }
                }
                let key = (height.0, round.as_u32().unwrap_or(0));
                let _ = reply_value.send(self.seen.get(&key).cloned().unwrap_or_default());
            }
            AppMsg::GetValue {
                height,
                round,
                timeout,
                reply,
            } => {
                let key = (height.0, round.as_u32().unwrap_or(0));
                let hash = match self.own.get(&key) {
                    // Asked again for the same round (after a restart): the same value, never
                    // a second one.
                    Some(hash) => *hash,
                    None => self.build(height, timeout).await?,
                };
                self.own.insert(key, hash);
                let _ = reply.send(LocallyProposedValue::new(height, round, Value(hash)));
                self.publish(height, round, hash, network).await?;
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                let verdicts = extensions
                    .into_iter()
                    .map(|(a, _)| (a, Err(VoteExtensionError::InvalidVoteExtension)))
                    .collect();
                let _ = reply.send(verdicts);
            }
            AppMsg::RestreamProposal {
                height,
                round,
                value_id,
                ..
            } => {
                self.publish(height, round, value_id, network).await?;
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let _ = reply.send(Height(1));
            }
            AppMsg::ReceivedProposalPart { part, reply, .. } => {
                let value = match part.content {
                    StreamContent::Data(part) => {
                        let next = self.tip()? + 1;
                        if part.height.0 > next {
                            // Kept for when this relay gets there, within bounds: a peer
                            // cannot grow this buffer by sending parts for far heights.
                            if part.height.0 <= next + EARLY_HEIGHTS {
                                let early = self.early.entry(part.height.0).or_default();
                                if early.len() < EARLY_PER_HEIGHT {
                                    early.push(part);
                                }
                            }
                            None
                        } else if part.height.0 < next {
                            None
                        } else {
                            self.check_part(part).await
                        }
                    }
                    StreamContent::Fin => None,
                };
                if let Some(value) = &value {
                    self.remember(value.clone());
                }
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate, reply, ..
            } => {
                // Answered either way: a block this relay could not commit is fetched again
                // by restarting the height (see `Finalized`).
                if let Err(e) = self.commit(&certificate).await {
                    tracing::error!(height = %certificate.height, "committing a decided block: {e:#}");
                }
                let _ = reply.send(());
            }
            AppMsg::Finalized {
                certificate,
                evidence,
                reply,
                ..
            } => {
                if !evidence.is_empty() {
                    self.record(&evidence);
                }
                let next = Height(self.tip()? + 1);
                let params = self.params()?;
                let _ = reply.send(if next.0 > certificate.height.0 {
                    Next::Start(next, params)
                } else {
                    // The decided block is not stored here: run the height again, and sync
                    // brings the block with its certificate.
                    Next::Restart(next, params)
                });
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let mut values = Vec::new();
                for height in range.start().0..=range.end().0 {
                    let Some(block) = self.ledger.blocks(height, 1)?.pop() else {
                        break;
                    };
                    let body = BlockBody {
                        header: block.header.clone(),
                        txs: block.txs,
                    };
                    let certificate = CommitCertificate {
                        height: Height(height),
                        round: Round::new(block.commit.round),
                        value_id: block.header.hash(),
                        commit_signatures: block
                            .commit
                            .votes
                            .iter()
                            .map(|v| CommitSignature {
                                address: Address(v.validator),
                                signature: context::Signature(v.signature.0),
                            })
                            .collect(),
                    };
                    values.push(RawDecidedValue::new(
                        Bytes::from(client_core::encoding::encode(&body)),
                        ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                            certificate,
                            VoteExtensions::default(),
                        ),
                    ));
                }
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let body: BlockBody =
                    match client_core::encoding::decode(&value_bytes, super::codec::MAX_MESSAGE) {
                        Ok(body) => body,
                        Err(_) => {
                            let _ = reply.send(SyncedValueOutcome::PeerFault);
                            return Ok(());
                        }
                    };
                let hash = body.header.hash();
                let outcome = match self.check(body.header.clone(), body.txs.clone()).await {
                    Ok(()) => SyncedValueOutcome::Verdict(ProposedValue {
                        height,
                        round,
                        valid_round: Round::Nil,
                        proposer,
                        value: Value(hash),
                        validity: Validity::Valid,
                    }),
                    Err(BlockRejected::Local(e)) => {
                        tracing::warn!("checking a synced block: {e:#}");
                        SyncedValueOutcome::LocalTransientError
                    }
                    Err(e) => {
                        tracing::warn!(%height, "a synced block is invalid: {e}");
                        SyncedValueOutcome::Verdict(ProposedValue {
                            height,
                            round,
                            valid_round: Round::Nil,
                            proposer,
                            value: Value(hash),
                            validity: Validity::Invalid,
                        })
                    }
                };
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }

    /// Records the double-signing the engine saw as proof anyone can check; proposals signed
    /// twice are logged (their signatures are the engine's, not something a light client
    /// checks).
    fn record(&self, evidence: &MisbehaviorEvidence<Ctx>) {
        for (validator, pairs) in evidence.votes.iter() {
            for (first, second) in pairs {
                let proof = match (
                    self.ctx.ledger_vote(&first.message, &first.signature),
                    self.ctx.ledger_vote(&second.message, &second.signature),
                ) {
                    (Some(first), Some(second)) => DoubleSign { first, second },
                    _ => continue,
                };
                if let Err(e) = proof.check(&self.ctx.network_id) {
                    tracing::warn!(%validator, "the engine's evidence of double-signing does not check: {e}");
                    continue;
                }
                match self.ledger.store().put_double_sign(&proof) {
                    Ok(true) => tracing::warn!(
                        %validator,
                        height = proof.first.height,
                        round = proof.first.round,
                        kind = %proof.first.kind,
                        "validator double-signed: proof recorded"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::error!("recording a double sign: {e:#}"),
                }
            }
        }
        for (validator, pairs) in evidence.proposals.iter() {
            tracing::warn!(%validator, count = pairs.len(), "validator signed two proposals for one round");
        }
    }

    fn remember(&mut self, value: ProposedValue<Ctx>) {
        let key = (value.height.0, value.round.as_u32().unwrap_or(0));
        let seen = self.seen.entry(key).or_default();
        if !seen.iter().any(|v| v.value == value.value) {
            seen.push(value);
        }
    }

    /// Builds a block for `height`: waits (within the round's time) for transactions, up to
    /// [`IDLE_BLOCK`] since the last block, then takes what the mempool has.
    async fn build(&mut self, height: Height, timeout: Duration) -> anyhow::Result<Hash> {
        let started = tokio::time::Instant::now();
        let limit = (timeout / 2).min(IDLE_BLOCK);
        while self.ledger.pending() == 0 && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ledger = Arc::clone(&self.ledger);
        #[allow(unused_mut)]
        let mut built = tokio::task::spawn_blocking(move || ledger.build_block(now_ms(), true))
            .await??
            .ok_or_else(|| anyhow::anyhow!("no block was built"))?;
        #[cfg(feature = "faulty")]
        if self.byzantine.invalid_blocks {
            // A state root that does not follow from the block's transactions.
            built.header.state_root = Hash::of(&built.header.state_root.0);
            tracing::warn!(%height, "BYZANTINE: proposing a block with a wrong state root");
        }
        anyhow::ensure!(
            built.header.height == height.0,
            "built block {} for height {height}",
            built.header.height
        );
        let hash = built.header.hash();
        self.keep(&built.header, &built.txs)?;
        self.built.insert(hash, built);
        Ok(hash)
    }

    /// Publishes the block `hash` as this relay's proposal part for `height` and `round`.
    async fn publish(
        &mut self,
        height: Height,
        round: Round,
        hash: Hash,
        network: &tokio::sync::mpsc::Sender<NetworkMsg<Ctx>>,
    ) -> anyhow::Result<()> {
        let Some((header, txs)) = self.kept(&hash) else {
            anyhow::bail!("asked to publish block {hash}, which this relay does not have");
        };
        let signature = context::sign(&self.keypair, &self.ctx.part_bytes(height, round, hash));
        let part = ProposalPart {
            height,
            round,
            proposer: Address(self.keypair.public()),
            header,
            txs,
            signature,
        };
        self.next_stream += 1;
        let mut id = height.0.to_be_bytes().to_vec();
        id.extend_from_slice(&round.as_i64().to_be_bytes());
        id.extend_from_slice(&self.next_stream.to_be_bytes());
        let stream = StreamId::new(Bytes::from(id));
        for (sequence, content) in [(0, StreamContent::Data(part)), (1, StreamContent::Fin)] {
            network
                .send(NetworkMsg::PublishProposalPart(StreamMessage::new(
                    stream.clone(),
                    sequence,
                    content,
                )))
                .await
                .map_err(|_| anyhow::anyhow!("the consensus network stopped"))?;
        }
        Ok(())
    }

    /// Checks a proposal part: sent by the proposer of its round, signed by it, and a block
    /// that re-executes to the same roots on our state.
    async fn check_part(&mut self, part: ProposalPart) -> Option<ProposedValue<Ctx>> {
        let params = self.params().ok()?;
        let proposer = context::proposer_of(&params.validator_set, part.height, part.round);
        let hash = part.header.hash();
        if proposer.address != part.proposer
            || !context::verify(
                &part.proposer.0,
                &self.ctx.part_bytes(part.height, part.round, hash),
                &part.signature,
            )
        {
            tracing::warn!(
                height = %part.height,
                from = %part.proposer,
                "a proposal part not signed by its round's proposer was ignored"
            );
            return None;
        }
        let validity = match self.check(part.header.clone(), part.txs.clone()).await {
            Ok(()) => Validity::Valid,
            Err(BlockRejected::Local(e)) => {
                tracing::warn!("checking a proposal: {e:#}");
                return None;
            }
            Err(e) => {
                tracing::warn!(height = %part.height, proposer = %part.proposer, "refused a proposed block: {e}");
                Validity::Invalid
            }
        };
        Some(ProposedValue {
            height: part.height,
            round: part.round,
            valid_round: Round::Nil,
            proposer: part.proposer,
            value: Value(hash),
            validity,
        })
    }

    /// Re-executes a block on our state and keeps it, ready to commit, if it is valid.
    async fn check(&mut self, header: Header, txs: Vec<SignedTx>) -> Result<(), BlockRejected> {
        let hash = header.hash();
        if self.built.contains_key(&hash) {
            return Ok(());
        }
        let ledger = Arc::clone(&self.ledger);
        let (h, t) = (header.clone(), txs.clone());
        let built = tokio::task::spawn_blocking(move || ledger.check_block(&h, &t, now_ms()))
            .await
            .map_err(|e| BlockRejected::Local(e.into()))??;
        self.keep(&header, &txs).map_err(BlockRejected::Local)?;
        self.built.insert(hash, built);
        Ok(())
    }

    /// Keeps a block this relay may vote for, in memory and in the database (its write-ahead
    /// log may remember the vote after a restart; the block must be there too).
    fn keep(&mut self, header: &Header, txs: &[SignedTx]) -> anyhow::Result<()> {
        let hash = header.hash();
        if self.bodies.contains_key(&hash) {
            return Ok(());
        }
        let body = BlockBody {
            header: header.clone(),
            txs: txs.to_vec(),
        };
        self.ledger.store().put_proposal(
            &hash,
            header.height,
            &client_core::encoding::encode(&body),
        )?;
        self.bodies.insert(hash, (header.clone(), txs.to_vec()));
        Ok(())
    }

    /// A block kept before a restart.
    fn kept(&self, hash: &Hash) -> Option<(Header, Vec<SignedTx>)> {
        if let Some(body) = self.bodies.get(hash) {
            return Some(body.clone());
        }
        let bytes = self.ledger.store().proposal(hash).ok()??;
        let body: BlockBody =
            client_core::encoding::decode(&bytes, super::codec::MAX_MESSAGE).ok()?;
        Some((body.header, body.txs))
    }

    /// Commits the decided block with its precommits as the block's commit.
    async fn commit(&mut self, certificate: &CommitCertificate<Ctx>) -> anyhow::Result<()> {
        let hash = certificate.value_id;
        let built = match self.built.remove(&hash) {
            Some(built) => built,
            None => {
                let (header, txs) = self.kept(&hash).ok_or_else(|| {
                    anyhow::anyhow!("block {hash} was decided but this relay does not have it")
                })?;
                self.check(header, txs)
                    .await
                    .map_err(|e| anyhow::anyhow!("the decided block {hash}: {e}"))?;
                self.built
                    .remove(&hash)
                    .ok_or_else(|| anyhow::anyhow!("block {hash} vanished"))?
            }
        };
        let commit = Commit {
            round: certificate.round.as_u32().unwrap_or(0),
            votes: certificate
                .commit_signatures
                .iter()
                .map(|s| Vote {
                    validator: s.address.0,
                    signature: LedgerSignature(s.signature.0),
                })
                .collect(),
        };
        // The engine checked these signatures; the light clients' rule must agree.
        let snapshot = self.ledger.snapshot()?;
        let set = validators::current(&snapshot)
            .ok_or_else(|| anyhow::anyhow!("the ledger state holds no validator set"))?;
        drop(snapshot);
        verify_commit(&built.header, &commit, &set, self.ledger.network_id())
            .map_err(|e| anyhow::anyhow!("the decided commit does not verify: {e}"))?;
        let height = built.header.height;
        let ledger = Arc::clone(&self.ledger);
        tokio::task::spawn_blocking(move || ledger.commit_block(built, commit)).await??;
        tracing::debug!(height, round = %certificate.round, "decided");
        // What belonged to this height or earlier is done with.
        self.built.retain(|_, b| b.header.height > height);
        self.bodies.retain(|_, (h, _)| h.height > height);
        self.own.retain(|(h, _), _| *h > height);
        self.seen.retain(|(h, _), _| *h > height);
        self.early.retain(|h, _| *h > height);
        self.ledger.store().prune_proposals(height)?;
        Ok(())
    }
}

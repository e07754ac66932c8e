//! The ledger from the browser (wasm32, feature `browser`): fetching the genesis, proven reads
//! checked by the light client, and submitting signed transactions.
//!
//! Nothing a relay says about the ledger is used until [`LightClient::verify`] has checked the
//! header's validator signatures and every value's Merkle proof.

use crate::encoding::{decode, encode};
use crate::hash::Hash;
use crate::identity::{Keypair, PublicKey};
use crate::ledger::gov::{DaoView, MyGov, PowerHistory, newest_ids};
use crate::ledger::light::{LightClient, ReadError, Verified};
use crate::ledger::state::{Account, Channel, Provider};
use crate::ledger::tx::tx_id;
use crate::ledger::wire::{LEDGER_PROTOCOL, LedgerRequest, LedgerResponse, MAX_LEDGER_RESPONSE};
use crate::ledger::{Genesis, StateKey, StateValue, Tx, TxKind};
use crate::signed::Signed;
use crate::wire::{read_frame, write_frame};
use futures::future::{Either, select};
use gloo_timers::future::TimeoutFuture;
use libp2p::{PeerId, StreamProtocol};

/// How long to wait for one answer (a submission's inclusion can take a block or two).
const ANSWER_TIMEOUT_MS: u32 = 70_000;

/// Why a ledger request did not give a verified answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerClientError {
    #[error("the relay could not be reached: {0}")]
    Stream(String),
    #[error("the relay's answer was malformed: {0}")]
    Protocol(String),
    #[error("the relay refused: {0}")]
    Refused(String),
    #[error("the relay's answer failed verification: {0}")]
    Unverified(#[from] ReadError),
    #[error("the relay has not produced a block yet; try again in a moment")]
    NoBlockYet,
    #[error("the transaction was dropped: {0}")]
    Dropped(String),
    #[error(
        "no block has included the transaction after {waits} waits of the relay; it is still \
         pending and may yet be included — the account's nonce will show it"
    )]
    StillPending { waits: u32 },
}

/// How many times [`transact`] submits a transaction that is still pending when the relay
/// stops waiting for it (about a minute each) before it stops watching.
pub const MAX_SUBMIT_WAITS: u32 = 5;

/// No request has more answers than this (a submission has two); a relay sending more is
/// broken or hostile, and is not allowed to grow the page's memory.
const MAX_ANSWERS: usize = 8;

/// Sends one request and collects every answer until the relay closes the stream; `on_answer`
/// sees each as it arrives.
pub async fn call(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    request: &LedgerRequest,
    on_answer: &dyn Fn(&LedgerResponse),
) -> Result<Vec<LedgerResponse>, LedgerClientError> {
    let mut stream = control
        .open_stream(relay, StreamProtocol::new(LEDGER_PROTOCOL))
        .await
        .map_err(|e| LedgerClientError::Stream(e.to_string()))?;
    write_frame(&mut stream, &encode(request))
        .await
        .map_err(|e| LedgerClientError::Stream(e.to_string()))?;
    let mut answers = Vec::new();
    loop {
        let read = read_frame(&mut stream, MAX_LEDGER_RESPONSE);
        let frame = match select(Box::pin(read), TimeoutFuture::new(ANSWER_TIMEOUT_MS)).await {
            Either::Left((frame, _)) => frame,
            Either::Right(_) => {
                return Err(LedgerClientError::Stream(
                    "no answer from the relay in time".into(),
                ));
            }
        };
        match frame.map_err(|e| LedgerClientError::Stream(e.to_string()))? {
            Some(bytes) => {
                if answers.len() >= MAX_ANSWERS {
                    return Err(LedgerClientError::Protocol(format!(
                        "more than {MAX_ANSWERS} answers to one request"
                    )));
                }
                let answer: LedgerResponse = decode(&bytes, MAX_LEDGER_RESPONSE)
                    .map_err(|e| LedgerClientError::Protocol(e.to_string()))?;
                on_answer(&answer);
                if let LedgerResponse::Refused { reason } = answer {
                    return Err(LedgerClientError::Refused(reason));
                }
                answers.push(answer);
            }
            None => return Ok(answers),
        }
    }
}

/// The relay's genesis. Whether to trust it is the caller's decision (the page compares its
/// hash with the one it has pinned).
pub async fn fetch_genesis(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
) -> Result<Genesis, LedgerClientError> {
    let answers = call(control, relay, &LedgerRequest::Genesis, &|_| {}).await?;
    match answers.into_iter().next() {
        Some(LedgerResponse::Genesis(genesis)) => {
            genesis
                .check()
                .map_err(|e| LedgerClientError::Protocol(e.to_string()))?;
            Ok(*genesis)
        }
        other => Err(LedgerClientError::Protocol(format!(
            "expected the genesis, got {other:?}"
        ))),
    }
}

/// Reads `keys` at the latest block and verifies the answer with `light`.
pub async fn read(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    keys: Vec<StateKey>,
) -> Result<Verified<Vec<Option<StateValue>>>, LedgerClientError> {
    read_timed(light, control, relay, keys, None)
        .await
        .map(|(v, _)| v)
}

/// Reads `keys` at block `height`, so that values read in several requests describe one
/// state (a list, then its entries).
pub async fn read_at(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    keys: Vec<StateKey>,
    height: u64,
) -> Result<Verified<Vec<Option<StateValue>>>, LedgerClientError> {
    read_timed(light, control, relay, keys, Some(height))
        .await
        .map(|(v, _)| v)
}

/// Learns the validator sets elected since the light client's latest header, each from the
/// header that elected it (signed by the set before).
pub async fn follow_epochs(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
) -> Result<usize, LedgerClientError> {
    let mut followed = 0;
    loop {
        let from = light.borrow().epochs_from();
        let answers = call(control, relay, &LedgerRequest::Epochs { from }, &|_| {}).await?;
        let changes = match answers.into_iter().next() {
            Some(LedgerResponse::Epochs(changes)) => changes,
            other => {
                return Err(LedgerClientError::Protocol(format!(
                    "expected epoch changes, got {other:?}"
                )));
            }
        };
        let full = changes.len() >= crate::ledger::wire::MAX_EPOCH_CHANGES;
        for change in &changes {
            light.borrow_mut().follow(change)?;
            followed += 1;
        }
        if !full {
            return Ok(followed);
        }
    }
}

/// [`read`] or [`read_at`], also returning how long the page took to verify the answer (ms).
/// An answer signed by a set the light client has not learned yet makes it follow the epoch
/// changes since its latest header first.
/// How often, and how far apart, a read answered with an older header than the light
/// client's latest is asked again.
const STALE_RETRIES: u32 = 20;
const STALE_PAUSE_MS: u32 = 250;

async fn read_timed(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    keys: Vec<StateKey>,
    height: Option<u64>,
) -> Result<(Verified<Vec<Option<StateValue>>>, f64), LedgerClientError> {
    let request = LedgerRequest::Read {
        keys: keys.clone(),
        height,
    };
    let mut behind = 0;
    let reads = loop {
        let answers = call(control, relay, &request, &|_| {}).await?;
        let reads = match answers.into_iter().next() {
            Some(LedgerResponse::Reads(Some(reads))) => reads,
            Some(LedgerResponse::Reads(None)) => return Err(LedgerClientError::NoBlockYet),
            other => {
                return Err(LedgerClientError::Protocol(format!(
                    "expected proven reads, got {other:?}"
                )));
            }
        };
        // A validator a block or two behind the one this client last read from answers with
        // an older header, which the light client refuses as stale: ask again once it has
        // caught up (a few block times at most), rather than fail the read.
        let latest = light.borrow().latest().map_or(0, |h| h.height);
        if height.is_none() && reads.header.height < latest && behind < STALE_RETRIES {
            behind += 1;
            crate::browser::pause(STALE_PAUSE_MS).await;
            continue;
        }
        break reads;
    };
    let check = |light: &std::cell::RefCell<LightClient>| {
        let started = crate::browser::now_ms();
        let verified = match height {
            Some(h) => light.borrow_mut().verify_at(h, &keys, &reads),
            None => light.borrow_mut().verify(&keys, &reads),
        };
        (verified, crate::browser::now_ms() - started)
    };
    let (mut verified, mut took) = check(light);
    if let Err(ReadError::UnknownSet { .. }) = verified {
        follow_epochs(light, control, relay).await?;
        (verified, took) = check(light);
    }
    let verified = verified?;
    // For the end-to-end benchmark: how long the page took to check this answer.
    let ended = crate::browser::now_ms();
    crate::browser::measure(
        &format!("aqueduct:ledger-verify:{}", keys.len()),
        ended - took,
        ended,
    );
    Ok((verified, took))
}

/// An account's verified state (a default account if it has never received anything).
pub async fn account(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    who: PublicKey,
) -> Result<Verified<Account>, LedgerClientError> {
    let verified = read(light, control, relay, vec![StateKey::Account(who)]).await?;
    let account = match verified.value.first() {
        Some(Some(StateValue::Account(a))) => a.clone(),
        _ => Account::default(),
    };
    Ok(Verified {
        value: account,
        height: verified.height,
        state_root: verified.state_root,
        time_ms: verified.time_ms,
    })
}

/// Every registered provider, verified: the provider list (one proven value, so none can be
/// left out), then each provider's entry, in batches.
pub async fn providers(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
) -> Result<Verified<Vec<(PublicKey, Provider)>>, LedgerClientError> {
    let list = read(light, control, relay, vec![StateKey::Providers]).await?;
    let keys = match list.value.first() {
        Some(Some(StateValue::Keys(keys))) => keys.clone(),
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(crate::ledger::wire::MAX_READ_KEYS) {
        let batch = read_at(
            light,
            control,
            relay,
            chunk.iter().map(|k| StateKey::Provider(*k)).collect(),
            list.height,
        )
        .await?;
        for (key, value) in chunk.iter().zip(batch.value.iter()) {
            if let Some(StateValue::Provider(p)) = value {
                out.push((*key, p.clone()));
            }
        }
    }
    Ok(Verified {
        value: out,
        height: list.height,
        state_root: list.state_root,
        time_ms: list.time_ms,
    })
}

/// The channels `customer` has open, verified (at the block of the read that listed them).
pub async fn channels(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    customer: PublicKey,
) -> Result<Verified<Vec<(Hash, Channel)>>, LedgerClientError> {
    let list = read(
        light,
        control,
        relay,
        vec![StateKey::CustomerChannels(customer)],
    )
    .await?;
    let ids = match list.value.first() {
        Some(Some(StateValue::Hashes(ids))) => ids.clone(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Ok(Verified {
            value: Vec::new(),
            height: list.height,
            state_root: list.state_root,
            time_ms: list.time_ms,
        });
    }
    let values = read_at(
        light,
        control,
        relay,
        ids.iter().map(|id| StateKey::Channel(*id)).collect(),
        list.height,
    )
    .await?;
    Ok(Verified {
        value: ids
            .iter()
            .zip(values.value)
            .filter_map(|(id, v)| match v {
                Some(StateValue::Channel(c)) => Some((*id, c)),
                _ => None,
            })
            .collect(),
        height: values.height,
        state_root: values.state_root,
        time_ms: values.time_ms,
    })
}

/// Everything the DAO page shows, verified: parameters, treasury, the newest proposals with
/// their tallies, and (for `me`) voting power, delegate and votes. Two reads: the totals and
/// the viewer's keys, then the proposals and the viewer's votes on them.
pub async fn dao(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    me: Option<PublicKey>,
) -> Result<Verified<DaoView>, LedgerClientError> {
    let mut keys = vec![StateKey::Params, StateKey::Treasury, StateKey::NextProposal];
    if let Some(me) = me {
        keys.push(StateKey::Power(me));
        keys.push(StateKey::Delegate(me));
    }
    let (first, mut verify_ms) = read_timed(light, control, relay, keys, None).await?;
    let values = &first.value;
    let Some(Some(StateValue::Params(params))) = values.first() else {
        return Err(LedgerClientError::Protocol(
            "the state has no parameters".into(),
        ));
    };
    let treasury = match values.get(1) {
        Some(Some(StateValue::Amount(a))) => *a,
        _ => 0,
    };
    let next = match values.get(2) {
        Some(Some(StateValue::Amount(n))) => *n,
        _ => 0,
    };
    let ids = newest_ids(next);
    let mut proposals = Vec::with_capacity(ids.len());
    let mut votes = Vec::new();
    let height = first.height;
    // Each proposal with the viewer's vote on it, a few at a time.
    let per_read = (crate::ledger::wire::MAX_READ_KEYS / 2).max(1);
    for chunk in ids.chunks(per_read) {
        let mut keys = Vec::with_capacity(chunk.len() * 2);
        for id in chunk {
            keys.push(StateKey::Proposal(*id));
            if let Some(me) = me {
                keys.push(StateKey::Vote(*id, me));
            }
        }
        let (batch, ms) = read_timed(light, control, relay, keys.clone(), Some(height)).await?;
        verify_ms += ms;
        for (key, value) in keys.iter().zip(batch.value) {
            match (key, value) {
                (StateKey::Proposal(_), Some(StateValue::Proposal(p))) => proposals.push(p),
                (StateKey::Vote(id, _), Some(StateValue::Vote(v))) => votes.push((*id, v)),
                _ => {}
            }
        }
    }
    // For the end-to-end benchmark: checking every proof of the DAO page's figures.
    let now = crate::browser::now_ms();
    crate::browser::measure(
        &format!("aqueduct:dao-verify:{}", proposals.len()),
        now - verify_ms,
        now,
    );
    let me = me.map(|account| MyGov {
        account,
        power: match values.get(3) {
            Some(Some(StateValue::Power(h))) => h.clone(),
            _ => PowerHistory::default(),
        },
        delegate: match values.get(4) {
            Some(Some(StateValue::Key(k))) => Some(*k),
            _ => None,
        },
        votes,
    });
    Ok(Verified {
        value: DaoView {
            params: params.clone(),
            treasury,
            proposals,
            me,
            height,
        },
        height,
        state_root: first.state_root,
        time_ms: first.time_ms,
    })
}

/// What happens to a submitted transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxEvent {
    Signed {
        tx: Hash,
    },
    Pending {
        pending: u32,
    },
    /// The relay waited `waits` times without a block including it; submitted again to wait
    /// again.
    StillPending {
        waits: u32,
    },
    Included {
        height: u64,
    },
}

/// Signs `kind` with `keypair` at the account's current (verified) nonce, submits it and waits
/// for its block. Returns the transaction id and the block height.
#[allow(clippy::too_many_arguments)]
pub async fn transact(
    light: &std::cell::RefCell<LightClient>,
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    keypair: &Keypair,
    kind: TxKind,
    fee: u64,
    on_event: &dyn Fn(TxEvent),
) -> Result<(Hash, u64), LedgerClientError> {
    let network_id = light.borrow().network_id().to_owned();
    let nonce = match account(light, control, relay, keypair.public()).await {
        Ok(verified) => verified.value.nonce,
        // Before the first block every account is fresh.
        Err(LedgerClientError::NoBlockYet) => 0,
        Err(e) => return Err(e),
    };
    let tx = Signed::sign(
        keypair,
        Tx {
            network_id,
            nonce,
            fee,
            kind,
        },
    );
    let id = tx_id(&tx);
    on_event(TxEvent::Signed { tx: id });
    let request = LedgerRequest::Submit { tx: Box::new(tx) };
    let mut waits = 0;
    let answers = loop {
        let answers = call(control, relay, &request, &|answer| {
            if let LedgerResponse::Submitted { pending, .. } = answer {
                on_event(TxEvent::Pending { pending: *pending });
            }
        })
        .await?;
        match answers.last() {
            // Still in the relay's mempool: the same transaction again is a new wait for it.
            Some(LedgerResponse::StillPending { tx }) if *tx == id => {
                waits += 1;
                if waits >= MAX_SUBMIT_WAITS {
                    return Err(LedgerClientError::StillPending { waits });
                }
                on_event(TxEvent::StillPending { waits });
            }
            _ => break answers,
        }
    };
    match answers.last() {
        Some(LedgerResponse::Included { tx, height }) if *tx == id => {
            let height = *height;
            // Believed once proven: the transaction is in that block's transactions root...
            let proof = call(
                control,
                relay,
                &LedgerRequest::TxProof { height, tx: id },
                &|_| {},
            )
            .await?;
            match proof.into_iter().next() {
                Some(LedgerResponse::TxProof(Some(inclusion))) => {
                    light.borrow_mut().verify_inclusion(&id, &inclusion)?;
                }
                other => {
                    return Err(LedgerClientError::Protocol(format!(
                        "the relay says the transaction is in block {height} but does not prove \
                         it: {other:?}"
                    )));
                }
            }
            // ...and the account's nonce has moved past this transaction's.
            let proven = account(light, control, relay, keypair.public()).await?;
            if proven.value.nonce <= nonce {
                return Err(LedgerClientError::Protocol(format!(
                    "the relay says the transaction is in block {height}, but the account's \
                     proven nonce at block {} is still {}",
                    proven.height, proven.value.nonce
                )));
            }
            on_event(TxEvent::Included { height });
            Ok((id, height))
        }
        Some(LedgerResponse::Dropped { reason, .. }) => {
            Err(LedgerClientError::Dropped(reason.clone()))
        }
        other => Err(LedgerClientError::Protocol(format!(
            "expected the transaction's inclusion, got {other:?}"
        ))),
    }
}

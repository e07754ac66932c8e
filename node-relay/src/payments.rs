//! Getting paid for jobs: the relay as a provider.
//!
//! When the relay is a registered provider whose offer has a price, every job must carry a
//! voucher on an open channel from the job's customer to this relay that covers the offer's
//! price for the job's fuel limit (checked by [`client_core::ledger::pay::check_voucher`]
//! against the relay's latest ledger state). The latest voucher per channel is kept in the
//! ledger database, so a restart loses no payment, and a settler submits a `Settle`
//! transaction for every channel whose kept voucher is above what the ledger has settled.
//!
//! A relay that is not a provider runs jobs for free and refuses vouchers (it could not settle
//! them).

use crate::ledger::Ledger;
use crate::ledger::store::Snapshot;
use client_core::hash::Hash;
use client_core::identity::{Keypair, PublicKey};
use client_core::ledger::pay::{Payment, PaymentError, check_voucher};
use client_core::ledger::state::Channel;
use client_core::ledger::{Amount, StateKey, StateRead, StateValue, TxKind, Voucher};
use client_core::signed::Signed;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How payments are handled.
#[derive(Debug, Clone, Copy)]
pub struct PaymentConfig {
    /// How often kept vouchers are settled on the ledger.
    pub settle_interval: Duration,
    /// A channel must stay open at least this long after a job to be accepted as payment, so
    /// that the relay settles before the customer may close it (at most half the governed
    /// channel timeout).
    pub settle_margin: Duration,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        PaymentConfig {
            settle_interval: Duration::from_secs(30),
            settle_margin: Duration::from_secs(10 * 60),
        }
    }
}

/// Why a job's payment was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefusedPayment {
    #[error(transparent)]
    Voucher(#[from] PaymentError),
    #[error(
        "this relay is not a provider on the ledger and takes no payment: send the job without a voucher"
    )]
    NotAProvider,
    #[error("the relay could not read its ledger: {0}")]
    Ledger(String),
}

/// The relay's payment book: its price and the vouchers it holds.
pub struct Payments {
    ledger: Arc<Ledger>,
    keypair: Keypair,
    config: PaymentConfig,
    /// Channel → the latest voucher accepted on it.
    accepted: Mutex<HashMap<Hash, Signed<Voucher>>>,
    /// Paid jobs still running: job → its channel, its voucher's amount and the voucher it
    /// replaced, to take the increment back if the relay fails to run the job.
    running: Mutex<HashMap<Hash, Charge>>,
}

/// A running job's payment.
struct Charge {
    channel: Hash,
    cumulative: Amount,
    previous: Option<Signed<Voucher>>,
}

impl Payments {
    /// Loads the vouchers kept in the ledger database.
    pub fn open(
        ledger: Arc<Ledger>,
        keypair: Keypair,
        config: PaymentConfig,
    ) -> anyhow::Result<Arc<Payments>> {
        let accepted = ledger
            .store()
            .vouchers()?
            .into_iter()
            .map(|v| (v.body.channel, v))
            .collect::<HashMap<_, _>>();
        if !accepted.is_empty() {
            tracing::info!(
                channels = accepted.len(),
                "kept vouchers loaded; unsettled ones are settled shortly"
            );
        }
        Ok(Arc::new(Payments {
            ledger,
            keypair,
            config,
            accepted: Mutex::new(accepted),
            running: Mutex::new(HashMap::new()),
        }))
    }

    fn me(&self) -> PublicKey {
        self.keypair.public()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, Signed<Voucher>>> {
        self.accepted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ledger's latest state.
    fn state(&self) -> Result<Snapshot, RefusedPayment> {
        self.ledger
            .snapshot()
            .map_err(|e| RefusedPayment::Ledger(e.to_string()))
    }

    /// The network's parameters in force (the latest block's).
    pub fn params(&self) -> Option<client_core::ledger::Params> {
        match self.state().ok()?.get(&StateKey::Params) {
            Some(StateValue::Params(p)) => Some(p),
            _ => None,
        }
    }

    /// How long a channel must stay open after a job: the configured margin, but never more
    /// than half the governed channel timeout — so a channel opened or topped up just now is
    /// always long enough, whatever the DAO set the timeout to.
    fn settle_margin_ms(&self, state: &Snapshot) -> u64 {
        let configured = u64::try_from(self.config.settle_margin.as_millis()).unwrap_or(u64::MAX);
        match state.get(&StateKey::Params) {
            Some(StateValue::Params(p)) => configured.min(p.channel_timeout_ms / 2),
            _ => configured,
        }
    }

    /// The price of a job with `fuel_limit` under this relay's published offer in `state`;
    /// `None` if the relay is not an active provider.
    fn price_in(&self, state: &Snapshot, fuel_limit: u64) -> Option<Amount> {
        match state.get(&StateKey::Provider(self.me())) {
            Some(StateValue::Provider(p)) if p.active() => Some(p.offer.price_for(fuel_limit)),
            _ => None,
        }
    }

    /// Waits, at most `within`, until the ledger holds channel `id`. A customer may pay on a
    /// channel as soon as its block is final at another relay, before this relay has followed
    /// that block; the payment is then checked against the block that opened the channel
    /// instead of being refused.
    pub async fn await_channel(&self, id: &Hash, within: std::time::Duration) {
        let mut events = self.ledger.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(state) = self.state()
                && channel_in(&state, id).is_some()
            {
                return;
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                _ => return,
            }
        }
    }

    /// The price of a job with `fuel_limit` under this relay's published offer; `None` if the
    /// relay is not an active provider.
    pub fn price(&self, fuel_limit: u64) -> Result<Option<Amount>, RefusedPayment> {
        Ok(self.price_in(&self.state()?, fuel_limit))
    }

    /// Checks a job's payment without keeping anything: what the relay runs before any work
    /// the job asks for ([`Payments::accept`] checks again, under the book's lock).
    pub fn precheck(
        &self,
        customer: &PublicKey,
        voucher: Option<&Signed<Voucher>>,
        fuel_limit: u64,
    ) -> Result<(), RefusedPayment> {
        let state = self.state()?;
        let price = self.price_in(&state, fuel_limit);
        let book = self.book();
        self.check(&state, &book, price, customer, voucher)
            .map(|_| ())
    }

    /// The payment `voucher` makes for a job of price `price` (`None`: not a provider), given
    /// what the book holds.
    fn check(
        &self,
        state: &Snapshot,
        book: &HashMap<Hash, Signed<Voucher>>,
        price: Option<Amount>,
        customer: &PublicKey,
        voucher: Option<&Signed<Voucher>>,
    ) -> Result<Option<Payment>, RefusedPayment> {
        Ok(match (price, voucher) {
            (None, None) | (Some(0), None) => None,
            (None, Some(_)) => return Err(RefusedPayment::NotAProvider),
            (Some(price), None) => return Err(PaymentError::Missing { price }.into()),
            (Some(price), Some(voucher)) => {
                let id = voucher.body.channel;
                let channel = channel_in(state, &id);
                let accepted = book.get(&id).map_or(0, |v| v.body.cumulative);
                Some(check_voucher(
                    voucher,
                    self.ledger.network_id(),
                    customer,
                    &self.me(),
                    channel.as_ref(),
                    accepted,
                    price,
                    crate::ledger::now_ms(),
                    self.settle_margin_ms(state),
                )?)
            }
        })
    }

    /// Checks a job's payment and, if `enqueue` then succeeds, keeps the voucher. Runs
    /// `enqueue` under the book's lock, so two jobs on one channel cannot both count the same
    /// amount. Returns what the receipt names (`None`: the job is free).
    pub fn accept<E>(
        &self,
        job: Hash,
        customer: &PublicKey,
        voucher: Option<&Signed<Voucher>>,
        fuel_limit: u64,
        enqueue: impl FnOnce(Option<Payment>) -> Result<(), E>,
    ) -> Result<Result<Option<Payment>, E>, RefusedPayment> {
        // One view of the ledger for the price and the channel.
        let state = self.state()?;
        let price = self.price_in(&state, fuel_limit);
        let mut book = self.book();
        let payment = self.check(&state, &book, price, customer, voucher)?;
        if let Err(e) = enqueue(payment) {
            return Ok(Err(e));
        }
        if let (Some(_), Some(voucher)) = (payment, voucher) {
            if let Err(e) = self.ledger.store().put_voucher(voucher) {
                tracing::error!(error = %e, "could not store an accepted voucher; it is kept in memory only");
            }
            let previous = book.insert(voucher.body.channel, voucher.clone());
            if let Ok(mut running) = self.running.lock() {
                running.insert(
                    job,
                    Charge {
                        channel: voucher.body.channel,
                        cumulative: voucher.body.cumulative,
                        previous,
                    },
                );
            }
        }
        Ok(Ok(payment))
    }

    /// A paid job ended: with a result (or a failure it is charged for), its voucher stays;
    /// otherwise (see `JobFailure::charged`) the relay takes back the increment — it keeps the
    /// voucher the job's replaced, if no later job's voucher came since — so the customer does
    /// not pay for it and builds its next voucher on the previous one.
    pub fn job_ended(&self, job: &Hash, charged: bool) {
        let Some(charge) = self.running.lock().ok().and_then(|mut r| r.remove(job)) else {
            return;
        };
        if charged {
            return;
        }
        let mut book = self.book();
        if book
            .get(&charge.channel)
            .is_none_or(|v| v.body.cumulative != charge.cumulative)
        {
            return;
        }
        let stored = match charge.previous {
            Some(previous) => {
                let stored = self.ledger.store().put_voucher(&previous);
                book.insert(charge.channel, previous);
                stored
            }
            None => {
                book.remove(&charge.channel);
                self.ledger.store().remove_voucher(&charge.channel)
            }
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not store the voucher taken back");
        }
        tracing::info!(job = %job, channel = %charge.channel, "the job was not run: its payment is not kept");
    }

    /// Submits a `Settle` for every kept voucher above what its channel has settled, unless
    /// transactions of this relay are still waiting for a block. Forgets vouchers of channels
    /// settled in full or gone. Returns how many were submitted.
    pub fn settle_once(&self) -> anyhow::Result<usize> {
        if self.ledger.pending_from(&self.me()) > 0 {
            return Ok(0);
        }
        let kept: Vec<Signed<Voucher>> = self.book().values().cloned().collect();
        let state = self.state().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut submitted = 0;
        for voucher in kept {
            let id = voucher.body.channel;
            let settled = match channel_in(&state, &id) {
                Some(c) => c.settled,
                None => {
                    tracing::warn!(channel = %id, "a channel with an unsettled voucher is gone");
                    self.forget(&id, voucher.body.cumulative);
                    continue;
                }
            };
            if settled >= voucher.body.cumulative {
                self.forget(&id, voucher.body.cumulative);
                continue;
            }
            match self
                .ledger
                .submit_own(&self.keypair, TxKind::Settle { voucher })
            {
                Ok(tx) => {
                    submitted += 1;
                    tracing::info!(channel = %id, %tx, "settling a channel");
                }
                Err(e) => tracing::warn!(channel = %id, error = %e, "could not settle a channel"),
            }
        }
        Ok(submitted)
    }

    /// Drops the kept voucher of `channel` if it is still the one for `cumulative`.
    fn forget(&self, channel: &Hash, cumulative: Amount) {
        let mut book = self.book();
        if book
            .get(channel)
            .is_some_and(|v| v.body.cumulative == cumulative)
        {
            book.remove(channel);
            if let Err(e) = self.ledger.store().remove_voucher(channel) {
                tracing::warn!(error = %e, "could not drop a settled voucher");
            }
        }
    }

    /// Vouchers kept and not yet settled in full.
    pub fn kept(&self) -> usize {
        self.book().len()
    }

    /// Settles every `settle_interval` until shutdown.
    pub fn spawn_settler(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.config.settle_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                let settler = Arc::clone(&this);
                match tokio::task::spawn_blocking(move || settler.settle_once()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "settling failed"),
                    Err(e) => tracing::warn!(error = %e, "the settler stopped"),
                }
            }
        })
    }
}

/// Channel `id` as `state` has it.
fn channel_in(state: &Snapshot, id: &Hash) -> Option<Channel> {
    match state.get(&StateKey::Channel(*id)) {
        Some(StateValue::Channel(c)) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerConfig, SoloValidator, now_ms};
    use client_core::ledger::pay::voucher_for;
    use client_core::ledger::state::{Offer, UNITS_PER_TOKEN, VerificationLevel};
    use client_core::ledger::tx::channel_id;
    use client_core::ledger::{Genesis, Tx};

    const NET: &str = "aqueduct-test";

    fn key(n: u8) -> Keypair {
        Keypair::from_seed(&[n; 32])
    }

    fn balance(ledger: &Ledger, who: &PublicKey) -> Amount {
        match ledger
            .snapshot()
            .expect("snapshot")
            .get(&StateKey::Account(*who))
        {
            Some(StateValue::Account(a)) => a.balance,
            _ => 0,
        }
    }

    fn block(ledger: &Ledger) {
        ledger
            .produce_block(now_ms(), false)
            .expect("produce")
            .expect("a block");
    }

    #[test]
    fn vouchers_are_checked_kept_across_a_reload_and_settled() {
        let dir = std::env::temp_dir().join(format!(
            "aqueduct-payments-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (provider, customer) = (key(100), key(1));
        let genesis = Genesis::dev(NET, provider.public(), 1_000);
        let ledger = Ledger::open(
            &dir,
            &genesis,
            Box::new(SoloValidator::new(provider.clone())),
            LedgerConfig::default(),
        )
        .expect("open");
        let payments = Payments::open(
            Arc::clone(&ledger),
            provider.clone(),
            PaymentConfig::default(),
        )
        .expect("payments");
        // Not a provider yet: free, and a voucher is refused.
        let free = payments.accept(Hash::of(b"job"), &customer.public(), None, 1_000, |p| {
            assert_eq!(p, None);
            Ok::<_, ()>(())
        });
        assert!(matches!(free, Ok(Ok(None))));

        let offer = Offer {
            price_per_mfuel: 2_000_000,
            max_fuel: 1_000_000,
            concurrency: 1,
            levels: vec![VerificationLevel::Full],
            addrs: vec![],
            attributes: vec![],
        };
        ledger
            .submit_own(
                &provider,
                TxKind::RegisterProvider {
                    stake: 100 * UNITS_PER_TOKEN,
                    offer,
                },
            )
            .expect("register");
        ledger
            .submit(Signed::sign(
                &customer,
                Tx {
                    network_id: NET.into(),
                    nonce: 0,
                    fee: 10_000,
                    kind: TxKind::Faucet,
                },
            ))
            .expect("faucet");
        block(&ledger);
        let channel = channel_id(&customer.public(), 1);
        ledger
            .submit(Signed::sign(
                &customer,
                Tx {
                    network_id: NET.into(),
                    nonce: 1,
                    fee: 10_000,
                    kind: TxKind::OpenChannel {
                        provider: provider.public(),
                        amount: 10_000,
                    },
                },
            ))
            .expect("open channel");
        block(&ledger);

        // 1000 fuel at 2 per fuel: 2000.
        assert_eq!(payments.price(1_000).expect("price"), Some(2_000));
        let ok = |_| Ok::<_, ()>(());
        assert!(matches!(
            payments.accept(Hash::of(b"job"), &customer.public(), None, 1_000, ok),
            Err(RefusedPayment::Voucher(PaymentError::Missing {
                price: 2_000
            }))
        ));
        let first = voucher_for(&customer, NET, channel, 0, 2_000);
        // The queue refuses the job: the voucher is not kept.
        assert!(matches!(
            payments.accept(
                Hash::of(b"job"),
                &customer.public(),
                Some(&first),
                1_000,
                |_| Err("full")
            ),
            Ok(Err("full"))
        ));
        assert_eq!(payments.kept(), 0);
        let paid = payments
            .accept(
                Hash::of(b"job 1"),
                &customer.public(),
                Some(&first),
                1_000,
                ok,
            )
            .expect("accepted")
            .expect("queued")
            .expect("a payment");
        assert_eq!(
            (paid.channel, paid.cumulative, paid.price),
            (channel, 2_000, 2_000)
        );
        // The same voucher twice pays nothing more.
        assert!(matches!(
            payments.accept(
                Hash::of(b"job"),
                &customer.public(),
                Some(&first),
                1_000,
                ok
            ),
            Err(RefusedPayment::Voucher(PaymentError::TooLow {
                needed: 4_000,
                ..
            }))
        ));
        let second = voucher_for(&customer, NET, channel, 2_000, 1_000);
        payments
            .accept(
                Hash::of(b"job 2"),
                &customer.public(),
                Some(&second),
                500,
                ok,
            )
            .expect("accepted")
            .expect("queued");

        // Kept in the database: a reloaded book has it.
        let reloaded = Payments::open(
            Arc::clone(&ledger),
            provider.clone(),
            PaymentConfig::default(),
        )
        .expect("reload");
        assert_eq!(reloaded.kept(), 1);

        let before = balance(&ledger, &provider.public());
        assert_eq!(reloaded.settle_once().expect("settle"), 1);
        // Its settle transaction is still waiting: nothing more is sent.
        assert_eq!(reloaded.settle_once().expect("settle"), 0);
        block(&ledger);
        let fee = match ledger
            .snapshot()
            .expect("snapshot")
            .get(&StateKey::Channel(channel))
        {
            Some(StateValue::Channel(c)) => {
                assert_eq!(c.settled, 3_000);
                let params = ledger.genesis().params.clone();
                client_core::ledger::tx::min_fee_for(
                    &params,
                    NET,
                    &TxKind::Settle {
                        voucher: second.clone(),
                    },
                )
            }
            other => panic!("channel: {other:?}"),
        };
        assert_eq!(balance(&ledger, &provider.public()), before + 3_000 - fee);
        // Settled in full: forgotten, in memory and on disk.
        assert_eq!(reloaded.settle_once().expect("settle"), 0);
        assert_eq!(reloaded.kept(), 0);
        assert!(ledger.store().vouchers().expect("vouchers").is_empty());

        // A job the relay fails to run is not charged: the increment is taken back, on disk
        // too, and the next voucher builds on the last one kept.
        let third = voucher_for(&customer, NET, channel, 3_000, 2_000);
        let job = Hash::of(b"job 3");
        reloaded
            .accept(job, &customer.public(), Some(&third), 1_000, ok)
            .expect("accepted")
            .expect("queued");
        reloaded.job_ended(&job, false);
        assert_eq!(reloaded.kept(), 0, "back to nothing unsettled");
        assert!(ledger.store().vouchers().expect("vouchers").is_empty());
        let job = Hash::of(b"job 4");
        reloaded
            .accept(job, &customer.public(), Some(&third), 1_000, ok)
            .expect("the same amount again: accepted")
            .expect("queued");
        // A job that ends with a result (or fails by itself) keeps its payment.
        reloaded.job_ended(&job, true);
        assert_eq!(reloaded.kept(), 1);
        assert_eq!(ledger.store().vouchers().expect("vouchers").len(), 1);
        drop(reloaded);
        drop(payments);
        drop(ledger);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_settle_margin_follows_the_governed_channel_timeout() {
        let dir = std::env::temp_dir().join(format!(
            "aqueduct-payments-margin-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (provider, customer) = (key(100), key(2));
        // Channels last 4 minutes here; the relay's own margin (10 minutes) is longer than that.
        let mut genesis = Genesis::dev(NET, provider.public(), 1_000);
        genesis.params.channel_timeout_ms = 4 * 60_000;
        let ledger = Ledger::open(
            &dir,
            &genesis,
            Box::new(SoloValidator::new(provider.clone())),
            LedgerConfig::default(),
        )
        .expect("open");
        let payments = Payments::open(
            Arc::clone(&ledger),
            provider.clone(),
            PaymentConfig::default(),
        )
        .expect("payments");
        let offer = Offer {
            price_per_mfuel: 1_000_000,
            max_fuel: 1_000_000,
            concurrency: 1,
            levels: vec![VerificationLevel::Full],
            addrs: vec![],
            attributes: vec![],
        };
        ledger
            .submit_own(
                &provider,
                TxKind::RegisterProvider {
                    stake: 100 * UNITS_PER_TOKEN,
                    offer,
                },
            )
            .expect("register");
        for (nonce, kind) in [
            (0, TxKind::Faucet),
            (
                1,
                TxKind::OpenChannel {
                    provider: provider.public(),
                    amount: 10_000,
                },
            ),
        ] {
            ledger
                .submit(Signed::sign(
                    &customer,
                    Tx {
                        network_id: NET.into(),
                        nonce,
                        fee: 10_000,
                        kind,
                    },
                ))
                .expect("submitted");
            block(&ledger);
        }
        // A channel opened just now, expiring in 4 minutes, pays: the margin is 2 minutes.
        let channel = channel_id(&customer.public(), 1);
        let voucher = voucher_for(&customer, NET, channel, 0, 1_000);
        let paid = payments
            .accept(
                Hash::of(b"job"),
                &customer.public(),
                Some(&voucher),
                1_000,
                |_| Ok::<_, ()>(()),
            )
            .expect("a channel of the governed timeout is accepted")
            .expect("queued");
        assert!(paid.is_some());
        drop(payments);
        drop(ledger);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

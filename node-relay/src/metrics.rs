//! `GET /metrics`: the relay's figures in the Prometheus text format, for its operator.
//!
//! The metrics live in the registry Malachite's engine registers its own in (prometheus-client,
//! through `arc-malachitebft-metrics`), so one scrape returns the relay's figures under
//! `aqueduct_…` and, on a validator, the consensus engine's (heights, rounds, timeouts, …).
//! Counters are kept as things happen (jobs by outcome); gauges are read when scraped.

use crate::jobs::JobService;
use crate::ledger::Ledger;
use crate::network::SharedState;
use malachitebft_metrics::SharedRegistry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;

/// Counters under one label (`aqueduct_jobs_total{outcome=…}`, …).
pub type Labelled = Family<Vec<(String, String)>, Counter>;

/// How a job ended, for `aqueduct_jobs_total{outcome=…}`.
pub type JobOutcomes = Labelled;

/// Counts a finished job under `outcome` (`done`, `failed`, `not_charged`).
pub fn count_job(jobs: &JobOutcomes, outcome: &str) {
    jobs.get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
        .inc();
}

/// The relay's metrics and where their values come from.
pub struct Metrics {
    shared: Arc<SharedState>,
    ledger: Arc<Ledger>,
    jobs: Arc<JobService>,
    peers: Gauge,
    uptime_seconds: Gauge,
    ledger_height: Gauge,
    mempool: Gauge,
    jobs_queued: Gauge,
}

impl Metrics {
    /// Registers the relay's metrics (`job_outcomes` is the counter family its job service
    /// counts into) in the shared registry.
    pub fn register(
        shared: Arc<SharedState>,
        ledger: Arc<Ledger>,
        jobs: Arc<JobService>,
        job_outcomes: &JobOutcomes,
    ) -> Arc<Metrics> {
        let metrics = Metrics {
            shared,
            ledger,
            jobs,
            peers: Gauge::default(),
            uptime_seconds: Gauge::default(),
            ledger_height: Gauge::default(),
            mempool: Gauge::default(),
            jobs_queued: Gauge::default(),
        };
        SharedRegistry::global().with_prefix("aqueduct", |registry| {
            registry.register(
                "connected_peers",
                "Peers (browsers and relays) connected now",
                metrics.peers.clone(),
            );
            registry.register(
                "uptime_seconds",
                "Seconds since the relay started",
                metrics.uptime_seconds.clone(),
            );
            registry.register(
                "ledger_height",
                "Height of the latest block this relay holds",
                metrics.ledger_height.clone(),
            );
            registry.register(
                "mempool_transactions",
                "Transactions waiting for a block",
                metrics.mempool.clone(),
            );
            registry.register(
                "jobs_queued",
                "Jobs accepted and not started yet",
                metrics.jobs_queued.clone(),
            );
            registry.register(
                "jobs",
                "Jobs that ended, by outcome (done, failed, not_charged)",
                job_outcomes.clone(),
            );
            registry.register(
                "job_streams",
                "Job streams opened (each carries one job after another)",
                metrics.jobs.streams_counter(),
            );
            registry.register(
                "connections_refused",
                "Incoming connections refused, by the limit that refused them (memory, connections)",
                metrics.shared.refused_connections.clone(),
            );
        });
        Arc::new(metrics)
    }

    /// The text exposition, gauges read now.
    pub fn render(&self) -> String {
        let set = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.peers, u64::from(self.shared.connected_peers()));
        set(&self.uptime_seconds, self.shared.uptime_ms() / 1000);
        if let Ok(snapshot) = self.ledger.snapshot() {
            set(&self.ledger_height, snapshot.height());
        }
        set(&self.mempool, self.ledger.pending() as u64);
        set(&self.jobs_queued, self.jobs.queued() as u64);
        let mut out = String::new();
        malachitebft_metrics::export(&mut out);
        out
    }
}

//! The relay's HTTP server: the web app's files, `GET /api/info`, `GET /healthz` and
//! `GET /metrics` (Prometheus, see [`crate::metrics`]).
//!
//! The info endpoint is how a freshly loaded page finds the relay's WebRTC address. It is
//! public and cacheable by nobody (addresses change when the operator changes ports).

use crate::metrics::Metrics;
use crate::network::SharedState;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use client_core::protocol::RelayInfo;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tower_http::cors::CorsLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<SharedState>,
    metrics: Arc<Metrics>,
    www: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = router(shared, metrics, www);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}

fn router(shared: Arc<SharedState>, metrics: Arc<Metrics>, www: PathBuf) -> Router {
    // Unknown paths get the app's index.html, so client-side routes survive a reload.
    let files = ServeDir::new(&www)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(ServeFile::new(www.join("index.html")));
    let api = Router::new()
        .route("/api/info", get(info))
        .route("/healthz", get(health))
        .layer(CorsLayer::permissive())
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(shared);
    let scrape = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    api.merge(scrape).fallback_service(files)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    // Reading the gauges touches the ledger's database: off the async runtime.
    let body = tokio::task::spawn_blocking(move || metrics.render())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn info(State(shared): State<Arc<SharedState>>) -> Json<RelayInfo> {
    Json(RelayInfo {
        peer_id: shared.peer_id.to_string(),
        webrtc: shared
            .webrtc_addrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
        version: client_core::VERSION.to_owned(),
        network_id: shared.network_id.clone(),
    })
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    peer_id: String,
    uptime_ms: u64,
    connected_peers: u32,
}

async fn health(State(shared): State<Arc<SharedState>>) -> impl IntoResponse {
    Json(Health {
        status: "ok",
        peer_id: shared.peer_id.to_string(),
        uptime_ms: shared.uptime_ms(),
        connected_peers: shared.connected_peers(),
    })
}

//! The HTTP server: `/metrics` (Prometheus text), `/health/live`,
//! `/health/ready` and `/health` (JSON summary). [`router`] returns these
//! routes; the service merges the query API and the dashboard
//! ([`crate::api`]) into the same server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Liveness and readiness flags.
    pub health: Arc<Health>,
    /// Renders the Prometheus exposition.
    pub metrics: PrometheusHandle,
    /// Read-side connection to the SQLite state (the outbox depth for
    /// `/health`); `None` when it could not be opened.
    pub reader: Option<Arc<Mutex<ingest::query::Reader>>>,
    /// Whether the outbox is in use (a store is configured).
    pub forwarding: bool,
    /// Authentication that `/metrics` requires (`http.metrics_require_token`); `None`:
    /// open. The health routes are always open.
    pub metrics_auth: Option<Arc<crate::api::auth::Auth>>,
}

/// The gateway's routes. Others extend it with `.merge(...)`.
pub fn router(state: AppState) -> Router {
    let metrics_route = crate::api::auth::protect(
        Router::new().route("/metrics", get(metrics)),
        state.metrics_auth.as_ref(),
    );
    Router::new()
        .merge(metrics_route)
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        // The exporter's series, then the active alerts' `ALERTS` series (see
        // `alerts::prom`: they leave as soon as an alert resolves).
        s.metrics.render() + &crate::alerts::prom::render(),
    )
        .into_response()
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(s): State<AppState>) -> Response {
    match s.health.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn health(State(s): State<AppState>) -> Response {
    let mut snap = s.health.snapshot();
    if s.forwarding
        && let Some(reader) = s.reader.clone()
    {
        let depth = tokio::task::spawn_blocking(move || {
            reader
                .lock()
                .map_err(|_| "reader lock poisoned".to_owned())
                .and_then(|r| r.outbox_depth().map_err(|e| e.to_string()))
        })
        .await;
        if let Ok(Ok(d)) = depth {
            snap.outbox_entries = Some(d.entries);
            snap.outbox_bytes = Some(d.bytes);
        }
    }
    let code = if snap.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(snap)).into_response()
}

/// Binds `addr` and serves `app` until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "HTTP server listening (/metrics, /health)");
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

//! `gateway serve`: a query-only node for an operations centre. It consumes nothing from
//! MQTT and keeps no hot tier: the dashboard, the query API and the public AQI page
//! answer from the store (`crate::api::store`), which holds every gateway's readings and
//! device state, behind the same HTTP authentication as `gateway run`.
//!
//! Routes: the API and dashboard (`crate::api`), `/metrics`, `/health/live`,
//! `/health/ready` (200 while the store answers queries, else 503 with the reason), and
//! `/health` (the same as JSON, with the store's URL without credentials).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::api::store::StoreSource;
use crate::config::Config;
use crate::{http, telemetry};

#[derive(Clone)]
struct ServeState {
    store: StoreSource,
    metrics: PrometheusHandle,
}

/// Serves until SIGINT/SIGTERM (or `stop`).
pub async fn run(cfg: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let resolved = cfg.resolve()?;
    let Some(query) = cfg.store_query() else {
        anyhow::bail!(
            "store.url: `gateway serve` answers from the store; set --store (GATEWAY_STORE) or [store] url"
        );
    };
    let metrics = telemetry::metrics_handle(None)?;
    telemetry::spawn_upkeep(metrics.clone());
    let store = StoreSource::new(query)?;
    // The URL without its user info: the credentials go in a header, never in a log.
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.url(),
        http = %resolved.http,
        "starting a query-only node (no MQTT, no hot tier)"
    );
    {
        let probe = store.clone();
        match tokio::task::spawn_blocking(move || probe.ready()).await? {
            Ok(()) => tracing::info!("the store answers queries"),
            // Not fatal: the store may start after this node; /health/ready says so.
            Err(why) => tracing::warn!(reason = %why, "the store does not answer yet"),
        }
    }
    let auth = crate::service::api_auth(&cfg, &resolved);
    let metrics_auth = auth.clone().filter(|_| cfg.http.metrics_require_token);
    let state = ServeState {
        store: store.clone(),
        metrics,
    };
    let app = Router::new()
        .merge(crate::api::auth::protect(
            Router::new().route("/metrics", get(metrics_text)),
            metrics_auth.as_ref(),
        ))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/health", get(health))
        .with_state(state)
        .merge(crate::api::router_with_auth(
            crate::api::ApiConfig {
                read_threads: cfg.http.api_read_threads,
                read_queue: cfg.http.api_read_queue,
                device_kinds: cfg.ingest.device_kinds.clone().into(),
                public_cache_s: cfg.public.http_enabled.then_some(cfg.public.cache_s),
                ..crate::api::ApiConfig::store_only(store)
            },
            auth,
        )?);
    let http_stop = CancellationToken::new();
    let task = http::serve(resolved.http, app, http_stop.clone()).await?;
    crate::service::first_signal(&mut crate::service::sigterm(), &stop).await;
    http_stop.cancel();
    let _ = task.await;
    tracing::info!("query-only node stopped");
    Ok(())
}

async fn metrics_text(State(s): State<ServeState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// `/health`: a JSON summary, like `gateway run`'s: the role, the store, whether it answers.
async fn health(State(s): State<ServeState>) -> Response {
    let store = s.store.clone();
    let url = store.url().to_owned();
    let answer = tokio::task::spawn_blocking(move || store.ready())
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let code = if answer.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "role": "query-only",
        "ready": answer.is_ok(),
        "store": url,
        "not_ready_reason": answer.err(),
    });
    (code, axum::Json(body)).into_response()
}

async fn ready(State(s): State<ServeState>) -> Response {
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store does not answer: {why}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

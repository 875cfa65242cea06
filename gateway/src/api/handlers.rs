//! The HTTP shell of the query API: axum handlers that check parameters, run the query on
//! a read-only connection in the blocking pool, and return JSON. Each carries the
//! OpenAPI description of its endpoint.

use super::error::{ApiError, ErrorBody};
use super::model::*;
use super::params::*;
use super::{ApiState, queries};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use std::sync::Arc;
use std::time::Instant;

pub use ingest::message::now_ns;

/// Turns serde's complaint about the query string into a 400 that names the parameter.
pub fn checked<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(p)| p).map_err(|e| {
        ApiError::bad(
            e.body_text()
                .replace("Failed to deserialize query string: ", ""),
        )
    })
}

/// Devices and their health.
#[utoipa::path(get, path = "/api/devices", tag = "query", params(DevicesParams),
    responses((status = 200, body = DevicesResponse), (status = 400, body = ErrorBody)))]
pub async fn devices(
    State(s): State<ApiState>,
    q: Result<Query<DevicesParams>, QueryRejection>,
) -> Result<Json<DevicesResponse>, ApiError> {
    let p = checked(q)?;
    let stale = s.config.stale_after;
    let kinds = s.config.device_kinds.clone();
    let now = now_ns();
    let (p2, kinds2) = (p.clone(), kinds.clone());
    Ok(Json(
        s.answer(
            move |c| queries::devices(c, &p, now, stale, &kinds),
            move |st| st.devices(&p2, now, stale, &kinds2),
        )
        .await?,
    ))
}

/// Downsampled series of (device, metric) pairs.
#[utoipa::path(get, path = "/api/series", tag = "query", params(SeriesParams),
    responses((status = 200, body = SeriesResponse), (status = 400, body = ErrorBody)))]
pub async fn series(
    State(s): State<ApiState>,
    q: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let req = checked(q)?.parse(now_ns())?;
    let req2 = req.clone();
    Ok(Json(
        s.answer(
            move |c| queries::series(c, &req),
            move |st| st.series(&req2),
        )
        .await?,
    ))
}

/// Latest values per district and kind.
#[utoipa::path(get, path = "/api/latest", tag = "query", params(LatestParams),
    responses((status = 200, body = LatestResponse), (status = 400, body = ErrorBody)))]
pub async fn latest(
    State(s): State<ApiState>,
    q: Result<Query<LatestParams>, QueryRejection>,
) -> Result<Json<LatestResponse>, ApiError> {
    let p = checked(q)?;
    let now = now_ns();
    let kinds = s.config.device_kinds.clone();
    let (p2, kinds2) = (p.clone(), kinds.clone());
    Ok(Json(
        s.answer(
            move |c| queries::latest(c, &p, now, &kinds),
            move |st| st.latest(&p2, now, &kinds2),
        )
        .await?,
    ))
}

/// VN_AQI (hourly and daily) and US AQI of every station.
#[utoipa::path(get, path = "/api/aqi", tag = "query", params(AqiParams),
    responses((status = 200, body = AqiResponse), (status = 400, body = ErrorBody)))]
pub async fn aqi(
    State(s): State<ApiState>,
    q: Result<Query<AqiParams>, QueryRejection>,
) -> Result<Json<AqiResponse>, ApiError> {
    let p = checked(q)?;
    // Every station's index reads 24 hours of its particulates: the live answer (no `at`)
    // is shared by all dashboards for a short while.
    let key = (p.at.is_none()).then(|| format!("{:?}/{:?}", p.district, p.device));
    if let Some(key) = &key
        && let Some(hit) = s.aqi_cache.get(key, s.config.aqi_cache_ttl)
    {
        return Ok(Json(AqiResponse::clone(&hit)));
    }
    let now = now_ns();
    let fresh = Arc::new(aqi_answer(&s, p, now).await?);
    if let Some(key) = key {
        s.aqi_cache.put(key, fresh.clone(), Instant::now());
    }
    Ok(Json(AqiResponse::clone(&fresh)))
}

/// The AQI of `p` at `now` from the query source (without the answer cache).
pub async fn aqi_answer(s: &ApiState, p: AqiParams, now: i64) -> Result<AqiResponse, ApiError> {
    let hours = s.hour_cache.clone();
    let p2 = p.clone();
    s.answer(
        move |c| queries::aqi(c, &p, now, &hours),
        move |st| st.aqi(&p2, now),
    )
    .await
}

/// Dead letters, ingest rate, outbox depth and lag.
#[utoipa::path(get, path = "/api/stats", tag = "query", params(StatsParams),
    responses((status = 200, body = StatsResponse), (status = 400, body = ErrorBody)))]
pub async fn stats(
    State(s): State<ApiState>,
    q: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<StatsResponse>, ApiError> {
    let p = checked(q)?;
    let stale = s.config.stale_after;
    let now = now_ns();
    let mut answer = match &s.store {
        None => s
            .local(move |c| queries::stats(c, &p, now, stale))
            .await
            .unwrap_or_else(|| Err(ApiError::Unavailable("no hot tier".into())))?,
        Some(store) => {
            // Devices and the ingest rate from the store; dead letters and the outbox
            // are this gateway's own (none on a query-only node).
            let at_ns = super::params::parse_at(p.at.as_deref(), now)?;
            let mut merged = store.run(move |st| st.stats(&p, now, stale)).await?;
            if let Some(own) = s
                .local(move |c| queries::OwnStats::read(c, at_ns))
                .await
                .transpose()?
            {
                own.fill(&mut merged);
            }
            merged
        }
    };
    if let Some(log) = &s.config.log {
        answer.log_backlog_bytes = Some(log.backlog_bytes());
        answer.log_apply_lag_records = Some(log.durable().saturating_sub(log.applied()));
    }
    Ok(Json(answer))
}

/// The metric catalog (names, units, descriptions, valid ranges) and the device kinds.
#[utoipa::path(get, path = "/api/catalog", tag = "query",
    responses((status = 200, body = CatalogResponse)))]
pub async fn catalog(State(s): State<ApiState>) -> Json<CatalogResponse> {
    Json(CatalogResponse::current(&s.config.device_kinds))
}

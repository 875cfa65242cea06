//! `GET /api/alerts`: the alert history and the active alerts (`crate::alerts`), read
//! from the state database's `alerts` table: parameters, answer, query and handler, used
//! by the HTTP API and `gateway query alerts` alike.

use super::error::{ApiError, ErrorBody};
use super::handlers::now_ns;
use super::params::{check_slug, parse_instant};
use super::{ApiState, handlers};
use crate::alerts::store;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Rows returned without `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most rows one request returns.
pub const MAX_LIMIT: u32 = 1000;

/// `GET /api/alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, clap::Args)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsParams {
    /// Only alerts in this state: pending, firing, resolved, or active (pending and firing).
    #[arg(long)]
    pub state: Option<String>,
    /// Only alerts of this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only alerts with this district label.
    #[arg(long)]
    pub district: Option<String>,
    /// Only alerts with this device label.
    #[arg(long)]
    pub device: Option<String>,
    /// Only alerts that changed at or after this time (`-24h`, unix ms, RFC 3339).
    #[arg(long, allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Most alerts, newest first (default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<String>,
}

/// `GET /api/alerts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertsResponse {
    /// Alerts, newest first.
    pub alerts: Vec<Alert>,
}

/// One alert: an episode of one rule and label set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// History id.
    pub id: i64,
    /// Rule name (also the `alertname` label).
    pub rule: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// Labels: alertname, severity, district, device, kind, signal (as they apply).
    pub labels: BTreeMap<String, String>,
    /// Annotations: summary, description.
    pub annotations: BTreeMap<String, String>,
    /// Latest value seen.
    pub value: Option<f64>,
    /// When the condition started to hold, unix ms.
    pub started_ms: i64,
    /// When it fired, unix ms.
    pub fired_ms: Option<i64>,
    /// When it resolved, unix ms.
    pub resolved_ms: Option<i64>,
    /// Last change, unix ms.
    pub updated_ms: i64,
    /// Last notification, unix ms.
    pub last_notified_ms: Option<i64>,
    /// Notifications sent to the notifiers.
    pub notifications: i64,
    /// Webhook deliveries given up.
    pub notify_failures: i64,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// Stable hash of the labels.
    pub fingerprint: String,
}

fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

/// Checks the parameters into a history filter.
pub fn filter(p: &AlertsParams, now_ns: i64) -> Result<store::Filter, ApiError> {
    if let Some(s) = &p.state
        && !matches!(s.as_str(), "pending" | "firing" | "resolved" | "active")
    {
        return Err(ApiError::bad(format!(
            "state: `{s}` is not one of pending, firing, resolved, active"
        )));
    }
    for (what, v) in [
        ("rule", &p.rule),
        ("district", &p.district),
        ("device", &p.device),
    ] {
        if let Some(v) = v {
            check_slug(what, v)?;
        }
    }
    let since_ns = p
        .since
        .as_deref()
        .map(|s| parse_instant("since", s, now_ns))
        .transpose()?;
    let limit = match p.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(format!(
                    "limit: `{l}` is not a number from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    Ok(store::Filter {
        state: p.state.clone(),
        rule: p.rule.clone(),
        district: p.district.clone(),
        device: p.device.clone(),
        since_ns,
        limit,
    })
}

/// The alerts matching `p` on a (read-only) connection of the state database.
pub fn query(
    conn: &rusqlite::Connection,
    p: &AlertsParams,
    now_ns: i64,
) -> Result<AlertsResponse, ApiError> {
    let f = filter(p, now_ns)?;
    let rows = store::list(conn, &f)?;
    Ok(AlertsResponse {
        alerts: rows
            .into_iter()
            .map(|r| Alert {
                id: r.id,
                rule: r.rule,
                state: r.state,
                labels: r.labels,
                annotations: r.annotations,
                value: r.value,
                started_ms: ms(r.started_ns),
                fired_ms: r.fired_ns.map(ms),
                resolved_ms: r.resolved_ns.map(ms),
                updated_ms: ms(r.updated_ns),
                last_notified_ms: r.last_notified_ns.map(ms),
                notifications: r.notifications,
                notify_failures: r.notify_failures,
                last_error: r.last_error,
                fingerprint: r.fingerprint,
            })
            .collect(),
    })
}

/// Active alerts and the alert history.
#[utoipa::path(get, path = "/api/alerts", tag = "query", params(AlertsParams),
    responses((status = 200, body = AlertsResponse), (status = 400, body = ErrorBody)))]
pub async fn alerts(
    State(s): State<ApiState>,
    q: Result<Query<AlertsParams>, QueryRejection>,
) -> Result<Json<AlertsResponse>, ApiError> {
    let p = handlers::checked(q)?;
    let now = now_ns();
    // Check the parameters before taking a query thread.
    filter(&p, now)?;
    // A query-only node evaluates no rules (a scaled-out city runs them in vmalert:
    // `gateway alerts export-vmalert`): its history is empty.
    match s.local(move |c| query(c.connection(), &p, now)).await {
        Some(answer) => Ok(Json(answer?)),
        None => Ok(Json(AlertsResponse { alerts: Vec::new() })),
    }
}

//! The OpenAPI 3.1 document of the query API, generated from the handlers' annotations
//! and served at [`super::OPENAPI_PATH`].

use super::alerts::{self, Alert, AlertsResponse};
use super::error::ErrorBody;
use super::handlers;
use super::model::*;
use super::params::Agg;
use utoipa::OpenApi;

/// The document's root.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "City telemetry gateway: query API",
        description = "Read-only queries over the gateway's hot tier. Times are unix milliseconds \
                       in responses; parameters accept `now`, `-24h`, unix milliseconds or RFC 3339. \
                       A bad parameter gets a 400 with `{\"error\": \"...\"}` saying what is wrong."
    ),
    paths(
        handlers::devices, handlers::series, handlers::latest, handlers::aqi, handlers::stats,
        handlers::catalog,
        alerts::alerts
    ),
    components(schemas(
        ErrorBody, Agg, DevicesResponse, Device, SeriesResponse, Series, LatestResponse,
        LatestGroup, MetricSummary, DeviceLatest, Reading, AqiResponse, StationAqi, AqiValue,
        StatsResponse, ReasonCount, CatalogResponse, CatalogMetric,
        AlertsResponse, Alert
    )),
    tags((name = "query", description = "Hot-tier queries"))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

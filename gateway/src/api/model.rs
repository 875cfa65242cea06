//! The JSON bodies the query API returns (and `gateway query --url` reads back). Times are
//! unix milliseconds (`*_ms`), concentrations ug/m3, durations seconds.

use crate::aqi;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET /api/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevicesResponse {
    /// When the staleness was evaluated.
    pub at_ms: i64,
    /// Default staleness threshold for devices whose meta gives no reporting period.
    pub default_stale_after_s: u64,
    /// Matching devices, by id.
    pub devices: Vec<Device>,
}

/// One device's state as the ingest side records it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// Device id (slug).
    pub device: String,
    /// Kind: airquality, weather, noise, wifi (or what the decoder recorded).
    pub kind: Option<String>,
    /// District slug.
    pub district: Option<String>,
    /// Wire format of its messages (senml, tasmota, ...).
    pub format: Option<String>,
    /// `online` / `offline` from the retained status topic and last will; `unknown` if never seen.
    pub status: String,
    /// First message, unix ms.
    pub first_seen_ms: Option<i64>,
    /// Latest message, unix ms.
    pub last_seen_ms: Option<i64>,
    /// Latest message sequence number.
    pub last_seq: Option<i64>,
    /// Messages missing from the sequence numbers.
    pub gaps: i64,
    /// Messages received more than once.
    pub duplicates: i64,
    /// Readings the device dropped from its offline backlog (as it reports).
    pub dropped_readings: i64,
    /// Firmware version from the device's meta.
    pub firmware: Option<String>,
    /// Latitude from the meta.
    pub lat: Option<f64>,
    /// Longitude from the meta.
    pub lon: Option<f64>,
    /// Reporting period from the meta, seconds.
    pub period_s: Option<u64>,
    /// Threshold applied to this device: 3 reporting periods, or the default.
    pub stale_after_s: u64,
    /// No message for longer than `stale_after_s` (or never).
    pub stale: bool,
}

/// `GET /api/series`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeriesResponse {
    /// Range start, inclusive.
    pub from_ms: i64,
    /// Range end, exclusive.
    pub to_ms: i64,
    /// Bucket width.
    pub step_ms: i64,
    /// Aggregate applied per bucket.
    pub agg: String,
    /// One entry per requested pair, in request order.
    pub series: Vec<Series>,
}

/// One downsampled series, in columns: `t[i]` is the start of bucket i, `v[i]` its
/// aggregate. Buckets without readings are left out (a gap, not a zero).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Series {
    /// Device id.
    pub device: String,
    /// Metric name.
    pub metric: String,
    /// Unit from the catalog, when the metric is in it.
    pub unit: Option<String>,
    /// Bucket starts, unix ms (multiples of the step).
    pub t: Vec<i64>,
    /// Bucket aggregates.
    pub v: Vec<f64>,
}

/// `GET /api/latest`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LatestResponse {
    /// Evaluation time.
    pub at_ms: i64,
    /// Readings older than this were ignored.
    pub max_age_s: u64,
    /// One group per (district, kind), sorted.
    pub groups: Vec<LatestGroup>,
    /// Each device's latest values (only with `detail=true`).
    pub devices: Option<Vec<DeviceLatest>>,
}

/// Latest values of one district's devices of one kind.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LatestGroup {
    /// District slug (`unknown` when the device state has none).
    pub district: String,
    /// Device kind (`unknown` when the device state has none).
    pub kind: String,
    /// Devices registered in the group.
    pub devices: u64,
    /// Devices with at least one reading within `max_age_s`.
    pub reporting: u64,
    /// Devices whose status is online.
    pub online: u64,
    /// Summary per metric of the devices' latest readings.
    pub metrics: Vec<MetricSummary>,
}

/// Summary of the latest readings of one metric over a group of devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricSummary {
    /// Metric name.
    pub metric: String,
    /// Unit, when in the catalog.
    pub unit: Option<String>,
    /// Devices contributing.
    pub count: u64,
    /// Mean of their latest values.
    pub mean: f64,
    /// Smallest latest value.
    pub min: f64,
    /// Largest latest value.
    pub max: f64,
    /// Timestamp of the newest of them.
    pub newest_ms: i64,
}

/// One device's latest value per metric.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceLatest {
    /// Device id.
    pub device: String,
    /// District slug.
    pub district: String,
    /// Kind.
    pub kind: String,
    /// Metric name -> latest reading.
    pub values: BTreeMap<String, Reading>,
}

/// One reading.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Reading {
    /// Timestamp, unix ms.
    pub t_ms: i64,
    /// Value.
    pub v: f64,
}

/// `GET /api/aqi`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AqiResponse {
    /// Evaluation time: hour 1 of the NowCast is the last complete clock hour before it.
    pub at_ms: i64,
    /// One entry per station with PM2.5 or PM10 readings, by device id.
    pub stations: Vec<StationAqi>,
}

/// The indices of one station.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StationAqi {
    /// Device id.
    pub device: String,
    /// District slug.
    pub district: Option<String>,
    /// Device kind (`airquality`, ...), from the topic or the meta.
    #[serde(default)]
    pub kind: Option<String>,
    /// Latitude from the meta.
    pub lat: Option<f64>,
    /// Longitude from the meta.
    pub lon: Option<f64>,
    /// PM2.5 12-hour NowCast, ug/m3.
    pub pm25_nowcast: Option<f64>,
    /// PM10 12-hour NowCast, ug/m3.
    pub pm10_nowcast: Option<f64>,
    /// PM2.5 24-hour mean, ug/m3.
    pub pm25_24h: Option<f64>,
    /// PM10 24-hour mean, ug/m3.
    pub pm10_24h: Option<f64>,
    /// Hourly VN_AQI (Decision 1459/QD-TCMT), from the NowCasts.
    pub vn_aqi_hourly: Option<AqiValue>,
    /// Daily VN_AQI, from the 24-hour means (needs 18 of 24 hours).
    pub vn_aqi_daily: Option<AqiValue>,
    /// US EPA AQI (2024 breakpoints) from the NowCasts.
    pub us_aqi_nowcast: Option<AqiValue>,
    /// US EPA AQI from the 24-hour means.
    pub us_aqi_daily: Option<AqiValue>,
}

/// An index value with its band.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AqiValue {
    /// Index, 0-500.
    pub value: u16,
    /// Pollutant with the highest sub-index: pm25 or pm10.
    pub dominant: String,
    /// Band key: good, moderate, poor, bad, very_bad, hazardous.
    pub category: String,
    /// Band name in English (EPA wording).
    pub category_en: String,
    /// Band name in Vietnamese (Decision 1459 wording).
    pub category_vi: String,
    /// Band colour, `#rrggbb`.
    pub colour: String,
    /// Band colour as [r, g, b].
    pub rgb: [u8; 3],
}

impl From<aqi::Index> for AqiValue {
    fn from(i: aqi::Index) -> Self {
        let (r, g, b) = i.category.rgb;
        Self {
            value: i.value,
            dominant: i.dominant.metric().to_owned(),
            category: i.category.key.to_owned(),
            category_en: i.category.name_en.to_owned(),
            category_vi: i.category.name_vi.to_owned(),
            colour: i.category.hex.to_owned(),
            rgb: [r, g, b],
        }
    }
}

/// `GET /api/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    /// Evaluation time.
    pub at_ms: i64,
    /// Dead letters held, by reason (most first).
    pub dead_letters: Vec<ReasonCount>,
    /// Dead letters received in the last hour.
    pub dead_letters_last_hour: u64,
    /// Readings timestamped in the last minute, per second.
    pub ingest_rate_per_s: f64,
    /// Outbox entries waiting for the external store.
    pub outbox_entries: u64,
    /// Readings in those entries.
    pub outbox_readings: u64,
    /// Bytes of line protocol in those entries.
    pub outbox_bytes: u64,
    /// Store lag: age of the oldest outbox entry, seconds (0 when empty).
    pub store_lag_s: f64,
    /// Age of the newest message of any device, seconds (how far behind the hot tier is).
    pub newest_message_age_s: Option<f64>,
    /// Devices known.
    pub devices: u64,
    /// Devices online.
    pub devices_online: u64,
    /// Devices stale (see `/api/devices`).
    pub devices_stale: u64,
    /// Bytes in the message log not yet applied to the hot tier (live gateway only): a
    /// number that keeps growing means the applier cannot keep up or is blocked.
    pub log_backlog_bytes: Option<u64>,
    /// Log records durable but not yet applied (live gateway only).
    pub log_apply_lag_records: Option<u64>,
}

/// A count for one reason.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReasonCount {
    /// Reason (kebab-case, from the ingest side).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// `GET /api/catalog`: every metric the gateway accepts (`schemas::catalog`), and the
/// device kinds it knows. The dashboard names and labels its series from it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogResponse {
    /// Every metric, in catalog order.
    pub metrics: Vec<CatalogMetric>,
    /// Device kinds (the `{kind}` level of device topics): airquality, weather, ...
    pub kinds: Vec<String>,
}

/// One metric of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogMetric {
    /// Canonical name: the SenML record name and the series' metric.
    pub name: String,
    /// SenML unit symbol (`ug/m3`, `Cel`, `%RH`, ...).
    pub unit: String,
    /// One line for humans.
    pub description: String,
    /// `gauge` (a value at a point in time) or `counter` (monotonic, may wrap or reset).
    pub kind: String,
    /// Smallest valid value (inclusive); the gateway rejects readings outside the range.
    pub min: f64,
    /// Largest valid value (inclusive).
    pub max: f64,
}

impl CatalogResponse {
    /// The compiled-in catalog, with `configured` device kinds after the built-in ones.
    pub fn current(configured: &[String]) -> Self {
        use schemas::catalog::{METRICS, MetricKind};
        Self {
            metrics: METRICS
                .iter()
                .map(|m| CatalogMetric {
                    name: m.name.to_owned(),
                    unit: m.unit.to_owned(),
                    description: m.description.to_owned(),
                    kind: match m.kind {
                        MetricKind::Gauge => "gauge",
                        MetricKind::Counter => "counter",
                    }
                    .to_owned(),
                    min: m.min,
                    max: m.max,
                })
                .collect(),
            kinds: schemas::topic::DeviceKind::ALL
                .iter()
                .map(|k| k.as_str().to_owned())
                .chain(configured.iter().cloned())
                .collect(),
        }
    }
}

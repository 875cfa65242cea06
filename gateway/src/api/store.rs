//! The query API answered from the store (VictoriaMetrics' Prometheus-compatible query
//! API) instead of the local hot tier: the same parameters, checks and JSON model types as
//! [`super::queries`], whose helpers (device rows, status and staleness rules, the
//! answers' assembly) it reuses. Every gateway of a share group writes its readings and
//! what it observes of each device (`ingest/README.md`, "Device state in the store"), so
//! the store holds the whole fleet's view, merged here per device.
//!
//! Every request is a `POST` form with `nocache=1` (no cache, and no shift of an instant
//! query's time by `-search.latencyOffset`); instant times are unix seconds with ms
//! precision. Quantities are aggregated by device in the store, so a question costs a
//! fixed number of requests whatever the number of devices. Below, `R` is the readings
//! selector `{__name__=~".+_value",__name__!~"gateway_device_.+",format!=""}` (readings
//! carry a `format` label; the public feed's `aqi_value` does not), `D`, `H`, `N` the
//! device, health and recent windows of [`StoreQueryConfig`], and each part of a
//! `union(...)` is told apart by a `q_` label (`label_set`).
//!
//! Device rows (`/api/devices`, and the device lists of the others), as of `at`:
//!
//! ```text
//! /api/v1/series  {__name__="gateway_device_readings"}, then _status_online, _meta_updated
//!                 over (at - D, at]: which devices, with district, kind, format (index only)
//! union(max by (device)(tlast_over_time(gateway_device_readings[N])),
//!       last_over_time(gateway_device_seq[N]), tlast_over_time(gateway_device_seq[N]))
//!       -- again over D with {device=~"a|b|..."} for the devices silent in N
//! union(max by (device)(max_over_time(gateway_device_seq[H])),
//!       min by (device)(min_over_time(gateway_device_seq[H])),
//!       sum by (device)(distinct_over_time(gateway_device_seq[H])),
//!       sum by (device)(count_over_time(gateway_device_seq[H])),
//!       sum by (device)(sum_over_time({__name__="droppedReadings_value",format!=""}[H])))
//! union(min by (device)(min_over_time(gateway_device_first_seen_ms[D])),
//!       tlast_over_time(gateway_device_meta_updated[D]),
//!       last_over_time(X[D]), tlast_over_time(X[D])
//!         for X in gateway_device_status_online, gateway_device_meta_{period_s,lat,lon})
//! ```
//!
//! `/api/series`, with `S = {__name__="<metric>_value",device="<d>",format!=""}[<step>ms]`
//! and one `union` of all requested pairs, by `/api/v1/query_range` at each bucket's end
//! minus 1 ms (the window `(t - step, t]` is the bucket `[g * step, (g + 1) * step)`); the
//! first and last buckets, when the range cuts them, by instant queries with the window cut
//! to the range:
//!
//! ```text
//! avg    sum(sum_over_time(S)) / sum(count_over_time(S))
//! min    min(min_over_time(S))          max    max(max_over_time(S))
//! count  sum(count_over_time(S))        last   last_over_time(S), tlast_over_time(S)
//! ```
//!
//! `/api/latest`, at `at`, with the device rows:
//!
//! ```text
//! union(last_over_time(R[max_age]) keep_metric_names,
//!       tlast_over_time(R[max_age]) keep_metric_names)
//! ```
//!
//! `/api/aqi`, by `/api/v1/query_range` with step 1 h at the ends (minus 1 ms) of the 24
//! clock hours before `at`'s hour, then [`crate::aqi::station_aqi`] over `sum / count`:
//!
//! ```text
//! union(sum by (device, district, kind, __name__)
//!         (sum_over_time({__name__=~"pm25_value|pm10_value",format!=""}[1h]) keep_metric_names),
//!       sum by (device, district, kind, __name__)
//!         (count_over_time({__name__=~"pm25_value|pm10_value",format!=""}[1h]) keep_metric_names))
//! ```
//!
//! `/api/stats`: `sum(count_over_time(R[60s]))` at `at` minus 1 ms, and the device rows; dead
//! letters and the outbox are each gateway's own, not in the store: reported as zero.
//!
//! Merging rules (per device, whichever gateway wrote what): last seen = the newest
//! `gateway_device_readings` sample; first seen = the smallest `gateway_device_first_seen_ms`;
//! gaps over `H` = `max - min + 1 - distinct` of the sequence numbers (at least 0);
//! duplicates = `count - distinct`; last sequence number, status and each meta field: the
//! newest sample (firmware: the `firmware` label of the newest `gateway_device_meta_updated`
//! sample). A device whose series differ in labels (one gateway knew its district, another
//! not) has its distinct counts summed over those series.
//!
//! VictoriaMetrics quirks handled here (1.79, Debian's): `/api/v1/query_range` replaces
//! points within `-search.latencyOffset` (30 s by default) of its clock by the previous
//! point when the step is under `-search.maxStepForPointsAdjustment` (1 min), even with
//! `nocache=1`; so a range ending less than [`RECENT_GUARD_MS`] ago is evaluated that much
//! earlier with `offset -<shift>` (a negative offset) and its times shifted back. Rollups
//! that keep a value's meaning (`last_over_time`, `min_over_time`, ...) keep `__name__`,
//! others (`tlast_over_time`, `sum_over_time`, `count_over_time`) drop it; the
//! `keep_metric_names` modifier works (1.79) and is used where the name is needed; parts
//! paired by labels are compared without it. `/api/v1/series` returns at
//! most `-search.maxSeries` (30000) series per request, so devices are listed one series
//! name at a time; a query text longer than `-search.maxQueryLen` (16 KiB) is refused, so
//! long unions and device lists are split into several requests.

use super::error::ApiError;
use super::model::*;
use super::params::{self, Agg, SeriesRequest};
use super::queries::{self, DeviceRow, META_FIRMWARE, META_LAT, META_LON, META_PERIOD, ms};
use crate::aqi;
use crate::config::url_for_logs;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const NS_PER_MS: i64 = 1_000_000;
const MS_PER_HOUR: i64 = 3_600_000;

/// Ranges of `/api/v1/query_range` never end later than this before the store's clock
/// (see the module comment): an hour covers any sane `-search.latencyOffset` and clock skew.
pub const RECENT_GUARD_MS: i64 = 3_600_000;
/// Longest query text sent in one request (`-search.maxQueryLen` is 16 KiB by default).
const MAX_QUERY_LEN: usize = 12_000;
/// The label that tells the parts of a `union` apart.
const TAG: &str = "q_";
/// Series whose presence lists a device (the others are written with one of these).
const LISTED: [&str; 3] = [
    "gateway_device_readings",
    "gateway_device_status_online",
    "gateway_device_meta_updated",
];
/// Every reading series (and nothing else: device-state series and the public feed's
/// `aqi_value` have no `format` label or another name).
const READINGS: &str = r#"{__name__=~".+_value",__name__!~"gateway_device_.+",format!=""}"#;

/// Where the store is and the windows the device state is read over.
#[derive(Debug, Clone)]
pub struct StoreQueryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8428` (a path prefix is kept; user info in the URL
    /// is used as credentials when `username` is not given).
    pub url: String,
    /// Basic auth user (`-httpAuth.username` or a proxy). Default: none.
    pub username: Option<String>,
    /// Basic auth password. Default: none.
    pub password: Option<String>,
    /// Bound on each request (default 10 s).
    pub timeout: Duration,
    /// Window of the device list, first seen, status, meta, and of last seen for devices
    /// silent in `recent_window` (default 30 days).
    pub device_window: Duration,
    /// Window of gaps, duplicates and dropped readings (default 24 h).
    pub health_window: Duration,
    /// Window of the last-seen fast path (default 15 min).
    pub recent_window: Duration,
}

impl StoreQueryConfig {
    /// Defaults for a store URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
            device_window: Duration::from_secs(30 * 24 * 3600),
            health_window: Duration::from_secs(24 * 3600),
            recent_window: Duration::from_secs(15 * 60),
        }
    }
}

/// The query API over the store. Its methods block (HTTP requests): run them on a blocking
/// thread. Cloning shares the connection pool.
#[derive(Clone)]
pub struct StoreSource {
    /// Base URL without credentials or trailing slash: what messages name.
    base: String,
    username: Option<String>,
    /// `Authorization` header value; never printed.
    authorization: Option<String>,
    agent: ureq::Agent,
    device_window_ms: i64,
    health_window_ms: i64,
    recent_window_ms: i64,
    /// The device rows last read: a dashboard's refresh asks devices, latest values,
    /// stats and the AQI at once, and each needs them (reused for 2 s).
    rows: std::sync::Arc<Reused<Vec<DeviceRow>>>,
    /// The health counts last read: they scan every sequence number of the health window
    /// (most of a device question's cost: about 0.15 s for 1,000 devices over 24 h on two
    /// cores) and change slowly (reused for 30 s). Last seen, status and meta are read
    /// with every set of rows.
    health: std::sync::Arc<Reused<ByTag>>,
}

/// Query parts by tag, each a list of (labels, value).
type ByTag = HashMap<String, Vec<(Labels, f64)>>;

/// Health counts by tag (max, min, distinct, count, dropped), each by device.
type Health = std::sync::Arc<ByTag>;

/// The last answer to a question asked as of a time: reused while it is younger than
/// `window_ms` and was asked as of a time at most `window_ms` from the new question's.
#[derive(Debug)]
struct Reused<T> {
    window_ms: i64,
    last: std::sync::Mutex<Option<(std::time::Instant, i64, std::sync::Arc<T>)>>,
}

impl<T> Reused<T> {
    fn new(window_ms: i64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            window_ms,
            last: std::sync::Mutex::new(None),
        })
    }

    /// The answer as of `at_ms`: the last one when it may stand, else `read`'s.
    fn get(
        &self,
        at_ms: i64,
        read: impl FnOnce() -> Result<T, ApiError>,
    ) -> Result<std::sync::Arc<T>, ApiError> {
        let window = std::time::Duration::from_millis(self.window_ms.unsigned_abs());
        if let Some((read_at, of, answer)) = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && read_at.elapsed() < window
            && (of - at_ms).abs() <= self.window_ms
        {
            return Ok(answer.clone());
        }
        let answer = std::sync::Arc::new(read()?);
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), at_ms, answer.clone()));
        Ok(answer)
    }
}

impl std::fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSource")
            .field("url", &self.base)
            .field("username", &self.username)
            .field("device_window_ms", &self.device_window_ms)
            .field("health_window_ms", &self.health_window_ms)
            .field("recent_window_ms", &self.recent_window_ms)
            .finish_non_exhaustive()
    }
}

type Labels = BTreeMap<String, String>;

/// A query answer's envelope.
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct QueryData<T> {
    result: Vec<T>,
}

#[derive(Deserialize)]
struct InstantSample {
    metric: Labels,
    value: (f64, String),
}

#[derive(Deserialize)]
struct RangeSeries {
    metric: Labels,
    values: Vec<(f64, String)>,
}

/// One answer series: its labels (without the union tag), its tag, its points (ms, value).
struct Part {
    tag: String,
    labels: Labels,
    points: Vec<(i64, f64)>,
}

fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Unix seconds (an answer's timestamp or a `tlast_over_time` value) as ms.
fn secs_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// Unix ms as the API's seconds with ms precision.
fn ms_to_secs(t: i64) -> String {
    let (s, m) = (t.div_euclid(1000), t.rem_euclid(1000));
    format!("{s}.{m:03}")
}

/// A MetricsQL string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A regular expression (RE2) matching exactly `s`.
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `expr` with the union tag `tag`.
fn tagged(expr: &str, tag: &str) -> String {
    format!("label_set({expr}, {}, {})", quote(TAG), quote(tag))
}

/// Parts as few `union(...)` queries as fit [`MAX_QUERY_LEN`].
fn unions(parts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut len = 0;
    for p in parts {
        if !cur.is_empty() && len + p.len() + 2 > MAX_QUERY_LEN {
            out.push(format!("union({})", cur.join(", ")));
            cur.clear();
            len = 0;
        }
        len += p.len() + 2;
        cur.push(p);
    }
    if !cur.is_empty() {
        out.push(format!("union({})", cur.join(", ")));
    }
    out
}

fn parse_value(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// For each device, the value of its newest sample among the series of `values`, with
/// the times in `times` (the same series, by labels), and that series' labels.
fn newest_by_device(
    values: &[(Labels, f64)],
    times: &[(Labels, f64)],
) -> HashMap<String, (i64, f64, Labels)> {
    let values: HashMap<&Labels, f64> = values.iter().map(|(l, v)| (l, *v)).collect();
    let mut out: HashMap<String, (i64, f64, Labels)> = HashMap::new();
    for (labels, t) in times {
        let (Some(v), Some(device)) = (values.get(labels), labels.get("device")) else {
            continue;
        };
        let t = secs_to_ms(*t);
        let newer = out
            .get(device)
            .is_none_or(|(bt, _, bl)| t > *bt || (t == *bt && labels < bl));
        if newer {
            out.insert(device.clone(), (t, *v, labels.clone()));
        }
    }
    out
}

/// Parts of an instant answer by tag: (labels, value). Without `names`, the labels lose
/// `__name__` (which some rollups keep and others drop), so that the parts of one metric
/// pair by their other labels.
fn by_tag(parts: Vec<Part>, names: bool) -> HashMap<String, Vec<(Labels, f64)>> {
    let mut out: HashMap<String, Vec<(Labels, f64)>> = HashMap::new();
    for mut p in parts {
        if !names {
            p.labels.remove("__name__");
        }
        if let Some((_, v)) = p.points.first() {
            out.entry(p.tag).or_default().push((p.labels, *v));
        }
    }
    out
}

/// One tag's parts of [`by_tag`]'s answer.
fn tag_of<'a>(parts: &'a HashMap<String, Vec<(Labels, f64)>>, tag: &str) -> &'a [(Labels, f64)] {
    parts.get(tag).map_or(&[], Vec::as_slice)
}

/// What the store says of one device, merged over its series.
#[derive(Debug, Default)]
struct Merged {
    /// Some query found a sample of it as of the evaluation time (the series index is per
    /// day, so the listing alone may name a device first seen later that day).
    sampled: bool,
    district: Option<String>,
    kind: Option<String>,
    format: Option<String>,
    last_seen_ms: Option<i64>,
    /// Newest sequence number: (time ms, value).
    seq: Option<(i64, f64)>,
    seq_max: Option<f64>,
    seq_min: Option<f64>,
    seq_distinct: Option<f64>,
    seq_count: Option<f64>,
    dropped: Option<f64>,
    first_seen_ms: Option<f64>,
    status: Option<f64>,
    firmware: Option<String>,
    period: Option<f64>,
    lat: Option<f64>,
    lon: Option<f64>,
}

impl Merged {
    /// Fills the labels it lacks from a series' labels.
    fn labels(&mut self, l: &Labels) {
        let fill = |slot: &mut Option<String>, key: &str| {
            if slot.is_none() {
                *slot = l.get(key).filter(|v| !v.is_empty()).cloned();
            }
        };
        fill(&mut self.district, "district");
        fill(&mut self.kind, "kind");
        fill(&mut self.format, "format");
    }

    fn row(self, device: String) -> DeviceRow {
        let int = |v: f64| v.round() as i64;
        let distinct = self.seq_distinct.unwrap_or(0.0);
        let gaps = match (self.seq_max, self.seq_min) {
            (Some(max), Some(min)) => int(max - min + 1.0 - distinct).max(0),
            _ => 0,
        };
        let duplicates = self
            .seq_count
            .map_or(0, |count| int(count - distinct).max(0));
        let mut meta = serde_json::Map::new();
        if let Some(fw) = self.firmware {
            meta.insert(META_FIRMWARE[0].into(), fw.into());
        }
        if let Some(p) = self.period {
            // An integral period reads back as an integer (`meta_u64`), as from the JSON.
            let v = if p >= 0.0 && p.fract() == 0.0 && p < u64::MAX as f64 {
                serde_json::Value::from(p as u64)
            } else {
                serde_json::Value::from(p)
            };
            meta.insert(META_PERIOD[0].into(), v);
        }
        if let Some(lat) = self.lat {
            meta.insert(META_LAT[0].into(), lat.into());
        }
        if let Some(lon) = self.lon {
            meta.insert(META_LON[0].into(), lon.into());
        }
        DeviceRow {
            device,
            district: self.district,
            kind: self.kind,
            format: self.format,
            first_seen_ns: self.first_seen_ms.map(|t| int(t).saturating_mul(NS_PER_MS)),
            last_seen_ns: self.last_seen_ms.map(|t| t.saturating_mul(NS_PER_MS)),
            last_seq: self.seq.map(|(_, v)| int(v)),
            gaps,
            duplicates,
            dropped_readings: self.dropped.map_or(0, int),
            status: self
                .status
                .map(|v| if v > 0.5 { "online" } else { "offline" }.to_owned()),
            meta: if meta.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Object(meta)
            },
        }
    }
}

/// A row for a device known only from its readings.
fn bare_row(device: &str, labels: &Labels) -> DeviceRow {
    let mut m = Merged::default();
    m.labels(labels);
    m.row(device.to_owned())
}

impl StoreSource {
    /// A source for a store. Fails on a URL that is not `http(s)://host[:port][/prefix]`.
    pub fn new(config: StoreQueryConfig) -> anyhow::Result<Self> {
        use base64::Engine as _;
        let mut url = url::Url::parse(config.url.trim())
            .map_err(|e| anyhow::anyhow!("store URL `{}`: {e}", url_for_logs(&config.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            anyhow::bail!(
                "store URL `{}`: expected http://host:port or https://host:port",
                url_for_logs(&config.url)
            );
        }
        // The forwarder's credentials: the explicit ones, else the URL's user info, which
        // then leaves the URL (it goes in a header).
        let (username, password) = ingest::forward::basic_credentials(
            &url,
            config.username.as_deref(),
            config.password.as_deref(),
        )
        .unzip();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        let base = url.as_str().trim_end_matches('/').to_owned();
        let authorization = username.as_ref().map(|u| {
            let p = password.as_deref().unwrap_or("");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            // Statuses are checked here, so that errors quote the store's message.
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            base,
            username,
            authorization,
            agent,
            device_window_ms: dur_ms(config.device_window),
            health_window_ms: dur_ms(config.health_window),
            recent_window_ms: dur_ms(config.recent_window),
            rows: Reused::new(2_000),
            health: Reused::new(30_000),
        })
    }

    /// The store's base URL, without credentials.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Readiness: the store answers a query (with the credentials, if any).
    pub fn ready(&self) -> Result<(), String> {
        self.call("/api/v1/query", vec![("query", "1".into())])
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// POSTs a form to `path`; the answer's `data`.
    fn call(
        &self,
        path: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<serde_json::Value, ApiError> {
        let url = format!("{}{path}", self.base);
        form.push(("nocache", "1".into()));
        let mut req = self.agent.post(&url);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .map_err(|e| ApiError::StoreUnavailable(format!("{url}: {e}")))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            // Answers for tens of thousands of devices exceed ureq's 10 MB default.
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| ApiError::StoreUnavailable(format!("{url}: reading the answer: {e}")))?;
        let answer: Option<Answer> = serde_json::from_str(&body).ok();
        match answer {
            Some(a) if status.is_success() && a.status == "success" => Ok(a.data),
            Some(Answer {
                error: Some(e),
                status: s,
                ..
            }) => Err(ApiError::Store(format!("{url}: status {status}, {s}: {e}"))),
            _ => {
                let excerpt: String = body.chars().take(300).collect();
                Err(ApiError::Store(format!(
                    "{url}: status {status}: {}",
                    excerpt.trim()
                )))
            }
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        data: serde_json::Value,
    ) -> Result<T, ApiError> {
        serde_json::from_value(data).map_err(|e| {
            ApiError::Store(format!(
                "{}: unexpected {what} answer: {e}",
                self.base.as_str()
            ))
        })
    }

    /// An instant query at `t_ms`.
    fn instant(&self, query: &str, t_ms: i64) -> Result<Vec<Part>, ApiError> {
        let data = self.call(
            "/api/v1/query",
            vec![("query", query.to_owned()), ("time", ms_to_secs(t_ms))],
        )?;
        let d: QueryData<InstantSample> = self.decode("instant query", data)?;
        Ok(d.result
            .into_iter()
            .filter_map(|s| {
                let v = parse_value(&s.value.1)?;
                Some(part(s.metric, vec![(secs_to_ms(s.value.0), v)]))
            })
            .collect())
    }

    /// Instant queries of every union of `parts`.
    fn instant_parts(&self, parts: &[String], t_ms: i64) -> Result<Vec<Part>, ApiError> {
        let mut out = Vec::new();
        for q in unions(parts) {
            out.extend(self.instant(&q, t_ms)?);
        }
        Ok(out)
    }

    /// A range query evaluated at `start_ms`, `start_ms + step_ms`, ... up to `end_ms`.
    /// `parts` builds the query's parts for a negative offset (ms, 0 for none) that keeps
    /// the evaluation away from the store's clock (see the module comment); the answer's
    /// times are those of the request.
    fn range_parts(
        &self,
        parts: impl Fn(i64) -> Vec<String>,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Part>, ApiError> {
        let now_ms = ms(ingest::message::now_ns());
        let shift = (end_ms - (now_ms - RECENT_GUARD_MS)).max(0);
        let mut out = Vec::new();
        for q in unions(&parts(shift)) {
            let data = self.call(
                "/api/v1/query_range",
                vec![
                    ("query", q),
                    ("start", ms_to_secs(start_ms - shift)),
                    ("end", ms_to_secs(end_ms - shift)),
                    ("step", format!("{step_ms}ms")),
                ],
            )?;
            let d: QueryData<RangeSeries> = self.decode("range query", data)?;
            out.extend(d.result.into_iter().map(|s| {
                let points = s
                    .values
                    .iter()
                    .filter_map(|(t, v)| Some((secs_to_ms(*t) + shift, parse_value(v)?)))
                    .collect();
                part(s.metric, points)
            }));
        }
        Ok(out)
    }

    /// Label sets of the series matching `selector` with samples in the range (index only).
    fn list_series(
        &self,
        selector: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Labels>, ApiError> {
        let data = self.call(
            "/api/v1/series",
            vec![
                ("match[]", selector.to_owned()),
                ("start", ms_to_secs(start_ms)),
                ("end", ms_to_secs(end_ms)),
            ],
        )?;
        self.decode("series", data)
    }

    /// Every device of the store as of `at_ns`, merged over gateways and series, by id;
    /// the last read's when it is recent and as of a close enough time.
    fn rows(&self, at_ns: i64) -> Result<Vec<DeviceRow>, ApiError> {
        let at = ms(at_ns);
        Ok(self.rows.get(at, || self.read_rows(at))?.as_ref().clone())
    }

    /// The health counts by device over the health window `hw` ending at `at` (ms): the
    /// last read's when it is recent and as of a close enough time.
    fn health(&self, at: i64, hw: i64) -> Result<Health, ApiError> {
        self.health.get(at, || {
            let seq = format!("gateway_device_seq[{hw}ms]");
            Ok(by_tag(
                self.instant_parts(
                    &[
                        tagged(&format!("max by (device)(max_over_time({seq}))"), "max"),
                        tagged(&format!("min by (device)(min_over_time({seq}))"), "min"),
                        tagged(
                            &format!("sum by (device)(distinct_over_time({seq}))"),
                            "distinct",
                        ),
                        tagged(&format!("sum by (device)(count_over_time({seq}))"), "count"),
                        tagged(
                            &format!(
                                "sum by (device)(sum_over_time({{__name__=\"droppedReadings_value\",format!=\"\"}}[{hw}ms]))"
                            ),
                            "dropped",
                        ),
                    ],
                    at,
                )?,
                false,
            ))
        })
    }

    /// [`Self::rows`] from the store.
    fn read_rows(&self, at: i64) -> Result<Vec<DeviceRow>, ApiError> {
        let (dw, hw, rw) = (
            self.device_window_ms,
            self.health_window_ms,
            self.recent_window_ms,
        );
        let mut devices: BTreeMap<String, Merged> = BTreeMap::new();
        for name in LISTED {
            let mut series =
                self.list_series(&format!("{{__name__={}}}", quote(name)), at - dw, at)?;
            series.sort();
            for labels in series {
                if let Some(device) = labels.get("device") {
                    devices.entry(device.clone()).or_default().labels(&labels);
                }
            }
        }
        if devices.is_empty() {
            return Ok(Vec::new());
        }

        // Last seen and the newest sequence number: the recent window, then the device
        // window for the devices silent in it.
        let seen_parts = |filter: &str, w: i64| {
            vec![
                tagged(
                    &format!(
                        "max by (device)(tlast_over_time(gateway_device_readings{filter}[{w}ms]))"
                    ),
                    "seen",
                ),
                tagged(
                    &format!("last_over_time(gateway_device_seq{filter}[{w}ms])"),
                    "seq",
                ),
                tagged(
                    &format!("tlast_over_time(gateway_device_seq{filter}[{w}ms])"),
                    "seq_t",
                ),
            ]
        };
        let mut seen = by_tag(self.instant_parts(&seen_parts("", rw), at)?, false);
        let recent: BTreeSet<&str> = seen
            .get("seen")
            .into_iter()
            .flatten()
            .filter_map(|(l, _)| l.get("device").map(String::as_str))
            .collect();
        let silent: Vec<&String> = devices
            .keys()
            .filter(|d| !recent.contains(d.as_str()))
            .collect();
        let mut older = HashMap::<String, Vec<(Labels, f64)>>::new();
        for chunk in regex_chunks(&silent) {
            let filter = format!("{{device=~{}}}", quote(&chunk));
            for (tag, mut v) in by_tag(self.instant_parts(&seen_parts(&filter, dw), at)?, false) {
                older.entry(tag).or_default().append(&mut v);
            }
        }
        for (tag, mut v) in older {
            seen.entry(tag).or_default().append(&mut v);
        }
        for (labels, t) in tag_of(&seen, "seen") {
            if let Some(m) = labels.get("device").and_then(|d| devices.get_mut(d)) {
                let t = secs_to_ms(*t);
                m.last_seen_ms = Some(m.last_seen_ms.map_or(t, |o| o.max(t)));
                m.sampled = true;
            }
        }
        for (device, (t, v, _)) in newest_by_device(tag_of(&seen, "seq"), tag_of(&seen, "seq_t")) {
            if let Some(m) = devices.get_mut(&device) {
                m.seq = Some((t, v));
                m.sampled = true;
            }
        }

        // Health over the health window.
        let health = self.health(at, hw)?;
        for (tag, values) in health.iter() {
            for (labels, v) in values {
                let Some(m) = labels.get("device").and_then(|d| devices.get_mut(d)) else {
                    continue;
                };
                let slot = match tag.as_str() {
                    "max" => &mut m.seq_max,
                    "min" => &mut m.seq_min,
                    "distinct" => &mut m.seq_distinct,
                    "count" => &mut m.seq_count,
                    "dropped" => &mut m.dropped,
                    _ => continue,
                };
                *slot = Some(*v);
                m.sampled = true;
            }
        }

        // First seen, status and meta over the device window.
        let newest = |name: &str, tag: &str| {
            [
                tagged(&format!("last_over_time({name}[{dw}ms])"), tag),
                tagged(
                    &format!("tlast_over_time({name}[{dw}ms])"),
                    &format!("{tag}_t"),
                ),
            ]
        };
        let mut parts = vec![
            tagged(
                &format!("min by (device)(min_over_time(gateway_device_first_seen_ms[{dw}ms]))"),
                "first",
            ),
            tagged(
                &format!("tlast_over_time(gateway_device_meta_updated[{dw}ms])"),
                "meta_t",
            ),
        ];
        parts.extend(newest("gateway_device_status_online", "status"));
        parts.extend(newest("gateway_device_meta_period_s", "period"));
        parts.extend(newest("gateway_device_meta_lat", "lat"));
        parts.extend(newest("gateway_device_meta_lon", "lon"));
        let state = by_tag(self.instant_parts(&parts, at)?, false);
        for (labels, v) in tag_of(&state, "first") {
            if let Some(m) = labels.get("device").and_then(|d| devices.get_mut(d)) {
                m.first_seen_ms = Some(*v);
                m.sampled = true;
            }
        }
        // The newest meta sample's firmware label (the times stand in for the values).
        let meta_t = tag_of(&state, "meta_t");
        for (device, (_, _, labels)) in newest_by_device(meta_t, meta_t) {
            if let Some(m) = devices.get_mut(&device) {
                m.firmware = labels.get("firmware").filter(|f| !f.is_empty()).cloned();
                m.sampled = true;
            }
        }
        for (tag, pick) in [
            (
                "status",
                (|m: &mut Merged| &mut m.status) as fn(&mut Merged) -> &mut Option<f64>,
            ),
            ("period", |m| &mut m.period),
            ("lat", |m| &mut m.lat),
            ("lon", |m| &mut m.lon),
        ] {
            let values = tag_of(&state, tag);
            let times = tag_of(&state, &format!("{tag}_t"));
            for (device, (_, v, _)) in newest_by_device(values, times) {
                if let Some(m) = devices.get_mut(&device) {
                    *pick(m) = Some(v);
                    m.sampled = true;
                }
            }
        }
        Ok(devices
            .into_iter()
            .filter(|(_, m)| m.sampled)
            .map(|(d, m)| m.row(d))
            .collect())
    }

    /// `GET /api/devices` from the store; `at` evaluates the device state as of then.
    pub fn devices(
        &self,
        p: &params::DevicesParams,
        now_ns: i64,
        default_stale: Duration,
        device_kinds: &[String],
    ) -> Result<DevicesResponse, ApiError> {
        let (stale, at_ns) = queries::devices_params(p, now_ns, device_kinds)?;
        let rows = self.rows(at_ns)?;
        Ok(queries::devices_answer(
            &rows,
            p,
            stale,
            at_ns,
            default_stale,
        ))
    }

    /// `GET /api/series` from the store: the hot tier's buckets (`[g * step, (g + 1) *
    /// step)`, empty ones left out).
    pub fn series(&self, req: &SeriesRequest) -> Result<SeriesResponse, ApiError> {
        let step = (req.step_ns / NS_PER_MS).max(1);
        // Readings are stored at ms precision (truncated): `ts >= from` and `ts < to` at
        // ms resolution.
        let from = ceil_div(req.from_ns, NS_PER_MS);
        let to = ceil_div(req.to_ns, NS_PER_MS);
        let mut columns: Vec<BTreeMap<i64, (i64, f64)>> = vec![BTreeMap::new(); req.series.len()];
        if from < to {
            let parts = |window: i64, shift: i64| -> Vec<String> {
                let offset = if shift > 0 {
                    format!(" offset -{shift}ms")
                } else {
                    String::new()
                };
                let mut out = Vec::new();
                for (i, (device, metric)) in req.series.iter().enumerate() {
                    let s = format!(
                        "{{__name__={},device={},format!=\"\"}}[{window}ms]{offset}",
                        quote(&format!("{metric}_value")),
                        quote(device)
                    );
                    let i = i.to_string();
                    match req.agg {
                        Agg::Avg => out.push(tagged(
                            &format!("sum(sum_over_time({s})) / sum(count_over_time({s}))"),
                            &i,
                        )),
                        Agg::Min => out.push(tagged(&format!("min(min_over_time({s}))"), &i)),
                        Agg::Max => out.push(tagged(&format!("max(max_over_time({s}))"), &i)),
                        Agg::Count => out.push(tagged(&format!("sum(count_over_time({s}))"), &i)),
                        Agg::Last => {
                            out.push(tagged(&format!("last_over_time({s})"), &i));
                            out.push(tagged(&format!("tlast_over_time({s})"), &format!("{i}t")));
                        }
                    }
                }
                out
            };
            let mut answers = Vec::new();
            // Whole buckets inside the range: one range query.
            let (first_full, last_full) = (ceil_div(from, step), to.div_euclid(step) - 1);
            if first_full <= last_full {
                answers.push(self.range_parts(
                    |shift| parts(step, shift),
                    (first_full + 1) * step - 1,
                    (last_full + 1) * step - 1,
                    step,
                )?);
            }
            // Buckets cut by the range's ends: instant queries over what is inside.
            let mut cut: Vec<i64> = vec![from.div_euclid(step), (to - 1).div_euclid(step)];
            cut.dedup();
            for g in cut {
                let (start, end) = (from.max(g * step), to.min((g + 1) * step));
                if end - start < step {
                    answers.push(self.instant_parts(&parts(end - start, 0), end - 1)?);
                }
            }
            let mut last_values: HashMap<(usize, Labels, i64), f64> = HashMap::new();
            let mut last_times = Vec::new();
            for mut p in answers.into_iter().flatten() {
                // `last_over_time` keeps the name, `tlast_over_time` drops it.
                p.labels.remove("__name__");
                let (index, is_time) = match p.tag.strip_suffix('t') {
                    Some(i) => (i, true),
                    None => (p.tag.as_str(), false),
                };
                let Some(i) = index.parse::<usize>().ok().filter(|i| *i < columns.len()) else {
                    continue;
                };
                for (t, v) in p.points {
                    let bucket = t.div_euclid(step) * step;
                    if req.agg != Agg::Last {
                        columns[i].insert(bucket, (0, v));
                    } else if is_time {
                        last_times.push((i, p.labels.clone(), bucket, secs_to_ms(v)));
                    } else {
                        last_values.insert((i, p.labels.clone(), bucket), v);
                    }
                }
            }
            // `last`: the newest reading among the pair's series.
            for (i, labels, bucket, t) in last_times {
                if let Some(v) = last_values.get(&(i, labels, bucket)) {
                    let slot = columns[i].entry(bucket).or_insert((t, *v));
                    if t > slot.0 {
                        *slot = (t, *v);
                    }
                }
            }
        }
        let series = req
            .series
            .iter()
            .zip(columns)
            .map(|((device, metric), column)| Series {
                device: device.clone(),
                metric: metric.clone(),
                unit: schemas::catalog::lookup(metric).map(|m| m.unit.to_owned()),
                t: column.keys().copied().collect(),
                v: column.values().map(|(_, v)| *v).collect(),
            })
            .collect();
        Ok(queries::series_answer(req, series))
    }

    /// `GET /api/latest` from the store.
    pub fn latest(
        &self,
        p: &params::LatestParams,
        now_ns: i64,
        device_kinds: &[String],
    ) -> Result<LatestResponse, ApiError> {
        let q = queries::latest_params(p, now_ns, device_kinds)?;
        // `oldest <= ts <= at` at ms resolution.
        let at = ms(q.at_ns);
        let window = (at - ceil_div(q.oldest_ns, NS_PER_MS) + 1).max(1);
        let answer = by_tag(
            self.instant_parts(
                &[
                    tagged(
                        &format!("last_over_time({READINGS}[{window}ms]) keep_metric_names"),
                        "v",
                    ),
                    tagged(
                        &format!("tlast_over_time({READINGS}[{window}ms]) keep_metric_names"),
                        "t",
                    ),
                ],
                at,
            )?,
            true,
        );
        let values: HashMap<&Labels, f64> = answer
            .get("v")
            .into_iter()
            .flatten()
            .map(|(l, v)| (l, *v))
            .collect();
        // Newest per (device, metric) over the pair's series.
        let mut newest: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
        let mut labels_of: BTreeMap<String, &Labels> = BTreeMap::new();
        for (labels, t) in answer.get("t").into_iter().flatten() {
            let (Some(v), Some(device), Some(metric)) = (
                values.get(labels),
                labels.get("device"),
                labels
                    .get("__name__")
                    .and_then(|n| n.strip_suffix("_value")),
            ) else {
                continue;
            };
            let t = secs_to_ms(*t);
            let slot = newest
                .entry((device.clone(), metric.to_owned()))
                .or_insert((t, *v));
            if t > slot.0 {
                *slot = (t, *v);
            }
            labels_of.entry(device.clone()).or_insert(labels);
        }
        let mut latest: queries::Latest = HashMap::new();
        for ((device, metric), (t, v)) in newest {
            latest
                .entry(device)
                .or_default()
                .push((metric, t.saturating_mul(NS_PER_MS), v));
        }
        let mut rows = self.rows(q.at_ns)?;
        add_bare_rows(&mut rows, labels_of);
        Ok(queries::latest_answer(rows, latest, p, &q))
    }

    /// `GET /api/aqi` from the store: hourly particulate means of the 24 clock hours before
    /// `at`'s hour (hour 1 the last complete one), then the hot tier's station rule.
    pub fn aqi(&self, p: &params::AqiParams, now_ns: i64) -> Result<AqiResponse, ApiError> {
        let at_ns = queries::aqi_params(p, now_ns)?;
        let this_hour = ms(at_ns).div_euclid(MS_PER_HOUR) * MS_PER_HOUR;
        let hours = aqi::DAILY_HOURS as i64;
        let parts = |shift: i64| {
            let offset = if shift > 0 {
                format!(" offset -{shift}ms")
            } else {
                String::new()
            };
            let s = format!(
                "{{__name__=~\"pm25_value|pm10_value\",format!=\"\"}}[{MS_PER_HOUR}ms]{offset}"
            );
            let by = "sum by (device, district, kind, __name__)";
            vec![
                tagged(
                    &format!("{by}(sum_over_time({s}) keep_metric_names)"),
                    "sum",
                ),
                tagged(
                    &format!("{by}(count_over_time({s}) keep_metric_names)"),
                    "n",
                ),
            ]
        };
        let answer = self.range_parts(
            parts,
            this_hour - (hours - 1) * MS_PER_HOUR - 1,
            this_hour - 1,
            MS_PER_HOUR,
        )?;
        // (device, pollutant, hour index) -> (sum, count), over the device's series.
        let mut acc: HashMap<(String, aqi::Pollutant, usize), (f64, f64)> = HashMap::new();
        let mut labels_of: BTreeMap<String, Labels> = BTreeMap::new();
        for part in answer {
            let pollutant = match part.labels.get("__name__").map(String::as_str) {
                Some("pm25_value") => aqi::Pollutant::Pm25,
                Some("pm10_value") => aqi::Pollutant::Pm10,
                _ => continue,
            };
            let Some(device) = part.labels.get("device").cloned() else {
                continue;
            };
            for (t, v) in &part.points {
                let i = (this_hour - 1 - t).div_euclid(MS_PER_HOUR);
                let Some(i) = usize::try_from(i).ok().filter(|i| *i < aqi::DAILY_HOURS) else {
                    continue;
                };
                let slot = acc.entry((device.clone(), pollutant, i)).or_default();
                if part.tag == "sum" {
                    slot.0 += v;
                } else {
                    slot.1 += v;
                }
            }
            labels_of.entry(device).or_insert(part.labels);
        }
        let mut means: HashMap<(String, aqi::Pollutant), Vec<Option<f64>>> = HashMap::new();
        for ((device, pollutant, i), (sum, n)) in acc {
            if n > 0.0 {
                means
                    .entry((device, pollutant))
                    .or_insert_with(|| vec![None; aqi::DAILY_HOURS])[i] = Some(sum / n);
            }
        }
        let column = |device: &str, p: aqi::Pollutant| -> Vec<Option<f64>> {
            means
                .get(&(device.to_owned(), p))
                .cloned()
                .unwrap_or_else(|| vec![None; aqi::DAILY_HOURS])
        };
        let mut rows = self.rows(at_ns)?;
        add_bare_rows(
            &mut rows,
            labels_of.iter().map(|(d, l)| (d.clone(), l)).collect(),
        );
        Ok(AqiResponse {
            at_ms: ms(at_ns),
            stations: queries::aqi_stations(&rows, p, column),
        })
    }

    /// `GET /api/stats` from the store: ingest rate and device figures. Dead letters and
    /// the outbox are each gateway's own (its `/api/stats` and `/metrics`): zero here.
    pub fn stats(
        &self,
        p: &params::StatsParams,
        now_ns: i64,
        default_stale: Duration,
    ) -> Result<StatsResponse, ApiError> {
        let at_ns = params::parse_at(p.at.as_deref(), now_ns)?;
        // Readings timestamped in [at - 60 s, at).
        let recent: f64 = self
            .instant(
                &format!("sum(count_over_time({READINGS}[60000ms]))"),
                ceil_div(at_ns, NS_PER_MS) - 1,
            )?
            .iter()
            .filter_map(|p| p.points.first().map(|(_, v)| *v))
            .sum();
        let rows = self.rows(at_ns)?;
        let counts = queries::DeviceCounts::of(&rows, at_ns, default_stale);
        let secs = |ns: i64| ns as f64 / 1e9;
        Ok(StatsResponse {
            at_ms: ms(at_ns),
            dead_letters: Vec::new(),
            dead_letters_last_hour: 0,
            ingest_rate_per_s: recent / 60.0,
            outbox_entries: 0,
            outbox_readings: 0,
            outbox_bytes: 0,
            store_lag_s: 0.0,
            newest_message_age_s: counts.newest_ns.map(|n| secs((at_ns - n).max(0))),
            devices: counts.devices,
            devices_online: counts.online,
            devices_stale: counts.stale,
            log_backlog_bytes: None,
            log_apply_lag_records: None,
        })
    }
}

/// An answer series as a [`Part`]: its union tag taken out of its labels.
fn part(mut labels: Labels, points: Vec<(i64, f64)>) -> Part {
    let tag = labels.remove(TAG).unwrap_or_default();
    Part {
        tag,
        labels,
        points,
    }
}

/// Adds rows for devices known only from their readings (a store written without
/// device-state series), keeping the rows sorted by device.
fn add_bare_rows(rows: &mut Vec<DeviceRow>, labels_of: BTreeMap<String, &Labels>) {
    let known: BTreeSet<String> = rows.iter().map(|r| r.device.clone()).collect();
    let before = rows.len();
    for (device, labels) in labels_of {
        if !known.contains(&device) {
            rows.push(bare_row(&device, labels));
        }
    }
    if rows.len() > before {
        rows.sort_by(|a, b| a.device.cmp(&b.device));
    }
}

/// Device ids as alternations of escaped regexes, each short enough for one query.
fn regex_chunks(devices: &[&String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for d in devices {
        let r = regex_literal(d);
        if !cur.is_empty() && cur.len() + r.len() + 1 > MAX_QUERY_LEN / 2 {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('|');
        }
        cur.push_str(&r);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(regex_literal("a.b-c"), r"a\.b-c");
        assert_eq!(ms_to_secs(1_700_000_000_001), "1700000000.001");
        assert_eq!(ms_to_secs(-1), "-1.999");
        assert_eq!(secs_to_ms(1_796_319_181.234), 1_796_319_181_234);
        assert_eq!(ceil_div(-1, 1000), 0);
        assert_eq!(ceil_div(1001, 1000), 2);
    }

    #[test]
    fn unions_stay_under_the_query_limit() {
        let parts: Vec<String> = (0..100).map(|i| format!("{i:0>300}")).collect();
        let qs = unions(&parts);
        assert!(qs.len() > 1);
        assert!(qs.iter().all(|q| q.len() <= MAX_QUERY_LEN + 10));
        let joined: usize = qs.iter().map(|q| q.matches(", ").count() + 1).sum();
        assert_eq!(joined, 100);
    }

    #[test]
    fn credentials_stay_out_of_the_url_and_debug() {
        let s = StoreSource::new(StoreQueryConfig::new(
            "http://u%40x:p%2Fw@127.0.0.1:8428/vm/",
        ))
        .unwrap();
        assert_eq!(s.url(), "http://127.0.0.1:8428/vm");
        assert_eq!(s.username.as_deref(), Some("u@x"));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("p/w") && !shown.contains("Basic"),
            "{shown}"
        );
        assert!(StoreSource::new(StoreQueryConfig::new("ftp://x")).is_err());
        assert_eq!(url_for_logs("http://a:b@h:1/"), "http://<redacted>@h:1/");
    }

    #[test]
    fn merged_rows() {
        let m = Merged {
            seq_max: Some(20.0),
            seq_min: Some(1.0),
            seq_distinct: Some(17.0),
            seq_count: Some(18.0),
            period: Some(60.0),
            status: Some(0.0),
            ..Merged::default()
        };
        let r = m.row("d".into());
        assert_eq!((r.gaps, r.duplicates), (3, 1));
        assert_eq!(r.meta[META_PERIOD[0]].as_u64(), Some(60));
        assert_eq!(r.status.as_deref(), Some("offline"));
    }
}

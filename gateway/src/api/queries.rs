//! The read side of the hot tier: every question the API and `gateway query` answer, as
//! synchronous functions over one read-only connection and the hot tier's head
//! ([`HotRead`]). The hot tier keeps each series' readings in compressed chunks of up to an
//! hour plus an in-memory head (`ingest::hot`), and `series` records every
//! (device, metric) under an integer id with the span and newest value of its chunks. So:
//!
//! - a series is its chunks that overlap the range (a primary-key range on
//!   `(series, start_ns)`), decoded and downsampled here; a 24-hour series of a 10-second
//!   sensor is about 25 chunks;
//! - "latest value of every series" is the `series` table (its newest chunk value) and
//!   the head, without touching a chunk unless `at` is in the past;
//! - "readings in the last minute" and the hourly means for the AQI read the chunks that
//!   can overlap the window through the index on their end time; hourly means are cached
//!   per clock hour (an hour's means do not change once it is over).

use super::error::ApiError;
use super::model::*;
use super::params::{self, Agg, SeriesRequest};
use crate::aqi;
use ingest::query::{HotRead, SeriesRow};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_S: i64 = 1_000_000_000;
const NS_PER_HOUR: i64 = 3600 * NS_PER_S;

/// Default staleness threshold for a device whose meta gives no reporting period.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);
/// A device with a known reporting period is stale after this many silent periods.
pub const STALE_PERIODS: u64 = 3;
/// Default `max_age` of `/api/latest`.
pub const DEFAULT_LATEST_MAX_AGE: Duration = Duration::from_secs(3600);

pub(crate) fn ms(ns: i64) -> i64 {
    ns.div_euclid(NS_PER_MS)
}

/// One row of `devices`, with the meta fields the API uses. The hot tier reads it from its
/// `devices` table; the store-backed query side ([`super::store`]) builds it from the
/// device-state series.
#[derive(Debug, Clone)]
pub(crate) struct DeviceRow {
    pub(crate) device: String,
    pub(crate) district: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) format: Option<String>,
    pub(crate) first_seen_ns: Option<i64>,
    pub(crate) last_seen_ns: Option<i64>,
    pub(crate) last_seq: Option<i64>,
    pub(crate) gaps: i64,
    pub(crate) duplicates: i64,
    pub(crate) dropped_readings: i64,
    pub(crate) status: Option<String>,
    pub(crate) meta: serde_json::Value,
}

/// Names a meta field goes by ([`schemas::meta::keys`]: the first is what the firmware
/// sends, the others what other publishers use; ingest's device series read the same).
pub(crate) const META_FIRMWARE: &[&str] = schemas::meta::keys::FIRMWARE;
pub(crate) const META_PERIOD: &[&str] = schemas::meta::keys::PERIOD;
pub(crate) const META_LAT: &[&str] = schemas::meta::keys::LAT;
pub(crate) const META_LON: &[&str] = schemas::meta::keys::LON;

impl DeviceRow {
    fn meta_field(&self, keys: &[&str]) -> Option<&serde_json::Value> {
        keys.iter().find_map(|k| self.meta.get(k))
    }
    fn meta_str(&self, keys: &[&str]) -> Option<String> {
        self.meta_field(keys)?.as_str().map(str::to_owned)
    }
    fn meta_f64(&self, keys: &[&str]) -> Option<f64> {
        self.meta_field(keys)?.as_f64()
    }
    fn meta_u64(&self, keys: &[&str]) -> Option<u64> {
        self.meta_field(keys)?.as_u64()
    }
    /// The district: the state's column, else the meta's.
    fn district(&self) -> Option<String> {
        self.district
            .clone()
            .or_else(|| self.meta_str(&["district"]))
    }
    fn kind(&self) -> Option<String> {
        self.kind.clone().or_else(|| self.meta_str(&["kind"]))
    }
}

fn load_devices(conn: &rusqlite::Connection) -> Result<Vec<DeviceRow>, ApiError> {
    let states = ingest::devices::list(conn)?;
    // 0 means "never seen alive" (known only from retained messages).
    let seen = |ns: i64| (ns > 0).then_some(ns);
    Ok(states
        .into_iter()
        .map(|d| DeviceRow {
            device: d.device,
            district: d.district,
            kind: d.kind,
            format: Some(d.format),
            first_seen_ns: seen(d.first_seen_ns),
            last_seen_ns: seen(d.last_seen_ns),
            last_seq: d.last_seq,
            gaps: d.gaps,
            duplicates: d.duplicates,
            dropped_readings: d.dropped_readings,
            status: d.status,
            // A device's meta is its own JSON: a malformed one only loses the meta fields.
            meta: d
                .meta_json
                .and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or(serde_json::Value::Null),
        })
        .collect())
}

pub(crate) fn stale_after(row: &DeviceRow, default: Duration) -> u64 {
    row.meta_u64(META_PERIOD)
        .filter(|p| *p > 0)
        .map_or(default.as_secs(), |p| p.saturating_mul(STALE_PERIODS))
}

pub(crate) fn is_stale(row: &DeviceRow, at_ns: i64, after_s: u64) -> bool {
    let limit = i64::try_from(after_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(NS_PER_S);
    row.last_seen_ns
        .is_none_or(|seen| at_ns.saturating_sub(seen) > limit)
}

/// A device's status: what it last reported (its own `status` topic or its format's will),
/// else, for formats without one (UltraLight, line protocol), `online` while it reports
/// within its stale window and `offline` after; `unknown` for a device of a format with
/// a will that has not sent one.
pub(crate) fn status_of(row: &DeviceRow, at_ns: i64, default_stale: Duration) -> String {
    if let Some(s) = &row.status {
        return s.clone();
    }
    let has_will = !matches!(
        row.format.as_deref().and_then(ingest::Format::parse),
        Some(ingest::Format::Ultralight | ingest::Format::LineProtocol)
    );
    if has_will {
        "unknown".into()
    } else if is_stale(row, at_ns, stale_after(row, default_stale)) {
        "offline".into()
    } else {
        "online".into()
    }
}

pub(crate) fn to_device(row: &DeviceRow, at_ns: i64, default_stale: Duration) -> Device {
    let after = stale_after(row, default_stale);
    Device {
        device: row.device.clone(),
        kind: row.kind(),
        district: row.district(),
        format: row.format.clone(),
        status: status_of(row, at_ns, default_stale),
        first_seen_ms: row.first_seen_ns.map(ms),
        last_seen_ms: row.last_seen_ns.map(ms),
        last_seq: row.last_seq,
        gaps: row.gaps,
        duplicates: row.duplicates,
        dropped_readings: row.dropped_readings,
        firmware: row.meta_str(META_FIRMWARE),
        lat: row.meta_f64(META_LAT),
        lon: row.meta_f64(META_LON),
        period_s: row.meta_u64(META_PERIOD),
        stale_after_s: after,
        stale: is_stale(row, at_ns, after),
    }
}

/// `GET /api/devices`.
pub fn devices(
    conn: &HotRead<'_>,
    p: &params::DevicesParams,
    now_ns: i64,
    default_stale: Duration,
    device_kinds: &[String],
) -> Result<DevicesResponse, ApiError> {
    let (stale, at_ns) = devices_params(p, now_ns, device_kinds)?;
    let rows = load_devices(conn)?;
    Ok(devices_answer(&rows, p, stale, at_ns, default_stale))
}

/// Checks `/api/devices`' parameters: the `stale` filter and the evaluation instant.
pub(crate) fn devices_params(
    p: &params::DevicesParams,
    now_ns: i64,
    device_kinds: &[String],
) -> Result<(Option<bool>, i64), ApiError> {
    if let Some(d) = &p.district {
        params::check_slug("district", d)?;
    }
    if let Some(k) = &p.kind {
        params::check_kind(k, device_kinds)?;
    }
    if let Some(s) = &p.status
        && !matches!(s.as_str(), "online" | "offline" | "unknown")
    {
        return Err(ApiError::bad(format!(
            "status: `{s}` is not one of online, offline, unknown"
        )));
    }
    let stale = p
        .stale
        .as_deref()
        .map(|s| params::parse_bool("stale", s))
        .transpose()?;
    let at_ns = params::parse_at(p.at.as_deref(), now_ns)?;
    Ok((stale, at_ns))
}

/// `/api/devices`' answer over the device rows: each row as a [`Device`], filtered.
pub(crate) fn devices_answer(
    rows: &[DeviceRow],
    p: &params::DevicesParams,
    stale: Option<bool>,
    at_ns: i64,
    default_stale: Duration,
) -> DevicesResponse {
    let devices = rows
        .iter()
        .map(|row| to_device(row, at_ns, default_stale))
        .filter(|d| p.district.is_none() || d.district == p.district)
        .filter(|d| p.kind.is_none() || d.kind == p.kind)
        .filter(|d| p.status.as_ref().is_none_or(|s| &d.status == s))
        .filter(|d| stale.is_none_or(|s| d.stale == s))
        .collect();
    DevicesResponse {
        at_ms: ms(at_ns),
        default_stale_after_s: default_stale.as_secs(),
        devices,
    }
}

/// SQLite's `avg()`: Kahan-Babuska-Neumaier summation, as SQLite computes it (3.43 and
/// later), so that means are what the SQL over one row per reading answered, to the bit.
#[derive(Debug, Default, Clone, Copy)]
struct Mean {
    sum: f64,
    err: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, r: f64) {
        let s = self.sum;
        let t = s + r;
        if s.abs() > r.abs() {
            self.err += (s - t) + r;
        } else {
            self.err += (r - t) + s;
        }
        self.sum = t;
        self.n += 1;
    }

    fn get(&self) -> f64 {
        let r = if self.err.is_finite() {
            self.sum + self.err
        } else {
            self.sum
        };
        r / self.n as f64
    }
}

/// Downsamples `points` (oldest first) into groups `ts / step_ns`, one value per group.
fn downsample(points: &[(i64, f64)], step_ns: i64, agg: Agg, t: &mut Vec<i64>, v: &mut Vec<f64>) {
    let mut i = 0;
    while i < points.len() {
        let g = points[i].0 / step_ns;
        let mut j = i;
        while j < points.len() && points[j].0 / step_ns == g {
            j += 1;
        }
        let group = &points[i..j];
        let value = match agg {
            Agg::Avg => {
                let mut m = Mean::default();
                group.iter().for_each(|(_, x)| m.add(*x));
                m.get()
            }
            Agg::Min => group.iter().map(|(_, x)| *x).fold(f64::INFINITY, f64::min),
            Agg::Max => group
                .iter()
                .map(|(_, x)| *x)
                .fold(f64::NEG_INFINITY, f64::max),
            Agg::Count => group.len() as f64,
            Agg::Last => group[group.len() - 1].1,
        };
        t.push(ms(g * step_ns));
        v.push(value);
        i = j;
    }
}

/// `GET /api/series`: each pair's readings in the range, downsampled.
pub fn series(db: &HotRead<'_>, req: &SeriesRequest) -> Result<SeriesResponse, ApiError> {
    let mut out = Vec::with_capacity(req.series.len());
    for (device, metric) in &req.series {
        let mut t = Vec::new();
        let mut v = Vec::new();
        if let Some(row) = db.find(device, metric)?
            && let Some((first, last)) = db.span(&row)
        {
            let from = req.from_ns.max(first);
            let to = req.to_ns.min(last.saturating_add(1));
            if from < to {
                let points = db.points(row.id, from, to)?;
                downsample(&points, req.step_ns, req.agg, &mut t, &mut v);
            }
        }
        out.push(Series {
            device: device.clone(),
            metric: metric.clone(),
            unit: schemas::catalog::lookup(metric).map(|m| m.unit.to_owned()),
            t,
            v,
        });
    }
    Ok(series_answer(req, out))
}

/// The `/api/series` answer to `req` with these series (either source's).
pub(crate) fn series_answer(req: &SeriesRequest, series: Vec<Series>) -> SeriesResponse {
    let agg = serde_json::to_value(req.agg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    SeriesResponse {
        from_ms: ms(req.from_ns),
        to_ms: ms(req.to_ns),
        step_ms: ms(req.step_ns),
        agg,
        series,
    }
}

/// One reading per series: its newest at or before `at_ns` and not older than `oldest_ns`.
pub(crate) type Latest = HashMap<String, Vec<(String, i64, f64)>>;

/// The newest reading of every series at or before `at_ns`, by device: the `series`
/// table's newest chunk value and the head answer, unless a series has readings after
/// `at_ns` (clock skew, or a past `at`), which searches its chunks backwards.
fn latest_all(db: &HotRead<'_>, at_ns: i64, oldest_ns: i64) -> Result<Latest, ApiError> {
    let mut out: Latest = HashMap::new();
    for row in db.series_rows()? {
        let SeriesRow { device, metric, .. } = &row;
        if let Some(p) = db.newest(&row, at_ns, oldest_ns)? {
            out.entry(device.clone())
                .or_default()
                .push((metric.clone(), p.ts_ns, p.value));
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    newest: i64,
}

/// `GET /api/latest`: latest values per district and kind.
pub fn latest(
    conn: &HotRead<'_>,
    p: &params::LatestParams,
    now_ns: i64,
    device_kinds: &[String],
) -> Result<LatestResponse, ApiError> {
    let q = latest_params(p, now_ns, device_kinds)?;
    let latest = latest_all(conn, q.at_ns, q.oldest_ns)?;
    Ok(latest_answer(load_devices(conn)?, latest, p, &q))
}

/// `/api/latest`'s checked parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LatestQuery {
    pub(crate) max_age: Duration,
    pub(crate) detail: bool,
    /// Evaluation instant.
    pub(crate) at_ns: i64,
    /// Oldest reading counted: `at_ns - max_age`.
    pub(crate) oldest_ns: i64,
}

/// Checks `/api/latest`'s parameters.
pub(crate) fn latest_params(
    p: &params::LatestParams,
    now_ns: i64,
    device_kinds: &[String],
) -> Result<LatestQuery, ApiError> {
    if let Some(d) = &p.district {
        params::check_slug("district", d)?;
    }
    if let Some(k) = &p.kind {
        params::check_kind(k, device_kinds)?;
    }
    let max_age = p
        .max_age
        .as_deref()
        .map(|s| params::parse_duration("max_age", s))
        .transpose()?
        .unwrap_or(DEFAULT_LATEST_MAX_AGE);
    let detail = p
        .detail
        .as_deref()
        .map(|s| params::parse_bool("detail", s))
        .transpose()?
        .unwrap_or(false);
    let at_ns = params::parse_at(p.at.as_deref(), now_ns)?;
    let oldest = at_ns.saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX));
    Ok(LatestQuery {
        max_age,
        detail,
        at_ns,
        oldest_ns: oldest,
    })
}

/// `/api/latest`'s answer: the devices grouped by district and kind, with the summaries of
/// their latest readings (`latest`, by device).
pub(crate) fn latest_answer(
    rows: Vec<DeviceRow>,
    mut latest: Latest,
    p: &params::LatestParams,
    q: &LatestQuery,
) -> LatestResponse {
    let LatestQuery {
        max_age,
        detail,
        at_ns,
        ..
    } = *q;
    type Key = (String, String);
    let mut groups: BTreeMap<Key, (LatestGroup, BTreeMap<String, Acc>)> = BTreeMap::new();
    let mut details = Vec::new();
    for row in rows {
        let district = row.district().unwrap_or_else(|| "unknown".into());
        let kind = row.kind().unwrap_or_else(|| "unknown".into());
        if p.district.as_ref().is_some_and(|d| d != &district)
            || p.kind.as_ref().is_some_and(|k| k != &kind)
        {
            continue;
        }
        let (group, accs) = groups
            .entry((district.clone(), kind.clone()))
            .or_insert_with(|| {
                (
                    LatestGroup {
                        district: district.clone(),
                        kind: kind.clone(),
                        devices: 0,
                        reporting: 0,
                        online: 0,
                        metrics: Vec::new(),
                    },
                    BTreeMap::new(),
                )
            });
        group.devices += 1;
        if status_of(&row, at_ns, DEFAULT_STALE_AFTER) == "online" {
            group.online += 1;
        }
        let mut values = latest.remove(&row.device).unwrap_or_default();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        if !values.is_empty() {
            group.reporting += 1;
        }
        for (metric, ts, v) in &values {
            let a = accs.entry(metric.clone()).or_insert_with(|| Acc {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                ..Acc::default()
            });
            a.count += 1;
            a.sum += v;
            a.min = a.min.min(*v);
            a.max = a.max.max(*v);
            a.newest = a.newest.max(*ts);
        }
        if detail {
            details.push(DeviceLatest {
                device: row.device.clone(),
                district,
                kind,
                values: values
                    .into_iter()
                    .map(|(m, ts, v)| (m, Reading { t_ms: ms(ts), v }))
                    .collect(),
            });
        }
    }
    let groups = groups
        .into_values()
        .map(|(mut g, accs)| {
            g.metrics = accs
                .into_iter()
                .map(|(metric, a)| MetricSummary {
                    unit: schemas::catalog::lookup(&metric).map(|m| m.unit.to_owned()),
                    metric,
                    count: a.count,
                    mean: a.sum / a.count as f64,
                    min: a.min,
                    max: a.max,
                    newest_ms: ms(a.newest),
                })
                .collect();
            g
        })
        .collect();
    LatestResponse {
        at_ms: ms(at_ns),
        max_age_s: max_age.as_secs(),
        groups,
        devices: detail.then_some(details),
    }
}

/// Mean PM2.5 and PM10 of every device over one clock hour.
pub type HourMeans = HashMap<(String, aqi::Pollutant), f64>;

/// How long after an hour ends its means may still change (late readings from device
/// backlogs); after that a computed hour is final.
const HOUR_SETTLE_NS: i64 = 15 * 60 * NS_PER_S;
/// How long a not yet final hour's means are reused.
const HOUR_REFRESH_NS: i64 = 60 * NS_PER_S;
/// Hours kept.
const HOURS_KEPT: usize = 48;

/// Hourly particulate means per clock hour, shared by the AQI answers: an hour is read
/// once (one pass over its buckets for all stations) and reused until it could change: a
/// settled hour until the hot tier's head reports a late write (a device's backlog, a
/// backfill: [`ingest::hot::HeadData::late_writes`]), the current hour for
/// `HOUR_REFRESH_NS`.
#[derive(Debug, Default)]
pub struct HourCache {
    hours: Mutex<BTreeMap<i64, CachedHour>>,
}

/// One cached hour: when it was computed, the head's late-write count then, the means.
type CachedHour = (i64, u64, Arc<HourMeans>);

impl HourCache {
    fn get(&self, hour_ns: i64, now_ns: i64, late: u64) -> Option<Arc<HourMeans>> {
        let hours = self.hours.lock().unwrap_or_else(PoisonError::into_inner);
        let (computed, late_then, means) = hours.get(&hour_ns)?;
        if *late_then != late {
            // Late readings arrived since: any past hour may have changed.
            return None;
        }
        let final_ = *computed >= hour_ns + NS_PER_HOUR + HOUR_SETTLE_NS;
        (final_ || now_ns - computed < HOUR_REFRESH_NS).then(|| means.clone())
    }

    fn put(&self, hour_ns: i64, now_ns: i64, late: u64, means: Arc<HourMeans>) {
        let mut hours = self.hours.lock().unwrap_or_else(PoisonError::into_inner);
        hours.insert(hour_ns, (now_ns, late, means));
        while hours.len() > HOURS_KEPT {
            hours.pop_first();
        }
    }
}

/// Mean PM2.5 and PM10 per device over `[hour_ns, hour_ns + 1 h)`.
fn hour_means(db: &HotRead<'_>, hour_ns: i64) -> Result<HourMeans, ApiError> {
    let mut pollutants: HashMap<u32, (String, aqi::Pollutant)> = HashMap::new();
    for row in db.series_rows()? {
        let p = match row.metric.as_str() {
            "pm25" => aqi::Pollutant::Pm25,
            "pm10" => aqi::Pollutant::Pm10,
            _ => continue,
        };
        pollutants.insert(row.id, (row.device, p));
    }
    let points = db.scan(hour_ns, hour_ns + NS_PER_HOUR, |id| {
        pollutants.contains_key(&id)
    })?;
    let mut out = HashMap::new();
    for (id, v) in points {
        let Some(key) = pollutants.remove(&id) else {
            continue;
        };
        let mut m = Mean::default();
        v.iter().for_each(|(_, x)| m.add(*x));
        out.insert(key, m.get());
    }
    Ok(out)
}

/// `GET /api/aqi`: indices of every station that has (or should have) particulates.
/// Hour 1 of the NowCast is the last complete clock hour before `at`; hourly means come
/// from `cache` when it has them.
pub fn aqi(
    conn: &HotRead<'_>,
    p: &params::AqiParams,
    now_ns: i64,
    cache: &HourCache,
) -> Result<AqiResponse, ApiError> {
    let at_ns = aqi_params(p, now_ns)?;
    let this_hour = at_ns.div_euclid(NS_PER_HOUR) * NS_PER_HOUR;
    // hours[i] covers [this_hour - (i+1) h, this_hour - i h).
    let mut hours = Vec::with_capacity(aqi::DAILY_HOURS);
    let late = conn.late_writes();
    for i in 0..aqi::DAILY_HOURS as i64 {
        let start = this_hour - (i + 1) * NS_PER_HOUR;
        let means = match cache.get(start, now_ns, late) {
            Some(m) => m,
            None => {
                let m = Arc::new(hour_means(conn, start)?);
                cache.put(start, now_ns, late, m.clone());
                m
            }
        };
        hours.push(means);
    }
    let column = |device: &str, p: aqi::Pollutant| -> Vec<Option<f64>> {
        let key = (device.to_owned(), p);
        hours.iter().map(|h| h.get(&key).copied()).collect()
    };
    Ok(AqiResponse {
        at_ms: ms(at_ns),
        stations: aqi_stations(&load_devices(conn)?, p, column),
    })
}

/// Checks `/api/aqi`'s parameters; the evaluation instant.
pub(crate) fn aqi_params(p: &params::AqiParams, now_ns: i64) -> Result<i64, ApiError> {
    if let Some(d) = &p.district {
        params::check_slug("district", d)?;
    }
    if let Some(d) = &p.device {
        params::check_slug("device", d)?;
    }
    params::parse_at(p.at.as_deref(), now_ns)
}

/// The stations of `/api/aqi` among the device rows: those with particulates in the 24
/// hours (`column`: a device's hourly means of a pollutant, hour 1 first) or of kind
/// `airquality`, with their indices.
pub(crate) fn aqi_stations(
    rows: &[DeviceRow],
    p: &params::AqiParams,
    column: impl Fn(&str, aqi::Pollutant) -> Vec<Option<f64>>,
) -> Vec<StationAqi> {
    let mut stations = Vec::new();
    for row in rows {
        let district = row.district();
        if p.district.is_some() && district != p.district
            || p.device.as_ref().is_some_and(|d| d != &row.device)
        {
            continue;
        }
        let pm25 = column(&row.device, aqi::Pollutant::Pm25);
        let pm10 = column(&row.device, aqi::Pollutant::Pm10);
        let has_pm = pm25.iter().chain(&pm10).any(Option::is_some);
        if !has_pm && row.kind().as_deref() != Some("airquality") {
            continue;
        }
        let s = aqi::station_aqi(&pm25, &pm10);
        stations.push(StationAqi {
            device: row.device.clone(),
            district,
            kind: row.kind(),
            lat: row.meta_f64(META_LAT),
            lon: row.meta_f64(META_LON),
            pm25_nowcast: s.pm25_nowcast,
            pm10_nowcast: s.pm10_nowcast,
            pm25_24h: s.pm25_daily,
            pm10_24h: s.pm10_daily,
            vn_aqi_hourly: s.vn_hourly.map(Into::into),
            vn_aqi_daily: s.vn_daily.map(Into::into),
            us_aqi_nowcast: s.us_nowcast.map(Into::into),
            us_aqi_daily: s.us_daily.map(Into::into),
        });
    }
    stations
}

/// `GET /api/stats`.
pub fn stats(
    conn: &HotRead<'_>,
    p: &params::StatsParams,
    now_ns: i64,
    default_stale: Duration,
) -> Result<StatsResponse, ApiError> {
    let at_ns = params::parse_at(p.at.as_deref(), now_ns)?;
    let own = OwnStats::read(conn, at_ns)?;

    // Readings per second over the last minute: the chunks that can overlap it, and the
    // head.
    let window_start = at_ns - 60 * NS_PER_S;
    let recent: usize = conn
        .scan(window_start, at_ns, |_| true)?
        .values()
        .map(Vec::len)
        .sum();
    let rows = load_devices(conn)?;
    let counts = DeviceCounts::of(&rows, at_ns, default_stale);
    let secs = |ns: i64| ns as f64 / NS_PER_S as f64;
    let mut answer = StatsResponse {
        at_ms: ms(at_ns),
        dead_letters: Vec::new(),
        dead_letters_last_hour: 0,
        ingest_rate_per_s: recent as f64 / 60.0,
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
    };
    own.fill(&mut answer);
    Ok(answer)
}

/// The `/api/stats` figures that are a gateway's own whatever the query source: its dead
/// letters and its outbox (the store holds neither).
#[derive(Debug, Clone)]
pub(crate) struct OwnStats {
    dead_letters: Vec<ReasonCount>,
    dead_letters_last_hour: u64,
    outbox: ingest::outbox::OutboxDepth,
    store_lag_s: f64,
}

impl OwnStats {
    /// Reads them as of `at_ns`.
    pub(crate) fn read(conn: &HotRead<'_>, at_ns: i64) -> Result<Self, ApiError> {
        let dead_letters = ingest::deadletter::count_by_reason(conn)?
            .into_iter()
            .map(|(reason, count)| ReasonCount { reason, count })
            .collect();
        let dead_letters_last_hour =
            ingest::deadletter::count_between(conn, at_ns - NS_PER_HOUR, at_ns)?;
        let oldest = ingest::outbox::oldest_created_ns(conn)?;
        Ok(Self {
            dead_letters,
            dead_letters_last_hour,
            outbox: ingest::outbox::depth(conn)?,
            store_lag_s: oldest.map_or(0.0, |o| (at_ns - o).max(0) as f64 / NS_PER_S as f64),
        })
    }

    /// Puts them into an answer.
    pub(crate) fn fill(self, answer: &mut StatsResponse) {
        answer.dead_letters = self.dead_letters;
        answer.dead_letters_last_hour = self.dead_letters_last_hour;
        answer.outbox_entries = self.outbox.entries;
        answer.outbox_readings = self.outbox.readings;
        answer.outbox_bytes = self.outbox.bytes;
        answer.store_lag_s = self.store_lag_s;
    }
}

/// `/api/stats`' device figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceCounts {
    pub(crate) devices: u64,
    pub(crate) online: u64,
    pub(crate) stale: u64,
    /// The newest `last_seen` of any device.
    pub(crate) newest_ns: Option<i64>,
}

impl DeviceCounts {
    pub(crate) fn of(rows: &[DeviceRow], at_ns: i64, default_stale: Duration) -> Self {
        let (mut online, mut stale) = (0u64, 0u64);
        for row in rows {
            if status_of(row, at_ns, default_stale) == "online" {
                online += 1;
            }
            if is_stale(row, at_ns, stale_after(row, default_stale)) {
                stale += 1;
            }
        }
        Self {
            devices: rows.len() as u64,
            online,
            stale,
            newest_ns: rows.iter().filter_map(|r| r.last_seen_ns).max(),
        }
    }
}

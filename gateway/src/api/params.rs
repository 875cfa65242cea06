//! Query parameters of every endpoint, and their parsing into checked values.
//!
//! The same structs are the HTTP query strings (serde), the OpenAPI parameters (utoipa)
//! and the `gateway query` options (clap), so the CLI and the API accept exactly the same
//! things. Fields are raw strings; the `parse_*` functions turn them into checked values
//! and say precisely what is wrong otherwise.
//!
//! Times: `now`, a unix time in milliseconds (`1732300000000`), an RFC 3339 UTC time
//! (`2026-11-22T10:00:00Z`), or relative to now (`-24h`, `now-90m`).
//! Durations: humantime syntax (`30s`, `5m`, `1h`, `7d`) or a number of seconds.

use super::error::ApiError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::IntoParams;

/// Most series one `/api/series` request may ask for.
pub const MAX_SERIES: usize = 50;
/// Most buckets one series may return: a week at 1-minute steps, plus a margin.
pub const MAX_POINTS: i64 = 11_000;
/// Buckets an automatic step aims for when none is given.
pub const AUTO_POINTS: i64 = 720;
/// Longest window a series query may cover (the hot tier keeps 7 days by default).
pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_S: i64 = 1_000_000_000;

/// `GET /api/devices`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, clap::Args)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DevicesParams {
    /// Only devices of this district (slug).
    #[arg(long)]
    pub district: Option<String>,
    /// Only devices of this kind: airquality, weather, noise, wifi.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only devices with this status: online, offline, unknown.
    #[arg(long)]
    pub status: Option<String>,
    /// `true`: only stale devices; `false`: only fresh ones.
    #[arg(long)]
    pub stale: Option<String>,
    /// Evaluate staleness as of this time (default now).
    #[arg(long, allow_hyphen_values = true)]
    pub at: Option<String>,
}

/// `GET /api/series`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, clap::Args)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Comma-separated `device:metric` pairs, e.g. `aq-0001:pm25,aq-0002:pm10` (required).
    #[arg(long)]
    pub series: Option<String>,
    /// Start of the range, inclusive (default `-24h`).
    #[arg(long, allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End of the range, exclusive (default `now`).
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Bucket width (default: the range / 720, at least 1s). Buckets start at multiples of
    /// the step since the unix epoch.
    #[arg(long)]
    pub step: Option<String>,
    /// Aggregate per bucket: avg (default), min, max, last, count.
    #[arg(long)]
    pub agg: Option<String>,
}

/// `GET /api/latest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, clap::Args)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LatestParams {
    /// Only this district.
    #[arg(long)]
    pub district: Option<String>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Ignore readings older than this (default 1h).
    #[arg(long)]
    pub max_age: Option<String>,
    /// `true`: also list every device's latest values.
    #[arg(long)]
    pub detail: Option<String>,
    /// Evaluate as of this time (default now).
    #[arg(long, allow_hyphen_values = true)]
    pub at: Option<String>,
}

/// `GET /api/aqi`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, clap::Args)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AqiParams {
    /// Only this district.
    #[arg(long)]
    pub district: Option<String>,
    /// Only this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Evaluate as of this time (default now). Hourly means are per clock hour; hour 1 of the
    /// NowCast is the last complete one before this time.
    #[arg(long, allow_hyphen_values = true)]
    pub at: Option<String>,
}

/// `GET /api/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, clap::Args)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Evaluate as of this time (default now).
    #[arg(long, allow_hyphen_values = true)]
    pub at: Option<String>,
}

/// The aggregate applied to each bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    /// Mean of the bucket's readings.
    Avg,
    /// Smallest reading.
    Min,
    /// Largest reading.
    Max,
    /// The reading with the latest timestamp.
    Last,
    /// Number of readings.
    Count,
}

impl Agg {
    /// Parses `avg|min|max|last|count`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "avg" | "mean" => Ok(Self::Avg),
            "min" => Ok(Self::Min),
            "max" => Ok(Self::Max),
            "last" => Ok(Self::Last),
            "count" => Ok(Self::Count),
            other => Err(ApiError::bad(format!(
                "agg: unknown aggregate `{other}`; expected one of avg, min, max, last, count"
            ))),
        }
    }
}

/// A checked series request.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRequest {
    /// (device, metric) pairs, in request order.
    pub series: Vec<(String, String)>,
    /// Start, unix ns, inclusive.
    pub from_ns: i64,
    /// End, unix ns, exclusive.
    pub to_ns: i64,
    /// Bucket width in ns.
    pub step_ns: i64,
    /// Bucket aggregate.
    pub agg: Agg,
}

/// Checks a slug (device, district): 1 to 64 of `a-z 0-9 - _`, the topic scheme's rule.
pub fn check_slug(what: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= schemas::topic::MAX_SLUG_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what}: `{s}` is not a valid slug (1 to 64 of a-z, 0-9, '-', '_')"
        )))
    }
}

/// Checks a metric name: the catalog's names are lowercase camel case; other decoders may
/// bring their own, so any 1 to 64 of `A-Z a-z 0-9 _ . -` is accepted.
fn check_metric(s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "series: `{s}` is not a valid metric name"
        )))
    }
}

/// Checks a device kind: a built-in one or one of `configured` (`ingest.device_kinds`).
pub fn check_kind(s: &str, configured: &[String]) -> Result<(), ApiError> {
    if ingest::decode::known_kind(s, configured) {
        Ok(())
    } else {
        let mut known: Vec<&str> = schemas::topic::DeviceKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        known.extend(configured.iter().map(String::as_str));
        Err(ApiError::bad(format!(
            "kind: unknown kind `{s}`; expected one of {}",
            known.join(", ")
        )))
    }
}

/// Parses a boolean flag (`true`/`false`/`1`/`0`).
pub fn parse_bool(what: &str, s: &str) -> Result<bool, ApiError> {
    match s {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(ApiError::bad(format!(
            "{what}: `{other}` is not a boolean (true or false)"
        ))),
    }
}

/// Parses a duration: humantime (`5m`, `1h 30m`) or plain seconds.
pub fn parse_duration(what: &str, s: &str) -> Result<Duration, ApiError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| {
        ApiError::bad(format!(
            "{what}: `{s}` is not a duration ({e}); use e.g. 30s, 5m, 1h, 7d"
        ))
    })
}

fn duration_ns(what: &str, d: Duration) -> Result<i64, ApiError> {
    i64::try_from(d.as_nanos()).map_err(|_| ApiError::bad(format!("{what}: duration too long")))
}

/// Parses an instant into unix ns. See the module comment for the accepted forms.
pub fn parse_instant(what: &str, s: &str, now_ns: i64) -> Result<i64, ApiError> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ns);
    }
    let relative = s.strip_prefix("now-").or_else(|| s.strip_prefix('-'));
    if let Some(ago) = relative {
        let d = parse_duration(what, ago)?;
        return Ok(now_ns.saturating_sub(duration_ns(what, d)?));
    }
    if let Ok(ms) = s.parse::<i64>() {
        return ms
            .checked_mul(NS_PER_MS)
            .ok_or_else(|| ApiError::bad(format!("{what}: `{s}` is out of range")));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        ApiError::bad(format!(
            "{what}: `{s}` is not a time; use now, -24h, unix milliseconds or RFC 3339 (2026-11-22T10:00:00Z)"
        ))
    })?;
    let since = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::bad(format!("{what}: `{s}` is before 1970")))?;
    duration_ns(what, since)
}

/// The evaluation instant of a request: `at` or now.
pub fn parse_at(at: Option<&str>, now_ns: i64) -> Result<i64, ApiError> {
    at.map_or(Ok(now_ns), |s| parse_instant("at", s, now_ns))
}

impl SeriesParams {
    /// Checks every field; `now_ns` resolves relative times.
    pub fn parse(&self, now_ns: i64) -> Result<SeriesRequest, ApiError> {
        let raw = self
            .series
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                ApiError::bad("series: required, as device:metric pairs, e.g. aq-0001:pm25")
            })?;
        let mut series = Vec::new();
        for item in raw.split(',') {
            let item = item.trim();
            let (device, metric) = item
                .split_once(':')
                .ok_or_else(|| ApiError::bad(format!("series: `{item}` is not device:metric")))?;
            check_slug("series", device)?;
            check_metric(metric)?;
            series.push((device.to_owned(), metric.to_owned()));
        }
        if series.len() > MAX_SERIES {
            return Err(ApiError::bad(format!(
                "series: {} series requested; at most {MAX_SERIES}",
                series.len()
            )));
        }
        let from_ns = parse_instant("from", self.from.as_deref().unwrap_or("-24h"), now_ns)?;
        let to_ns = parse_instant("to", self.to.as_deref().unwrap_or("now"), now_ns)?;
        if from_ns >= to_ns {
            return Err(ApiError::bad("from: must be before to"));
        }
        let window = to_ns - from_ns;
        if window > duration_ns("from", MAX_WINDOW)? {
            return Err(ApiError::bad("from: the range is longer than 31 days"));
        }
        let step_ns = match self.step.as_deref() {
            Some(s) => {
                let ns = duration_ns("step", parse_duration("step", s)?)?;
                if ns < NS_PER_S {
                    return Err(ApiError::bad("step: must be at least 1s"));
                }
                ns
            }
            // Whole seconds, so that buckets stay aligned to readable times.
            None => ((window / AUTO_POINTS).max(NS_PER_S) + NS_PER_S - 1) / NS_PER_S * NS_PER_S,
        };
        let buckets = window / step_ns + 2;
        if buckets > MAX_POINTS {
            return Err(ApiError::bad(format!(
                "step: {buckets} buckets over this range; at most {MAX_POINTS}: use a longer step"
            )));
        }
        let agg = Agg::parse(self.agg.as_deref().unwrap_or("avg"))?;
        Ok(SeriesRequest {
            series,
            from_ns,
            to_ns,
            step_ns,
            agg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_800_000_000 * NS_PER_MS;

    fn msg(e: ApiError) -> String {
        e.to_string()
    }

    #[test]
    fn instants() {
        assert_eq!(parse_instant("t", "now", NOW).unwrap(), NOW);
        assert_eq!(
            parse_instant("t", "-1h", NOW).unwrap(),
            NOW - 3600 * NS_PER_S
        );
        assert_eq!(
            parse_instant("t", "now-90m", NOW).unwrap(),
            NOW - 5400 * NS_PER_S
        );
        assert_eq!(parse_instant("t", "1000", NOW).unwrap(), 1000 * NS_PER_MS);
        assert_eq!(
            parse_instant("t", "1970-01-01T00:01:00Z", NOW).unwrap(),
            60 * NS_PER_S
        );
        assert!(msg(parse_instant("from", "yesterday", NOW).unwrap_err()).starts_with("from:"));
    }

    #[test]
    fn series_defaults_and_errors() {
        let p = SeriesParams {
            series: Some("aq-1:pm25, aq-2:pm10".into()),
            ..Default::default()
        };
        let r = p.parse(NOW).unwrap();
        assert_eq!(r.series.len(), 2);
        assert_eq!(r.to_ns - r.from_ns, 24 * 3600 * NS_PER_S);
        assert_eq!(r.step_ns, 120 * NS_PER_S);
        assert_eq!(r.agg, Agg::Avg);

        let bad = |p: SeriesParams| msg(p.parse(NOW).unwrap_err());
        assert!(bad(SeriesParams::default()).contains("series: required"));
        assert!(
            bad(SeriesParams {
                series: Some("aq-1".into()),
                ..Default::default()
            })
            .contains("not device:metric")
        );
        assert!(
            bad(SeriesParams {
                series: Some("AQ 1:pm25".into()),
                ..Default::default()
            })
            .contains("not a valid slug")
        );
        let ok = || SeriesParams {
            series: Some("aq-1:pm25".into()),
            ..Default::default()
        };
        assert!(
            bad(SeriesParams {
                agg: Some("median".into()),
                ..ok()
            })
            .contains("agg: unknown aggregate `median`")
        );
        assert!(
            bad(SeriesParams {
                step: Some("1s".into()),
                from: Some("-7d".into()),
                ..ok()
            })
            .contains("use a longer step")
        );
        assert!(
            bad(SeriesParams {
                from: Some("now".into()),
                to: Some("-1h".into()),
                ..ok()
            })
            .contains("before to")
        );
        assert!(
            bad(SeriesParams {
                step: Some("500ms".into()),
                ..ok()
            })
            .contains("at least 1s")
        );
        assert!(
            bad(SeriesParams {
                step: Some("fast".into()),
                ..ok()
            })
            .starts_with("step:")
        );
    }
}

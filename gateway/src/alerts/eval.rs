//! What each rule sees: one read of the hot tier per evaluation (devices, latest values,
//! AQI, stats: only what the rules need), turned into one [`Observation`] per alert
//! (rule, labels). The reads are the query API's own functions (`api::queries`), so an
//! alert and the dashboard never disagree about a value.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::config::{AqiIndex, Direction, Rule, Spec};
use super::state::Observation;
use super::store::Labels;
use crate::api::model::{AqiResponse, Device, LatestResponse, StatsResponse};
use crate::api::params::{AqiParams, DevicesParams, LatestParams, StatsParams};
use crate::api::{ApiError, queries};
use ingest::query::HotRead;

const NS_PER_S: i64 = 1_000_000_000;

/// The hot tier as one evaluation reads it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Evaluation time, unix ns.
    pub now_ns: i64,
    /// Every device.
    pub devices: Vec<Device>,
    /// Latest values with per-device detail (metric rules).
    pub latest: Option<LatestResponse>,
    /// Station indices (AQI rules).
    pub aqi: Option<AqiResponse>,
    /// Pipeline stats (pipeline rules).
    pub stats: Option<StatsResponse>,
    /// Message-log bytes not yet applied.
    pub log_backlog_bytes: u64,
    /// Whether the store refuses the configuration.
    pub store_config_error: bool,
}

/// Reads what `rules` need: devices, latest values and AQI from `store` when given (the
/// whole city as every gateway of a share group wrote it), else from the hot tier;
/// pipeline stats always from this gateway's own state.
pub fn gather(
    hot: &HotRead<'_>,
    store: Option<&crate::api::store::StoreSource>,
    rules: &[Rule],
    now_ns: i64,
    hours: &queries::HourCache,
) -> Result<Snapshot, ApiError> {
    let stale = queries::DEFAULT_STALE_AFTER;
    let need = |f: fn(&Spec) -> bool| rules.iter().any(|r| f(&r.spec));
    let mut s = Snapshot {
        now_ns,
        ..Snapshot::default()
    };
    let all = DevicesParams::default();
    s.devices = match store {
        Some(st) => st.devices(&all, now_ns, stale, &[])?,
        None => queries::devices(hot, &all, now_ns, stale, &[])?,
    }
    .devices;
    let max_age = rules
        .iter()
        .filter_map(|r| match r.spec {
            Spec::Metric { max_age_s, .. } => Some(max_age_s),
            _ => None,
        })
        .max();
    if let Some(max_age) = max_age {
        let p = LatestParams {
            max_age: Some(format!("{max_age}s")),
            detail: Some("true".into()),
            ..LatestParams::default()
        };
        s.latest = Some(match store {
            Some(st) => st.latest(&p, now_ns, &[])?,
            None => queries::latest(hot, &p, now_ns, &[])?,
        });
    }
    if need(|s| matches!(s, Spec::Aqi { .. })) {
        let p = AqiParams::default();
        s.aqi = Some(match store {
            Some(st) => st.aqi(&p, now_ns)?,
            None => queries::aqi(hot, &p, now_ns, hours)?,
        });
    }
    if need(|s| matches!(s, Spec::Pipeline { .. })) {
        s.stats = Some(queries::stats(hot, &StatsParams::default(), now_ns, stale)?);
    }
    Ok(s)
}

/// One alert's observation, with its labels and summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Labels (without `alertname` and `severity`, added by the caller).
    pub labels: Labels,
    /// The observation.
    pub obs: Observation,
    /// The `summary` annotation.
    pub summary: String,
}

/// Per-device counts of gaps and dropped readings over time, for `device-gaps`.
pub type GapHistory = HashMap<String, VecDeque<(i64, i64)>>;

fn device_labels(device: &str, district: Option<&str>, kind: Option<&str>) -> Labels {
    let mut l = Labels::new();
    l.insert("device".into(), device.into());
    if let Some(d) = district {
        l.insert("district".into(), d.into());
    }
    if let Some(k) = kind {
        l.insert("kind".into(), k.into());
    }
    l
}

fn keep(rule: &Rule, device: Option<&str>, district: Option<&str>, kind: Option<&str>) -> bool {
    rule.device.as_deref().is_none_or(|d| device == Some(d))
        && rule.district.as_deref().is_none_or(|d| district == Some(d))
        && rule.kind.as_deref().is_none_or(|k| kind == Some(k))
}

/// Whether local hour `h` is in `[from, to)`, wrapping midnight.
pub fn in_hours(h: u32, (from, to): (u32, u32)) -> bool {
    if from < to {
        (from..to).contains(&h)
    } else {
        h >= from || h < to
    }
}

/// The local hour of `now_ns`.
pub fn local_hour(now_ns: i64, offset_s: i32) -> u32 {
    let s = now_ns.div_euclid(NS_PER_S) + i64::from(offset_s);
    u32::try_from(s.rem_euclid(86_400) / 3600).unwrap_or(0)
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The observations of `rule` in `snap`.
pub fn observe(rule: &Rule, snap: &Snapshot, offset_s: i32, gaps: &mut GapHistory) -> Vec<Seen> {
    let margin = rule.resolve_margin;
    let now = snap.now_ns;
    let mut out = Vec::new();
    match &rule.spec {
        Spec::Metric {
            metric,
            direction,
            threshold,
            hours,
            max_age_s,
        } => {
            let Some(latest) = &snap.latest else {
                return out;
            };
            let in_window = hours.is_none_or(|h| in_hours(local_hour(now, offset_s), h));
            let oldest_ms = (now / 1_000_000).saturating_sub(
                i64::try_from(*max_age_s)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000),
            );
            for d in latest.devices.iter().flatten() {
                let district = (d.district != "unknown").then_some(d.district.as_str());
                let kind = (d.kind != "unknown").then_some(d.kind.as_str());
                if !keep(rule, Some(&d.device), district, kind) {
                    continue;
                }
                let Some(r) = d.values.get(metric) else {
                    continue;
                };
                if r.t_ms < oldest_ms {
                    continue;
                }
                let below = *direction == Direction::Below;
                let obs = if in_window {
                    Observation::against(r.v, *threshold, below, false, margin)
                } else {
                    Observation::gone(r.v)
                };
                out.push(Seen {
                    labels: device_labels(&d.device, district, kind),
                    obs,
                    summary: format!(
                        "{metric} of {} is {} ({} {})",
                        d.device,
                        fmt(r.v),
                        if below { "below" } else { "above" },
                        fmt(*threshold)
                    ),
                });
            }
        }
        Spec::DeviceOffline { silence_s } => {
            for d in &snap.devices {
                if !keep(
                    rule,
                    Some(&d.device),
                    d.district.as_deref(),
                    d.kind.as_deref(),
                ) {
                    continue;
                }
                let silent_s = d
                    .last_seen_ms
                    .map(|seen| ((now / 1_000_000 - seen).max(0) / 1000) as f64);
                let offline = d.status == "offline";
                let breached = offline || silent_s.is_some_and(|s| s >= *silence_s as f64);
                out.push(Seen {
                    labels: device_labels(&d.device, d.district.as_deref(), d.kind.as_deref()),
                    obs: Observation::flag(breached, silent_s.unwrap_or(0.0)),
                    summary: match silent_s {
                        Some(s) if offline => {
                            format!("{} is offline (silent for {} s)", d.device, fmt(s))
                        }
                        Some(s) => format!("{} has been silent for {} s", d.device, fmt(s)),
                        None => format!("{} is offline", d.device),
                    },
                });
            }
        }
        Spec::DeviceGaps { window_s, above } => {
            let window_ns = i64::try_from(*window_s)
                .unwrap_or(i64::MAX)
                .saturating_mul(NS_PER_S);
            for d in &snap.devices {
                let count = d.gaps.saturating_add(d.dropped_readings);
                let h = gaps.entry(d.device.clone()).or_default();
                if h.is_empty()
                    && let Some(first_ms) = d.first_seen_ms
                    && now - first_ms.saturating_mul(1_000_000) <= window_ns
                {
                    // A device first seen inside the window: everything it lost since
                    // counts, including what came before the evaluator first saw it.
                    h.push_back((first_ms.saturating_mul(1_000_000), 0));
                }
                h.push_back((now, count));
                while h.len() > 1 && h.front().is_some_and(|(t, _)| now - t > window_ns) {
                    h.pop_front();
                }
                if h.len() > 10_000 {
                    h.pop_front();
                }
                if !keep(
                    rule,
                    Some(&d.device),
                    d.district.as_deref(),
                    d.kind.as_deref(),
                ) {
                    continue;
                }
                let first = h.front().map_or(count, |(_, c)| *c);
                // A counter that went down (device state reset) counts from zero.
                let increase = if count >= first { count - first } else { count };
                out.push(Seen {
                    labels: device_labels(&d.device, d.district.as_deref(), d.kind.as_deref()),
                    obs: Observation::against(increase as f64, *above, false, false, margin),
                    summary: format!(
                        "{} lost {increase} messages or readings in the last {window_s} s",
                        d.device
                    ),
                });
            }
            let known: std::collections::HashSet<&str> =
                snap.devices.iter().map(|d| d.device.as_str()).collect();
            gaps.retain(|k, _| known.contains(k.as_str()));
        }
        Spec::DistrictReporting { at_least } => {
            let mut by_district: BTreeMap<&str, u64> = BTreeMap::new();
            for d in &snap.devices {
                let Some(district) = d.district.as_deref() else {
                    continue;
                };
                if !keep(rule, None, Some(district), d.kind.as_deref()) {
                    continue;
                }
                *by_district.entry(district).or_default() += u64::from(!d.stale);
            }
            for (district, n) in by_district {
                let mut labels = Labels::new();
                labels.insert("district".into(), district.into());
                if let Some(k) = &rule.kind {
                    labels.insert("kind".into(), k.clone());
                }
                out.push(Seen {
                    labels,
                    obs: Observation::against(n as f64, *at_least, true, false, margin),
                    summary: format!(
                        "{n} stations of {district} reporting (fewer than {})",
                        fmt(*at_least)
                    ),
                });
            }
        }
        Spec::Aqi {
            index,
            daily,
            per_district,
            at_least,
        } => {
            let Some(aqi) = &snap.aqi else {
                return out;
            };
            let name = match (index, daily) {
                (AqiIndex::Vn, false) => "hourly VN_AQI",
                (AqiIndex::Vn, true) => "daily VN_AQI",
                (AqiIndex::Epa, false) => "US AQI (NowCast)",
                (AqiIndex::Epa, true) => "daily US AQI",
            };
            let mut districts: BTreeMap<String, (f64, String)> = BTreeMap::new();
            for s in &aqi.stations {
                if !keep(rule, Some(&s.device), s.district.as_deref(), None) {
                    continue;
                }
                let v = match (index, daily) {
                    (AqiIndex::Vn, false) => &s.vn_aqi_hourly,
                    (AqiIndex::Vn, true) => &s.vn_aqi_daily,
                    (AqiIndex::Epa, false) => &s.us_aqi_nowcast,
                    (AqiIndex::Epa, true) => &s.us_aqi_daily,
                };
                let Some(v) = v else { continue };
                let value = f64::from(v.value);
                if *per_district {
                    if let Some(d) = &s.district {
                        let e = districts
                            .entry(d.clone())
                            .or_insert((value, s.device.clone()));
                        if value > e.0 {
                            *e = (value, s.device.clone());
                        }
                    }
                    continue;
                }
                let mut labels = Labels::new();
                labels.insert("device".into(), s.device.clone());
                if let Some(d) = &s.district {
                    labels.insert("district".into(), d.clone());
                }
                out.push(Seen {
                    labels,
                    obs: Observation::against(value, *at_least, false, true, margin),
                    summary: format!("{name} of {} is {} ({})", s.device, v.value, v.category_en),
                });
            }
            for (district, (value, worst)) in districts {
                let mut labels = Labels::new();
                labels.insert("district".into(), district.clone());
                out.push(Seen {
                    labels,
                    obs: Observation::against(value, *at_least, false, true, margin),
                    summary: format!("{name} of {district} is {} (station {worst})", fmt(value)),
                });
            }
        }
        Spec::Pipeline { signal, above } => {
            use super::config::Signal;
            let value = match signal {
                Signal::OutboxBytes => snap.stats.as_ref().map(|s| s.outbox_bytes as f64),
                Signal::StoreLagS => snap.stats.as_ref().map(|s| s.store_lag_s),
                Signal::DeadLettersPerHour => {
                    snap.stats.as_ref().map(|s| s.dead_letters_last_hour as f64)
                }
                Signal::LogBacklogBytes => Some(snap.log_backlog_bytes as f64),
                Signal::StoreConfigError => Some(f64::from(u8::from(snap.store_config_error))),
            };
            if let Some(value) = value {
                let mut labels = Labels::new();
                labels.insert("signal".into(), signal.name().into());
                out.push(Seen {
                    labels,
                    obs: Observation::against(value, *above, false, false, margin),
                    summary: format!(
                        "{} is {} (above {})",
                        signal.name(),
                        fmt(value),
                        fmt(*above)
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hours_wrap_midnight() {
        // 2025-01-01T15:30:00Z is 22:30 in Hanoi.
        let ns = 1_735_745_400 * NS_PER_S;
        assert_eq!(local_hour(ns, 7 * 3600), 22);
        assert!(in_hours(22, (22, 6)));
        assert!(in_hours(3, (22, 6)));
        assert!(!in_hours(6, (22, 6)));
        assert!(!in_hours(12, (22, 6)));
        assert!(in_hours(12, (8, 18)));
    }
}

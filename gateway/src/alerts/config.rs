//! The `[alerts]` table and its `[[alerts.rules]]` and `[[alerts.webhooks]]`: their shape
//! with every key's default, and [`AlertsConfig::compile`], which checks every value and
//! names the offending key (`alerts.rules[2].for_s: ...`) before anything starts.

use serde::Deserialize;

use crate::config::Secret;

/// `[alerts]`: rule evaluation, history and notifications. With no rule nothing runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Seconds between two evaluations of every rule. Default: 30.
    pub interval_s: u64,
    /// A still-firing alert is notified again after this many seconds. Default: 3600.
    pub repeat_interval_s: u64,
    /// Resolved alerts older than this many seconds leave the history. Default: 2592000
    /// (30 days).
    pub history_max_age_s: u64,
    /// Most rows kept in the history (the oldest resolved ones go first). Default: 10000.
    pub history_max_rows: u64,
    /// Local time of `hours` windows, `+HH:MM` or `-HH:MM`. Default: none, i.e.
    /// `ingest.tasmota_utc_offset` (itself `+07:00` by default).
    pub utc_offset: Option<String>,
    /// Default `resolve_margin` of the rules: a firing alert resolves only once its value
    /// is this fraction of the threshold beyond it. Default: 0.05.
    pub resolve_margin: f64,
    /// Default `resolve_for_s` of the rules: how long the condition must stay clear
    /// before a firing alert resolves. Default: 60.
    pub resolve_for_s: u64,
    /// Base URL of this gateway in notifications (`externalURL`, `generatorURL`).
    /// Default: `http://` and `http.listen`.
    pub external_url: Option<String>,
    /// Publish every notification (firing, repeat, resolved) to the broker the gateway
    /// consumes from, QoS 1, not retained. Default: true (the gateway always has a broker).
    pub mqtt_enabled: bool,
    /// Topic of those notifications; `{district}` is replaced by the alert's `district`
    /// label. Default: `city/{district}/alerts`.
    pub mqtt_topic: String,
    /// What replaces `{district}` for an alert without a `district` label (a pipeline
    /// alert, a device outside the city's topics). Default: `_city`, i.e.
    /// `city/_city/alerts`.
    pub mqtt_district_fallback: String,
    /// `[[alerts.webhooks]]`: receivers of Alertmanager-shaped JSON. Default: none.
    pub webhooks: Vec<WebhookConfig>,
    /// `[[alerts.rules]]`. Default: none.
    pub rules: Vec<RuleConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            interval_s: 30,
            repeat_interval_s: 3600,
            history_max_age_s: 30 * 24 * 3600,
            history_max_rows: 10_000,
            utc_offset: None,
            resolve_margin: 0.05,
            resolve_for_s: 60,
            external_url: None,
            mqtt_enabled: true,
            mqtt_topic: "city/{district}/alerts".into(),
            mqtt_district_fallback: "_city".into(),
            webhooks: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// `[[alerts.webhooks]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The receiver's name (`receiver` in the body). Default: `webhook-N` (N from 0).
    pub name: Option<String>,
    /// `http://` or `https://` URL the JSON is POSTed to. Required.
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN`; never logged. Default: none.
    pub token: Option<Secret>,
    /// Per-request timeout in seconds. Default: 10.
    pub timeout_s: u64,
    /// Attempts per notification before it is given up (counted failed). Default: 5.
    pub max_attempts: u32,
    /// First wait before a retry in milliseconds; doubles up to `retry_max_ms`.
    /// Default: 1000.
    pub retry_min_ms: u64,
    /// Longest wait before a retry in milliseconds. Default: 60000.
    pub retry_max_ms: u64,
    /// Notifications waiting for this receiver beyond which the oldest is dropped (and
    /// counted failed). Default: 1000.
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            name: None,
            url: String::new(),
            token: None,
            timeout_s: 10,
            max_attempts: 5,
            retry_min_ms: 1000,
            retry_max_ms: 60_000,
            queue: 1000,
        }
    }
}

/// A threshold given as a number or, for AQI rules, a category name (`bad`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    /// A number.
    Number(f64),
    /// An AQI category key: `good`, `moderate`, `poor`, `bad`, `very_bad`, `hazardous`.
    Category(String),
}

/// `[[alerts.rules]]`: one table for every type; keys that do not apply to the `type`
/// are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// Unique name: the alert's `alertname`. Required.
    pub name: String,
    /// `aqi`, `metric`, `device-offline`, `device-gaps`, `district-reporting`, `pipeline`.
    /// Required.
    #[serde(rename = "type")]
    pub rule_type: String,
    /// How long the condition must hold before the alert fires, in seconds (for
    /// `device-offline`: how long the device is silent). Default: 0 (600 for
    /// `device-offline`).
    pub for_s: Option<u64>,
    /// Overrides `alerts.resolve_for_s`.
    pub resolve_for_s: Option<u64>,
    /// Overrides `alerts.resolve_margin`.
    pub resolve_margin: Option<f64>,
    /// The `severity` label. Default: `warning`.
    pub severity: Option<String>,
    /// The `description` annotation. Default: none.
    pub description: Option<String>,
    /// Only devices (or districts) of this district. Default: all.
    pub district: Option<String>,
    /// Only devices of this kind (`airquality`, `noise`, ...). Default: all.
    pub kind: Option<String>,
    /// Only this device. Default: all.
    pub device: Option<String>,
    /// `aqi`: `vn` (VN_AQI, Decision 1459) or `epa` (US AQI). Default: `vn`.
    pub index: Option<String>,
    /// `aqi`: `hourly` (VN hourly / EPA NowCast) or `daily` (24-hour means).
    /// Default: `hourly`.
    pub period: Option<String>,
    /// `aqi`: `station` (each station) or `district` (each district's highest station).
    /// Default: `station`.
    pub scope: Option<String>,
    /// `aqi`: the index (or category name) at or above which it fires;
    /// `district-reporting`: the fewest stations reporting before it fires. Required
    /// for those.
    pub at_least: Option<Threshold>,
    /// `metric`: the catalog metric. Required for `metric`.
    pub metric: Option<String>,
    /// `metric`, `device-gaps` (default 0), `pipeline`: fires above this.
    pub above: Option<f64>,
    /// `metric`: fires below this (instead of `above`).
    pub below: Option<f64>,
    /// `metric`: only within these local hours, `"22-06"` (22:00 to 06:00). Default: all day.
    pub hours: Option<String>,
    /// `metric`: readings older than this many seconds are ignored. Default: 300.
    pub max_age_s: Option<u64>,
    /// `device-gaps`: the window in seconds over which gaps and dropped readings add up.
    /// Default: 3600.
    pub window_s: Option<u64>,
    /// `pipeline`: `outbox_bytes`, `log_backlog_bytes`, `store_lag_s`,
    /// `dead_letters_per_hour` or `store_config_error`. Required for `pipeline`.
    pub signal: Option<String>,
}

/// The AQI scale of an `aqi` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AqiIndex {
    /// VN_AQI.
    Vn,
    /// US EPA AQI.
    Epa,
}

/// Above or below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Fires when the value is above the threshold (at or above for `at_least`).
    Above,
    /// Fires when the value is below the threshold.
    Below,
}

/// A pipeline signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Outbox bytes waiting for the store.
    OutboxBytes,
    /// Message-log bytes not yet applied.
    LogBacklogBytes,
    /// Age of the oldest outbox entry, seconds.
    StoreLagS,
    /// Dead letters in the last hour.
    DeadLettersPerHour,
    /// 1 while the store refuses the configuration (auth, bucket), else 0.
    StoreConfigError,
}

impl Signal {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OutboxBytes => "outbox_bytes",
            Self::LogBacklogBytes => "log_backlog_bytes",
            Self::StoreLagS => "store_lag_s",
            Self::DeadLettersPerHour => "dead_letters_per_hour",
            Self::StoreConfigError => "store_config_error",
        }
    }
}

/// What a rule watches, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// An AQI at or above `at_least`.
    Aqi {
        /// Scale.
        index: AqiIndex,
        /// 24-hour means instead of hourly.
        daily: bool,
        /// Per district (highest station) instead of per station.
        per_district: bool,
        /// Threshold.
        at_least: f64,
    },
    /// A catalog metric of each device beyond a threshold.
    Metric {
        /// The metric.
        metric: String,
        /// Above or below.
        direction: Direction,
        /// Threshold.
        threshold: f64,
        /// Local hours `[from, to)` (wrapping midnight when `from > to`).
        hours: Option<(u32, u32)>,
        /// Readings older than this are ignored, seconds.
        max_age_s: u64,
    },
    /// A device offline or silent for `silence_s`.
    DeviceOffline {
        /// Seconds of silence.
        silence_s: u64,
    },
    /// More than `above` gaps and dropped readings within `window_s`.
    DeviceGaps {
        /// Window, seconds.
        window_s: u64,
        /// Count.
        above: f64,
    },
    /// Fewer than `at_least` stations of a district reporting.
    DistrictReporting {
        /// Count.
        at_least: f64,
    },
    /// A pipeline signal above a threshold.
    Pipeline {
        /// Which.
        signal: Signal,
        /// Threshold.
        above: f64,
    },
}

/// A rule, checked and ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Name (`alertname`).
    pub name: String,
    /// The configuration's `type`.
    pub rule_type: String,
    /// What it watches.
    pub spec: Spec,
    /// Hold before firing, seconds.
    pub for_s: u64,
    /// Clear time before resolving, seconds.
    pub resolve_for_s: u64,
    /// Hysteresis, a fraction of the threshold.
    pub resolve_margin: f64,
    /// `severity` label.
    pub severity: String,
    /// `description` annotation.
    pub description: Option<String>,
    /// District filter.
    pub district: Option<String>,
    /// Kind filter.
    pub kind: Option<String>,
    /// Device filter.
    pub device: Option<String>,
}

impl Rule {
    /// The threshold the rule compares with (for `device-offline`, its seconds of
    /// silence).
    pub fn threshold(&self) -> f64 {
        match &self.spec {
            Spec::Aqi { at_least, .. } => *at_least,
            Spec::Metric { threshold, .. } => *threshold,
            Spec::DeviceOffline { silence_s } => *silence_s as f64,
            Spec::DeviceGaps { above, .. } => *above,
            Spec::DistrictReporting { at_least } => *at_least,
            Spec::Pipeline { above, .. } => *above,
        }
    }

    /// The condition the value is compared with, as the `threshold` annotation shows it:
    /// `>= 151` (aqi), `> 35` or `< 10` (metric, pipeline), `silent >= 600 s`
    /// (device-offline), `> 0 in 3600 s` (device-gaps), `< 3` (district-reporting).
    pub fn threshold_text(&self) -> String {
        let n = threshold_number;
        match &self.spec {
            Spec::Aqi { at_least, .. } => format!(">= {}", n(*at_least)),
            Spec::Metric {
                direction: Direction::Above,
                threshold,
                ..
            } => format!("> {}", n(*threshold)),
            Spec::Metric {
                direction: Direction::Below,
                threshold,
                ..
            } => format!("< {}", n(*threshold)),
            Spec::DeviceOffline { silence_s } => format!("silent >= {silence_s} s"),
            Spec::DeviceGaps { window_s, above } => format!("> {} in {window_s} s", n(*above)),
            Spec::DistrictReporting { at_least } => format!("< {}", n(*at_least)),
            Spec::Pipeline { above, .. } => format!("> {}", n(*above)),
        }
    }
}

/// A threshold as written in annotations and exported rules: integral values without a
/// decimal point (`151`), others as they are (`12.5`).
pub fn threshold_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The checked `[alerts]` table.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Rules.
    pub rules: Vec<Rule>,
    /// Local time offset, seconds east of UTC.
    pub utc_offset_s: i32,
}

/// A bad alert setting: its full key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// E.g. `alerts.rules[2].for_s`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> KeyError {
    KeyError {
        key: key.into(),
        message: message.into(),
    }
}

/// The lowest index of an AQI category.
pub fn category_floor(name: &str) -> Option<f64> {
    Some(match name {
        "good" => 0.0,
        "moderate" => 51.0,
        "poor" => 101.0,
        "bad" => 151.0,
        "very_bad" => 201.0,
        "hazardous" => 301.0,
        _ => return None,
    })
}

/// `"22-06"` as (22, 6).
pub fn parse_hours(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-')?;
    let a: u32 = a.trim().parse().ok()?;
    let b: u32 = b.trim().parse().ok()?;
    (a < 24 && b <= 24 && a != b).then_some((a, b))
}

/// `+HH:MM` / `-HH:MM` in seconds east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = s[1..].split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl AlertsConfig {
    /// Checks every value; `tasmota_utc_offset` is the default local time.
    pub fn compile(&self, tasmota_utc_offset: &str) -> Result<Compiled, KeyError> {
        if self.interval_s == 0 || self.interval_s > 86_400 {
            return Err(err("alerts.interval_s", "must be 1 to 86400"));
        }
        if self.repeat_interval_s == 0 {
            return Err(err("alerts.repeat_interval_s", "must be at least 1"));
        }
        if self.history_max_age_s == 0 {
            return Err(err("alerts.history_max_age_s", "must be at least 1"));
        }
        if self.history_max_rows == 0 {
            return Err(err("alerts.history_max_rows", "must be at least 1"));
        }
        check_margin("alerts.resolve_margin", self.resolve_margin)?;
        let offset_text = self.utc_offset.as_deref().unwrap_or(tasmota_utc_offset);
        let utc_offset_s = parse_utc_offset(offset_text).ok_or_else(|| {
            err(
                "alerts.utc_offset",
                format!("{offset_text:?} is not an offset like +07:00"),
            )
        })?;
        if let Some(u) = &self.external_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(err(
                "alerts.external_url",
                "must be an http:// or https:// URL",
            ));
        }
        crate::public::check_template(&self.mqtt_topic, &["district"])
            .map_err(|m| err("alerts.mqtt_topic", m))?;
        let fallback = &self.mqtt_district_fallback;
        if fallback.is_empty() || fallback.contains(['/', '+', '#', '\0']) {
            return Err(err(
                "alerts.mqtt_district_fallback",
                "must be one non-empty topic level (no `/`, `+`, `#`)",
            ));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let k = |f: &str| format!("alerts.webhooks[{i}].{f}");
            let ok = (w.url.starts_with("http://") || w.url.starts_with("https://"))
                && url::Url::parse(&w.url).is_ok();
            if !ok {
                return Err(err(k("url"), "must be an http:// or https:// URL"));
            }
            if w.url.starts_with("https://") {
                return Err(err(
                    k("url"),
                    "https:// is not supported: the gateway's HTTP client is built without TLS; \
                     use an http:// receiver on a trusted network (or a local relay)",
                ));
            }
            if w.timeout_s == 0 {
                return Err(err(k("timeout_s"), "must be at least 1"));
            }
            if w.max_attempts == 0 {
                return Err(err(k("max_attempts"), "must be at least 1"));
            }
            if w.retry_min_ms == 0 || w.retry_min_ms > w.retry_max_ms {
                return Err(err(
                    k("retry_min_ms"),
                    "must be above 0 and at most retry_max_ms",
                ));
            }
            if w.queue == 0 {
                return Err(err(k("queue"), "must be at least 1"));
            }
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let rule = self.compile_rule(i, r)?;
            if rules.iter().any(|o| o.name == rule.name) {
                return Err(err(
                    format!("alerts.rules[{i}].name"),
                    format!("`{}` is the name of an earlier rule", rule.name),
                ));
            }
            rules.push(rule);
        }
        Ok(Compiled {
            rules,
            utc_offset_s,
        })
    }

    fn compile_rule(&self, i: usize, r: &RuleConfig) -> Result<Rule, KeyError> {
        let k = |f: &str| format!("alerts.rules[{i}].{f}");
        if !is_slug(&r.name) {
            return Err(err(
                k("name"),
                "required: 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        // Which optional keys each type takes.
        let allowed: &[&str] = match r.rule_type.as_str() {
            "aqi" => &["index", "period", "scope", "at_least", "district", "device"],
            "metric" => &[
                "metric",
                "above",
                "below",
                "hours",
                "max_age_s",
                "district",
                "kind",
                "device",
            ],
            "device-offline" => &["district", "kind", "device"],
            "device-gaps" => &["above", "window_s", "district", "kind", "device"],
            "district-reporting" => &["at_least", "district", "kind"],
            "pipeline" => &["signal", "above"],
            "" => return Err(err(k("type"), "required")),
            other => {
                return Err(err(
                    k("type"),
                    format!(
                        "`{other}` is not one of aqi, metric, device-offline, device-gaps, \
                         district-reporting, pipeline"
                    ),
                ));
            }
        };
        let set = [
            ("index", r.index.is_some()),
            ("period", r.period.is_some()),
            ("scope", r.scope.is_some()),
            ("at_least", r.at_least.is_some()),
            ("metric", r.metric.is_some()),
            ("above", r.above.is_some()),
            ("below", r.below.is_some()),
            ("hours", r.hours.is_some()),
            ("max_age_s", r.max_age_s.is_some()),
            ("window_s", r.window_s.is_some()),
            ("signal", r.signal.is_some()),
            ("district", r.district.is_some()),
            ("kind", r.kind.is_some()),
            ("device", r.device.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(key, on)| *on && !allowed.contains(key)) {
            return Err(err(
                k(key),
                format!("does not apply to a rule of type `{}`", r.rule_type),
            ));
        }
        for (key, v) in [
            ("district", &r.district),
            ("kind", &r.kind),
            ("device", &r.device),
        ] {
            if let Some(v) = v
                && !is_slug(v)
            {
                return Err(err(k(key), format!("`{v}` is not a valid name")));
            }
        }
        let finite = |key: &str, v: Option<f64>| -> Result<Option<f64>, KeyError> {
            match v {
                Some(x) if !x.is_finite() => Err(err(k(key), "must be a finite number")),
                other => Ok(other),
            }
        };
        let above = finite("above", r.above)?;
        let below = finite("below", r.below)?;
        let number = |key: &str| -> Result<f64, KeyError> {
            match &r.at_least {
                None => Err(err(k(key), "required")),
                Some(Threshold::Number(x)) if x.is_finite() && *x >= 0.0 => Ok(*x),
                Some(Threshold::Number(_)) => Err(err(k(key), "must be a number of 0 or more")),
                Some(Threshold::Category(c)) => Err(err(
                    k(key),
                    format!("`{c}`: a category name is for aqi rules only"),
                )),
            }
        };
        let spec = match r.rule_type.as_str() {
            "aqi" => {
                let index = match r.index.as_deref().unwrap_or("vn") {
                    "vn" => AqiIndex::Vn,
                    "epa" => AqiIndex::Epa,
                    o => return Err(err(k("index"), format!("`{o}` is not vn or epa"))),
                };
                let daily = match r.period.as_deref().unwrap_or("hourly") {
                    "hourly" | "nowcast" => false,
                    "daily" => true,
                    o => {
                        return Err(err(
                            k("period"),
                            format!("`{o}` is not hourly (NowCast) or daily"),
                        ));
                    }
                };
                let per_district = match r.scope.as_deref().unwrap_or("station") {
                    "station" => false,
                    "district" => true,
                    o => {
                        return Err(err(k("scope"), format!("`{o}` is not station or district")));
                    }
                };
                let at_least = match &r.at_least {
                    Some(Threshold::Category(c)) => category_floor(c).ok_or_else(|| {
                        err(
                            k("at_least"),
                            format!(
                                "`{c}` is not a category (good, moderate, poor, bad, very_bad, \
                                 hazardous)"
                            ),
                        )
                    })?,
                    _ => {
                        let v = number("at_least")?;
                        if v > 500.0 {
                            return Err(err(k("at_least"), "an AQI is at most 500"));
                        }
                        v
                    }
                };
                Spec::Aqi {
                    index,
                    daily,
                    per_district,
                    at_least,
                }
            }
            "metric" => {
                let metric = r
                    .metric
                    .clone()
                    .ok_or_else(|| err(k("metric"), "required"))?;
                if schemas::catalog::lookup(&metric).is_none() {
                    return Err(err(
                        k("metric"),
                        format!("`{metric}` is not a metric of the catalog (schemas::catalog)"),
                    ));
                }
                let (direction, threshold) = match (above, below) {
                    (Some(a), None) => (Direction::Above, a),
                    (None, Some(b)) => (Direction::Below, b),
                    (Some(_), Some(_)) => {
                        return Err(err(k("below"), "set above or below, not both"));
                    }
                    (None, None) => return Err(err(k("above"), "required (or below)")),
                };
                let hours = match &r.hours {
                    None => None,
                    Some(h) => Some(parse_hours(h).ok_or_else(|| {
                        err(
                            k("hours"),
                            format!("`{h}` is not a range of local hours like \"22-06\""),
                        )
                    })?),
                };
                let max_age_s = r.max_age_s.unwrap_or(300);
                if max_age_s == 0 {
                    return Err(err(k("max_age_s"), "must be at least 1"));
                }
                Spec::Metric {
                    metric,
                    direction,
                    threshold,
                    hours,
                    max_age_s,
                }
            }
            "device-offline" => Spec::DeviceOffline {
                silence_s: r.for_s.unwrap_or(600),
            },
            "device-gaps" => {
                let window_s = r.window_s.unwrap_or(3600);
                if window_s == 0 {
                    return Err(err(k("window_s"), "must be at least 1"));
                }
                let above = above.unwrap_or(0.0);
                if above < 0.0 {
                    return Err(err(k("above"), "must be 0 or more"));
                }
                Spec::DeviceGaps { window_s, above }
            }
            "district-reporting" => Spec::DistrictReporting {
                at_least: number("at_least")?,
            },
            _ => {
                let signal = match r.signal.as_deref() {
                    None => return Err(err(k("signal"), "required")),
                    Some("outbox_bytes") => Signal::OutboxBytes,
                    Some("log_backlog_bytes") => Signal::LogBacklogBytes,
                    Some("store_lag_s") => Signal::StoreLagS,
                    Some("dead_letters_per_hour") => Signal::DeadLettersPerHour,
                    Some("store_config_error") => Signal::StoreConfigError,
                    Some(o) => {
                        return Err(err(
                            k("signal"),
                            format!(
                                "`{o}` is not one of outbox_bytes, log_backlog_bytes, \
                                 store_lag_s, dead_letters_per_hour, store_config_error"
                            ),
                        ));
                    }
                };
                let above = match (signal, above) {
                    (Signal::StoreConfigError, a) => a.unwrap_or(0.0),
                    (_, Some(a)) => a,
                    (_, None) => return Err(err(k("above"), "required")),
                };
                Spec::Pipeline { signal, above }
            }
        };
        // device-offline's for_s is the silence itself: it fires at once.
        let for_s = match spec {
            Spec::DeviceOffline { silence_s } => {
                if silence_s == 0 {
                    return Err(err(k("for_s"), "must be at least 1 (seconds of silence)"));
                }
                0
            }
            _ => r.for_s.unwrap_or(0),
        };
        if for_s > 30 * 86_400 {
            return Err(err(k("for_s"), "must be at most 2592000 (30 days)"));
        }
        let resolve_for_s = r.resolve_for_s.unwrap_or(self.resolve_for_s);
        if resolve_for_s > 30 * 86_400 {
            return Err(err(k("resolve_for_s"), "must be at most 2592000 (30 days)"));
        }
        let resolve_margin = r.resolve_margin.unwrap_or(self.resolve_margin);
        check_margin(&k("resolve_margin"), resolve_margin)?;
        let severity = r.severity.clone().unwrap_or_else(|| "warning".into());
        if !is_slug(&severity) {
            return Err(err(k("severity"), "must be a short name like warning"));
        }
        Ok(Rule {
            name: r.name.clone(),
            rule_type: r.rule_type.clone(),
            spec,
            for_s,
            resolve_for_s,
            resolve_margin,
            severity,
            description: r.description.clone(),
            district: r.district.clone(),
            kind: r.kind.clone(),
            device: r.device.clone(),
        })
    }
}

fn check_margin(key: &str, m: f64) -> Result<(), KeyError> {
    if !(0.0..1.0).contains(&m) {
        return Err(err(key, "must be at least 0 and below 1 (a fraction)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(toml_text: &str) -> Result<Compiled, KeyError> {
        let c: AlertsConfig = toml::from_str(toml_text).unwrap();
        c.compile("+07:00")
    }

    #[test]
    fn rules_of_every_type_compile() {
        let c = compile(
            r#"
interval_s = 5
[[rules]]
name = "aqi-bad"
type = "aqi"
scope = "district"
at_least = "bad"
for_s = 600
[[rules]]
name = "night-noise"
type = "metric"
metric = "LAeq"
above = 70
hours = "22-06"
[[rules]]
name = "offline"
type = "device-offline"
for_s = 900
[[rules]]
name = "gaps"
type = "device-gaps"
above = 10
[[rules]]
name = "reporting"
type = "district-reporting"
at_least = 2
[[rules]]
name = "outbox"
type = "pipeline"
signal = "outbox_bytes"
above = 1e8
"#,
        )
        .unwrap();
        assert_eq!(c.rules.len(), 6);
        assert_eq!(c.utc_offset_s, 7 * 3600);
        assert!(matches!(
            c.rules[0].spec,
            Spec::Aqi { at_least, per_district: true, .. } if at_least == 151.0
        ));
        assert!(matches!(
            c.rules[1].spec,
            Spec::Metric {
                hours: Some((22, 6)),
                ..
            }
        ));
        assert_eq!(c.rules[2].for_s, 0);
        assert_eq!(c.rules[2].spec, Spec::DeviceOffline { silence_s: 900 });
        assert_eq!(c.rules[0].resolve_for_s, 60);
        let shown: Vec<String> = c.rules.iter().map(Rule::threshold_text).collect();
        assert_eq!(
            shown,
            [
                ">= 151",
                "> 70",
                "silent >= 900 s",
                "> 10 in 3600 s",
                "< 2",
                "> 100000000"
            ]
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e =
            compile("[[rules]]\nname = \"a\"\ntype = \"metric\"\nmetric = \"nope\"\nabove = 1\n")
                .unwrap_err();
        assert_eq!(e.key, "alerts.rules[0].metric");
        let e = compile(
            "[[rules]]\nname = \"a\"\ntype = \"pipeline\"\nsignal = \"outbox_bytes\"\nabove = 1\n\
             [[rules]]\nname = \"b\"\ntype = \"device-offline\"\nabove = 3\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "alerts.rules[1].above");
        let e =
            compile("[[rules]]\nname = \"a\"\ntype = \"aqi\"\nat_least = \"awful\"\n").unwrap_err();
        assert_eq!(e.key, "alerts.rules[0].at_least");
        let e = compile("[[rules]]\nname = \"a\"\ntype = \"metric\"\nmetric = \"pm25\"\nabove = 1\nhours = \"25-3\"\n")
            .unwrap_err();
        assert_eq!(e.key, "alerts.rules[0].hours");
        let e =
            compile("[[rules]]\nname = \"a\"\ntype = \"device-offline\"\nfor_s = 0\n").unwrap_err();
        assert_eq!(e.key, "alerts.rules[0].for_s");
        let e = compile("[[webhooks]]\nurl = \"ftp://x\"\n").unwrap_err();
        assert_eq!(e.key, "alerts.webhooks[0].url");
        let e = compile("utc_offset = \"7\"\n").unwrap_err();
        assert_eq!(e.key, "alerts.utc_offset");
        let e = compile(
            "[[rules]]\nname = \"a\"\ntype = \"pipeline\"\nsignal = \"outbox_bytes\"\nabove = 1\n\
             [[rules]]\nname = \"a\"\ntype = \"pipeline\"\nsignal = \"store_lag_s\"\nabove = 1\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "alerts.rules[1].name");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e =
            toml::from_str::<AlertsConfig>("[[rules]]\nname = \"a\"\nthreshold = 3\n").unwrap_err();
        assert!(e.to_string().contains("threshold"), "{e}");
    }

    #[test]
    fn offsets_and_hours() {
        assert_eq!(parse_utc_offset("+07:00"), Some(25_200));
        assert_eq!(parse_utc_offset("-03:30"), Some(-12_600));
        assert_eq!(parse_utc_offset("07:00"), None);
        assert_eq!(parse_hours("22-06"), Some((22, 6)));
        assert_eq!(parse_hours("6-6"), None);
    }
}

//! The public AQI feed: the current air-quality index of every district and every
//! station, for anyone (street displays, apps, other city systems).
//!
//! - Over MQTT: retained, QoS 1, on `city/{district}/aqi` (the district's highest station)
//!   and `city/{district}/{kind}/{device}/aqi` (each station), published by the gateway on
//!   its own connection ([`crate::consumer::Publisher`]). A thread re-evaluates every
//!   `public.interval_s` when readings were applied since (or the clock hour changed) and
//!   publishes only the topics whose index, category or dominant pollutant changed; a topic
//!   whose station no longer has an index gets an empty retained message (which clears it).
//! - Over HTTP: `GET /public/aqi` (the same entries as JSON) and `GET /public`,
//!   `GET /public/{district}` (a page for a street display); see [`crate::api::public`].
//!   Both are open even when the API needs a token: they show only what the MQTT feed
//!   publishes anyway.
//!
//! The index is VN_AQI hourly (Decision 1459, from the 12-hour NowCasts), with the US EPA
//! AQI (NowCast) beside it; both are computed as `GET /api/aqi` computes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::ReadPool;
use crate::api::model::{AqiResponse, AqiValue};
use crate::api::params::AqiParams;
use crate::api::queries::{self, HourCache};
use crate::consumer::Publisher;

/// `[public]`: the public AQI feed over MQTT and HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicConfig {
    /// Publish the feed over MQTT (retained, QoS 1). Default: true.
    pub mqtt_enabled: bool,
    /// Seconds between two evaluations of the feed. Default: 60.
    pub interval_s: u64,
    /// Topic of a district's AQI; `{district}` is replaced. Default: `city/{district}/aqi`.
    pub district_topic: String,
    /// Topic of a station's AQI; `{district}`, `{kind}` and `{device}` are replaced.
    /// Default: `city/{district}/{kind}/{device}/aqi`.
    pub station_topic: String,
    /// Serve `GET /public/aqi`, `GET /public` and `GET /public/{district}` without a
    /// token. Default: true.
    pub http_enabled: bool,
    /// `Cache-Control: public, max-age=` of `/public/aqi`, and how long its answer is
    /// reused, in seconds. Default: 30.
    pub cache_s: u64,
    /// Also write the feed's values to the time-series store, when one is configured (in a
    /// share group, only when the feed reads the store: `query.source`), as the series
    /// `aqi_value{scope, index, district, device, kind}` (see [`store_lines`]), so that
    /// Grafana and the store's own alerting see the numbers the gateway shows. Default: true.
    pub store_enabled: bool,
}

impl Default for PublicConfig {
    fn default() -> Self {
        Self {
            mqtt_enabled: true,
            interval_s: 60,
            district_topic: "city/{district}/aqi".into(),
            station_topic: "city/{district}/{kind}/{device}/aqi".into(),
            http_enabled: true,
            cache_s: 30,
            store_enabled: true,
        }
    }
}

/// Checks a topic template: non-empty, no wildcard, no empty level, only the
/// `allowed` placeholders, each a whole level.
pub fn check_template(template: &str, allowed: &[&str]) -> Result<(), String> {
    if template.is_empty() {
        return Err("empty".into());
    }
    if template.contains(['+', '#', '\0']) {
        return Err(format!("`{template}` has a wildcard; a topic is wanted"));
    }
    if template.starts_with('$') {
        return Err(format!("`{template}` starts with `$` (broker topics)"));
    }
    for level in template.split('/') {
        if level.is_empty() {
            return Err(format!("`{template}` has an empty level"));
        }
        if level.contains(['{', '}']) {
            let name = level
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .filter(|n| allowed.contains(n));
            if name.is_none() {
                return Err(format!(
                    "`{template}`: `{level}` is not one of {}, each a whole level",
                    allowed
                        .iter()
                        .map(|a| format!("{{{a}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The MQTT filter of everything a template can produce (each placeholder as `+`): what
/// the gateway's broker account must be allowed to write.
pub fn template_filter(template: &str) -> String {
    template
        .split('/')
        .map(|l| if l.starts_with('{') { "+" } else { l })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether an MQTT `filter` matches `topic` (a `$share/<group>/` prefix is ignored). A
/// `+` in `topic` stands for any level, so `city/+/aqi` checks a whole template.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => filter,
    };
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b || b == "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The gateway's own publication topics that one of its subscriptions would take back:
/// `(filter, topic template)` pairs.
pub fn overlaps(filters: &[String], templates: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in templates {
        let topic = template_filter(t);
        for f in filters {
            if filter_matches(f, &topic) {
                out.push((f.clone(), (*t).to_owned()));
            }
        }
    }
    out
}

/// Replaces `{name}` placeholders.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// English name of a VN_AQI band (Decision 1459's wording translated; the EPA's names
/// differ for poor, bad and very bad).
pub fn vn_english(key: &str) -> &'static str {
    match key {
        "good" => "Good",
        "moderate" => "Moderate",
        "poor" => "Poor",
        "bad" => "Bad",
        "very_bad" => "Very bad",
        _ => "Hazardous",
    }
}

/// One index value of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexValue {
    /// `VN_AQI` (hourly, Decision 1459) or `US_EPA_AQI` (NowCast).
    pub index: String,
    /// 0-500.
    pub value: u16,
    /// Band key: good, moderate, poor, bad, very_bad, hazardous.
    pub category: String,
    /// Band name in Vietnamese.
    pub category_vi: String,
    /// Band name in English.
    pub category_en: String,
    /// Band colour, `#rrggbb`.
    pub colour: String,
    /// `pm25` or `pm10`.
    pub dominant: String,
}

impl IndexValue {
    fn vn(v: &AqiValue) -> Self {
        Self {
            index: "VN_AQI".into(),
            value: v.value,
            category: v.category.clone(),
            category_vi: v.category_vi.clone(),
            category_en: vn_english(&v.category).into(),
            colour: v.colour.clone(),
            dominant: v.dominant.clone(),
        }
    }

    fn epa(v: &AqiValue) -> Self {
        Self {
            index: "US_EPA_AQI".into(),
            value: v.value,
            category: v.category.clone(),
            category_vi: v.category_vi.clone(),
            category_en: v.category_en.clone(),
            colour: v.colour.clone(),
            dominant: v.dominant.clone(),
        }
    }
}

/// One published entry: a district (its highest station) or a station. The JSON body of
/// its MQTT message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// District slug.
    pub district: String,
    /// Device kind (stations only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
    /// Device id: the station, or for a district the station with the highest VN_AQI.
    pub device: String,
    /// Stations with an index (districts only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stations: Option<usize>,
    /// VN_AQI hourly: `index`, `value`, `category`, `category_vi`, `category_en`,
    /// `colour`, `dominant`.
    #[serde(flatten)]
    pub aqi: IndexValue,
    /// The US EPA AQI (NowCast), the district's highest for a district.
    pub epa: Option<IndexValue>,
    /// Evaluation time, RFC 3339 (hour 1 of the NowCast is the last complete clock hour
    /// before it).
    pub time: String,
}

impl Entry {
    /// What a change is judged by: everything but the time.
    fn signature(&self) -> String {
        let mut e = self.clone();
        e.time = String::new();
        serde_json::to_string(&e).unwrap_or_default()
    }
}

/// The whole feed at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    /// Evaluation time, RFC 3339.
    pub time: String,
    /// Districts by slug.
    pub districts: Vec<Entry>,
    /// Stations by district, then device.
    pub stations: Vec<Entry>,
}

impl Feed {
    /// The feed from an `/api/aqi` answer: stations with a district and an hourly
    /// VN_AQI; a district's entry is its highest station.
    pub fn from_aqi(answer: &AqiResponse) -> Self {
        let time = crate::alerts::notify::rfc3339(answer.at_ms.saturating_mul(1_000_000));
        let mut stations: Vec<Entry> = answer
            .stations
            .iter()
            .filter_map(|s| {
                Some(Entry {
                    district: s.district.clone()?,
                    kind: Some(s.kind.clone().unwrap_or_else(|| "airquality".into())),
                    device: s.device.clone(),
                    stations: None,
                    aqi: IndexValue::vn(s.vn_aqi_hourly.as_ref()?),
                    epa: s.us_aqi_nowcast.as_ref().map(IndexValue::epa),
                    time: time.clone(),
                })
            })
            .collect();
        stations.sort_by(|a, b| (&a.district, &a.device).cmp(&(&b.district, &b.device)));
        let mut by_district: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for s in &stations {
            by_district.entry(&s.district).or_default().push(s);
        }
        let districts = by_district
            .into_iter()
            .filter_map(|(district, list)| {
                let top = list.iter().max_by_key(|e| e.aqi.value)?;
                let epa = list
                    .iter()
                    .filter_map(|e| e.epa.as_ref())
                    .max_by_key(|v| v.value)
                    .cloned();
                Some(Entry {
                    district: district.to_owned(),
                    kind: None,
                    device: top.device.clone(),
                    stations: Some(list.len()),
                    aqi: top.aqi.clone(),
                    epa,
                    time: time.clone(),
                })
            })
            .collect();
        Self {
            time,
            districts,
            stations,
        }
    }

    /// Every (topic, entry) of the feed.
    pub fn topics<'a>(&'a self, cfg: &PublicConfig) -> Vec<(String, &'a Entry)> {
        let district = self
            .districts
            .iter()
            .map(|e| (fill(&cfg.district_topic, &[("district", &e.district)]), e));
        let station = self.stations.iter().map(|e| {
            let kind = e.kind.as_deref().unwrap_or("airquality");
            let topic = fill(
                &cfg.station_topic,
                &[
                    ("district", &e.district),
                    ("kind", kind),
                    ("device", &e.device),
                ],
            );
            (topic, e)
        });
        district.chain(station).collect()
    }
}

/// The feed as InfluxDB line protocol for the store, one line per index and per district
/// or station, stamped `ts_ns`: `aqi,district=ba-dinh,index=VN_AQI,scope=district
/// value=178 <ts>` and `aqi,device=aq-0001,district=ba-dinh,index=VN_AQI,kind=airquality,
/// scope=station value=120 <ts>` (and `index=US_EPA_AQI`), which VictoriaMetrics stores as
/// `aqi_value{...}`. Tag values are slugs and fixed names: nothing to escape.
pub fn store_lines(feed: &Feed, ts_ns: i64) -> (String, i64) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut n = 0i64;
    // Tags in key order, as line protocol prefers: device, district, index, kind, scope.
    for e in &feed.districts {
        for v in std::iter::once(&e.aqi).chain(e.epa.as_ref()) {
            let _ = writeln!(
                out,
                "aqi,district={},index={},scope=district value={} {ts_ns}",
                e.district, v.index, v.value
            );
            n += 1;
        }
    }
    for e in &feed.stations {
        let kind = e
            .kind
            .as_deref()
            .map(|k| format!(",kind={k}"))
            .unwrap_or_default();
        for v in std::iter::once(&e.aqi).chain(e.epa.as_ref()) {
            let _ = writeln!(
                out,
                "aqi,device={},district={},index={}{kind},scope=station value={} {ts_ns}",
                e.device, e.district, v.index, v.value
            );
            n += 1;
        }
    }
    (out, n)
}

/// What the feed's thread reads.
#[derive(Debug, Clone)]
pub struct Context {
    /// The data directory (the state database).
    pub data_dir: std::path::PathBuf,
    /// The hot tier's in-memory head.
    pub head: Option<ingest::hot::HotHead>,
    /// The message log's positions: re-evaluation only after something was applied.
    pub progress: Option<Arc<ingest::applier::Progress>>,
    /// Write the feed to the store's outbox (a store is configured, `public.store_enabled`,
    /// and the feed describes the whole city: no share group, or read from the store),
    /// within this outbox bound.
    pub store_outbox_max_bytes: Option<u64>,
    /// Compute the indices from the store (`query.source`: every gateway's readings)
    /// instead of the hot tier. Default none.
    pub source: Option<crate::api::store::StoreSource>,
}

/// The running feed; [`PublicFeed::stop`] ends it.
#[derive(Debug)]
pub struct PublicFeed {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PublicFeed {
    /// Stops the thread after the evaluation in progress.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the MQTT feed's thread, unless `public.mqtt_enabled` is off.
pub fn spawn(
    cfg: &PublicConfig,
    ctx: Context,
    publisher: Publisher,
) -> std::io::Result<Option<PublicFeed>> {
    if !cfg.mqtt_enabled && ctx.store_outbox_max_bytes.is_none() {
        return Ok(None);
    }
    let store = match ctx.store_outbox_max_bytes {
        Some(max) => Some((
            ingest::store::open(
                &ctx.data_dir,
                ingest::Synchronous::Normal,
                Duration::from_secs(5),
            )
            .map_err(std::io::Error::other)?,
            max,
        )),
        None => None,
    };
    let pool = ReadPool::new(ingest::store::db_path(&ctx.data_dir)).with_head(ctx.head.clone());
    let mut state = FeedState {
        cfg: cfg.clone(),
        pool,
        hours: HourCache::default(),
        publisher,
        // What was applied when the gateway started: evaluated once more arrives (or the
        // hour changes); the broker keeps the last run's retained values meanwhile.
        seen_applied: ctx.progress.as_ref().map(|p| p.applied()),
        seen_hour: Some(crate::alerts::notify::now_ns().div_euclid(NS_PER_HOUR)),
        published: HashMap::new(),
        progress: ctx.progress,
        store,
        source: ctx.source,
    };
    tracing::info!(
        interval_s = cfg.interval_s,
        district_topic = %cfg.district_topic,
        station_topic = %cfg.station_topic,
        "public AQI feed started"
    );
    let (stop, stop_rx) = mpsc::channel();
    let interval = Duration::from_secs(cfg.interval_s.max(1));
    let thread = std::thread::Builder::new()
        .name("public-feed".into())
        .spawn(move || {
            loop {
                state.tick(crate::alerts::notify::now_ns());
                match stop_rx.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
        })?;
    Ok(Some(PublicFeed {
        stop,
        thread: Some(thread),
    }))
}

const NS_PER_HOUR: i64 = 3_600_000_000_000;

struct FeedState {
    cfg: PublicConfig,
    pool: ReadPool,
    hours: HourCache,
    publisher: Publisher,
    progress: Option<Arc<ingest::applier::Progress>>,
    seen_applied: Option<u64>,
    seen_hour: Option<i64>,
    /// Topic -> signature of what was last handed to the publisher.
    published: HashMap<String, String>,
    /// A writable connection to the state database and the outbox bound, when the feed
    /// also goes to the store.
    store: Option<(rusqlite::Connection, u64)>,
    /// The store as the source of the indices, when it is the query source.
    source: Option<crate::api::store::StoreSource>,
}

impl FeedState {
    fn tick(&mut self, now_ns: i64) {
        let applied = self.progress.as_ref().map(|p| p.applied());
        let hour = now_ns.div_euclid(NS_PER_HOUR);
        let fresh = applied != self.seen_applied || self.seen_hour != Some(hour);
        // From the store, other gateways' readings count too: every tick evaluates.
        if !fresh && applied.is_some() && self.source.is_none() {
            return;
        }
        let answer = match &self.source {
            Some(store) => store.aqi(&AqiParams::default(), now_ns),
            None => self
                .pool
                .with(|hot| queries::aqi(hot, &AqiParams::default(), now_ns, &self.hours)),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "public AQI feed: cannot read the hot tier or the store");
                return;
            }
        };
        self.seen_applied = applied;
        self.seen_hour = Some(hour);
        let feed = Feed::from_aqi(&answer);
        if let Some((conn, max)) = &mut self.store {
            // From the store, every gateway of a share group computes the same values:
            // stamped on the interval's boundary, their lines are the same samples, which
            // the store keeps once (-dedup.minScrapeInterval).
            let ts = match &self.source {
                Some(_) => {
                    let step = i64::try_from(self.cfg.interval_s.max(1))
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1_000_000_000);
                    now_ns - now_ns.rem_euclid(step)
                }
                None => now_ns,
            };
            let (lines, n) = store_lines(&feed, ts);
            if n > 0 {
                match ingest::outbox::append(conn, lines.as_bytes(), n, *max) {
                    Ok(true) => {
                        metrics::counter!("public_feed_store_lines_total").increment(n as u64)
                    }
                    Ok(false) => {
                        metrics::counter!("public_feed_store_dropped_total").increment(n as u64)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "public AQI feed: cannot queue for the store")
                    }
                }
            }
        }
        if !self.cfg.mqtt_enabled {
            return;
        }
        let mut current = std::collections::HashSet::new();
        for (topic, entry) in feed.topics(&self.cfg) {
            current.insert(topic.clone());
            let sig = entry.signature();
            if self.published.get(&topic) == Some(&sig) {
                continue;
            }
            let body = serde_json::to_vec(entry).unwrap_or_default();
            // Not recorded when the queue is full: tried again at the next evaluation.
            if self.publisher.publish(topic.clone(), body, true) {
                metrics::counter!("public_feed_updates_total").increment(1);
                self.published.insert(topic, sig);
            } else {
                self.seen_applied = None;
            }
        }
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|t| !current.contains(*t))
            .cloned()
            .collect();
        for topic in gone {
            // An empty retained message clears the topic: no stale index stays behind.
            if self.publisher.publish(topic.clone(), Vec::new(), true) {
                self.published.remove(&topic);
            } else {
                self.seen_applied = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::StationAqi;

    fn value(v: u16) -> AqiValue {
        crate::aqi::Index {
            value: v,
            dominant: crate::aqi::Pollutant::Pm25,
            category: crate::aqi::category(v),
        }
        .into()
    }

    fn station(device: &str, district: Option<&str>, vn: Option<u16>) -> StationAqi {
        StationAqi {
            device: device.into(),
            district: district.map(Into::into),
            kind: Some("airquality".into()),
            lat: None,
            lon: None,
            pm25_nowcast: None,
            pm10_nowcast: None,
            pm25_24h: None,
            pm10_24h: None,
            vn_aqi_hourly: vn.map(value),
            vn_aqi_daily: None,
            us_aqi_nowcast: vn.map(|v| value(v + 10)),
            us_aqi_daily: None,
        }
    }

    #[test]
    fn districts_take_their_highest_station() {
        let answer = AqiResponse {
            at_ms: 1_700_000_000_000,
            stations: vec![
                station("aq-1", Some("ba-dinh"), Some(40)),
                station("aq-2", Some("ba-dinh"), Some(120)),
                station("aq-3", Some("tay-ho"), None),
                station("aq-4", None, Some(300)),
            ],
        };
        let feed = Feed::from_aqi(&answer);
        assert_eq!(feed.time, "2023-11-14T22:13:20.000Z");
        assert_eq!(feed.districts.len(), 1);
        let d = &feed.districts[0];
        assert_eq!((d.device.as_str(), d.aqi.value), ("aq-2", 120));
        assert_eq!(d.aqi.category, "poor");
        assert_eq!(d.aqi.category_en, "Poor");
        assert_eq!(d.aqi.category_vi, "Kém");
        assert_eq!(d.aqi.colour, "#ff7e00");
        assert_eq!(d.epa.as_ref().map(|e| e.value), Some(130));
        assert_eq!(d.stations, Some(2));
        let topics: Vec<String> = feed
            .topics(&PublicConfig::default())
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            topics,
            [
                "city/ba-dinh/aqi",
                "city/ba-dinh/airquality/aq-1/aqi",
                "city/ba-dinh/airquality/aq-2/aqi"
            ]
        );
        let json = serde_json::to_value(d).unwrap();
        assert_eq!(json["index"], "VN_AQI");
        assert_eq!(json["value"], 120);
        assert_eq!(json["dominant"], "pm25");
        assert_eq!(json["epa"]["index"], "US_EPA_AQI");
    }

    #[test]
    fn store_lines_carry_each_index_of_each_district_and_station() {
        let answer = AqiResponse {
            at_ms: 1_700_000_000_000,
            stations: vec![
                station("aq-1", Some("ba-dinh"), Some(40)),
                station("aq-2", Some("ba-dinh"), Some(120)),
            ],
        };
        let (lines, n) = store_lines(&Feed::from_aqi(&answer), 7);
        assert_eq!(n, 6, "{lines}");
        assert!(
            lines.contains("aqi,district=ba-dinh,index=VN_AQI,scope=district value=120 7\n"),
            "{lines}"
        );
        assert!(
            lines.contains(
                "aqi,device=aq-1,district=ba-dinh,index=US_EPA_AQI,kind=airquality,scope=station value=50 7\n"
            ),
            "{lines}"
        );
        // What the store's parser reads back.
        for l in lines.lines() {
            let mut parts = l.split(' ');
            let (series, field, ts) = (parts.next(), parts.next(), parts.next());
            assert!(series.is_some_and(|s| s.starts_with("aqi,")), "{l}");
            assert!(field.is_some_and(|f| f.starts_with("value=")), "{l}");
            assert_eq!(ts, Some("7"), "{l}");
        }
    }

    #[test]
    fn templates_filters_and_overlaps() {
        assert!(check_template("city/{district}/aqi", &["district"]).is_ok());
        assert!(check_template("city/+/aqi", &["district"]).is_err());
        assert!(check_template("city/{kind}/aqi", &["district"]).is_err());
        assert!(check_template("city/x{district}/aqi", &["district"]).is_err());
        assert!(check_template("city//aqi", &["district"]).is_err());
        assert_eq!(
            template_filter("city/{district}/{kind}/{device}/aqi"),
            "city/+/+/+/aqi"
        );
        assert!(filter_matches("city/+/+/+/up", "city/a/b/c/up"));
        assert!(!filter_matches("city/+/+/+/up", "city/+/+/+/aqi"));
        assert!(filter_matches("city/#", "city/+/aqi"));
        assert!(filter_matches("$share/g/+/+/aqi", "city/+/aqi"));
        assert!(!filter_matches("+/status", "city/+/aqi"));
        let filters = crate::mqtt::filters(
            &ingest::IngestConfig::default().routes,
            &ingest::status::default_status_routes(),
            None,
        );
        let cfg = PublicConfig::default();
        let alerts = crate::alerts::config::AlertsConfig::default();
        assert_eq!(
            overlaps(
                &filters,
                &[&cfg.district_topic, &cfg.station_topic, &alerts.mqtt_topic]
            ),
            Vec::<(String, String)>::new()
        );
        assert_eq!(
            overlaps(&["city/#".to_owned()], &[&cfg.district_topic]).len(),
            1
        );
        assert_eq!(
            fill("city/{district}/alerts", &[("district", "ba-dinh")]),
            "city/ba-dinh/alerts"
        );
    }
}

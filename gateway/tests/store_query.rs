//! The store-backed query side (`api::store::StoreSource`) against a real VictoriaMetrics
//! holding readings and device-state series in the shapes the gateways write
//! (`ingest/README.md`, "Outbox and forwarder" and "Device state in the store"): one
//! device's messages split between two gateways with a gap and a repeat, status and meta
//! samples, a silent device, the public feed's `aqi_value`. Every answer is compared with
//! what is computed here from the written points.
#![allow(clippy::unwrap_used)]

use gateway::api::model::*;
use gateway::api::params::{AqiParams, DevicesParams, LatestParams, SeriesParams, StatsParams};
use gateway::api::store::{StoreQueryConfig, StoreSource};
use gateway::api::{ApiError, queries};
use gateway::aqi;
use std::collections::BTreeMap;
use std::time::Duration;
use tests::{VictoriaMetrics, VictoriaMetricsOptions};

const NS_PER_MS: i64 = 1_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
/// Sub-millisecond part of every written timestamp: the store keeps milliseconds.
const SUB_MS_NS: i64 = 123_456;
const STALE: Duration = queries::DEFAULT_STALE_AFTER;

/// Where a device is, and what it is.
struct Tags {
    district: &'static str,
    kind: &'static str,
    format: &'static str,
}

fn tags(device: &str) -> Tags {
    let (district, kind, format) = match device {
        "aq-1" | "aq-2" => ("ba-dinh", "airquality", "senml"),
        "wx-1" => ("tay-ho", "weather", "ultralight"),
        "nz-1" => ("tay-ho", "noise", "senml"),
        other => panic!("no device {other}"),
    };
    Tags {
        district,
        kind,
        format,
    }
}

/// The written dataset: line protocol, its sample count, and the readings for the
/// expectations.
#[derive(Default)]
struct Data {
    lines: Vec<String>,
    samples: usize,
    /// (device, metric, ts ms, value)
    readings: Vec<(String, String, i64, f64)>,
}

impl Data {
    fn line(&mut self, measurement: &str, device: &str, extra_tags: &str, fields: &str, ms: i64) {
        let t = tags(device);
        self.lines.push(format!(
            "{measurement},device={device},district={},{extra_tags}format={},kind={} {fields} {}",
            t.district,
            t.format,
            t.kind,
            ms * NS_PER_MS + SUB_MS_NS
        ));
        self.samples += fields.split(',').count();
    }

    fn reading(&mut self, device: &str, metric: &str, ms: i64, v: f64) {
        self.line(metric, device, "", &format!("value={v}"), ms);
        self.readings
            .push((device.to_owned(), metric.to_owned(), ms, v));
    }

    /// A message as a gateway records it at `recv` (the gateway's receive time).
    fn message(&mut self, device: &str, recv: i64, seq: Option<i64>, first_seen_s: Option<i64>) {
        let mut fields = "readings=1".to_owned();
        if let Some(s) = seq {
            fields.push_str(&format!(",seq={s}"));
        }
        if let Some(f) = first_seen_s {
            fields.push_str(&format!(",first_seen_ms={}", f * 1000));
        }
        self.line("gateway_device", device, "", &fields, recv);
    }

    fn status(&mut self, device: &str, online: bool, recv: i64) {
        self.line(
            "gateway_device_status",
            device,
            "",
            &format!("online={}", u8::from(online)),
            recv,
        );
    }
}

/// The readings of `device:metric` in `[from, to)` (ms).
fn points(d: &Data, device: &str, metric: &str, from: i64, to: i64) -> Vec<(i64, f64)> {
    let mut p: Vec<(i64, f64)> = d
        .readings
        .iter()
        .filter(|(dv, m, t, _)| dv == device && m == metric && *t >= from && *t < to)
        .map(|(_, _, t, v)| (*t, *v))
        .collect();
    p.sort_by_key(|(t, _)| *t);
    p
}

/// The hot tier's buckets, computed from the written points.
fn buckets(points: &[(i64, f64)], step: i64, agg: &str) -> (Vec<i64>, Vec<f64>) {
    let mut groups: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (t, v) in points {
        groups
            .entry(t.div_euclid(step) * step)
            .or_default()
            .push(*v);
    }
    let values = groups
        .values()
        .map(|g| match agg {
            "avg" => g.iter().sum::<f64>() / g.len() as f64,
            "min" => g.iter().copied().fold(f64::INFINITY, f64::min),
            "max" => g.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "count" => g.len() as f64,
            "last" => g[g.len() - 1],
            other => panic!("agg {other}"),
        })
        .collect();
    (groups.keys().copied().collect(), values)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The dataset, relative to `now` (ms): the last 25 hours.
///
/// - `aq-1` (ba-dinh, airquality, senml): pm25 and pm10 every 5 min; its messages
///   alternate between gateways A and B; sequence numbers 200-202 never arrive (a gap of 3)
///   and 250 arrives twice (once at each gateway); status online, offline (B, 2 h ago),
///   online (A, 1 h ago); meta firmware 1.0.0 at the start, 1.1.0 with new coordinates 3 h
///   ago.
/// - `aq-2` (ba-dinh, airquality, senml): pm25 every 5 min until 1 min ago, one gateway;
///   status offline 30 min ago; 4 + 3 dropped readings in the last 24 h (and 100 before).
/// - `wx-1` (tay-ho, weather, ultralight): temperature every 5 min until 40 min ago, no
///   sequence numbers, no status (stale, so offline).
/// - `nz-1` (tay-ho, noise, senml): LAeq every minute for the last 30 min; online.
/// - the public feed's `aqi_value` for aq-1, 30 s ago.
fn dataset(now: i64) -> Data {
    let mut d = Data::default();
    let this_hour = now - now.rem_euclid(HOUR);
    let start = this_hour - 25 * HOUR;

    // aq-1
    let mut k = 0;
    loop {
        let t = start + k * 5 * MIN + 7_000;
        if t >= now - 30_000 {
            break;
        }
        let hour = (t - start) / HOUR;
        d.reading(
            "aq-1",
            "pm25",
            t,
            20.0 + (hour % 9) as f64 * 7.3 + (k % 5) as f64 * 0.37,
        );
        d.reading(
            "aq-1",
            "pm10",
            t,
            40.0 + (hour % 5) as f64 * 11.1 + (k % 3) as f64 * 1.9,
        );
        if !(200..=202).contains(&k) {
            let recv = t + 250;
            let first = match k {
                0 | 1 => Some(recv / 1000),
                _ => None,
            };
            d.message("aq-1", recv, Some(k), first);
            if k == 250 {
                // Redelivered to the other gateway: no new readings, the same number.
                d.line(
                    "gateway_device",
                    "aq-1",
                    "",
                    "readings=0,seq=250",
                    recv + 1_000,
                );
            }
        }
        k += 1;
    }
    d.status("aq-1", true, start + 1_000);
    d.status("aq-1", false, now - 2 * HOUR);
    d.status("aq-1", true, now - HOUR);
    d.line(
        "gateway_device_meta",
        "aq-1",
        "firmware=1.0.0,",
        "updated=1,period_s=300,lat=21,lon=105",
        start + 2_000,
    );
    d.line(
        "gateway_device_meta",
        "aq-1",
        "firmware=1.1.0,",
        "updated=1,period_s=300,lat=21.0285,lon=105.8542",
        now - 3 * HOUR,
    );

    // aq-2
    for j in (0..300).rev() {
        let t = now - MIN - j * 5 * MIN;
        d.reading("aq-2", "pm25", t, 55.5 + (j % 11) as f64 * 3.1);
        d.message(
            "aq-2",
            t + 400,
            Some(1000 + 300 - j),
            (j == 299).then_some((t + 400) / 1000),
        );
    }
    d.status("aq-2", true, start + 3_000);
    d.status("aq-2", false, now - 30 * MIN);
    d.reading("aq-2", "droppedReadings", now - 3 * HOUR + 10, 3.0);
    d.reading("aq-2", "droppedReadings", now - 2 * HOUR + 10, 4.0);
    d.reading("aq-2", "droppedReadings", now - 30 * HOUR, 100.0);

    // wx-1
    let mut t = start + 11_000;
    let mut first = true;
    while t <= now - 40 * MIN {
        d.reading(
            "wx-1",
            "temperature",
            t,
            25.0 + ((t / MIN) % 13) as f64 * 0.25,
        );
        d.message("wx-1", t + 100, None, first.then_some((t + 100) / 1000));
        first = false;
        t += 5 * MIN;
    }

    // nz-1
    for j in (0..30).rev() {
        let t = now - 30_000 - j * MIN;
        d.reading("nz-1", "LAeq", t, 50.0 + (j % 7) as f64);
        d.message(
            "nz-1",
            t + 50,
            Some(30 - j),
            (j == 29).then_some((t + 50) / 1000),
        );
    }
    d.status("nz-1", true, now - 31 * MIN);

    // The public feed: not a reading.
    d.lines.push(format!(
        "aqi,scope=station,index=VN_AQI,district=ba-dinh,device=aq-1,kind=airquality value=77 {}",
        (now - 30_000) * NS_PER_MS
    ));
    d.samples += 1;
    d
}

/// Writes through VictoriaMetrics' `/write` (InfluxDB line protocol) and waits until
/// every sample can be read back.
fn write(store: &VictoriaMetrics, d: &Data) {
    let url = format!("{}/write", store.url());
    for chunk in d.lines.chunks(2000) {
        let body = chunk.join("\n");
        let resp = ureq::post(&url).send(body.as_str()).unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }
    store
        .wait_for_export(r#"{__name__=~".+"}"#, Duration::from_secs(60), |s| {
            s.iter().map(|x| x.values.len()).sum::<usize>() == d.samples
        })
        .unwrap();
}

fn source(url: &str) -> StoreSource {
    StoreSource::new(StoreQueryConfig::new(url)).unwrap()
}

fn device<'a>(r: &'a DevicesResponse, id: &str) -> &'a Device {
    r.devices
        .iter()
        .find(|d| d.device == id)
        .unwrap_or_else(|| panic!("{id} missing: {r:?}"))
}

fn ids(r: &DevicesResponse) -> Vec<&str> {
    r.devices.iter().map(|d| d.device.as_str()).collect()
}

fn bad_request<T: std::fmt::Debug>(r: Result<T, ApiError>, what: &str) {
    let e = r.unwrap_err();
    assert_eq!(e.status().as_u16(), 400, "{e}");
    assert!(e.to_string().starts_with(what), "{e}");
}

#[test]
fn the_stores_answers_match_the_written_data() {
    // The store's default latency offset (the harness sets 0 s; a later flag wins): range
    // queries near its clock must still see the newest points.
    let store = VictoriaMetrics::start_with(VictoriaMetricsOptions {
        extra_args: vec!["-search.latencyOffset=30s".into()],
        ..Default::default()
    })
    .unwrap();
    let now_ms = ingest::message::now_ns() / NS_PER_MS;
    let now = now_ms * NS_PER_MS;
    let data = dataset(now_ms);
    write(&store, &data);
    let src = source(&store.url());
    src.ready().unwrap();
    let kinds: Vec<String> = Vec::new();

    // --- devices ---
    let all = src
        .devices(&DevicesParams::default(), now, STALE, &kinds)
        .unwrap();
    assert_eq!(ids(&all), ["aq-1", "aq-2", "nz-1", "wx-1"]);
    assert_eq!(all.at_ms, now_ms);
    for d in &all.devices {
        let t = tags(&d.device);
        assert_eq!(d.district.as_deref(), Some(t.district), "{d:?}");
        assert_eq!(d.kind.as_deref(), Some(t.kind), "{d:?}");
        assert_eq!(d.format.as_deref(), Some(t.format), "{d:?}");
    }
    let aq1 = device(&all, "aq-1");
    let last_k = data
        .readings
        .iter()
        .filter(|r| r.0 == "aq-1" && r.1 == "pm25")
        .count() as i64
        - 1;
    let last_t = data
        .readings
        .iter()
        .filter(|r| r.0 == "aq-1")
        .map(|r| r.2)
        .max()
        .unwrap();
    assert_eq!((aq1.gaps, aq1.duplicates), (3, 1), "{aq1:?}");
    assert_eq!(aq1.last_seq, Some(last_k));
    assert_eq!(aq1.last_seen_ms, Some(last_t + 250));
    let start = now_ms - now_ms.rem_euclid(HOUR) - 25 * HOUR;
    assert_eq!(aq1.first_seen_ms, Some((start + 7_000 + 250) / 1000 * 1000));
    assert_eq!(aq1.status, "online");
    assert_eq!(aq1.firmware.as_deref(), Some("1.1.0"));
    assert_eq!((aq1.lat, aq1.lon), (Some(21.0285), Some(105.8542)));
    assert_eq!((aq1.period_s, aq1.stale_after_s), (Some(300), 900));
    assert!(!aq1.stale);
    assert_eq!(aq1.dropped_readings, 0);

    let aq2 = device(&all, "aq-2");
    assert_eq!((aq2.gaps, aq2.duplicates), (0, 0), "{aq2:?}");
    assert_eq!(aq2.last_seq, Some(1300));
    assert_eq!(aq2.last_seen_ms, Some(now_ms - MIN + 400));
    assert_eq!(aq2.status, "offline");
    assert_eq!(aq2.dropped_readings, 7);
    assert_eq!(
        (aq2.firmware.as_deref(), aq2.lat, aq2.period_s),
        (None, None, None)
    );
    assert_eq!(aq2.stale_after_s, 300);
    assert!(!aq2.stale);

    // Silent for 40 min: its last message is outside the recent window.
    let wx1 = device(&all, "wx-1");
    let wx_last = data
        .readings
        .iter()
        .filter(|r| r.0 == "wx-1")
        .map(|r| r.2)
        .max()
        .unwrap();
    assert_eq!(wx1.last_seen_ms, Some(wx_last + 100));
    assert_eq!(wx1.last_seq, None);
    assert_eq!((wx1.status.as_str(), wx1.stale), ("offline", true));
    assert_eq!(wx1.first_seen_ms, Some((start + 11_100) / 1000 * 1000));

    let nz1 = device(&all, "nz-1");
    assert_eq!(
        (nz1.last_seq, nz1.gaps, nz1.status.as_str()),
        (Some(30), 0, "online")
    );

    // The fallback alone (no device has a sample in a 1 ms recent window) gives the same.
    let slow = StoreSource::new(StoreQueryConfig {
        recent_window: Duration::from_millis(1),
        ..StoreQueryConfig::new(store.url())
    })
    .unwrap()
    .devices(&DevicesParams::default(), now, STALE, &kinds)
    .unwrap();
    assert_eq!(
        serde_json::to_value(&slow).unwrap(),
        serde_json::to_value(&all).unwrap()
    );

    // Filters.
    let with = |p: DevicesParams| src.devices(&p, now, STALE, &kinds).unwrap();
    let ba_dinh = with(DevicesParams {
        district: Some("ba-dinh".into()),
        ..Default::default()
    });
    assert_eq!(ids(&ba_dinh), ["aq-1", "aq-2"]);
    let weather = with(DevicesParams {
        kind: Some("weather".into()),
        ..Default::default()
    });
    assert_eq!(ids(&weather), ["wx-1"]);
    let offline = with(DevicesParams {
        status: Some("offline".into()),
        ..Default::default()
    });
    assert_eq!(ids(&offline), ["aq-2", "wx-1"]);
    let stale = with(DevicesParams {
        stale: Some("true".into()),
        ..Default::default()
    });
    assert_eq!(ids(&stale), ["wx-1"]);
    let fresh = with(DevicesParams {
        stale: Some("false".into()),
        ..Default::default()
    });
    assert_eq!(ids(&fresh), ["aq-1", "aq-2", "nz-1"]);
    // As of 90 minutes ago: aq-1 was offline (gateway B's sample 2 h ago), nz-1 unknown.
    let past = with(DevicesParams {
        at: Some((now_ms - 90 * MIN).to_string()),
        ..Default::default()
    });
    assert_eq!(ids(&past), ["aq-1", "aq-2", "wx-1"]);
    let aq1_past = device(&past, "aq-1");
    assert_eq!(aq1_past.status, "offline");
    assert_eq!(aq1_past.firmware.as_deref(), Some("1.1.0"));
    assert!(aq1_past.last_seen_ms.unwrap() <= now_ms - 90 * MIN);
    assert!(aq1_past.last_seen_ms.unwrap() > now_ms - 95 * MIN);

    // --- series ---
    let this_hour = now_ms - now_ms.rem_euclid(HOUR);
    let check_series =
        |pairs: &[(&str, &str)], from: i64, to: i64, step: &str, step_ms: i64, agg: &str| {
            let spec: Vec<String> = pairs.iter().map(|(d, m)| format!("{d}:{m}")).collect();
            let req = SeriesParams {
                series: Some(spec.join(",")),
                from: Some(from.to_string()),
                to: Some(to.to_string()),
                step: Some(step.into()),
                agg: Some(agg.into()),
            }
            .parse(now)
            .unwrap();
            let r = src.series(&req).unwrap();
            assert_eq!(
                (r.from_ms, r.to_ms, r.step_ms, r.agg.as_str()),
                (from, to, step_ms, agg)
            );
            assert_eq!(r.series.len(), pairs.len());
            for (s, (d, m)) in r.series.iter().zip(pairs) {
                assert_eq!((s.device.as_str(), s.metric.as_str()), (*d, *m));
                let (t, v) = buckets(&points(&data, d, m, from, to), step_ms, agg);
                assert_eq!(s.t, t, "{d}:{m} {agg} {step} bucket starts");
                assert_eq!(s.v.len(), v.len());
                for (i, (a, b)) in s.v.iter().zip(&v).enumerate() {
                    assert!(close(*a, *b), "{d}:{m} {agg} bucket {}: {a} != {b}", t[i]);
                }
            }
            r
        };
    // Unaligned range up to now: a cut first bucket, whole ones (evaluated with a negative
    // offset, as they end within the last hour), a cut last one.
    let pairs = [
        ("aq-1", "pm25"),
        ("aq-2", "pm25"),
        ("wx-1", "temperature"),
        ("aq-1", "nosuch"),
    ];
    let r = check_series(
        &pairs,
        this_hour - 6 * HOUR + 17 * MIN,
        now_ms,
        "1h",
        HOUR,
        "avg",
    );
    assert!(r.series[0].t.len() >= 6, "{r:?}");
    assert_eq!(r.series[0].unit.as_deref(), Some("ug/m3"));
    assert!(r.series[3].t.is_empty());
    for agg in ["min", "max", "count", "last"] {
        check_series(
            &pairs[..3],
            this_hour - 6 * HOUR + 17 * MIN,
            now_ms,
            "1h",
            HOUR,
            agg,
        );
    }
    // Aligned, in the past, finer: empty buckets (wx-1 every 5 min) are left out.
    for agg in ["avg", "last", "count"] {
        let r = check_series(
            &pairs[..3],
            this_hour - 5 * HOUR,
            this_hour - 2 * HOUR,
            "2m",
            2 * MIN,
            agg,
        );
        assert!(r.series[2].t.len() < 90 && !r.series[2].t.is_empty());
    }
    // Steps under a minute up to now: the range the store would adjust near its clock.
    for agg in ["avg", "last", "count"] {
        let r = check_series(
            &[("nz-1", "LAeq"), ("aq-2", "pm25")],
            now_ms - 10 * MIN + 3_000,
            now_ms,
            "10s",
            10_000,
            agg,
        );
        assert_eq!(r.series[0].t.len(), 10, "{r:?}");
    }
    // One cut bucket only.
    check_series(
        &pairs[..1],
        this_hour - 50 * MIN,
        this_hour - 20 * MIN,
        "1h",
        HOUR,
        "avg",
    );

    // --- latest ---
    let latest = |p: LatestParams| src.latest(&p, now, &kinds).unwrap();
    let l = latest(LatestParams {
        detail: Some("true".into()),
        ..Default::default()
    });
    assert_eq!(l.at_ms, now_ms);
    let keys: Vec<(&str, &str)> = l
        .groups
        .iter()
        .map(|g| (g.district.as_str(), g.kind.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("ba-dinh", "airquality"),
            ("tay-ho", "noise"),
            ("tay-ho", "weather")
        ]
    );
    let newest = |device: &str, metric: &str, max_age: i64| {
        points(&data, device, metric, now_ms - max_age, now_ms + 1)
            .last()
            .copied()
    };
    let g = &l.groups[0];
    assert_eq!((g.devices, g.reporting, g.online), (2, 2, 1));
    let names: Vec<&str> = g.metrics.iter().map(|m| m.metric.as_str()).collect();
    assert_eq!(
        names,
        ["pm10", "pm25"],
        "no aqi, no droppedReadings older than 1 h"
    );
    let (a, b) = (
        newest("aq-1", "pm25", HOUR).unwrap(),
        newest("aq-2", "pm25", HOUR).unwrap(),
    );
    let pm25 = &g.metrics[1];
    assert_eq!(pm25.count, 2);
    assert!(close(pm25.mean, (a.1 + b.1) / 2.0));
    // The store keeps about 15 significant digits: 71.84 may read back as 71.83999999999999.
    assert!(
        close(pm25.min, a.1.min(b.1)) && close(pm25.max, a.1.max(b.1)),
        "{pm25:?}"
    );
    assert_eq!(pm25.newest_ms, a.0.max(b.0));
    assert_eq!(g.metrics[0].count, 1);
    let wx = &l.groups[2];
    assert_eq!((wx.devices, wx.reporting, wx.online), (1, 1, 0));
    let detail = l.devices.as_ref().unwrap();
    let aq1_values = &detail.iter().find(|d| d.device == "aq-1").unwrap().values;
    assert_eq!(aq1_values.keys().collect::<Vec<_>>(), ["pm10", "pm25"]);
    assert_eq!(aq1_values["pm25"].t_ms, a.0);
    assert!(close(aq1_values["pm25"].v, a.1), "{:?}", aq1_values["pm25"]);
    // 30 minutes: wx-1 no longer reports.
    let l30 = latest(LatestParams {
        max_age: Some("30m".into()),
        ..Default::default()
    });
    assert_eq!(l30.max_age_s, 1800);
    assert_eq!(
        (l30.groups[2].reporting, l30.groups[2].metrics.len()),
        (0, 0)
    );
    assert!(l30.devices.is_none());
    let tay_ho = latest(LatestParams {
        district: Some("tay-ho".into()),
        kind: Some("noise".into()),
        ..Default::default()
    });
    assert_eq!(tay_ho.groups.len(), 1);
    assert_eq!(tay_ho.groups[0].metrics[0].metric, "LAeq");
    let n = newest("nz-1", "LAeq", HOUR).unwrap();
    assert_eq!(
        (
            tay_ho.groups[0].metrics[0].max,
            tay_ho.groups[0].metrics[0].newest_ms
        ),
        (n.1, n.0)
    );

    // --- aqi ---
    let column = |device: &str, metric: &str| -> Vec<Option<f64>> {
        (0..aqi::DAILY_HOURS as i64)
            .map(|i| {
                let p = points(
                    &data,
                    device,
                    metric,
                    this_hour - (i + 1) * HOUR,
                    this_hour - i * HOUR,
                );
                (!p.is_empty()).then(|| p.iter().map(|x| x.1).sum::<f64>() / p.len() as f64)
            })
            .collect()
    };
    let a = src.aqi(&AqiParams::default(), now).unwrap();
    assert_eq!(a.at_ms, now_ms);
    let stations: Vec<&str> = a.stations.iter().map(|s| s.device.as_str()).collect();
    assert_eq!(stations, ["aq-1", "aq-2"]);
    for s in &a.stations {
        let want = aqi::station_aqi(&column(&s.device, "pm25"), &column(&s.device, "pm10"));
        assert!(
            close_opt(s.pm25_nowcast, want.pm25_nowcast),
            "{s:?} {want:?}"
        );
        assert!(
            close_opt(s.pm10_nowcast, want.pm10_nowcast),
            "{s:?} {want:?}"
        );
        assert!(close_opt(s.pm25_24h, want.pm25_daily), "{s:?} {want:?}");
        assert!(close_opt(s.pm10_24h, want.pm10_daily), "{s:?} {want:?}");
        let json = |v: Option<aqi::Index>| serde_json::to_value(v.map(AqiValue::from)).unwrap();
        let got = |v: &Option<AqiValue>| serde_json::to_value(v).unwrap();
        assert_eq!(got(&s.vn_aqi_hourly), json(want.vn_hourly));
        assert_eq!(got(&s.vn_aqi_daily), json(want.vn_daily));
        assert_eq!(got(&s.us_aqi_nowcast), json(want.us_nowcast));
        assert_eq!(got(&s.us_aqi_daily), json(want.us_daily));
        assert!(s.vn_aqi_daily.is_some(), "a day of data: {s:?}");
    }
    assert_eq!(a.stations[0].district.as_deref(), Some("ba-dinh"));
    assert_eq!(a.stations[0].kind.as_deref(), Some("airquality"));
    assert_eq!(a.stations[0].lat, Some(21.0285));
    assert!(a.stations[1].pm10_nowcast.is_none());
    let one = src
        .aqi(
            &AqiParams {
                device: Some("aq-2".into()),
                ..Default::default()
            },
            now,
        )
        .unwrap();
    assert_eq!(one.stations.len(), 1);
    let none = src
        .aqi(
            &AqiParams {
                district: Some("tay-ho".into()),
                ..Default::default()
            },
            now,
        )
        .unwrap();
    assert!(none.stations.is_empty());

    // --- stats ---
    let st = src.stats(&StatsParams::default(), now, STALE).unwrap();
    let last_minute = data
        .readings
        .iter()
        .filter(|r| {
            let ns = r.2 * NS_PER_MS + SUB_MS_NS;
            ns >= now - 60 * 1_000_000_000 && ns < now
        })
        .count();
    assert!(last_minute >= 2);
    assert!(
        close(st.ingest_rate_per_s, last_minute as f64 / 60.0),
        "{st:?} {last_minute}"
    );
    assert_eq!((st.devices, st.devices_online, st.devices_stale), (4, 2, 1));
    let newest_msg = all
        .devices
        .iter()
        .filter_map(|d| d.last_seen_ms)
        .max()
        .unwrap();
    assert!(close(
        st.newest_message_age_s.unwrap(),
        (now_ms - newest_msg) as f64 / 1000.0
    ));
    assert!(st.dead_letters.is_empty());
    assert_eq!((st.outbox_entries, st.store_lag_s), (0, 0.0));

    // --- bad parameters: 400 before any request ---
    bad_request(
        src.devices(
            &DevicesParams {
                status: Some("asleep".into()),
                ..Default::default()
            },
            now,
            STALE,
            &kinds,
        ),
        "status:",
    );
    bad_request(
        src.devices(
            &DevicesParams {
                kind: Some("spaceship".into()),
                ..Default::default()
            },
            now,
            STALE,
            &kinds,
        ),
        "kind:",
    );
    bad_request(
        src.latest(
            &LatestParams {
                max_age: Some("soon".into()),
                ..Default::default()
            },
            now,
            &kinds,
        ),
        "max_age:",
    );
    bad_request(
        src.aqi(
            &AqiParams {
                district: Some("Ba Dinh".into()),
                ..Default::default()
            },
            now,
        ),
        "district:",
    );
    bad_request(
        src.stats(
            &StatsParams {
                at: Some("yesterday".into()),
            },
            now,
            STALE,
        ),
        "at:",
    );

    // --- a store answering errors: 502 naming the URL ---
    let wrong = source(&format!("{}/nope", store.url()));
    let e = wrong
        .devices(&DevicesParams::default(), now, STALE, &kinds)
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 502, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("{}/nope/api/v1/", store.url())),
        "{e}"
    );
    assert!(wrong.ready().is_err());

    // --- the same from a terminal: `gateway query ... --store` ---
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .args(["--store", &store.url(), "--format", "csv"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text, err) = cli(&["query", "devices"]);
    assert!(ok, "{err}");
    for id in ids(&all) {
        assert!(
            text.contains(id),
            "gateway query devices --store lacks {id}:\n{text}"
        );
    }
    let (ok, text, err) = cli(&["query", "latest", "--district", "ba-dinh"]);
    assert!(
        ok && text.contains("ba-dinh,airquality,2,2,"),
        "{text}{err}"
    );
    let (ok, _, err) = cli(&["query", "alerts"]);
    assert!(!ok && err.contains("not in the store"), "{err}");
}

#[test]
fn an_unreachable_store_is_an_error_without_credentials() {
    let port = tests::free_port().unwrap();
    let src = StoreSource::new(StoreQueryConfig {
        timeout: Duration::from_secs(5),
        ..StoreQueryConfig::new(format!("http://reader:s3cret@127.0.0.1:{port}"))
    })
    .unwrap();
    assert!(!format!("{src:?}").contains("s3cret"));
    let now = ingest::message::now_ns();
    let e = src
        .devices(&DevicesParams::default(), now, STALE, &[])
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 503, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("http://127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("s3cret") && !msg.contains("reader"), "{msg}");
    let e = src
        .series(
            &SeriesParams {
                series: Some("aq-1:pm25".into()),
                ..Default::default()
            }
            .parse(now)
            .unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 503, "{e}");
    assert!(src.latest(&LatestParams::default(), now, &[]).is_err());
    assert!(src.aqi(&AqiParams::default(), now).is_err());
    assert!(src.stats(&StatsParams::default(), now, STALE).is_err());
    let ready = src.ready().unwrap_err();
    assert!(
        ready.contains(&port.to_string()) && !ready.contains("s3cret"),
        "{ready}"
    );
    // Parameters are checked first: 400, not 503.
    bad_request(
        src.devices(
            &DevicesParams {
                stale: Some("maybe".into()),
                ..Default::default()
            },
            now,
            STALE,
            &[],
        ),
        "stale:",
    );
}

//! The pipeline and the forwarder against a real VictoriaMetrics (started by the `tests`
//! harness on a free loopback port) speaking the InfluxDB v2 write API: every format lands
//! with the right names, tags and values; a store outage loses nothing; a line the store
//! refuses is isolated and dead-lettered while the rest is written.
//!
//! The poison line: VictoriaMetrics (1.79 here) skips most malformed lines with a 204 (and a
//! log line): bad values, bad timestamps, garbage lines. It answers 400 when a line is
//! longer than `-influx.maxLineSize` (default 256 KiB) *and* longer than the 64 KiB block
//! its reader scans for newlines; lines before the bad one are kept, lines after it are not.
//! The test starts it with `-influx.maxLineSize=1KB` and sends one Tasmota reading whose
//! pass-through name makes its line about 70 KB long.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use ingest::deadletter::{self, ListFilter};
use ingest::{Forwarder, IngestConfig, IngestError, Pipeline, SinkConfig, query};
use tests::{ExportedSeries, VictoriaMetrics, VictoriaMetricsOptions};

/// Labels a series must carry.
type Labels = &'static [(&'static str, &'static str)];

const WAIT: Duration = Duration::from_secs(30);

fn forwarding() -> IngestConfig {
    IngestConfig {
        forward_enabled: true,
        ..IngestConfig::default()
    }
}

fn sink(vm: &VictoriaMetrics) -> SinkConfig {
    SinkConfig {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        ..SinkConfig::new(vm.url())
    }
}

fn one(series: &[ExportedSeries], selector: &str) -> ExportedSeries {
    assert_eq!(series.len(), 1, "{selector}: {series:?}");
    series[0].clone()
}

#[tokio::test]
async fn every_format_lands_in_victoriametrics_with_names_tags_and_values() {
    let vm = VictoriaMetrics::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::open(dir.path(), forwarding()).unwrap();
    let mut f = Forwarder::new(dir.path(), sink(&vm)).unwrap();
    let t = now_s() - 120;
    let tn_ms = t * 1000;
    p.process(&[
        msg(&senml_topic("aq-0001"), senml_cbor("aq-0001", 0, t, &[("pm25", "ug/m3", 54.0), ("temperature", "Cel", 28.5)])),
        msg(
            "tele/tasmota_A1B2C3/SENSOR",
            format!(
                r#"{{"Time":"{}","BME280":{{"Temperature":17.3,"Humidity":86.0,"Pressure":1017.2,"DewPoint":15.0}},"PMS5003":{{"PM2.5":92,"PM10":121}},"TempUnit":"C"}}"#,
                tasmota_time(t)
            ),
        ),
        msg("weather-7/sensor/co2/state", "415"),
        msg("/key1/ul-9/attrs", format!("{}|t|28.1|n|61.5", chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339())),
        msg("telegraf/edge1/airquality", format!("airquality,host=edge1,district=ba-dinh pm10=80i {}\n", t * 1_000_000_000)),
    ])
    .unwrap();
    f.flush(WAIT).await.unwrap();
    assert_eq!(
        query::outbox_depth(p.connection()).unwrap().entries,
        0,
        "deleted after success"
    );

    let cases: &[(&str, f64, Labels)] = &[
        (
            r#"pm25_value{device="aq-0001"}"#,
            54.0,
            &[
                ("district", "hoan-kiem"),
                ("kind", "airquality"),
                ("format", "senml"),
            ],
        ),
        (
            r#"temperature_value{device="aq-0001"}"#,
            28.5,
            &[("format", "senml")],
        ),
        (
            r#"pm25_value{device="tasmota_a1b2c3"}"#,
            92.0,
            &[("format", "tasmota")],
        ),
        (
            r#"relativeHumidity_value{device="tasmota_a1b2c3"}"#,
            86.0,
            &[("format", "tasmota")],
        ),
        (r#"pressure_value{device="tasmota_a1b2c3"}"#, 1017.2, &[]),
        (
            r#"bme280_dew_point_value{device="tasmota_a1b2c3"}"#,
            15.0,
            &[],
        ),
        (
            r#"temperature_value{device="ul-9"}"#,
            28.1,
            &[("format", "ultralight")],
        ),
        (r#"LAeq_value{device="ul-9"}"#, 61.5, &[]),
        (
            r#"pm10_value{device="edge1"}"#,
            80.0,
            &[("format", "line-protocol"), ("district", "ba-dinh")],
        ),
    ];
    for (selector, value, labels) in cases {
        let s = vm
            .wait_for_export(selector, WAIT, |s| !s.is_empty())
            .unwrap();
        let s = one(&s, selector);
        assert_eq!(s.points(), [(tn_ms, *value)], "{selector}");
        for (k, v) in *labels {
            assert_eq!(s.label(k), Some(*v), "{selector} label {k}");
        }
        assert!(
            s.label("kind").is_none() || s.label("device") == Some("aq-0001"),
            "{selector}: no kind for foreign formats"
        );
    }
    // ESPHome readings take the time of receipt.
    let s = vm
        .wait_for_export(r#"co2_value{device="weather-7"}"#, WAIT, |s| !s.is_empty())
        .unwrap();
    assert_eq!(one(&s, "co2").values, [415.0]);
}

#[tokio::test]
async fn store_outage_then_restart_everything_arrives() {
    let mut vm = VictoriaMetrics::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::open(dir.path(), forwarding()).unwrap();
    let mut f = Forwarder::new(dir.path(), sink(&vm)).unwrap();
    let t = now_s() - 3600;
    let batch = |from: u32, to: u32| -> Vec<_> {
        (from..to)
            .map(|seq| {
                msg(
                    &senml_topic("aq-0100"),
                    senml_cbor(
                        "aq-0100",
                        seq,
                        t + i64::from(seq),
                        &[("pm25", "ug/m3", f64::from(seq))],
                    ),
                )
            })
            .collect()
    };
    p.process(&batch(0, 50)).unwrap();
    f.flush(WAIT).await.unwrap();

    vm.stop().unwrap();
    p.process(&batch(50, 120)).unwrap();
    p.process(&batch(120, 200)).unwrap();
    let e = f.flush(Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(e, IngestError::FlushTimeout { entries: 2 }), "{e}");
    assert_eq!(
        query::outbox_depth(p.connection()).unwrap().readings,
        150,
        "kept while the store is down"
    );

    vm.start_again().unwrap();
    f.flush(WAIT).await.unwrap();
    let s = vm
        .wait_for_export(r#"pm25_value{device="aq-0100"}"#, WAIT, |s| {
            s.first().is_some_and(|s| s.values.len() == 200)
        })
        .unwrap();
    let want: Vec<(i64, f64)> = (0..200).map(|i| ((t + i) * 1000, i as f64)).collect();
    assert_eq!(one(&s, "pm25").points(), want);
}

#[tokio::test]
async fn outbox_full_with_block_while_the_store_is_down_loses_nothing() {
    let mut vm = VictoriaMetrics::start().unwrap();
    vm.stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        outbox_max_bytes: 2000,
        ..forwarding()
    };
    let mut p = Pipeline::open(dir.path(), cfg).unwrap();
    let mut f = Forwarder::new(dir.path(), sink(&vm)).unwrap();
    let t = now_s() - 600;
    let mut pending: Vec<ingest::Inbound> = (0..60u32)
        .map(|seq| {
            msg(
                &senml_topic("aq-0200"),
                senml_cbor(
                    "aq-0200",
                    seq,
                    t + i64::from(seq),
                    &[("pm25", "ug/m3", 1.0), ("pm10", "ug/m3", 2.0)],
                ),
            )
        })
        .collect();
    let mut refused = 0;
    // Like the gateway: a refused batch is not acked; it is retried once the store drains.
    while !pending.is_empty() {
        let batch: Vec<_> = pending.iter().take(5).cloned().collect();
        match p.process(&batch) {
            Ok(_) => {
                pending.drain(..batch.len());
            }
            Err(IngestError::OutboxFull { .. }) => {
                refused += 1;
                if refused == 1 {
                    vm.start_again().unwrap();
                }
                f.flush(WAIT).await.unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0, "the outbox never filled");
    f.flush(WAIT).await.unwrap();
    assert_eq!(query::reading_count(p.connection()).unwrap(), 120);
    for metric in ["pm25", "pm10"] {
        let sel = format!(r#"{metric}_value{{device="aq-0200"}}"#);
        let s = vm
            .wait_for_export(&sel, WAIT, |s| {
                s.first().is_some_and(|s| s.values.len() == 60)
            })
            .unwrap();
        assert_eq!(one(&s, &sel).values.len(), 60);
    }
}

#[tokio::test]
async fn a_line_the_store_refuses_is_dead_lettered_and_the_rest_written() {
    let vm = VictoriaMetrics::start_with(VictoriaMetricsOptions {
        extra_args: vec!["-influx.maxLineSize=1KB".into()],
        ..VictoriaMetricsOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        max_payload_bytes: 256 * 1024,
        ..forwarding()
    };
    let mut p = Pipeline::open(dir.path(), cfg).unwrap();
    let mut f = Forwarder::new(dir.path(), sink(&vm)).unwrap();
    let t = now_s() - 60;
    let long_field = "X".repeat(70_000);
    let mut batch: Vec<_> = (0..20u32)
        .map(|seq| {
            msg(
                &senml_topic("aq-0300"),
                senml_cbor(
                    "aq-0300",
                    seq,
                    t + i64::from(seq),
                    &[("pm25", "ug/m3", f64::from(seq))],
                ),
            )
        })
        .collect();
    batch.insert(
        7,
        msg(
            "tele/tas-9/SENSOR",
            format!(r#"{{"S":{{"{long_field}":1.5,"Temperature":20.0}}}}"#),
        ),
    );
    let out = p.process(&batch).unwrap();
    assert_eq!(out.readings_committed, 22, "the hot tier takes it all");
    f.flush(WAIT).await.unwrap();

    let letters = deadletter::list(
        p.connection(),
        &ListFilter {
            reason: Some("store-rejected".into()),
            ..ListFilter::default()
        },
    )
    .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let line = String::from_utf8(letters[0].payload.clone()).unwrap();
    assert!(line.starts_with("s_xxxx"), "{}", &line[..40]);
    assert_eq!(letters[0].topic, deadletter::STORE_TOPIC);
    assert!(letters[0].detail.contains("400"), "{}", letters[0].detail);
    assert_eq!(query::outbox_depth(p.connection()).unwrap().entries, 0);

    // Splitting resends the lines before the bad one; VictoriaMetrics keeps such repeats
    // as raw samples unless run with `-dedup.minScrapeInterval`, so compare distinct points.
    let distinct = |s: &ExportedSeries| {
        let mut p = s.points();
        p.dedup();
        p
    };
    let s = vm
        .wait_for_export(r#"pm25_value{device="aq-0300"}"#, WAIT, |s| {
            s.first().is_some_and(|s| distinct(s).len() == 20)
        })
        .unwrap();
    let want: Vec<(i64, f64)> = (0..20).map(|i| ((t + i) * 1000, i as f64)).collect();
    assert_eq!(distinct(&one(&s, "pm25")), want);
    let s = vm
        .wait_for_export(r#"temperature_value{device="tas-9"}"#, WAIT, |s| {
            !s.is_empty()
        })
        .unwrap();
    assert_eq!(
        distinct(&one(&s, "temperature")),
        [(s[0].timestamps[0], 20.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarder_task_drains_as_batches_commit_and_stops_on_shutdown() {
    let vm = VictoriaMetrics::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::open(dir.path(), forwarding()).unwrap();
    let f = Forwarder::new(dir.path(), sink(&vm)).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(f.run(shutdown.clone()));
    let t = now_s() - 300;
    for seq in 0..30u32 {
        p.process(&[msg(
            &senml_topic("aq-0400"),
            senml_cbor(
                "aq-0400",
                seq,
                t + i64::from(seq),
                &[("co2", "ppm", 400.0 + f64::from(seq))],
            ),
        )])
        .unwrap();
    }
    let s = vm
        .wait_for_export(r#"co2_value{device="aq-0400"}"#, WAIT, |s| {
            s.first().is_some_and(|s| s.values.len() == 30)
        })
        .unwrap();
    assert_eq!(one(&s, "co2").values[29], 429.0);
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(query::outbox_depth(p.connection()).unwrap().entries, 0);
}

#[test]
fn a_bad_store_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["not a url", "ftp://127.0.0.1:1"] {
        let e = Forwarder::new(dir.path(), SinkConfig::new(url)).unwrap_err();
        assert!(matches!(e, IngestError::Sink(_)), "{url}: {e}");
        assert!(e.to_string().contains(url), "{e}");
    }
}

//! The pipeline against a real SQLite database in a temp dir: every format on its default
//! route, duplicates, sequence numbers, device state, dead letters of every kind, the
//! outbox policies, retention and replay.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ingest::config::OutboxPolicy;
use ingest::deadletter::{self, ListFilter};
use ingest::message::now_ns;
use ingest::query;
use ingest::{IngestConfig, IngestError, Pipeline, RouteConfig, default_routes};

fn open(dir: &std::path::Path, cfg: IngestConfig) -> Pipeline {
    Pipeline::open(dir, cfg).unwrap()
}

fn points(p: &Pipeline, device: &str, metric: &str) -> Vec<(i64, f64)> {
    query::series(p.connection(), device, metric, i64::MIN, i64::MAX, 1000)
        .unwrap()
        .into_iter()
        .map(|pt| (pt.ts_ns, pt.value))
        .collect()
}

fn dead(p: &Pipeline) -> Vec<(String, String)> {
    deadletter::list(p.connection(), &ListFilter::default())
        .unwrap()
        .into_iter()
        .map(|d| (d.topic, d.reason))
        .collect()
}

#[test]
fn every_format_on_its_default_route_lands_in_the_hot_tier() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let t = now_s() - 60;
    let batch = vec![
        msg(
            &senml_topic("aq-0001"),
            senml_cbor(
                "aq-0001",
                0,
                t,
                &[("pm25", "ug/m3", 54.0), ("temperature", "Cel", 28.5)],
            ),
        ),
        msg(
            "tele/tasmota_A1B2C3/SENSOR",
            format!(
                r#"{{"Time":"{}","BME280":{{"Temperature":17.3,"Humidity":86.0,"Pressure":1017.2}},"PMS5003":{{"PM2.5":92,"PM10":121}},"TempUnit":"C"}}"#,
                tasmota_time(t)
            ),
        ),
        msg("weather-7/sensor/pm2_5/state", "31.5"),
        msg("/key1/ul-9/attrs", "t|28.1|h|70|pm25|54|n|61.5"),
        msg("/ul/key1/ul-10/attrs", "co2|412"),
        msg(
            "telegraf/edge1/airquality",
            format!(
                "airquality,host=edge1,district=ba-dinh pm10=80i,label=\"x\" {}\n",
                t * 1_000_000_000
            ),
        ),
    ];
    let out = p.process(&batch).unwrap();
    assert_eq!(out.messages, 6);
    assert_eq!(out.dead_letters, 0, "{:?}", dead(&p));
    assert_eq!(out.readings_committed, 2 + 5 + 1 + 4 + 1 + 1);
    let tn = t * 1_000_000_000;
    assert_eq!(points(&p, "aq-0001", "pm25"), [(tn, 54.0)]);
    assert_eq!(points(&p, "aq-0001", "temperature"), [(tn, 28.5)]);
    assert_eq!(
        points(&p, "tasmota_a1b2c3", "relativeHumidity"),
        [(tn, 86.0)]
    );
    assert_eq!(points(&p, "tasmota_a1b2c3", "pm25"), [(tn, 92.0)]);
    assert_eq!(points(&p, "tasmota_a1b2c3", "pressure"), [(tn, 1017.2)]);
    assert_eq!(points(&p, "weather-7", "pm25")[0].1, 31.5);
    assert_eq!(points(&p, "ul-9", "LAeq")[0].1, 61.5);
    assert_eq!(points(&p, "ul-9", "relativeHumidity")[0].1, 70.0);
    assert_eq!(points(&p, "ul-10", "co2")[0].1, 412.0);
    assert_eq!(points(&p, "edge1", "pm10"), [(tn, 80.0)]);
    let devices = query::device_states(p.connection()).unwrap();
    let names: Vec<&str> = devices.iter().map(|d| d.device.as_str()).collect();
    assert_eq!(
        names,
        [
            "aq-0001",
            "edge1",
            "tasmota_a1b2c3",
            "ul-10",
            "ul-9",
            "weather-7"
        ]
    );
    let aq = &devices[0];
    assert_eq!(
        (
            aq.district.as_deref(),
            aq.kind.as_deref(),
            aq.format.as_str()
        ),
        (Some("hoan-kiem"), Some("airquality"), "senml")
    );
    assert_eq!(devices[1].district.as_deref(), Some("ba-dinh"));
    assert_eq!(devices[2].format, "tasmota");
    // Forwarding is off by default: no outbox.
    assert_eq!(query::outbox_depth(p.connection()).unwrap().entries, 0);
}

#[test]
fn redelivery_is_ignored_and_sequence_numbers_are_tracked() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let t = now_s() - 600;
    let pack = |seq: u32, dt: i64| {
        msg(
            &senml_topic("aq-0002"),
            senml_cbor(
                "aq-0002",
                seq,
                t + dt,
                &[
                    ("pm25", "ug/m3", 10.0 + dt as f64),
                    ("droppedReadings", "count", 3.0),
                ],
            ),
        )
    };
    let first = [pack(0, 0), pack(1, 10)];
    let out = p.process(&first).unwrap();
    assert_eq!((out.readings_committed, out.duplicates), (4, 0));
    // The broker redelivers (gateway crashed before the ack): all ignored.
    let out = p.process(&first).unwrap();
    assert_eq!((out.readings_committed, out.duplicates), (0, 4));
    // Seq 2 and 3 lost, then 4; then a reboot.
    p.process(&[pack(4, 40)]).unwrap();
    p.process(&[pack(0, 50)]).unwrap();
    let d = &query::device_states(p.connection()).unwrap()[0];
    assert_eq!(d.last_seq, Some(0));
    assert_eq!(d.gaps, 2);
    assert_eq!(d.duplicates, 2, "two redelivered messages");
    assert_eq!(d.duplicate_readings, 4);
    assert_eq!(d.reboots, 1);
    assert_eq!(d.dropped_readings, 3 * 4, "counted once per stored report");
    assert_eq!(d.messages, 6);
    assert_eq!(points(&p, "aq-0002", "pm25").len(), 4);
    // State survives a restart.
    drop(p);
    let p = open(dir.path(), IngestConfig::default());
    assert_eq!(query::device_states(p.connection()).unwrap()[0].gaps, 2);
    assert_eq!(query::reading_count(p.connection()).unwrap(), 8);
}

#[test]
fn status_and_meta_update_device_state_not_readings() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let out = p
        .process(&[
            msg("city/tay-ho/noise/nz-1/status", "online"),
            msg(
                "city/tay-ho/noise/nz-1/meta",
                r#"{"fw":"1.2.0","sensors":["mic"]}"#,
            ),
            msg("city/tay-ho/noise/nz-1/status", "offline"),
            msg("city/tay-ho/noise/nz-1/status", "sleepy"),
            msg("city/tay-ho/noise/nz-1/meta", ""),
        ])
        .unwrap();
    assert_eq!((out.readings_committed, out.dead_letters), (0, 1));
    let d = &query::device_states(p.connection()).unwrap()[0];
    assert_eq!(d.status.as_deref(), Some("offline"));
    assert_eq!(d.kind.as_deref(), Some("noise"));
    let meta: serde_json::Value = serde_json::from_str(d.meta_json.as_deref().unwrap()).unwrap();
    assert_eq!(meta["fw"], "1.2.0");
    assert_eq!(
        dead(&p),
        [(
            "city/tay-ho/noise/nz-1/status".to_owned(),
            "malformed-payload".to_owned()
        )]
    );
}

#[test]
fn malformed_payloads_of_every_kind_become_dead_letters_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        max_payload_bytes: 4096,
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    let t = now_s();
    let mut truncated = senml_cbor(
        "aq-0003",
        1,
        t,
        &[("pm25", "ug/m3", 5.0), ("pm10", "ug/m3", 9.0)],
    );
    truncated.truncate(truncated.len() - 4);
    let huge = vec![b'['; 100_000];
    let cases: Vec<(ingest::Inbound, &str)> = vec![
        (msg(&senml_topic("aq-0003"), truncated), "malformed-payload"),
        (
            msg(&senml_topic("aq-0003"), r#"{"not":"senml"}"#),
            "malformed-payload",
        ),
        (msg(&senml_topic("aq-0003"), huge), "payload-too-large"),
        (
            msg(
                "tele/tas-1/SENSOR",
                vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0xff],
            ),
            "malformed-payload",
        ),
        (
            msg(
                "tele/tas-1/SENSOR",
                r#"{"Time":"2026-01-05T08:00:00","BME280":{"Temperature":17.3"#,
            ),
            "malformed-payload",
        ),
        (
            msg(
                &senml_topic("aq-0003"),
                senml_cbor("aq-9999", 1, t, &[("pm25", "ug/m3", 5.0)]),
            ),
            "spoofed-device",
        ),
        (msg(&senml_topic("aq-0003"), vec![0x80]), "empty"),
        (
            msg("weather-7/sensor/temperature/state", "nan"),
            "non-finite",
        ),
        (
            msg("weather-7/sensor/temperature/state", vec![0xff, 0xfe, 0x00]),
            "malformed-payload",
        ),
        (msg("/k/ul-1/attrs", "t|1|h"), "malformed-payload"),
        (
            msg("telegraf/x", "this is not line protocol"),
            "malformed-payload",
        ),
        (msg("some/random/topic", "1"), "no-route"),
        (
            msg("city/hoan-kiem/airquality/aq-0003/down", "1"),
            "unknown-channel",
        ),
        (
            msg(
                "city/hoan-kiem/toaster/aq-0003/up",
                senml_cbor("aq-0003", 1, t, &[("pm25", "ug/m3", 5.0)]),
            ),
            "bad-topic",
        ),
        (
            msg(
                &senml_topic("aq-0003"),
                senml_cbor("aq-0003", 1, t + 3600, &[("pm25", "ug/m3", 5.0)]),
            ),
            "future-timestamp",
        ),
        (
            msg(
                &senml_topic("aq-0003"),
                // Older than max_past_age_s (10 years); a month-old reading is kept and
                // forwarded (tests/log_apply.rs). Twenty years: SenML reads times below
                // 2^28 s (1978) as relative.
                senml_cbor(
                    "aq-0003",
                    1,
                    t - 20 * 365 * 86_400,
                    &[("pm25", "ug/m3", 5.0)],
                ),
            ),
            "too-old",
        ),
        (
            msg(
                &senml_topic("aq-0003"),
                senml_cbor("aq-0003", 1, t, &[("pm25", "ug/m3", 5000.0)]),
            ),
            "out-of-range",
        ),
    ];
    let batch: Vec<_> = cases.iter().map(|(m, _)| m.clone()).collect();
    let out = p.process(&batch).unwrap();
    assert_eq!(out.readings_committed, 0);
    assert_eq!(out.dead_letters, cases.len());
    let got = deadletter::list(p.connection(), &ListFilter::default()).unwrap();
    for ((m, want), d) in cases.iter().zip(&got) {
        assert_eq!(
            (d.topic.as_str(), d.reason.as_str()),
            (m.topic.as_str(), *want),
            "{}",
            d.detail
        );
        assert!(!d.detail.is_empty());
        if *want == "payload-too-large" {
            assert_eq!(d.payload.len(), 4096);
            assert_eq!(d.payload_bytes, 100_000);
        } else {
            assert_eq!(&d.payload[..], &m.payload[..], "the whole payload is kept");
        }
    }
    // The pipeline keeps going.
    let out = p
        .process(&[msg(
            &senml_topic("aq-0003"),
            senml_cbor("aq-0003", 2, t, &[("pm25", "ug/m3", 5.0)]),
        )])
        .unwrap();
    assert_eq!(out.readings_committed, 1);
}

#[test]
fn one_bad_reading_keeps_the_good_ones_and_dead_letters_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let t = now_s();
    let payload = senml_cbor(
        "aq-0004",
        7,
        t,
        &[
            ("pm25", "ug/m3", 20.0),
            ("temperature", "Cel", 300.0),
            ("relativeHumidity", "%RH", 55.0),
        ],
    );
    let out = p
        .process(&[msg(&senml_topic("aq-0004"), payload.clone())])
        .unwrap();
    assert_eq!(
        (
            out.readings_committed,
            out.rejected_readings,
            out.dead_letters
        ),
        (2, 1, 1)
    );
    let d = &deadletter::list(p.connection(), &ListFilter::default()).unwrap()[0];
    assert_eq!(d.reason, "out-of-range");
    assert!(d.detail.contains("temperature=300"), "{}", d.detail);
    assert_eq!(d.payload, payload);
    assert_eq!(query::device_states(p.connection()).unwrap()[0].rejected, 1);
}

#[test]
fn replay_after_a_fix_reinserts_and_deletes_the_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    p.process(&[msg("plant/boiler-1/tele", "t|60.5")]).unwrap();
    assert_eq!(dead(&p)[0].1, "no-route");
    drop(p);
    // The operator adds a route for the new fleet, then replays.
    let mut routes = default_routes();
    routes.push(RouteConfig::new(
        "plant/{device}/tele",
        ingest::Format::Ultralight,
    ));
    let mut p = open(
        dir.path(),
        IngestConfig {
            routes,
            ..IngestConfig::default()
        },
    );
    let id = deadletter::list(p.connection(), &ListFilter::default()).unwrap()[0].id;
    let out = p.replay_dead_letters(&[id]).unwrap();
    assert_eq!(out.readings_committed, 1);
    assert!(dead(&p).is_empty());
    assert_eq!(points(&p, "boiler-1", "temperature")[0].1, 60.5);
}

#[test]
fn outbox_full_with_block_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        forward_enabled: true,
        outbox_max_bytes: 600,
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    let t = now_s();
    let batch = |seq: u32| {
        [msg(
            &senml_topic("aq-0005"),
            senml_cbor(
                "aq-0005",
                seq,
                t + i64::from(seq),
                &[("pm25", "ug/m3", 1.0), ("pm10", "ug/m3", 2.0)],
            ),
        )]
    };
    let mut committed = 0;
    let mut seq = 0;
    let err = loop {
        match p.process(&batch(seq)) {
            Ok(o) => committed += o.readings_committed,
            Err(e) => break e,
        }
        seq += 1;
        assert!(seq < 100, "outbox never filled");
    };
    assert!(
        matches!(err, IngestError::OutboxFull { limit: 600, .. }),
        "{err}"
    );
    assert_eq!(
        query::reading_count(p.connection()).unwrap() as usize,
        committed
    );
    let depth = query::outbox_depth(p.connection()).unwrap();
    assert_eq!(
        depth.readings as usize, committed,
        "every committed reading is queued"
    );
    let d = &query::device_states(p.connection()).unwrap()[0];
    assert_eq!(
        d.last_seq,
        Some(i64::from(seq) - 1),
        "the refused batch left no trace"
    );
    // The store drains (simulated by deleting the entries as the forwarder would); the same
    // batch now commits.
    p.connection().execute("DELETE FROM outbox", []).unwrap();
    assert_eq!(p.process(&batch(seq)).unwrap().readings_committed, 2);
}

#[test]
fn outbox_full_with_drop_oldest_counts_the_dropped_readings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        forward_enabled: true,
        outbox_max_bytes: 600,
        outbox_policy: OutboxPolicy::DropOldest,
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    let t = now_s();
    let mut dropped = 0;
    for seq in 0..20u32 {
        let m = msg(
            &senml_topic("aq-0006"),
            senml_cbor(
                "aq-0006",
                seq,
                t + i64::from(seq),
                &[("pm25", "ug/m3", 1.0), ("pm10", "ug/m3", 2.0)],
            ),
        );
        dropped += p.process(&[m]).unwrap().outbox_dropped_readings;
    }
    let depth = query::outbox_depth(p.connection()).unwrap();
    assert!(depth.bytes <= 600, "{depth:?}");
    assert!(dropped > 0);
    assert_eq!(
        depth.readings + dropped,
        40,
        "every reading is queued or counted as dropped"
    );
    assert_eq!(
        query::reading_count(p.connection()).unwrap(),
        40,
        "the hot tier keeps them all"
    );
}

#[test]
fn retention_deletes_old_readings_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let t = now_s();
    p.process(&[
        msg(
            &senml_topic("aq-0007"),
            senml_cbor("aq-0007", 0, t - 3 * 86_400, &[("pm25", "ug/m3", 1.0)]),
        ),
        msg(
            &senml_topic("aq-0007"),
            senml_cbor(
                "aq-0007",
                1,
                t,
                &[("pm25", "ug/m3", 2.0), ("pm10", "ug/m3", 2.0)],
            ),
        ),
        msg("nowhere", "x"),
    ])
    .unwrap();
    // Five days later: the 3-day-old reading is past the 7-day retention, the rest is not.
    let later = now_ns() + 5 * 86_400 * 1_000_000_000;
    let out = p.enforce_retention(later).unwrap();
    assert_eq!(
        (
            out.readings_deleted,
            out.series_deleted,
            out.dead_letters_deleted
        ),
        (1, 0, 0)
    );
    assert_eq!(query::reading_count(p.connection()).unwrap(), 2);
    // A month and a half later everything is gone, series and dead letters included.
    let out = p
        .enforce_retention(now_ns() + 45 * 86_400 * 1_000_000_000)
        .unwrap();
    assert_eq!(
        (
            out.readings_deleted,
            out.series_deleted,
            out.dead_letters_deleted
        ),
        (2, 2, 1)
    );
    assert!(query::series_list(p.connection()).unwrap().is_empty());
    // New readings of a forgotten series are tracked again.
    p.process(&[msg(
        &senml_topic("aq-0007"),
        senml_cbor("aq-0007", 2, t, &[("pm25", "ug/m3", 3.0)]),
    )])
    .unwrap();
    assert_eq!(query::series_list(p.connection()).unwrap().len(), 1);
}

#[test]
fn dead_letter_api_lists_filters_and_replays_store_rejected_lines_to_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        forward_enabled: true,
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    p.process(&[
        msg("a/b", "1"),
        msg("c/d", "2"),
        msg("weather-1/sensor/temperature/state", "nan"),
    ])
    .unwrap();
    p.connection()
        .execute(
            "INSERT INTO dead_letters(received_ns, topic, payload, reason, detail, payload_bytes)
             VALUES (1, '$store', CAST('pm25,device=x value=1 1' AS BLOB), 'store-rejected', 'HTTP 400', 24)",
            [],
        )
        .unwrap();
    let mut letters = deadletter::DeadLetters::open(dir.path()).unwrap();
    let all = letters.list(&ListFilter::default()).unwrap();
    assert_eq!(all.len(), 4);
    let no_route = letters
        .list(&ListFilter {
            reason: Some("no-route".into()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(no_route.len(), 2);
    let page = letters
        .list(&ListFilter {
            after_id: Some(all[0].id),
            limit: 1,
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(page[0].id, all[1].id);
    assert_eq!(
        letters.get(all[2].id).unwrap().unwrap().reason,
        "non-finite"
    );
    assert_eq!(
        letters.counts().unwrap(),
        [
            ("no-route".to_owned(), 2),
            ("non-finite".to_owned(), 1),
            ("store-rejected".to_owned(), 1)
        ]
    );
    // take_for_replay hands the messages back with their original time of receipt.
    let taken = letters.take_for_replay(&[all[0].id]).unwrap();
    assert_eq!(
        (taken[0].topic.as_str(), taken[0].received_at_ns),
        ("a/b", all[0].received_at_ns)
    );
    assert!(letters.get(all[0].id).unwrap().is_none());
    // A store-rejected line goes back to the outbox as it is.
    let out = p.replay_dead_letters(&[all[3].id, 12345]).unwrap();
    assert_eq!(out.readings_committed, 1);
    let depth = query::outbox_depth(p.connection()).unwrap();
    // Two entries: the ESPHome message's device line (a message seen, its reading
    // refused) and the replayed line.
    assert_eq!((depth.entries, depth.readings), (2, 1));
    assert_eq!(dead(&p).len(), 2);
}

#[test]
fn query_reader_sees_the_pipelines_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let reader = query::Reader::open(dir.path()).unwrap();
    let t = now_s() - 100;
    for i in 0..50 {
        p.process(&[msg(
            &senml_topic("aq-0500"),
            senml_cbor("aq-0500", i as u32, t + i, &[("pm10", "ug/m3", i as f64)]),
        )])
        .unwrap();
    }
    let pts = reader
        .series(
            "aq-0500",
            "pm10",
            (t + 10) * 1_000_000_000,
            (t + 20) * 1_000_000_000,
            100,
        )
        .unwrap();
    assert_eq!(pts.len(), 10);
    assert_eq!(pts[0].value, 10.0);
    assert_eq!(
        reader
            .series("aq-0500", "pm10", i64::MIN, i64::MAX, 7)
            .unwrap()
            .len(),
        7
    );
    assert!(
        reader
            .series("aq-0500", "nope", i64::MIN, i64::MAX, 7)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        reader.series_list().unwrap(),
        [("aq-0500".to_owned(), "pm10".to_owned())]
    );
    assert_eq!(reader.device_states().unwrap()[0].last_seq, Some(49));
    assert_eq!(reader.outbox_depth().unwrap().entries, 0);
}

#[test]
fn replayed_messages_do_not_move_the_sequence_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let strict = IngestConfig {
        max_future_skew_s: 30,
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), strict);
    let t = now_s();
    let pack = |seq: u32, at: i64| {
        msg(
            &senml_topic("aq-0600"),
            senml_cbor("aq-0600", seq, at, &[("pm1", "ug/m3", 4.0)]),
        )
    };
    // seq 3 comes from a board whose clock runs 100 s ahead: refused.
    p.process(&[pack(2, t), pack(3, t + 100)]).unwrap();
    for seq in 4..=10 {
        p.process(&[pack(seq, t + i64::from(seq))]).unwrap();
    }
    drop(p);
    let mut p = open(dir.path(), IngestConfig::default());
    let id = deadletter::list(p.connection(), &ListFilter::default()).unwrap()[0].id;
    assert_eq!(p.replay_dead_letters(&[id]).unwrap().readings_committed, 1);
    let d = &query::device_states(p.connection()).unwrap()[0];
    assert_eq!((d.last_seq, d.reboots, d.gaps), (Some(10), 0, 0));
    assert_eq!(points(&p, "aq-0600", "pm1").len(), 9);
}

#[test]
fn two_pipelines_on_one_database_keep_device_counters_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path(), IngestConfig::default());
    let mut b = open(dir.path(), IngestConfig::default());
    let t = now_s() - 100;
    let pack = |seq: u32| {
        msg(
            &senml_topic("aq-0700"),
            senml_cbor(
                "aq-0700",
                seq,
                t + i64::from(seq),
                &[("pm25", "ug/m3", 1.0)],
            ),
        )
    };
    a.process(&[pack(0)]).unwrap();
    b.process(&[pack(1)]).unwrap();
    a.process(&[pack(2)]).unwrap();
    b.process(&[pack(5)]).unwrap();
    a.process(&[pack(6)]).unwrap();
    let d = &query::device_states(a.connection()).unwrap()[0];
    assert_eq!(
        (d.messages, d.readings, d.last_seq, d.gaps),
        (5, 5, Some(6), 2)
    );
}

/// Device identity for every format: a device belongs to the format that reported it
/// first. Another format naming it (a line-protocol tag, a Tasmota, ESPHome or UltraLight
/// topic) is a `spoofed-device` dead letter that changes nothing in the device table.
#[test]
fn no_format_can_write_a_device_another_format_owns() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let t = now_s() - 60;
    let tn = t * 1_000_000_000;
    p.process(&[msg(
        &senml_topic("aq-0001"),
        senml_cbor("aq-0001", 0, t, &[("pm25", "ug/m3", 54.0)]),
    )])
    .unwrap();
    let before = ingest::devices::list(p.connection()).unwrap();
    let spoofs = vec![
        msg(
            "telegraf/edge1/airquality",
            format!("pm25,device=aq-0001 value=999 {}\n", tn + 1),
        ),
        msg(
            "tele/aq-0001/SENSOR",
            r#"{"PMS5003":{"PM2.5":999}}"#.to_owned(),
        ),
        msg("aq-0001/sensor/pm2_5/state", "999"),
        msg("/key1/aq-0001/attrs", "pm25|999"),
    ];
    let out = p.process(&spoofs).unwrap();
    assert_eq!(out.readings_committed, 0);
    assert_eq!(out.dead_letters, 4);
    let reasons: Vec<String> = dead(&p).into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons, vec!["spoofed-device"; 4]);
    assert_eq!(points(&p, "aq-0001", "pm25"), [(tn, 54.0)]);
    assert_eq!(
        ingest::devices::list(p.connection()).unwrap(),
        before,
        "a refused message leaves the owner's row as it was"
    );

    // One line-protocol message for two devices: the spoofed one is refused, the other
    // stands, and the message is dead-lettered once for the refused part.
    let out = p
        .process(&[msg(
            "telegraf/edge1/airquality",
            format!(
                "pm25,device=aq-0001 value=999 {t1}\npm25,device=edge-1 value=12 {t1}\n",
                t1 = tn + 2
            ),
        )])
        .unwrap();
    assert_eq!((out.readings_committed, out.dead_letters), (1, 1));
    assert_eq!(points(&p, "edge-1", "pm25"), [(tn + 2, 12.0)]);
    let devices = ingest::devices::list(p.connection()).unwrap();
    let edge = devices.iter().find(|d| d.device == "edge-1").unwrap();
    assert_eq!(edge.format, "line-protocol");
    let aq = devices.iter().find(|d| d.device == "aq-0001").unwrap();
    assert_eq!((aq.format.as_str(), aq.messages), ("senml", 1));

    // And the other way round: the line-protocol device is not writable by a native pack.
    let out = p
        .process(&[msg(
            &senml_topic("edge-1"),
            senml_cbor("edge-1", 0, t, &[("pm25", "ug/m3", 1.0)]),
        )])
        .unwrap();
    assert_eq!((out.readings_committed, out.dead_letters), (0, 1));
}

#[test]
fn route_api_keys_and_device_allow_lists_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let mut routes = default_routes();
    for r in &mut routes {
        if r.pattern == "/{apikey}/{device}/attrs" {
            r.apikeys = vec!["good-key".into()];
        }
        if r.pattern == "telegraf/#" {
            r.devices = vec!["edge-*".into(), "host1".into()];
        }
    }
    let cfg = IngestConfig {
        routes,
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    let tn = (now_s() - 60) * 1_000_000_000;
    let out = p
        .process(&[
            msg("/good-key/ul-1/attrs", "pm25|5"),
            msg("/bad-key/ul-2/attrs", "pm25|6"),
            // The second UltraLight route has no keys configured: any key.
            msg("/ul/any-key/ul-3/attrs", "pm25|7"),
            msg(
                "telegraf/x",
                format!("pm25,device=edge-7 value=1 {tn}\npm25,host=host2 value=2 {tn}\n"),
            ),
            msg("telegraf/y", format!("pm25,host=host1 value=3 {tn}\n")),
        ])
        .unwrap();
    assert_eq!(out.readings_committed, 4);
    let mut reasons: Vec<String> = dead(&p).into_iter().map(|(_, r)| r).collect();
    reasons.sort();
    assert_eq!(reasons, ["device-not-allowed", "unknown-apikey"]);
    let letters = deadletter::list(p.connection(), &ListFilter::default()).unwrap();
    assert!(
        letters.iter().all(|d| !d.detail.contains("bad-key")),
        "the refused API key is not repeated in the dead letter's reason"
    );
    let devices: Vec<String> = ingest::devices::list(p.connection())
        .unwrap()
        .into_iter()
        .map(|d| d.device)
        .collect();
    assert_eq!(devices, ["edge-7", "host1", "ul-1", "ul-3"]);
}

/// The device registry gives a device its format (only that format writes it, even as its
/// first message), its UltraLight API key, and the district and kind its messages lack.
#[test]
fn the_registry_binds_devices_to_formats_keys_and_districts() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("devices.toml");
    std::fs::write(
        &registry,
        r#"
[gateway]
username = "gateway"
password = "gateway-secret"

[[device]]
id = "tasmota-a1"
kind = "weather"
district = "tay-ho"
format = "tasmota"
password = "device-secret-1"

[[device]]
id = "ul-7"
kind = "airquality"
district = "cau-giay"
format = "ultralight"
password = "device-secret-2"
apikey = "key-ul-7"
"#,
    )
    .unwrap();
    let cfg = IngestConfig {
        registry: Some(registry),
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    let tn = (now_s() - 60) * 1_000_000_000;
    let out = p
        .process(&[
            // First message of the registered Tasmota device, through line protocol.
            msg(
                "telegraf/x",
                format!("pm25,device=tasmota-a1 value=1 {tn}\n"),
            ),
            // The UltraLight device under another key, then under its own.
            msg("/other-key/ul-7/attrs", "pm25|2"),
            msg("/key-ul-7/ul-7/attrs", "pm25|3"),
            msg(
                "tele/tasmota-a1/SENSOR",
                r#"{"PMS5003":{"PM2.5":4}}"#.to_owned(),
            ),
        ])
        .unwrap();
    assert_eq!(out.readings_committed, 2);
    let mut reasons: Vec<String> = dead(&p).into_iter().map(|(_, r)| r).collect();
    reasons.sort();
    assert_eq!(reasons, ["spoofed-device", "unknown-apikey"]);
    let devices = ingest::devices::list(p.connection()).unwrap();
    let t = devices.iter().find(|d| d.device == "tasmota-a1").unwrap();
    assert_eq!(
        (t.format.as_str(), t.district.as_deref(), t.kind.as_deref()),
        ("tasmota", Some("tay-ho"), Some("weather")),
        "the registry's district and kind fill in what Tasmota does not say"
    );
    let u = devices.iter().find(|d| d.device == "ul-7").unwrap();
    assert_eq!((u.messages, u.district.as_deref()), (1, Some("cau-giay")));

    // A registry that does not parse is a clear error at open.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[device]]\nid = \"x\"\n").unwrap();
    let err = Pipeline::open(
        &dir.path().join("other"),
        IngestConfig {
            registry: Some(bad),
            ..IngestConfig::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("registry"), "{err}");
}

/// Device status for every format: Tasmota's retained LWT and ESPHome's status topic set
/// the device's status as the native channel does, under the same identity rules.
#[test]
fn foreign_wills_set_device_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let t = now_s() - 60;
    let mut retained = msg("tele/tasmota_A1B2C3/LWT", "Online");
    retained.retained = true;
    let out = p
        .process(&[
            retained,
            msg("weather-7/status", "online"),
            msg(
                "tele/tasmota_A1B2C3/SENSOR",
                r#"{"BME280":{"Temperature":21.5}}"#.to_owned(),
            ),
            msg("weather-7/status", "offline"),
            // Not Tasmota's word (it writes `Online`): a dead letter.
            msg("tele/tasmota_A1B2C3/LWT", "online"),
            // A cleared retained will: nothing.
            msg("tele/gone/LWT", ""),
        ])
        .unwrap();
    assert_eq!((out.readings_committed, out.dead_letters), (1, 1));
    let devices = ingest::devices::list(p.connection()).unwrap();
    let status = |id: &str| {
        devices
            .iter()
            .find(|d| d.device == id)
            .map(|d| (d.status.clone(), d.format.clone()))
    };
    assert_eq!(
        status("tasmota_a1b2c3"),
        Some((Some("online".into()), "tasmota".into()))
    );
    assert_eq!(
        status("weather-7"),
        Some((Some("offline".into()), "esphome".into()))
    );
    assert_eq!(status("gone"), None);

    // A native station's status cannot be set through another format's will.
    p.process(&[msg(
        &senml_topic("aq-0001"),
        senml_cbor("aq-0001", 0, t, &[("pm25", "ug/m3", 5.0)]),
    )])
    .unwrap();
    let out = p.process(&[msg("tele/aq-0001/LWT", "Offline")]).unwrap();
    assert_eq!(out.dead_letters, 1);
    let reasons: Vec<String> = dead(&p).into_iter().map(|(_, r)| r).collect();
    assert!(
        reasons.contains(&"spoofed-device".to_owned()),
        "{reasons:?}"
    );
    let aq = ingest::devices::list(p.connection())
        .unwrap()
        .into_iter()
        .find(|d| d.device == "aq-0001")
        .unwrap();
    assert_eq!(aq.status, None);
}

/// Device kinds beyond the four built in are accepted from configuration; without it their
/// messages are dead letters whose reason names the key to add.
#[test]
fn configured_device_kinds_are_accepted_and_unknown_ones_name_the_key() {
    let t = now_s() - 60;
    let batch = vec![
        msg(
            "city/ba-dinh/traffic/tc-1/up",
            senml_cbor("tc-1", 0, t, &[("pm25", "ug/m3", 7.0)]),
        ),
        msg("city/ba-dinh/traffic/tc-1/status", "online"),
        msg(
            "telegraf/edge/x",
            format!(
                "pm25,device=lp-1,kind=traffic value=3 {}\n",
                t * 1_000_000_000
            ),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), IngestConfig::default());
    let out = p.process(&batch).unwrap();
    assert_eq!(out.dead_letters, 2);
    let letters = deadletter::list(p.connection(), &ListFilter::default()).unwrap();
    assert!(
        letters
            .iter()
            .all(|d| d.reason == "bad-topic" && d.detail.contains("ingest.device_kinds")),
        "{letters:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        device_kinds: vec!["traffic".into()],
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    let out = p.process(&batch).unwrap();
    assert_eq!((out.readings_committed, out.dead_letters), (2, 0));
    let devices = ingest::devices::list(p.connection()).unwrap();
    let tc = devices.iter().find(|d| d.device == "tc-1").unwrap();
    assert_eq!(
        (tc.kind.as_deref(), tc.status.as_deref()),
        (Some("traffic"), Some("online"))
    );
    let lp = devices.iter().find(|d| d.device == "lp-1").unwrap();
    assert_eq!(lp.kind.as_deref(), Some("traffic"));

    for bad in ["Traffic", "airquality"] {
        let e = Pipeline::open(
            &dir.path().join(bad),
            IngestConfig {
                device_kinds: vec![bad.into()],
                ..IngestConfig::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("device_kinds"), "{e}");
    }
}

#[test]
fn forwarding_writes_each_devices_series_beside_its_readings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IngestConfig {
        forward_enabled: true,
        ..IngestConfig::default()
    };
    let mut p = open(dir.path(), cfg);
    let t = now_ns();
    let ts = now_s() - 10;
    let mut batch = vec![
        msg("city/tay-ho/noise/nz-1/status", "online"),
        msg(
            "city/tay-ho/noise/nz-1/meta",
            r#"{"fw":"1.2.0","kind":"noise","district":"tay-ho","lat":21.06,"lon":105.82,"periodS":30}"#,
        ),
        msg(
            &senml_topic("aq-0001"),
            senml_cbor(
                "aq-0001",
                7,
                ts,
                &[("pm25", "ug/m3", 12.0), ("pm10", "ug/m3", 20.0)],
            ),
        ),
        msg(
            &senml_topic("aq-0001"),
            senml_cbor("aq-0001", 8, ts + 1, &[("pm25", "ug/m3", 13.0)]),
        ),
    ];
    for (i, m) in batch.iter_mut().enumerate() {
        m.received_at_ns = t + i as i64 * 1_000;
    }
    p.process(&batch).unwrap();
    let entries = ingest::outbox::oldest(p.connection(), usize::MAX).unwrap();
    let body: String = entries
        .iter()
        .map(|e| String::from_utf8(e.body.clone()).unwrap())
        .collect();
    let lines: Vec<&str> = body.lines().collect();
    let first_seen = (t + 2_000) / 1_000_000;
    let expected = [
        format!(
            "gateway_device_status,device=nz-1,district=tay-ho,format=senml,kind=noise online=1 {t}"
        ),
        format!(
            "gateway_device_meta,device=nz-1,district=tay-ho,format=senml,kind=noise,firmware=1.2.0 updated=1,period_s=30,lat=21.06,lon=105.82 {}",
            t + 1_000
        ),
        format!(
            "gateway_device,device=aq-0001,district=hoan-kiem,format=senml,kind=airquality readings=2,first_seen_ms={first_seen} {}",
            t + 2_000
        ),
        format!(
            "gateway_device,device=aq-0001,district=hoan-kiem,format=senml,kind=airquality readings=1 {}",
            t + 3_000
        ),
        // Sequence numbers at the messages' own times.
        format!(
            "gateway_device,device=aq-0001,district=hoan-kiem,format=senml,kind=airquality seq=7 {}",
            ts * 1_000_000_000
        ),
        format!(
            "gateway_device,device=aq-0001,district=hoan-kiem,format=senml,kind=airquality seq=8 {}",
            (ts + 1) * 1_000_000_000
        ),
    ];
    for e in &expected {
        assert!(lines.contains(&e.as_str()), "missing {e}\nin\n{body}");
    }
    // Readings are counted as readings only; the device lines come on top.
    assert_eq!(entries.iter().map(|e| e.readings).sum::<u64>(), 3);
    assert_eq!(lines.len(), 3 + expected.len());

    // Off: readings only.
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(
        dir.path(),
        IngestConfig {
            forward_enabled: true,
            forward_device_series: false,
            ..IngestConfig::default()
        },
    );
    p.process(&batch).unwrap();
    let entries = ingest::outbox::oldest(p.connection(), usize::MAX).unwrap();
    let body = String::from_utf8(entries[0].body.clone()).unwrap();
    assert!(!body.contains("gateway_device"), "{body}");
    assert_eq!(body.lines().count(), 3);
}

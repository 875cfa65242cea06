//! Process-level tests of `gateway run` against a real Mosquitto, a real
//! VictoriaMetrics and the real SQLite state: end to end, crash recovery
//! (`kill -9`), broker restart, store outage, shared subscriptions and
//! poison messages. Each test is bounded and runs alone (see `common::serial`).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use tests::{Mosquitto, VictoriaMetrics};

const WAIT: Duration = Duration::from_secs(60);

/// Distinct (series, timestamp) points in VictoriaMetrics for a selector: a
/// reading written twice (redelivery after a crash) counts once, as it does
/// for queries over the InfluxDB data model.
fn distinct_points(store: &VictoriaMetrics, selector: &str) -> usize {
    store.force_flush().unwrap();
    let series = store.export(selector).unwrap();
    let mut set = BTreeSet::new();
    for s in &series {
        let key = format!("{:?}", s.metric);
        for t in &s.timestamps {
            set.insert((key.clone(), *t));
        }
    }
    set.len()
}

#[test]
fn senml_cbor_end_to_end_into_hot_tier_and_store() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();
    let mut opts = GatewayOptions::new(&broker, "e2e", &dir.path().join("data"));
    opts.store = Some(store.url());
    let mut gw = Gateway::start(&opts);

    let load = senml(60, 3, "e2e-");
    publish(&broker, &load, 0..60, "pub-e2e");
    wait_until(
        "300 readings in the hot tier",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 300,
    );

    let series = store
        .wait_for_export(r#"pm25_value{device="e2e-00001"}"#, WAIT, |s| {
            s.first().is_some_and(|s| s.points().len() == 20)
        })
        .unwrap();
    let s = &series[0];
    assert_eq!(s.label("district"), Some("hoan-kiem"));
    assert_eq!(s.label("kind"), Some("airquality"));
    assert_eq!(s.label("format"), Some("senml"));
    // Message 1 of the load: device e2e-00001, first message of that device.
    let (t0, v0) = s.points()[0];
    assert_eq!(t0, load.base_unix_s * 1000);
    assert!(
        (v0 - (20.0 + 3.0)).abs() < 1e-9,
        "pm25 of message 1 is 23, got {v0}"
    );
    assert_eq!(
        distinct_points(&store, r#"{__name__=~".+_value",device=~"e2e-.*"}"#),
        300
    );

    // Metrics reflect what happened.
    assert_eq!(gw.metric("mqtt_messages_received_total"), Some(60.0));
    assert_eq!(gw.metric("mqtt_acks_total"), Some(60.0));
    let (code, health) = gw.get("/health").unwrap();
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("\"mqtt_connected\":true"), "{health}");
    assert_eq!(gw.get("/health/live").unwrap().0, 200);

    let status = gw.terminate().expect("exited");
    assert!(status.success(), "graceful stop exits 0, got {status}");
    assert!(gw.log_text().contains("gateway stopped"));
    assert_eq!(query_u64(&gw.data_dir, "SELECT COUNT(*) FROM outbox"), 0);
}

#[test]
fn kill_9_mid_stream_then_restart_stores_every_reading_exactly_once() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();
    // A small hot-tier head, flushed into chunks every 2,000 readings: the kill lands
    // among flushes as well as batches.
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[ingest]\nhot_head_max_readings = 2000\nhot_flush_interval_s = 1\n",
    )
    .unwrap();
    let mut opts = GatewayOptions::new(&broker, "k9", &dir.path().join("data"));
    opts.store = Some(store.url());
    opts.extra = vec!["--config".into(), config.display().to_string()];
    let mut gw = Gateway::start(&opts);

    // 20,000 messages x 5 readings = 100,000 readings.
    let load = tasmota(20_000, 500, "k9-");
    publish(&broker, &load, 0..10_000, "pub-k9-a");
    let at_kill = wait_until(
        "the gateway to be mid-stream",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n >= 5_000,
    );
    gw.kill();
    let after_kill = reading_count(&gw.data_dir);
    assert!(after_kill < 100_000, "killed before the end of the stream");
    // The rest arrives while the gateway is down: the broker queues it in the session.
    publish(&broker, &load, 10_000..20_000, "pub-k9-b");
    gw.restart();
    wait_until(
        "all 100,000 readings in the hot tier",
        Duration::from_secs(120),
        || reading_count(&gw.data_dir),
        |n| *n >= 100_000,
    );
    // Exactly once: a reading is unique by series and time and the head's rows move into
    // chunks atomically, so the count equals the readings sent, and every device has its
    // 200 messages.
    assert_eq!(reading_count(&gw.data_dir), 100_000, "killed at {at_kill}");
    assert_eq!(devices_with_readings(&gw.data_dir), 500);
    let selector = r#"{__name__=~".+_value",device=~"k9-.*"}"#;
    wait_until(
        "all 100,000 readings in VictoriaMetrics",
        Duration::from_secs(90),
        || distinct_points(&store, selector),
        |n| *n >= 100_000,
    );
    assert_eq!(distinct_points(&store, selector), 100_000);
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn broker_restart_mid_stream_loses_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start().unwrap();
    let opts = GatewayOptions::new(&broker, "brk", &dir.path().join("data"));
    let mut gw = Gateway::start(&opts);

    let load = tasmota(6_000, 100, "brk-");
    publish(&broker, &load, 0..3_000, "pub-brk-a");
    broker.stop().unwrap();
    broker.start_again().unwrap();
    publish(&broker, &load, 3_000..6_000, "pub-brk-b");
    wait_until(
        "30,000 readings after the broker restart",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n >= 30_000,
    );
    assert_eq!(reading_count(&gw.data_dir), 30_000);
    assert!(gw.metric("mqtt_disconnects_total").unwrap_or(0.0) >= 1.0);
    assert!(gw.is_running());
    gw.wait_ready(WAIT);
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn store_stopped_then_started_everything_arrives() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let mut store = VictoriaMetrics::start().unwrap();
    let mut opts = GatewayOptions::new(&broker, "outage", &dir.path().join("data"));
    opts.store = Some(store.url());
    let mut gw = Gateway::start(&opts);

    store.stop().unwrap();
    let load = senml(1_000, 10, "out-");
    publish(&broker, &load, 0..1_000, "pub-outage");
    wait_until(
        "5,000 readings in the hot tier",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 5_000,
    );
    // The store is down: the readings wait in the outbox, and the gateway
    // still acknowledges (the outbox is far from full).
    assert!(query_u64(&gw.data_dir, "SELECT COUNT(*) FROM outbox") > 0);
    assert_eq!(gw.metric("mqtt_acks_total"), Some(1_000.0));

    store.start_again().unwrap();
    let selector = r#"{__name__=~".+_value",device=~"out-.*"}"#;
    wait_until(
        "5,000 readings in the store",
        WAIT,
        || distinct_points(&store, selector),
        |n| *n >= 5_000,
    );
    assert_eq!(distinct_points(&store, selector), 5_000);
    wait_until(
        "an empty outbox",
        WAIT,
        || query_u64(&gw.data_dir, "SELECT COUNT(*) FROM outbox"),
        |n| *n == 0,
    );
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn two_gateways_in_one_share_group_split_the_traffic() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let mut a = GatewayOptions::new(&broker, "share-a", &dir.path().join("a"));
    a.share_group = Some("city".into());
    let mut b = GatewayOptions::new(&broker, "share-b", &dir.path().join("b"));
    b.share_group = Some("city".into());
    let mut ga = Gateway::start(&a);
    let mut gb = Gateway::start(&b);

    let load = tasmota(4_000, 50, "shr-");
    publish(&broker, &load, 0..4_000, "pub-share");
    let total = wait_until(
        "20,000 readings across both gateways",
        WAIT,
        || reading_count(&ga.data_dir) + reading_count(&gb.data_dir),
        |n| *n >= 20_000,
    );
    let (na, nb) = (reading_count(&ga.data_dir), reading_count(&gb.data_dir));
    assert_eq!(total, 20_000, "each reading stored once: a={na} b={nb}");
    assert!(
        na > 0 && nb > 0,
        "both gateways took traffic: a={na} b={nb}"
    );
    assert!(ga.terminate().expect("exited").success());
    assert!(gb.terminate().expect("exited").success());
}

#[test]
fn malformed_payloads_become_dead_letters_and_the_service_keeps_running() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let opts = GatewayOptions::new(&broker, "poison", &dir.path().join("data"));
    let mut gw = Gateway::start(&opts);

    let good = senml(1, 1, "ok-");
    let (good_topic, good_payload) = good.message(0);
    let truncated = good_payload[..good_payload.len() / 2].to_vec();
    // A SenML pack whose base name claims another device than the topic's.
    let spoof = senml(1, 1, "other-").message(0).1;
    let messages = vec![
        (good_topic.clone(), truncated),
        (
            "tele/bad-json/SENSOR".to_owned(),
            b"{\"Time\": 12, \"BME280\": [".to_vec(),
        ),
        (
            "tele/garbage/SENSOR".to_owned(),
            vec![0xff, 0x00, 0xfe, 0x13, 0x37],
        ),
        ("tele/huge/SENSOR".to_owned(), vec![b' '; 200 * 1024]),
        ("city/hoan-kiem/airquality/victim/up".to_owned(), spoof),
        (good_topic, good_payload),
    ];
    publish_raw(&broker, &messages);
    wait_until(
        "the good message",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 5,
    );
    let letters = wait_until(
        "5 dead letters",
        WAIT,
        || query_u64(&gw.data_dir, "SELECT COUNT(*) FROM dead_letters"),
        |n| *n >= 5,
    );
    assert_eq!(letters, 5);
    for reason in ["payload-too-large", "spoofed-device", "malformed-payload"] {
        let n = query_u64(
            &gw.data_dir,
            &format!("SELECT COUNT(*) FROM dead_letters WHERE reason = '{reason}'"),
        );
        assert!(n >= 1, "a dead letter with reason {reason}");
    }
    assert!(gw.is_running());
    gw.wait_ready(WAIT);

    // The CLI sees them too, while the service runs.
    let out = std::process::Command::new(gateway_bin())
        .args(["deadletters", "--data-dir"])
        .arg(&gw.data_dir)
        .arg("list")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("spoofed-device") && text.contains("5 in all"),
        "{text}"
    );
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn embedded_broker_serves_a_one_box_gateway_and_stops_with_it() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = tests::free_port().unwrap();
    let mut opts = GatewayOptions::without_broker("onebox", &dir.path().join("data"));
    opts.extra = vec!["--embedded-broker".into(), format!("127.0.0.1:{port}")];
    let mut gw = Gateway::start(&opts);
    let load = tasmota(500, 5, "box-");
    publish_to("127.0.0.1", port, &load, 0..500, "pub-box");
    wait_until(
        "2,500 readings",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 2_500,
    );
    assert!(gw.terminate().expect("exited").success());
    // The broker went with the gateway.
    assert!(
        tests::net::tcp_accepts(port).is_err(),
        "broker still listening on {port}"
    );
    // Its session survived: messages published while the gateway is away
    // (broker down too) are not possible, but a restart resumes the session.
    gw.restart();
    assert!(
        gw.log_text().contains("session_present=true"),
        "{}",
        gw.log_tail()
    );
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn full_outbox_with_policy_block_stops_acking_and_loses_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let mut store = VictoriaMetrics::start().unwrap();
    let config = dir.path().join("gateway.toml");
    // About 150 readings of line protocol: the outbox fills within a few batches.
    std::fs::write(
        &config,
        "[ingest]\noutbox_max_bytes = 16000\noutbox_policy = \"block\"\n",
    )
    .unwrap();
    let mut opts = GatewayOptions::new(&broker, "block", &dir.path().join("data"));
    opts.store = Some(store.url());
    opts.extra = vec!["--config".into(), config.display().to_string()];
    let mut gw = Gateway::start(&opts);

    store.stop().unwrap();
    let load = senml(600, 6, "blk-");
    // One message makes an outbox entry; the rest cannot fit beside it.
    publish(&broker, &load, 0..1, "pub-block-a");
    wait_until(
        "the first reading",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 5,
    );
    publish(&broker, &load, 1..600, "pub-block-b");
    // Back-pressure: commits are refused, so acks stop short of what was sent.
    wait_until(
        "commits refused for a full outbox",
        WAIT,
        || gw.metric("gateway_commit_retries_total{reason=\"backpressure\"}"),
        |n| n.is_some_and(|n| n >= 1.0),
    );
    let acked = gw.metric("mqtt_acks_total").unwrap_or(0.0);
    assert!(acked < 600.0, "acked {acked} of 600 with the store down");
    assert!(reading_count(&gw.data_dir) < 3_000);

    store.start_again().unwrap();
    wait_until(
        "3,000 readings in the hot tier",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n == 3_000,
    );
    let selector = r#"{__name__=~".+_value",device=~"blk-.*"}"#;
    wait_until(
        "3,000 readings in the store",
        WAIT,
        || distinct_points(&store, selector),
        |n| *n >= 3_000,
    );
    assert_eq!(distinct_points(&store, selector), 3_000);
    // The held acknowledgements go out once the backlog is applied (the event loop sends
    // them as the connection takes them).
    wait_until(
        "every message acknowledged",
        WAIT,
        || gw.metric("mqtt_acks_total"),
        |n| *n == Some(600.0),
    );
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn json_logs_and_dead_letter_replay_after_a_fix() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let mut opts = GatewayOptions::new(&broker, "replay", &dir.path().join("data"));
    opts.extra = vec!["--log-format".into(), "json".into()];
    let mut gw = Gateway::start(&opts);
    // A Tasmota device set to New Zealand time (+12:00) while the gateway
    // assumes Hanoi's +07:00: its readings look 5 hours ahead and are refused.
    let now_s = ingest::message::now_ns() / 1_000_000_000;
    let payload = format!(
        "{{\"Time\":\"{}\",\"BME280\":{{\"Temperature\":21.5}},\"TempUnit\":\"C\"}}",
        gateway::bench::iso_local(now_s + 12 * 3600)
    );
    publish_raw(
        &broker,
        &[("tele/nz-0001/SENSOR".to_owned(), payload.into_bytes())],
    );
    wait_until(
        "a dead letter",
        WAIT,
        || {
            query_u64(
                &gw.data_dir,
                "SELECT COUNT(*) FROM dead_letters WHERE reason = 'future-timestamp'",
            )
        },
        |n| *n == 1,
    );
    assert!(gw.terminate().expect("exited").success());
    // Every log line is one JSON object.
    let log = gw.log_text();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }

    // The fix: the right offset; replay stores the reading and removes the dead letter.
    let config = dir.path().join("fixed.toml");
    std::fs::write(&config, "[ingest]\ntasmota_utc_offset = \"+12:00\"\n").unwrap();
    let out = std::process::Command::new(gateway_bin())
        .args(["deadletters", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&gw.data_dir)
        .args(["replay"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 readings stored"), "{text}");
    assert_eq!(
        query_u64(&gw.data_dir, "SELECT COUNT(*) FROM dead_letters"),
        0
    );
    assert_eq!(reading_count(&gw.data_dir), 1);
}

#[test]
fn a_queued_session_larger_than_the_buffer_is_taken_in_full() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[batch]\nmax_messages = 200\nmax_buffered_messages = 1000\n",
    )
    .unwrap();
    let mut opts = GatewayOptions::new(&broker, "queued", &dir.path().join("data"));
    opts.extra = vec!["--config".into(), config.display().to_string()];
    let mut gw = Gateway::start(&opts);
    // Away while 10,000 messages queue up in its session.
    assert!(gw.terminate().expect("exited").success());
    let load = tasmota(10_000, 100, "q-");
    publish(&broker, &load, 0..10_000, "pub-queued");
    gw.restart();
    wait_until(
        "50,000 readings",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n >= 50_000,
    );
    assert_eq!(reading_count(&gw.data_dir), 50_000);
    // Mosquitto 2.0 sends the whole queue at once: the bounded hand-off to the log writer
    // holds the connection back (TCP back-pressure) instead of buffering it all.
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn every_format_on_its_default_route_reaches_the_hot_tier_and_the_store() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();
    let mut opts = GatewayOptions::new(&broker, "formats", &dir.path().join("data"));
    opts.store = Some(store.url());
    let mut gw = Gateway::start(&opts);

    let now_s = ingest::message::now_ns() / 1_000_000_000;
    let (senml_topic, senml_payload) = senml(1, 1, "fmt-senml-").message(0);
    let (tas_topic, tas_payload) = tasmota(1, 1, "fmt-tasmota-").message(0);
    let messages = vec![
        (senml_topic, senml_payload),
        (tas_topic, tas_payload),
        (
            "fmt-esphome/sensor/temperature/state".to_owned(),
            b"23.5".to_vec(),
        ),
        (
            "/key123/fmt-ul/attrs".to_owned(),
            b"t|28.1|h|70|pm25|54".to_vec(),
        ),
        (
            "telegraf/host1/weather".to_owned(),
            format!(
                "weather,device=fmt-lp temperature=21.5 {}\n",
                now_s * 1_000_000_000
            )
            .into_bytes(),
        ),
    ];
    publish_raw(&broker, &messages);
    // 5 (SenML) + 5 (Tasmota) + 1 (ESPHome) + 3 (UltraLight) + 1 (line protocol).
    wait_until(
        "15 readings",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n >= 15,
    );
    assert_eq!(reading_count(&gw.data_dir), 15);
    assert_eq!(
        query_u64(&gw.data_dir, "SELECT COUNT(*) FROM dead_letters"),
        0
    );

    for (selector, value) in [
        (r#"temperature_value{device="fmt-esphome"}"#, 23.5),
        (r#"temperature_value{device="fmt-ul"}"#, 28.1),
        (r#"relativeHumidity_value{device="fmt-ul"}"#, 70.0),
        (r#"pm25_value{device="fmt-ul"}"#, 54.0),
        (r#"pm25_value{device="fmt-tasmota-00000"}"#, 20.0),
        (r#"pm25_value{device="fmt-senml-00000"}"#, 20.0),
    ] {
        let series = store
            .wait_for_export(selector, WAIT, |s| !s.is_empty())
            .unwrap();
        let points = series[0].points();
        assert_eq!(points.len(), 1, "{selector}");
        assert!((points[0].1 - value).abs() < 1e-9, "{selector}: {points:?}");
    }
    let lp = store
        .wait_for_export(r#"{__name__=~".+_value",device="fmt-lp"}"#, WAIT, |s| {
            !s.is_empty()
        })
        .unwrap();
    assert_eq!(lp.len(), 1, "{lp:?}");
    assert_eq!(lp[0].points()[0], (now_s * 1000, 21.5));
    assert!(gw.terminate().expect("exited").success());
}

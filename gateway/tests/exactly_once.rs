//! Exactly once through the message log, for every format, against a real Mosquitto, a
//! real VictoriaMetrics (without `-dedup.minScrapeInterval`, so a duplicate shows) and the
//! real SQLite state: readings without a time of their own through three `kill -9`, a
//! legitimately repeated payload, retained messages, a torn log tail, and old readings.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tests::{Mosquitto, VictoriaMetrics, VictoriaMetricsOptions};

const WAIT: Duration = Duration::from_secs(90);
const PER_FORMAT: usize = 1_500;
const DEVICES: usize = 5;

/// Message `i` of each timeless format: (topic, payload, value). Each value is distinct
/// within its device so that every reading can be told apart in the store.
fn messages(i: usize) -> Vec<(String, Vec<u8>, f64)> {
    let d = i % DEVICES;
    let n = i / DEVICES;
    let v = 10.0 + n as f64 / 100.0;
    vec![
        (
            format!("eo-esp-{d}/sensor/temperature/state"),
            format!("{v:.2}").into_bytes(),
            v,
        ),
        (
            format!("/eokey/eo-ul-{d}/attrs"),
            format!("t|{v:.2}").into_bytes(),
            v,
        ),
        (
            format!("city/hoan-kiem/weather/eo-sn-{d}/up"),
            format!(r#"[{{"bn":"eo-sn-{d}:","seq":{n},"n":"temperature","u":"Cel","v":{v:.2}}}]"#)
                .into_bytes(),
            v,
        ),
        (
            "telegraf/eo".to_owned(),
            format!("air,device=eo-lp-{d} temperature={v:.2}").into_bytes(),
            v,
        ),
    ]
}

/// Publishes `count` rounds with QoS 1 from a real client, waiting for every PUBACK,
/// at a steady pace, until done or `stop`.
fn publish_stream(
    broker_port: u16,
    count: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut o = MqttOptions::new("eo-publisher", "127.0.0.1", broker_port);
            o.set_keep_alive(Duration::from_secs(30));
            let (client, mut events) = AsyncClient::new(o, 1000);
            let expected = count * 4;
            let poller = tokio::spawn(async move {
                let mut acked = 0;
                while acked < expected {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                        Ok(_) => {}
                        Err(e) => panic!("publisher: {e}"),
                    }
                }
            });
            for i in 0..count {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for (t, p, _) in messages(i) {
                    client.publish(t, QoS::AtLeastOnce, false, p).await.unwrap();
                }
                // About 1,000 messages a second: the stream spans the three kills.
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            tokio::time::timeout(Duration::from_secs(60), poller)
                .await
                .unwrap()
                .unwrap();
        });
    })
}

/// Raw samples per series (no dedup), keyed by device: (time ms, value).
fn samples_by_device(store: &VictoriaMetrics, selector: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    store.force_flush().unwrap();
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for s in store.export(selector).unwrap() {
        let device = s.label("device").unwrap_or("?").to_owned();
        out.entry(device).or_default().extend(s.points());
    }
    out
}

#[test]
fn timeless_readings_are_stored_exactly_once_through_three_kill_9() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();
    let mut opts = GatewayOptions::new(&broker, "eo-k9", &dir.path().join("data"));
    opts.store = Some(store.url());
    let mut gw = Gateway::start(&opts);

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = publish_stream(broker.port(), PER_FORMAT, Arc::clone(&stop));
    let total = (PER_FORMAT * 4) as u64;
    for k in 1..=3u64 {
        wait_until(
            "the gateway to be mid-stream",
            WAIT,
            || reading_count(&gw.data_dir),
            |n| *n >= k * total / 5,
        );
        gw.kill();
        std::thread::sleep(Duration::from_millis(300));
        gw.restart();
    }
    publisher.join().unwrap();
    wait_until(
        "every reading in the hot tier",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n >= total,
    );
    let sent: BTreeMap<String, Vec<f64>> = {
        let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for i in 0..PER_FORMAT {
            let d = i % DEVICES;
            let v = messages(i)[0].2;
            for f in ["esp", "ul", "sn", "lp"] {
                m.entry(format!("eo-{f}-{d}")).or_default().push(v);
            }
        }
        m
    };
    let selector = r#"{__name__=~".+_value",device=~"eo-.*"}"#;
    let got = Mutex::new(BTreeMap::new());
    wait_until(
        "every reading in VictoriaMetrics",
        WAIT,
        || {
            let m = samples_by_device(&store, selector);
            let n: usize = m.values().map(Vec::len).sum();
            *got.lock().unwrap() = m;
            n
        },
        |n| *n >= total as usize,
    );
    // Settle: a late duplicate would still show.
    std::thread::sleep(Duration::from_secs(2));
    let got = samples_by_device(&store, selector);
    // Two kinds of extra sample could show. A message stored twice (the bug this guards
    // against: a redelivery stamped again at receipt) is a second sample with the same
    // value at ANOTHER time: it must not exist. An outbox entry that the store took just
    // before a `kill -9`, and that the forwarder therefore sends again, is the same point
    // (same series, time and value): the InfluxDB data model stores it once and
    // VictoriaMetrics with `-dedup.minScrapeInterval` merges it; raw, it shows as an exact
    // copy, counted and printed here.
    let mut exact_copies = 0usize;
    for (device, want) in &sent {
        let mut points = got.get(device).cloned().unwrap_or_default();
        points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let raw = points.len();
        points.dedup();
        exact_copies += raw - points.len();
        // Compared as sent: two decimals.
        let mut have: Vec<String> = points.iter().map(|(_, v)| format!("{v:.2}")).collect();
        have.sort();
        let mut want: Vec<String> = want.iter().map(|v| format!("{v:.2}")).collect();
        want.sort();
        assert_eq!(
            have.len(),
            want.len(),
            "{device}: {} distinct points in the store for {} readings sent",
            have.len(),
            want.len()
        );
        assert_eq!(have, want, "{device}");
    }
    eprintln!("exact copies resent by the forwarder after a kill: {exact_copies}");
    assert_eq!(reading_count(&gw.data_dir), total, "hot tier: exactly once");
    // No redelivery was taken for a reboot or a gap.
    assert_eq!(
        query_u64(
            &gw.data_dir,
            "SELECT COALESCE(SUM(gaps + reboots + duplicates), 0) FROM devices WHERE device LIKE 'eo-sn-%'"
        ),
        0
    );
    assert_eq!(
        query_u64(&gw.data_dir, "SELECT COUNT(*) FROM dead_letters"),
        0
    );
    stop.store(true, Ordering::Relaxed);
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn a_repeated_payload_is_two_readings_and_retained_ones_are_not_new() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    // Before the gateway subscribes: a retained reading and a retained status of a device
    // that is gone.
    publish_retained(&broker, "rt-esp/sensor/temperature/state", b"21.5");
    publish_retained(
        &broker,
        "city/hoan-kiem/airquality/rt-ghost/status",
        b"online",
    );
    let opts = GatewayOptions::new(&broker, "eo-rt", &dir.path().join("data"));
    let mut gw = Gateway::start(&opts);
    wait_until(
        "the retained status",
        WAIT,
        || {
            query_u64(
                &gw.data_dir,
                "SELECT COUNT(*) FROM devices WHERE device = 'rt-ghost'",
            )
        },
        |n| *n == 1,
    );
    // The same value twice, as two first deliveries (DUP clear): two readings.
    publish_raw(
        &broker,
        &[(
            "rp-esp/sensor/temperature/state".to_owned(),
            b"17.3".to_vec(),
        )],
    );
    std::thread::sleep(Duration::from_millis(20));
    publish_raw(
        &broker,
        &[(
            "rp-esp/sensor/temperature/state".to_owned(),
            b"17.3".to_vec(),
        )],
    );
    wait_until(
        "both readings",
        WAIT,
        || readings_where(&gw.data_dir, |d, _| d == "rp-esp"),
        |n| *n >= 2,
    );
    // Reconnects (a restart subscribes again) deliver the retained reading again: still
    // not a reading.
    gw.terminate();
    gw.restart();
    gw.terminate();
    gw.restart();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(readings_where(&gw.data_dir, |d, _| d == "rp-esp"), 2);
    assert_eq!(
        readings_where(&gw.data_dir, |d, _| d == "rt-esp"),
        0,
        "a retained reading is not a new reading"
    );
    // The ghost's status is known, but it was never seen alive.
    assert_eq!(
        query_u64(
            &gw.data_dir,
            "SELECT last_seen FROM devices WHERE device = 'rt-ghost'"
        ),
        0
    );
    let (code, body) = gw.get("/api/devices").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ghost = v["devices"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["device"] == "rt-ghost"))
        .cloned()
        .unwrap_or_else(|| panic!("rt-ghost in {body}"));
    assert_eq!(ghost["stale"], true, "{ghost}");
    assert!(ghost["last_seen_ms"].is_null(), "{ghost}");
    assert!(gw.terminate().expect("exited").success());
}

fn publish_retained(broker: &Mosquitto, topic: &str, payload: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let o = MqttOptions::new("eo-retainer", broker.host(), broker.port());
        let (client, mut events) = AsyncClient::new(o, 10);
        client
            .publish(topic.to_owned(), QoS::AtLeastOnce, true, payload.to_vec())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
                    break;
                }
            }
        })
        .await
        .unwrap();
    });
}

#[test]
fn a_torn_log_tail_is_truncated_and_the_rest_applied_once() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let config = dir.path().join("gateway.toml");
    // The applier waits 10 s before applying: the log holds acknowledged messages that are
    // not applied yet when the gateway is killed.
    std::fs::write(&config, "[ingest]\napply_linger_ms = 10000\n").unwrap();
    let mut opts = GatewayOptions::new(&broker, "eo-torn", &dir.path().join("data"));
    opts.extra = vec!["--config".into(), config.display().to_string()];
    let mut gw = Gateway::start(&opts);
    let load = tasmota(200, 20, "torn-");
    publish(&broker, &load, 0..200, "pub-torn");
    wait_until(
        "200 messages logged",
        WAIT,
        || gw.metric("log_appended_total"),
        |n| n.is_some_and(|n| n >= 200.0),
    );
    gw.kill();
    assert_eq!(reading_count(&gw.data_dir), 0, "killed before applying");
    // Damage the last record of the last segment, as a torn write would.
    let log_dir = gw.data_dir.join("log");
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    // Segments are preallocated with zeros: the last record ends at the last non-zero byte.
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    bytes[end - 3] ^= 0xff;
    std::fs::write(last, &bytes).unwrap();
    std::fs::write(&config, "").unwrap();
    gw.restart();
    wait_until(
        "the 199 intact messages applied",
        WAIT,
        || reading_count(&gw.data_dir),
        |n| *n >= 199 * 5,
    );
    std::thread::sleep(Duration::from_millis(500));
    // The damaged record is the last message. If its PUBACK had not reached the broker
    // before the kill (the ack is queued to the client, then written), the broker sends it
    // again and it is stored once; if it had, it is gone, as a torn write would lose it
    // (a real torn write is never acknowledged). Either way nothing is stored twice.
    let stored = reading_count(&gw.data_dir);
    assert!(
        stored == 199 * 5 || stored == 200 * 5,
        "{stored} readings: the 199 intact messages once, and the last at most once"
    );
    assert!(
        gw.log_text().contains("torn tail"),
        "the truncation is logged:\n{}",
        gw.log_tail()
    );
    // Restarting again applies nothing twice.
    gw.terminate();
    gw.restart();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reading_count(&gw.data_dir), stored);
    assert!(gw.terminate().expect("exited").success());
}

#[test]
fn a_month_old_reading_reaches_the_store_and_a_fifty_year_old_one_is_refused() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start_with(VictoriaMetricsOptions {
        extra_args: vec!["-retentionPeriod=100y".into()],
        ..VictoriaMetricsOptions::default()
    })
    .unwrap();
    let mut opts = GatewayOptions::new(&broker, "eo-old", &dir.path().join("data"));
    opts.store = Some(store.url());
    let mut gw = Gateway::start(&opts);
    let now_ns = ingest::message::now_ns();
    let day = 86_400_000_000_000i64;
    let month_ago = now_ns - 30 * day;
    let ancient = now_ns - 50 * 365 * day;
    publish_raw(
        &broker,
        &[
            (
                "telegraf/old".to_owned(),
                format!("air,device=old-1 temperature=20.5 {month_ago}").into_bytes(),
            ),
            (
                "telegraf/old".to_owned(),
                format!("air,device=old-2 temperature=21.5 {ancient}").into_bytes(),
            ),
        ],
    );
    wait_until(
        "the refused one as a dead letter",
        WAIT,
        || {
            query_u64(
                &gw.data_dir,
                "SELECT COUNT(*) FROM dead_letters WHERE reason = 'too-old'",
            )
        },
        |n| *n >= 1,
    );
    let points = store
        .wait_for_export(
            r#"{__name__=~".+_value",device="old-1"}"#,
            Duration::from_secs(60),
            |s| !s.is_empty(),
        )
        .unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].points(), vec![(month_ago / 1_000_000, 20.5)]);
    assert_eq!(
        query_u64(&gw.data_dir, "SELECT COUNT(*) FROM dead_letters"),
        1,
        "only the fifty-year-old reading is refused"
    );
    // Older than the hot tier's week: in the store, not in the hot tier.
    assert_eq!(readings_where(&gw.data_dir, |d, _| d == "old-1"), 0);
    // Its reading is not in the store (the device's own lines say a message came).
    assert!(
        store
            .export(r#"{__name__=~".+_value",device="old-2"}"#)
            .unwrap()
            .is_empty()
    );
    assert!(gw.terminate().expect("exited").success());
}

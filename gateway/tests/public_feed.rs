//! What the gateway publishes, end to end: the real gateway binary with a real
//! Mosquitto. The public AQI feed (retained, per district and per station), alert
//! notifications over MQTT, and the open `/public/*` HTTP endpoints beside a
//! token-protected API.
//!
//! Never asserts timing: it waits for messages and states and checks their content.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use schemas::senml::{Record, cbor};
use serde_json::Value;
use tests::Mosquitto;

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "public-feed-token-8c1d4e7a92b3";

/// A received message: topic, payload, retain flag (as published: Retain As Published).
type Received = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

/// A subscriber on a thread of its own; returns once the broker granted every filter.
fn subscriber(broker: &Mosquitto, id: &str, filters: &[&str]) -> Received {
    let seen: Received = Arc::default();
    let out = Arc::clone(&seen);
    let (host, port) = (broker.host().to_owned(), broker.port());
    let id = id.to_owned();
    let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, mut events) = AsyncClient::new(MqttOptions::new(id, host, port), 100);
            let wanted: Vec<Filter> = filters
                .iter()
                .map(|f| {
                    let mut filter = Filter::new(f.clone(), QoS::AtLeastOnce);
                    filter.preserve_retain = true;
                    filter
                })
                .collect();
            client.subscribe_many(wanted).await.unwrap();
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        out.lock()
                            .unwrap()
                            .push((topic, p.payload.to_vec(), p.retain));
                    }
                    Ok(_) => {}
                    // The broker went away at the end of the test.
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    });
    ready_rx.recv_timeout(WAIT).expect("subscribed");
    seen
}

/// The messages received on `topic` (non-empty payloads), as JSON.
fn on(seen: &Received, topic: &str) -> Vec<(Value, bool)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(t, p, _)| t == topic && !p.is_empty())
        .map(|(_, p, r)| (serde_json::from_slice(p).unwrap(), *r))
        .collect()
}

/// One SenML-CBOR message of `device` (kind airquality) in `district`: PM2.5 `value`
/// every 10 minutes from `from_s` seconds ago until `to_s` seconds ago.
fn pm25_pack(
    district: &str,
    device: &str,
    value: f64,
    from_s: i64,
    to_s: i64,
) -> (String, Vec<u8>) {
    let now = ingest::message::now_ns() / 1_000_000_000;
    let base = now - from_s;
    let bn = format!("{device}:");
    let unit = schemas::catalog::lookup("pm25").unwrap().unit;
    let mut records = Vec::new();
    let mut offset = 0;
    while from_s - offset >= to_s {
        let mut r = Record::measurement("pm25", unit, value);
        r.time = Some(offset as f64);
        records.push(r);
        offset += 600;
    }
    records[0].base_name = Some(&bn);
    records[0].base_time = Some(base as f64);
    let mut buf = vec![0u8; 16 * 1024];
    let n = cbor::encode(&records, &mut buf).unwrap();
    buf.truncate(n);
    (format!("city/{district}/airquality/{device}/up"), buf)
}

/// `GET path` with headers: (status, lower-cased head, body).
fn get_with_head(port: u16, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nOrigin: https://display.example\r\n{auth}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn publishes_the_aqi_feed_and_alerts_and_serves_public_aqi_without_a_token() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        r#"
[public]
interval_s = 1

[alerts]
interval_s = 1
resolve_for_s = 2

[[alerts.rules]]
name = "pm25-high"
type = "metric"
metric = "pm25"
above = 100
for_s = 1
device = "aq-alert"
"#,
    )
    .unwrap();
    let live = subscriber(
        &broker,
        "live-subscriber",
        &["city/+/aqi", "city/+/+/+/aqi", "city/+/alerts"],
    );
    let mut opts = GatewayOptions::new(&broker, "public-feed", &dir.path().join("data"));
    opts.extra = vec![
        "--config".into(),
        config.display().to_string(),
        "--http-token".into(),
        TOKEN.into(),
    ];
    let gw = Gateway::start(&opts);

    // Three and a half hours of PM2.5 at 80 ug/m3 for a Ba Dinh station, in one message.
    publish_raw(
        &broker,
        &[pm25_pack("ba-dinh", "aq-pub-1", 80.0, 3 * 3600 + 1800, 600)],
    );
    let expected = gateway::aqi::vn_aqi(gateway::aqi::Pollutant::Pm25, 80.0).unwrap();
    let band = gateway::aqi::category(expected);

    let district = wait_until(
        "the district's AQI published",
        WAIT,
        || on(&live, "city/ba-dinh/aqi"),
        |m| !m.is_empty(),
    );
    let (d, retained) = &district[0];
    assert!(*retained, "published retained: {d}");
    assert_eq!(d["district"], "ba-dinh");
    assert_eq!(d["index"], "VN_AQI");
    assert_eq!(d["value"], expected);
    assert_eq!(d["category"], band.key);
    assert_eq!(d["category_vi"], band.name_vi);
    assert_eq!(d["colour"], band.hex);
    assert_eq!(d["dominant"], "pm25");
    assert_eq!(d["device"], "aq-pub-1");
    assert_eq!(d["epa"]["index"], "US_EPA_AQI");
    assert!(d["time"].as_str().unwrap().ends_with('Z'), "{d}");
    let station = wait_until(
        "the station's AQI published",
        WAIT,
        || on(&live, "city/ba-dinh/airquality/aq-pub-1/aqi"),
        |m| !m.is_empty(),
    );
    assert_eq!(station[0].0["value"], expected);
    assert_eq!(station[0].0["kind"], "airquality");

    // A late subscriber gets the retained value.
    let late = subscriber(&broker, "late-subscriber", &["city/+/aqi"]);
    let got = wait_until(
        "the retained AQI for a late subscriber",
        WAIT,
        || on(&late, "city/ba-dinh/aqi"),
        |m| !m.is_empty(),
    );
    assert!(got[0].1, "delivered as retained");
    assert_eq!(got[0].0["category"], band.key);

    // An alert fires: its notification arrives on the district's alert topic.
    publish_raw(&broker, &[pm25_pack("hoan-kiem", "aq-alert", 150.0, 0, 0)]);
    let alert = wait_until(
        "the alert over MQTT",
        WAIT,
        || on(&live, "city/hoan-kiem/alerts"),
        |m| !m.is_empty(),
    );
    let (a, retained) = &alert[0];
    assert!(!retained, "alerts are events, not retained: {a}");
    assert_eq!(a["rule"], "pm25-high");
    assert_eq!(a["state"], "firing");
    assert_eq!(a["event"], "firing");
    assert_eq!(a["value"], 150.0);
    assert_eq!(a["threshold"], 100.0);
    assert_eq!(a["labels"]["device"], "aq-alert");
    assert!(a["started"].as_str().unwrap().ends_with('Z'), "{a}");
    assert!(a["fired"].as_str().unwrap().ends_with('Z'), "{a}");
    assert!(a["resolved"].is_null());
    assert!(!a["summary"].as_str().unwrap().is_empty());

    // The gateway never consumed its own publications (a dead letter would name them).
    assert_eq!(
        query_u64(
            &gw.data_dir,
            "SELECT COUNT(*) FROM dead_letters WHERE topic LIKE '%/aqi' OR topic LIKE '%/alerts'"
        ),
        0
    );

    // HTTP: the API needs the token, /public/* does not.
    let (status, _, _) = get_with_head(gw.http_port, "/api/aqi", None);
    assert_eq!(status, 401);
    let (status, _, _) = get_with_head(gw.http_port, "/api/aqi", Some(TOKEN));
    assert_eq!(status, 200);
    let (status, head, body) = get_with_head(gw.http_port, "/public/aqi", None);
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("cache-control: public, max-age=30"), "{head}");
    let feed: Value = serde_json::from_str(&body).unwrap();
    let ba_dinh = feed["districts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["district"] == "ba-dinh")
        .unwrap_or_else(|| panic!("{feed}"));
    assert_eq!(ba_dinh["value"], expected);
    assert_eq!(ba_dinh["category"], band.key);
    for page in ["/public", "/public/ba-dinh"] {
        let (status, head, body) = get_with_head(gw.http_port, page, None);
        assert_eq!(status, 200, "{page}");
        assert!(head.contains("text/html"), "{head}");
        assert!(body.contains("Air quality") && body.contains("/public/aqi"));
    }
}

/// With a store, the feed's values also land there as `aqi_value{scope, index, district,
/// device, kind}`: the numbers Grafana and the store's alerting see are the gateway's.
#[test]
fn the_aqi_series_reach_the_store_with_the_feeds_values() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = tests::VictoriaMetrics::start().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[public]\ninterval_s = 1\n").unwrap();
    let mut opts = GatewayOptions::new(&broker, "aqi-store", &dir.path().join("data"));
    opts.store = Some(store.url());
    opts.extra = vec!["--config".into(), config.display().to_string()];
    let gw = Gateway::start(&opts);
    publish_raw(
        &broker,
        &[pm25_pack(
            "tay-ho",
            "aq-store-1",
            80.0,
            3 * 3600 + 1800,
            600,
        )],
    );
    let expected = gateway::aqi::vn_aqi(gateway::aqi::Pollutant::Pm25, 80.0).unwrap();
    let series = store
        .wait_for_export(
            r#"aqi_value{scope="district",district="tay-ho",index="VN_AQI"}"#,
            WAIT,
            |s| s.iter().any(|s| !s.points().is_empty()),
        )
        .unwrap();
    let (_, v) = *series[0].points().last().unwrap();
    assert_eq!(v, f64::from(expected), "the store has the feed's value");
    let station = store
        .wait_for_export(
            r#"aqi_value{scope="station",device="aq-store-1",index="US_EPA_AQI"}"#,
            WAIT,
            |s| s.iter().any(|s| !s.points().is_empty()),
        )
        .unwrap();
    assert_eq!(station[0].label("district"), Some("tay-ho"));
    assert_eq!(station[0].label("kind"), Some("airquality"));
    let (_, body) = gw.get("/public/aqi").unwrap();
    let public: Value = serde_json::from_str(&body).unwrap();
    let district = public["districts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["district"] == "tay-ho")
        .unwrap();
    assert_eq!(district["value"], u64::from(expected));
}

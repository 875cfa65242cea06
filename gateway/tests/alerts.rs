//! Alert rules end to end: the real gateway binary with a real Mosquitto, rules with
//! short intervals from a config file, a local webhook receiver (a plain TCP listener
//! that records POST bodies) and a webhook on a closed port.
//!
//! Never asserts timing: it waits for states and checks their order and content.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tests::Mosquitto;

const WAIT: Duration = Duration::from_secs(60);

/// Records the JSON bodies POSTed to it and answers 200.
fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let body = loop {
                let Ok(n) = s.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            if let Some(body) = body
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                seen.lock().unwrap().push(v);
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

fn pm25(broker: &Mosquitto, device: &str, v: f64) {
    publish_raw(
        broker,
        &[(
            format!("{device}/sensor/pm25/state"),
            v.to_string().into_bytes(),
        )],
    );
}

fn alerts(gw: &Gateway, query: &str) -> Vec<Value> {
    let (status, body) = gw.get(&format!("/api/alerts?{query}")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["alerts"].as_array().unwrap().clone()
}

fn bodies_with(bodies: &Arc<Mutex<Vec<Value>>>, alertname: &str, status: &str) -> Vec<Value> {
    bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b["groupLabels"]["alertname"] == alertname && b["status"] == status)
        .cloned()
        .collect()
}

#[test]
fn rules_fire_notify_resolve_and_survive_a_dead_webhook() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let (port, bodies) = receiver();
    let closed = tests::free_port().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerts]
interval_s = 1
resolve_for_s = 2

[[alerts.webhooks]]
name = "ops"
url = "http://127.0.0.1:{port}/hook"
timeout_s = 2

[[alerts.webhooks]]
name = "dead"
url = "http://127.0.0.1:{closed}/hook"
timeout_s = 1
max_attempts = 3
retry_min_ms = 100
retry_max_ms = 200

[[alerts.rules]]
name = "pm25-high"
type = "metric"
metric = "pm25"
above = 100
for_s = 2
device = "aq-alert"
description = "PM2.5 above 100 ug/m3"

[[alerts.rules]]
name = "quiet"
type = "device-offline"
for_s = 4
device = "aq-quiet"
"#
        ),
    )
    .unwrap();
    let mut opts = GatewayOptions::new(&broker, "alerts", &dir.path().join("data"));
    opts.extra = vec!["--config".into(), config.display().to_string()];
    let mut gw = Gateway::start(&opts);

    pm25(&broker, "aq-quiet", 10.0);
    pm25(&broker, "aq-alert", 120.0);

    // Pending, then firing once it held for for_s.
    let firing = wait_until(
        "pm25-high firing",
        WAIT,
        || alerts(&gw, "rule=pm25-high&state=firing"),
        |a| a.len() == 1,
    );
    let a = &firing[0];
    assert_eq!(a["labels"]["device"], "aq-alert");
    assert_eq!(a["labels"]["alertname"], "pm25-high");
    assert_eq!(a["value"], 120.0);
    let started = a["started_ms"].as_i64().unwrap();
    let fired = a["fired_ms"].as_i64().unwrap();
    assert!(fired - started >= 2000, "fired only after for_s: {a}");

    // The receiver got an Alertmanager-shaped body.
    let sent = wait_until(
        "a firing notification",
        WAIT,
        || bodies_with(&bodies, "pm25-high", "firing"),
        |b| !b.is_empty(),
    );
    let b = &sent[0];
    assert_eq!(b["version"], "4");
    assert_eq!(b["receiver"], "ops");
    assert_eq!(b["commonLabels"]["device"], "aq-alert");
    assert_eq!(
        b["commonAnnotations"]["description"],
        "PM2.5 above 100 ug/m3"
    );
    assert!(b["externalURL"].as_str().unwrap().starts_with("http://"));
    let alert = &b["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "pm25-high");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
    assert!(!alert["fingerprint"].as_str().unwrap().is_empty());
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/api/alerts")
    );
    let metrics = gw.get("/metrics").unwrap().1;
    assert!(
        metrics.lines().any(|l| l.starts_with("ALERTS{")
            && l.contains(r#"alertname="pm25-high""#)
            && l.contains(r#"alertstate="firing""#)),
        "{metrics}"
    );

    // Hovering at the threshold, within the 5% margin: it stays firing, no new notice.
    for v in [99.0, 101.0, 99.0, 101.0, 98.0, 99.0] {
        pm25(&broker, "aq-alert", v);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(alerts(&gw, "rule=pm25-high&state=firing").len(), 1);
    assert_eq!(alerts(&gw, "rule=pm25-high").len(), 1, "no second episode");
    assert!(bodies_with(&bodies, "pm25-high", "resolved").is_empty());
    assert_eq!(bodies_with(&bodies, "pm25-high", "firing").len(), 1);

    // Clearly below: resolved after resolve_for_s, notified once.
    pm25(&broker, "aq-alert", 50.0);
    wait_until(
        "pm25-high resolved",
        WAIT,
        || alerts(&gw, "rule=pm25-high&state=resolved"),
        |a| a.len() == 1,
    );
    let resolved = wait_until(
        "a resolved notification",
        WAIT,
        || bodies_with(&bodies, "pm25-high", "resolved"),
        |b| !b.is_empty(),
    );
    assert_ne!(resolved[0]["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let metrics = gw.get("/metrics").unwrap().1;
    assert!(!metrics.contains(r#"alertname="pm25-high""#), "{metrics}");

    // The silent device: offline after its for_s.
    let quiet = wait_until(
        "quiet firing",
        WAIT,
        || alerts(&gw, "rule=quiet&state=firing"),
        |a| a.len() == 1,
    );
    assert_eq!(quiet[0]["labels"]["device"], "aq-quiet");
    wait_until(
        "an offline notification",
        WAIT,
        || bodies_with(&bodies, "quiet", "firing"),
        |b| !b.is_empty(),
    );

    // The dead webhook: retried, counted, recorded; readings are still stored.
    wait_until(
        "failed deliveries counted",
        WAIT,
        || gw.metric("alert_notifications_failed_total"),
        |n| n.is_some_and(|n| n >= 3.0),
    );
    wait_until(
        "a failed delivery recorded",
        WAIT,
        || alerts(&gw, "rule=pm25-high"),
        |a| {
            a.first()
                .is_some_and(|a| a["notify_failures"].as_i64() >= Some(1))
        },
    );
    let before = readings_where(&gw.data_dir, |d, _| d == "aq-alert");
    pm25(&broker, "aq-alert", 40.0);
    wait_until(
        "readings stored meanwhile",
        WAIT,
        || readings_where(&gw.data_dir, |d, _| d == "aq-alert"),
        |n| *n > before,
    );
    // Exactly one resolved notice, still.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bodies_with(&bodies, "pm25-high", "resolved").len(), 1);
    assert_eq!(bodies_with(&bodies, "pm25-high", "firing").len(), 1);

    // A restart resumes the firing alert: same row, no second "firing" notice.
    let id = quiet[0]["id"].clone();
    gw.terminate();
    gw.restart();
    let metrics = wait_until(
        "ALERTS restored after the restart",
        WAIT,
        || gw.get("/metrics").map(|r| r.1).unwrap_or_default(),
        |m| m.contains(r#"alertname="quiet""#),
    );
    assert!(metrics.contains(r#"alertstate="firing""#), "{metrics}");
    std::thread::sleep(Duration::from_millis(2500));
    let after = alerts(&gw, "rule=quiet");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], id);
    assert_eq!(after[0]["state"], "firing");
    assert_eq!(bodies_with(&bodies, "quiet", "firing").len(), 1);

    // The CLI, from the data directory and from the running gateway.
    let url = format!("http://127.0.0.1:{}", gw.http_port);
    let data_dir = gw.data_dir.display().to_string();
    for source in [["--data-dir", data_dir.as_str()], ["--url", url.as_str()]] {
        let out = std::process::Command::new(gateway_bin())
            .args(["query", "alerts", "--format", "csv"])
            .args(source)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("id,rule,state,district,device"), "{text}");
        assert!(text.lines().any(|l| l.contains(",quiet,firing,")), "{text}");
        assert!(
            text.lines().any(|l| l.contains(",pm25-high,resolved,")),
            "{text}"
        );
    }
}

#[test]
fn bad_rules_fail_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"
[[alerts.rules]]
name = "ok"
type = "pipeline"
signal = "outbox_bytes"
above = 1e9

[[alerts.rules]]
name = "bad"
type = "metric"
metric = "no_such_metric"
above = 1
"#,
    )
    .unwrap();
    let out = std::process::Command::new(gateway_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alerts.rules[1].metric"), "{err}");
    assert!(err.contains("no_such_metric"), "{err}");
}

/// A SenML JSON pack of one pm25 reading of `device` in `district` at unix second `t`,
/// with sequence number `seq`.
fn station_pack(district: &str, device: &str, t: i64, seq: u32, pm25: f64) -> (String, Vec<u8>) {
    (
        format!("city/{district}/airquality/{device}/up"),
        format!(r#"[{{"bn":"{device}:","bt":{t},"seq":{seq},"n":"pm25","u":"ug/m3","v":{pm25}}}]"#)
            .into_bytes(),
    )
}

/// The rule types beside `metric` and `device-offline`, end to end: a district's VN_AQI
/// (an episode of three hours of heavy PM2.5 at two stations), a district with too few
/// stations reporting, sequence gaps, and dead letters per hour from the pipeline.
#[test]
fn aqi_reporting_gaps_and_pipeline_rules_fire_with_their_labels() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let (port, bodies) = receiver();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerts]
interval_s = 1

[[alerts.webhooks]]
name = "ops"
url = "http://127.0.0.1:{port}/hook"

[[alerts.rules]]
name = "district-aqi-bad"
type = "aqi"
scope = "district"
at_least = "bad"
for_s = 1
district = "tay-ho"

[[alerts.rules]]
name = "district-blind"
type = "district-reporting"
kind = "airquality"
at_least = 2
for_s = 1

[[alerts.rules]]
name = "lossy-link"
type = "device-gaps"
above = 2
window_s = 3600

[[alerts.rules]]
name = "dead-letters"
type = "pipeline"
signal = "dead_letters_per_hour"
above = 3
for_s = 1
"#
        ),
    )
    .unwrap();
    let mut opts = GatewayOptions::new(&broker, "alert-rules", &dir.path().join("data"));
    opts.extra = vec!["--config".into(), config.display().to_string()];
    let gw = Gateway::start(&opts);

    // Three hours of 300 ug/m3 every 5 minutes at two stations of Tay Ho; one station in
    // Dong Da, with a gap of 5 in its sequence numbers.
    let now = ingest::message::now_ns() / 1_000_000_000;
    let mut msgs = Vec::new();
    for (i, t) in (0..36).map(|i| (i, now - 3 * 3600 + 60 + i * 300)) {
        let seq = u32::try_from(i).unwrap();
        msgs.push(station_pack("tay-ho", "th-1", t, seq, 300.0));
        msgs.push(station_pack("tay-ho", "th-2", t, seq, 300.0));
    }
    msgs.push(station_pack("dong-da", "dd-1", now - 120, 0, 10.0));
    msgs.push(station_pack("dong-da", "dd-1", now - 60, 6, 11.0));
    // Five undecodable messages: dead letters.
    for i in 0..5 {
        msgs.push((format!("tele/junk-{i}/SENSOR"), b"{not json".to_vec()));
    }
    publish_raw(&broker, &msgs);

    let firing = |rule: &str| alerts(&gw, &format!("state=firing&rule={rule}"));
    for rule in [
        "district-aqi-bad",
        "district-blind",
        "lossy-link",
        "dead-letters",
    ] {
        wait_until(
            &format!("{rule} firing"),
            WAIT,
            || firing(rule).len(),
            |n| *n >= 1,
        );
    }
    let aqi = firing("district-aqi-bad");
    assert_eq!(aqi.len(), 1, "one district over the threshold: {aqi:?}");
    assert_eq!(aqi[0]["labels"]["district"], "tay-ho", "{aqi:?}");
    let blind = firing("district-blind");
    assert!(
        blind.iter().any(|a| a["labels"]["district"] == "dong-da")
            && blind.iter().all(|a| a["labels"]["district"] != "tay-ho"),
        "Dong Da has one station, Tay Ho two: {blind:?}"
    );
    let lossy = firing("lossy-link");
    assert!(
        lossy.iter().any(|a| a["labels"]["device"] == "dd-1")
            && lossy.iter().all(|a| a["labels"]["device"] != "th-1"),
        "{lossy:?}"
    );
    wait_until(
        "the AQI alert at the webhook",
        WAIT,
        || bodies_with(&bodies, "district-aqi-bad", "firing").len(),
        |n| *n >= 1,
    );
    let body = &bodies_with(&bodies, "district-aqi-bad", "firing")[0];
    assert_eq!(body["version"], "4");
    assert_eq!(body["alerts"][0]["labels"]["district"], "tay-ho");
}

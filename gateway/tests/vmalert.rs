//! The alert rules exported for the store's alerting engine: `gateway alerts
//! export-vmalert` writes the rule file, Debian's real `vmalert` evaluates it against a
//! real VictoriaMetrics holding readings and AQI series in the shapes the gateway writes,
//! and the exported rules fire. vmalert missing is a failure naming the package.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tests::VictoriaMetrics;

const VMALERT: &str = "/usr/bin/vmalert";
const WAIT: Duration = Duration::from_secs(60);

/// Answers every request 200: vmalert's notifier target (it needs one).
fn sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    port
}

#[test]
fn exported_rules_fire_in_vmalert_over_the_stores_series() {
    let _g = serial();
    assert!(
        Path::new(VMALERT).is_file(),
        "{VMALERT} missing: apt-get install victoria-metrics (it ships vmalert)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        r#"
[[alerts.rules]]
name = "pm25-high"
type = "metric"
metric = "pm25"
above = 100
district = "ba-dinh"

[[alerts.rules]]
name = "district-aqi-bad"
type = "aqi"
scope = "district"
at_least = "bad"

[[alerts.rules]]
name = "station-offline"
type = "device-offline"
for_s = 600

[[alerts.rules]]
name = "lossy-station"
type = "device-gaps"
window_s = 3600

[[alerts.rules]]
name = "thin-district"
type = "district-reporting"
at_least = 2

[[alerts.rules]]
name = "outbox-growing"
type = "pipeline"
signal = "outbox_bytes"
above = 1000000
"#,
    )
    .unwrap();
    let rules = dir.path().join("rules.yml");
    let out = Command::new(gateway_bin())
        .args(["alerts", "export-vmalert", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&rules)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("not exported: outbox-growing"),
        "the rule the store cannot evaluate yet is named: {printed}"
    );

    let store = VictoriaMetrics::start().unwrap();
    // The gateway's line shapes: outbox readings and device lines, public-feed AQI values.
    let now = ingest::message::now_ns();
    let tags = |d: &str, district: &str| {
        format!("device={d},district={district},format=senml,kind=airquality")
    };
    let mut lines = format!(
        "pm25,{} value=180 {now}\n\
         pm25,{} value=180 {now}\n\
         aqi,district=ba-dinh,index=VN_AQI,scope=district value=178 {now}\n\
         aqi,district=tay-ho,index=VN_AQI,scope=district value=60 {now}\n",
        tags("aq-0001", "ba-dinh"),
        tags("aq-0002", "tay-ho"),
    );
    let s = 1_000_000_000i64;
    // aq-0001 and aq-0003 report now; aq-0003 skipped seq 3 and 4. aq-0002 (tay-ho) was
    // last heard from 20 minutes ago.
    for seq in [0i64, 1, 2, 5, 6] {
        let t = now - (6 - seq) * 10 * s;
        lines += &format!(
            "gateway_device,{} readings=1,seq={seq} {t}\n",
            tags("aq-0003", "ba-dinh")
        );
    }
    for seq in 0i64..5 {
        let t = now - (4 - seq) * 10 * s;
        lines += &format!(
            "gateway_device,{} readings=1,seq={seq} {t}\n",
            tags("aq-0001", "ba-dinh")
        );
        lines += &format!(
            "gateway_device,{} readings=1,seq={seq} {}\n",
            tags("aq-0002", "tay-ho"),
            t - 1200 * s
        );
    }
    store.write_line_protocol(&lines).unwrap();
    store.force_flush().unwrap();

    let port = tests::free_port().unwrap();
    let notifier = sink();
    let mut cmd = Command::new(VMALERT);
    cmd.arg(format!("-rule={}", rules.display()))
        .arg(format!("-datasource.url={}", store.url()))
        .arg(format!("-notifier.url=http://127.0.0.1:{notifier}"))
        .arg("-evaluationInterval=1s")
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"));
    let _vmalert =
        tests::ChildGuard::spawn("vmalert", &mut cmd, &dir.path().join("vmalert.log")).unwrap();

    let firing = wait_until(
        "both exported rules firing in vmalert",
        WAIT,
        || {
            let Some((200, body)) = http_get(port, "/api/v1/alerts") else {
                return Vec::new();
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["data"]["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a["state"] == "firing")
                .collect::<Vec<_>>()
        },
        |a| {
            [
                "pm25-high",
                "district-aqi-bad",
                "station-offline",
                "lossy-station",
                "thin-district",
            ]
            .iter()
            .all(|n| a.iter().any(|x| x["name"] == *n))
        },
    );
    // Device rules over the device series: only the silent, the lossy station and the
    // district left without stations.
    for (rule, label, value) in [
        ("station-offline", "device", "aq-0002"),
        ("lossy-station", "device", "aq-0003"),
        ("thin-district", "district", "tay-ho"),
    ] {
        let of_rule: Vec<_> = firing.iter().filter(|a| a["name"] == rule).collect();
        assert_eq!(of_rule.len(), 1, "{rule}: {of_rule:?}");
        assert_eq!(of_rule[0]["labels"][label], value, "{rule}: {of_rule:?}");
    }
    let lossy = firing
        .iter()
        .find(|a| a["name"] == "lossy-station")
        .unwrap();
    assert_eq!(lossy["value"], "2", "two messages missing: {lossy}");
    let pm = firing.iter().find(|a| a["name"] == "pm25-high").unwrap();
    assert_eq!(pm["labels"]["device"], "aq-0001", "{pm}");
    assert_eq!(pm["labels"]["severity"], "warning");
    let aqi: Vec<_> = firing
        .iter()
        .filter(|a| a["name"] == "district-aqi-bad")
        .collect();
    assert_eq!(aqi.len(), 1, "only Ba Dinh is at 'bad' or worse: {aqi:?}");
    assert_eq!(aqi[0]["labels"]["district"], "ba-dinh");
    assert!(
        firing
            .iter()
            .filter(|a| a["name"] == "pm25-high" || a["name"] == "district-aqi-bad")
            .all(|a| a["labels"]["district"] != "tay-ho"),
        "{firing:?}"
    );
}

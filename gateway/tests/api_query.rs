//! The query API against a real HTTP server on loopback and a real SQLite hot tier filled
//! with known data: downsampling arithmetic, range edges, AQI vectors, devices, latest
//! values, stats, the OpenAPI document and the dashboard, and 400s on bad parameters.
#![allow(clippy::unwrap_used)]

use gateway::api::{self, ApiConfig};
use rusqlite::{Connection, params};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;

const NS: i64 = 1_000_000_000;
/// 2025-11-22T00:00:00Z: a whole hour, so buckets of 10 min and 1 h start on it.
const T0_S: i64 = 1_763_769_600;
const T0: i64 = T0_S * NS;
const DAY: i64 = 24 * 3600 * NS;
/// The instant the queries are evaluated at: 24 h after T0.
const AT_MS: i64 = (T0_S + 24 * 3600) * 1000;

/// The hot tier's schema is the ingest side's own (`ingest::store::open`), so a change of
/// its tables breaks this test rather than the live API.
fn open_store(dir: &Path) -> Connection {
    ingest::store::open(
        dir,
        ingest::Synchronous::Normal,
        std::time::Duration::from_secs(5),
    )
    .unwrap()
}

fn device(
    conn: &Connection,
    id: &str,
    district: &str,
    kind: &str,
    last_seen: i64,
    status: &str,
    meta: &str,
) {
    conn.execute(
        "INSERT INTO devices(device, district, kind, format, first_seen, last_seen, last_seq, gaps,
             duplicates, dropped_readings, status, status_at, meta_json)
         VALUES (?1, ?2, ?3, 'senml', ?4, ?5, 1440, 3, 2, 7, ?6, ?4, ?7)",
        params![id, district, kind, T0, last_seen, status, meta],
    )
    .unwrap();
}

/// Fills the hot tier:
/// - `aq-1` (hoan-kiem): pm25 = i at T0 + i min, i = 0..1440 (a ramp, for downsampling);
/// - `aq-2` (ba-dinh): pm25 = 20.3 every minute for 24 h (VN_AQI 41);
/// - `aq-3` (ba-dinh): pm25 = 55.7 every minute for 24 h (VN_AQI 110), pm10 = 100 (75);
/// - `aq-4` (ba-dinh): silent for the last hour (stale, offline), no readings;
/// - `wx-1` (tay-ho): a weather station with temperature only (not an AQI station);
/// - 4 dead letters, 2 outbox entries.
fn fill(dir: &Path) {
    let mut conn = open_store(dir);
    let tx = conn.transaction().unwrap();
    let meta = |lat: f64| {
        format!(
            r#"{{"fw":"1.2.3","kind":"airquality","district":"x","sensors":["pms5003"],"lat":{lat},"lon":105.85,"periodS":60}}"#
        )
    };
    device(
        &tx,
        "aq-1",
        "hoan-kiem",
        "airquality",
        T0 + DAY - 60 * NS,
        "online",
        // The simulators' spelling of the meta fields.
        r#"{"device":"aq-1","firmware":"simulators/0.1.0","period_s":120,"latitude":21.03,"longitude":105.85}"#,
    );
    device(
        &tx,
        "aq-2",
        "ba-dinh",
        "airquality",
        T0 + DAY - 60 * NS,
        "online",
        &meta(21.04),
    );
    device(
        &tx,
        "aq-3",
        "ba-dinh",
        "airquality",
        T0 + DAY - 60 * NS,
        "online",
        &meta(21.05),
    );
    device(
        &tx,
        "aq-4",
        "ba-dinh",
        "airquality",
        T0 + DAY - 3600 * NS,
        "offline",
        &meta(21.06),
    );
    device(
        &tx,
        "wx-1",
        "tay-ho",
        "weather",
        T0 + DAY - 30 * NS,
        "online",
        "not json",
    );
    {
        // Through the hot tier's own writer: chunks per series, as the pipeline leaves them.
        let mut rows: Vec<(&str, &str, i64, f64)> = Vec::new();
        let mut ins = |device: &'static str, metric: &'static str, ts: i64, v: f64| {
            rows.push((device, metric, ts, v));
        };
        for i in 0..1440i64 {
            let ts = T0 + i * 60 * NS;
            ins("aq-1", "pm25", ts, i as f64);
            ins("aq-2", "pm25", ts, 20.3);
            ins("aq-3", "pm25", ts, 55.7);
            ins("aq-3", "pm10", ts, 100.0);
        }
        ins("wx-1", "temperature", T0 + DAY - 30 * NS, 28.5);
        // A reading stamped after the evaluation instant: `latest` must not use it.
        ins("aq-2", "pm25", T0 + DAY + 60 * NS, 999.0);
        // A later reading two seconds on: `latest` must find it.
        ins("wx-1", "temperature", T0 + DAY - 28 * NS, 28.75);
        ingest::hot::import(&tx, rows).unwrap();
    }
    for (reason, ago) in [
        ("malformed-payload", 10),
        ("malformed-payload", 20),
        ("malformed-payload", 7200),
        ("out-of-range", 5),
    ] {
        tx.execute(
            "INSERT INTO dead_letters(received_ns, topic, payload, reason, detail, payload_bytes) VALUES (?1, 't', x'00', ?2, 'd', 1)",
            params![T0 + DAY - ago * NS, reason],
        )
        .unwrap();
    }
    for (readings, bytes, ago) in [(10, 100, 30), (5, 50, 10)] {
        tx.execute(
            "INSERT INTO outbox(created_ns, readings, bytes, body) VALUES (?1, ?2, ?3, x'00')",
            params![T0 + DAY - ago * NS, readings, bytes],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let db = ingest::store::db_path(dir.path());
    let (tx, rx) = std::sync::mpsc::channel();
    let config = ApiConfig::new(db);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, api::router(config)).await.unwrap();
        });
    });
    Server {
        addr: rx.recv().unwrap(),
        dir,
    }
}

impl Server {
    /// GET a path; returns the status and the parsed JSON body.
    fn get(&self, path_and_query: &str) -> (u16, Value) {
        let url = format!("http://{}{path_and_query}", self.addr);
        let mut resp = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, json)
    }

    fn ok(&self, path_and_query: &str) -> Value {
        let (status, body) = self.get(path_and_query);
        assert_eq!(status, 200, "{path_and_query}: {body}");
        body
    }

    fn bad(&self, path_and_query: &str) -> String {
        let (status, body) = self.get(path_and_query);
        assert_eq!(
            status, 400,
            "{path_and_query}: expected 400, got {status}: {body}"
        );
        body["error"].as_str().unwrap().to_owned()
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn api_answers_known_data() {
    let s = start();
    let t0_ms = T0_S * 1000;
    let min_ms = 60_000;

    // --- series: 10-minute buckets of the ramp 0..1440 over the first hour.
    let q = |agg: &str| {
        format!(
            "/api/series?series=aq-1:pm25&from={t0_ms}&to={}&step=10m&agg={agg}",
            t0_ms + 60 * min_ms
        )
    };
    let r = s.ok(&q("avg"));
    assert_eq!(r["step_ms"], 600_000);
    let series = &r["series"][0];
    assert_eq!(series["device"], "aq-1");
    assert_eq!(series["unit"], "ug/m3");
    assert_eq!(
        ints(&series["t"]),
        (0..6).map(|k| t0_ms + k * 10 * min_ms).collect::<Vec<_>>()
    );
    assert_eq!(
        floats(&series["v"]),
        vec![4.5, 14.5, 24.5, 34.5, 44.5, 54.5]
    );
    assert_eq!(
        floats(&s.ok(&q("min"))["series"][0]["v"]),
        vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    );
    assert_eq!(
        floats(&s.ok(&q("max"))["series"][0]["v"]),
        vec![9.0, 19.0, 29.0, 39.0, 49.0, 59.0]
    );
    assert_eq!(
        floats(&s.ok(&q("last"))["series"][0]["v"]),
        vec![9.0, 19.0, 29.0, 39.0, 49.0, 59.0]
    );
    assert_eq!(floats(&s.ok(&q("count"))["series"][0]["v"]), vec![10.0; 6]);

    // --- range edges: from inclusive, to exclusive, partial buckets keep their aligned start.
    let r = s.ok(&format!(
        "/api/series?series=aq-1:pm25&from={}&to={}&step=10m&agg=count",
        t0_ms + 5 * min_ms,
        t0_ms + 25 * min_ms
    ));
    assert_eq!(
        ints(&r["series"][0]["t"]),
        vec![t0_ms, t0_ms + 10 * min_ms, t0_ms + 20 * min_ms]
    );
    assert_eq!(floats(&r["series"][0]["v"]), vec![5.0, 10.0, 5.0]);
    let r = s.ok(&format!(
        "/api/series?series=aq-1:pm25&from={}&to={}&step=10m",
        t0_ms + 5 * min_ms,
        t0_ms + 25 * min_ms
    ));
    assert_eq!(floats(&r["series"][0]["v"]), vec![7.0, 14.5, 22.0]);
    // `to` equal to a reading's time excludes it; one millisecond later includes it.
    let r = s.ok(&format!(
        "/api/series?series=aq-1:pm25&from={t0_ms}&to={}&step=1h&agg=count",
        t0_ms + 10 * min_ms
    ));
    assert_eq!(floats(&r["series"][0]["v"]), vec![10.0]);
    let r = s.ok(&format!(
        "/api/series?series=aq-1:pm25&from={t0_ms}&to={}&step=1h&agg=count",
        t0_ms + 10 * min_ms + 1
    ));
    assert_eq!(floats(&r["series"][0]["v"]), vec![11.0]);

    // --- the whole day hourly, two series, one of them unknown (empty, not an error).
    let r = s.ok(&format!(
        "/api/series?series=aq-1:pm25,nobody:pm25&from={t0_ms}&to={AT_MS}&step=1h&agg=avg"
    ));
    let v = floats(&r["series"][0]["v"]);
    assert_eq!(v.len(), 24);
    assert_eq!(v[23], 23.0 * 60.0 + 29.5);
    assert!(r["series"][1]["t"].as_array().unwrap().is_empty());

    // --- AQI: the Decision's worked examples, as stations.
    let r = s.ok(&format!("/api/aqi?at={AT_MS}"));
    let stations = r["stations"].as_array().unwrap();
    let by_id = |id: &str| stations.iter().find(|x| x["device"] == id).unwrap().clone();
    let ids: Vec<&str> = stations
        .iter()
        .map(|x| x["device"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["aq-1", "aq-2", "aq-3", "aq-4"],
        "wx-1 is no AQI station"
    );
    let aq2 = by_id("aq-2");
    assert_eq!(aq2["vn_aqi_hourly"]["value"], 41);
    assert_eq!(aq2["vn_aqi_hourly"]["category"], "good");
    assert_eq!(aq2["vn_aqi_hourly"]["colour"], "#00e400");
    assert_eq!(aq2["vn_aqi_daily"]["value"], 41);
    assert_eq!(aq2["us_aqi_nowcast"]["value"], 72);
    assert!((f(&aq2["pm25_nowcast"]) - 20.3).abs() < 1e-9);
    assert_eq!(aq2["lat"], 21.04);
    let aq3 = by_id("aq-3");
    assert_eq!(aq3["vn_aqi_daily"]["value"], 110);
    assert_eq!(aq3["vn_aqi_daily"]["dominant"], "pm25");
    assert_eq!(aq3["vn_aqi_daily"]["colour"], "#ff7e00");
    assert_eq!(aq3["vn_aqi_daily"]["rgb"], serde_json::json!([255, 126, 0]));
    assert_eq!(aq3["us_aqi_daily"]["value"], 151);
    assert_eq!(aq3["us_aqi_daily"]["category"], "bad");
    assert!(
        by_id("aq-4")["vn_aqi_hourly"].is_null(),
        "no data, no index"
    );
    // The ramp: hourly means of the last 12 hours rise to 1409.5; NowCast above the cap.
    assert_eq!(by_id("aq-1")["vn_aqi_hourly"]["value"], 500);
    // Hourly means are per clock hour and hour 1 is the last complete one: half an hour
    // later, aq-2's reading of 999 in the current (partial) hour does not count yet.
    let r = s.ok(&format!("/api/aqi?at={}&device=aq-2", AT_MS + 1_800_000));
    assert_eq!(r["stations"][0]["vn_aqi_hourly"]["value"], 41, "{r}");
    // An hour later it is hour 1: the NowCast jumps (w = 1/2, the new hour weighs most).
    let r = s.ok(&format!("/api/aqi?at={}&device=aq-2", AT_MS + 3_600_000));
    assert_eq!(r["stations"][0]["vn_aqi_hourly"]["value"], 500, "{r}");
    let r = s.ok(&format!("/api/aqi?at={AT_MS}&district=ba-dinh"));
    assert_eq!(r["stations"].as_array().unwrap().len(), 3);

    // --- devices: health fields and the stale flag (3 periods of 60 s).
    let r = s.ok(&format!("/api/devices?at={AT_MS}"));
    let devs = r["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 5);
    let aq4 = devs.iter().find(|d| d["device"] == "aq-4").unwrap();
    assert_eq!(aq4["stale"], true);
    assert_eq!(aq4["status"], "offline");
    assert_eq!(aq4["stale_after_s"], 180);
    assert_eq!(aq4["firmware"], "1.2.3");
    assert_eq!(
        (
            aq4["gaps"].as_i64(),
            aq4["duplicates"].as_i64(),
            aq4["dropped_readings"].as_i64()
        ),
        (Some(3), Some(2), Some(7))
    );
    let aq1 = devs.iter().find(|d| d["device"] == "aq-1").unwrap();
    assert_eq!(aq1["firmware"], "simulators/0.1.0");
    assert_eq!(
        (aq1["stale_after_s"].as_u64(), aq1["lat"].as_f64()),
        (Some(360), Some(21.03))
    );
    let wx = devs.iter().find(|d| d["device"] == "wx-1").unwrap();
    assert_eq!(
        (wx["stale"].as_bool(), wx["stale_after_s"].as_i64()),
        (Some(false), Some(300)),
        "bad meta: default threshold"
    );
    assert!(wx["firmware"].is_null());
    let r = s.ok(&format!("/api/devices?at={AT_MS}&stale=true"));
    assert_eq!(r["devices"].as_array().unwrap().len(), 1);
    let r = s.ok(&format!(
        "/api/devices?at={AT_MS}&district=ba-dinh&status=online"
    ));
    assert_eq!(r["devices"].as_array().unwrap().len(), 2);

    // --- latest per district and kind.
    let r = s.ok(&format!("/api/latest?at={AT_MS}&detail=true"));
    let groups = r["groups"].as_array().unwrap();
    let keys: Vec<(String, String)> = groups
        .iter()
        .map(|g| {
            (
                g["district"].as_str().unwrap().into(),
                g["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("ba-dinh".into(), "airquality".into()),
            ("hoan-kiem".into(), "airquality".into()),
            ("tay-ho".into(), "weather".into()),
        ]
    );
    let ba_dinh = &groups[0];
    assert_eq!(
        (
            ba_dinh["devices"].as_u64(),
            ba_dinh["reporting"].as_u64(),
            ba_dinh["online"].as_u64()
        ),
        (Some(3), Some(2), Some(2))
    );
    let pm25 = ba_dinh["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "pm25")
        .unwrap();
    assert_eq!(pm25["count"], 2);
    assert!(
        (f(&pm25["mean"]) - 38.0).abs() < 1e-9,
        "mean of 20.3 and 55.7, not the future 999: {pm25}"
    );
    assert_eq!((f(&pm25["min"]), f(&pm25["max"])), (20.3, 55.7));
    assert_eq!(pm25["newest_ms"], AT_MS - 60_000);
    let aq1 = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "aq-1")
        .unwrap();
    assert_eq!(aq1["values"]["pm25"]["v"], 1439.0);
    let wx1 = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "wx-1")
        .unwrap();
    assert_eq!(
        wx1["values"]["temperature"]["v"], 28.75,
        "the newest reading of the series' last bucket: {wx1}"
    );
    // A short max_age leaves only wx-1's reading 30 s old.
    let r = s.ok(&format!("/api/latest?at={AT_MS}&max_age=45s"));
    let reporting: u64 = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["reporting"].as_u64().unwrap())
        .sum();
    assert_eq!(reporting, 1);
    let r = s.ok(&format!("/api/latest?at={AT_MS}&kind=weather"));
    assert_eq!(r["groups"].as_array().unwrap().len(), 1);

    // --- stats.
    let r = s.ok(&format!("/api/stats?at={AT_MS}"));
    assert_eq!(
        r["dead_letters"],
        serde_json::json!([
            {"reason": "malformed-payload", "count": 3},
            {"reason": "out-of-range", "count": 1}
        ])
    );
    assert_eq!(r["dead_letters_last_hour"], 3);
    assert_eq!(
        (
            r["outbox_entries"].as_u64(),
            r["outbox_readings"].as_u64(),
            r["outbox_bytes"].as_u64()
        ),
        (Some(2), Some(15), Some(150))
    );
    assert_eq!(f(&r["store_lag_s"]), 30.0);
    // Last minute: one reading each of aq-1, aq-2 pm25, aq-3 pm25 + pm10, two of wx-1
    // temperature.
    assert!(
        (f(&r["ingest_rate_per_s"]) - 6.0 / 60.0).abs() < 1e-9,
        "{r}"
    );
    assert_eq!(f(&r["newest_message_age_s"]), 30.0);
    assert_eq!(
        (
            r["devices"].as_u64(),
            r["devices_online"].as_u64(),
            r["devices_stale"].as_u64()
        ),
        (Some(5), Some(4), Some(1))
    );

    // --- 400s that say what is wrong.
    assert!(s.bad("/api/series").contains("series: required"));
    assert!(
        s.bad("/api/series?series=aq-1:pm25&agg=median")
            .contains("agg: unknown aggregate `median`")
    );
    assert!(
        s.bad("/api/series?series=aq-1")
            .contains("not device:metric")
    );
    assert!(
        s.bad("/api/series?series=aq-1:pm25&from=yesterday")
            .starts_with("from:")
    );
    assert!(
        s.bad("/api/series?series=aq-1:pm25&from=now&to=-1h")
            .contains("before to")
    );
    assert!(
        s.bad("/api/series?series=aq-1:pm25&from=-7d&step=1s")
            .contains("longer step")
    );
    assert!(
        s.bad("/api/series?series=aq-1:pm25&step=soon")
            .starts_with("step:")
    );
    assert!(
        s.bad("/api/series?series=aq-1:pm25&colour=red")
            .contains("unknown field `colour`")
    );
    assert!(
        s.bad("/api/devices?kind=toaster")
            .contains("kind: unknown kind `toaster`")
    );
    assert!(s.bad("/api/devices?stale=maybe").contains("stale:"));
    assert!(s.bad("/api/devices?status=sleeping").contains("status:"));
    assert!(s.bad("/api/latest?max_age=forever").starts_with("max_age:"));
    assert!(s.bad("/api/aqi?district=Ba%20Dinh").contains("district:"));
    assert!(s.bad("/api/stats?at=tomorrow").starts_with("at:"));

    // --- the OpenAPI document and the dashboard.
    let doc = s.ok(api::OPENAPI_PATH);
    for path in [
        "/api/devices",
        "/api/series",
        "/api/latest",
        "/api/aqi",
        "/api/stats",
        "/api/catalog",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["StationAqi"].is_object());
    let (status, page) = s.get("/");
    assert_eq!(status, 200);
    assert!(
        page.as_str().unwrap().contains("<html") || page.as_str().unwrap().contains("<!doctype"),
        "{page}"
    );
    assert_eq!(s.get("/assets/nope.js").0, 404);
}

#[test]
fn catalog_lists_every_metric_with_its_unit_and_the_device_kinds() {
    let s = start();
    let body = s.ok("/api/catalog");
    let metrics = body["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), schemas::catalog::METRICS.len());
    for (m, want) in metrics.iter().zip(schemas::catalog::METRICS) {
        assert_eq!(m["name"], want.name);
        assert_eq!(m["unit"], want.unit, "{}", want.name);
        assert_eq!(m["description"], want.description, "{}", want.name);
        assert_eq!(f(&m["min"]), want.min, "{}", want.name);
        assert_eq!(f(&m["max"]), want.max, "{}", want.name);
    }
    let pm25 = metrics.iter().find(|m| m["name"] == "pm25").unwrap();
    assert_eq!(pm25["unit"], "ug/m3");
    assert_eq!(pm25["kind"], "gauge");
    let rx = metrics.iter().find(|m| m["name"] == "rxBytes").unwrap();
    assert_eq!(rx["kind"], "counter");
    let kinds: Vec<&str> = body["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for kind in schemas::topic::DeviceKind::ALL {
        assert!(kinds.contains(&kind.as_str()), "{kind} missing: {kinds:?}");
    }
    assert!(kinds.contains(&"airquality"));
    let doc = s.ok(api::OPENAPI_PATH);
    assert!(doc["components"]["schemas"]["CatalogMetric"].is_object());
}

#[test]
fn missing_hot_tier_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let pool = api::ReadPool::new(dir.path().join("absent.sqlite"));
    let err = pool.with(|_| Ok(())).unwrap_err();
    assert_eq!(err.status(), 503);
}

/// Runs the `gateway` binary; returns (success, stdout, stderr).
fn gateway(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_remove("GATEWAY_DATA_DIR")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn query_cli_reads_the_hot_tier_and_a_running_gateway() {
    let s = start();
    let dir = s.dir.path().to_str().unwrap().to_owned();
    let at = AT_MS.to_string();

    // Devices as CSV, straight from the data directory.
    let (ok, out, err) = gateway(&[
        "query",
        "devices",
        "--data-dir",
        &dir,
        "--format",
        "csv",
        "--at",
        &at,
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "device,kind,district,status,last_seen,firmware,gaps,duplicates,dropped,stale"
    );
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines.iter().any(
            |l| l.starts_with("aq-4,airquality,ba-dinh,offline,") && l.ends_with(",3,2,7,true")
        ),
        "{out}"
    );

    // A downsampled series: the max of each 10-minute bucket of the ramp.
    let from = (T0_S * 1000).to_string();
    let to = (T0_S * 1000 + 3_600_000).to_string();
    let (ok, out, err) = gateway(&[
        "query",
        "series",
        "--data-dir",
        &dir,
        "--series",
        "aq-1:pm25",
        "--from",
        &from,
        "--to",
        &to,
        "--step",
        "10m",
        "--agg",
        "max",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    let values: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap())
        .collect();
    assert_eq!(values, ["9", "19", "29", "39", "49", "59"], "{out}");
    assert!(
        out.starts_with("device,metric,time,max,unit\naq-1,pm25,2025-11-22T00:00:00Z,9,ug/m3\n"),
        "{out}"
    );

    // Relative times start with a hyphen and still parse as values.
    let (ok, _, err) = gateway(&[
        "query",
        "series",
        "--data-dir",
        &dir,
        "--series",
        "aq-1:pm25",
        "--from",
        "-30m",
    ]);
    assert!(ok, "{err}");

    // The same questions over HTTP, as a table.
    let url = format!("http://{}", s.addr);
    let (ok, out, err) = gateway(&["query", "stats", "--url", &url, "--at", &at]);
    assert!(ok, "{err}");
    assert!(
        out.contains("store_lag_s") && out.contains("30.00"),
        "{out}"
    );
    assert!(
        out.contains("dead_letters{reason=malformed-payload}"),
        "{out}"
    );
    let (ok, out, err) = gateway(&[
        "query", "aqi", "--url", &url, "--at", &at, "--format", "csv",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("aq-3,ba-dinh,110,poor,#ff7e00,110,")),
        "{out}"
    );

    // Bad parameters fail with the API's message, locally and remotely.
    let (ok, _, err) = gateway(&[
        "query",
        "series",
        "--data-dir",
        &dir,
        "--series",
        "aq-1:pm25",
        "--agg",
        "median",
    ]);
    assert!(!ok);
    assert!(err.contains("agg: unknown aggregate `median`"), "{err}");
    let (ok, _, err) = gateway(&["query", "devices", "--url", &url, "--kind", "toaster"]);
    assert!(!ok);
    assert!(
        err.contains("400") && err.contains("kind: unknown kind `toaster`"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let (ok, _, err) = gateway(&[
        "query",
        "stats",
        "--data-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("no hot tier"), "{err}");
}

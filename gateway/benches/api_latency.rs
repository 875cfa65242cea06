//! Latency of the query API on a city-sized hot tier: 1,000 devices x 7 days of 1-minute
//! data (10 million rows per metric), served by the real router over loopback HTTP.
//!
//! Measures p50/p99 of
//! - a 24-hour series of one device downsampled to 5-minute buckets (`/api/series`);
//! - the district overview, latest values of every device per district and kind (`/api/latest`);
//!
//! It also reports `/api/aqi` cold (reads every station's last 24 hours) and warm (hourly
//! means cached), and `/api/devices`.
//!
//! ```text
//! cargo bench -p gateway --bench api_latency
//! API_BENCH_DEVICES=1000 API_BENCH_DAYS=7 API_BENCH_METRICS=2 API_BENCH_REQUESTS=300 \
//!   cargo bench -p gateway --bench api_latency
//! ```
//!
//! The hot tier is built once in `API_BENCH_DIR` (default `target/api-bench`, about 175 MB
//! for the defaults) and reused by later runs with the same shape.
//!
//! `API_BENCH_SOURCE=store` asks the same questions of a query-only node over a real
//! VictoriaMetrics instead (`gateway serve`'s router), filled with the same shape in the
//! lines every gateway writes: the readings, and per message the device's
//! `gateway_device` lines (readings, sequence number, first sight), its status and meta
//! (default 1 day: `API_BENCH_DAYS`). The device rows are read again for each question
//! (the `at` of successive requests 3 s apart, beyond their 2 s reuse).
//!
//! ```text
//! API_BENCH_SOURCE=store cargo bench -p gateway --bench api_latency
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway::api::{self, ApiConfig};
use rusqlite::params;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NS: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * NS;
const DISTRICTS: &[&str] = schemas::topic::HANOI_DISTRICTS;
const METRICS: &[&str] = &["pm25", "pm10", "temperature", "relativeHumidity"];

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Shape {
    devices: usize,
    days: i64,
    metrics: usize,
}

/// Fills the hot tier (if not already filled with this shape); returns the end of the data.
fn build(dir: &PathBuf, shape: &Shape) -> i64 {
    let marker = dir.join(format!(
        "filled-schema{}-{}x{}dx{}m",
        ingest::store::SCHEMA_VERSION,
        shape.devices,
        shape.days,
        shape.metrics
    ));
    if let Ok(end) = std::fs::read_to_string(&marker) {
        eprintln!("reusing the hot tier in {}", dir.display());
        return end.trim().parse().unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
    let mut conn =
        ingest::store::open(dir, ingest::Synchronous::Normal, Duration::from_secs(5)).unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF;").unwrap();
    // Whole minutes, ending now: the data looks live to "now"-relative queries.
    let now = ingest::message::now_ns();
    let end = now / MINUTE * MINUTE;
    let points = shape.days * 24 * 60;
    let start = end - points * MINUTE;
    let t = Instant::now();
    let metrics = &METRICS[..shape.metrics];
    let tx = conn.transaction().unwrap();
    for d in 0..shape.devices {
        let device = format!("aq-{d:04}");
        let district = DISTRICTS[d % DISTRICTS.len()];
        let lat = 20.95 + (d % 40) as f64 * 0.004;
        let lon = 105.75 + (d / 40) as f64 * 0.006;
        tx.execute(
            "INSERT INTO devices(device, district, kind, format, first_seen, last_seen, last_seq,
                 status, status_at, meta_json)
             VALUES (?1, ?2, 'airquality', 'senml', ?3, ?4, ?5, 'online', ?3, ?6)",
            params![
                device,
                district,
                start,
                end,
                points,
                format!(
                    r#"{{"fw":"0.1.0","kind":"airquality","district":"{district}","lat":{lat},"lon":{lon},"periodS":60}}"#
                )
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    // An hour of every series per transaction, through the hot tier's writer: each series
    // ends up in chunks of an hour, as the pipeline's flushes leave a steady city.
    let names: Vec<String> = (0..shape.devices).map(|d| format!("aq-{d:04}")).collect();
    let mut rows = 0u64;
    let hours = points / 60;
    for h in 0..hours {
        let tx = conn.transaction().unwrap();
        let mut batch: Vec<(&str, &str, i64, f64)> = Vec::new();
        for i in h * 60..(h + 1) * 60 {
            let ts = start + i * MINUTE;
            for (d, device) in names.iter().enumerate() {
                for metric in metrics {
                    // A daily cycle plus a per-device offset: values vary like real air.
                    let v = 40.0
                        + 25.0 * ((i as f64) * std::f64::consts::TAU / 1440.0).sin()
                        + (d % 17) as f64;
                    batch.push((device, metric, ts, v));
                }
            }
        }
        rows += ingest::hot::import(&tx, batch).unwrap().written as u64;
        tx.commit().unwrap();
        if h % 24 == 23 {
            eprintln!(
                "  {} h, {rows} rows, {:.0} s",
                h + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
        .unwrap();
    std::fs::write(&marker, end.to_string()).unwrap();
    eprintln!("filled {rows} rows in {:.0} s", t.elapsed().as_secs_f64());
    end
}

/// Fills a VictoriaMetrics with `shape` as the gateways write it; returns the end of the
/// data (ns).
fn fill_store(store: &tests::VictoriaMetrics, shape: &Shape) -> i64 {
    use ingest::lineproto::{TagSet, Tags};
    let now = ingest::message::now_ns();
    let end = now / MINUTE * MINUTE;
    let points = shape.days * 24 * 60;
    let start = end - points * MINUTE;
    let metrics = &METRICS[..shape.metrics];
    let t = Instant::now();
    let mut body = String::new();
    let mut samples = 0u64;
    let flush = |body: &mut String, force: bool| {
        if force || body.len() > 8 << 20 {
            store.write_line_protocol(body).unwrap();
            body.clear();
        }
    };
    for d in 0..shape.devices {
        let device = format!("aq-{d:04}");
        let district = DISTRICTS[d % DISTRICTS.len()];
        let mut tags = TagSet::default();
        tags.set(&Tags {
            device: &device,
            district: Some(district),
            format: "senml",
            kind: Some("airquality"),
        });
        let lat = 20.95 + (d % 40) as f64 * 0.004;
        let lon = 105.75 + (d / 40) as f64 * 0.006;
        tags.write_fields(
            &mut body,
            "gateway_device_status",
            &[],
            &[("online", 1.0)],
            start,
        );
        tags.write_fields(
            &mut body,
            "gateway_device_meta",
            &[("firmware", "0.1.0")],
            &[
                ("updated", 1.0),
                ("period_s", 60.0),
                ("lat", lat),
                ("lon", lon),
            ],
            start,
        );
        for i in 0..points {
            let ts = start + i * MINUTE;
            // Received a little after the device's time, as a gateway stamps it.
            let received = ts + 250_000_000;
            for metric in metrics {
                let v = 40.0
                    + 25.0 * ((i as f64) * std::f64::consts::TAU / 1440.0).sin()
                    + (d % 17) as f64;
                tags.write_line(&mut body, metric, v, ts);
            }
            let mut fields = vec![("readings", metrics.len() as f64)];
            if i == 0 {
                fields.push(("first_seen_ms", (received / 1_000_000) as f64));
            }
            tags.write_fields(&mut body, "gateway_device", &[], &fields, received);
            tags.write_fields(&mut body, "gateway_device", &[], &[("seq", i as f64)], ts);
            samples += metrics.len() as u64 + 2;
            flush(&mut body, false);
        }
    }
    flush(&mut body, true);
    store.force_flush().unwrap();
    eprintln!(
        "wrote {samples} samples to VictoriaMetrics in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    end
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn get(addr: &str, path: &str) -> Duration {
    let t = Instant::now();
    let mut resp = ureq::get(&format!("http://{addr}{path}")).call().unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    let took = t.elapsed();
    assert!(body.starts_with('{'), "{path}: {body}");
    took
}

fn measure(name: &str, addr: &str, n: usize, path: impl Fn(usize) -> String) {
    for i in 0..5 {
        get(addr, &path(i));
    }
    let mut times: Vec<Duration> = (0..n).map(|i| get(addr, &path(i))).collect();
    times.sort();
    println!(
        "{name:<42} n={n:<4} p50={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms",
        percentile(&times, 0.50).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: then only a
    // tiny shape, so that test runs stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let shape = Shape {
        devices: env("API_BENCH_DEVICES", if benching { 1000 } else { 20 }),
        days: env("API_BENCH_DAYS", if benching { 7 } else { 1 }),
        metrics: env("API_BENCH_METRICS", 2usize).clamp(1, METRICS.len()),
    };
    let requests = env("API_BENCH_REQUESTS", if benching { 300 } else { 20 });
    let from_store = std::env::var("API_BENCH_SOURCE").as_deref() == Ok("store");
    if from_store {
        return store_main(benching, requests);
    }
    let dir: PathBuf = std::env::var("API_BENCH_DIR").map_or_else(
        |_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target")
                .join(if benching {
                    "api-bench"
                } else {
                    "api-bench-small"
                })
        },
        PathBuf::from,
    );
    let end = build(&dir, &shape);
    let end_ms = end / 1_000_000;
    println!(
        "hot tier: {} devices x {} days of 1-minute data x {} metrics ({} rows per metric)",
        shape.devices,
        shape.days,
        shape.metrics,
        shape.devices as i64 * shape.days * 1440
    );

    let addr = serve(ApiConfig::new(ingest::store::db_path(&dir)));
    let devices = shape.devices;
    let from = end_ms - 24 * 3600 * 1000;

    let t = Instant::now();
    get(&addr, &format!("/api/aqi?at={end_ms}"));
    println!(
        "{:<42} cold   {:>8.2} ms",
        "/api/aqi (every station, 24 h)",
        t.elapsed().as_secs_f64() * 1e3
    );
    measure(
        "/api/aqi warm (hourly means cached)",
        &addr,
        requests.min(50),
        |_| format!("/api/aqi?at={end_ms}"),
    );
    let t = Instant::now();
    get(&addr, &format!("/api/devices?at={end_ms}"));
    println!(
        "{:<42} once   {:>8.2} ms",
        "/api/devices",
        t.elapsed().as_secs_f64() * 1e3
    );
    measure_series_and_latest(&addr, requests, devices, from, |_| end_ms);
}

/// The router on a loopback port, on a runtime of its own; its address.
fn serve(config: ApiConfig) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            axum::serve(listener, api::router(config)).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// The store as the source: a VictoriaMetrics filled like the hot tier, a query-only
/// node's router over it.
fn store_main(benching: bool, requests: usize) {
    let shape = Shape {
        devices: env("API_BENCH_DEVICES", if benching { 1000 } else { 20 }),
        days: env("API_BENCH_DAYS", 1),
        metrics: env("API_BENCH_METRICS", 2usize).clamp(1, METRICS.len()),
    };
    let store = tests::VictoriaMetrics::start().unwrap();
    let end = fill_store(&store, &shape);
    let end_ms = end / 1_000_000;
    println!(
        "store: {} devices x {} days of 1-minute data x {} metrics, and the device lines",
        shape.devices, shape.days, shape.metrics
    );
    let source =
        api::store::StoreSource::new(api::store::StoreQueryConfig::new(store.url())).unwrap();
    let addr = serve(ApiConfig::store_only(source));
    let from = end_ms - 24 * 3600 * 1000;
    // Successive `at`s 3 s apart: every request reads the device rows again.
    let at = |i: usize| end_ms - (i as i64 % 200) * 3000;
    measure(
        "/api/aqi (every station, 24 h)",
        &addr,
        requests.min(30),
        |i| format!("/api/aqi?at={}", at(i)),
    );
    measure(
        "/api/devices (rows read each time)",
        &addr,
        requests.min(100),
        |i| format!("/api/devices?at={}", at(i)),
    );
    measure_series_and_latest(&addr, requests, shape.devices, from, at);
}

/// The series and latest-value questions both sources are asked.
fn measure_series_and_latest(
    addr: &str,
    requests: usize,
    devices: usize,
    from: i64,
    at: impl Fn(usize) -> i64,
) {
    let end_ms = at(0);
    measure(
        "/api/series 24 h of one device, step 5m",
        addr,
        requests,
        |i| {
            let d = (i * 7919) % devices;
            format!("/api/series?series=aq-{d:04}:pm25&from={from}&to={end_ms}&step=5m&agg=avg")
        },
    );
    measure(
        "/api/series 24 h of one device, step 1m",
        addr,
        requests,
        |i| {
            let d = (i * 7919) % devices;
            format!("/api/series?series=aq-{d:04}:pm25&from={from}&to={end_ms}&step=1m&agg=avg")
        },
    );
    measure(
        "/api/latest district overview (all)",
        addr,
        requests.min(100),
        |i| format!("/api/latest?at={}", at(i)),
    );
    measure("/api/latest one district", addr, requests, |i| {
        format!(
            "/api/latest?at={}&district={}",
            at(i),
            DISTRICTS[i % DISTRICTS.len()]
        )
    });
}

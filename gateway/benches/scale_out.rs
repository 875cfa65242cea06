//! Scale-out benchmark: 1, 2, 3 gateways in one MQTT 5 share group on one box,
//! in the production shape (one Mosquitto, one VictoriaMetrics; the gateways
//! forward to the store). Not a timed test: it prints what it measured.
//!
//! ```text
//! cargo bench -p gateway --bench scale_out
//! SCALE_GATEWAYS=1,3 SCALE_MESSAGES=100000 SCALE_DEVICES=2000 cargo bench -p gateway --bench scale_out
//! SCALE_MODE=queued cargo bench -p gateway --bench scale_out     # drain a burst queued while away
//! ```
//!
//! For each N in `SCALE_GATEWAYS` (default `1,2,3`): a fresh Mosquitto and
//! VictoriaMetrics, N release `gateway run` processes with their own data dir
//! and HTTP port, client ids `scale-gw-<i>`, `--share-group scale` and
//! `--store`. A burst of `SCALE_MESSAGES` native SenML-CBOR messages (5
//! readings each) from `SCALE_DEVICES` devices is published with QoS 1 as fast
//! as the broker takes it (`gateway::bench::publish_range`, over
//! `SCALE_PUBLISHERS` connections):
//!
//! - `SCALE_MODE=live` (default): the gateways are running; the clock starts
//!   with the first publish.
//! - `SCALE_MODE=queued`: the gateways subscribe and stop, the broker queues the
//!   burst in their sessions, and the clock starts when they start again (one
//!   after another, each until ready; the first drains while the next starts).
//!
//! Measured: the time until the gateways have committed every reading (the sum
//! of `/health` `readings_committed`) and until every outbox is empty (the store
//! took everything); readings per second; CPU per reading (`/proc/<pid>/stat`
//! utime+stime) of all gateways together, of Mosquitto, of VictoriaMetrics and
//! of this process (the publisher and the probes), from just before the burst
//! is published to the end; peak RSS (`VmHWM`) per gateway; how the messages
//! split between the gateways (`/health` `messages_committed`); the mean
//! messages per applier transaction (`/metrics` `batch_size`); and, from the
//! store's export API, that it holds every reading exactly once (raw samples and
//! distinct timestamps per series both equal to the readings sent).

#![allow(clippy::unwrap_used)] // a benchmark harness: failing loudly is right

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::bench::{Load, LoadFormat, READINGS_PER_MESSAGE};
use tests::{
    GatewayOptions, GatewayProcess, Mosquitto, MosquittoOptions, ProcUsage, VictoriaMetrics,
};

/// The series the burst writes (`Load`'s SenML metrics, as VictoriaMetrics names them).
const SERIES: &str =
    "pm25_value|pm10_value|temperature_value|relativeHumidity_value|pressure_value";
/// How long one N may take before the bench gives up.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Queued,
}

/// The sizes of one run.
#[derive(Debug, Clone)]
struct Shape {
    mode: Mode,
    messages: u64,
    devices: u32,
    publishers: u64,
}

impl Shape {
    fn readings(&self) -> u64 {
        self.messages * READINGS_PER_MESSAGE
    }
}

/// What one N measured.
#[derive(Debug)]
struct Row {
    gateways: usize,
    load_before: String,
    published: Duration,
    committed: Duration,
    stored: Duration,
    gateway_cpu_s: f64,
    broker_cpu_s: f64,
    store_cpu_s: f64,
    bench_cpu_s: f64,
    peak_rss: Vec<u64>,
    messages_per_gateway: Vec<u64>,
    /// Applier transactions, all gateways together (`batch_size_count`).
    transactions: u64,
    hot_readings: u64,
    store_samples: u64,
    store_distinct: u64,
}

fn health(gw: &GatewayProcess) -> serde_json::Value {
    gw.get("/health")
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn cpu(pid: Option<u32>) -> f64 {
    pid.and_then(ProcUsage::of).map_or(0.0, |u| u.cpu_s)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Publishes `load` over `publishers` connections, each a contiguous share of
/// the messages, on a thread of its own; returns how long until the broker
/// acknowledged them all.
fn publish(
    host: &'static str,
    port: u16,
    load: Arc<Load>,
    publishers: u64,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let started = Instant::now();
            let per = load.messages.div_ceil(publishers);
            let mut tasks = tokio::task::JoinSet::new();
            for p in 0..publishers {
                let range = (p * per).min(load.messages)..((p + 1) * per).min(load.messages);
                let load = Arc::clone(&load);
                tasks.spawn(async move {
                    gateway::bench::publish_range(
                        host,
                        port,
                        &format!("scale-pub-{p}"),
                        &load,
                        range,
                    )
                    .await
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
            started.elapsed()
        })
    })
}

fn run(bin: &std::path::Path, gateways: usize, shape: &Shape) -> Row {
    let load_before = load_average();
    let broker = Mosquitto::start_with(MosquittoOptions::default()).unwrap();
    let store = VictoriaMetrics::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut gws: Vec<GatewayProcess> = (0..gateways)
        .map(|i| {
            let mut opts = GatewayOptions::new(
                &broker,
                &format!("scale-gw-{i}"),
                &dir.path().join(format!("gw-{i}")),
            );
            opts.store = Some(store.url());
            opts.share_group = Some("scale".into());
            // A gateway configuration of one's own, e.g. `[ingest]
            // forward_device_series = false` to measure without the device-state series.
            if let Ok(config) = std::env::var("SCALE_CONFIG") {
                opts.extra = vec!["--config".into(), config];
            }
            GatewayProcess::start(bin, &opts).unwrap()
        })
        .collect();
    if shape.mode == Mode::Queued {
        // The sessions (and their shared subscriptions) stay in the broker.
        for gw in &mut gws {
            gw.stop().unwrap();
        }
    }

    let prefix = format!("scale{gateways}-");
    let load = Arc::new(Load::new(
        LoadFormat::Senml,
        shape.messages,
        shape.devices,
        &prefix,
    ));
    let readings = shape.readings();
    let me = std::process::id();
    let (broker_cpu0, store_cpu0, bench_cpu0) =
        (cpu(broker.pid()), cpu(store.pid()), cpu(Some(me)));
    let gateway_cpu0: f64 = match shape.mode {
        Mode::Live => gws.iter().map(|g| cpu(g.pid())).sum(),
        // New processes: their whole life counts.
        Mode::Queued => 0.0,
    };

    let publisher = publish(
        broker.host(),
        broker.port(),
        Arc::clone(&load),
        shape.publishers,
    );
    let (started, publisher) = match shape.mode {
        Mode::Live => (Instant::now(), Err(publisher)),
        Mode::Queued => {
            let published = publisher.join().unwrap();
            let started = Instant::now();
            for gw in &mut gws {
                gw.start_again().unwrap();
            }
            (started, Ok(published))
        }
    };

    let mut committed = None;
    let stored = loop {
        let states: Vec<serde_json::Value> = gws.iter().map(health).collect();
        let sum: u64 = states
            .iter()
            .map(|h| h["readings_committed"].as_u64().unwrap_or(0))
            .sum();
        if committed.is_none() && sum >= readings {
            committed = Some(started.elapsed());
        }
        if committed.is_some()
            && states
                .iter()
                .all(|h| h["outbox_entries"].as_u64() == Some(0))
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < RUN_LIMIT,
            "{gateways} gateways: {sum} of {readings} readings committed after {RUN_LIMIT:?}; last log lines:\n{}",
            gws.iter()
                .map(GatewayProcess::log_tail)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let published = publisher.unwrap_or_else(|running| running.join().unwrap());
    let gateway_cpu_s = gws.iter().map(|g| cpu(g.pid())).sum::<f64>() - gateway_cpu0;
    let broker_cpu_s = cpu(broker.pid()) - broker_cpu0;
    let store_cpu_s = cpu(store.pid()) - store_cpu0;
    let bench_cpu_s = cpu(Some(me)) - bench_cpu0;
    let peak_rss = gws
        .iter()
        .map(|g| {
            g.pid()
                .and_then(ProcUsage::of)
                .map_or(0, |u| u.peak_rss_bytes)
        })
        .collect();
    let states: Vec<serde_json::Value> = gws.iter().map(health).collect();
    let messages_per_gateway = states
        .iter()
        .map(|h| h["messages_committed"].as_u64().unwrap_or(0))
        .collect();
    let hot_readings = states
        .iter()
        .map(|h| h["readings_committed"].as_u64().unwrap_or(0))
        .sum();
    let transactions = gws
        .iter()
        .map(|g| g.metric("batch_size_count").unwrap_or(0.0) as u64)
        .sum();

    // Exactly once in the store: every raw sample counted, and the distinct
    // timestamps per series (a doubled reading is a second sample at the same time).
    store.force_flush().unwrap();
    let series = store
        .export(&format!(r#"{{__name__=~"{SERIES}",device=~"{prefix}.*"}}"#))
        .unwrap();
    let store_samples = series.iter().map(|s| s.timestamps.len() as u64).sum();
    let store_distinct = series
        .iter()
        .map(|s| {
            let mut t = s.timestamps.clone();
            t.sort_unstable();
            t.dedup();
            t.len() as u64
        })
        .sum();
    for gw in &mut gws {
        gw.stop().unwrap();
    }
    Row {
        gateways,
        load_before,
        published,
        committed: committed.unwrap_or(stored),
        stored,
        gateway_cpu_s,
        broker_cpu_s,
        store_cpu_s,
        bench_cpu_s,
        peak_rss,
        messages_per_gateway,
        transactions,
        hot_readings,
        store_samples,
        store_distinct,
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_table(rows: &[Row], shape: &Shape) {
    let readings = shape.readings() as f64;
    let us = |cpu_s: f64| format!("{:.2} us", cpu_s * 1e6 / readings);
    println!();
    println!(
        "| gateways | load avg before | publish | all committed | all in store | readings/s committed / stored | CPU per reading: gateways (sum) | Mosquitto | VictoriaMetrics | publisher + probes | peak RSS per gateway | messages per gateway | messages per applier transaction | hot tier / store: readings, samples, distinct |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let total: u64 = r.messages_per_gateway.iter().sum::<u64>().max(1);
        let split = r
            .messages_per_gateway
            .iter()
            .map(|m| format!("{:.1}%", *m as f64 * 100.0 / total as f64))
            .collect::<Vec<_>>()
            .join(" / ");
        let rss = r
            .peak_rss
            .iter()
            .map(|b| format!("{:.0}", *b as f64 / 1048576.0))
            .collect::<Vec<_>>()
            .join(" / ");
        println!(
            "| {} | {} | {:.1} s | {:.1} s | {:.1} s | {} / {} | {} | {} | {} | {} | {rss} MiB | {split} | {:.0} | {}, {}, {} |",
            r.gateways,
            r.load_before,
            r.published.as_secs_f64(),
            r.committed.as_secs_f64(),
            r.stored.as_secs_f64(),
            thousands((readings / r.committed.as_secs_f64()) as u64),
            thousands((readings / r.stored.as_secs_f64()) as u64),
            us(r.gateway_cpu_s),
            us(r.broker_cpu_s),
            us(r.store_cpu_s),
            us(r.bench_cpu_s),
            shape.messages as f64 / r.transactions.max(1) as f64,
            thousands(r.hot_readings),
            thousands(r.store_samples),
            thousands(r.store_distinct),
        );
    }
    println!();
    for r in rows {
        let sent = shape.readings();
        let lost = sent.saturating_sub(r.store_distinct);
        let doubled = r.store_samples.saturating_sub(r.store_distinct);
        let ok = r.hot_readings == sent && r.store_samples == sent && r.store_distinct == sent;
        println!(
            "{} gateway(s): sent {}, committed by the gateways {}, in the store {} ({} lost, {} doubled): {}",
            r.gateways,
            thousands(sent),
            thousands(r.hot_readings),
            thousands(r.store_distinct),
            thousands(lost),
            thousands(doubled),
            if ok {
                "exactly once"
            } else {
                "NOT exactly once"
            }
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // special: run a small burst then, so the bench stays compiled and sane.
    let quick = !std::env::args().any(|a| a == "--bench");
    let shape = Shape {
        mode: match std::env::var("SCALE_MODE").as_deref() {
            Ok("queued") => Mode::Queued,
            _ => Mode::Live,
        },
        messages: env_or("SCALE_MESSAGES", if quick { 2_000 } else { 500_000 }),
        devices: env_or("SCALE_DEVICES", if quick { 100 } else { 2_000 }),
        publishers: env_or("SCALE_PUBLISHERS", 1u64).max(1),
    };
    let default_ns = if quick { "1,2" } else { "1,2,3" };
    let ns: Vec<usize> = std::env::var("SCALE_GATEWAYS")
        .unwrap_or_else(|_| default_ns.into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_gateway"));
    println!(
        "scale-out benchmark ({:?}): {} SenML messages x {READINGS_PER_MESSAGE} readings = {} readings from {} devices, QoS 1, {} publisher connection(s); gateways in one share group, forwarding to VictoriaMetrics; {} CPUs",
        shape.mode,
        thousands(shape.messages),
        thousands(shape.readings()),
        thousands(u64::from(shape.devices)),
        shape.publishers,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut rows = Vec::new();
    for n in ns {
        eprintln!("{n} gateway(s)...");
        let row = run(bin, n, &shape);
        eprintln!(
            "  committed in {:.1} s, in the store in {:.1} s",
            row.committed.as_secs_f64(),
            row.stored.as_secs_f64()
        );
        rows.push(row);
    }
    print_table(&rows, &shape);
    let all_once = rows.iter().all(|r| {
        let sent = shape.readings();
        r.hot_readings == sent && r.store_samples == sent && r.store_distinct == sent
    });
    assert!(all_once, "readings lost or doubled: see above");
}

//! Ack latency of the gateway process at a steady message rate, without and with
//! dashboard clients querying the API at the same time: the check that API reads (their
//! own bounded pool of threads and connections, `http.api_read_threads` and
//! `http.api_read_queue`) do not delay commits. Not a timed test: it prints what it
//! measured, the two phases side by side.
//!
//! ```text
//! cargo bench -p gateway --bench ack_under_api_load
//! BENCH_RATE=2000 BENCH_SECONDS=20 BENCH_CLIENTS=50 cargo bench -p gateway --bench ack_under_api_load
//! ```
//!
//! Method: a real Mosquitto and the release `gateway` binary (default configuration,
//! loopback, a temporary data directory, an API token). The hot tier is seeded with a
//! burst (`BENCH_SEED_DEVICES` devices x `BENCH_SEED_HOURS` hours of 1-minute SenML
//! readings) and a warm-up second registers the live devices. Then two phases of
//! `BENCH_SECONDS` each publish `BENCH_RATE` messages/s with QoS 1 from a paced
//! publisher (`BENCH_RATE` live devices, one message a second each): phase A with no API
//! client, phase B with `BENCH_CLIENTS` threads looping over the dashboard's queries with
//! `Authorization: Bearer`. A phase runs from the publisher's first message until all of
//! its messages are committed (`/health` messages_committed); its latencies are the
//! gateway's own histograms (`/metrics`) as differences of the bucket counts between the
//! phase's start and end, quantiles interpolated linearly inside a bucket.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: failing loudly is right

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gateway::bench::{Load, LoadFormat};
use tests::{ChildGuard, Mosquitto, MosquittoOptions};

/// The histograms reported: receipt to durable in the message log (the ack is released
/// then), and receipt to committed in SQLite.
const DURABLE: &str = ingest::metrics::LOG_RECEIVE_TO_DURABLE;
const APPLIED: &str = ingest::metrics::RECEIVE_TO_APPLIED;
const REFUSED: &str = "api_queries_refused_total";
const TOKEN: &str = "bench-dashboard-token-0123456789";
/// The dashboard's queries, one kind per request in turn.
const QUERIES: [&str; 4] = ["/api/series", "/api/latest", "/api/aqi", "/api/devices"];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Status and body of `GET path`, with the API token.
fn get(agent: &ureq::Agent, port: u16, path: &str) -> Result<(u16, String), ureq::Error> {
    let mut resp = agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()?;
    let body = resp.body_mut().read_to_string()?;
    Ok((resp.status().as_u16(), body))
}

/// Cumulative bucket counts of one histogram: (upper bound in seconds, count), ascending,
/// the last one `+Inf`.
#[derive(Debug, Clone, Default)]
struct Histogram(Vec<(f64, u64)>);

impl Histogram {
    fn since(&self, earlier: &Self) -> Self {
        let before: BTreeMap<u64, u64> =
            earlier.0.iter().map(|(le, n)| (le.to_bits(), *n)).collect();
        Self(
            self.0
                .iter()
                .map(|(le, n)| {
                    (
                        *le,
                        n.saturating_sub(before.get(&le.to_bits()).copied().unwrap_or(0)),
                    )
                })
                .collect(),
        )
    }

    fn count(&self) -> u64 {
        self.0.last().map_or(0, |(_, n)| *n)
    }

    /// The `q` quantile in seconds, interpolated linearly inside its bucket (from 0 for the
    /// first); `Err(bound)` when it lies above the last finite bound.
    fn quantile(&self, q: f64) -> Option<Result<f64, f64>> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for &(le, n) in &self.0 {
            if n as f64 >= rank && n > below {
                if le.is_infinite() {
                    return Some(Err(lower));
                }
                return Some(Ok(
                    lower + (le - lower) * (rank - below as f64) / (n - below) as f64
                ));
            }
            (lower, below) = (le, n);
        }
        Some(Err(lower))
    }

    /// The finite bounds in milliseconds, for the resolution note.
    fn bounds_ms(&self) -> String {
        self.0
            .iter()
            .filter(|(le, _)| le.is_finite())
            .map(|(le, _)| format!("{}", (le * 1e6).round() / 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What `/metrics`, `/health` and `/proc` said at one moment.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    durable: Histogram,
    applied: Histogram,
    refused: u64,
    committed: u64,
    cpu_s: f64,
}

/// A histogram's buckets summed over its label sets.
fn histogram(text: &str, name: &str) -> Histogram {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let (key, value) = line.rsplit_once(' ').unwrap();
        let le = key
            .split("le=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        // Ordered by bound: positive floats order as their bits do.
        buckets.entry(le.to_bits()).or_insert((le, 0)).1 += value.parse::<f64>().unwrap() as u64;
    }
    Histogram(buckets.into_values().collect())
}

/// A counter summed over its label sets; 0 before its first increment.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// CPU seconds (user + system) of a live process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // The kernel's USER_HZ is 100 on Linux.
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn committed(agent: &ureq::Agent, port: u16) -> u64 {
    get(agent, port, "/health")
        .ok()
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["messages_committed"].as_u64())
        .unwrap_or(0)
}

fn snapshot(agent: &ureq::Agent, port: u16, pid: u32) -> Snapshot {
    let (status, text) = get(agent, port, "/metrics").unwrap();
    assert_eq!(status, 200, "/metrics: {text}");
    Snapshot {
        at: Instant::now(),
        durable: histogram(&text, DURABLE),
        applied: histogram(&text, APPLIED),
        refused: counter(&text, REFUSED),
        committed: committed(agent, port),
        cpu_s: cpu_seconds(pid),
    }
}

/// One dashboard request: which query, when it started, how long it took, its status (0:
/// no answer).
struct Request {
    query: usize,
    started: Instant,
    took: Duration,
    status: u16,
}

/// A dashboard client: the query mix in turn until `stop`.
fn client(port: u16, id: usize, seed_devices: u32, stop: &AtomicBool) -> Vec<Request> {
    let agent = agent();
    let mut done = Vec::new();
    let mut i = id;
    while !stop.load(Ordering::Relaxed) {
        let query = i % QUERIES.len();
        let path = match query {
            0 => {
                let d = (i * 7919) % seed_devices as usize;
                format!("/api/series?series=seed-{d:05}:pm25&from=-24h&to=now&step=5m&agg=avg")
            }
            _ => QUERIES[query].to_owned(),
        };
        let started = Instant::now();
        let status = get(&agent, port, &path).map_or(0, |(s, _)| s);
        done.push(Request {
            query,
            started,
            took: started.elapsed(),
            status,
        });
        i += 1;
    }
    done
}

/// What one phase measured.
struct Phase {
    clients: usize,
    published: Duration,
    window: Duration,
    durable: Histogram,
    applied: Histogram,
    committed: u64,
    refused: u64,
    cpu_per_s: f64,
    requests: Vec<Request>,
}

struct Bench {
    broker: Mosquitto,
    http: u16,
    pid: u32,
    log: std::path::PathBuf,
    agent: ureq::Agent,
    rt: tokio::runtime::Runtime,
    seed_devices: u32,
}

impl Bench {
    fn publish(&self, load: &Load, range: std::ops::Range<u64>, rate: Option<f64>) -> Duration {
        let (host, port) = (self.broker.host(), self.broker.port());
        self.rt
            .block_on(async {
                match rate {
                    Some(r) => {
                        gateway::bench::publish_paced(host, port, "bench-publisher", load, range, r)
                            .await
                    }
                    None => {
                        gateway::bench::publish_range(host, port, "bench-publisher", load, range)
                            .await
                    }
                }
            })
            .unwrap()
    }

    fn wait_committed(&self, messages: u64) {
        let started = Instant::now();
        while committed(&self.agent, self.http) < messages {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "not all committed; log: {}",
                tests::process::log_tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Publishes `range` of `load` at `rate` with `clients` dashboard clients running.
    fn phase(&self, load: &Load, range: std::ops::Range<u64>, rate: f64, clients: usize) -> Phase {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..clients)
            .map(|id| {
                let (stop, port, devices) = (stop.clone(), self.http, self.seed_devices);
                std::thread::spawn(move || client(port, id, devices, &stop))
            })
            .collect();
        if clients > 0 {
            // Every client past its first request before the clock starts.
            std::thread::sleep(Duration::from_secs(1));
        }
        let start = snapshot(&self.agent, self.http, self.pid);
        let expected = start.committed + (range.end - range.start);
        let published = self.publish(load, range, Some(rate));
        self.wait_committed(expected);
        let end = snapshot(&self.agent, self.http, self.pid);
        stop.store(true, Ordering::Relaxed);
        let requests = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .filter(|r| r.started >= start.at && r.started + r.took <= end.at)
            .collect();
        let window = end.at - start.at;
        Phase {
            clients,
            published,
            window,
            durable: end.durable.since(&start.durable),
            applied: end.applied.since(&start.applied),
            committed: end.committed - start.committed,
            refused: end.refused.saturating_sub(start.refused),
            cpu_per_s: (end.cpu_s - start.cpu_s) / window.as_secs_f64(),
            requests,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile_ms(h: &Histogram, q: f64) -> String {
    match h.quantile(q) {
        None => "-".into(),
        Some(Ok(s)) => format!("{:.2} ms", s * 1e3),
        Some(Err(bound)) => format!("> {:.0} ms", bound * 1e3),
    }
}

/// p50 / p99 of requests' durations, "-" without any.
fn request_quantiles(requests: &[&Request]) -> String {
    let mut took: Vec<Duration> = requests.iter().map(|r| r.took).collect();
    if took.is_empty() {
        return "-".into();
    }
    took.sort();
    let at = |p: f64| ms(took[((took.len() - 1) as f64 * p).round() as usize]);
    format!("{:.1} / {:.1} ms", at(0.50), at(0.99))
}

/// A line of the table: its label and its value in a phase.
type Row = (String, Box<dyn Fn(&Phase) -> String>);

fn print_table(phases: &[Phase], rate: f64, seconds: u64) {
    let rows: Vec<Row> = vec![
        (
            format!("publisher rate (aim {rate:.0}/s for {seconds} s)"),
            Box::new(|p| format!("{:.0}/s", p.committed as f64 / p.published.as_secs_f64())),
        ),
        (
            "phase window (publish + last commits)".into(),
            Box::new(|p| format!("{:.2} s", p.window.as_secs_f64())),
        ),
        (
            "messages committed (/health)".into(),
            Box::new(|p| p.committed.to_string()),
        ),
        (
            "receipt -> durable = ack   samples".into(),
            Box::new(|p| p.durable.count().to_string()),
        ),
        ("  p50".into(), Box::new(|p| quantile_ms(&p.durable, 0.50))),
        ("  p90".into(), Box::new(|p| quantile_ms(&p.durable, 0.90))),
        ("  p99".into(), Box::new(|p| quantile_ms(&p.durable, 0.99))),
        (
            "receipt -> in SQLite       samples".into(),
            Box::new(|p| p.applied.count().to_string()),
        ),
        ("  p50".into(), Box::new(|p| quantile_ms(&p.applied, 0.50))),
        ("  p90".into(), Box::new(|p| quantile_ms(&p.applied, 0.90))),
        ("  p99".into(), Box::new(|p| quantile_ms(&p.applied, 0.99))),
        (
            "gateway CPU (CPU s per s)".into(),
            Box::new(|p| format!("{:.2}", p.cpu_per_s)),
        ),
        (
            "API requests completed".into(),
            Box::new(|p| {
                format!(
                    "{} ({:.0}/s)",
                    p.requests.len(),
                    p.requests.len() as f64 / p.window.as_secs_f64()
                )
            }),
        ),
        (
            "API latency p50 / p99".into(),
            Box::new(|p| request_quantiles(&p.requests.iter().collect::<Vec<_>>())),
        ),
        (
            "API not 200 (of which 503)".into(),
            Box::new(|p| {
                let bad = p.requests.iter().filter(|r| r.status != 200).count();
                let busy = p.requests.iter().filter(|r| r.status == 503).count();
                format!("{bad} ({busy})")
            }),
        ),
        (
            format!("API refused ({REFUSED})"),
            Box::new(|p| p.refused.to_string()),
        ),
    ];
    let heads: Vec<String> = phases
        .iter()
        .zip(["A", "B"])
        .map(|(p, n)| match p.clients {
            0 => format!("{n}: no API clients"),
            c => format!("{n}: {c} API clients"),
        })
        .collect();
    println!("{:<44}{:>20}{:>20}", "", heads[0], heads[1]);
    for (label, value) in &rows {
        println!(
            "{label:<44}{:>20}{:>20}",
            value(&phases[0]),
            value(&phases[1])
        );
    }
    // Per query, for the phase with clients.
    let b = &phases[1];
    for (q, name) in QUERIES.iter().enumerate() {
        let of: Vec<&Request> = b.requests.iter().filter(|r| r.query == q).collect();
        println!(
            "  phase B {name:<16} {:>6} requests, p50 / p99 {}",
            of.len(),
            request_quantiles(&of)
        );
    }
    println!(
        "histogram buckets (upper bounds, ms): {DURABLE}: {}; {APPLIED}: {}",
        b.durable.bounds_ms(),
        b.applied.bounds_ms()
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: run a
    // small shape then, so the bench stays compiled and sane.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds: u64 = env_or("BENCH_SECONDS", if quick { 2 } else { 20 });
    let rate: u32 = env_or("BENCH_RATE", if quick { 200 } else { 2_000 });
    let clients: usize = env_or("BENCH_CLIENTS", if quick { 4 } else { 50 });
    let seed_devices: u32 = env_or("BENCH_SEED_DEVICES", if quick { 20 } else { 200 });
    let seed_hours: u64 = env_or("BENCH_SEED_HOURS", if quick { 1 } else { 6 });
    let rate = rate.max(1);

    let broker = Mosquitto::start_with(MosquittoOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = tests::free_port().unwrap();
    let log = dir.path().join("gateway.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args([
        "run",
        "--mqtt",
        &broker.url(),
        "--client-id",
        "bench-gateway",
    ])
    .args(["--data-dir", &data.display().to_string()])
    .args([
        "--http",
        &format!("127.0.0.1:{http}"),
        "--http-token",
        TOKEN,
    ])
    .env("RUST_LOG", "warn");
    let mut gw = ChildGuard::spawn("gateway", &mut cmd, &log).unwrap();
    let pid = gw.id().unwrap();
    let agent = agent();
    let started = Instant::now();
    while !get(&agent, http, "/health/ready").is_ok_and(|(s, _)| s == 200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gateway not ready; log: {}",
            tests::process::log_tail(&log, 40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bench = Bench {
        broker,
        http,
        pid,
        log,
        agent,
        rt,
        seed_devices,
    };

    // The hot tier's history: one message a minute per device.
    let seed_messages = u64::from(seed_devices) * seed_hours * 60;
    let seed = Load::new(LoadFormat::Senml, seed_messages, seed_devices, "seed-").every(60);
    let t = Instant::now();
    bench.publish(&seed, 0..seed_messages, None);
    bench.wait_committed(seed_messages);
    println!(
        "seeded the hot tier: {seed_devices} devices x {seed_hours} h of 1-minute SenML readings = {seed_messages} messages, committed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The dashboard's queries answer before the clock starts (and the token works).
    for path in [
        "/api/series?series=seed-00000:pm25&from=-24h&to=now&step=5m&agg=avg",
        "/api/latest",
        "/api/aqi",
        "/api/devices",
    ] {
        let (status, body) = get(&bench.agent, http, path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }

    // Live traffic: `rate` devices, one message a second each; a warm-up second registers
    // them, then phase A and phase B, each device's timestamps continuing.
    let per_phase = u64::from(rate) * seconds;
    let live_devices = rate;
    let total = u64::from(live_devices) + 2 * per_phase;
    let live = Load::new(LoadFormat::Senml, total, live_devices, "live-");
    let warm = u64::from(live_devices);
    bench.publish(&live, 0..warm, Some(f64::from(rate)));
    bench.wait_committed(seed_messages + warm);

    println!(
        "ack latency at {rate} messages/s (QoS 1, SenML, {live_devices} live devices) for {seconds} s per phase; phase B with {clients} dashboard clients (/api/series 24 h step 5m, /api/latest, /api/aqi, /api/devices in turn, no pause)"
    );
    let a = bench.phase(&live, warm..warm + per_phase, f64::from(rate), 0);
    let b = bench.phase(
        &live,
        warm + per_phase..warm + 2 * per_phase,
        f64::from(rate),
        clients,
    );
    print_table(&[a, b], f64::from(rate), seconds);
    gw.terminate(Duration::from_secs(30)).unwrap();
}

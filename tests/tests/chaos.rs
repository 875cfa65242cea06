//! Chaos test of the whole pipeline: the real `gateway` binary between a real
//! Mosquitto and a real VictoriaMetrics, 200,000 QoS 1 readings (40,000 Tasmota
//! messages of 5 readings) published in four phases, each with its own fault:
//!
//! 1. `kill -9` of the gateway at three random moments, restarted each time
//!    (80,000 readings);
//! 2. a broker restart while the gateway still drains its queue (40,000);
//! 3. the store stopped for `CHAOS_STORE_OUTAGE_S` seconds (default 60) while
//!    readings keep arriving (40,000);
//! 4. the outbox filled to its limit (small `outbox_max_bytes`, policy
//!    `block`) with the store down, so the gateway must stop acknowledging
//!    (40,000).
//!
//! After each phase, `simulators verify` compares the phase's manifest (written
//! here, one row per reading, in the simulators' manifest format) with the hot
//! tier and with VictoriaMetrics: zero readings lost, zero wrong values, zero
//! duplicates. VictoriaMetrics runs with `-dedup.minScrapeInterval=1ms`, which
//! gives it the same-series-and-time overwrite of InfluxDB that the design
//! relies on (decision 2); without it a batch re-sent after a crash between the
//! store's answer and the outbox delete would show up as duplicate samples.
//!
//! The binaries under test are the ones cargo built next to this test
//! (`target/<profile>/gateway` and `simulators`): `cargo test --workspace`
//! builds both; with `cargo test -p tests` alone, run
//! `cargo build -p gateway -p simulators` first. A missing binary fails the
//! test with that instruction. `CHAOS_SEED` replays the kill moments of an
//! earlier run (the seed is printed).

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ingest::message::now_ns;
use tests::{
    GatewayOptions, GatewayProcess, Mosquitto, PublishOptions, VictoriaMetrics,
    VictoriaMetricsOptions, built_binary,
};

/// Readings per message (BME280: 3, PMS5003: 2).
const READINGS_PER_MESSAGE: u64 = 5;
/// Devices per phase; each phase has its own device prefix.
const DEVICES: u32 = 400;
/// Bound on every wait for the pipeline to catch up; only a broken pipeline
/// (or a hopelessly overloaded machine) reaches it.
const DRAIN_WAIT: Duration = Duration::from_secs(240);
/// Bound on a gateway start (debug build on a busy 2-core machine).
const READY_WAIT: Duration = Duration::from_secs(60);
/// The gateway's MQTT client id: fixed, so its persistent session survives crashes.
const CLIENT_ID: &str = "chaos-gateway";
/// Outbox bound of phase 4: about 14,000 readings of line protocol, a third
/// of the phase, and a few full batches (so it fills up to near the limit
/// before a batch no longer fits).
const SMALL_OUTBOX_BYTES: u64 = 1_000_000;
/// Bound on the wait for points VictoriaMetrics acknowledged to become searchable.
const VISIBLE_WAIT: Duration = Duration::from_secs(60);

// --- binaries under test --------------------------------------------------------

// --- traffic --------------------------------------------------------------------

/// One phase's traffic: `messages` Tasmota messages round-robin over
/// [`DEVICES`] devices named `<prefix>NNNNN`, one second apart per device,
/// ending about a minute ago (inside every retention, never in the future).
struct Traffic {
    prefix: String,
    messages: u64,
    base_unix_s: i64,
}

/// A published message and what it carries, for the manifest.
struct Message {
    topic: String,
    payload: Vec<u8>,
    device: String,
    ts_ms: i64,
    readings: [(&'static str, f64); READINGS_PER_MESSAGE as usize],
}

impl Traffic {
    fn new(prefix: &str, messages: u64) -> Self {
        let per_device = messages.div_ceil(u64::from(DEVICES)) as i64;
        Self {
            prefix: prefix.to_owned(),
            messages,
            base_unix_s: now_ns() / 1_000_000_000 - per_device - 60,
        }
    }

    fn readings(&self) -> u64 {
        self.messages * READINGS_PER_MESSAGE
    }

    fn message(&self, i: u64) -> Message {
        let device = format!("{}{:05}", self.prefix, i % u64::from(DEVICES));
        let t = self.base_unix_s + (i / u64::from(DEVICES)) as i64;
        // Values with one decimal (or none), so the JSON text and the manifest
        // agree exactly.
        let w = (i % 23) as f64;
        let temp = (240.0 + w) / 10.0;
        let hum = 55.0 + w;
        let pres = (10050.0 + w) / 10.0;
        let pm25 = 20.0 + 3.0 * w;
        let pm10 = 40.0 + 4.0 * w;
        // Tasmota's Time is local time without a zone; the gateway's default
        // offset is Hanoi's +07:00.
        let payload = format!(
            "{{\"Time\":\"{}\",\"BME280\":{{\"Temperature\":{temp},\"Humidity\":{hum},\"Pressure\":{pres}}},\"PMS5003\":{{\"PM2.5\":{pm25},\"PM10\":{pm10}}},\"TempUnit\":\"C\"}}",
            iso_seconds(t + 7 * 3600)
        );
        Message {
            topic: format!("tele/{device}/SENSOR"),
            payload: payload.into_bytes(),
            device,
            ts_ms: t * 1000,
            readings: [
                ("temperature", temp),
                ("relativeHumidity", hum),
                ("pressure", pres),
                ("pm25", pm25),
                ("pm10", pm10),
            ],
        }
    }

    /// Whether a hot-tier device is this phase's.
    fn owns(&self, device: &str) -> bool {
        device.starts_with(&self.prefix)
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds.
fn iso_seconds(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The manifest of what one phase sent, in `simulators`' format
/// (`# simulators manifest v1`, then `device,metric,ts_ms,value,sent_ns,flags`).
struct Manifest {
    path: PathBuf,
    text: String,
}

impl Manifest {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            text: "# simulators manifest v1\ndevice,metric,ts_ms,value,sent_ns,flags\n".into(),
        }
    }

    fn add(&mut self, m: &Message, sent_ns: i64) {
        for (metric, value) in m.readings {
            writeln!(
                self.text,
                "{},{metric},{},{value},{sent_ns},-",
                m.device, m.ts_ms
            )
            .unwrap();
        }
    }

    fn save(&self) {
        let mut f = std::fs::File::create(&self.path).unwrap();
        f.write_all(self.text.as_bytes()).unwrap();
    }
}

/// Publishes messages `range` of `traffic` with QoS 1, at most `rate` messages
/// per second (`None`: as fast as the broker takes them), and returns once the
/// broker has acknowledged every one. Each message goes into the manifest with
/// its send time.
fn publish(
    broker_port: u16,
    traffic: &Traffic,
    range: Range<u64>,
    rate: Option<f64>,
    client_id: &str,
    manifest: &mut Manifest,
) {
    let messages = range.map(|i| {
        let m = traffic.message(i);
        manifest.add(&m, now_ns());
        (m.topic, m.payload)
    });
    let options = PublishOptions {
        rate,
        timeout: DRAIN_WAIT,
        ..PublishOptions::default()
    };
    tests::publish_with("127.0.0.1", broker_port, messages, client_id, &options)
        .unwrap_or_else(|e| panic!("{e}"));
}

// --- the gateway under test --------------------------------------------------------

/// The `gateway run` child process (the harness's), restarted with the same
/// client id and data dir.
struct Gateway {
    process: GatewayProcess,
    data_dir: PathBuf,
}

impl Gateway {
    /// Starts it and waits until `/health/ready` is 200.
    fn start(dir: &Path, broker: &Mosquitto, store: &VictoriaMetrics) -> Self {
        let data_dir = dir.join("data");
        let mut opts = GatewayOptions::new(broker, CLIENT_ID, &data_dir);
        opts.store = Some(store.url());
        opts.log = Some(dir.join("gateway.log"));
        opts.ready_timeout = READY_WAIT;
        opts.stop_grace = Duration::from_secs(60);
        let process = GatewayProcess::start(&built_binary("gateway"), &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        Self { process, data_dir }
    }

    /// Starts it again with `extra` arguments and waits until `/health/ready` is 200.
    fn start_again(&mut self, extra: &[String]) {
        self.process
            .start_again_with(extra)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILL: a crash, nothing flushed.
    fn kill(&mut self) {
        assert!(self.process.is_running(), "gateway running");
        self.process.kill().unwrap();
    }

    /// SIGTERM, and the exit must be clean.
    fn stop(&mut self) {
        assert!(self.process.is_running(), "gateway running");
        let status = self.process.stop().unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "gateway did not exit 0 on SIGTERM ({status:?}); log:\n{}",
            self.process.log_tail()
        );
    }

    /// A sample from `/metrics`, by its full name with labels.
    fn metric(&self, name: &str) -> Option<f64> {
        self.process.metric(name)
    }

    fn db(&self) -> PathBuf {
        ingest::store::db_path(&self.data_dir)
    }

    /// One number from the state database (0 before it exists).
    fn query(&self, sql: &str) -> u64 {
        if !self.db().exists() {
            return 0;
        }
        let conn = rusqlite::Connection::open_with_flags(
            self.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .unwrap_or(0)
    }

    /// Readings of the phase in the hot tier (chunks and head), 0 before it exists.
    fn stored(&self, traffic: &Traffic) -> u64 {
        if !self.db().exists() {
            return 0;
        }
        match ingest::query::Reader::open_read_only(&self.data_dir) {
            Ok(r) => r.reading_count(|d, _| traffic.owns(d)).unwrap(),
            Err(_) => 0,
        }
    }

    fn outbox_entries(&self) -> u64 {
        self.query("SELECT COUNT(*) FROM outbox")
    }
}

// --- checks ---------------------------------------------------------------------

/// Polls until `done(probe())`; panics naming `what` after [`DRAIN_WAIT`].
fn wait_for<T: std::fmt::Debug>(
    what: &str,
    probe: impl FnMut() -> T,
    done: impl FnMut(&T) -> bool,
) -> T {
    tests::wait_until(what, DRAIN_WAIT, probe, done)
}

/// Waits until the phase is in the hot tier and the outbox is empty, then runs
/// `simulators verify` against both landings and asserts no loss, no wrong
/// value and no duplicate.
fn settle_and_verify(
    phase: &str,
    gw: &Gateway,
    store: &VictoriaMetrics,
    traffic: &Traffic,
    manifest: &Manifest,
) {
    wait_for(
        &format!("{phase}: every reading in the hot tier"),
        || gw.stored(traffic),
        |n| *n >= traffic.readings(),
    );
    wait_for(
        &format!("{phase}: an empty outbox"),
        || gw.outbox_entries(),
        |n| *n == 0,
    );
    manifest.save();
    let landings = [
        ("hot tier", "--hot-tier", gw.db().display().to_string()),
        ("VictoriaMetrics", "--victoria", store.url()),
    ];
    for (name, flag, value) in landings {
        // VictoriaMetrics makes freshly registered series searchable a little
        // after it acknowledged the write, even after a forced flush: a
        // verdict of loss there is taken only after it persists for a while.
        let started = Instant::now();
        let (status, text, stderr) = loop {
            store.force_flush().unwrap();
            let out = Command::new(built_binary("simulators"))
                .args(["verify", "--manifest"])
                .arg(&manifest.path)
                .args([flag, &value])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() || flag != "--victoria" || started.elapsed() > VISIBLE_WAIT {
                break (out.status, text, stderr);
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        eprintln!(
            "{phase}, {name} (after {:.1} s):\n{text}",
            started.elapsed().as_secs_f64()
        );
        assert!(
            status.success(),
            "{phase}: simulators verify against the {name} failed ({status}); the gateway \
             forwarded {:?} readings in all:\n{text}\n{stderr}",
            gw.metric("forward_readings_total"),
        );
        assert_eq!(
            verify_row(&text, "readings expected"),
            Some(traffic.readings()),
            "{phase}, {name}: the manifest holds every reading sent"
        );
        assert_eq!(
            verify_row(&text, "LOST"),
            Some(0),
            "{phase}, {name}: lost readings"
        );
        assert_eq!(
            verify_row(&text, "duplicates stored"),
            Some(0),
            "{phase}, {name}: duplicates"
        );
    }
    // The hot tier holds exactly the phase's readings: no more rows than sent.
    assert_eq!(
        gw.stored(traffic),
        traffic.readings(),
        "{phase}: hot-tier rows"
    );
}

/// The leading number of a row of `simulators verify`'s table (`│ LOST │ 0 │`).
fn verify_row(table: &str, key: &str) -> Option<u64> {
    table.lines().find_map(|line| {
        let cells: Vec<&str> = line
            .split(['│', '┆', '|'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        match cells.as_slice() {
            [k, v, ..] if *k == key => v
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok()),
            _ => None,
        }
    })
}

/// A small PRNG for the kill moments (splitmix64): reproducible from the
/// printed seed, no dependency for three numbers.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

// --- the test ---------------------------------------------------------------------

#[test]
fn chaos_200k_readings_lose_nothing_and_store_each_once() {
    let t0 = Instant::now();
    let outage = Duration::from_secs(env_u64("CHAOS_STORE_OUTAGE_S", 60));
    let seed = env_u64("CHAOS_SEED", now_ns() as u64);
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} replays the kill moments)");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start().unwrap();
    let mut store = VictoriaMetrics::start_with(VictoriaMetricsOptions {
        extra_args: vec!["-dedup.minScrapeInterval=1ms".into()],
        ..VictoriaMetricsOptions::default()
    })
    .unwrap();
    let mut gw = Gateway::start(dir.path(), &broker, &store);

    // Phase 1: kill -9 at three random moments of a paced stream (16,000
    // messages at 2,000 per second: about 8 s), restart at once each time.
    let phase = "phase 1 (kill -9 x3)";
    let traffic = Traffic::new("ck", 16_000);
    let rate = 2_000.0;
    let span = traffic.messages as f64 / rate;
    let mut kills: Vec<f64> = (0..3)
        .map(|_| span * (0.05 + 0.9 * rng.next_f64()))
        .collect();
    kills.sort_by(f64::total_cmp);
    let mut manifest = Manifest::new(dir.path().join("phase1.csv"));
    let port = broker.port();
    std::thread::scope(|s| {
        let publisher = s.spawn(|| {
            publish(
                port,
                &traffic,
                0..traffic.messages,
                Some(rate),
                "chaos-pub-1",
                &mut manifest,
            )
        });
        let started = Instant::now();
        for at in &kills {
            let at = Duration::from_secs_f64(*at);
            std::thread::sleep(at.saturating_sub(started.elapsed()));
            let before = gw.stored(&traffic);
            gw.kill();
            eprintln!(
                "{phase}: killed at {:.2} s with {before} readings stored",
                started.elapsed().as_secs_f64()
            );
            gw.start_again(&[]);
        }
        publisher.join().unwrap();
    });
    settle_and_verify(phase, &gw, &store, &traffic, &manifest);

    // Phase 2: a burst the broker queues for the gateway, then a broker restart
    // (graceful: its persistence keeps the queue) while the gateway drains it,
    // then more traffic after the restart.
    let phase = "phase 2 (broker restart)";
    let traffic = Traffic::new("cb", 8_000);
    let mut manifest = Manifest::new(dir.path().join("phase2.csv"));
    publish(
        broker.port(),
        &traffic,
        0..4_000,
        None,
        "chaos-pub-2",
        &mut manifest,
    );
    let before = gw.stored(&traffic);
    broker.stop().unwrap();
    broker.start_again().unwrap();
    eprintln!(
        "{phase}: broker restarted with {before} of {} readings of the first half stored",
        4_000 * READINGS_PER_MESSAGE
    );
    publish(
        broker.port(),
        &traffic,
        4_000..traffic.messages,
        None,
        "chaos-pub-2",
        &mut manifest,
    );
    settle_and_verify(phase, &gw, &store, &traffic, &manifest);

    // Phase 3: the store is down for `outage` while a paced stream arrives;
    // the hot tier keeps taking readings and the outbox holds them.
    let phase = "phase 3 (store outage)";
    let traffic = Traffic::new("cs", 8_000);
    let mut manifest = Manifest::new(dir.path().join("phase3.csv"));
    store.stop().unwrap();
    let down = Instant::now();
    // Spread the stream over most of the outage, at least 1,000 messages per second.
    let rate = (traffic.messages as f64 / (outage.as_secs_f64() * 0.8)).max(1_000.0);
    publish(
        broker.port(),
        &traffic,
        0..traffic.messages,
        Some(rate),
        "chaos-pub-3",
        &mut manifest,
    );
    let waiting = wait_for(
        &format!("{phase}: readings waiting in the outbox"),
        || gw.outbox_entries(),
        |n| *n > 0,
    );
    std::thread::sleep(outage.saturating_sub(down.elapsed()));
    eprintln!(
        "{phase}: store down {:.1} s, {waiting}+ outbox entries, {} readings in the hot tier",
        down.elapsed().as_secs_f64(),
        gw.stored(&traffic)
    );
    store.start_again().unwrap();
    settle_and_verify(phase, &gw, &store, &traffic, &manifest);

    // Phase 4: a small outbox with policy `block` and the store down: the
    // outbox fills, commits are refused and acks stop (the broker keeps the
    // rest), then everything arrives once the store is back.
    let phase = "phase 4 (outbox full, block)";
    gw.stop();
    let config = dir.path().join("small-outbox.toml");
    std::fs::write(
        &config,
        format!("[ingest]\noutbox_max_bytes = {SMALL_OUTBOX_BYTES}\noutbox_policy = \"block\"\n"),
    )
    .unwrap();
    gw.start_again(&["--config".into(), config.display().to_string()]);
    let traffic = Traffic::new("co", 8_000);
    let mut manifest = Manifest::new(dir.path().join("phase4.csv"));
    store.stop().unwrap();
    publish(
        broker.port(),
        &traffic,
        0..traffic.messages,
        None,
        "chaos-pub-4",
        &mut manifest,
    );
    let refused = wait_for(
        &format!("{phase}: commits refused for a full outbox"),
        || gw.metric("gateway_commit_retries_total{reason=\"backpressure\"}"),
        |n| n.is_some_and(|n| n >= 1.0),
    );
    // Blocked: the count stays put while the store is down.
    std::thread::sleep(Duration::from_secs(3));
    let blocked_at = gw.stored(&traffic);
    assert!(
        blocked_at < traffic.readings(),
        "{phase}: {blocked_at} of {} readings stored with the outbox full",
        traffic.readings()
    );
    let outbox_bytes = gw.query("SELECT bytes FROM outbox_stats");
    assert!(
        // Full: within about one batch (up to 1,000 messages, some 450 kB of
        // line protocol) of the limit, and never over it.
        outbox_bytes <= SMALL_OUTBOX_BYTES && outbox_bytes > SMALL_OUTBOX_BYTES / 3,
        "{phase}: outbox at {outbox_bytes} bytes, not filled up to its {SMALL_OUTBOX_BYTES}-byte limit"
    );
    eprintln!(
        "{phase}: blocked with {blocked_at} readings stored, outbox {outbox_bytes} bytes, \
         {refused:?} refused commits"
    );
    store.start_again().unwrap();
    settle_and_verify(phase, &gw, &store, &traffic, &manifest);
    gw.stop();
    eprintln!(
        "chaos: 200,000 readings through 4 phases in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn verify_rows_are_read_from_the_table() {
    let table = "┌───┬───┐\n│ LOST              ┆ 12       │\n│ found ┆ 7 (3 matched by value) │\n";
    assert_eq!(verify_row(table, "LOST"), Some(12));
    assert_eq!(verify_row(table, "found"), Some(7));
    assert_eq!(verify_row(table, "missing"), None);
}

#[test]
fn tasmota_time_is_hanoi_local_time() {
    assert_eq!(iso_seconds(0), "1970-01-01T00:00:00");
    assert_eq!(iso_seconds(1_767_600_000), "2026-01-05T08:00:00");
    let t = Traffic::new("x", 10);
    let m = t.message(3);
    let text = String::from_utf8(m.payload).unwrap();
    assert!(
        text.contains(&iso_seconds(m.ts_ms / 1000 + 7 * 3600)),
        "{text}"
    );
    assert_eq!(m.topic, "tele/x00003/SENSOR");
}

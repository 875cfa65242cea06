//! Firmware in the loop: the real Cortex-M image (`firmware/boards/mps2-an386`, built
//! for `thumbv7em-none-eabihf`) runs under `qemu-system-arm -M mps2-an386`, gets its
//! address by DHCP from QEMU's user network, and publishes with MQTT 5 into a real
//! Mosquitto, consumed by the real `gateway` binary into its SQLite hot tier and a real
//! VictoriaMetrics.
//!
//! - boot, DHCP, connect with last will, birth messages, QoS 1 publishes: every pack
//!   arrives in the hot tier and the store, with the device's sequence numbers, no gaps;
//! - a broker outage: the image keeps sampling into its backlog, reconnects with backoff,
//!   publishes the backlog oldest first; the gaps are exactly what the backlog dropped;
//! - several images at once, each its own device id and user network; one loses power
//!   and its last will marks it offline;
//! - no network at all: the image keeps every pack in its backlog; bad arguments stop it
//!   with exit code 1.
//!
//! Each test builds what it needs first (the image with `cargo build --release` in the
//! board's own workspace, the gateway with `cargo build -p gateway`) and fails with a
//! clear message when QEMU, the thumbv7em target or a server is missing. Every run is
//! bounded (the image stops itself after `run=` seconds, every wait has a deadline) and
//! every child process is killed on drop. The tests run one at a time: each QEMU is a
//! whole emulated board.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use schemas::senml::OwnedValue;
use tests::{ChildGuard, GatewayOptions, GatewayProcess, Mosquitto, VictoriaMetrics};

/// The metrics of the image's simulated sensors: one reading each per pack.
const METRICS: [&str; 6] = [
    "temperature",
    "relativeHumidity",
    "pressure",
    "pm1",
    "pm25",
    "pm10",
];
/// Sensor readings in each pack (a `droppedReadings` report comes on top).
const READINGS_PER_PACK: i64 = METRICS.len() as i64;
/// District the tests give the images.
const DISTRICT: &str = "hoan-kiem";
/// Deadline of any single wait on the pipeline.
const WAIT: Duration = Duration::from_secs(60);

// --- one test at a time -----------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// --- building what runs -------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// A cargo command that ignores the outer build's settings meant for the host.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The board image, built once per test process.
fn image() -> &'static Path {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let board = workspace_root().join("firmware/boards/mps2-an386");
        let out = cargo()
            .args(["build", "--release"])
            .current_dir(&board)
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            return Err(format!(
                "building the mps2-an386 image failed (is the target installed? \
                 `rustup target add thumbv7em-none-eabihf`):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        let elf = board.join("target/thumbv7em-none-eabihf/release/mps2-an386");
        if elf.is_file() {
            Ok(elf)
        } else {
            Err(format!("the image built but {} is missing", elf.display()))
        }
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// The `gateway` binary of this workspace, built once per test process.
fn gateway_bin() -> &'static Path {
    static GATEWAY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = GATEWAY.get_or_init(|| {
        let out = cargo()
            .args([
                "build",
                "-p",
                "gateway",
                "--bin",
                "gateway",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(workspace_root())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the gateway failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "gateway")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .ok_or_else(|| "cargo built the gateway but named no executable".to_owned())
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn qemu_bin() -> PathBuf {
    tests::process::require_binary(
        "qemu-system-arm",
        "/usr/bin/qemu-system-arm",
        "qemu-system-arm",
        "QEMU_SYSTEM_ARM",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

// --- the image under QEMU -----------------------------------------------------------

/// What the image prints when it stops gracefully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StopLine {
    next_seq: i64,
    attempts: i64,
    connects: i64,
    published: i64,
    acked: i64,
    backlog: i64,
    dropped_readings: i64,
}

/// One emulated board, killed on drop; its console (semihosting) goes to a log file.
struct Qemu {
    guard: ChildGuard,
    log: PathBuf,
    device: String,
}

impl Qemu {
    /// Boots the image as `device`, publishing to `broker` every second; `extra` are
    /// more `key=value` board arguments (see the board's `config` module).
    fn start(dir: &Path, broker: &Mosquitto, device: &str, extra: &[String]) -> Self {
        Self::start_with(dir, broker.port(), device, extra, "user,model=lan9118")
    }

    /// Boots the image with QEMU's `-nic` set to `nic` (`none`: a cable unplugged).
    fn start_with(dir: &Path, port: u16, device: &str, extra: &[String], nic: &str) -> Self {
        let mut semihosting = format!(
            "enable=on,target=native,arg=mps2-an386,arg=port={port},arg=device={device},\
             arg=district={DISTRICT},arg=period=1"
        );
        for arg in extra {
            semihosting.push_str(",arg=");
            semihosting.push_str(arg);
        }
        let log = dir.join(format!("{device}.qemu.log"));
        let mut cmd = Command::new(qemu_bin());
        cmd.args(["-M", "mps2-an386", "-nographic", "-monitor", "none"])
            .args(["-serial", "null", "-nic", nic])
            .arg("-kernel")
            .arg(image())
            .args(["-semihosting-config", &semihosting]);
        let guard = ChildGuard::spawn(format!("qemu {device}"), &mut cmd, &log).unwrap();
        Self {
            guard,
            log,
            device: device.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the image to stop itself; panics with its log after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.guard.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "{} still running after {timeout:?}; log:\n{}",
                self.device,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Power cut: SIGKILL, no goodbye.
    fn kill(&mut self) {
        self.guard.kill().unwrap();
    }

    /// The NIC's counters printed at the graceful stop, by name.
    fn nic_line(&self) -> BTreeMap<String, i64> {
        let log = self.log_text();
        let line = log
            .lines()
            .find_map(|l| l.split_once("nic: ").map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("{} printed no nic line; log:\n{log}", self.device));
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .chunks(2)
            .map(|kv| (kv[0].to_owned(), kv[1].parse().unwrap()))
            .collect()
    }

    /// The counters of the graceful stop.
    fn stop_line(&self) -> StopLine {
        let log = self.log_text();
        let line = log
            .lines()
            .find_map(|l| l.split_once("stop: ").map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("{} printed no stop line; log:\n{log}", self.device));
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| -> i64 {
            let i = words
                .iter()
                .position(|w| *w == name)
                .unwrap_or_else(|| panic!("no {name} in stop line {line:?}"));
            words[i + 1].parse().unwrap()
        };
        StopLine {
            next_seq: field("next_seq"),
            attempts: field("attempts"),
            connects: field("connects"),
            published: field("published"),
            acked: field("acked"),
            backlog: field("backlog"),
            dropped_readings: field("dropped_readings"),
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} console ---\n{}---", self.device, self.log_text());
        }
    }
}

// --- the gateway --------------------------------------------------------------------

/// A `gateway run` process (the harness's), killed on drop.
struct Gateway {
    process: GatewayProcess,
    data_dir: PathBuf,
}

/// The gateway's view of one device (its `devices` row).
#[derive(Debug, Clone, Default, PartialEq)]
struct DeviceRow {
    district: Option<String>,
    messages: i64,
    last_seq: Option<i64>,
    gaps: i64,
    duplicates: i64,
    reboots: i64,
    dropped_readings: i64,
    status: Option<String>,
    meta_json: Option<String>,
}

impl Gateway {
    fn start(dir: &Path, broker: &Mosquitto, store: &VictoriaMetrics) -> Self {
        let data_dir = dir.join("gateway-data");
        let mut opts = GatewayOptions::new(broker, "gateway-qemu", &data_dir);
        opts.store = Some(store.url());
        opts.log = Some(dir.join("gateway.log"));
        opts.ready_timeout = WAIT;
        let process = GatewayProcess::start(gateway_bin(), &opts).unwrap_or_else(|e| panic!("{e}"));
        Self { process, data_dir }
    }

    fn db(&self) -> Option<rusqlite::Connection> {
        let path = ingest::store::db_path(&self.data_dir);
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        conn.busy_timeout(Duration::from_secs(10)).ok()?;
        Some(conn)
    }

    fn device(&self, device: &str) -> Option<DeviceRow> {
        self.db()?
            .query_row(
                "SELECT district, messages, last_seq, gaps, duplicates, reboots, \
                 dropped_readings, status, meta_json FROM devices WHERE device = ?1",
                [device],
                |r| {
                    Ok(DeviceRow {
                        district: r.get(0)?,
                        messages: r.get(1)?,
                        last_seq: r.get(2)?,
                        gaps: r.get(3)?,
                        duplicates: r.get(4)?,
                        reboots: r.get(5)?,
                        dropped_readings: r.get(6)?,
                        status: r.get(7)?,
                        meta_json: r.get(8)?,
                    })
                },
            )
            .ok()
    }

    /// Waits until the device's row satisfies `done`.
    fn wait_device(
        &self,
        device: &str,
        what: &str,
        done: impl Fn(&DeviceRow) -> bool,
    ) -> DeviceRow {
        let started = Instant::now();
        loop {
            let row = self.device(device);
            if let Some(row) = row.as_ref().filter(|r| done(r)) {
                return row.clone();
            }
            assert!(
                started.elapsed() < WAIT,
                "timed out waiting for {device}: {what}; last row: {row:?}; gateway log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Hot-tier values of one metric of one device, in time order.
    fn values(&self, device: &str, metric: &str) -> Vec<(i64, f64)> {
        let Ok(r) = ingest::query::Reader::open_read_only(&self.data_dir) else {
            return Vec::new();
        };
        let hot = r.hot().unwrap();
        match hot.find(device, metric).unwrap() {
            Some(row) => hot.points(row.id, i64::MIN, i64::MAX).unwrap(),
            None => Vec::new(),
        }
    }

    fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

// --- watching the broker ------------------------------------------------------------

/// A message seen on the broker.
#[derive(Debug, Clone)]
struct Seen {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// Records everything published under `city/#` from the moment it is subscribed.
struct Watcher {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(broker: &Mosquitto, client_id: &str) -> Self {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{Client, Event, MqttOptions};

        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        let opts = MqttOptions::new(client_id, broker.host(), broker.port());
        let (client, mut conn) = Client::new(opts, 64);
        client.subscribe("city/#", QoS::AtLeastOnce).unwrap();
        let thread = {
            let (seen, stop, subscribed) = (seen.clone(), stop.clone(), subscribed.clone());
            std::thread::spawn(move || {
                let _client = client; // keeps the request channel open
                while !stop.load(Ordering::Relaxed) {
                    match conn.recv_timeout(Duration::from_millis(100)) {
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            subscribed.store(true, Ordering::Relaxed)
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            seen.lock().unwrap().push(Seen {
                                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            })
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        // The broker went away (outage test): retry after a pause.
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
            })
        };
        let started = Instant::now();
        while !subscribed.load(Ordering::Relaxed) {
            assert!(started.elapsed() < WAIT, "watcher never subscribed");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The retained messages under `city/#`, as a late subscriber gets them.
fn retained(broker: &Mosquitto) -> BTreeMap<String, Vec<u8>> {
    let watcher = Watcher::start(broker, "qemu-test-retained");
    std::thread::sleep(Duration::from_secs(1));
    watcher
        .seen()
        .into_iter()
        .filter(|m| m.retain)
        .map(|m| (m.topic, m.payload))
        .collect()
}

fn topic(device: &str, channel: &str) -> String {
    format!("city/{DISTRICT}/airquality/{device}/{channel}")
}

/// One `up` pack: its sequence number and its values by metric name.
#[derive(Debug, Clone, PartialEq)]
struct Pack {
    seq: u32,
    values: BTreeMap<String, f64>,
}

fn decode_pack(payload: &[u8]) -> Pack {
    let pack = schemas::senml::decode_any(payload).unwrap();
    let mut seq = None;
    let mut values = BTreeMap::new();
    for r in &pack.records {
        seq = seq.or(r.seq);
        if let (Some(name), Some(OwnedValue::Float(v))) = (&r.name, &r.value) {
            values.insert(name.clone(), *v);
        }
    }
    Pack {
        seq: seq.expect("every pack of the firmware carries its seq"),
        values,
    }
}

/// The `up` packs of `device` the watcher saw, in arrival order.
fn packs(seen: &[Seen], device: &str) -> Vec<Pack> {
    let up = topic(device, "up");
    seen.iter()
        .filter(|m| m.topic == up)
        .map(|m| decode_pack(&m.payload))
        .collect()
}

/// Points per series of `metric` for `device` in VictoriaMetrics, once it holds `n`.
fn store_points(store: &VictoriaMetrics, metric: &str, device: &str, n: usize) -> Vec<(i64, f64)> {
    let selector = format!(r#"{metric}_value{{device="{device}"}}"#);
    let series = store
        .wait_for_export(&selector, WAIT, |s| {
            s.len() == 1 && s[0].points().len() >= n
        })
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    assert_eq!(series[0].label("district"), Some(DISTRICT));
    assert_eq!(series[0].label("kind"), Some("airquality"));
    series[0].points()
}

/// Waits until the gateway has everything the image sent before its graceful stop (and
/// the `offline` status that follows it), and returns the row with the number of packs
/// that reached the broker: every pack the image had acknowledged or dropped, plus
/// possibly the one it was sending at the instant of the stop (on the wire, its PUBACK
/// not awaited, still in the backlog).
fn wait_final(gateway: &Gateway, device: &str, stop: &StopLine) -> (DeviceRow, i64) {
    let settled = stop.next_seq - stop.backlog;
    let row = gateway.wait_device(
        device,
        &format!("the packs before the stop and `offline` ({stop:?})"),
        |r| r.last_seq.is_some_and(|s| s + 1 >= settled) && r.status.as_deref() == Some("offline"),
    );
    eprintln!("{device}: {stop:?}\n{device}: {row:?}");
    let delivered = row.last_seq.unwrap() + 1;
    assert!(
        delivered == settled || (delivered == settled + 1 && stop.backlog == 1),
        "the gateway's last sequence number fits the image's counters: {stop:?} {row:?}"
    );
    (row, delivered)
}

// --- the tests ----------------------------------------------------------------------

/// Fails fast, before any server starts, when QEMU, the image or the gateway cannot be
/// had; builds the image and the gateway on first use.
fn prerequisites() {
    qemu_bin();
    image();
    gateway_bin();
}

#[test]
fn image_boots_gets_dhcp_and_its_readings_reach_hot_tier_and_store() {
    let _serial = serial();
    prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();
    let gateway = Gateway::start(dir.path(), &broker, &store);
    let watcher = Watcher::start(&broker, "qemu-test-watcher");
    let device = "qemu-aq-0001";

    let mut qemu = Qemu::start(dir.path(), &broker, device, &["run=12".into()]);
    let status = qemu.wait_exit(WAIT);
    assert!(
        status.success(),
        "the image exits 0 after a graceful stop, got {status}"
    );
    let console = qemu.log_text();
    assert!(
        console.contains("dhcp: address 10.0.2.15"),
        "QEMU's DHCP server leases the guest address; console:\n{console}"
    );
    let stop = qemu.stop_line();
    assert_eq!(stop.connects, 1, "one session for the whole run: {stop:?}");
    assert!(
        stop.acked >= 8,
        "about one pack a second for 12 s: {stop:?}"
    );
    assert_eq!(stop.dropped_readings, 0, "{stop:?}");
    assert_eq!(stop.acked, stop.next_seq - stop.backlog, "{stop:?}");
    // The LAN9118 driver under real traffic: frames both ways, none refused or lost.
    let nic = qemu.nic_line();
    assert!(nic["rx_frames"] > 0 && nic["tx_frames"] > 0, "{nic:?}");
    for counter in [
        "rx_errors",
        "rx_too_large",
        "rx_dumped",
        "tx_errors",
        "tx_failed",
    ] {
        assert_eq!(nic[counter], 0, "{counter}: {nic:?}");
    }

    // Birth and goodbye: `online` before the first pack, retained `offline` and `meta`.
    let (row, delivered) = wait_final(&gateway, device, &stop);
    let seen = watcher.seen();
    let status_topic = topic(device, "status");
    let first_status = seen.iter().position(|m| m.topic == status_topic);
    let first_up = seen.iter().position(|m| m.topic == topic(device, "up"));
    assert!(
        first_status.is_some() && first_status < first_up,
        "status before the first pack"
    );
    assert_eq!(seen[first_status.unwrap()].payload, b"online");
    let kept = retained(&broker);
    assert_eq!(
        kept.get(&status_topic).map(Vec::as_slice),
        Some(&b"offline"[..])
    );
    let meta = kept
        .get(&topic(device, "meta"))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .expect("meta is retained");
    assert!(
        meta.contains("sim-particulates"),
        "meta names the sensors: {meta}"
    );

    // Every pack, in order, with the device's sequence numbers.
    let packs = packs(&seen, device);
    let seqs: Vec<u32> = packs.iter().map(|p| p.seq).collect();
    let expected: Vec<u32> = (0..delivered as u32).collect();
    assert_eq!(seqs, expected, "QoS 1 packs in order, no gaps, no repeats");
    assert!(
        packs
            .iter()
            .all(|p| METRICS.iter().all(|m| p.values.contains_key(*m)))
    );

    // The gateway saw the same: no gaps, nothing dropped, nothing twice.
    assert_eq!(row.messages, delivered, "{row:?}");
    assert_eq!(
        (row.gaps, row.duplicates, row.reboots),
        (0, 0, 0),
        "{row:?}"
    );
    assert_eq!(row.dropped_readings, 0, "{row:?}");
    assert_eq!(row.district.as_deref(), Some(DISTRICT));
    assert!(row.meta_json.is_some(), "{row:?}");

    // Hot tier and store hold each pack's value of each metric, the same values.
    for metric in METRICS {
        let hot: Vec<f64> = gateway.values(device, metric).iter().map(|p| p.1).collect();
        let sent: Vec<f64> = packs.iter().map(|p| p.values[metric]).collect();
        assert_eq!(hot, sent, "{metric}: hot tier = what the image published");
        let stored: Vec<f64> = store_points(&store, metric, device, sent.len())
            .iter()
            .map(|p| p.1)
            .collect();
        // VictoriaMetrics keeps about 12 significant digits.
        assert!(
            stored.len() == sent.len()
                && stored
                    .iter()
                    .zip(&sent)
                    .all(|(a, b)| (a - b).abs() <= 1e-9 * b.abs()),
            "{metric}: VictoriaMetrics = what the image published\n{stored:?}\n{sent:?}"
        );
    }
}

#[test]
fn broker_outage_fills_the_backlog_and_it_drains_oldest_first() {
    let _serial = serial();
    prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();
    let gateway = Gateway::start(dir.path(), &broker, &store);
    let device = "qemu-aq-0002";

    // 16-pack backlog, a pack a second: a 25 s outage overflows it.
    let mut qemu = Qemu::start(
        dir.path(),
        &broker,
        device,
        &["run=50".into(), "keepalive=5".into()],
    );
    let before = gateway.wait_device(device, "a few packs before the outage", |r| r.messages >= 4);
    broker.stop().unwrap();
    std::thread::sleep(Duration::from_secs(25));
    broker.start_again().unwrap();

    let status = qemu.wait_exit(Duration::from_secs(120));
    assert!(
        status.success(),
        "the image exits 0 after a graceful stop, got {status}"
    );
    let stop = qemu.stop_line();
    assert!(
        stop.dropped_readings > 0,
        "a 25 s outage overflows a 16-pack backlog: {stop:?}"
    );
    assert_eq!(stop.dropped_readings % READINGS_PER_PACK, 0, "{stop:?}");
    assert!(stop.connects >= 2, "the image reconnected: {stop:?}");
    assert!(
        stop.attempts > stop.connects,
        "refused attempts during the outage, retried with backoff: {stop:?}"
    );
    // At most the pack closed in the instant of the stop is still waiting.
    assert!(
        stop.backlog <= 1,
        "the backlog drained before the stop: {stop:?}"
    );
    let (row, sent) = wait_final(&gateway, device, &stop);
    assert!(before.messages >= 4);
    // Exactly the packs the backlog dropped are missing, and the device said so.
    assert_eq!(row.dropped_readings, stop.dropped_readings, "{row:?}");
    assert_eq!(
        row.gaps * READINGS_PER_PACK,
        stop.dropped_readings,
        "{row:?} {stop:?}"
    );
    // Oldest first: an older pack after a newer one would count as a reboot.
    assert_eq!(row.reboots, 0, "{row:?}");
    let received = row.messages - row.duplicates;
    assert_eq!(received + row.gaps, sent, "{row:?} {stop:?}");
    for metric in METRICS {
        let hot = gateway.values(device, metric);
        assert_eq!(
            hot.len() as i64,
            received,
            "{metric}: one reading per pack received"
        );
        let stored = store_points(&store, metric, device, hot.len());
        assert_eq!(
            stored.len(),
            hot.len(),
            "{metric}: the store has what the hot tier has"
        );
    }
}

#[test]
fn several_images_at_once_and_a_power_cut_raises_the_last_will() {
    let _serial = serial();
    prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();
    let gateway = Gateway::start(dir.path(), &broker, &store);
    let watcher = Watcher::start(&broker, "qemu-test-fleet-watcher");

    let devices = ["qemu-fleet-1", "qemu-fleet-2", "qemu-fleet-3"];
    let mut boards: Vec<Qemu> = devices
        .iter()
        .map(|d| {
            Qemu::start(
                dir.path(),
                &broker,
                d,
                &["run=15".into(), "keepalive=3".into()],
            )
        })
        .collect();

    // The third board loses power once it has published a few packs.
    let cut = devices[2];
    gateway.wait_device(cut, "a few packs before the power cut", |r| r.messages >= 3);
    boards[2].kill();
    // Nobody says goodbye for it: only the broker's last will can mark it offline.
    let row = gateway.wait_device(cut, "the last will", |r| {
        r.status.as_deref() == Some("offline")
    });
    assert!(
        !boards[2].log_text().contains("stop:"),
        "the cut board never stopped gracefully"
    );
    assert_eq!((row.gaps, row.reboots), (0, 0), "{row:?}");

    for (board, device) in boards.iter_mut().zip(devices).take(2) {
        let status = board.wait_exit(WAIT);
        assert!(status.success(), "{device} exits 0, got {status}");
        // The same address on every board: each QEMU is its own user network.
        assert!(
            board.log_text().contains("dhcp: address 10.0.2.15/24"),
            "{device}"
        );
        let stop = board.stop_line();
        let (row, delivered) = wait_final(&gateway, device, &stop);
        assert_eq!(row.messages, delivered, "{device}: {row:?}");
        assert_eq!(
            (row.gaps, row.duplicates, row.reboots),
            (0, 0, 0),
            "{device}: {row:?}"
        );
        for metric in METRICS {
            assert_eq!(
                gateway.values(device, metric).len() as i64,
                delivered,
                "{device} {metric}"
            );
        }
        store_points(&store, "pm25", device, delivered as usize);
    }

    // Each board published under its own id, with its own sequence from 0, and its own
    // readings (the simulated values are seeded by the device id).
    let seen = watcher.seen();
    let firsts: Vec<Pack> = devices
        .iter()
        .map(|d| {
            let packs = packs(&seen, d);
            let seqs: Vec<u32> = packs.iter().map(|p| p.seq).collect();
            assert_eq!(
                seqs,
                (0..seqs.len() as u32).collect::<Vec<_>>(),
                "{d}: its own sequence"
            );
            packs[0].clone()
        })
        .collect();
    assert_ne!(firsts[0].values, firsts[1].values);
    assert_ne!(firsts[1].values, firsts[2].values);
    let kept = retained(&broker);
    for d in devices {
        assert_eq!(
            kept.get(&topic(d, "status")).map(Vec::as_slice),
            Some(&b"offline"[..]),
            "{d}"
        );
    }
}

#[test]
fn without_a_network_the_image_keeps_sampling_into_its_backlog() {
    let _serial = serial();
    qemu_bin();
    image();
    let dir = tempfile::tempdir().unwrap();
    let device = "qemu-aq-unplugged";
    // No backend behind the LAN9118: no DHCP answer, no broker.
    let mut qemu = Qemu::start_with(dir.path(), 1883, device, &["run=6".into()], "none");
    let status = qemu.wait_exit(WAIT);
    assert!(status.success(), "a graceful stop exits 0, got {status}");
    let stop = qemu.stop_line();
    assert_eq!(stop.connects, 0, "{stop:?}");
    assert!(
        stop.next_seq >= 5,
        "a pack a second while offline: {stop:?}"
    );
    assert_eq!(stop.backlog, stop.next_seq, "every pack kept: {stop:?}");
    assert_eq!((stop.published, stop.dropped_readings), (0, 0), "{stop:?}");
    assert!(!qemu.log_text().contains("dhcp: address"));
}

#[test]
fn bad_arguments_stop_the_image_with_exit_code_1() {
    let _serial = serial();
    qemu_bin();
    image();
    let dir = tempfile::tempdir().unwrap();
    let mut qemu = Qemu::start_with(
        dir.path(),
        1883,
        "qemu-aq-bad-args",
        &["colour=blue".into()],
        "none",
    );
    let status = qemu.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "{status}");
    let console = qemu.log_text();
    assert!(
        console.contains(r#"UnknownKey("colour")"#),
        "the console names the bad key: {console}"
    );
}

//! Helpers of the gateway's process-level tests, over the harness's
//! (`tests` crate): the real `gateway` binary as a child process
//! ([`tests::GatewayProcess`]) with HTTP probes of its `/health` and
//! `/metrics`, bursts of QoS 1 messages into a real broker ([`tests::publish`]),
//! and, gateway-specific, reads of its SQLite state and the bench loads.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use gateway::bench::{Load, LoadFormat};
use tests::{GatewayProcess, Mosquitto};

/// The service tests start servers and a gateway each; on a 2-core machine
/// they run one at a time so that each stays within its time bounds.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the serial lock for one test (a failed test does not poison it).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The binary under test.
pub fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gateway")
}

#[allow(unused_imports)] // not every suite uses both
pub use tests::{GatewayOptions, http_get};

/// A running `gateway run` process (the harness's [`tests::GatewayProcess`] of
/// this package's binary), killed on drop; its log is printed when a test fails.
pub struct Gateway {
    process: GatewayProcess,
    pub http_port: u16,
    pub data_dir: PathBuf,
}

impl Gateway {
    /// Spawns the gateway and waits until `/health/ready` answers 200
    /// (connected, subscribed, SQLite open).
    pub fn start(opts: &GatewayOptions) -> Self {
        let process =
            GatewayProcess::start(Path::new(gateway_bin()), opts).unwrap_or_else(|e| panic!("{e}"));
        Self {
            http_port: process.http_port(),
            data_dir: process.data_dir().to_owned(),
            process,
        }
    }

    /// Polls `/health/ready` until 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        self.process
            .wait_ready(timeout)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `GET path` on the gateway's HTTP port: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.process.get(path)
    }

    /// The value of a counter or gauge, from `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.process.metric(name)
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.process.stop().unwrap()
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        self.process.kill().unwrap();
    }

    /// Starts the same command again (same client id and data dir).
    pub fn restart(&mut self) {
        // A run still going is replaced, as dropping it would.
        self.process.kill().unwrap();
        self.process.start_again().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}

/// Readings in the hot tier (chunks and head, read as `gateway query --data-dir` reads).
pub fn reading_count(data_dir: &Path) -> u64 {
    readings_where(data_dir, |_, _| true)
}

/// Readings in the hot tier of the series `keep` accepts, by device and metric (0 when
/// the state database is not there yet).
pub fn readings_where(data_dir: &Path, keep: impl Fn(&str, &str) -> bool) -> u64 {
    if !ingest::store::db_path(data_dir).exists() {
        return 0;
    }
    match ingest::query::Reader::open_read_only(data_dir) {
        Ok(r) => r.reading_count(keep).unwrap(),
        // Created but not yet migrated by the starting gateway.
        Err(_) => 0,
    }
}

/// Devices with readings in the hot tier.
pub fn devices_with_readings(data_dir: &Path) -> usize {
    let r = ingest::query::Reader::open_read_only(data_dir).unwrap();
    let mut devices: Vec<String> = r
        .hot()
        .unwrap()
        .series_rows()
        .unwrap()
        .into_iter()
        .map(|s| s.device)
        .collect();
    devices.dedup();
    devices
        .into_iter()
        .filter(|d| r.reading_count(|dev, _| dev == d).unwrap() > 0)
        .count()
}

/// A single-number query on the state database (0 when it is not there yet).
pub fn query_u64(data_dir: &Path, sql: &str) -> u64 {
    let path = ingest::store::db_path(data_dir);
    if !path.exists() {
        return 0;
    }
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(sql, [], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
}

/// Polls until a condition holds (the harness's helper, shared with the other suites).
pub use tests::wait_until;

/// Publishes messages `range` of `load` with QoS 1 (all acknowledged by the
/// broker when this returns).
pub fn publish(broker: &Mosquitto, load: &Load, range: std::ops::Range<u64>, client_id: &str) {
    publish_to(broker.host(), broker.port(), load, range, client_id);
}

/// [`publish`] to any broker.
pub fn publish_to(
    host: &str,
    port: u16,
    load: &Load,
    range: std::ops::Range<u64>,
    client_id: &str,
) {
    tests::publish(host, port, range.map(|i| load.message(i)), client_id).unwrap();
}

/// Publishes raw messages with QoS 1.
pub fn publish_raw(broker: &Mosquitto, messages: &[(String, Vec<u8>)]) {
    tests::publish(
        broker.host(),
        broker.port(),
        messages.iter().cloned(),
        "raw-publisher",
    )
    .unwrap();
}

/// A Tasmota load.
pub fn tasmota(messages: u64, devices: u32, prefix: &str) -> Load {
    Load::new(LoadFormat::Tasmota, messages, devices, prefix)
}

/// A SenML-CBOR load.
pub fn senml(messages: u64, devices: u32, prefix: &str) -> Load {
    Load::new(LoadFormat::Senml, messages, devices, prefix)
}

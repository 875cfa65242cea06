//! Helpers of the gateway's process-level tests: the real `gateway` binary as
//! a child process, HTTP probes of its `/health` and `/metrics`, reads of its
//! SQLite state, and bursts of QoS 1 messages into a real broker.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gateway::bench::{Load, LoadFormat};
use tests::{ChildGuard, Mosquitto};

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

/// A running `gateway run` process, killed on drop; its log is printed
/// when a test fails.
pub struct Gateway {
    child: ChildGuard,
    pub http_port: u16,
    pub data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
}

/// Options for [`Gateway::start`].
#[derive(Clone)]
pub struct GatewayOptions {
    pub mqtt_url: Option<String>,
    pub client_id: String,
    pub data_dir: PathBuf,
    pub store: Option<String>,
    pub share_group: Option<String>,
    pub extra: Vec<String>,
}

impl GatewayOptions {
    pub fn new(broker: &Mosquitto, client_id: &str, data_dir: &Path) -> Self {
        Self {
            mqtt_url: Some(broker.url()),
            client_id: client_id.into(),
            data_dir: data_dir.into(),
            store: None,
            share_group: None,
            extra: Vec::new(),
        }
    }
}

impl Gateway {
    /// Spawns the gateway and waits until `/health/ready` answers 200
    /// (connected, subscribed, SQLite open).
    pub fn start(opts: &GatewayOptions) -> Self {
        let http_port = tests::free_port().unwrap();
        let mut args = vec!["run".to_owned()];
        if let Some(url) = &opts.mqtt_url {
            args.extend(["--mqtt".into(), url.clone()]);
        }
        args.extend([
            "--client-id".into(),
            opts.client_id.clone(),
            "--data-dir".into(),
            opts.data_dir.display().to_string(),
            "--http".into(),
            format!("127.0.0.1:{http_port}"),
        ]);
        if let Some(store) = &opts.store {
            args.extend(["--store".into(), store.clone()]);
        }
        if let Some(group) = &opts.share_group {
            args.extend(["--share-group".into(), group.clone()]);
        }
        args.extend(opts.extra.iter().cloned());
        let log = opts
            .data_dir
            .with_file_name(format!("{}.log", opts.client_id));
        let mut cmd = Command::new(gateway_bin());
        cmd.args(&args).env("RUST_LOG", "info");
        let child = ChildGuard::spawn("gateway", &mut cmd, &log).unwrap();
        let mut g = Self {
            child,
            http_port,
            data_dir: opts.data_dir.clone(),
            log,
            args,
        };
        g.wait_ready(Duration::from_secs(30));
        g
    }

    /// Polls `/health/ready` until 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited early ({status}); log:\n{}", self.log_tail());
            }
            if matches!(self.get("/health/ready"), Some((200, _))) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "gateway not ready after {timeout:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the gateway's HTTP port: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path)
    }

    /// The value of a counter or gauge without labels, from `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok())?
        })
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.child.terminate(Duration::from_secs(30)).unwrap()
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
    }

    /// Starts the same command again (same client id and data dir).
    pub fn restart(&mut self) {
        let mut cmd = Command::new(gateway_bin());
        cmd.args(&self.args).env("RUST_LOG", "info");
        self.child = ChildGuard::spawn("gateway", &mut cmd, &self.log).unwrap();
        self.wait_ready(Duration::from_secs(30));
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log {} ---\n{}\n---",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// A minimal HTTP/1.0 GET on loopback.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(gateway::bench::publish_range(
        host, port, client_id, load, range,
    ))
    .unwrap();
}

/// Publishes raw messages with QoS 1.
pub fn publish_raw(broker: &Mosquitto, messages: &[(String, Vec<u8>)]) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = MqttOptions::new("raw-publisher", broker.host(), broker.port());
        o.set_max_packet_size(Some(4 * 1024 * 1024));
        let (client, mut events) = AsyncClient::new(o, 100);
        // The event loop runs beside the publishing, or the request channel fills.
        let total = messages.len();
        let poller = tokio::spawn(async move {
            let mut acked = 0;
            while acked < total {
                if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
                    acked += 1;
                }
            }
        });
        for (t, p) in messages {
            client
                .publish(t.clone(), QoS::AtLeastOnce, false, p.clone())
                .await
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(120), poller)
            .await
            .expect("every raw message acknowledged by the broker")
            .unwrap();
    });
}

/// A Tasmota load.
pub fn tasmota(messages: u64, devices: u32, prefix: &str) -> Load {
    Load::new(LoadFormat::Tasmota, messages, devices, prefix)
}

/// A SenML-CBOR load.
pub fn senml(messages: u64, devices: u32, prefix: &str) -> Load {
    Load::new(LoadFormat::Senml, messages, devices, prefix)
}

//! The `gateway` binary under test as a child process: `gateway run` with the
//! arguments a test needs, a wait for `/health/ready`, HTTP probes of its
//! `/health` and `/metrics`, stop (SIGTERM), kill (SIGKILL), start again with
//! the same client id and data dir, and its log.
//!
//! The binary's path comes from the caller: `env!("CARGO_BIN_EXE_gateway")`
//! exists only inside the gateway package; other suites find or build it
//! themselves.
//!
//! ```no_run
//! # fn bin() -> &'static std::path::Path { std::path::Path::new("gateway") }
//! let broker = tests::Mosquitto::start()?;
//! let dir = tempfile::tempdir().unwrap();
//! let opts = tests::GatewayOptions::new(&broker, "gw-1", &dir.path().join("data"));
//! let mut gw = tests::GatewayProcess::start(bin(), &opts)?;
//! assert_eq!(gw.get("/health/ready").map(|(status, _)| status), Some(200));
//! gw.stop()?;
//! # Ok::<(), tests::HarnessError>(())
//! ```

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::mosquitto::Mosquitto;
use crate::process::{ChildGuard, Restartable, log_tail};

const NAME: &str = "gateway";
/// Log lines a failure message quotes.
const LOG_LINES: usize = 60;

/// How to run `gateway run`.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `--mqtt`: the broker URL; `None` for none (e.g. `--embedded-broker` in `extra`).
    pub mqtt_url: Option<String>,
    /// `--client-id`: also the MQTT persistent session, kept across restarts.
    pub client_id: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--store`: the time-series store URL. Default: none.
    pub store: Option<String>,
    /// `--share-group`. Default: none.
    pub share_group: Option<String>,
    /// Further arguments (e.g. `--config FILE`). Default: none.
    pub extra: Vec<String>,
    /// The log file (stdout and stderr of every run, appended). Default:
    /// `<client_id>.log` next to the data dir.
    pub log: Option<PathBuf>,
    /// Bound on the wait for `/health/ready`. Default: 30 s.
    pub ready_timeout: Duration,
    /// How long a graceful stop may take before SIGKILL. Default: 30 s.
    pub stop_grace: Duration,
}

impl GatewayOptions {
    /// A gateway on `broker` with client id `client_id` and its state in `data_dir`.
    pub fn new(broker: &Mosquitto, client_id: &str, data_dir: &Path) -> Self {
        let mut opts = Self::without_broker(client_id, data_dir);
        opts.mqtt_url = Some(broker.url());
        opts
    }

    /// A gateway without `--mqtt` (its broker comes from `extra` or a config file).
    pub fn without_broker(client_id: &str, data_dir: &Path) -> Self {
        Self {
            mqtt_url: None,
            client_id: client_id.into(),
            data_dir: data_dir.into(),
            store: None,
            share_group: None,
            extra: Vec::new(),
            log: None,
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(30),
        }
    }

    /// The `gateway run ...` arguments, with the HTTP server on `http_port`.
    pub fn args(&self, http_port: u16) -> Vec<String> {
        let mut args = vec!["run".to_owned()];
        if let Some(url) = &self.mqtt_url {
            args.extend(["--mqtt".into(), url.clone()]);
        }
        args.extend([
            "--client-id".into(),
            self.client_id.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--http".into(),
            format!("127.0.0.1:{http_port}"),
        ]);
        if let Some(store) = &self.store {
            args.extend(["--store".into(), store.clone()]);
        }
        if let Some(group) = &self.share_group {
            args.extend(["--share-group".into(), group.clone()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    fn log_path(&self) -> PathBuf {
        self.log.clone().unwrap_or_else(|| {
            self.data_dir
                .with_file_name(format!("{}.log", self.client_id))
        })
    }
}

/// A running (or stopped, restartable) `gateway run`, killed on drop; its log
/// tail is printed when the test panics.
#[derive(Debug)]
pub struct GatewayProcess {
    server: Restartable,
    bin: PathBuf,
    args: Vec<String>,
    http_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    ready_timeout: Duration,
}

impl GatewayProcess {
    /// Spawns `bin run ...` on a free HTTP port and waits until `/health/ready`
    /// answers 200 (connected, subscribed, SQLite open).
    pub fn start(bin: &Path, opts: &GatewayOptions) -> Result<Self> {
        let http_port = crate::net::free_port()?;
        let mut gw = Self {
            server: Restartable::new(NAME, opts.stop_grace),
            bin: bin.to_owned(),
            args: opts.args(http_port),
            http_port,
            data_dir: opts.data_dir.clone(),
            log: opts.log_path(),
            ready_timeout: opts.ready_timeout,
        };
        gw.spawn(&[])?;
        Ok(gw)
    }

    /// The HTTP port on 127.0.0.1.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Polls `/health/ready` until 200, failing with the log tail when the process
    /// exits or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.server.child_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(HarnessError::ExitedEarly {
                    name: NAME,
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                });
            }
            let last = self.get("/health/ready");
            if matches!(last, Some((200, _))) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(HarnessError::NotReady {
                    name: NAME,
                    waited: started.elapsed(),
                    detail: format!("GET /health/ready: {last:?}"),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the gateway's HTTP port: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path)
    }

    /// A sample from `/metrics` by its full name (with labels, if any).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        metric_value(&body, name)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// SIGTERM and wait (up to the stop grace) for the exit status; `None` if it
    /// had to be killed or was not running.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        self.server.stop()
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) -> Result<()> {
        self.server.kill()
    }

    /// Starts the same command again (same client id, data dir and HTTP port)
    /// after [`GatewayProcess::stop`] or [`GatewayProcess::kill`], and waits until
    /// it is ready.
    pub fn start_again(&mut self) -> Result<()> {
        self.start_again_with(&[])
    }

    /// [`GatewayProcess::start_again`] with `extra` arguments for this run only.
    pub fn start_again_with(&mut self, extra: &[String]) -> Result<()> {
        self.server.check_stopped()?;
        self.spawn(extra)
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_LINES)
    }

    /// The whole log (every run).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self, extra: &[String]) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).args(extra).env("RUST_LOG", "info");
        let child = ChildGuard::spawn(NAME, &mut cmd, &self.log)?;
        self.server.running(child);
        self.wait_ready(self.ready_timeout)
    }
}

impl Drop for GatewayProcess {
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

/// A minimal HTTP/1.0 GET on loopback: (status, body).
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

/// A sample of a Prometheus text exposition by its full name (with labels, if any).
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_every_option_given() {
        let mut opts = GatewayOptions::without_broker("gw", Path::new("/d/data"));
        assert_eq!(
            opts.args(8080),
            [
                "run",
                "--client-id",
                "gw",
                "--data-dir",
                "/d/data",
                "--http",
                "127.0.0.1:8080"
            ]
        );
        assert_eq!(opts.log_path(), Path::new("/d/gw.log"));
        opts.mqtt_url = Some("mqtt://127.0.0.1:1".into());
        opts.store = Some("http://127.0.0.1:2".into());
        opts.share_group = Some("city".into());
        opts.extra = vec!["--config".into(), "c.toml".into()];
        let args = opts.args(1).join(" ");
        assert_eq!(
            args,
            "run --mqtt mqtt://127.0.0.1:1 --client-id gw --data-dir /d/data --http 127.0.0.1:1 \
             --store http://127.0.0.1:2 --share-group city --config c.toml"
        );
    }

    #[test]
    fn reads_samples_by_full_name() {
        let body = "# TYPE a counter\na 3\nb{reason=\"x\"} 1.5\nab 7\n";
        assert_eq!(metric_value(body, "a"), Some(3.0));
        assert_eq!(metric_value(body, "b{reason=\"x\"}"), Some(1.5));
        assert_eq!(metric_value(body, "b"), None);
    }
}

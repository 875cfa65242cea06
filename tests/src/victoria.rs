//! A real single-node VictoriaMetrics for one test: its own temp storage dir,
//! its own free loopback HTTP port, killed on drop; plus typed reads of what
//! it stored, through its export API.
//!
//! # How line protocol becomes series
//!
//! VictoriaMetrics accepts the InfluxDB v2 write API (`POST /api/v2/write`,
//! what the `influxdb2` crate calls) and maps each line
//! `measurement,tag1=a,tag2=b field1=1.5,field2=7i 1700000000000000000` to one
//! series per field, named `{measurement}_{field}` with the tags as labels:
//!
//! ```text
//! pm25,device=aq-0001,district=hoan-kiem value=12.5 1700000000000000000
//!   => pm25_value{device="aq-0001",district="hoan-kiem"} 12.5 @ 1700000000000 (ms)
//! ```
//!
//! Observed with the Debian package (1.79): the `bucket` and `org` query
//! parameters add no label; timestamps are kept at millisecond precision
//! (nanoseconds are truncated); integer fields (`7i`) and booleans (`true` = 1)
//! become floats; string fields are not stored as values (they read back as
//! 0), so strings belong in tags. A selector for the example above is
//! `pm25_value{device="aq-0001"}`.
//!
//! New points become visible to queries only after VictoriaMetrics flushes
//! its in-memory buffers: call [`VictoriaMetrics::force_flush`] before
//! [`VictoriaMetrics::export`], or use [`VictoriaMetrics::wait_for_export`],
//! which does both until a condition holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tempfile::TempDir;

use crate::error::{HarnessError, Result};
use crate::net::free_port;
use crate::process::{
    ChildGuard, LOG_TAIL_LINES, POLL, Restartable, log_len, log_since, log_tail, lost_port_race,
    require_binary, wait_ready,
};

/// Where Debian's `victoria-metrics` package installs the server.
pub const VICTORIA_METRICS_BIN: &str = "/usr/bin/victoria-metrics";
/// Environment variable that overrides [`VICTORIA_METRICS_BIN`].
pub const VICTORIA_METRICS_BIN_ENV: &str = "VICTORIA_METRICS_BIN";

const NAME: &str = "victoria-metrics";
const PACKAGE: &str = "victoria-metrics";
const START_ATTEMPTS: usize = 5;
/// VictoriaMetrics flushes its buffers on SIGTERM; give it time on a busy machine.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// Per-request bound for harness HTTP calls (loopback, so only a hung server hits it).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run VictoriaMetrics.
#[derive(Debug, Clone)]
pub struct VictoriaMetricsOptions {
    /// Extra command-line flags (e.g. `-maxLabelsPerTimeseries=50`).
    /// Default: none.
    pub extra_args: Vec<String>,
    /// Bound on the wait for `/health` to answer. Default: 60 s (it opens its
    /// storage before serving, which is slow on a busy 2-core machine).
    pub startup_timeout: Duration,
    /// Basic credentials the server requires on every endpoint
    /// (`-httpAuth.username`/`-httpAuth.password`); the harness's own requests
    /// send them. Default: none.
    pub basic_auth: Option<(String, String)>,
}

impl Default for VictoriaMetricsOptions {
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            basic_auth: None,
        }
    }
}

/// One series from `/api/v1/export`: its labels and its points, as
/// VictoriaMetrics returns them (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExportedSeries {
    /// Labels, including `__name__` (the metric name).
    pub metric: BTreeMap<String, String>,
    /// Sample values, parallel to `timestamps`.
    pub values: Vec<f64>,
    /// Sample times in milliseconds since the Unix epoch.
    pub timestamps: Vec<i64>,
}

impl ExportedSeries {
    /// The metric name (`__name__`), or "" if absent.
    pub fn name(&self) -> &str {
        self.label("__name__").unwrap_or("")
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metric.get(key).map(String::as_str)
    }

    /// `(timestamp_ms, value)` pairs in time order.
    pub fn points(&self) -> Vec<(i64, f64)> {
        let mut points: Vec<(i64, f64)> = self
            .timestamps
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .collect();
        points.sort_by_key(|&(t, _)| t);
        points
    }
}

/// Parses an export body (JSON lines), sorted by labels so results compare
/// stably (the server's order is arbitrary).
pub fn parse_export(body: &str) -> Result<Vec<ExportedSeries>> {
    let mut series = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let one: ExportedSeries = serde_json::from_str(line).map_err(|e| HarnessError::Parse {
            what: "VictoriaMetrics export line",
            detail: e.to_string(),
            excerpt: line.chars().take(200).collect(),
        })?;
        series.push(one);
    }
    series.sort_by(|a, b| a.metric.cmp(&b.metric));
    Ok(series)
}

/// A running (or stopped, restartable) VictoriaMetrics.
///
/// Dropping it kills the server and removes its storage; if the thread is
/// panicking, the server's log tail is printed first.
#[derive(Debug)]
pub struct VictoriaMetrics {
    // Declared first so it drops (kills the server) before the dir is removed.
    server: Restartable,
    bin: PathBuf,
    port: u16,
    options: VictoriaMetricsOptions,
    log_path: PathBuf,
    http: ureq::Agent,
    dir: TempDir,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics with [`VictoriaMetricsOptions::default`].
    pub fn start() -> Result<Self> {
        Self::start_with(VictoriaMetricsOptions::default())
    }

    /// Starts VictoriaMetrics and waits until `/health` answers.
    pub fn start_with(options: VictoriaMetricsOptions) -> Result<Self> {
        let bin = require_binary(
            NAME,
            VICTORIA_METRICS_BIN,
            PACKAGE,
            VICTORIA_METRICS_BIN_ENV,
        )?;
        let dir = tempfile::Builder::new()
            .prefix("victoria-metrics-")
            .tempdir()
            .map_err(|e| HarnessError::io("create a temp dir for victoria-metrics", e))?;
        let http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            // Statuses are checked by hand so errors can quote the body.
            .http_status_as_error(false)
            .build()
            .into();
        let mut vm = Self {
            server: Restartable::new(NAME, STOP_GRACE),
            bin,
            port: 0,
            log_path: dir.path().join("victoria-metrics.log"),
            options,
            http,
            dir,
        };
        let mut attempt = 1;
        loop {
            vm.port = free_port()?;
            let offset = log_len(&vm.log_path);
            match vm.spawn_and_wait() {
                Ok(()) => return Ok(vm),
                Err(HarnessError::ExitedEarly { .. })
                    if attempt < START_ATTEMPTS
                        && lost_port_race(&log_since(&vm.log_path, offset)) =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The HTTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Base URL, `http://127.0.0.1:PORT`: what an InfluxDB v2 client takes
    /// (it appends `/api/v2/write`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's temp dir (`data/` storage and the log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Writes InfluxDB line protocol (nanosecond timestamps) through
    /// `/api/v2/write`, as the gateway's sink does. Handy for seeding data.
    pub fn write_line_protocol(&self, body: &str) -> Result<()> {
        let url = format!("{}/api/v2/write?precision=ns", self.url());
        let auth = self.authorization();
        let mut resp = with_auth(self.http.post(&url), auth.as_deref())
            .send(body)
            .map_err(|e| http_error("POST", &url, e.to_string()))?;
        let status = resp.status();
        if status.as_u16() != 204 && !status.is_success() {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(http_error("POST", &url, format!("status {status}: {text}")));
        }
        Ok(())
    }

    /// Makes everything written so far visible to queries and exports.
    pub fn force_flush(&self) -> Result<()> {
        let url = format!("{}/internal/force_flush", self.url());
        self.get_text(&url, &[]).map(drop)
    }

    /// All series matching a selector (e.g. `pm25_value{device="aq-0001"}` or
    /// `{__name__=~"pm.*"}`) with all their points. Call
    /// [`VictoriaMetrics::force_flush`] first to see fresh writes.
    pub fn export(&self, selector: &str) -> Result<Vec<ExportedSeries>> {
        let url = format!("{}/api/v1/export", self.url());
        // start=0: readings may carry old timestamps; the default window is
        // not documented to cover all time on every version.
        let body = self.get_text(&url, &[("match[]", selector), ("start", "0")])?;
        parse_export(&body)
    }

    /// Flushes and exports until `done` holds for the result, for pipelines
    /// that write asynchronously. Fails with the last result after `timeout`.
    pub fn wait_for_export(
        &self,
        selector: &str,
        timeout: Duration,
        mut done: impl FnMut(&[ExportedSeries]) -> bool,
    ) -> Result<Vec<ExportedSeries>> {
        let started = Instant::now();
        loop {
            self.force_flush()?;
            let series = self.export(selector)?;
            if done(&series) {
                return Ok(series);
            }
            if started.elapsed() >= timeout {
                return Err(HarnessError::Timeout {
                    what: format!("export of {selector} to satisfy the condition"),
                    waited: started.elapsed(),
                    last: format!("{series:?}"),
                });
            }
            std::thread::sleep(POLL * 4);
        }
    }

    /// Stops the server gracefully (SIGTERM: it flushes to disk). Port and
    /// data stay for [`VictoriaMetrics::start_again`]; meanwhile writes fail
    /// with "connection refused", as in a store outage.
    pub fn stop(&mut self) -> Result<()> {
        self.server.stop().map(drop)
    }

    /// Kills the server (SIGKILL): a crash. Unflushed points may be lost.
    pub fn kill(&mut self) -> Result<()> {
        self.server.kill()
    }

    /// Starts the server again on the same port with the same storage.
    pub fn start_again(&mut self) -> Result<()> {
        self.server.check_stopped()?;
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(format!(
            "-storageDataPath={}",
            self.dir.path().join("data").display()
        ))
        .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
        // Test readings may carry timestamps far in the past.
        .arg("-retentionPeriod=100y")
        // Fresh points must be visible at once, not after the default 30 s
        // latency offset, and repeated queries must not hit stale caches.
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .args(&self.options.extra_args);
        if let Some((user, password)) = &self.options.basic_auth {
            cmd.arg(format!("-httpAuth.username={user}"))
                .arg(format!("-httpAuth.password={password}"));
        }
        let auth = self.authorization();
        let mut child = ChildGuard::spawn(NAME, &mut cmd, &self.log_path)?;
        let health = format!("{}/health", self.url());
        let http = &self.http;
        wait_ready(
            NAME,
            &mut child,
            &self.log_path,
            self.options.startup_timeout,
            || match with_auth(http.get(&health), auth.as_deref()).call() {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("GET {health}: status {}", resp.status())),
                Err(e) => Err(format!("GET {health}: {e}")),
            },
        )?;
        self.server.running(child);
        Ok(())
    }

    /// The `Authorization` header value for the harness's requests, if any.
    fn authorization(&self) -> Option<String> {
        use base64::Engine as _;
        self.options.basic_auth.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
    }

    fn get_text(&self, url: &str, query: &[(&str, &str)]) -> Result<String> {
        let auth = self.authorization();
        let mut req = with_auth(self.http.get(url), auth.as_deref());
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let mut resp = req
            .call()
            .map_err(|e| http_error("GET", url, e.to_string()))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            // Exports in load tests exceed ureq's 10 MB default.
            .limit(u64::MAX)
            .read_to_string()
            .map_err(|e| http_error("GET", url, format!("reading body: {e}")))?;
        if !status.is_success() {
            return Err(http_error("GET", url, format!("status {status}: {text}")));
        }
        Ok(text)
    }
}

fn with_auth<B>(req: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- victoria-metrics on port {} (dir {}), last log lines ---\n{}\n---",
                self.port,
                self.dir.path().display(),
                log_tail(&self.log_path, LOG_TAIL_LINES)
            );
        }
    }
}

fn http_error(method: &'static str, url: &str, detail: String) -> HarnessError {
    HarnessError::Http {
        method,
        url: url.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_export_lines_sorted_by_labels() {
        let body = concat!(
            r#"{"metric":{"__name__":"pm25_value","device":"b"},"values":[2,1],"timestamps":[2000,1000]}"#,
            "\n",
            r#"{"metric":{"__name__":"pm25_value","device":"a"},"values":[12.5],"timestamps":[1700000000000]}"#,
            "\n"
        );
        let series = parse_export(body).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].label("device"), Some("a"));
        assert_eq!(series[0].name(), "pm25_value");
        assert_eq!(series[1].points(), vec![(1000, 1.0), (2000, 2.0)]);
    }

    #[test]
    fn bad_export_line_is_a_parse_error() {
        let err = parse_export("{not json}\n").unwrap_err();
        assert!(matches!(err, HarnessError::Parse { .. }), "{err}");
    }
}

//! The forwarder: drains the outbox into a store that speaks the InfluxDB v2 write API,
//! deleting entries only after the store accepted them.
//!
//! - Success (204): the entries are deleted.
//! - 400, 413 or 422: the request is split in halves, recursively, until the lines the store
//!   refuses are isolated; the good lines are written, each bad line becomes a dead letter
//!   (`store-rejected`, topic [`STORE_TOPIC`]), and the entries are deleted.
//! - 429, 5xx, timeouts, connection errors: retried with exponential backoff and equal
//!   jitter ([`crate::backoff::Backoff`]: each wait in the upper half of its step), bounded
//!   by [`SinkConfig::backoff_max`]. Nothing is deleted.
//! - 401, 403 or 404 (a wrong token, password, org or bucket: the store's configuration,
//!   which no retry fixes): nothing is deleted, the data waits for the fix. The forwarder
//!   says so in [`StoreStatus`] (the gateway turns not ready with the reason and raises
//!   the [`crate::metrics::STORE_CONFIG_ERROR`] gauge), logs one error naming the status
//!   and the store URL without credentials (then at most one a minute) and retries at the
//!   longest backoff. The first accepted write clears it.
//!
//! Credentials: an InfluxDB token (`Authorization: Token`), or Basic credentials for
//! stores behind VictoriaMetrics' `-httpAuth.*` or a proxy, from [`SinkConfig::username`]
//! and [`SinkConfig::password`] or the URL's user info (`http://user:pass@host:8428`),
//! which is removed from the URL that is used and shown ([`SinkConfig::display_url`]).
//!
//! Writes go through the `influxdb2` crate (`write_line_protocol_with_precision`, ns
//! precision). That call sends the body as given and does not compress it (its gzip
//! applies only to its `DataPoint` API), so when [`SinkConfig::gzip`] is on the body is
//! gzipped here and `Content-Encoding: gzip` is set as a default header on the reqwest
//! client handed to the crate. The crate reports non-204 answers as `Http { status, text }`,
//! which is all the splitting needs; no direct HTTP code is required.
//!
//! The forwarder has its own SQLite connection (WAL) on the pipeline's file. Its SQLite
//! calls are short (read a few entries, delete them) and run inline on the async task.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use influxdb2::api::write::TimestampPrecision;
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Synchronous;
use crate::deadletter::STORE_TOPIC;
use crate::error::{IngestError, Result};
use crate::metrics as m;
use crate::validate::Reason;

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Base URL of the InfluxDB v2 API (`http://host:8086`; VictoriaMetrics: `http://host:8428`).
    pub url: String,
    /// Organisation (InfluxDB 2; ignored by VictoriaMetrics). Default: `city`.
    pub org: String,
    /// Bucket (InfluxDB 2; ignored by VictoriaMetrics). Default: `telemetry`.
    pub bucket: String,
    /// API token, sent as `Authorization: Token ...`. Default: none.
    pub token: Option<String>,
    /// Basic credentials' user name (else the URL's user info). Default: none.
    pub username: Option<String>,
    /// Basic credentials' password (else the URL's user info). Default: none.
    pub password: Option<String>,
    /// Bound on one write request. Default: 10 s.
    pub timeout: Duration,
    /// Gzip request bodies. Default: true.
    pub gzip: bool,
    /// First retry delay. Default: 200 ms.
    pub backoff_initial: Duration,
    /// Longest retry delay. Default: 30 s.
    pub backoff_max: Duration,
    /// How often an idle forwarder looks at the outbox. Default: 100 ms.
    pub idle_poll: Duration,
    /// After the applier wakes an idle forwarder, how long it waits for more before its
    /// request: fewer, larger writes (each request costs the store, and each outbox delete
    /// makes the applier's SQLite connection reload its page cache). Default: 10 ms.
    pub linger: Duration,
    /// Outbox entries are combined into requests of about this many bytes. Default: 4 MiB.
    pub max_request_bytes: usize,
    /// The dead letters' byte bound (`ingest.deadletter_max_bytes`), kept when the store
    /// refuses lines. Default: 256 MiB.
    pub deadletter_max_bytes: u64,
}

impl SinkConfig {
    /// A sink at `url` with the defaults above.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            org: "city".to_owned(),
            bucket: "telemetry".to_owned(),
            token: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
            gzip: true,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            idle_poll: Duration::from_millis(100),
            linger: Duration::from_millis(10),
            max_request_bytes: 4 * 1024 * 1024,
            deadletter_max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl SinkConfig {
    /// The URL without user info, for logs and errors.
    pub fn display_url(&self) -> String {
        url_for_logs(&self.url)
    }

    /// Basic credentials: the explicit ones, else the URL's user info.
    fn basic_credentials(&self, url: &reqwest::Url) -> Option<(String, String)> {
        basic_credentials(url, self.username.as_deref(), self.password.as_deref())
    }
}

/// Basic credentials (user, password) for a store at `url`: `username` if given, else the
/// URL's user name; `password` if given, else the URL's password (user info decoded,
/// empty when there is none). The forwarder and the store's query side both use it.
pub fn basic_credentials(
    url: &reqwest::Url,
    username: Option<&str>,
    password: Option<&str>,
) -> Option<(String, String)> {
    let user = username
        .map(str::to_owned)
        .or_else(|| (!url.username().is_empty()).then(|| percent_decode(url.username())))?;
    let password = password
        .map(str::to_owned)
        .or_else(|| url.password().map(percent_decode))
        .unwrap_or_default();
    Some((user, password))
}

/// A URL with its user info (which may hold a password) replaced, for logs and printed
/// configuration: `http://u:p@host:8428/x` -> `http://<redacted>@host:8428/x`. Works on
/// text that does not parse as a URL too.
pub fn url_for_logs(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

/// `%xx` escapes of URL user info decoded (lossy UTF-8).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// What the gateway's health and metrics learn from the forwarder.
#[derive(Debug, Default)]
pub struct StoreStatus {
    config_error: std::sync::Mutex<Option<String>>,
}

impl StoreStatus {
    /// Why the store refuses this gateway's writes (401, 403 or 404), until a write is
    /// accepted: a person must fix the token, password, org or bucket.
    pub fn config_error(&self) -> Option<String> {
        self.config_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_config_error(&self, why: Option<String>) {
        ::metrics::gauge!(m::STORE_CONFIG_ERROR).set(if why.is_some() { 1.0 } else { 0.0 });
        *self.config_error.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }
}

/// What a write attempt says.
enum Sent {
    Ok,
    /// 400/413/422: some line is bad.
    Rejected(String),
    /// 401/403/404: the store's configuration is wrong; nothing to retry soon.
    Config(String),
    /// Try again later.
    Retry(String),
}

/// What one drain step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Outbox entries deleted.
    pub entries: usize,
    /// Readings the store accepted.
    pub readings: u64,
    /// Lines dead-lettered as `store-rejected`.
    pub rejected_lines: usize,
}

/// Drains the outbox into the store.
#[derive(Debug)]
pub struct Forwarder {
    conn: Connection,
    client: influxdb2::Client,
    sink: SinkConfig,
    /// Retry waits: exponential with equal jitter ([`crate::backoff`]).
    backoff: Backoff,
    /// Woken by the applier when a transaction added to the outbox, so that a reading
    /// reaches the store without waiting for the idle poll.
    wake: std::sync::Arc<tokio::sync::Notify>,
    status: std::sync::Arc<StoreStatus>,
    /// When a configuration error was last logged (one a minute at most).
    config_logged: Option<Instant>,
}

impl Forwarder {
    /// Opens the outbox in `data_dir` and builds the store client.
    pub fn new(data_dir: &Path, sink: SinkConfig) -> Result<Self> {
        // Errors name the URL without its user info: it may hold a password.
        let mut url = reqwest::Url::parse(&sink.url)
            .map_err(|e| IngestError::Sink(format!("store URL {}: {e}", sink.display_url())))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(IngestError::Sink(format!(
                "store URL {}: scheme must be http or https",
                sink.display_url()
            )));
        }
        let basic = sink.basic_credentials(&url);
        if basic.is_some() && sink.token.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(IngestError::Sink(
                "the store has a token and Basic credentials: give one of them".to_owned(),
            ));
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some((user, password)) = basic {
            use base64::Engine as _;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|_| IngestError::Sink("store credentials: not a valid header".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        if sink.gzip {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                reqwest::header::HeaderValue::from_static("gzip"),
            );
        }
        let http = reqwest::Client::builder()
            .timeout(sink.timeout)
            .default_headers(headers);
        let base = url.as_str().trim_end_matches('/').to_owned();
        let client = influxdb2::ClientBuilder::with_builder(
            http,
            base,
            sink.org.clone(),
            sink.token.clone().unwrap_or_default(),
        )
        .build()
        .map_err(|e| IngestError::Sink(format!("building the HTTP client: {e}")))?;
        let conn = crate::store::open(data_dir, Synchronous::Normal, Duration::from_secs(5))?;
        ::metrics::gauge!(m::STORE_CONFIG_ERROR).set(0.0);
        Ok(Self {
            conn,
            client,
            backoff: Backoff::new(sink.backoff_initial, sink.backoff_max),
            sink,
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            status: std::sync::Arc::new(StoreStatus::default()),
            config_logged: None,
        })
    }

    /// The status the forwarder keeps for health checks.
    pub fn status(&self) -> std::sync::Arc<StoreStatus> {
        std::sync::Arc::clone(&self.status)
    }

    /// Shares `status` with an earlier forwarder (the one that drains at shutdown).
    pub fn with_status(mut self, status: std::sync::Arc<StoreStatus>) -> Self {
        self.status = status;
        self
    }

    /// The handle that wakes an idle forwarder (`notify_one`): call it after committing
    /// to the outbox.
    pub fn waker(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.wake)
    }

    /// Runs until `shutdown` is cancelled: drains the outbox, waits when it is empty, backs
    /// off when the store (or the local database) fails. Returns `Ok` at shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let mut idle = false;
            let pause = match self.drain_once().await {
                Ok(Some(_)) => continue,
                Ok(None) => {
                    idle = true;
                    self.sink.idle_poll
                }
                Err(Retry(why)) => {
                    let d = self.backoff.next_delay();
                    tracing::warn!(error = %why, retry_in_ms = d.as_millis() as u64, "store write failed; will retry");
                    d
                }
                Err(Config(why)) => {
                    // No retry fixes this soon: the longest backoff, and one error a minute.
                    self.status.set_config_error(Some(why.clone()));
                    self.backoff.advance();
                    let d = self.sink.backoff_max;
                    if self
                        .config_logged
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        self.config_logged = Some(Instant::now());
                        tracing::error!(
                            store = %self.sink.display_url(),
                            error = %why,
                            retry_in_s = d.as_secs(),
                            "the store refuses this gateway's writes: check the store token or credentials, org and bucket; readings wait in the outbox"
                        );
                    }
                    d
                }
                // A local failure (the pipeline holding the lock past the busy timeout, a full
                // disk) may clear; the outbox is intact, so wait and try again.
                Err(Local(e)) => {
                    let d = self.backoff.next_delay();
                    tracing::error!(error = %e, retry_in_ms = d.as_millis() as u64, "outbox access failed; will retry");
                    d
                }
            };
            let woken = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(pause) => false,
                _ = self.wake.notified(), if idle => true,
            };
            if woken && !self.sink.linger.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.sink.linger) => {}
                }
            }
        }
    }

    /// Drains until the outbox is empty or `deadline` passes (then `FlushTimeout`). Store
    /// failures are retried with backoff within the deadline.
    pub async fn flush(&mut self, deadline: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            match self.drain_once().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(Local(e)) => return Err(e),
                Err(Retry(why) | Config(why)) => {
                    let left = deadline.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        tracing::warn!(error = %why, "flush deadline reached with the store failing");
                    }
                    tokio::time::sleep(self.backoff.next_delay().min(left)).await;
                }
            }
            if started.elapsed() >= deadline {
                let entries = crate::outbox::depth(&self.conn)?.entries;
                return if entries == 0 {
                    Ok(())
                } else {
                    Err(IngestError::FlushTimeout { entries })
                };
            }
        }
    }

    /// One request's worth: `Ok(None)` when the outbox is empty.
    pub async fn drain_once(&mut self) -> Result<Option<DrainOutcome>, DrainError> {
        let entries =
            crate::outbox::oldest(&self.conn, self.sink.max_request_bytes).map_err(Local)?;
        if entries.is_empty() {
            return Ok(None);
        }
        let mut body = Vec::new();
        let mut readings = 0u64;
        for e in &entries {
            body.extend_from_slice(&e.body);
            readings += e.readings;
        }
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        let created: Vec<i64> = entries.iter().map(|e| e.created_ns).collect();
        drop(entries);
        let mut out = DrainOutcome {
            entries: ids.len(),
            ..DrainOutcome::default()
        };
        match send(&self.client, &self.sink, &body).await {
            Sent::Ok => {
                out.readings = readings;
                self.finish(&ids, &[]).map_err(Local)?;
            }
            Sent::Retry(why) => return Err(Retry(why)),
            Sent::Config(why) => return Err(Config(why)),
            Sent::Rejected(first) => {
                tracing::warn!(error = %first, lines = readings, "store rejected a request; splitting to isolate bad lines");
                let (good, bad) = self.split(&body).await?;
                out.readings = good;
                out.rejected_lines = bad.len();
                self.finish(&ids, &bad).map_err(Local)?;
            }
        }
        self.backoff.reset();
        if self.config_logged.take().is_some() || self.status.config_error().is_some() {
            tracing::info!(store = %self.sink.display_url(), "the store accepts writes again");
        }
        self.status.set_config_error(None);
        ::metrics::counter!(m::FORWARD_READINGS).increment(out.readings);
        let now = crate::message::now_ns();
        let waited = ::metrics::histogram!(m::OUTBOX_TO_STORED);
        for c in created {
            waited.record((now - c).max(0) as f64 / 1e9);
        }
        if let Ok(d) = crate::outbox::depth(&self.conn) {
            ::metrics::gauge!(m::OUTBOX_DEPTH).set(d.entries as f64);
            ::metrics::gauge!(m::OUTBOX_BYTES).set(d.bytes as f64);
        }
        Ok(Some(out))
    }

    /// Deletes sent entries and records refused lines, in one transaction.
    fn finish(&mut self, ids: &[i64], bad: &[(Vec<u8>, String)]) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(IngestError::sql("begin outbox delete"))?;
        crate::outbox::delete(&tx, ids)?;
        let now = crate::message::now_ns();
        for (line, detail) in bad {
            crate::deadletter::insert(
                &tx,
                &crate::deadletter::NewDeadLetter {
                    received_ns: now,
                    topic: STORE_TOPIC,
                    payload: line,
                    reason: Reason::StoreRejected,
                    detail,
                    payload_bytes: line.len(),
                },
            )?;
        }
        if !bad.is_empty() {
            crate::deadletter::enforce_bound(&tx, self.sink.deadletter_max_bytes)?;
        }
        tx.commit()
            .map_err(IngestError::sql("commit outbox delete"))?;
        if !bad.is_empty() {
            ::metrics::counter!(m::REJECTED, "reason" => Reason::StoreRejected.as_str())
                .increment(bad.len() as u64);
        }
        Ok(())
    }

    /// Halves until single bad lines are isolated. Returns (good readings, bad lines).
    async fn split(&mut self, body: &[u8]) -> Result<(u64, Vec<(Vec<u8>, String)>), DrainError> {
        let lines: Vec<&[u8]> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut good = 0u64;
        let mut bad = Vec::new();
        // Halves of the whole, which was just refused.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let mid = lines.len() / 2;
        if lines.len() <= 1 {
            if let Some(l) = lines.first() {
                bad.push((l.to_vec(), "store refused the line".to_owned()));
            }
            return Ok((0, bad));
        }
        stack.push((mid, lines.len()));
        stack.push((0, mid));
        while let Some((a, b)) = stack.pop() {
            let mut chunk = Vec::new();
            for l in &lines[a..b] {
                chunk.extend_from_slice(l);
                chunk.push(b'\n');
            }
            match send(&self.client, &self.sink, &chunk).await {
                Sent::Ok => good += (b - a) as u64,
                Sent::Retry(why) => return Err(Retry(why)),
                Sent::Config(why) => return Err(Config(why)),
                Sent::Rejected(why) if b - a == 1 => {
                    tracing::warn!(line = %String::from_utf8_lossy(lines[a]), error = %why, "store rejected a line; dead-lettered");
                    bad.push((lines[a].to_vec(), why));
                }
                Sent::Rejected(_) => {
                    let mid = a + (b - a) / 2;
                    stack.push((mid, b));
                    stack.push((a, mid));
                }
            }
        }
        Ok((good, bad))
    }
}

/// One write. A free function over the client and config (both `Sync`), so the
/// forwarder's futures stay `Send` although its SQLite connection is not `Sync`.
async fn send(client: &influxdb2::Client, sink: &SinkConfig, body: &[u8]) -> Sent {
    let payload = if sink.gzip {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        if let Err(e) = gz.write_all(body) {
            return Sent::Retry(format!("gzip: {e}"));
        }
        match gz.finish() {
            Ok(v) => v,
            Err(e) => return Sent::Retry(format!("gzip: {e}")),
        }
    } else {
        body.to_vec()
    };
    let started = Instant::now();
    let res = client
        .write_line_protocol_with_precision(
            &sink.org,
            &sink.bucket,
            payload,
            TimestampPrecision::Nanoseconds,
        )
        .await;
    ::metrics::histogram!(m::FORWARD_STORE_SECONDS).record(started.elapsed().as_secs_f64());
    let sent = match res {
        Ok(()) => Sent::Ok,
        Err(influxdb2::RequestError::Http { status, text }) => {
            let why = format!("HTTP {}: {}", status.as_u16(), text.trim());
            match status.as_u16() {
                400 | 413 | 422 => Sent::Rejected(why),
                401 | 403 | 404 => Sent::Config(why),
                _ => Sent::Retry(why),
            }
        }
        Err(e) => Sent::Retry(e.to_string()),
    };
    if matches!(sent, Sent::Retry(_) | Sent::Config(_)) {
        ::metrics::counter!(m::FORWARD_RETRIES).increment(1);
    }
    sent
}

/// Why a drain step did not finish.
#[derive(Debug)]
pub enum DrainError {
    /// The store failed in a way worth retrying; nothing was deleted.
    Retry(String),
    /// The store refuses this gateway's writes (401/403/404); nothing was deleted.
    Config(String),
    /// SQLite failed.
    Local(IngestError),
}

use DrainError::{Config, Local, Retry};

impl std::fmt::Display for DrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retry(why) => write!(f, "store write failed (will retry): {why}"),
            Config(why) => write!(f, "the store refuses this gateway's writes: {why}"),
            Local(_) => f.write_str("the outbox could not be read or updated (see the source)"),
        }
    }
}

impl std::error::Error for DrainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Local(e) => Some(e),
            Retry(_) | Config(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_come_from_the_flags_else_the_urls_user_info_decoded() {
        let mut sink = SinkConfig::new("http://ops%40city:p%3Ass@vm.example:8428/");
        let url = reqwest::Url::parse(&sink.url).unwrap();
        assert_eq!(
            sink.basic_credentials(&url),
            Some(("ops@city".into(), "p:ss".into()))
        );
        assert_eq!(sink.display_url(), "http://<redacted>@vm.example:8428/");
        sink.username = Some("flag-user".into());
        sink.password = Some("flag-pass".into());
        assert_eq!(
            sink.basic_credentials(&url),
            Some(("flag-user".into(), "flag-pass".into()))
        );
        let plain = SinkConfig::new("http://vm.example:8428");
        let url = reqwest::Url::parse(&plain.url).unwrap();
        assert_eq!(plain.basic_credentials(&url), None);
        // What the store's query side calls: the same rules on a URL and the flags.
        let url = reqwest::Url::parse("http://ops%40city:p%3Ass@vm.example:8428/").unwrap();
        assert_eq!(
            basic_credentials(&url, None, None),
            Some(("ops@city".into(), "p:ss".into()))
        );
        assert_eq!(
            basic_credentials(&url, Some("flag-user"), None),
            Some(("flag-user".into(), "p:ss".into()))
        );
    }
}

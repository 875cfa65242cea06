//! Shared liveness and readiness state, written by the consumer and read by
//! the HTTP handlers: whether the MQTT session is up, whether SQLite is open
//! and committing, and what the last commit did.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Flags and counters for `/health`.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    mqtt_connected: AtomicBool,
    subscribed: AtomicBool,
    store_open: AtomicBool,
    store_ok: AtomicBool,
    messages_committed: AtomicU64,
    readings_committed: AtomicU64,
    last_commit_unix_ms: AtomicU64,
    shutting_down: AtomicBool,
    note: Mutex<Option<String>>,
    /// Why the last SQLite commit failed, while it fails.
    store_error: Mutex<Option<String>>,
    /// The message log's positions, and the backlog bound beyond which acks are held.
    log: std::sync::OnceLock<(std::sync::Arc<ingest::applier::Progress>, u64)>,
    /// The forwarder's view of the store (when forwarding).
    store_status: std::sync::OnceLock<std::sync::Arc<ingest::StoreStatus>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Everything down, nothing committed.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            mqtt_connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            store_open: AtomicBool::new(false),
            store_ok: AtomicBool::new(true),
            messages_committed: AtomicU64::new(0),
            readings_committed: AtomicU64::new(0),
            last_commit_unix_ms: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            note: Mutex::new(None),
            store_error: Mutex::new(None),
            log: std::sync::OnceLock::new(),
            store_status: std::sync::OnceLock::new(),
        }
    }

    /// The MQTT connection went up or down.
    pub fn set_mqtt_connected(&self, up: bool) {
        self.mqtt_connected.store(up, Ordering::Release);
    }

    /// Whether the MQTT connection is up.
    pub fn mqtt_connected(&self) -> bool {
        self.mqtt_connected.load(Ordering::Acquire)
    }

    /// The broker confirmed the subscriptions (or the session that holds
    /// them) on the current connection.
    pub fn set_subscribed(&self, yes: bool) {
        self.subscribed.store(yes, Ordering::Release);
    }

    /// Whether the subscriptions are in place.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// SQLite opened (or closed).
    pub fn set_store_open(&self, open: bool) {
        self.store_open.store(open, Ordering::Release);
    }

    /// The last commit attempt succeeded (`true`) or failed with an error
    /// other than back-pressure (`false`).
    pub fn set_store_ok(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Release);
        if ok && let Ok(mut e) = self.store_error.lock() {
            *e = None;
        }
    }

    /// The last commit failed with `why` (a full disk, an I/O error).
    pub fn set_store_failed(&self, why: String) {
        self.store_ok.store(false, Ordering::Release);
        if let Ok(mut e) = self.store_error.lock() {
            *e = Some(why);
        }
    }

    /// SQLite is open and its last commit did not fail.
    pub fn store_ready(&self) -> bool {
        self.store_open.load(Ordering::Acquire) && self.store_ok.load(Ordering::Acquire)
    }

    /// Shutdown has begun: not ready any more.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Attaches the message log's positions (once, at start).
    pub fn set_log(&self, progress: std::sync::Arc<ingest::applier::Progress>, max_backlog: u64) {
        let _ = self.log.set((progress, max_backlog));
    }

    /// Attaches the forwarder's status (once, at start).
    pub fn set_store_status(&self, status: std::sync::Arc<ingest::StoreStatus>) {
        let _ = self.store_status.set(status);
    }

    /// Why the time-series store refuses this gateway's writes (401, 403, 404).
    pub fn store_config_error(&self) -> Option<String> {
        self.store_status.get().and_then(|s| s.config_error())
    }

    /// Why the gateway is not ready, in words (`None` when ready).
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Some("shutting down".into());
        }
        if !self.mqtt_connected() {
            return Some("not connected to the MQTT broker".into());
        }
        if !self.subscribed() {
            return Some("subscriptions not confirmed by the broker".into());
        }
        if let Some(why) = self.log.get().and_then(|(p, _)| p.log_error()) {
            return Some(format!(
                "the message log cannot commit ({why}); nothing new is acknowledged until it can"
            ));
        }
        if !self.store_open.load(Ordering::Acquire) {
            return Some("the SQLite state is not open".into());
        }
        if !self.store_ok.load(Ordering::Acquire) {
            let why = self.store_error.lock().ok().and_then(|e| e.clone());
            return Some(format!(
                "the SQLite state cannot commit ({}); the log keeps the messages",
                why.as_deref().unwrap_or("see the log")
            ));
        }
        if self.log_backlog_exceeded() {
            return Some("the message log's apply backlog is beyond its bound".into());
        }
        self.store_config_error().map(|why| {
            format!("the time-series store refuses writes ({why}): fix its token or credentials, org or bucket")
        })
    }

    /// Whether the apply backlog is beyond its bound (acks are being held).
    pub fn log_backlog_exceeded(&self) -> bool {
        self.log
            .get()
            .is_some_and(|(p, max)| p.backlog_bytes() > *max)
    }

    /// Ready to take traffic: MQTT connected and subscribed, SQLite open and
    /// committing, the log's apply backlog within its bound, not shutting down.
    pub fn ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// A batch committed.
    pub fn record_commit(&self, messages: usize, readings: usize) {
        self.messages_committed
            .fetch_add(messages as u64, Ordering::Relaxed);
        self.readings_committed
            .fetch_add(readings as u64, Ordering::Relaxed);
        let now_ms = ingest::message::now_ns() / 1_000_000;
        self.last_commit_unix_ms
            .store(u64::try_from(now_ms).unwrap_or(0), Ordering::Relaxed);
    }

    /// A free-form note for `/health` (e.g. why the outbox is blocked).
    pub fn set_note(&self, note: Option<String>) {
        if let Ok(mut n) = self.note.lock() {
            *n = note;
        }
    }

    /// Snapshot for `/health`.
    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            ready: self.ready(),
            mqtt_connected: self.mqtt_connected(),
            mqtt_subscribed: self.subscribed(),
            sqlite_open: self.store_open.load(Ordering::Acquire),
            sqlite_ok: self.store_ok.load(Ordering::Acquire),
            shutting_down: self.shutting_down.load(Ordering::Acquire),
            uptime_s: self.uptime().as_secs(),
            messages_committed: self.messages_committed.load(Ordering::Relaxed),
            readings_committed: self.readings_committed.load(Ordering::Relaxed),
            last_commit_unix_ms: match self.last_commit_unix_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => Some(ms),
            },
            note: self.note.lock().ok().and_then(|n| n.clone()),
            not_ready: self.not_ready_reason(),
            store_config_error: self.store_config_error(),
            outbox_entries: None,
            outbox_bytes: None,
            log_durable_seq: self.log.get().map(|(p, _)| p.durable()),
            log_applied_seq: self.log.get().map(|(p, _)| p.applied()),
            log_backlog_bytes: self.log.get().map(|(p, _)| p.backlog_bytes()),
            acks_held: self
                .log
                .get()
                .is_some_and(|(p, max)| p.backpressure() || p.backlog_bytes() > *max),
        }
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The `/health` JSON body.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthSnapshot {
    /// Same as `/health/ready` answering 200.
    pub ready: bool,
    /// MQTT session up.
    pub mqtt_connected: bool,
    /// Subscriptions confirmed by the broker.
    pub mqtt_subscribed: bool,
    /// SQLite opened.
    pub sqlite_open: bool,
    /// Last commit did not fail.
    pub sqlite_ok: bool,
    /// SIGINT/SIGTERM received.
    pub shutting_down: bool,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Messages committed since start.
    pub messages_committed: u64,
    /// Readings committed since start.
    pub readings_committed: u64,
    /// When the last batch committed.
    pub last_commit_unix_ms: Option<u64>,
    /// Extra information, if any.
    pub note: Option<String>,
    /// Why `/health/ready` answers 503, when it does.
    pub not_ready: Option<String>,
    /// The store refuses this gateway's writes (401, 403 or 404): the status and
    /// the store's answer. A person must fix the credentials, org or bucket.
    pub store_config_error: Option<String>,
    /// Outbox entries waiting for the store (when forwarding).
    pub outbox_entries: Option<u64>,
    /// Outbox bytes waiting for the store (when forwarding).
    pub outbox_bytes: Option<u64>,
    /// Highest durable message-log position.
    pub log_durable_seq: Option<u64>,
    /// Highest position applied to the state.
    pub log_applied_seq: Option<u64>,
    /// Bytes logged and not yet applied: a number that keeps growing means the applier
    /// cannot keep up or is blocked.
    pub log_backlog_bytes: Option<u64>,
    /// Acknowledgements are held (outbox full, or the backlog beyond
    /// `ingest.log_max_backlog_bytes`): the broker is keeping further messages.
    pub acks_held: bool,
}

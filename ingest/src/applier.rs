//! The applier: turns durable message-log records into state, in order, in batches.
//!
//! It runs on a thread of its own with the pipeline's SQLite connection. It waits until the
//! log writer makes new records durable, lingers briefly so that a steady trickle becomes
//! fewer, larger transactions, reads what is there (up to `apply_max_bytes`), and applies
//! it with [`Pipeline::apply`]: decode, validate, hot tier, outbox, dead letters, device
//! state and the applied log position in ONE transaction. A crash re-applies from the
//! position the state holds, so nothing is applied twice and nothing is skipped.
//!
//! A full outbox (policy `block`) refuses the transaction: the applier raises
//! [`Progress::backpressure`], which makes the log writer hold acknowledgements (the broker
//! keeps further messages), and retries with backoff until the store drains the outbox.
//!
//! About once a second, and whenever the log has segments to delete, it makes the state's
//! transactions durable ([`Pipeline::sync`]) and publishes that position as
//! [`Progress::synced`]: the log deletes only segments at or below it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::IngestError;
use crate::log::{Entry, LogReader};
use crate::message::Inbound;
use crate::pipeline::Pipeline;

/// Positions shared by the log writer, the applier and the health endpoints.
#[derive(Debug, Default)]
pub struct Progress {
    /// Highest durable log sequence number (written by the log writer).
    durable: Mutex<u64>,
    durable_changed: Condvar,
    /// Highest applied sequence number.
    applied: AtomicU64,
    /// Highest applied sequence number whose state transaction is synced to disk.
    synced: AtomicU64,
    /// The applier cannot commit because the outbox is full (policy `block`).
    backpressure: AtomicBool,
    /// Bytes logged and not yet applied (written by the log writer).
    backlog_bytes: AtomicU64,
    /// Outbox entries and bytes as of the applier's last transaction or refusal.
    outbox_entries: AtomicU64,
    outbox_bytes: AtomicU64,
    /// The applier should finish what is durable and stop.
    stop: AtomicBool,
    /// Why the log writer cannot commit (a full disk, an I/O error), while it cannot.
    log_error: Mutex<Option<String>>,
}

impl Progress {
    /// Positions starting at `applied` (the state's position when the gateway starts).
    pub fn new(applied: u64, durable: u64) -> Self {
        Self {
            durable: Mutex::new(durable),
            durable_changed: Condvar::new(),
            applied: AtomicU64::new(applied),
            synced: AtomicU64::new(applied),
            backpressure: AtomicBool::new(false),
            backlog_bytes: AtomicU64::new(0),
            outbox_entries: AtomicU64::new(0),
            outbox_bytes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            log_error: Mutex::new(None),
        }
    }

    /// The log writer's commit failed (`Some(why)`) or succeeded again (`None`).
    pub fn set_log_error(&self, why: Option<String>) {
        *self.log_error.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Why the log cannot commit, while it cannot: nothing new is acknowledged then.
    pub fn log_error(&self) -> Option<String> {
        self.log_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The log writer made everything up to `seq` durable.
    pub fn set_durable(&self, seq: u64) {
        let mut d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        if seq > *d {
            *d = seq;
            self.durable_changed.notify_all();
        }
    }

    /// Highest durable sequence number.
    pub fn durable(&self) -> u64 {
        *self.durable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the durable position reaches `seq`, the timeout passes or a stop is
    /// requested; returns the durable position.
    fn wait_durable(&self, seq: u64, timeout: Duration) -> u64 {
        let d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        let (d, _) = self
            .durable_changed
            .wait_timeout_while(d, timeout, |d| {
                *d < seq && !self.stop.load(Ordering::Acquire)
            })
            .unwrap_or_else(|e| e.into_inner());
        *d
    }

    /// Highest applied sequence number.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Highest applied and synced sequence number: log segments at or below it may go.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Whether the applier is held up by a full outbox.
    pub fn backpressure(&self) -> bool {
        self.backpressure.load(Ordering::Acquire)
    }

    /// Records the apply backlog in bytes (the log writer knows it).
    pub fn set_backlog_bytes(&self, bytes: u64) {
        self.backlog_bytes.store(bytes, Ordering::Release);
        ::metrics::gauge!(crate::metrics::LOG_BACKLOG_BYTES).set(bytes as f64);
    }

    /// Bytes logged and not yet applied.
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog_bytes.load(Ordering::Acquire)
    }

    /// The outbox as of the applier's last transaction: (entries, bytes).
    pub fn outbox(&self) -> (u64, u64) {
        (
            self.outbox_entries.load(Ordering::Acquire),
            self.outbox_bytes.load(Ordering::Acquire),
        )
    }

    /// Asks the applier to apply what is durable now and stop.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        self.durable_changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// What an apply attempt did: `Ok((messages, readings))` or the error.
pub type ApplyResult<'a> = Result<(usize, usize), &'a IngestError>;

/// How the applier tells the rest of the service. (The log writer reads [`Progress`] on
/// its own, at least every 50 ms, to release acks and segments.)
pub struct Hooks {
    /// Called when a batch added to the outbox (wakes the forwarder at once).
    pub on_outbox: Box<dyn Fn() + Send>,
    /// Called after each apply attempt: `Ok(messages, readings)` or the error.
    pub on_result: Box<dyn Fn(ApplyResult<'_>) + Send>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

/// Applier settings.
#[derive(Debug, Clone, Copy)]
pub struct ApplierOptions {
    /// Most messages per transaction. With policy `block` a transaction whose outbox entry
    /// does not fit is refused whole, so this also bounds how far below its limit the outbox
    /// can stop filling, and how far over it a first entry can go.
    pub max_messages: usize,
    /// Most payload bytes per transaction.
    pub max_bytes: usize,
    /// Wait for more after the first new record.
    pub linger: Duration,
    /// Interval of retention passes.
    pub housekeeping: Duration,
    /// Interval of syncs of the state (the log frees segments after them).
    pub sync_interval: Duration,
}

/// Runs the applier until [`Progress::request_stop`], then applies what is durable and
/// returns. Local errors (SQLite I/O, a full disk) are logged and retried with backoff:
/// the log keeps every message until it is applied.
pub fn run(
    mut pipeline: Pipeline,
    mut reader: LogReader,
    progress: &Progress,
    opts: ApplierOptions,
    hooks: &Hooks,
) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut batch: Vec<Inbound> = Vec::new();
    let mut last_sync = Instant::now();
    let mut last_housekeeping: Option<Instant> = None;
    let mut retry = Duration::from_millis(50);
    loop {
        if last_housekeeping.is_none_or(|t| t.elapsed() >= opts.housekeeping) {
            last_housekeeping = Some(Instant::now());
            match pipeline.enforce_retention(crate::message::now_ns()) {
                Ok(outcome) => tracing::debug!(?outcome, "retention pass"),
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; the next pass retries")
                }
            }
        }
        maintain(&mut pipeline);
        let next = reader.next_seq();
        let mut durable = progress.wait_durable(next, Duration::from_millis(200));
        if durable < next {
            // The stop is requested once the writer has committed its last messages: what
            // is durable then is applied before the loop ends here.
            if progress.stopping() {
                break;
            }
            if last_sync.elapsed() >= opts.sync_interval && progress.synced() < progress.applied() {
                sync(&mut pipeline, progress, &mut last_sync);
            }
            continue;
        }
        // Linger for more, unless stopping.
        let deadline = Instant::now() + opts.linger;
        loop {
            let now = Instant::now();
            if now >= deadline || progress.stopping() {
                break;
            }
            durable = progress.wait_durable(u64::MAX, deadline - now);
        }
        entries.clear();
        let from = reader.next_seq();
        let read = reader.read(durable, opts.max_messages, opts.max_bytes, &mut entries);
        if read.is_err() && !entries.is_empty() {
            // Apply what was read before the failure; the next round meets it again.
            reader.reset();
        } else if let Err(e) = read {
            // A record that was durable cannot be read (an I/O error, damage): nothing
            // after it can be applied. Retry with backoff (acks stop once the backlog bound
            // is reached) and say why; `/health` shows the state failing.
            if retry == Duration::from_millis(50) {
                tracing::error!(error = %e, "cannot read the message log; retrying");
            }
            (hooks.on_result)(Err(&IngestError::Log(e)));
            if progress.stopping() {
                return;
            }
            reader.reset();
            std::thread::sleep(retry);
            retry = (retry * 2).min(Duration::from_secs(5));
            continue;
        }
        batch.clear();
        batch.extend(entries.drain(..).map(|e| Inbound {
            topic: e.topic,
            payload: e.payload,
            received_at_ns: e.received_ns,
            retained: e.retain,
        }));
        let upto = reader.next_seq() - 1;
        loop {
            match pipeline.apply(&batch, upto) {
                Ok(out) => {
                    retry = Duration::from_millis(50);
                    progress
                        .outbox_entries
                        .store(out.outbox_entries, Ordering::Release);
                    progress
                        .outbox_bytes
                        .store(out.outbox_bytes, Ordering::Release);
                    progress.backpressure.store(false, Ordering::Release);
                    progress.applied.store(upto, Ordering::Release);
                    (hooks.on_result)(Ok((batch.len(), out.readings_committed)));
                    if out.readings_committed > 0 && pipeline.config().forward_enabled {
                        (hooks.on_outbox)();
                    }
                    break;
                }
                Err(e) => {
                    let full = matches!(e, IngestError::OutboxFull { .. });
                    if let IngestError::OutboxFull { bytes, .. } = e {
                        progress.outbox_entries.fetch_max(1, Ordering::AcqRel);
                        progress.outbox_bytes.store(bytes, Ordering::Release);
                    }
                    if full && !progress.backpressure.swap(true, Ordering::AcqRel) {
                        tracing::warn!(error = %e, messages = batch.len(), "outbox full: holding acknowledgements until the store catches up");
                    } else if !full {
                        tracing::error!(error = %e, messages = batch.len(), "applying the log failed; retrying (the log keeps the messages)");
                    }
                    (hooks.on_result)(Err(&e));
                    if progress.stopping() {
                        tracing::warn!(
                            from,
                            "stopping with messages not applied; they are applied at the next start"
                        );
                        return;
                    }
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
        if last_sync.elapsed() >= opts.sync_interval {
            sync(&mut pipeline, progress, &mut last_sync);
        }
    }
    if let Err(e) = pipeline.flush_hot() {
        tracing::warn!(error = %e, "cannot flush the hot tier's head at the stop; the next start takes it over");
    }
    sync(&mut pipeline, progress, &mut last_sync);
}

/// Flushes the hot tier's head when due. A failure leaves the head as it is (durable in
/// its rows) for the next try.
fn maintain(pipeline: &mut Pipeline) {
    if let Err(e) = pipeline.maintain() {
        tracing::warn!(error = %e, "cannot flush the hot tier's head; retrying later");
    }
    ::metrics::gauge!(crate::metrics::HOT_HEAD_READINGS)
        .set(pipeline.hot_head().read().readings() as f64);
}

fn sync(pipeline: &mut Pipeline, progress: &Progress, last_sync: &mut Instant) {
    let applied = progress.applied();
    match pipeline.sync() {
        Ok(()) => {
            progress.synced.store(applied, Ordering::Release);
            *last_sync = Instant::now();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sync the state database; log segments are kept")
        }
    }
}

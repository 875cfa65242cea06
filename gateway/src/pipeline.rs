//! The binding to the `ingest` library: opens the SQLite state, the message log and its
//! reader at the state's applied position, and runs the applier on a thread of its own
//! with hooks into the service's health, metrics and forwarder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ingest::applier::{self, ApplierOptions, Hooks, Progress};
use ingest::log::{LogOptions, LogReader, LogWriter};
use ingest::{IngestError, Pipeline};

use crate::config::Config;
use crate::health::Health;

/// The ingest configuration the gateway runs with: the `[ingest]` table,
/// with forwarding on exactly when a store URL is configured.
pub fn ingest_config(cfg: &Config) -> ingest::IngestConfig {
    let mut ic = cfg.ingest.clone();
    ic.forward_enabled = cfg.store.url.is_some();
    ic
}

/// Opens the pipeline (creating the data directory and schema if needed).
pub fn open(cfg: &Config) -> Result<Pipeline, IngestError> {
    let ic = ingest_config(cfg);
    ic.validate()?;
    Pipeline::open(&cfg.data_dir, ic)
}

/// The message log's folder.
pub fn log_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir.join(ingest::log::LOG_DIR)
}

/// The state and the log, opened and consistent with each other.
#[derive(Debug)]
pub struct Opened {
    /// The state database.
    pub pipeline: Pipeline,
    /// The log's appending side.
    pub log: LogWriter,
    /// The applier's cursor, at the first record not applied.
    pub reader: LogReader,
    /// Positions shared by the writer, the applier and `/health`.
    pub progress: Arc<Progress>,
    /// The hot tier's head, which the applier owns, for the query API.
    pub hot_head: ingest::hot::HotHead,
}

/// Opens the state, then the log above its applied position (truncating a torn tail).
pub fn open_all(cfg: &Config) -> anyhow::Result<Opened> {
    let mut pipeline = open(cfg)
        .with_context(|| format!("cannot open the SQLite state in {}", cfg.data_dir.display()))?;
    let hot_head = pipeline
        .own_hot_head()
        .context("cannot read the hot tier's head")?;
    let applied = pipeline.applied_seq()?;
    let dir = log_dir(cfg);
    let opts = LogOptions {
        segment_bytes: cfg.ingest.log_segment_bytes,
    };
    let (log, report) = LogWriter::open(&dir, opts, applied)
        .with_context(|| format!("cannot open the message log in {}", dir.display()))?;
    tracing::info!(
        segments = report.segments,
        messages = report.messages,
        applied,
        durable = log.durable_seq(),
        "message log open"
    );
    let reader = LogReader::open(&dir, applied + 1)?;
    let progress = Arc::new(Progress::new(applied, log.durable_seq()));
    Ok(Opened {
        pipeline,
        log,
        reader,
        progress,
        hot_head,
    })
}

/// Starts the applier thread. It applies until [`Progress::request_stop`], then what is
/// durable, and returns.
pub fn spawn_applier(
    cfg: &Config,
    pipeline: Pipeline,
    reader: LogReader,
    progress: Arc<Progress>,
    health: Arc<Health>,
    forwarder: Option<Arc<tokio::sync::Notify>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let opts = ApplierOptions {
        // The same bound as a log commit, which is also what one state transaction held
        // before the log.
        max_messages: cfg.batch.max_messages,
        max_bytes: cfg.ingest.apply_max_bytes,
        linger: Duration::from_millis(cfg.ingest.apply_linger_ms),
        housekeeping: Duration::from_secs(cfg.batch.retention_interval_s),
        sync_interval: Duration::from_secs(1),
    };
    let hooks = Hooks {
        on_outbox: Box::new(move || {
            if let Some(f) = &forwarder {
                f.notify_one();
            }
        }),
        on_result: Box::new(move |r| match r {
            Ok((messages, readings)) => {
                health.set_store_ok(true);
                health.record_commit(messages, readings);
                metrics::histogram!("batch_size").record(messages as f64);
            }
            Err(e) => {
                let full = matches!(e, IngestError::OutboxFull { .. });
                let reason = if full { "backpressure" } else { "failed" };
                metrics::counter!("gateway_commit_retries_total", "reason" => reason).increment(1);
                if !full {
                    health.set_store_failed(e.to_string());
                }
            }
        }),
    };
    let handle = std::thread::Builder::new()
        .name("applier".into())
        .spawn(move || applier::run(pipeline, reader, &progress, opts, &hooks))?;
    Ok(handle)
}

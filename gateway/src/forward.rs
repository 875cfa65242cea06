//! The store side of the service: the `ingest` forwarder's settings from the
//! `[store]` table, and its thread. The forwarder holds a SQLite connection
//! across awaits, so its future is not `Send`; it runs on a thread of its own
//! with a single-threaded runtime, which also keeps store I/O off the
//! consumer's threads. At shutdown it drains the outbox within a deadline.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The forwarder's sink settings from `[store]`.
pub fn sink_config(cfg: &Config) -> ingest::SinkConfig {
    let s = &cfg.store;
    let mut sink = ingest::SinkConfig::new(s.url.clone().unwrap_or_default());
    sink.org.clone_from(&s.org);
    sink.bucket.clone_from(&s.bucket);
    sink.token = s.token.as_ref().map(|t| t.expose().to_owned());
    sink.username.clone_from(&s.username);
    sink.password = s.password.as_ref().map(|p| p.expose().to_owned());
    sink.timeout = Duration::from_secs(s.timeout_s);
    sink.linger = Duration::from_millis(s.linger_ms);
    sink.deadletter_max_bytes = cfg.ingest.deadletter_max_bytes;
    sink
}

/// A running forwarder thread.
#[derive(Debug)]
pub struct ForwarderHandle {
    stop: CancellationToken,
    thread: std::thread::JoinHandle<()>,
    /// Wakes the forwarder when the outbox gets an entry.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// Whether the store refuses the gateway's writes, for `/health/ready`.
    pub status: std::sync::Arc<ingest::StoreStatus>,
}

/// Starts the forwarder on its own thread. Fails at once on a bad store
/// URL or an unopenable outbox.
pub fn spawn(cfg: &Config) -> anyhow::Result<ForwarderHandle> {
    let sink = sink_config(cfg);
    let forwarder = ingest::Forwarder::new(&cfg.data_dir, sink.clone())
        .context("cannot set up the store forwarder")?;
    let wake = forwarder.waker();
    let status = forwarder.status();
    let final_status = std::sync::Arc::clone(&status);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the forwarder's runtime")?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    let data_dir = cfg.data_dir.clone();
    let deadline = cfg.shutdown_timeout();
    let thread = std::thread::Builder::new()
        .name("forwarder".into())
        .spawn(move || {
            rt.block_on(async move {
                if let Err(e) = forwarder.run(token).await {
                    tracing::error!(error = %e, "forwarder stopped on a local error; the outbox keeps the data");
                    return;
                }
                // Shutdown: one last drain within the deadline.
                let mut f = match ingest::Forwarder::new(&data_dir, sink) {
                    Ok(f) => f.with_status(final_status),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot flush the outbox");
                        return;
                    }
                };
                match f.flush(deadline).await {
                    Ok(()) => tracing::info!("outbox flushed to the store"),
                    Err(e) => tracing::warn!(error = %e, "outbox not fully flushed; the rest goes at the next start"),
                }
            });
        })
        .context("cannot start the forwarder thread")?;
    Ok(ForwarderHandle {
        stop,
        thread,
        wake,
        status,
    })
}

impl ForwarderHandle {
    /// Stops forwarding, flushes the outbox within the shutdown timeout and
    /// waits for the thread.
    pub async fn stop_and_flush(self) {
        self.stop.cancel();
        let thread = self.thread;
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .map(|r| r.is_err())
            .unwrap_or(true)
        {
            tracing::error!("the forwarder thread panicked");
        }
    }
}

//! Process-wide observability setup: the `tracing` subscriber (text or JSON
//! lines on stderr) and the Prometheus recorder behind the `metrics` facade,
//! which both the gateway and the `ingest` library record into.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global `tracing` subscriber. `RUST_LOG` overrides `filter`.
/// A second call is a no-op (tests start several services in one process).
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Installs the Prometheus recorder once per process and returns the handle
/// that renders `/metrics`. Counters idle for `idle_timeout` (when given) are
/// dropped, which bounds the per-device series.
pub fn metrics_handle(
    idle_timeout: Option<std::time::Duration>,
) -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .idle_timeout(metrics_util::MetricKindMask::COUNTER, idle_timeout)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("batch_size".into()),
            &[
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            ],
        )?
        // Fine around the 5 ms aim of publish-to-durable.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                ingest::metrics::LOG_RECEIVE_TO_DURABLE.into(),
            ),
            &[
                0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.002_5, 0.003, 0.004, 0.005,
                0.007_5, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0,
            ],
        )?
        .set_buckets(&[
            0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0, 300.0,
        ])?
        .install_recorder()?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Folds recorded histogram samples into their buckets every few seconds.
/// Without it the exporter keeps every raw sample until the next scrape,
/// which under load and without a scraper grows without bound.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

fn describe() {
    metrics::describe_counter!(
        "mqtt_messages_received_total",
        "MQTT publishes received from the broker"
    );
    metrics::describe_counter!(
        "mqtt_acks_total",
        "PUBACKs sent, each after the message's batch committed"
    );
    metrics::describe_counter!(
        "mqtt_disconnects_total",
        "MQTT connection losses and refused connection attempts"
    );
    metrics::describe_counter!(
        "mqtt_stale_acks_skipped_total",
        "Acks not sent because the message arrived on an earlier connection (the broker redelivers it)"
    );
    metrics::describe_histogram!(
        "batch_size",
        "Messages per state transaction of the applier"
    );
    metrics::describe_counter!(
        "gateway_commit_retries_total",
        "Commits retried, by reason (backpressure: outbox full; failed: SQLite error; log: message log write or sync)"
    );
}

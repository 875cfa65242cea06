//! `gateway run`: wires the parts together and owns the shutdown order.
//!
//! Start: optional embedded broker, SQLite state and message log (a torn log
//! tail is truncated), forwarder (when a store is configured), applier, HTTP
//! server, MQTT consumer. Stop (SIGINT/SIGTERM): the consumer stops taking
//! messages, logs and acks what it holds and disconnects; the applier applies
//! what is logged; then the outbox is flushed to the store within
//! `shutdown_timeout_s`; then HTTP and the broker stop. A second signal exits
//! at once (nothing is lost: unacked messages stay with the broker).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consumer::{self, ConsumerConfig};
use crate::health::Health;
use crate::http::{self, AppState};
use crate::pipeline;
use crate::{broker, mqtt, telemetry};

/// Runs the service until SIGINT/SIGTERM (or `stop`, for embedding in tests),
/// then shuts down in order. `Ok` means a clean shutdown.
pub async fn run(cfg: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let resolved = cfg.resolve()?;
    let idle = (cfg.metrics.idle_timeout_s > 0)
        .then(|| std::time::Duration::from_secs(cfg.metrics.idle_timeout_s));
    let metrics = telemetry::metrics_handle(idle)?;
    telemetry::spawn_upkeep(metrics.clone());
    ingest::metrics::describe();
    let health = Arc::new(Health::new());
    let shutdown = CancellationToken::new();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        broker = %format!("{}:{}", resolved.broker.host, resolved.broker.port),
        tls = resolved.broker.tls,
        client_id = %resolved.client_id,
        share_group = cfg.mqtt.share_group.as_deref().unwrap_or("-"),
        data_dir = %cfg.data_dir.display(),
        store = %cfg.store.url.as_deref().map_or_else(|| "-".to_owned(), crate::config::url_for_logs),
        "starting gateway"
    );

    let embedded = match resolved.embedded {
        Some(addr) => {
            let auth = resolved
                .broker_auth
                .clone()
                .unwrap_or_else(crate::config::BrokerAuth::anonymous);
            Some(broker::Embedded::start(addr, &cfg.data_dir, &auth).await?)
        }
        None => None,
    };

    let opened = {
        let owned = cfg.clone();
        tokio::task::spawn_blocking(move || pipeline::open_all(&owned)).await??
    };
    health.set_store_open(true);
    let progress = std::sync::Arc::clone(&opened.progress);
    health.set_log(
        std::sync::Arc::clone(&progress),
        cfg.ingest.log_max_backlog_bytes,
    );

    let hot_head = opened.hot_head.clone();
    let forwarder = match &cfg.store.url {
        Some(_) => Some(crate::forward::spawn(&cfg)?),
        None => None,
    };
    if let Some(f) = &forwarder {
        health.set_store_status(Arc::clone(&f.status));
    }
    let applier = pipeline::spawn_applier(
        &cfg,
        opened.pipeline,
        opened.reader,
        std::sync::Arc::clone(&progress),
        Arc::clone(&health),
        forwarder.as_ref().map(|f| Arc::clone(&f.wake)),
    )?;

    let store_query = store_source(&cfg)?;
    let http_stop = CancellationToken::new();
    let auth = api_auth(&cfg, &resolved);
    let app = http::router(AppState {
        health: Arc::clone(&health),
        metrics,
        reader: open_reader(&cfg).await,
        forwarding: cfg.store.url.is_some(),
        metrics_auth: auth.clone().filter(|_| cfg.http.metrics_require_token),
    })
    .merge(crate::api::router_with_auth(
        crate::api::ApiConfig {
            log: Some(std::sync::Arc::clone(&progress)),
            head: Some(hot_head),
            read_threads: cfg.http.api_read_threads,
            read_queue: cfg.http.api_read_queue,
            device_kinds: cfg.ingest.device_kinds.clone().into(),
            public_cache_s: cfg.public.http_enabled.then_some(cfg.public.cache_s),
            store: store_query.clone(),
            ..crate::api::ApiConfig::new(ingest::store::db_path(&cfg.data_dir))
        },
        auth,
    )?);
    let http_task = http::serve(resolved.http, app, http_stop.clone()).await?;

    // What the gateway publishes (alert notifications, the public AQI feed) goes out on
    // the consumer's connection through a bounded queue that never blocks.
    let (publisher, publications) = consumer::publisher(cfg.mqtt.publish_queue);
    let public_feed = {
        let public_cfg = cfg.public.clone();
        let ctx = crate::public::Context {
            data_dir: cfg.data_dir.clone(),
            head: Some(opened.hot_head.clone()),
            progress: Some(Arc::clone(&progress)),
            // In a share group each gateway's hot tier holds a part of the city: its AQI
            // would be partial, so there the AQI series are written only from the store.
            store_outbox_max_bytes: (cfg.public.store_enabled
                && cfg.store.url.is_some()
                && (cfg.mqtt.share_group.is_none() || store_query.is_some()))
            .then_some(cfg.ingest.outbox_max_bytes),
            source: store_query.clone(),
        };
        let publisher = publisher.clone();
        tokio::task::spawn_blocking(move || crate::public::spawn(&public_cfg, ctx, publisher))
            .await??
    };

    // Alert rules: a thread of their own, reading the hot tier read-only.
    let alerting = {
        let alerts_cfg = cfg.alerts.clone();
        let compiled = resolved.alerts.clone();
        let ctx = crate::alerts::Context {
            data_dir: cfg.data_dir.clone(),
            head: Some(opened.hot_head.clone()),
            health: Some(Arc::clone(&health)),
            progress: Some(Arc::clone(&progress)),
            external_url: cfg
                .alerts
                .external_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", resolved.http)),
            store: store_query.clone(),
        };
        let mut extra: Vec<Arc<dyn crate::alerts::notify::Notifier>> = Vec::new();
        if cfg.alerts.mqtt_enabled {
            extra.push(Arc::new(crate::alerts::notify::MqttNotifier::new(
                publisher.clone(),
                cfg.alerts.mqtt_topic.clone(),
                cfg.alerts.mqtt_district_fallback.clone(),
            )));
        }
        tokio::task::spawn_blocking(move || {
            crate::alerts::spawn(&alerts_cfg, &compiled, ctx, extra)
        })
        .await??
    };
    drop(publisher);

    spawn_signal_handler(stop, shutdown.clone(), Arc::clone(&health));

    let options = mqtt::options(&cfg, &resolved)?;
    let consumer_cfg = ConsumerConfig {
        filters: mqtt::filters(
            &cfg.ingest.routes,
            &cfg.ingest.status_routes,
            cfg.mqtt.share_group.as_deref(),
        ),
        state_filters: mqtt::state_filters(
            &cfg.ingest.status_routes,
            cfg.mqtt.share_group.as_deref(),
        ),
        max_messages: cfg.batch.max_messages,
        max_bytes: cfg.batch.max_bytes,
        linger: Duration::from_micros(cfg.batch.linger_us),
        receive_maximum: cfg.mqtt.receive_maximum,
        reconnect_min: Duration::from_millis(cfg.mqtt.reconnect_min_ms),
        reconnect_max: Duration::from_millis(cfg.mqtt.reconnect_max_ms),
        max_buffered: cfg.batch.max_buffered_messages,
        max_buffered_bytes: cfg.batch.max_buffered_bytes,
        max_backlog_bytes: cfg.ingest.log_max_backlog_bytes,
        outbox_limit: (cfg.store.url.is_some()
            && cfg.ingest.outbox_policy == ingest::OutboxPolicy::Block)
            .then_some(cfg.ingest.outbox_max_bytes),
    };
    let consumed = consumer::run(
        options,
        consumer_cfg,
        opened.log,
        std::sync::Arc::clone(&progress),
        Arc::clone(&health),
        publications,
        shutdown.clone(),
    )
    .await;
    if consumed.is_ok() {
        tracing::info!("MQTT consumer stopped: in-flight messages logged and acknowledged");
    }
    // Apply what is durable, then stop the applier.
    progress.request_stop();
    if tokio::task::spawn_blocking(move || applier.join())
        .await
        .map(|r| r.is_err())
        .unwrap_or(true)
    {
        tracing::error!("the applier thread panicked; the log keeps what it did not apply");
    }

    if let Some(a) = alerting {
        let _ = tokio::task::spawn_blocking(move || a.stop()).await;
    }
    if let Some(f) = public_feed {
        let _ = tokio::task::spawn_blocking(move || f.stop()).await;
    }

    if let Some(f) = forwarder {
        f.stop_and_flush().await;
    }

    http_stop.cancel();
    let _ = http_task.await;
    if let Some(b) = embedded {
        b.stop().await;
    }
    consumed?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The store as the API's query source, when `query.source` (resolved) says so.
fn store_source(cfg: &Config) -> anyhow::Result<Option<crate::api::store::StoreSource>> {
    if !cfg.query_from_store() {
        return Ok(None);
    }
    let Some(q) = cfg.store_query() else {
        return Ok(None);
    };
    let source = crate::api::store::StoreSource::new(q)?;
    // The URL without its user info: the credentials go in a header, never in a log.
    tracing::info!(
        store = %source.url(),
        "the API, dashboard and alert rules read the store (query.source): every gateway's readings and device state"
    );
    Ok(Some(source))
}

/// The API's authentication from the configured tokens, logged by count (the tokens
/// themselves never are).
pub(crate) fn api_auth(
    cfg: &Config,
    resolved: &crate::config::Resolved,
) -> Option<Arc<crate::api::auth::Auth>> {
    let tokens: Vec<&str> = resolved
        .http_tokens
        .iter()
        .map(crate::config::Secret::expose)
        .collect();
    let auth = crate::api::auth::Auth::new(&tokens);
    tracing::info!(
        api_tokens = resolved.http_tokens.len(),
        metrics_require_token = auth.is_some() && cfg.http.metrics_require_token,
        api_read_threads = cfg.http.api_read_threads,
        "{}",
        if auth.is_some() {
            "HTTP API and dashboard require a token"
        } else {
            "HTTP API and dashboard are open (no token configured)"
        }
    );
    auth
}

/// A SIGTERM listener (none, logged, where it cannot be installed).
pub(crate) fn sigterm() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            None
        }
    }
}

/// Waits for SIGINT, SIGTERM (on `term`) or `stop`, and logs which came.
pub(crate) async fn first_signal(
    term: &mut Option<tokio::signal::unix::Signal>,
    stop: &CancellationToken,
) {
    let term_recv = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        () = term_recv => tracing::info!("SIGTERM: shutting down"),
        () = stop.cancelled() => tracing::info!("stop requested: shutting down"),
    }
}

/// First SIGINT/SIGTERM (or `stop`): graceful shutdown. Second: exit now.
fn spawn_signal_handler(stop: CancellationToken, shutdown: CancellationToken, health: Arc<Health>) {
    tokio::spawn(async move {
        let mut term = sigterm();
        first_signal(&mut term, &stop).await;
        health.set_shutting_down();
        shutdown.cancel();
        let again = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = again => {}
        }
        tracing::warn!("second signal: exiting now; unacknowledged messages stay with the broker");
        std::process::exit(130);
    });
}

async fn open_reader(cfg: &Config) -> Option<Arc<std::sync::Mutex<ingest::query::Reader>>> {
    let dir = cfg.data_dir.clone();
    match tokio::task::spawn_blocking(move || ingest::query::Reader::open(&dir)).await {
        Ok(Ok(r)) => Some(Arc::new(std::sync::Mutex::new(r))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot open a read connection; /health omits the outbox");
            None
        }
        Err(_) => None,
    }
}

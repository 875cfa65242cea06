//! The MQTT 5 consumer: ack-after-commit with group commit.
//!
//! Two tasks share one connection:
//! - the **event-loop task** polls rumqttc's `EventLoop` and does nothing
//!   else that could block on it: it forwards each publish over a channel
//!   (bounded in practice by the broker's in-flight window), tracks the connection (reconnect backoff, metrics, health) and
//!   subscribes again from a separate task when the broker lost the session.
//!   It never publishes, subscribes or acks itself: rumqttc's request channel
//!   is drained only by this task's `poll`, so a blocking send from it would
//!   deadlock.
//! - the **batcher** takes whatever has arrived (at least one message, at
//!   most the batch bounds), commits it on a blocking thread, and only then
//!   sends the PUBACKs, in arrival order, through the `AsyncClient`. Light
//!   traffic commits each message at once; under load, what arrived during a
//!   commit forms the next batch.
//!
//! A crash at any point loses nothing: what is not acked is redelivered by the
//! broker from the persistent session, and storage is idempotent. Acks of
//! messages received on an earlier connection are skipped: the broker
//! redelivers those on the new connection under the same packet ids, and a
//! stale ack could otherwise acknowledge a newer message that reused the id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest::message::Inbound;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::health::Health;

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store side cannot take more now (outbox full, policy `block`):
    /// nothing was committed; retry the same batch later without acking.
    #[error("back-pressure: {0}")]
    Backpressure(String),
    /// Anything else (SQLite I/O, disk full): nothing was committed; retry
    /// with backoff without acking.
    #[error("{0}")]
    Failed(String),
}

/// What a commit achieved, for logs and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Committed {
    /// Readings newly stored.
    pub readings: usize,
    /// Readings already stored (redeliveries).
    pub duplicates: usize,
    /// Messages or readings kept as dead letters.
    pub dead_letters: usize,
}

/// The durable side of the consumer: commits a batch in one transaction.
/// `Ok` means every message of the batch is durable and may be acked.
pub trait Committer: Send + 'static {
    /// Commits the batch atomically.
    fn commit(&mut self, batch: &[Inbound]) -> Result<Committed, CommitError>;
    /// Periodic housekeeping (retention) between batches.
    fn housekeeping(&mut self) -> Result<(), CommitError>;
}

/// Batching bounds and timing of the consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Topic filters to subscribe to (already `$share/`-prefixed if shared).
    pub filters: Vec<String>,
    /// Most messages per commit; capped at the receive maximum.
    pub max_messages: usize,
    /// Most payload bytes per commit (a single larger message still goes).
    pub max_bytes: usize,
    /// The Receive Maximum announced to the broker (in-flight window).
    pub receive_maximum: u16,
    /// Reconnect backoff bounds.
    pub reconnect_min: Duration,
    /// See `reconnect_min`.
    pub reconnect_max: Duration,
    /// Interval of [`Committer::housekeeping`].
    pub housekeeping_interval: Duration,
    /// Most messages received but not yet acked that the gateway holds in
    /// memory; beyond it, publishes are left unacked (see [`Shedding`]).
    pub max_buffered: usize,
}

/// Memory bound against brokers that ignore the Receive Maximum (Mosquitto
/// 2.0 delivers a whole queued session at once on reconnect): publishes
/// beyond `max_buffered` are not forwarded and not acked; once everything
/// forwarded is acked, the consumer reconnects and the broker redelivers the
/// shed messages from the persistent session. Nothing is lost; memory stays
/// bounded.
#[derive(Debug, Default)]
struct Shedding {
    /// Forwarded to the batcher and not yet acked.
    buffered: AtomicUsize,
    /// The batcher acked everything it had.
    drained: Notify,
}

/// One received message waiting for its commit and ack.
#[derive(Debug)]
struct Received {
    pkid: u16,
    qos: QoS,
    /// Connection generation it arrived on.
    generation: u64,
    inbound: Inbound,
}

/// Runs the consumer until `shutdown` is cancelled, then commits and acks
/// what was received and disconnects cleanly.
pub async fn run(
    options: MqttOptions,
    cfg: ConsumerConfig,
    committer: Box<dyn Committer>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The event loop must never wait on the batcher: while it waits it does
    // not drain rumqttc's request channel, the batcher's acks back up, and
    // both stop. So the forwarding channel is unbounded, and memory is
    // bounded by `max_buffered` instead (see `Shedding`). The request channel
    // holds the acks of a few batches.
    let window = usize::from(cfg.receive_maximum).max(1);
    let (client, eventloop) = AsyncClient::new(options, window * 2 + 64);
    let (tx, rx) = mpsc::unbounded_channel::<Received>();
    let generation = Arc::new(AtomicU64::new(0));
    let batcher_done = CancellationToken::new();
    let shedding = Arc::new(Shedding::default());

    let event_task = tokio::spawn(event_loop(
        eventloop,
        client.clone(),
        tx,
        cfg.clone(),
        Arc::clone(&generation),
        Arc::clone(&health),
        shutdown.clone(),
        batcher_done.clone(),
        Arc::clone(&shedding),
    ));
    let batch_result = batcher(
        rx,
        client,
        committer,
        cfg,
        generation,
        Arc::clone(&health),
        shutdown,
        shedding,
    )
    .await;
    batcher_done.cancel();
    let event_result = event_task.await;
    batch_result?;
    event_result??;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    tx: mpsc::UnboundedSender<Received>,
    cfg: ConsumerConfig,
    generation: Arc<AtomicU64>,
    health: Arc<Health>,
    shutdown: CancellationToken,
    batcher_done: CancellationToken,
    shedding: Arc<Shedding>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut subscribed_once = false;
    let mut last_error: Option<String> = None;
    // Messages left unacked on this connection because the buffer was full.
    let mut shed: u64 = 0;
    let mut reconnect_requested = false;
    loop {
        let event = tokio::select! {
            biased;
            () = batcher_done.cancelled() => break,
            () = shedding.drained.notified(), if shed > 0 && !reconnect_requested => {
                if shedding.buffered.load(Ordering::Acquire) == 0 {
                    // Every forwarded message is acked (those acks are queued
                    // ahead of the DISCONNECT): reconnect for the shed ones.
                    tracing::info!(shed, "buffer drained; reconnecting so the broker redelivers the messages left unacked");
                    reconnect_requested = client.try_disconnect().is_ok();
                }
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                metrics::counter!("mqtt_messages_received_total").increment(1);
                if shutdown.is_cancelled() {
                    // Not acked: the broker keeps it for the next session.
                    continue;
                }
                if shed > 0 || shedding.buffered.load(Ordering::Acquire) >= cfg.max_buffered {
                    if shed == 0 {
                        tracing::warn!(
                            buffered = cfg.max_buffered,
                            "the broker sends beyond the in-flight window; leaving further messages unacked until the buffer drains"
                        );
                    }
                    shed += 1;
                    metrics::counter!("mqtt_shed_total").increment(1);
                    continue;
                }
                shedding.buffered.fetch_add(1, Ordering::AcqRel);
                let received = received(p, generation.load(Ordering::Acquire));
                if tx.send(received).is_err() {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                shed = 0;
                reconnect_requested = false;
                health.set_mqtt_connected(true);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                last_error = None;
                // The first connection of this process subscribes even when
                // the session exists, so that changed routes take effect.
                if !subscribed_once || !ack.session_present {
                    subscribed_once = true;
                    health.set_subscribed(false);
                    let client = client.clone();
                    let filters = cfg.filters.clone();
                    tokio::spawn(async move {
                        let subs = filters
                            .iter()
                            .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce));
                        if let Err(e) = client.subscribe_many(subs).await {
                            tracing::error!(error = %e, "cannot queue the subscription");
                        }
                    });
                } else {
                    // The broker kept the session and its subscriptions.
                    health.set_subscribed(true);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let failed: Vec<_> = ack
                    .return_codes
                    .iter()
                    .filter(|c| {
                        !matches!(
                            c,
                            rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                        )
                    })
                    .collect();
                if failed.is_empty() {
                    health.set_subscribed(true);
                    tracing::info!(filters = ?cfg.filters, "subscribed");
                } else {
                    tracing::error!(codes = ?failed, filters = ?cfg.filters, "the broker refused a subscription");
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                tracing::warn!(reason = ?d.reason_code, "the broker sent DISCONNECT");
            }
            Ok(_) => {}
            Err(e) => {
                // Acks of what arrived on this connection are now stale.
                generation.fetch_add(1, Ordering::AcqRel);
                health.set_mqtt_connected(false);
                health.set_subscribed(false);
                metrics::counter!("mqtt_disconnects_total").increment(1);
                let delay = backoff.next_delay();
                let text = e.to_string();
                // One warning per distinct cause, not one per retry; our own
                // reconnect after shedding is routine.
                if reconnect_requested {
                    tracing::info!(
                        retry_in_ms = delay.as_millis() as u64,
                        "reconnecting to take the messages left unacked"
                    );
                } else if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, retry_in_ms = delay.as_millis() as u64, "MQTT connection lost or refused");
                    last_error = Some(text);
                } else {
                    tracing::debug!(error = %text, retry_in_ms = delay.as_millis() as u64, "MQTT reconnect failed");
                }
                tokio::select! {
                    () = batcher_done.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    // The batcher has sent its last acks into the request channel; DISCONNECT
    // queues behind them, so polling until it is out flushes the acks first.
    if health.mqtt_connected() && client.try_disconnect().is_ok() {
        let flushed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("DISCONNECT not sent within 5 s");
        }
    }
    health.set_mqtt_connected(false);
    Ok(())
}

fn received(p: Publish, generation: u64) -> Received {
    let topic = match String::from_utf8(p.topic.to_vec()) {
        Ok(t) => t,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Received {
        pkid: p.pkid,
        qos: p.qos,
        generation,
        inbound: Inbound {
            topic,
            payload: p.payload,
            received_at_ns: ingest::message::now_ns(),
        },
    }
}

/// The batch being assembled: payloads for the commit, packet ids for the
/// acks, in arrival order.
#[derive(Debug, Default)]
struct Pending {
    batch: Vec<Inbound>,
    acks: Vec<(u16, QoS, u64)>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, r: Received) {
        self.bytes += r.inbound.payload.len();
        self.acks.push((r.pkid, r.qos, r.generation));
        self.batch.push(r.inbound);
    }

    fn len(&self) -> usize {
        self.batch.len()
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    fn clear(&mut self) {
        self.batch.clear();
        self.acks.clear();
        self.bytes = 0;
    }
}

/// What the batcher owns besides the channel.
struct Batcher {
    client: AsyncClient,
    committer: Option<Box<dyn Committer>>,
    generation: Arc<AtomicU64>,
    health: Arc<Health>,
    retry: Backoff,
    shutdown: CancellationToken,
    shedding: Arc<Shedding>,
}

#[allow(clippy::too_many_arguments)] // the batcher's share of what `run` wires up
async fn batcher(
    mut rx: mpsc::UnboundedReceiver<Received>,
    client: AsyncClient,
    committer: Box<dyn Committer>,
    cfg: ConsumerConfig,
    generation: Arc<AtomicU64>,
    health: Arc<Health>,
    shutdown: CancellationToken,
    shedding: Arc<Shedding>,
) -> anyhow::Result<()> {
    let max_messages = cfg
        .max_messages
        .clamp(1, usize::from(cfg.receive_maximum).max(1));
    let mut housekeeping = tokio::time::interval(cfg.housekeeping_interval);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; retention at startup is wanted anyway.
    let mut b = Batcher {
        client,
        committer: Some(committer),
        generation,
        health,
        retry: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
        shutdown: shutdown.clone(),
        shedding,
    };
    let mut pending = Pending::default();
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            m = rx.recv() => m,
            _ = housekeeping.tick() => {
                b.housekeep().await?;
                continue;
            }
        };
        let Some(first) = first else { break };
        pending.push(first);
        while pending.len() < max_messages && pending.bytes < cfg.max_bytes {
            match rx.try_recv() {
                Ok(m) => pending.push(m),
                Err(_) => break,
            }
        }
        b.commit_and_ack(&mut pending).await?;
    }
    // Shutdown: what is already received gets committed and acked; anything
    // after that stays unacked in the broker's session.
    rx.close();
    while let Ok(m) = rx.try_recv() {
        pending.push(m);
        if pending.len() >= max_messages {
            b.commit_and_ack(&mut pending).await?;
        }
    }
    if !pending.is_empty() {
        b.commit_and_ack(&mut pending).await?;
    }
    Ok(())
}

impl Batcher {
    async fn housekeep(&mut self) -> anyhow::Result<()> {
        let Some(mut committer) = self.committer.take() else {
            anyhow::bail!("committer lost");
        };
        let (committer, result) = tokio::task::spawn_blocking(move || {
            let r = committer.housekeeping();
            (committer, r)
        })
        .await?;
        self.committer = Some(committer);
        if let Err(e) = result {
            tracing::warn!(error = %e, "retention pass failed; the next pass retries");
        }
        Ok(())
    }

    /// Commits `pending` (retrying until it commits, or until shutdown while
    /// the store side refuses), then acks it in arrival order and clears it.
    async fn commit_and_ack(&mut self, pending: &mut Pending) -> anyhow::Result<()> {
        let mut waited_since: Option<Instant> = None;
        let mut batch = std::mem::take(&mut pending.batch);
        loop {
            let Some(mut committer) = self.committer.take() else {
                anyhow::bail!("committer lost");
            };
            let (committer, back, result) = tokio::task::spawn_blocking(move || {
                let r = committer.commit(&batch);
                (committer, batch, r)
            })
            .await?;
            self.committer = Some(committer);
            batch = back;
            match result {
                Ok(done) => {
                    self.retry.reset();
                    self.health.set_store_ok(true);
                    self.health.record_commit(batch.len(), done.readings);
                    metrics::histogram!("batch_size").record(batch.len() as f64);
                    if let Some(since) = waited_since {
                        tracing::info!(
                            waited_ms = since.elapsed().as_millis() as u64,
                            "batch committed after waiting"
                        );
                    }
                    break;
                }
                Err(e) => {
                    let failed = matches!(e, CommitError::Failed(_));
                    let kind = if failed { "failed" } else { "backpressure" };
                    metrics::counter!("gateway_commit_retries_total", "reason" => kind)
                        .increment(1);
                    if failed {
                        self.health.set_store_ok(false);
                    }
                    if waited_since.is_none() {
                        waited_since = Some(Instant::now());
                        if failed {
                            tracing::error!(error = %e, messages = batch.len(), "commit failed; not acking, retrying");
                        } else {
                            tracing::warn!(error = %e, messages = batch.len(), "outbox full; not acking until the store catches up");
                        }
                    }
                    let delay = self.retry.next_delay();
                    tokio::select! {
                        () = self.shutdown.cancelled() => {
                            tracing::warn!(messages = batch.len(), "shutting down with an uncommitted batch; the broker redelivers it");
                            pending.clear();
                            return Ok(());
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        batch.clear();
        pending.batch = batch;
        pending.bytes = 0;
        let current = self.generation.load(Ordering::Acquire);
        let done = pending.acks.len();
        let mut acked = 0u64;
        let mut stale = 0u64;
        for (pkid, qos, generation) in pending.acks.drain(..) {
            if qos == QoS::AtMostOnce {
                continue;
            }
            if generation != current {
                stale += 1;
                continue;
            }
            let mut ack = Publish::new("", qos, Bytes::new(), None);
            ack.pkid = pkid;
            self.client.ack(&ack).await?;
            acked += 1;
        }
        metrics::counter!("mqtt_acks_total").increment(acked);
        if self.shedding.buffered.fetch_sub(done, Ordering::AcqRel) <= done {
            self.shedding.drained.notify_one();
        }
        if stale > 0 {
            metrics::counter!("mqtt_stale_acks_skipped_total").increment(stale);
            tracing::debug!(stale, "skipped acks of messages from a previous connection");
        }
        Ok(())
    }
}

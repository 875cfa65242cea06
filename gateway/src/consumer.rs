//! The MQTT 5 consumer: every PUBLISH is appended to the message log, and acknowledged
//! once a group commit has made it durable.
//!
//! Two parts share the work:
//! - the **event-loop task** owns the broker connection. It polls rumqttc's `EventLoop`,
//!   hands each publish to the log writer with the connection *generation* it arrived on,
//!   and sends the acknowledgements the writer hands back. It is the only place that knows
//!   which connection is current, so it checks every ack against it: an ack for a message
//!   of an earlier connection is dropped (the broker redelivers that message on the new
//!   connection, and a stale ack could acknowledge another message that reused the packet
//!   id there). rumqttc itself drops the acks still queued when a connection fails
//!   (`EventLoop::clean`), and the task queues acks only while it knows the connection is up.
//! - the **log writer** (a thread of its own: it blocks on `fdatasync`) takes what arrived
//!   (at least one message; up to `linger` for more, bounded by messages and bytes),
//!   appends it to the log, commits with one fdatasync, publishes the durable position to
//!   the applier, and returns the acks in arrival order. A redelivery of a message already
//!   in the log (DUP=1, same packet id, topic and payload; see [`ingest::log`]) is
//!   acknowledged without being logged again.
//!
//! **Back-pressure.** While the applier cannot commit (outbox full, policy `block`) or the
//! apply backlog is beyond `log_max_backlog_bytes`, the writer keeps logging what arrives
//! but holds the acks: the broker stops sending at the Receive Maximum and keeps the rest.
//! When the writer is slower than the broker, the bounded hand-off channel fills and the
//! event loop stops reading the connection (TCP back-pressure); nothing is shed.
//!
//! **Publishing.** The gateway publishes (alert notifications, the public AQI feed) on
//! this same connection through a [`Publisher`]: a bounded queue that the event-loop task
//! drains into rumqttc's request channel, a few at a time between polls and only while
//! connected and no acks wait to be sent. [`Publisher::publish`] never waits: when the
//! queue (or rumqttc's request channel) is full the message is dropped and counted
//! (`mqtt_publish_dropped_total`), so publishing never holds up ingestion or the acks.
//!
//! **Shutdown.** The event loop stops handing publishes to the writer (what arrives later
//! stays unacknowledged with the broker), the writer commits what it has and returns the
//! last acks, the event loop sends them and disconnects.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest::applier::Progress;
use ingest::log::{Appended, Arrival, LogWriter};
use ingest::metrics as m;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, RetainForwardRule};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use ingest::backoff::Backoff;

/// Group-commit bounds and connection timing of the consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Topic filters to subscribe to (already `$share/`-prefixed if shared).
    pub filters: Vec<String>,
    /// Those of `filters` that carry device state: their retained messages are wanted.
    pub state_filters: Vec<String>,
    /// Most messages per log commit.
    pub max_messages: usize,
    /// Most payload bytes per log commit (a single larger message still goes).
    pub max_bytes: usize,
    /// How long to wait for more messages before a commit.
    pub linger: Duration,
    /// The Receive Maximum announced to the broker (in-flight window).
    pub receive_maximum: u16,
    /// Reconnect backoff bounds.
    pub reconnect_min: Duration,
    /// See `reconnect_min`.
    pub reconnect_max: Duration,
    /// Messages received and not yet logged, at most.
    pub max_buffered: usize,
    /// Bytes (topics and payloads) received and not yet logged, at most.
    pub max_buffered_bytes: usize,
    /// Apply backlog beyond which acks are held.
    pub max_backlog_bytes: u64,
    /// The outbox limit when forwarding with policy `block`: acks are held while the
    /// outbox and the backlog that will go into it would not fit.
    pub outbox_limit: Option<u64>,
}

/// One received message on its way to the log.
#[derive(Debug)]
struct Received {
    pkid: u16,
    qos: QoS,
    dup: bool,
    retain: bool,
    /// Connection generation it arrived on.
    generation: u64,
    topic: Bytes,
    payload: Bytes,
    received_ns: i64,
    /// Its share of the buffer's byte bound, returned when the message is dropped
    /// (appended to the log).
    _bytes: tokio::sync::OwnedSemaphorePermit,
}

/// Most messages handed to the log writer at once. The event loop hands over what one
/// read of the socket brought (rumqttc parses a read's packets into a queue), so the writer
/// thread is woken once per read, not once per message.
const HANDOFF_BATCH: usize = 256;

/// An acknowledgement the writer releases: packet id and connection generation.
type Ack = (u16, u64);

/// One message to publish with QoS 1 on the consumer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// Payload (empty with `retain`: clears the topic's retained message).
    pub payload: Bytes,
    /// The broker keeps it as the topic's last value.
    pub retain: bool,
}

/// A handle that publishes on the consumer's connection without ever waiting: see the
/// module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: flume::Sender<Outgoing>,
}

impl Publisher {
    /// Queues `payload` for `topic` (QoS 1). False, and counted in
    /// `mqtt_publish_dropped_total`, when the queue is full or the consumer has stopped.
    pub fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        retain: bool,
    ) -> bool {
        let msg = Outgoing {
            topic: topic.into(),
            payload: payload.into(),
            retain,
        };
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(_) => {
                metrics::counter!("mqtt_publish_dropped_total").increment(1);
                false
            }
        }
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// The receiving end of a [`Publisher`], given to [`run`].
#[derive(Debug)]
pub struct Publications {
    rx: flume::Receiver<Outgoing>,
}

/// A publisher whose queue holds at most `capacity` messages, and its receiving end.
pub fn publisher(capacity: usize) -> (Publisher, Publications) {
    let (tx, rx) = flume::bounded(capacity.max(1));
    (Publisher { tx }, Publications { rx })
}

/// Most queued publications moved into rumqttc after each poll.
const PUBLISH_BATCH: usize = 16;

/// Runs the consumer until `shutdown` is cancelled, then logs and acknowledges what was
/// received and disconnects cleanly. What `publications` receives is published on the
/// same connection.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    options: MqttOptions,
    cfg: ConsumerConfig,
    log: LogWriter,
    progress: Arc<Progress>,
    health: Arc<Health>,
    publications: Publications,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let window = usize::from(cfg.receive_maximum).max(1);
    let (client, eventloop) = AsyncClient::new(options, window * 2 + 64);
    // Batches of at most HANDOFF_BATCH messages; the bound keeps about `max_buffered`.
    let (to_writer, from_loop) =
        flume::bounded::<Vec<Received>>((cfg.max_buffered / HANDOFF_BATCH).max(2));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Vec<Ack>>();
    let writer_cfg = cfg.clone();
    let writer_progress = Arc::clone(&progress);
    let writer = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || log_writer(log, from_loop, ack_tx, writer_cfg, &writer_progress))?;
    let result = event_loop(
        eventloop,
        client,
        to_writer,
        ack_rx,
        publications.rx,
        cfg,
        health,
        shutdown,
    )
    .await;
    // The event loop dropped its sender: the writer commits what is left and ends.
    let joined = tokio::task::spawn_blocking(move || writer.join()).await?;
    if joined.is_err() {
        anyhow::bail!("the log writer thread panicked");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    to_writer: flume::Sender<Vec<Received>>,
    mut acks: mpsc::UnboundedReceiver<Vec<Ack>>,
    publications: flume::Receiver<Outgoing>,
    cfg: ConsumerConfig,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut subscribed_once = false;
    let mut last_error: Option<String> = None;
    let mut generation: u64 = 0;
    let mut connected = false;
    let mut to_writer = Some(to_writer);
    let mut handoff: Vec<Received> = Vec::with_capacity(HANDOFF_BATCH);
    // The byte bound of what is received and not yet logged: one permit per byte.
    let byte_cap = cfg.max_buffered_bytes.clamp(1, u32::MAX as usize);
    let budget = Arc::new(tokio::sync::Semaphore::new(byte_cap));
    let received_total = metrics::counter!("mqtt_messages_received_total");
    // Acks the request channel had no room for; sent after the next poll.
    let mut unsent: VecDeque<u16> = VecDeque::new();
    let mut acks_open = true;
    let mut publishing = true;
    loop {
        // Hand over once rumqttc has no more parsed packets queued (the next poll would
        // wait for the socket), or at the batch bound. This waits when the writer is
        // behind: the connection is then not read (TCP back-pressure); the writer never
        // waits on this task.
        if !handoff.is_empty()
            && (eventloop.state.events.is_empty()
                || handoff.len() >= HANDOFF_BATCH
                || shutdown.is_cancelled())
            && let Some(tx) = &to_writer
        {
            hand_over(tx, &mut handoff).await?;
        }
        if shutdown.is_cancelled() && to_writer.take().is_some() {
            tracing::debug!("no longer logging new messages; finishing the last commit");
        }
        if !acks_open && unsent.is_empty() {
            break;
        }
        let event = tokio::select! {
            biased;
            batch = acks.recv(), if acks_open => {
                match batch {
                    Some(batch) => {
                        let mut stale = 0u64;
                        for (pkid, gen_) in batch {
                            if gen_ == generation && connected {
                                unsent.push_back(pkid);
                            } else {
                                stale += 1;
                            }
                        }
                        if stale > 0 {
                            metrics::counter!("mqtt_stale_acks_skipped_total").increment(stale);
                            tracing::debug!(stale, "skipped acks of messages from a previous connection");
                        }
                        send_acks(&client, &mut unsent);
                    }
                    None => acks_open = false,
                }
                continue;
            }
            () = shutdown.cancelled(), if to_writer.is_some() => continue,
            event = eventloop.poll() => event,
            // Only when the connection is idle; otherwise a few go after each poll.
            msg = publications.recv_async(), if publishing && connected && unsent.is_empty() && !shutdown.is_cancelled() => {
                match msg {
                    Ok(msg) => send_publication(&client, msg),
                    // Every publisher is gone.
                    Err(_) => publishing = false,
                }
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                received_total.increment(1);
                if to_writer.is_none() {
                    // Shutting down: not logged, not acked; the broker keeps it.
                    continue;
                }
                // A message larger than the whole bound takes all of it.
                let n = (p.topic.len() + p.payload.len()).clamp(1, byte_cap) as u32;
                let permit = match Arc::clone(&budget).try_acquire_many_owned(n) {
                    Ok(permit) => permit,
                    Err(_) => {
                        // Over the bound: hand over what is waiting (its bytes come back once
                        // logged) and stop reading the connection until they do.
                        if !handoff.is_empty()
                            && let Some(tx) = &to_writer
                        {
                            hand_over(tx, &mut handoff).await?;
                        }
                        metrics::counter!("mqtt_buffer_full_waits_total").increment(1);
                        tokio::select! {
                            permit = Arc::clone(&budget).acquire_many_owned(n) => permit
                                .map_err(|_| anyhow::anyhow!("the buffer's byte bound was closed"))?,
                            // Stopping while the log cannot take more (a full disk): this
                            // message is neither logged nor acknowledged; the broker keeps it.
                            () = shutdown.cancelled() => continue,
                        }
                    }
                };
                let r = Received {
                    _bytes: permit,
                    pkid: p.pkid,
                    qos: p.qos,
                    dup: p.dup,
                    retain: p.retain,
                    generation,
                    topic: p.topic,
                    payload: p.payload,
                    received_ns: ingest::message::now_ns(),
                };
                handoff.push(r);
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                connected = true;
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
                    let filters = subscription_filters(&cfg.filters, &cfg.state_filters);
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe_many(filters).await {
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
                // Acks of what arrived on this connection are now stale; rumqttc has
                // dropped the ones it still had queued.
                generation += 1;
                connected = false;
                unsent.clear();
                health.set_mqtt_connected(false);
                health.set_subscribed(false);
                metrics::counter!("mqtt_disconnects_total").increment(1);
                if shutdown.is_cancelled() {
                    // Nothing more can be acknowledged; the broker redelivers the rest.
                    acks_open = false;
                    continue;
                }
                let delay = backoff.next_delay();
                let text = e.to_string();
                // One warning per distinct cause, not one per retry.
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, retry_in_ms = delay.as_millis() as u64, "MQTT connection lost or refused");
                    last_error = Some(text);
                } else {
                    tracing::debug!(error = %text, retry_in_ms = delay.as_millis() as u64, "MQTT reconnect failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
        send_acks(&client, &mut unsent);
        if connected && unsent.is_empty() && !shutdown.is_cancelled() {
            for msg in publications.try_iter().take(PUBLISH_BATCH) {
                send_publication(&client, msg);
            }
        }
    }
    // The last acks are queued in the request channel; DISCONNECT queues behind them, so
    // polling until it is out flushes the acks first.
    if connected && client.try_disconnect().is_ok() {
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

/// Sends what `handoff` holds to the log writer (waiting while the writer is behind), and
/// leaves it empty for the next messages.
async fn hand_over(
    tx: &flume::Sender<Vec<Received>>,
    handoff: &mut Vec<Received>,
) -> anyhow::Result<()> {
    let batch = std::mem::replace(handoff, Vec::with_capacity(HANDOFF_BATCH));
    if tx.send_async(batch).await.is_err() {
        anyhow::bail!("the log writer stopped");
    }
    Ok(())
}

/// Subscriptions with their retained-message rule: readings filters never get retained
/// messages (a retained reading is the topic's last value, not a new reading); the device
/// state filters (status, meta, the foreign formats' wills) get them at every subscribe
/// (the device's last known state).
fn subscription_filters(filters: &[String], state: &[String]) -> Vec<Filter> {
    filters
        .iter()
        .map(|f| {
            let mut filter = Filter::new(f.clone(), QoS::AtLeastOnce);
            // The gateway's own publications (alerts, the AQI feed) never come back to it.
            // (No Local is a protocol error on a shared subscription; there the topics
            // are checked not to overlap, see `crate::public::check_topics`.)
            filter.nolocal = !f.starts_with("$share/");
            filter.retain_forward_rule = if state.contains(f) {
                RetainForwardRule::OnEverySubscribe
            } else {
                RetainForwardRule::Never
            };
            filter
        })
        .collect()
}

/// Queues acks into rumqttc's request channel without waiting (this task drains it by
/// polling); what does not fit waits for the next round.
fn send_acks(client: &AsyncClient, unsent: &mut VecDeque<u16>) {
    let mut sent = 0u64;
    while let Some(&pkid) = unsent.front() {
        let mut ack = Publish::new("", QoS::AtLeastOnce, Bytes::new(), None);
        ack.pkid = pkid;
        if client.try_ack(&ack).is_err() {
            break;
        }
        unsent.pop_front();
        sent += 1;
    }
    if sent > 0 {
        metrics::counter!("mqtt_acks_total").increment(sent);
    }
}

/// Queues one publication into rumqttc's request channel without waiting; dropped and
/// counted when it is full.
fn send_publication(client: &AsyncClient, msg: Outgoing) {
    match client.try_publish(msg.topic, QoS::AtLeastOnce, msg.retain, msg.payload) {
        Ok(()) => metrics::counter!("mqtt_published_total").increment(1),
        Err(e) => {
            metrics::counter!("mqtt_publish_dropped_total").increment(1);
            tracing::debug!(error = %e, "publication dropped: the request channel is full");
        }
    }
}

/// The log writer thread: group commits, then acks in arrival order (held under
/// back-pressure), and deletion of applied segments.
fn log_writer(
    mut log: LogWriter,
    rx: flume::Receiver<Vec<Received>>,
    acks: mpsc::UnboundedSender<Vec<Ack>>,
    cfg: ConsumerConfig,
    progress: &Progress,
) {
    let mut held: Vec<Ack> = Vec::new();
    let mut pending: Vec<Ack> = Vec::new();
    let mut retry = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut released_at = 0u64;
    let mut open = true;
    let mut holding_since: Option<Instant> = None;
    // Receipt times of the messages in the commit being assembled.
    let mut received: Vec<i64> = Vec::new();
    loop {
        // Wait for the first hand-off (waking now and then to release held acks and applied
        // segments), then take more until the linger passes or a bound is reached. A
        // deadline already past takes only what is queued.
        let mut batch_bytes = 0usize;
        let mut messages = 0usize;
        let mut deadline = Instant::now() + Duration::from_millis(50);
        while open && messages < cfg.max_messages && batch_bytes < cfg.max_bytes {
            match rx.recv_deadline(deadline) {
                Ok(batch) => {
                    if messages == 0 {
                        deadline = Instant::now() + cfg.linger;
                    }
                    for r in &batch {
                        append(&mut log, r, &mut pending, &mut received);
                        batch_bytes += r.payload.len();
                        messages += 1;
                    }
                }
                Err(flume::RecvTimeoutError::Timeout) => break,
                Err(flume::RecvTimeoutError::Disconnected) => open = false,
            }
        }
        if messages > 0 {
            let started = Instant::now();
            loop {
                match log.commit() {
                    Ok(durable) => {
                        if progress.log_error().is_some() {
                            tracing::info!("message log commits again; acknowledging");
                            progress.set_log_error(None);
                        }
                        retry.reset();
                        progress.set_durable(durable);
                        break;
                    }
                    Err(e) => {
                        if progress.log_error().is_none() {
                            tracing::error!(error = %e, "message log commit failed (a full disk?); not acknowledging, retrying until it succeeds");
                        }
                        progress.set_log_error(Some(e.to_string()));
                        metrics::counter!("gateway_commit_retries_total", "reason" => "log")
                            .increment(1);
                        // Segments the state has applied since can go: on a full disk that
                        // may be the space this commit needs.
                        let synced = progress.synced();
                        if synced > released_at {
                            released_at = synced;
                            if let Err(e) = log.release(synced) {
                                tracing::warn!(error = %e, "cannot delete applied log segments");
                            }
                        }
                        if !open || rx.is_disconnected() {
                            // Shutting down with a failing disk: these stay unacknowledged
                            // and the broker redelivers them.
                            tracing::warn!(
                                messages = pending.len(),
                                "stopping with a log commit that failed; the broker keeps those messages"
                            );
                            return;
                        }
                        std::thread::sleep(retry.next_delay());
                    }
                }
            }
            metrics::histogram!(m::LOG_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
            let now = ingest::message::now_ns();
            let durable = metrics::histogram!(m::LOG_RECEIVE_TO_DURABLE);
            for t in received.drain(..) {
                durable.record(now.saturating_sub(t) as f64 / 1e9);
            }
            metrics::histogram!(m::LOG_COMMIT_MESSAGES).record(messages as f64);
            metrics::counter!(m::LOG_APPENDED).increment(messages as u64);
        }
        held.append(&mut pending);
        // Release acks unless the applier is held up or far behind.
        let applied = progress.applied();
        let backlog = log.backlog_bytes(applied);
        progress.set_backlog_bytes(backlog);
        metrics::gauge!(m::LOG_APPLY_LAG).set(log.durable_seq().saturating_sub(applied) as f64);
        // With policy `block`, what is logged and not applied yet will go into the outbox:
        // acknowledge only what fits, as the outbox itself would. Once the backlog is
        // applied, its acks go (what they stand for is in the outbox).
        let (outbox_entries, outbox_bytes) = progress.outbox();
        let outbox_full = cfg.outbox_limit.is_some_and(|limit| {
            backlog > 0 && outbox_entries > 0 && outbox_bytes + backlog > limit
        });
        let hold = progress.backpressure() || outbox_full || backlog > cfg.max_backlog_bytes;
        if hold && !held.is_empty() && open {
            if holding_since.is_none() {
                holding_since = Some(Instant::now());
                tracing::warn!(
                    backlog_bytes = backlog,
                    outbox_full = progress.backpressure() || outbox_full,
                    "holding acknowledgements: the applier is behind; the broker keeps further messages"
                );
            }
        } else if !held.is_empty() {
            if let Some(since) = holding_since.take() {
                tracing::info!(
                    held_ms = since.elapsed().as_millis() as u64,
                    acks = held.len(),
                    "releasing held acknowledgements"
                );
            }
            if acks.send(std::mem::take(&mut held)).is_err() {
                // The event loop is gone (connection closed at shutdown): the broker
                // redelivers, and the log recognises the redeliveries.
                held.clear();
            }
        }
        // Delete applied segments now and then.
        let synced = progress.synced();
        if synced > released_at {
            released_at = synced;
            match log.release(synced) {
                Ok(freed) if freed > 0 => tracing::debug!(freed, "message log segments deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot delete applied log segments"),
            }
            metrics::gauge!(m::LOG_DISK_BYTES).set(log.disk_bytes() as f64);
        }
        if !open {
            // Anything still held stays unacknowledged: the broker redelivers it and the
            // log recognises it.
            break;
        }
    }
}

fn append(log: &mut LogWriter, r: &Received, acks: &mut Vec<Ack>, received: &mut Vec<i64>) {
    received.push(r.received_ns);
    let qos = match r.qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    };
    let arrival = Arrival {
        topic: &r.topic,
        payload: &r.payload,
        qos,
        retain: r.retain,
        dup: r.dup,
        pkid: r.pkid,
        received_ns: r.received_ns,
    };
    if log.append(&arrival) == Appended::Redelivery {
        metrics::counter!(m::LOG_REDELIVERIES).increment(1);
    }
    if qos > 0 {
        acks.push((r.pkid, r.generation));
    }
}

//! `simulators record`: subscribe to a broker and stream every message (arrival time,
//! topic, payload, QoS, retain) into a capture file ([`crate::capture`]).
//!
//! The subscription asks for "retain as published", so retained messages published
//! while recording keep their retain flag, and replay can publish them retained again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::{AsyncClient, Event as MqttEvent};
use tokio::sync::{mpsc, oneshot, watch};

use crate::capture::{CaptureWriter, CapturedMessage};
use crate::net::{self, ClientSettings};
use crate::report::Counters;

/// Settings of a recording.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Broker address.
    pub broker: SocketAddr,
    /// Topic filters. Default `#`.
    pub filters: Vec<String>,
    /// Output capture file.
    pub output: PathBuf,
    /// Compress the body with zstd. Default true.
    pub compress: bool,
    /// Subscription QoS. Default 1.
    pub qos: u8,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
    /// Stop when nothing arrived for this long (after the first message).
    pub idle: Option<Duration>,
    /// MQTT client id. Default `simulators-record-<pid>`.
    pub client_id: String,
    /// Client settings.
    pub client: ClientSettings,
    /// No progress line.
    pub quiet: bool,
}

/// What a recording did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordReport {
    /// Messages written.
    pub messages: u64,
    /// Payload bytes received.
    pub payload_bytes: u64,
    /// Size of the capture file.
    pub file_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

fn qos_of(n: u8) -> Result<QoS> {
    Ok(match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => bail!("QoS must be 0, 1 or 2"),
    })
}

/// Records until a limit is reached or `stop` turns true. `ready` fires once the broker
/// has acknowledged the subscriptions: traffic published after that is captured.
pub async fn run(
    cfg: RecordConfig,
    mut stop: watch::Receiver<bool>,
    ready: Option<oneshot::Sender<()>>,
) -> Result<RecordReport> {
    let qos = qos_of(cfg.qos)?;
    let start_ns = u64::try_from(ingest::message::now_ns()).unwrap_or(0);
    let t0 = Instant::now();
    let mut writer = CaptureWriter::create(&cfg.output, start_ns, cfg.compress)
        .with_context(|| format!("create {}", cfg.output.display()))?;
    let (tx, mut rx) = mpsc::channel::<CapturedMessage>(8192);
    let write_task = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut last_flush = Instant::now();
        while let Some(m) = rx.blocking_recv() {
            writer.write(&m)?;
            if last_flush.elapsed() > Duration::from_secs(1) {
                writer.flush()?;
                last_flush = Instant::now();
            }
        }
        Ok(writer.finish()?)
    });

    let mut opts = net::mqtt_options(&cfg.client_id, cfg.broker, &cfg.client);
    opts.set_max_packet_size(Some(256 << 20));
    let (client, mut el) = AsyncClient::new(opts, 16);
    let counters = Arc::new(Counters::default());
    Counters::add(&counters.devices, 1);
    let progress = crate::report::Progress::start(counters.clone(), "record", cfg.quiet);
    let mut ready = ready;
    let mut payload_bytes = 0u64;
    let deadline = cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let mut last_msg: Option<tokio::time::Instant> = None;
    let result: Result<()> = async {
        loop {
            let idle_at = match (cfg.idle, last_msg) {
                (Some(i), Some(l)) => Some(l + i),
                _ => None,
            };
            let wake = [deadline, idle_at].into_iter().flatten().min();
            let ev = tokio::select! {
                ev = el.poll() => ev,
                _ = stop.changed() => return Ok(()),
                _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => return Ok(()),
            };
            match ev {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    counters.connected();
                    let filters = cfg.filters.iter().map(|f| {
                        let mut filter = Filter::new(f.clone(), qos);
                        filter.preserve_retain = true;
                        filter
                    });
                    client.subscribe_many(filters).await.context("subscribe")?;
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                    if let Some(code) = ack.return_codes.iter().find(|c| {
                        !matches!(
                            c,
                            rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                        )
                    }) {
                        bail!("broker refused the subscription: {code:?}");
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let offset_ns = t0.elapsed().as_nanos() as u64;
                    let topic = String::from_utf8(p.topic.to_vec()).context("topic is not UTF-8")?;
                    payload_bytes += p.payload.len() as u64;
                    Counters::add(&counters.received, 1);
                    let msg = CapturedMessage { offset_ns, topic, payload: p.payload.to_vec(), qos: p.qos as u8, retain: p.retain };
                    if tx.send(msg).await.is_err() {
                        bail!("capture writer stopped");
                    }
                    last_msg = Some(tokio::time::Instant::now());
                    if cfg.max_messages.is_some_and(|m| Counters::get(&counters.received) >= m) {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    Counters::add(&counters.errors, 1);
                    if Counters::get(&counters.connected) > 0 {
                        counters.disconnected();
                    }
                    if Counters::get(&counters.connects) == 0 {
                        // Never connected: the broker address is wrong; say so instead of retrying forever.
                        bail!("cannot connect to {}: {e}", cfg.broker);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    .await;
    let _ = client.disconnect().await;
    drop(tx);
    let messages = write_task.await.context("capture writer panicked")??;
    progress.finish();
    result?;
    let file_bytes = std::fs::metadata(&cfg.output).map(|m| m.len()).unwrap_or(0);
    Ok(RecordReport {
        messages,
        payload_bytes,
        file_bytes,
        elapsed: t0.elapsed(),
    })
}

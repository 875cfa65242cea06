//! `simulators replay`: publish a capture again, with its original timing, N times
//! faster, or as fast as possible, optionally multiplied into K clones per device with
//! new ids in topics and payloads ([`crate::wire::rewrite`]).
//!
//! With one connection (the default) messages reach the broker in exactly the recorded
//! order. With `--per-device`, every (clone of a) device gets its own client, as in the
//! field: each device's messages stay in order, but devices interleave freely.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, ConnectionError, Event as MqttEvent};
use tokio::sync::{mpsc, watch};

use crate::capture::{CaptureReader, CapturedMessage};
use crate::device::SentReading;
use crate::manifest::ManifestWriter;
use crate::net::{self, ClientSettings};
use crate::report::{Counters, ResourceUsage};
use crate::wire;

/// Replay pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// The recorded gaps divided by this factor (1.0 = original timing).
    Speed(f64),
    /// No waiting.
    Max,
}

/// Settings of a replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Broker address.
    pub broker: SocketAddr,
    /// Capture file.
    pub input: PathBuf,
    /// Pacing.
    pub pace: Pace,
    /// Copies of each device (1 = as recorded; clone k >= 2 gets id `{id}-k{k-1}`).
    pub clones: usize,
    /// One client per device instead of one connection for everything.
    pub per_device: bool,
    /// Manifest of the readings sent.
    pub manifest: Option<PathBuf>,
    /// Client settings.
    pub client: ClientSettings,
    /// Client id of the single connection. Default `simulators-replay-<pid>`.
    pub client_id: String,
    /// No progress line.
    pub quiet: bool,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// Messages read from the capture.
    pub captured: u64,
    /// Messages published (clones included).
    pub published: u64,
    /// Readings published, as far as the formats are known.
    pub readings: u64,
    /// PUBACKs.
    pub acked: u64,
    /// Errors.
    pub errors: u64,
    /// Clients used.
    pub clients: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// CPU seconds.
    pub cpu_s: f64,
    /// Peak memory.
    pub peak_rss: u64,
}

struct Client {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    pending: Arc<AtomicU64>,
}

fn connect(
    id: &str,
    addr: SocketAddr,
    settings: &ClientSettings,
    counters: &Arc<Counters>,
) -> Client {
    let opts = net::mqtt_options(id, addr, settings);
    let (client, mut el) = AsyncClient::new(opts, 256);
    let pending = Arc::new(AtomicU64::new(0));
    let (c, p) = (counters.clone(), pending.clone());
    let task = tokio::spawn(async move {
        let mut up = false;
        loop {
            match el.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    up = true;
                    c.connected();
                }
                Ok(MqttEvent::Incoming(Packet::PubAck(_))) => {
                    Counters::add(&c.acked, 1);
                    p.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => break,
                Err(_) => {
                    Counters::add(&c.errors, 1);
                    if up {
                        up = false;
                        c.disconnected();
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if up {
            c.disconnected();
        }
    });
    Client {
        client,
        task,
        pending,
    }
}

impl Client {
    async fn close(self) {
        let t0 = Instant::now();
        while self.pending.load(Ordering::Relaxed) > 0 && t0.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn qos_of(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

use ingest::message::now_ns as unix_ns;

type Rows = Vec<(String, SentReading)>;

/// The messages one captured message becomes: itself, then its clones.
fn expand(m: &CapturedMessage, clones: usize) -> Vec<(Option<String>, String, Vec<u8>)> {
    let device = wire::origin(&m.topic).map(|o| o.device.to_owned());
    let mut out = vec![(device.clone(), m.topic.clone(), m.payload.clone())];
    if let Some(dev) = device {
        for k in 1..clones {
            let id = wire::clone_id(&dev, k);
            if let Some((t, p)) = wire::rewrite(&m.topic, &m.payload, &id) {
                out.push((Some(id), t, p));
            }
        }
    }
    out
}

/// Replays a capture.
pub async fn run(cfg: ReplayConfig, mut stop: watch::Receiver<bool>) -> Result<ReplayReport> {
    let mut reader =
        CaptureReader::open(&cfg.input).with_context(|| format!("open {}", cfg.input.display()))?;
    let counters = Arc::new(Counters::default());
    let (mtx, writer) = match &cfg.manifest {
        Some(p) => {
            let mut w = ManifestWriter::create(p)
                .with_context(|| format!("create manifest {}", p.display()))?;
            let (tx, mut rx) = mpsc::channel::<(Rows, i64)>(4096);
            let h = tokio::task::spawn_blocking(move || -> Result<u64> {
                while let Some((rows, sent)) = rx.blocking_recv() {
                    for (dev, r) in &rows {
                        w.write(dev, r, sent)?;
                    }
                }
                Ok(w.finish()?)
            });
            (Some(tx), Some(h))
        }
        None => (None, None),
    };
    let progress = crate::report::Progress::start(counters.clone(), "replay", cfg.quiet);
    let usage0 = ResourceUsage::now();
    let t0 = Instant::now();
    let wall0 = tokio::time::Instant::now();
    let mut single: Option<Client> = None;
    let mut per_device: HashMap<String, Client> = HashMap::new();
    let mut first_offset: Option<u64> = None;
    let mut captured = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(m) = reader.next_message().context("read capture")? else {
            break;
        };
        captured += 1;
        let base = *first_offset.get_or_insert(m.offset_ns);
        if let Pace::Speed(f) = cfg.pace {
            let at = wall0
                + Duration::from_secs_f64((m.offset_ns - base.min(m.offset_ns)) as f64 / 1e9 / f);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop.changed() => break,
            }
        }
        for (device, topic, payload) in expand(&m, cfg.clones.max(1)) {
            let client = if cfg.per_device {
                let key = device.unwrap_or_else(|| cfg.client_id.clone());
                per_device.entry(key.clone()).or_insert_with(|| {
                    Counters::add(&counters.devices, 1);
                    connect(&key, cfg.broker, &cfg.client, &counters)
                })
            } else {
                single.get_or_insert_with(|| {
                    Counters::add(&counters.devices, 1);
                    connect(&cfg.client_id, cfg.broker, &cfg.client, &counters)
                })
            };
            let now_ms = unix_ns() / 1_000_000;
            let rows = if mtx.is_some() {
                wire::readings(&topic, &payload, now_ms)
            } else {
                Vec::new()
            };
            let qos = qos_of(m.qos);
            if qos != QoS::AtMostOnce {
                client.pending.fetch_add(1, Ordering::Relaxed);
            }
            let sent = unix_ns();
            if client
                .client
                .publish(topic, qos, m.retain, payload)
                .await
                .is_err()
            {
                Counters::add(&counters.errors, 1);
                continue;
            }
            Counters::add(&counters.messages, 1);
            Counters::add(&counters.readings, rows.len() as u64);
            if !rows.is_empty()
                && let Some(tx) = &mtx
            {
                let _ = tx.send((rows, sent)).await;
            }
        }
    }
    let clients = per_device.len() as u64 + u64::from(single.is_some());
    let mut closing: Vec<Client> = per_device.into_values().collect();
    closing.extend(single);
    let handles: Vec<_> = closing
        .into_iter()
        .map(|c| tokio::spawn(c.close()))
        .collect();
    for h in handles {
        let _ = h.await;
    }
    drop(mtx);
    if let Some(h) = writer {
        h.await.context("manifest writer panicked")??;
    }
    progress.finish();
    let usage = ResourceUsage::now();
    Ok(ReplayReport {
        captured,
        published: Counters::get(&counters.messages),
        readings: Counters::get(&counters.readings),
        acked: Counters::get(&counters.acked),
        errors: Counters::get(&counters.errors),
        clients,
        elapsed: t0.elapsed(),
        cpu_s: usage.cpu_since(&usage0),
        peak_rss: usage.peak_rss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_clones_known_devices_only() {
        let m = CapturedMessage {
            offset_ns: 0,
            topic: "tele/aq-0001/SENSOR".into(),
            payload: b"{}".to_vec(),
            qos: 1,
            retain: false,
        };
        let e = expand(&m, 3);
        let topics: Vec<_> = e.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(
            topics,
            [
                "tele/aq-0001/SENSOR",
                "tele/aq-0001-k1/SENSOR",
                "tele/aq-0001-k2/SENSOR"
            ]
        );
        let other = CapturedMessage {
            topic: "x/y".into(),
            ..m
        };
        assert_eq!(expand(&other, 3).len(), 1);
    }
}

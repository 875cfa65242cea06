//! One QoS 1 publisher for every suite: publishes a stream of messages into a
//! broker and returns once the broker acknowledged every one (a PUBACK each).
//!
//! The MQTT event loop is polled on its own runtime thread while the messages
//! are handed over, so neither waits for the other: a stream larger than the
//! client's request channel does not stall, and an iterator that paces itself
//! (or records send times) sees the real send moments.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

use crate::error::{HarnessError, Result};

/// How to publish. `Default`: as fast as the broker takes them, 4 minutes for
/// every PUBACK to arrive.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// At most this many messages per second. Default: `None`, no pacing.
    pub rate: Option<f64>,
    /// Bound on the whole run, from the first publish to the last PUBACK.
    /// Default: 240 s.
    pub timeout: Duration,
    /// The largest packet the client sends or accepts. Default: 4 MiB.
    pub max_packet_bytes: u32,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            rate: None,
            timeout: Duration::from_secs(240),
            max_packet_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Publishes `messages` (topic, payload) with QoS 1 as `client_id` to the broker
/// at `host:port` and returns how many, once the broker acknowledged all of them.
pub fn publish(
    host: &str,
    port: u16,
    messages: impl IntoIterator<Item = (String, Vec<u8>)>,
    client_id: &str,
) -> Result<u64> {
    publish_with(host, port, messages, client_id, &PublishOptions::default())
}

/// [`publish`] with [`PublishOptions`].
pub fn publish_with(
    host: &str,
    port: u16,
    messages: impl IntoIterator<Item = (String, Vec<u8>)>,
    client_id: &str,
    options: &PublishOptions,
) -> Result<u64> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| HarnessError::io("start a runtime for the publisher", e))?;
    let fail = |detail: String| HarnessError::Mqtt {
        client_id: client_id.to_owned(),
        detail,
    };
    rt.block_on(async {
        let mut o = MqttOptions::new(client_id, host, port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_outgoing_inflight_upper_limit(500)
            .set_max_packet_size(Some(options.max_packet_bytes));
        let (client, mut events) = AsyncClient::new(o, 1000);
        // How many to wait for: known only once the stream ends.
        let (total_tx, mut total_rx) = tokio::sync::watch::channel(None::<u64>);
        let poller = tokio::spawn(async move {
            let mut acked = 0u64;
            loop {
                if total_rx.borrow_and_update().is_some_and(|t| acked >= t) {
                    return Ok(events);
                }
                tokio::select! {
                    event = events.poll() => match event {
                        Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                        Ok(_) => {}
                        Err(e) => return Err(format!("connection failed after {acked} acks: {e}")),
                    },
                    _ = total_rx.changed() => {}
                }
            }
        });
        let started = Instant::now();
        let mut sent = 0u64;
        for (topic, payload) in messages {
            if let Some(rate) = options.rate {
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            if poller.is_finished() {
                break;
            }
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| fail(format!("publish {sent}: {e}")))?;
            sent += 1;
        }
        let _ = total_tx.send(Some(sent));
        let left = options.timeout.saturating_sub(started.elapsed());
        let mut events = tokio::time::timeout(left, poller)
            .await
            .map_err(|_| {
                fail(format!(
                    "not every one of {sent} publishes acknowledged within {:?}",
                    options.timeout
                ))
            })?
            .map_err(|e| fail(format!("event loop task: {e}")))?
            .map_err(fail)?;
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while events.poll().await.is_ok() {}
        })
        .await;
        Ok(sent)
    })
}

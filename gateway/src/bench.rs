//! Load generation for the end-to-end benchmarks and the tests: bursts (or a
//! paced stream) of Tasmota or SenML-CBOR messages (5 readings each) published
//! with QoS 1 into a broker, each reading with a distinct (device, metric, time)
//! so that the hot tier must end up with exactly `messages * 5` rows.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use schemas::senml::{Record, cbor};

use crate::cli::BenchArgs;
use crate::config::BrokerUrl;

/// Readings per generated message.
pub const READINGS_PER_MESSAGE: u64 = 5;

/// Payload format of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFormat {
    /// `tele/<device>/SENSOR` Tasmota JSON.
    Tasmota,
    /// `city/hoan-kiem/airquality/<device>/up` SenML-CBOR.
    Senml,
}

/// A burst: `messages` messages spread round-robin over `devices` devices,
/// one second apart per device (see [`Load::every`]), ending about a minute
/// before `now`.
#[derive(Debug, Clone)]
pub struct Load {
    /// Payload format.
    pub format: LoadFormat,
    /// Messages in the burst.
    pub messages: u64,
    /// Distinct devices.
    pub devices: u32,
    /// Unix seconds of each device's first message.
    pub base_unix_s: i64,
    /// Seconds between two messages of one device.
    pub interval_s: i64,
    /// Device-name prefix (distinct per test so runs never collide).
    pub prefix: String,
}

impl Load {
    /// A burst whose timestamps all lie in the last hours (inside retention,
    /// not in the future).
    pub fn new(format: LoadFormat, messages: u64, devices: u32, prefix: &str) -> Self {
        let devices = devices.max(1);
        let per_device = messages.div_ceil(u64::from(devices));
        let now = ingest::message::now_ns() / 1_000_000_000;
        Self {
            format,
            messages,
            devices,
            base_unix_s: now - i64::try_from(per_device).unwrap_or(i64::MAX / 2) - 60,
            interval_s: 1,
            prefix: prefix.to_owned(),
        }
    }

    /// The same burst with each device's messages `interval_s` seconds apart (a
    /// sensor's period), still ending about a minute before `now`: hours of history
    /// from few messages.
    pub fn every(mut self, interval_s: u32) -> Self {
        let interval_s = i64::from(interval_s.max(1));
        let span = i64::try_from(self.messages.div_ceil(u64::from(self.devices)))
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(interval_s);
        self.base_unix_s = ingest::message::now_ns() / 1_000_000_000 - span - 60;
        self.interval_s = interval_s;
        self
    }

    /// The device of message `i`.
    pub fn device(&self, i: u64) -> String {
        format!("{}{:05}", self.prefix, i % u64::from(self.devices))
    }

    /// Topic and payload of message `i`.
    pub fn message(&self, i: u64) -> (String, Vec<u8>) {
        let device = self.device(i);
        let k = i / u64::from(self.devices);
        let t = self.base_unix_s + i64::try_from(k).unwrap_or(0) * self.interval_s;
        let wave = (i % 17) as f64;
        let (temp, hum, pres, pm25, pm10) = (
            24.0 + wave / 4.0,
            60.0 + wave,
            1005.0 + wave / 2.0,
            20.0 + wave * 3.0,
            40.0 + wave * 4.0,
        );
        match self.format {
            LoadFormat::Tasmota => {
                // Tasmota's Time is local time without zone; the gateway's
                // default offset is +07:00.
                let local = t + 7 * 3600;
                let payload = format!(
                    "{{\"Time\":\"{}\",\"BME280\":{{\"Temperature\":{temp:.1},\"Humidity\":{hum:.1},\"Pressure\":{pres:.1}}},\"PMS5003\":{{\"PM2.5\":{pm25:.0},\"PM10\":{pm10:.0}}},\"TempUnit\":\"C\"}}",
                    iso_local(local)
                );
                (format!("tele/{device}/SENSOR"), payload.into_bytes())
            }
            LoadFormat::Senml => {
                let bn = format!("{device}:");
                let unit = |n: &str| schemas::catalog::lookup(n).map(|m| m.unit).unwrap_or("");
                let mut records = [
                    Record::measurement("pm25", unit("pm25"), pm25),
                    Record::measurement("pm10", unit("pm10"), pm10),
                    Record::measurement("temperature", unit("temperature"), temp),
                    Record::measurement("relativeHumidity", unit("relativeHumidity"), hum),
                    Record::measurement("pressure", unit("pressure"), pres),
                ];
                records[0].base_name = Some(&bn);
                records[0].base_time = Some(t as f64);
                records[0].seq = u32::try_from(k).ok();
                let mut buf = [0u8; 512];
                let n = cbor::encode(&records, &mut buf).unwrap_or(0);
                (
                    format!("city/hoan-kiem/airquality/{device}/up"),
                    buf[..n].to_vec(),
                )
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds (the shape of Tasmota's `Time`).
pub fn iso_local(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Publishes messages `range` of `load` with QoS 1 and waits until the
/// broker acknowledged all of them. Returns the time it took.
pub async fn publish_range(
    host: &str,
    port: u16,
    client_id: &str,
    load: &Load,
    range: std::ops::Range<u64>,
) -> anyhow::Result<Duration> {
    publish_at(host, port, client_id, load, range, None).await
}

/// Publishes messages `range` of `load` with QoS 1 at a steady `per_second`
/// (message `n` of the range not before `n / per_second` seconds after the
/// start, whatever the earlier ones took: no drift) and waits until the broker
/// acknowledged all of them. Returns the time it took.
pub async fn publish_paced(
    host: &str,
    port: u16,
    client_id: &str,
    load: &Load,
    range: std::ops::Range<u64>,
    per_second: f64,
) -> anyhow::Result<Duration> {
    publish_at(host, port, client_id, load, range, Some(per_second)).await
}

async fn publish_at(
    host: &str,
    port: u16,
    client_id: &str,
    load: &Load,
    range: std::ops::Range<u64>,
    per_second: Option<f64>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_outgoing_inflight_upper_limit(500);
    let (client, mut events) = AsyncClient::new(o, 1000);
    let expected = range.end.saturating_sub(range.start);
    let poller = tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < expected {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => anyhow::bail!("publisher connection failed after {acked} acks: {e}"),
            }
        }
        Ok(events)
    });
    let first = range.start;
    for i in range {
        if let Some(rate) = per_second.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64((i - first) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let (topic, payload) = load.message(i);
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
    }
    let mut events = poller.await??;
    client.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    Ok(started.elapsed())
}

/// `gateway bench`: publishes a burst and prints the publish rate. The drain
/// side is measured by `cargo bench -p gateway --bench e2e`.
pub async fn publish(args: &BenchArgs) -> anyhow::Result<()> {
    let url = BrokerUrl::parse(&args.mqtt).map_err(anyhow::Error::msg)?;
    let format = if args.format == "senml" {
        LoadFormat::Senml
    } else {
        LoadFormat::Tasmota
    };
    let load = Load::new(format, args.messages, args.devices, "bench-");
    let took = publish_range(
        &url.host,
        url.port,
        "gateway-bench-publisher",
        &load,
        0..args.messages,
    )
    .await?;
    let readings = args.messages * READINGS_PER_MESSAGE;
    println!(
        "published {} messages ({readings} readings) in {:.2} s: {:.0} messages/s",
        args.messages,
        took.as_secs_f64(),
        args.messages as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_distinct_and_decodable() {
        let load = Load::new(LoadFormat::Senml, 10, 3, "t-");
        let (topic, payload) = load.message(4);
        assert_eq!(topic, "city/hoan-kiem/airquality/t-00001/up");
        let records = cbor::decode_vec(&payload).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[0].base_name, Some("t-00001:"));
        assert_eq!(records[0].base_time, Some((load.base_unix_s + 1) as f64));
        let hourly = Load::new(LoadFormat::Senml, 10, 3, "t-").every(3600);
        let (_, payload) = hourly.message(4);
        let records = cbor::decode_vec(&payload).unwrap();
        assert_eq!(
            records[0].base_time,
            Some((hourly.base_unix_s + 3600) as f64)
        );
        let now = ingest::message::now_ns() / 1_000_000_000;
        assert!(hourly.base_unix_s + 3 * 3600 <= now);
        let tas = Load::new(LoadFormat::Tasmota, 10, 3, "t-");
        let (topic, payload) = tas.message(0);
        assert_eq!(topic, "tele/t-00000/SENSOR");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["PMS5003"]["PM2.5"], 20);
        assert_eq!(iso_local(1_767_600_000), "2026-01-05T08:00:00");
    }
}

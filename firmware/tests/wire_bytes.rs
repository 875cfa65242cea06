//! Bytes on the wire: what one 6-metric air-quality pack costs between a device and the
//! broker, measured on a real connection to Mosquitto through a counting TCP relay.
//!
//! The link maps the `up` topic to a topic alias on its first pack of each connection,
//! so later PUBLISH packets carry no topic name at all.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use firmware::{
    NodeConfig,
    host::{Fleet, HostConfig, Synthetic},
};
use schemas::topic::DeviceKind;
use tests::Mosquitto;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// One PUBLISH the device sent: total bytes on the wire, and its payload's share.
#[derive(Debug, Clone, Copy)]
struct Publish {
    retained: bool,
    total: usize,
    payload: usize,
}

/// Splits the device-to-broker byte stream into MQTT packets and keeps the PUBLISHes.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    publishes: Vec<Publish>,
}

impl Framer {
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some((header_len, remaining)) = fixed_header(&self.buf) {
            let total = header_len + remaining;
            if self.buf.len() < total {
                return;
            }
            let packet: Vec<u8> = self.buf.drain(..total).collect();
            if packet[0] >> 4 == 3 {
                self.publishes.push(parse_publish(&packet, header_len));
            }
        }
    }
}

/// (fixed header length, remaining length), once the whole fixed header is buffered.
fn fixed_header(buf: &[u8]) -> Option<(usize, usize)> {
    let (len_bytes, remaining) = varint(buf.get(1..)?)?;
    Some((1 + len_bytes, remaining))
}

/// An MQTT variable byte integer at the start of `buf`: (bytes it takes, value).
fn varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let b = *buf.get(i)?;
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((i + 1, value));
        }
    }
    None
}

fn parse_publish(packet: &[u8], header_len: usize) -> Publish {
    let flags = packet[0] & 0x0f;
    let qos = (flags >> 1) & 0x3;
    let mut at = header_len;
    let topic_len = usize::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
    at += 2 + topic_len;
    if qos > 0 {
        at += 2;
    }
    let (props_header, props_len) =
        fixed_header(&packet[at - 1..]).map_or((1, 0), |(h, r)| (h - 1, r));
    at += props_header + props_len;
    Publish {
        retained: flags & 1 == 1,
        total: packet.len(),
        payload: packet.len() - at,
    }
}

/// Relays one connection to `broker`, framing what the device sends.
async fn relay(broker: SocketAddr, framer: Arc<Mutex<Framer>>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let Ok((device, _)) = listener.accept().await else {
            return;
        };
        let Ok(upstream) = TcpStream::connect(broker).await else {
            return;
        };
        let (mut dev_rx, mut dev_tx) = device.into_split();
        let (mut up_rx, mut up_tx) = upstream.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut up_rx, &mut dev_tx).await;
        });
        let mut chunk = [0u8; 4096];
        while let Ok(n) = dev_rx.read(&mut chunk).await {
            if n == 0 || up_tx.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            if let Ok(mut f) = framer.lock() {
                f.feed(&chunk[..n]);
            }
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_metric_pack_costs_its_payload_plus_a_few_bytes() -> Result<()> {
    let broker = Mosquitto::start()?;
    let framer = Arc::new(Mutex::new(Framer::default()));
    let via = relay(
        SocketAddr::from(([127, 0, 0, 1], broker.port())),
        framer.clone(),
    )
    .await?;

    // Temperature, humidity, pressure, PM1, PM2.5, PM10, each sampled every 200 ms.
    let node = NodeConfig::new("aq-0001", "hoan-kiem", DeviceKind::AirQuality)?.with_period_s(1)?;
    let weather = Synthetic::new(200, 0, Synthetic::weather(1).channels(), 1);
    let particulates = Synthetic::new(200, 0, Synthetic::particulates(1).channels(), 2);
    let fleet = Fleet::spawn(vec![(HostConfig::new(node), (weather, particulates))], via)?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let packs = loop {
        let packs: Vec<Publish> = framer
            .lock()
            .map(|f| {
                f.publishes
                    .iter()
                    .filter(|p| !p.retained)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if packs.len() >= 4 {
            break packs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "too few packs: {packs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    fleet.stop().await;

    let first = packs.first().context("no pack")?;
    let topic = "city/hoan-kiem/airquality/aq-0001/up".len();
    // The first pack of a connection names the topic and maps the alias ...
    assert!(first.total - first.payload >= topic, "{first:?}");
    // ... the others carry the alias only: fixed header, packet id, alias property.
    for p in &packs[1..] {
        let overhead = p.total - p.payload;
        assert!(overhead <= 12, "PUBLISH overhead {overhead} bytes: {p:?}");
        assert!(
            (100..=200).contains(&p.payload),
            "6-metric pack of {} bytes",
            p.payload
        );
    }
    let steady = packs[1];
    println!(
        "6-metric pack: {} bytes SenML-CBOR, {} bytes as an MQTT 5 PUBLISH with topic alias \
         ({} bytes for the first of a connection)",
        steady.payload, steady.total, first.total
    );
    Ok(())
}

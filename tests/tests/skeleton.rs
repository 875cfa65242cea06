//! Walking skeleton, end to end on real services: a SenML-CBOR pack published
//! QoS 1 to a real Mosquitto is consumed, decoded with `schemas`, turned into
//! InfluxDB line protocol, written through the `influxdb2` crate into a real
//! VictoriaMetrics, and read back from its export API.
//!
//! The consumer path here is deliberately minimal and lives in the test; the
//! real one (validation, batching, SQLite outbox) belongs to `ingest` and
//! `gateway`.

use std::fmt::Write as _;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use schemas::senml::{Record, Resolver, Value, cbor};
use schemas::topic::{Channel, DeviceKind, Topic};
use tests::{Mosquitto, VictoriaMetrics};

const MQTT_WAIT: Duration = Duration::from_secs(30);
/// The pack's base time: a fixed past instant (2025-11-22T08:26:40Z), so the
/// test also shows that old timestamps are kept.
const BASE_TIME: f64 = 1_763_800_000.0;

/// What the device sends: the firmware's pack shape (base name `"{device}:"`,
/// base time and sequence number on the first record, catalog metric names).
fn device_pack() -> Vec<Record<'static>> {
    let mut first = Record::measurement("pm25", "ug/m3", 12.5);
    first.base_name = Some("aq-0001:");
    first.base_time = Some(BASE_TIME);
    first.seq = Some(7);
    let mut earlier_pm25 = Record::measurement("pm25", "ug/m3", 11.75);
    earlier_pm25.time = Some(-60.0);
    vec![
        first,
        Record::measurement("pm10", "ug/m3", 30.0),
        Record::measurement("temperature", "Cel", 29.25),
        Record::measurement("relativeHumidity", "%RH", 71.0),
        earlier_pm25,
    ]
}

/// The minimal consumer: topic and SenML-CBOR payload to line protocol, one
/// line per numeric reading: `metric,device=..,district=..,kind=.. value=V NS`.
fn to_line_protocol(topic: &str, payload: &[u8], received_unix: f64) -> anyhow::Result<String> {
    let topic = Topic::parse(topic).map_err(|e| anyhow::anyhow!("topic {topic:?}: {e:?}"))?;
    anyhow::ensure!(topic.channel == Channel::Up, "not a readings topic");
    // The device's base name is "{device}:"; what follows is the metric name.
    let prefix = format!("{}:", topic.device);
    let mut resolver = Resolver::new();
    let mut lines = String::new();
    for record in cbor::decode(payload).map_err(|e| anyhow::anyhow!("decode: {e:?}"))? {
        let record = record.map_err(|e| anyhow::anyhow!("decode record: {e:?}"))?;
        let r = resolver
            .resolve(&record)
            .map_err(|e| anyhow::anyhow!("resolve: {e:?}"))?;
        let full = r.full_name().to_string();
        let metric = full.strip_prefix(&prefix).unwrap_or(&full);
        anyhow::ensure!(
            schemas::catalog::lookup(metric).is_some(),
            "unknown metric {metric:?}"
        );
        let Some(Value::Float(value)) = r.value else {
            continue;
        };
        // VictoriaMetrics keeps milliseconds: round there, then scale to ns.
        let millis = (r.time.to_unix(received_unix) * 1000.0).round() as i64;
        // Tag values are slugs ([a-z0-9_-]) and metric names come from the
        // catalog, so nothing needs line-protocol escaping.
        writeln!(
            lines,
            "{metric},device={},district={},kind={} value={value} {}",
            topic.device,
            topic.district,
            topic.kind.as_str(),
            millis * 1_000_000
        )?;
    }
    anyhow::ensure!(resolver.seq() == Some(7), "sequence number lost");
    Ok(lines)
}

fn mqtt_client(broker: &Mosquitto, id: &str) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, broker.host(), broker.port());
    opts.set_keep_alive(Duration::from_secs(10));
    AsyncClient::new(opts, 16)
}

async fn next_matching<T>(
    events: &mut EventLoop,
    mut pick: impl FnMut(&Packet) -> Option<T>,
) -> anyhow::Result<T> {
    let found = tokio::time::timeout(MQTT_WAIT, async {
        loop {
            if let Event::Incoming(packet) = events.poll().await?
                && let Some(found) = pick(&packet)
            {
                return anyhow::Ok(found);
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no matching MQTT packet within {MQTT_WAIT:?}"))??;
    Ok(found)
}

#[tokio::test]
async fn senml_cbor_pack_goes_from_mosquitto_to_victoria_metrics() {
    let broker = Mosquitto::start().unwrap();
    let store = VictoriaMetrics::start().unwrap();

    // The consumer subscribes to every device's readings first.
    let (consumer, mut consumer_events) = mqtt_client(&broker, "skeleton-gateway");
    consumer
        .subscribe(Topic::UP_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    next_matching(&mut consumer_events, |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await
    .unwrap();

    // The device publishes one pack, QoS 1.
    let topic = Topic::new("hoan-kiem", DeviceKind::AirQuality, "aq-0001", Channel::Up)
        .unwrap()
        .to_string();
    assert_eq!(topic, "city/hoan-kiem/airquality/aq-0001/up");
    let mut buf = [0u8; 256];
    let len = cbor::encode(&device_pack(), &mut buf).unwrap();
    let (device, mut device_events) = mqtt_client(&broker, "aq-0001");
    device
        .publish(&topic, QoS::AtLeastOnce, false, buf[..len].to_vec())
        .await
        .unwrap();
    next_matching(&mut device_events, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await
    .unwrap();

    // The consumer receives it, converts it and writes it to the store.
    let (got_topic, payload) = next_matching(&mut consumer_events, |p| match p {
        Packet::Publish(p) => Some((
            String::from_utf8_lossy(&p.topic).into_owned(),
            p.payload.to_vec(),
        )),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(got_topic, topic);
    assert_eq!(payload, &buf[..len]);
    // The pack carries absolute times, so the receipt time must not matter.
    let lines = to_line_protocol(&got_topic, &payload, 2_000_000_000.0).unwrap();
    assert_eq!(lines.lines().count(), 5, "{lines}");
    let influx = influxdb2::Client::new(store.url(), "city", "test-token");
    influx
        .write_line_protocol("city", "telemetry", lines)
        .await
        .unwrap();

    // Read everything back from the store.
    store.force_flush().unwrap();
    let series = store
        .export(r#"{__name__=~".+_value", device="aq-0001"}"#)
        .unwrap();
    let names: Vec<&str> = series.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "pm10_value",
            "pm25_value",
            "relativeHumidity_value",
            "temperature_value"
        ],
        "{series:?}"
    );
    let t0 = (BASE_TIME * 1000.0) as i64;
    for s in &series {
        assert_eq!(s.label("device"), Some("aq-0001"));
        assert_eq!(s.label("district"), Some("hoan-kiem"));
        assert_eq!(s.label("kind"), Some("airquality"));
    }
    let points = |name: &str| {
        series
            .iter()
            .find(|s| s.name() == name)
            .map(|s| s.points())
            .unwrap_or_default()
    };
    assert_eq!(points("pm25_value"), [(t0 - 60_000, 11.75), (t0, 12.5)]);
    assert_eq!(points("pm10_value"), [(t0, 30.0)]);
    assert_eq!(points("temperature_value"), [(t0, 29.25)]);
    assert_eq!(points("relativeHumidity_value"), [(t0, 71.0)]);
}

#[test]
fn relative_times_are_stamped_at_receipt() {
    // A device without a clock omits `bt`: times are offsets from receipt.
    let mut pack = vec![Record::measurement("LAeq", "dB", 64.5)];
    pack[0].base_name = Some("nz-0003:");
    pack[0].seq = Some(7);
    pack[0].time = Some(-5.0);
    let mut buf = [0u8; 64];
    let len = cbor::encode(&pack, &mut buf).unwrap();
    let lines = to_line_protocol(
        "city/ba-dinh/noise/nz-0003/up",
        &buf[..len],
        1_763_800_100.0,
    )
    .unwrap();
    assert_eq!(
        lines,
        "LAeq,device=nz-0003,district=ba-dinh,kind=noise value=64.5 1763800095000000000\n"
    );
}

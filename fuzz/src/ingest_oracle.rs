//! The oracles of the gateway's foreign-format decoders (Tasmota, ESPHome, UltraLight,
//! line protocol), of SenML as the gateway decodes it, and of the routed path: topic and
//! payload in, readings or a rejection out. Any input must give a clean rejection or
//! readings that keep the decoders' promises, and never a panic.
//!
//! Like [`oracle`](super::oracle) this file is shared with `tests/tests/nasty_inputs.rs`.

use influxdb_line_protocol::{FieldValue, parse_lines};
use ingest::decode::{self, Context, Decoded, MetricName};
use ingest::lineproto::{Tags, write_line};
use ingest::route::{Captures, Router, default_routes};
use ingest::validate::{Limits, check_reading};
use ingest::{Format, IngestConfig};
use schemas::topic::{DeviceKind, check_slug};

/// A fixed, realistic time of receipt: 2026-11-22T22:20:00Z, shortly after the times in
/// the firmware's golden vectors, so that their readings pass validation.
pub const RECEIVED_AT_NS: i64 = 1_795_386_000_000_000_000;

/// The gateway's default limits (`IngestConfig::default()`).
fn limits() -> Limits {
    let cfg = IngestConfig::default();
    Limits {
        max_future_skew_ns: (cfg.max_future_skew_s as i64).saturating_mul(1_000_000_000),
        max_past_age_ns: (cfg.max_past_age_s as i64).saturating_mul(1_000_000_000),
    }
}

/// Hanoi's offset, the default `tasmota_utc_offset`.
const TASMOTA_OFFSET_S: i32 = 7 * 3600;

/// The captures each format's default route gives for a typical topic.
fn default_captures(format: Format) -> Captures<'static> {
    match format {
        Format::Senml => Captures {
            district: Some("hoan-kiem"),
            kind: Some("airquality"),
            device: Some("aq-0001"),
            ..Captures::default()
        },
        Format::Tasmota => Captures {
            device: Some("tasmota_1A2B3C"),
            ..Captures::default()
        },
        Format::Esphome => Captures {
            node: Some("weather-7"),
            name: Some("temperature"),
            ..Captures::default()
        },
        Format::Ultralight => Captures {
            apikey: Some("4jggokgpepnvsb2uv4s40d59ov"),
            device: Some("ul-0009"),
            ..Captures::default()
        },
        // Line protocol, and a format whose decoder is new: no captures.
        _ => Captures::default(),
    }
}

/// Every format's decoder on the same bytes.
pub fn all(data: &[u8]) {
    senml(data);
    tasmota(data);
    esphome(data);
    ultralight(data);
    line_protocol(data);
}

/// SenML as the gateway decodes it (device binding, catalog names, units, times).
pub fn senml(data: &[u8]) {
    format_payload(Format::Senml, data);
}

/// Tasmota `tele/<device>/SENSOR` JSON.
pub fn tasmota(data: &[u8]) {
    format_payload(Format::Tasmota, data);
}

/// ESPHome `<node>/sensor/<name>/state`.
pub fn esphome(data: &[u8]) {
    format_payload(Format::Esphome, data);
}

/// FIWARE UltraLight 2.0.
pub fn ultralight(data: &[u8]) {
    format_payload(Format::Ultralight, data);
}

/// InfluxDB line protocol from Telegraf.
pub fn line_protocol(data: &[u8]) {
    format_payload(Format::LineProtocol, data);
}

/// One format's decoder with its default route's captures, then validation.
pub fn format_payload(format: Format, payload: &[u8]) {
    let ctx = Context {
        captures: default_captures(format),
        received_at_ns: RECEIVED_AT_NS,
        tasmota_utc_offset_s: TASMOTA_OFFSET_S,
        device_kinds: &[],
    };
    decode_and_validate(format, payload, &ctx);
}

/// The routed path: the default routes pick the decoder from the topic (as the pipeline
/// does), then the payload is decoded and every reading validated.
pub fn routed(topic: &str, payload: &[u8], received_at_ns: i64) {
    let router = Router::new(&default_routes()).unwrap_or_else(|e| panic!("default routes: {e}"));
    let Some((format, captures)) = router.route(topic) else {
        return;
    };
    let ctx = Context {
        captures,
        received_at_ns,
        tasmota_utc_offset_s: TASMOTA_OFFSET_S,
        device_kinds: &[],
    };
    decode_and_validate(format, payload, &ctx);
}

/// Splits fuzz input into a topic (up to the first newline) and a payload (the rest),
/// so that byte-level fuzzers reach the routed path too.
pub fn routed_bytes(data: &[u8]) {
    let (topic, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(topic) = std::str::from_utf8(topic) {
        routed(topic, payload, RECEIVED_AT_NS);
    }
}

fn decode_and_validate(format: Format, payload: &[u8], ctx: &Context<'_>) {
    let Ok(groups) = decode::decode(format, payload, ctx) else {
        return;
    };
    assert!(!groups.is_empty(), "{format}: decoded to no device at all");
    let readings: usize = groups.iter().map(|g| g.readings.len()).sum();
    let rejected: usize = groups.iter().map(|g| g.rejected.len()).sum();
    // Issue 3: every message ends as readings or as a dead letter with its reason. A
    // decode that yields neither would be dropped without a trace.
    assert!(
        readings + rejected > 0,
        "{format}: decoded to no readings and no rejection"
    );
    // A reading takes at least a byte of payload (ESPHome's one number: one byte). More
    // readings than bytes would be readings made from nothing.
    assert!(
        readings <= payload.len().max(1),
        "{format}: {readings} readings from {} bytes",
        payload.len()
    );
    if format == Format::Senml {
        senml_binding(payload, ctx, &groups);
    }
    let limits = limits();
    for g in &groups {
        check_group(format, g);
        for r in &g.readings {
            if check_reading(r, ctx.received_at_ns, &limits).is_ok() {
                assert!(r.value.is_finite(), "{format}: non-finite value passed");
                if let Some(m) = r.metric.catalog() {
                    assert!(m.in_range(r.value), "{format}: out-of-range value passed");
                }
            }
            // Every finite reading, accepted now or not (a wider time window would accept
            // it), must make a valid outbox line.
            if r.value.is_finite() {
                line_round_trip(format, g, r.metric.name(), r.value, r.ts_ns);
            }
        }
    }
}

/// Device binding (issue 3): an accepted SenML pack is the topic's device's, and none of
/// its records names another device (`bn`/`n` = `"<device>:<metric>"`).
fn senml_binding(payload: &[u8], ctx: &Context<'_>, groups: &[Decoded<'_>]) {
    let topic_device = ctx.captures.device.unwrap_or_default();
    for g in groups {
        assert_eq!(g.device, topic_device, "senml: device is not the topic's");
    }
    let Ok(pack) = schemas::senml::decode_any(payload) else {
        panic!("senml: the gateway accepted a pack that schemas refuses");
    };
    let mut resolver = schemas::senml::Resolver::new();
    for r in pack.records() {
        let Ok(res) = resolver.resolve(&r) else {
            continue;
        };
        let full = res.full_name().to_string();
        if let Some((device, _)) = full.rsplit_once(':') {
            assert_eq!(
                device, topic_device,
                "senml: record `{full}` of another device accepted"
            );
        }
    }
}

/// What a decoded device group promises: slugs for device and district, a known kind,
/// and metric names that are catalog names or snake_case pass-through names.
fn check_group(format: Format, g: &Decoded<'_>) {
    check_slug(&g.device).unwrap_or_else(|e| panic!("{format}: device {:?}: {e}", g.device));
    if let Some(d) = &g.district {
        check_slug(d).unwrap_or_else(|e| panic!("{format}: district {d:?}: {e}"));
    }
    if let Some(k) = &g.kind {
        assert!(DeviceKind::parse(k).is_some(), "{format}: kind {k:?}");
    }
    for r in &g.readings {
        if let MetricName::Other(name) = &r.metric {
            assert!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{format}: pass-through name {name:?} is not snake_case"
            );
        }
    }
    for rej in &g.rejected {
        assert!(!rej.reason.as_str().is_empty());
    }
}

/// An accepted reading becomes an outbox line that the store's parser reads back to the
/// same measurement, tags, value and time.
fn line_round_trip(format: Format, g: &Decoded<'_>, metric: &str, value: f64, ts_ns: i64) {
    let tags = Tags {
        device: &g.device,
        district: g.district.as_deref(),
        format: format.as_str(),
        kind: g.kind.as_deref(),
    };
    let mut out = String::new();
    write_line(&mut out, metric, &tags, value, ts_ns);
    let lines: Vec<_> = parse_lines(&out).collect();
    assert_eq!(
        lines.len(),
        1,
        "{format}: one reading, several lines: {out:?}"
    );
    let line = match &lines[0] {
        Ok(l) => l,
        Err(e) => panic!("{format}: outbox line does not parse: {e}: {out:?}"),
    };
    assert_eq!(line.series.measurement.as_str(), metric, "{out:?}");
    assert_eq!(
        line.tag_value("device").map(|d| d.as_str().to_owned()),
        Some(g.device.to_string()),
        "{out:?}"
    );
    assert_eq!(line.timestamp, Some(ts_ns), "{out:?}");
    let fields: Vec<_> = line.field_set.iter().collect();
    assert_eq!(fields.len(), 1, "{out:?}");
    let got = match &fields[0].1 {
        FieldValue::F64(v) => *v,
        FieldValue::I64(v) => *v as f64,
        FieldValue::U64(v) => *v as f64,
        other => panic!("{format}: value field is {other:?}: {out:?}"),
    };
    assert!(
        got == value,
        "{format}: value {value} comes back as {got}: {out:?}"
    );
}

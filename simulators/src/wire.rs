//! Reading captured traffic back: which device a message is from, which readings it
//! carries (for the manifest that `replay` writes), and rewriting its device id in the
//! topic and the payload (for `replay --clone`).
//!
//! Readings are what the gateway's own decoders make of a message ([`ingest::decode`],
//! routed by the gateway's default routes), so a replay manifest names devices and
//! metrics as the store will. Rewriting understands the topics of [`crate::formats`];
//! other messages pass through untouched and carry no readings.

use std::sync::LazyLock;

use ingest::decode::{self, Context};
use ingest::route::{Router, default_routes};
use schemas::senml::{self, OwnedPack};

use crate::device::{SentReading, flags};
use crate::formats::Format;
use crate::model::calendar::HANOI_UTC_OFFSET_S;

/// Where the device id sits in a topic of a known format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The format the topic belongs to.
    pub format: Format,
    /// The device id.
    pub device: &'a str,
    /// Index of the device level among the `/`-separated levels.
    level: usize,
}

/// Recognises the device of a topic.
pub fn origin(topic: &str) -> Option<Origin<'_>> {
    let levels: Vec<&str> = topic.split('/').collect();
    let o = |format, level: usize| {
        Some(Origin {
            format,
            device: levels.get(level).copied()?,
            level,
        })
    };
    match levels.as_slice() {
        ["city", _, _, _, _] => o(Format::Senml, 3),
        ["tele", _, _] => o(Format::Tasmota, 1),
        ["telegraf", _, _] => o(Format::LineProtocol, 1),
        ["", _, _, "attrs"] => o(Format::Ultralight, 2),
        [_, "sensor", _, "state"] | [_, "status"] => o(Format::Esphome, 0),
        _ => None,
    }
}

/// The gateway's default routes, which tell the decoder of a topic.
static ROUTER: LazyLock<Option<Router>> = LazyLock::new(|| Router::new(&default_routes()).ok());

/// How far [`readings`] moves the time of receipt to tell readings stamped on receipt.
const RECEIPT_PROBE_NS: i64 = 1_000_000_000;

/// The readings a message carries, as the fleet would have written them to its manifest:
/// the catalog readings the gateway's decoder finds (the device as the gateway names it),
/// `now_ms` standing for the time of receipt. Unrouted or refused messages carry none;
/// readings refused on their own are left out.
pub fn readings(topic: &str, payload: &[u8], now_ms: i64) -> Vec<(String, SentReading)> {
    let Some((format, captures)) = ROUTER.as_ref().and_then(|r| r.route(topic)) else {
        return Vec::new();
    };
    let at_ns = now_ms.saturating_mul(1_000_000);
    let decode_at = |received_at_ns: i64| {
        let ctx = Context {
            captures,
            received_at_ns,
            tasmota_utc_offset_s: HANOI_UTC_OFFSET_S as i32,
            device_kinds: &[],
        };
        decode::decode(format, payload, &ctx).unwrap_or_default()
    };
    let groups = decode_at(at_ns);
    if groups.iter().all(|g| g.readings.is_empty()) {
        return Vec::new();
    }
    // A reading stamped on receipt (no time in the message, or a SenML time relative to
    // receipt) moves with the time of receipt; one that carries its own time does not.
    let later = decode_at(at_ns.saturating_add(RECEIPT_PROBE_NS));
    let mut out = Vec::new();
    for (g, g_later) in groups.iter().zip(&later) {
        for (r, r_later) in g.readings.iter().zip(&g_later.readings) {
            let Some(m) = schemas::catalog::lookup(r.metric.name()) else {
                continue;
            };
            let fl = if r.ts_ns == r_later.ts_ns {
                0
            } else {
                flags::RECEIPT_TIME
            };
            out.push((
                g.device.clone().into_owned(),
                SentReading {
                    metric: m.name,
                    ts_ms: r.ts_ns.div_euclid(1_000_000),
                    value: r.value,
                    flags: fl,
                },
            ));
        }
    }
    out
}

/// The message with its device id replaced by `new_id` in the topic and the payload
/// (SenML base names, the `meta` document, line-protocol `device` tags).
pub fn rewrite(topic: &str, payload: &[u8], new_id: &str) -> Option<(String, Vec<u8>)> {
    let o = origin(topic)?;
    let old = o.device;
    let new_topic: String = topic
        .split('/')
        .enumerate()
        .map(|(i, l)| if i == o.level { new_id } else { l })
        .collect::<Vec<_>>()
        .join("/");
    let payload = match o.format {
        Format::Senml if topic.ends_with("/up") => {
            rewrite_senml(payload, old, new_id).unwrap_or_else(|| payload.to_vec())
        }
        Format::Senml if topic.ends_with("/meta") => {
            match serde_json::from_slice::<serde_json::Value>(payload) {
                Ok(mut v) if v.get("device").is_some() => {
                    v["device"] = new_id.into();
                    v.to_string().into_bytes()
                }
                _ => payload.to_vec(),
            }
        }
        Format::LineProtocol => match std::str::from_utf8(payload) {
            Ok(text) => text
                .replace(&format!(",device={old}"), &format!(",device={new_id}"))
                .into_bytes(),
            Err(_) => payload.to_vec(),
        },
        _ => payload.to_vec(),
    };
    Some((new_topic, payload))
}

fn rewrite_senml(payload: &[u8], old: &str, new_id: &str) -> Option<Vec<u8>> {
    let json = senml::looks_like_json(payload);
    let mut pack: OwnedPack = senml::decode_any(payload).ok()?;
    let prefix = format!("{old}:");
    for r in &mut pack.records {
        if let Some(bn) = &r.base_name
            && let Some(rest) = bn.strip_prefix(&prefix)
        {
            r.base_name = Some(format!("{new_id}:{rest}"));
        }
    }
    let records: Vec<_> = pack.records().collect();
    let mut buf = vec![0u8; payload.len() * 2 + 64];
    let n = if json {
        senml::json::encode(&records, &mut buf)
    } else {
        senml::cbor::encode(&records, &mut buf)
    }
    .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The id of clone `k` (1-based) of `device`: `{device}-k{k}`, shortened to stay a valid
/// 64-byte slug.
pub fn clone_id(device: &str, k: usize) -> String {
    let suffix = format!("-k{k}");
    let keep = device
        .len()
        .min(schemas::topic::MAX_SLUG_LEN - suffix.len());
    let mut end = keep;
    while !device.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &device[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{Sender, carries_time, encode};
    use crate::model::Reading;
    use schemas::topic::DeviceKind;

    #[test]
    fn every_format_reads_back_and_rewrites() {
        let s = Sender {
            device: "aq-0001",
            district: "ba-dinh",
            kind: DeviceKind::AirQuality,
            apikey: "city",
        };
        let rs = vec![
            Reading::of("pm25", 41.5),
            Reading::of("relativeHumidity", 81.2),
            Reading::of("windSpeed", 2.5),
        ];
        for f in Format::ALL {
            let wires = encode(f, &s, 1_767_574_800, 3, &rs).unwrap();
            let mut back = Vec::new();
            for w in &wires {
                back.extend(readings(&w.topic, &w.payload, 5));
                let (t, p) = rewrite(&w.topic, &w.payload, "aq-0001-k2").unwrap();
                assert!(t.contains("aq-0001-k2"), "{t}");
                let cloned = readings(&t, &p, 5);
                assert!(
                    cloned.iter().all(|(d, _)| d == "aq-0001-k2"),
                    "{f:?}: {cloned:?}"
                );
                assert_eq!(cloned.len(), w.readings.len(), "{f:?}");
            }
            // Tasmota's JSON objects come back in key order, not pack order.
            let mut values: Vec<f64> = back.iter().map(|(_, r)| r.value).collect();
            values.sort_by(f64::total_cmp);
            // Wind speed has a name only in the native format and line protocol.
            let want = if matches!(f, Format::Senml | Format::LineProtocol) {
                vec![2.5, 41.5, 81.2]
            } else {
                vec![41.5, 81.2]
            };
            assert_eq!(values, want, "{f:?}");
            assert!(back.iter().all(|(d, _)| d == "aq-0001"));
            let expect_ts = if carries_time(f) {
                1_767_574_800_000
            } else {
                5
            };
            assert!(back.iter().all(|(_, r)| r.ts_ms == expect_ts), "{f:?}");
        }
        assert_eq!(clone_id("aq-0001", 3), "aq-0001-k3");
        assert_eq!(clone_id(&"a".repeat(64), 12).len(), 64);
    }

    #[test]
    fn readings_are_what_the_gateway_decodes() {
        let now = 1_767_574_800_000;
        // The device as the gateway names it; no `Time`: stamped on receipt.
        let t = readings("tele/Tasmota_AB/SENSOR", br#"{"PMS5003":{"PM2.5":3}}"#, now);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, "tasmota_ab");
        assert_eq!((t[0].1.metric, t[0].1.ts_ms), ("pm25", now));
        assert_eq!(t[0].1.flags, flags::RECEIPT_TIME);
        // Line protocol with an escaped space in the device tag.
        let l = readings("telegraf/x/pm25", br"pm25,device=aq\ 1 value=3i", now);
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].0.as_str(), l[0].1.value), ("aq-1", 3.0));
        // A SenML time relative to receipt.
        let pack = br#"[{"bn":"aq-1:","n":"pm25","u":"ug/m3","v":3,"t":-2}]"#;
        let s = readings("city/ba-dinh/airquality/aq-1/up", pack, now);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].1.ts_ms, s[0].1.flags),
            (now - 2000, flags::RECEIPT_TIME)
        );
        // Not routed, or refused by the decoder: no readings.
        assert!(readings("city/ba-dinh/airquality/aq-1/status", b"online", now).is_empty());
        assert!(readings("tele/a/SENSOR", b"{", now).is_empty());
    }
}

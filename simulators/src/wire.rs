//! Reading captured traffic back: which device a message is from, which readings it
//! carries (for the manifest that `replay` writes), and rewriting its device id in the
//! topic and the payload (for `replay --clone`).
//!
//! It understands the formats of [`crate::formats`]; other messages pass through
//! untouched and carry no readings.

use schemas::senml::{self, OwnedPack, Resolver};
use schemas::topic::{Channel, Topic};

use crate::device::{SentReading, flags};
use crate::formats::{Format, catalog_name};
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
        ["city", _, _, _, _] => o(Format::Native, 3),
        ["tele", _, _] => o(Format::Tasmota, 1),
        ["telegraf", _, _] => o(Format::Line, 1),
        ["", _, _, "attrs"] => o(Format::Ultralight, 2),
        [_, "sensor", _, "state"] | [_, "status"] => o(Format::Esphome, 0),
        _ => None,
    }
}

/// The readings a message carries, as the fleet would have written them to its manifest.
/// Unknown or undecodable messages carry none.
pub fn readings(topic: &str, payload: &[u8], now_ms: i64) -> Vec<(String, SentReading)> {
    let Some(o) = origin(topic) else {
        return Vec::new();
    };
    let dev = o.device.to_owned();
    let one = |metric: &str, ts_ms: i64, value: f64, fl: u8| {
        schemas::catalog::lookup(metric).map(|m| {
            (
                dev.clone(),
                SentReading {
                    metric: m.name,
                    ts_ms,
                    value,
                    flags: fl,
                },
            )
        })
    };
    let text = std::str::from_utf8(payload).ok();
    match o.format {
        Format::Native => {
            let Ok(t) = Topic::parse(topic) else {
                return Vec::new();
            };
            if t.channel != Channel::Up {
                return Vec::new();
            }
            let Ok(pack) = senml::decode_any(payload) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            let mut resolver = Resolver::new();
            for rec in pack.records() {
                let Ok(r) = resolver.resolve(&rec) else {
                    return Vec::new();
                };
                let (Some(v), false) = (r.number(), r.name.is_empty()) else {
                    continue;
                };
                let (ts, fl) = match r.time {
                    senml::Time::Absolute(t) => ((t * 1000.0).round() as i64, 0),
                    senml::Time::Relative(dt) => {
                        (now_ms + (dt * 1000.0).round() as i64, flags::RECEIPT_TIME)
                    }
                };
                out.extend(one(r.name, ts, v, fl));
            }
            out
        }
        Format::Tasmota => {
            let Some(v) = serde_json::from_slice::<serde_json::Value>(payload).ok() else {
                return Vec::new();
            };
            // `Time` is Hanoi local time (see `formats::local_time`).
            let ts = v["Time"]
                .as_str()
                .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok())
                .map(|t| (t.and_utc().timestamp() - HANOI_UTC_OFFSET_S) * 1000);
            let (ts, fl) = match ts {
                Some(ts) => (ts, 0),
                None => (now_ms, flags::RECEIPT_TIME),
            };
            let mut out = Vec::new();
            if let Some(obj) = v.as_object() {
                for fields in obj.values() {
                    let Some(fields) = fields.as_object() else {
                        continue;
                    };
                    for (field, val) in fields {
                        if let (Some(x), Some(metric)) =
                            (val.as_f64(), catalog_name(Format::Tasmota, field))
                        {
                            out.extend(one(metric, ts, x, fl));
                        }
                    }
                }
            }
            out
        }
        Format::Esphome => {
            let levels: Vec<&str> = topic.split('/').collect();
            let metric = levels.get(2).and_then(|n| catalog_name(Format::Esphome, n));
            match (metric, text.and_then(|t| t.trim().parse::<f64>().ok())) {
                (Some(metric), Some(v)) if levels.len() == 4 => {
                    one(metric, now_ms, v, flags::RECEIPT_TIME)
                        .into_iter()
                        .collect()
                }
                _ => Vec::new(),
            }
        }
        Format::Ultralight => {
            let Some(text) = text else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for group in text.trim().split('#') {
                let parts: Vec<&str> = group.split('|').collect();
                let (ts, fl, pairs) = if parts.len() % 2 == 1 {
                    match chrono::DateTime::parse_from_rfc3339(parts[0]) {
                        Ok(t) => (t.timestamp_millis(), 0, &parts[1..]),
                        Err(_) => continue,
                    }
                } else {
                    (now_ms, flags::RECEIPT_TIME, &parts[..])
                };
                for kv in pairs.chunks(2) {
                    if let [k, v] = kv
                        && let (Some(metric), Ok(v)) =
                            (catalog_name(Format::Ultralight, k), v.parse())
                    {
                        out.extend(one(metric, ts, v, fl));
                    }
                }
            }
            out
        }
        Format::Line => {
            let Some(text) = text else { return Vec::new() };
            text.lines()
                .filter_map(|line| {
                    let mut parts = line.split(' ');
                    let series = parts.next()?;
                    let fields = parts.next()?;
                    let ts_ns: Option<i64> = parts.next().and_then(|t| t.parse().ok());
                    let metric = series.split(',').next()?;
                    let v = fields
                        .split(',')
                        .find_map(|f| f.strip_prefix("value="))?
                        .trim_end_matches('i')
                        .parse()
                        .ok()?;
                    match ts_ns {
                        Some(ns) => one(metric, ns / 1_000_000, v, 0),
                        None => one(metric, now_ms, v, flags::RECEIPT_TIME),
                    }
                })
                .collect()
        }
    }
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
        Format::Native if topic.ends_with("/up") => {
            rewrite_senml(payload, old, new_id).unwrap_or_else(|| payload.to_vec())
        }
        Format::Native if topic.ends_with("/meta") => {
            match serde_json::from_slice::<serde_json::Value>(payload) {
                Ok(mut v) if v.get("device").is_some() => {
                    v["device"] = new_id.into();
                    v.to_string().into_bytes()
                }
                _ => payload.to_vec(),
            }
        }
        Format::Line => match std::str::from_utf8(payload) {
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
    use crate::formats::{Sender, encode};
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
            let want = if matches!(f, Format::Native | Format::Line) {
                vec![2.5, 41.5, 81.2]
            } else {
                vec![41.5, 81.2]
            };
            assert_eq!(values, want, "{f:?}");
            assert!(back.iter().all(|(d, _)| d == "aq-0001"));
            let expect_ts = if f.carries_time() {
                1_767_574_800_000
            } else {
                5
            };
            assert!(back.iter().all(|(_, r)| r.ts_ms == expect_ts), "{f:?}");
        }
        assert_eq!(clone_id("aq-0001", 3), "aq-0001-k3");
        assert_eq!(clone_id(&"a".repeat(64), 12).len(), 64);
    }
}

//! Tasmota telemetry: `tele/<device>/SENSOR` JSON such as
//! `{"Time":"2026-01-05T08:00:00","BME280":{"Temperature":17.3,"Humidity":86.0,"Pressure":1017.2},
//! "PMS5003":{"PM2.5":92,"PM10":121},"TempUnit":"C"}`.
//!
//! Each sensor object's numeric fields map through [`TASMOTA`] (in `schemas`) to catalog
//! names; other numeric fields pass through as `<sensor>_<field>` snake-cased
//! (`bme280_dew_point`). When two sensors report the same catalog field, the first in
//! alphabetical order of sensor names (a stable choice: a redelivered message gets the
//! same names) gets the catalog name and later ones fall back to `<sensor>_<field>`, so no reading is lost to a clash.
//! Numeric top-level fields pass through as `<field>` snake-cased. `Time` is local time
//! without a zone: the configured `tasmota_utc_offset` converts it (a `Time` with its own
//! zone is taken as is; absent `Time`: time of receipt). `TempUnit` `F` converts
//! temperatures to Celsius; `PressureUnit` `mmHg`/`inHg` convert to hPa.

use std::borrow::Cow;
use std::fmt;

use chrono::NaiveDateTime;
use schemas::formats::TASMOTA;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Context, Decoded, MetricName, Reading, foreign_device, malformed, snake_case};
use crate::validate::{Reason, Rejection};

/// Fields holding a temperature, converted when `TempUnit` is `F`.
const TEMPERATURE_FIELDS: &[&str] = &["Temperature", "DewPoint"];

/// A JSON value as the decoder sees it, borrowed from the payload: no `String` per key or
/// field unless the JSON escapes it. An object's members are sorted by key with the last of
/// equal keys kept (as a `serde_json::Map` would hold them), so sensors are named in a
/// stable order.
#[derive(Debug)]
enum Node<'a> {
    Num(f64),
    Text(Cow<'a, str>),
    Obj(Vec<(Cow<'a, str>, Node<'a>)>),
    Other,
}

impl<'a> Node<'a> {
    fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Obj(m) => m
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .map(|i| &m[i].1),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Num(n) => write!(f, "{n}"),
            Node::Text(t) => write!(f, "{t:?}"),
            Node::Obj(_) => f.write_str("an object"),
            Node::Other => f.write_str("not a string"),
        }
    }
}

/// A key or string, borrowed unless escaped.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node<'de>, E> {
                Ok(Node::Other)
            }
            fn visit_unit<E>(self) -> Result<Node<'de>, E> {
                Ok(Node::Other)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
                Ok(Node::Num(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
                Ok(Node::Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
                Ok(Node::Num(v))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
                Ok(Node::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
                Ok(Node::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Node::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
                let mut members: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
                while let Some((Text(k), v)) = map.next_entry::<Text<'de>, Node<'de>>()? {
                    members.push((k, v));
                }
                // Sorted by key, the last of equal keys kept.
                members.reverse();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                members.dedup_by(|later, first| later.0 == first.0);
                Ok(Node::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes one `SENSOR` message.
pub fn decode<'a>(payload: &'a [u8], ctx: &Context<'a>) -> Result<Decoded<'a>, Rejection> {
    let device = foreign_device(ctx.captures.device)?;
    let root: Node<'_> = serde_json::from_slice(payload)
        .map_err(|e| malformed(format!("Tasmota JSON object expected: {e}")))?;
    let Node::Obj(members) = &root else {
        return Err(malformed("Tasmota JSON object expected"));
    };
    let ts_ns = match root.get("Time") {
        None => ctx.received_at_ns,
        Some(Node::Text(t)) => local_time_ns(t, ctx.tasmota_utc_offset_s)?,
        Some(other) => return Err(malformed(format!("`Time` is not a string: {other}"))),
    };
    let fahrenheit = match root.get("TempUnit").and_then(Node::as_str) {
        None | Some("C") => false,
        Some("F") => true,
        Some(u) => return Err(malformed(format!("unknown TempUnit `{u}`"))),
    };
    let pressure_factor = match root.get("PressureUnit").and_then(Node::as_str) {
        None | Some("hPa") | Some("mbar") => 1.0,
        Some("mmHg") => 1.333_223_684,
        Some("inHg") => 33.863_886_67,
        Some(u) => return Err(malformed(format!("unknown PressureUnit `{u}`"))),
    };
    let mut out = Decoded {
        device,
        readings: Vec::with_capacity(super::TYPICAL_READINGS),
        ..Decoded::default()
    };
    let mut used: Vec<&'static str> = Vec::new();
    let mut push = |sensor: Option<&str>, field: &str, v: f64, out: &mut Decoded<'a>| {
        let mut value = v;
        if fahrenheit && TEMPERATURE_FIELDS.contains(&field) {
            value = (v - 32.0) * 5.0 / 9.0;
        }
        if field == "Pressure" || field == "SeaPressure" {
            value *= pressure_factor;
        }
        let metric = match TASMOTA.metric(field) {
            Some(m) if !used.contains(&m.name) => {
                used.push(m.name);
                MetricName::Catalog(m)
            }
            // Pass-through names are built from the parsed tree, which does not outlive
            // this call: they are owned (catalog fields, the usual case, are not).
            _ => MetricName::Other(Cow::Owned(match sensor {
                Some(s) => snake_case(&[s, field]),
                None => snake_case(&[field]),
            })),
        };
        out.readings.push(Reading {
            metric,
            value,
            ts_ns,
        });
    };
    for (key, value) in members {
        match value {
            Node::Obj(fields) => {
                for (field, v) in fields {
                    match v {
                        Node::Num(x) => push(Some(key), field, *x, &mut out),
                        // Deeper objects (rare) flatten into the sensor prefix.
                        Node::Obj(inner) => {
                            let prefix = snake_case(&[key, field]);
                            for (f, v) in inner {
                                if let Node::Num(x) = v {
                                    push(Some(&prefix), f, *x, &mut out);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Node::Num(x) => push(None, key, *x, &mut out),
            _ => {}
        }
    }
    if out.readings.is_empty() {
        return Err(Rejection::new(Reason::Empty, "no numeric sensor fields"));
    }
    Ok(out)
}

/// `2026-01-05T08:00:00` (optionally with fractional seconds) in local time to UTC ns. A
/// time that carries its own zone (`...+07:00`, `...Z`, as some builds send) is taken as is.
fn local_time_ns(t: &str, offset_s: i32) -> Result<i64, Rejection> {
    if let Ok(zoned) = chrono::DateTime::parse_from_rfc3339(t) {
        return zoned
            .timestamp_nanos_opt()
            .ok_or_else(|| malformed(format!("`Time` {t:?} out of range")));
    }
    let local = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|e| malformed(format!("`Time` {t:?}: {e}")))?;
    let utc = local
        .and_utc()
        .timestamp_nanos_opt()
        .ok_or_else(|| malformed(format!("`Time` {t:?} out of range")))?;
    utc.checked_sub(i64::from(offset_s) * 1_000_000_000)
        .ok_or_else(|| malformed(format!("`Time` {t:?} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Captures;

    fn ctx() -> Context<'static> {
        Context {
            captures: Captures {
                device: Some("tasmota_A1B2C3"),
                ..Captures::default()
            },
            received_at_ns: 1,
            tasmota_utc_offset_s: 7 * 3600,
            device_kinds: &[],
        }
    }

    fn names(d: &Decoded<'_>) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = d
            .readings
            .iter()
            .map(|r| {
                (
                    r.metric.name().to_owned(),
                    (r.value * 100.0).round() / 100.0,
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn issue_example_maps_to_catalog_names() {
        let p = br#"{"Time":"2026-01-05T08:00:00","BME280":{"Temperature":17.3,"Humidity":86.0,"Pressure":1017.2},"PMS5003":{"PM2.5":92,"PM10":121},"TempUnit":"C"}"#;
        let d = decode(p, &ctx()).unwrap();
        assert_eq!(d.device, "tasmota_a1b2c3");
        assert_eq!(
            names(&d),
            [
                ("pm10".into(), 121.0),
                ("pm25".into(), 92.0),
                ("pressure".into(), 1017.2),
                ("relativeHumidity".into(), 86.0),
                ("temperature".into(), 17.3),
            ]
        );
        // 08:00 in Hanoi (+07:00) is 01:00 UTC.
        let want = chrono::DateTime::parse_from_rfc3339("2026-01-05T01:00:00Z").unwrap();
        assert!(
            d.readings
                .iter()
                .all(|r| r.ts_ns == want.timestamp_nanos_opt().unwrap())
        );
    }

    #[test]
    fn fahrenheit_unknown_fields_and_clashes() {
        let p = br#"{"Time":"2026-01-05T08:00:00","SI7021":{"Temperature":68.0,"DewPoint":50.0},"ESP32":{"Temperature":104.0},"TempUnit":"F","Illuminance":12}"#;
        let d = decode(p, &ctx()).unwrap();
        assert_eq!(
            names(&d),
            [
                ("illuminance".into(), 12.0),
                ("si7021_dew_point".into(), 10.0),
                ("si7021_temperature".into(), 20.0),
                ("temperature".into(), 40.0),
            ]
        );
    }

    #[test]
    fn a_time_with_its_own_zone_is_not_shifted() {
        let p = br#"{"Time":"2026-01-05T08:00:00+07:00","SHT3X":{"Temperature":20.5}}"#;
        let d = decode(p, &ctx()).unwrap();
        let want = chrono::DateTime::parse_from_rfc3339("2026-01-05T01:00:00Z").unwrap();
        assert_eq!(d.readings[0].ts_ns, want.timestamp_nanos_opt().unwrap());
    }

    #[test]
    fn escaped_keys_repeated_keys_and_other_values() {
        // The last of two equal keys counts (as in a JSON object map); escaped keys decode;
        // arrays, booleans and nulls are skipped.
        let p = br#"{"A":{"Temperature":1},"A":{"Temperature":2},"BME":{"Humidity":50,"Ok":true,"L":[1,2],"N":null},"Time":"2026-01-05T08:00:00"}"#;
        let d = decode(p, &ctx()).unwrap();
        assert_eq!(
            names(&d),
            [
                ("relativeHumidity".into(), 50.0),
                ("temperature".into(), 2.0)
            ]
        );
        assert_eq!(
            decode(br#"{"Time":5,"A":{"Temperature":1}}"#, &ctx())
                .unwrap_err()
                .reason,
            Reason::MalformedPayload
        );
    }

    #[test]
    fn malformed_payloads() {
        for p in [
            &b"[1,2]"[..],
            b"{\"Time\":\"yesterday\",\"A\":{\"Temperature\":1}}",
            b"\x00\xff",
            b"{\"BME280\":",
        ] {
            assert_eq!(
                decode(p, &ctx()).unwrap_err().reason,
                Reason::MalformedPayload,
                "{p:?}"
            );
        }
        assert_eq!(
            decode(br#"{"Time":"2026-01-05T08:00:00"}"#, &ctx())
                .unwrap_err()
                .reason,
            Reason::Empty
        );
    }
}

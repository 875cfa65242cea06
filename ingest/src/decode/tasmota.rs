//! Tasmota telemetry: `tele/<device>/SENSOR` JSON such as
//! `{"Time":"2026-01-05T08:00:00","BME280":{"Temperature":17.3,"Humidity":86.0,"Pressure":1017.2},
//! "PMS5003":{"PM2.5":92,"PM10":121},"TempUnit":"C"}`.
//!
//! Each sensor object's numeric fields map through [`FIELDS`] to catalog names; other
//! numeric fields pass through as `<sensor>_<field>` snake-cased (`bme280_dew_point`). When
//! two sensors report the same catalog field, the first in alphabetical order of sensor
//! names (a stable choice: a redelivered message gets the same names) gets the catalog
//! name and later ones fall back to `<sensor>_<field>`, so no reading is lost to a clash.
//! Numeric top-level fields pass through as `<field>` snake-cased. `Time` is local time
//! without a zone: the configured `tasmota_utc_offset` converts it (a `Time` with its own
//! zone is taken as is; absent `Time`: time of receipt). `TempUnit` `F` converts
//! temperatures to Celsius; `PressureUnit` `mmHg`/`inHg` convert to hPa.

use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use super::{
    Context, Decoded, MetricName, Reading, foreign_device, malformed, map_field, snake_case,
};
use crate::validate::{Reason, Rejection};

/// Tasmota field name -> catalog name.
pub const FIELDS: &[(&str, &str)] = &[
    ("Temperature", "temperature"),
    ("Humidity", "relativeHumidity"),
    ("Pressure", "pressure"),
    ("PM2.5", "pm25"),
    ("PM10", "pm10"),
    ("PM1", "pm1"),
    ("CarbonDioxide", "co2"),
    ("CO2", "co2"),
    ("Noise", "LAeq"),
];

/// Fields holding a temperature, converted when `TempUnit` is `F`.
const TEMPERATURE_FIELDS: &[&str] = &["Temperature", "DewPoint"];

/// Decodes one `SENSOR` message.
pub fn decode(payload: &[u8], ctx: &Context<'_>) -> Result<Decoded, Rejection> {
    let device = foreign_device(ctx.captures.device)?;
    let obj: Map<String, Value> = serde_json::from_slice(payload)
        .map_err(|e| malformed(format!("Tasmota JSON object expected: {e}")))?;
    let ts_ns = match obj.get("Time") {
        None => ctx.received_at_ns,
        Some(Value::String(t)) => local_time_ns(t, ctx.tasmota_utc_offset_s)?,
        Some(other) => return Err(malformed(format!("`Time` is not a string: {other}"))),
    };
    let fahrenheit = match obj.get("TempUnit").and_then(Value::as_str) {
        None | Some("C") => false,
        Some("F") => true,
        Some(u) => return Err(malformed(format!("unknown TempUnit `{u}`"))),
    };
    let pressure_factor = match obj.get("PressureUnit").and_then(Value::as_str) {
        None | Some("hPa") | Some("mbar") => 1.0,
        Some("mmHg") => 1.333_223_684,
        Some("inHg") => 33.863_886_67,
        Some(u) => return Err(malformed(format!("unknown PressureUnit `{u}`"))),
    };
    let mut out = Decoded {
        device,
        ..Decoded::default()
    };
    let mut used: Vec<&'static str> = Vec::new();
    let mut push = |sensor: Option<&str>, field: &str, v: f64, out: &mut Decoded| {
        let mut value = v;
        if fahrenheit && TEMPERATURE_FIELDS.contains(&field) {
            value = (v - 32.0) * 5.0 / 9.0;
        }
        if field == "Pressure" || field == "SeaPressure" {
            value *= pressure_factor;
        }
        let metric = match map_field(FIELDS, field) {
            Some(m) if !used.contains(&m.name) => {
                used.push(m.name);
                MetricName::Catalog(m)
            }
            _ => MetricName::Other(match sensor {
                Some(s) => snake_case(&[s, field]),
                None => snake_case(&[field]),
            }),
        };
        out.readings.push(Reading {
            metric,
            value,
            ts_ns,
        });
    };
    for (key, value) in &obj {
        match value {
            Value::Object(fields) => {
                for (field, v) in fields {
                    match v {
                        Value::Number(n) => {
                            if let Some(x) = n.as_f64() {
                                push(Some(key), field, x, &mut out);
                            }
                        }
                        // Deeper objects (rare) flatten into the sensor prefix.
                        Value::Object(inner) => {
                            let prefix = snake_case(&[key, field]);
                            for (f, v) in inner {
                                if let Some(x) = v.as_f64() {
                                    push(Some(&prefix), f, x, &mut out);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    push(None, key, x, &mut out);
                }
            }
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
        }
    }

    fn names(d: &Decoded) -> Vec<(String, f64)> {
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

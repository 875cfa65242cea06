//! FIWARE IoT Agent UltraLight 2.0 measures: `t|28.1|h|70|pm25|54` on
//! `/<apikey>/<device>/attrs` (or `/ul/<apikey>/<device>/attrs`). Several measure groups
//! are separated by `#`; a group with an odd number of fields starts with its timestamp
//! (ISO 8601 with a zone, as the IoT Agent accepts), otherwise readings take the time of
//! receipt. Short keys map through [`ULTRALIGHT`] (in `schemas`); other keys pass through
//! snake-cased. Non-numeric values (text attributes such as a location) are skipped.

use chrono::DateTime;
use schemas::formats::ULTRALIGHT;

use super::{Context, Decoded, MetricName, Reading, foreign_device, malformed, snake_case_one};
use crate::validate::{Reason, Rejection};

/// Decodes one measures message.
pub fn decode<'a>(payload: &'a [u8], ctx: &Context<'a>) -> Result<Decoded<'a>, Rejection> {
    let device = foreign_device(ctx.captures.device)?;
    let text = std::str::from_utf8(payload)
        .map_err(|_| malformed("UltraLight payload is not UTF-8 text"))?
        .trim();
    let mut out = Decoded {
        device,
        readings: Vec::with_capacity(super::TYPICAL_READINGS),
        ..Decoded::default()
    };
    for group in text.split('#').map(str::trim).filter(|g| !g.is_empty()) {
        // An odd number of fields: the first is the group's timestamp.
        let mut fields = group.split('|');
        let ts_ns = if group.bytes().filter(|&b| b == b'|').count() % 2 == 0 {
            let first = fields.next().unwrap_or("");
            let t = DateTime::parse_from_rfc3339(first.trim()).map_err(|e| {
                malformed(format!(
                    "group {group:?}: odd field count and `{first}` is not a timestamp: {e}"
                ))
            })?;
            t.timestamp_nanos_opt()
                .ok_or_else(|| malformed(format!("timestamp {first} out of range")))?
        } else {
            ctx.received_at_ns
        };
        while let (Some(key), Some(raw)) = (fields.next(), fields.next()) {
            let (key, raw) = (key.trim(), raw.trim());
            if key.is_empty() {
                return Err(malformed(format!("group {group:?}: empty key")));
            }
            let Ok(value) = raw.parse::<f64>() else {
                continue;
            };
            let metric = match ULTRALIGHT.metric(key) {
                Some(m) => MetricName::Catalog(m),
                None => MetricName::Other(snake_case_one(key)),
            };
            out.readings.push(Reading {
                metric,
                value,
                ts_ns,
            });
        }
    }
    if out.readings.is_empty() {
        return Err(Rejection::new(Reason::Empty, "no numeric measures"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Captures;

    fn ctx() -> Context<'static> {
        Context {
            captures: Captures {
                device: Some("ul-9"),
                apikey: Some("k"),
                ..Captures::default()
            },
            received_at_ns: 7,
            tasmota_utc_offset_s: 0,
            device_kinds: &[],
        }
    }

    #[test]
    fn measures_and_groups() {
        let d = decode(
            b"t|28.1|h|70|pm25|54#2026-01-05T01:00:00Z|n|61.5|l|hanoi|windDir|90",
            &ctx(),
        )
        .unwrap();
        let got: Vec<(&str, f64, i64)> = d
            .readings
            .iter()
            .map(|r| (r.metric.name(), r.value, r.ts_ns))
            .collect();
        let t = 1_767_574_800_000_000_000;
        assert_eq!(
            got,
            [
                ("temperature", 28.1, 7),
                ("relativeHumidity", 70.0, 7),
                ("pm25", 54.0, 7),
                ("LAeq", 61.5, t),
                ("wind_dir", 90.0, t),
            ]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode(b"t|1|h", &ctx()).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(
            decode(b"\xc3\x28", &ctx()).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(
            decode(b"l|hanoi", &ctx()).unwrap_err().reason,
            Reason::Empty
        );
        assert_eq!(decode(b"", &ctx()).unwrap_err().reason, Reason::Empty);
    }
}

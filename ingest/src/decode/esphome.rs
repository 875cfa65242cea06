//! ESPHome's MQTT state topics: `<node>/sensor/<name>/state` carrying one plain number
//! (`23.5`; `nan` when the sensor failed, refused as `non-finite`).
//!
//! The device is the `{node}` (normalised to a slug), the metric is `{name}` (ESPHome's
//! object id, snake-cased by ESPHome; kebab-case is accepted too) mapped through
//! [`ESPHOME`] (in `schemas`), else passed through snake-cased. The time is the time of
//! receipt.

use std::borrow::Cow;

use schemas::formats::ESPHOME;

use super::{Context, Decoded, MetricName, Reading, malformed, normalise_device, snake_case_one};
use crate::validate::{Reason, Rejection};

/// Decodes one state message.
pub fn decode<'a>(payload: &'a [u8], ctx: &Context<'a>) -> Result<Decoded<'a>, Rejection> {
    let node = ctx.captures.node.or(ctx.captures.device);
    let device = normalise_device(node.ok_or_else(|| {
        Rejection::new(Reason::BadTopic, "route has no {node} or {device} capture")
    })?)?;
    let name = ctx
        .captures
        .name
        .ok_or_else(|| Rejection::new(Reason::BadTopic, "route has no {name} capture"))?;
    let text = std::str::from_utf8(payload)
        .map_err(|_| malformed("ESPHome state is not UTF-8 text"))?
        .trim();
    if text.is_empty() {
        return Err(Rejection::new(Reason::Empty, "empty state"));
    }
    let value: f64 = if text.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else {
        text.parse()
            .map_err(|_| malformed(format!("ESPHome state {text:?} is not a number")))?
    };
    let metric = match ESPHOME.metric(&object_id_key(name)) {
        Some(m) => MetricName::Catalog(m),
        None => MetricName::Other(snake_case_one(name)),
    };
    Ok(Decoded {
        device,
        readings: vec![Reading {
            metric,
            value,
            ts_ns: ctx.received_at_ns,
        }],
        ..Decoded::default()
    })
}

/// The object id as [`ESPHOME`] spells it: lowercase, `-` as `_` (borrowed when it is so).
fn object_id_key(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase() || b == b'-') {
        Cow::Owned(name.to_ascii_lowercase().replace('-', "_"))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Captures;

    fn ctx(name: &'static str) -> Context<'static> {
        Context {
            captures: Captures {
                node: Some("Weather-7"),
                name: Some(name),
                ..Captures::default()
            },
            received_at_ns: 99,
            tasmota_utc_offset_s: 0,
            device_kinds: &[],
        }
    }

    #[test]
    fn names_map_to_catalog() {
        for (name, want) in [
            ("temperature", "temperature"),
            ("pm2-5", "pm25"),
            ("pm_2_5", "pm25"),
            ("humidity", "relativeHumidity"),
            ("co2", "co2"),
            ("soil_moisture", "soil_moisture"),
        ] {
            let d = decode(b" 23.5\n", &ctx(name)).unwrap();
            assert_eq!(d.device, "weather-7");
            assert_eq!(d.readings[0].metric.name(), want, "{name}");
            assert_eq!((d.readings[0].value, d.readings[0].ts_ns), (23.5, 99));
        }
    }

    #[test]
    fn nan_and_garbage() {
        assert!(
            decode(b"nan", &ctx("temperature")).unwrap().readings[0]
                .value
                .is_nan()
        );
        assert_eq!(
            decode(b"ON", &ctx("x")).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(
            decode(b"\xff\xfe", &ctx("x")).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(decode(b"", &ctx("x")).unwrap_err().reason, Reason::Empty);
    }
}

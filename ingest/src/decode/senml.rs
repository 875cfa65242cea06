//! SenML (RFC 8428), the native format: CBOR or JSON told apart by the first byte.
//!
//! The device is the topic's `{device}`. Record names are catalog names; a full name
//! (`bn` + `n`) of the form `<device>:<metric>` must name the topic's device, otherwise the
//! whole message is refused as `spoofed-device` (a board cannot write another board's
//! series). Names not in the catalog pass through snake-cased. The pack's `seq` (first
//! record) is the device's message sequence number. Relative times (RFC 8428 4.5.3) count
//! from the time of receipt. Records with string, boolean or data values are skipped.

use std::borrow::Cow;

use schemas::catalog;
use schemas::senml::{self, Record, ResolveError, Resolver, Value};

use super::{Context, Decoded, MetricName, Reading, district_and_kind, malformed, secs_to_ns};
use crate::validate::{Reason, Rejection};
use schemas::topic::check_slug;

/// Decodes one SenML pack.
pub fn decode<'a>(payload: &'a [u8], ctx: &Context<'a>) -> Result<Decoded<'a>, Rejection> {
    let device = ctx
        .captures
        .device
        .ok_or_else(|| Rejection::new(Reason::BadTopic, "route has no {device} capture"))?;
    check_slug(device)
        .map_err(|e| Rejection::new(Reason::BadTopic, format!("device id `{device}`: {e}")))?;
    let (district, kind) = district_and_kind(&ctx.captures, ctx.device_kinds)?;
    let mut out = Decoded {
        device: Cow::Borrowed(device),
        district,
        kind,
        readings: Vec::with_capacity(super::TYPICAL_READINGS),
        ..Decoded::default()
    };
    if senml::looks_like_json(payload) {
        // JSON strings may be escaped: the pack owns its names, and so do the readings.
        let pack = senml::json::decode_owned(payload).map_err(decode_error)?;
        let mut resolver = Resolver::new();
        for r in pack.records() {
            if let Some(reading) = record(&r, &mut resolver, ctx, device, &mut out.rejected)? {
                out.readings.push(Reading {
                    metric: match reading.metric {
                        MetricName::Other(n) => MetricName::Other(Cow::Owned(n.into_owned())),
                        MetricName::Catalog(m) => MetricName::Catalog(m),
                    },
                    value: reading.value,
                    ts_ns: reading.ts_ns,
                });
            }
        }
        out.seq = resolver.seq();
    } else {
        // CBOR text strings are never escaped: names are borrowed from the payload.
        let mut resolver = Resolver::new();
        for r in senml::cbor::decode(payload).map_err(decode_error)? {
            let r = r.map_err(decode_error)?;
            if let Some(reading) = record(&r, &mut resolver, ctx, device, &mut out.rejected)? {
                out.readings.push(reading);
            }
        }
        out.seq = resolver.seq();
    }
    if out.readings.is_empty() && out.rejected.is_empty() {
        return Err(Rejection::new(Reason::Empty, "pack has no numeric records"));
    }
    Ok(out)
}

fn decode_error(e: senml::DecodeError) -> Rejection {
    match e {
        senml::DecodeError::Empty => Rejection::new(Reason::Empty, "empty SenML pack"),
        other => malformed(other.to_string()),
    }
}

/// One record: `Ok(Some)` a numeric reading, `Ok(None)` skipped or refused on its own
/// (added to `rejected`), `Err` refuses the whole pack.
fn record<'r>(
    r: &Record<'r>,
    resolver: &mut Resolver<'r>,
    ctx: &Context<'_>,
    device: &str,
    rejected: &mut Vec<Rejection>,
) -> Result<Option<Reading<'r>>, Rejection> {
    let resolved = match resolver.resolve(r) {
        Ok(x) => x,
        Err(ResolveError::NonFinite) => {
            rejected.push(Rejection::new(
                Reason::NonFinite,
                format!("record {:?}: non-finite number", r.name.unwrap_or("")),
            ));
            return Ok(None);
        }
        Err(e @ ResolveError::UnsupportedVersion(_)) => return Err(malformed(e.to_string())),
        Err(e) => {
            rejected.push(malformed(format!("record {:?}: {e}", r.name.unwrap_or(""))));
            return Ok(None);
        }
    };
    // The full name is `bn` + `n`; its device part is what precedes the last ':'.
    let (dev_part, metric) = split_name(resolved.base_name, resolved.name);
    if let Some(d) = dev_part
        && *d != *device
    {
        return Err(Rejection::new(
            Reason::SpoofedDevice,
            format!(
                "record `{}` names device `{d}` on the topic of `{device}`",
                resolved.full_name()
            ),
        ));
    }
    let Some(Value::Float(value)) = resolved.value else {
        return Ok(None);
    };
    let metric_name = match catalog::lookup(&metric) {
        Some(m) => {
            if let Some(u) = resolved.unit
                && u != m.unit
            {
                rejected.push(Rejection::new(
                    Reason::WrongUnit,
                    format!(
                        "{metric}={value}: unit `{u}`, the catalog's is `{}`",
                        m.unit
                    ),
                ));
                return Ok(None);
            }
            MetricName::Catalog(m)
        }
        None => MetricName::Other(match metric {
            Cow::Borrowed(m) => super::snake_case_one(m),
            Cow::Owned(m) => Cow::Owned(super::snake_case(&[&m])),
        }),
    };
    let ts_ns = match resolved.time {
        senml::Time::Absolute(t) => secs_to_ns(t),
        // Relative to receipt: keep the receipt's full precision.
        senml::Time::Relative(dt) => ctx.received_at_ns.saturating_add(secs_to_ns(dt)),
    };
    Ok(Some(Reading {
        metric: metric_name,
        value,
        ts_ns,
    }))
}

/// Splits `bn` + `n` at the last ':' into (device part, metric part), without allocating
/// in the usual case (`bn` = "aq-0001:", `n` = "pm25").
fn split_name<'a>(bn: &'a str, n: &'a str) -> (Option<Cow<'a, str>>, Cow<'a, str>) {
    if !n.contains(':') {
        if let Some(dev) = bn.strip_suffix(':')
            && !dev.is_empty()
            && !n.is_empty()
        {
            return (Some(Cow::Borrowed(dev)), Cow::Borrowed(n));
        }
        if bn.is_empty() {
            return (None, Cow::Borrowed(n));
        }
    }
    let full = format!("{bn}{n}");
    match full.rsplit_once(':') {
        Some((d, m)) => (Some(Cow::Owned(d.to_owned())), Cow::Owned(m.to_owned())),
        None => (None, Cow::Owned(full)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Captures;

    const NOW: i64 = 1_767_600_000_000_000_000;

    fn ctx(device: &'static str) -> Context<'static> {
        Context {
            captures: Captures {
                device: Some(device),
                district: Some("hoan-kiem"),
                kind: Some("airquality"),
                ..Captures::default()
            },
            received_at_ns: NOW,
            tasmota_utc_offset_s: 0,
            device_kinds: &[],
        }
    }

    fn cbor(records: &[Record<'_>]) -> Vec<u8> {
        let mut buf = [0u8; 512];
        let n = senml::cbor::encode(records, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn pack(bn: &'static str) -> Vec<Record<'static>> {
        vec![
            Record {
                base_name: Some(bn),
                base_time: Some(1_767_600_000.0),
                seq: Some(42),
                ..Record::measurement("pm25", "ug/m3", 54.0)
            },
            Record::measurement("temperature", "Cel", 28.5),
            Record {
                time: Some(-60.0),
                ..Record::measurement("relativeHumidity", "%RH", 70.0)
            },
        ]
    }

    #[test]
    fn cbor_pack_decodes_with_names_times_and_seq() {
        let bytes = cbor(&pack("aq-0001:"));
        let d = decode(&bytes, &ctx("aq-0001")).unwrap();
        assert_eq!(d.device, "aq-0001");
        assert_eq!(d.district.as_deref(), Some("hoan-kiem"));
        assert_eq!(d.seq, Some(42));
        let got: Vec<(&str, f64, i64)> = d
            .readings
            .iter()
            .map(|r| (r.metric.name(), r.value, r.ts_ns))
            .collect();
        assert_eq!(
            got,
            [
                ("pm25", 54.0, 1_767_600_000_000_000_000),
                ("temperature", 28.5, 1_767_600_000_000_000_000),
                ("relativeHumidity", 70.0, 1_767_599_940_000_000_000),
            ]
        );
        assert!(d.rejected.is_empty());
    }

    #[test]
    fn json_pack_and_relative_time() {
        let json =
            br#"[{"bn":"aq-0001:","n":"pm10","u":"ug/m3","v":80,"t":-5},{"n":"fooBar","v":3}]"#;
        let d = decode(json, &ctx("aq-0001")).unwrap();
        assert_eq!(d.readings[0].metric.name(), "pm10");
        assert_eq!(d.readings[0].ts_ns, NOW - 5_000_000_000);
        assert_eq!(d.readings[1].metric, MetricName::Other("foo_bar".into()));
    }

    #[test]
    fn another_devices_base_name_is_spoofing() {
        let e = decode(&cbor(&pack("aq-0002:")), &ctx("aq-0001")).unwrap_err();
        assert_eq!(e.reason, Reason::SpoofedDevice);
        let json = br#"[{"n":"aq-0002:pm25","v":1}]"#;
        assert_eq!(
            decode(json, &ctx("aq-0001")).unwrap_err().reason,
            Reason::SpoofedDevice
        );
        // No base name at all is fine: the topic names the device.
        let json = br#"[{"n":"pm25","v":1}]"#;
        assert!(decode(json, &ctx("aq-0001")).is_ok());
    }

    #[test]
    fn malformed_and_empty() {
        let mut bytes = cbor(&pack("aq-0001:"));
        bytes.truncate(bytes.len() - 3);
        assert_eq!(
            decode(&bytes, &ctx("aq-0001")).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(
            decode(b"\x80", &ctx("aq-0001")).unwrap_err().reason,
            Reason::Empty
        );
        assert_eq!(
            decode(b"[]", &ctx("aq-0001")).unwrap_err().reason,
            Reason::Empty
        );
        assert_eq!(
            decode(b"{\"a\":1}", &ctx("aq-0001")).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(
            decode(b"\xff\x00garbage", &ctx("aq-0001"))
                .unwrap_err()
                .reason,
            Reason::MalformedPayload
        );
    }

    #[test]
    fn wrong_unit_is_refused_per_reading() {
        let json = br#"[{"bn":"aq-0001:","n":"temperature","u":"K","v":300},{"n":"pm25","v":3}]"#;
        let d = decode(json, &ctx("aq-0001")).unwrap();
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.rejected[0].reason, Reason::WrongUnit);
    }

    #[test]
    fn bad_topic_slugs() {
        let bytes = cbor(&pack("AQ:"));
        assert_eq!(
            decode(&bytes, &ctx("AQ")).unwrap_err().reason,
            Reason::BadTopic
        );
        let mut c = ctx("aq-0001");
        c.captures.kind = Some("toaster");
        assert_eq!(decode(&bytes, &c).unwrap_err().reason, Reason::BadTopic);
    }
}

//! InfluxDB line protocol as Telegraf's MQTT output publishes it (`data_format = "influx"`):
//! one or more lines `measurement,tag=v field=1.5,other=7i 1767574800000000000`, with the
//! usual escapes, integer (`i`) and unsigned (`u`) suffixes and nanosecond timestamps
//! (Telegraf's default precision; a line without one takes the time of receipt). Parsing is
//! the `influxdb-line-protocol` crate's.
//!
//! The device is the `device` tag, else the `host` tag (Telegraf adds it), normalised to a
//! slug; `district` and `kind` tags carry over when they are valid. Names:
//! a catalog measurement with field `value` -> the measurement (`pm25 value=3`); a catalog
//! field name -> the field (`airquality pm25=3`); anything else -> `<measurement>_<field>`
//! snake-cased (`cpu usage_idle=..` -> `cpu_usage_idle`). Other tags are not kept. String
//! and boolean fields are skipped. A line that does not parse is refused on its own
//! (`malformed-payload`, or `no-device` without a device), the other lines stand.

use std::borrow::Cow;

use influxdb_line_protocol::{EscapedStr, FieldValue, ParsedLine, parse_lines};
use schemas::catalog;
use schemas::topic::check_slug;

use super::{Context, Decoded, MetricName, Reading, malformed, normalise_device, snake_case};
use crate::validate::{Reason, Rejection};

/// Decodes a message of one or more lines into one [`Decoded`] per device.
pub fn decode<'a>(payload: &'a [u8], ctx: &Context<'a>) -> Result<Vec<Decoded<'a>>, Rejection> {
    let text =
        std::str::from_utf8(payload).map_err(|_| malformed("line protocol is not UTF-8 text"))?;
    let mut out: Vec<Decoded<'a>> = Vec::new();
    let mut rejected = Vec::new();
    for (i, line) in parse_lines(text).enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                rejected.push(malformed(format!("line {}: {e}", i + 1)));
                continue;
            }
        };
        if let Err(r) = one_line(&line, ctx, &mut out) {
            rejected.push(Rejection::new(
                r.reason,
                format!("line {}: {}", i + 1, r.detail),
            ));
        }
    }
    // Lines with only string or boolean fields add nothing; a message of nothing else is
    // `empty` rather than silently dropped.
    out.retain(|d| !d.readings.is_empty());
    if out.is_empty() {
        return Err(match rejected.into_iter().next() {
            Some(first) => first,
            None => Rejection::new(Reason::Empty, "no numeric fields"),
        });
    }
    // Per-line refusals ride on the first device's result so they are dead-lettered once.
    out[0].rejected = rejected;
    Ok(out)
}

/// A tag or name, borrowed from the payload unless it was escaped.
fn text<'a>(s: &EscapedStr<'a>) -> Cow<'a, str> {
    match s {
        EscapedStr::SingleSlice(s) => Cow::Borrowed(s),
        EscapedStr::CopiedValue(s) => Cow::Owned(s.clone()),
    }
}

/// Adds one line's readings to its device's group in `out`.
fn one_line<'a>(
    line: &ParsedLine<'a>,
    ctx: &Context<'_>,
    out: &mut Vec<Decoded<'a>>,
) -> Result<(), Rejection> {
    let device_tag = line.tag_value("device").or_else(|| line.tag_value("host"));
    let device = match device_tag {
        Some(d) => match normalise_device(d.as_str())? {
            // Borrowed: the tag is a slug as it stands.
            Cow::Borrowed(_) => text(d),
            Cow::Owned(slug) => Cow::Owned(slug),
        },
        None => {
            return Err(Rejection::new(
                Reason::NoDevice,
                "no `device` or `host` tag",
            ));
        }
    };
    let idx = match out.iter().position(|d| d.device == device) {
        Some(idx) => idx,
        None => {
            let district = line
                .tag_value("district")
                .filter(|d| check_slug(d.as_str()).is_ok())
                .map(text);
            let kind = line
                .tag_value("kind")
                .filter(|k| super::known_kind(k.as_str(), ctx.device_kinds))
                .map(text);
            out.push(Decoded {
                device,
                district,
                kind,
                ..Decoded::default()
            });
            out.len() - 1
        }
    };
    let readings = &mut out[idx].readings;
    let ts_ns = line.timestamp.unwrap_or(ctx.received_at_ns);
    let measurement = &line.series.measurement;
    for (field, value) in &line.field_set {
        let v = match value {
            FieldValue::F64(v) => *v,
            FieldValue::I64(v) => *v as f64,
            FieldValue::U64(v) => *v as f64,
            FieldValue::String(_) | FieldValue::Boolean(_) => continue,
        };
        let metric = match (catalog::lookup(measurement.as_str()), field.as_str()) {
            (Some(m), "value") => MetricName::Catalog(m),
            _ => match catalog::lookup(field.as_str()) {
                Some(m) => MetricName::Catalog(m),
                None => MetricName::Other(Cow::Owned(snake_case(&[
                    measurement.as_str(),
                    field.as_str(),
                ]))),
            },
        };
        readings.push(Reading {
            metric,
            value: v,
            ts_ns,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Captures;

    fn ctx() -> Context<'static> {
        Context {
            captures: Captures::default(),
            received_at_ns: 5,
            tasmota_utc_offset_s: 0,
            device_kinds: &[],
        }
    }

    #[test]
    fn telegraf_lines() {
        let p = concat!(
            "pm25,device=aq-7,district=ba-dinh,kind=airquality value=12.5 1767574800000000000\n",
            "airquality,device=aq-7 pm10=80i,co2=412u,label=\"x\",ok=true 1767574800000000000\n",
            "cpu,host=Edge\\ Box,cpu=cpu0 usage_idle=97.5\n",
        );
        let d = decode(p.as_bytes(), &ctx()).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].device, "aq-7");
        assert_eq!(d[0].district.as_deref(), Some("ba-dinh"));
        assert_eq!(d[0].kind.as_deref(), Some("airquality"));
        let got: Vec<(&str, f64)> = d[0]
            .readings
            .iter()
            .map(|r| (r.metric.name(), r.value))
            .collect();
        assert_eq!(got, [("pm25", 12.5), ("pm10", 80.0), ("co2", 412.0)]);
        assert_eq!(d[1].device, "edge-box");
        assert_eq!(d[1].readings[0].metric.name(), "cpu_usage_idle");
        assert_eq!(d[1].readings[0].ts_ns, 5);
    }

    #[test]
    fn bad_lines_are_refused_alone() {
        let p = "pm25,device=a value=1 1\nthis is not line protocol\npm25 value=2 3\n";
        let d = decode(p.as_bytes(), &ctx()).unwrap();
        assert_eq!(d[0].readings.len(), 1);
        let reasons: Vec<Reason> = d[0].rejected.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, [Reason::MalformedPayload, Reason::NoDevice]);
        assert_eq!(
            decode(b"garbage", &ctx()).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(
            decode(b"\xff", &ctx()).unwrap_err().reason,
            Reason::MalformedPayload
        );
        assert_eq!(decode(b"\n\n", &ctx()).unwrap_err().reason, Reason::Empty);
        let only_strings = b"status,host=a state=\"ok\",up=true 1";
        assert_eq!(
            decode(only_strings, &ctx()).unwrap_err().reason,
            Reason::Empty
        );
    }
}

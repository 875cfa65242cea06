//! Writes readings as InfluxDB line protocol for the outbox:
//! `<metric>,device=<d>[,district=<x>][,kind=<k>],format=<f> value=<v> <ts_ns>`.
//!
//! Measurement = metric name, one field `value`, nanosecond timestamps. Tags are sorted by
//! key, as InfluxDB recommends for the fastest writes.

use std::fmt::Write as _;

/// Tags of one device's readings.
#[derive(Debug, Clone, Copy)]
pub struct Tags<'a> {
    /// `device`.
    pub device: &'a str,
    /// `district`, if known.
    pub district: Option<&'a str>,
    /// `format` (the decoder's name).
    pub format: &'a str,
    /// `kind`, if known.
    pub kind: Option<&'a str>,
}

/// Appends one line (with its trailing newline) to `out`.
pub fn write_line(out: &mut String, metric: &str, tags: &Tags<'_>, value: f64, ts_ns: i64) {
    TagSet::new(tags).write_line(out, metric, value, ts_ns);
}

/// The escaped tag part of a device's lines (`,device=..[,district=..],format=..[,kind=..]`),
/// built once per device group so each reading only escapes its metric name.
#[derive(Debug, Clone, Default)]
pub struct TagSet {
    escaped: String,
}

impl TagSet {
    /// Escapes `tags` once.
    pub fn new(tags: &Tags<'_>) -> Self {
        let mut t = Self::default();
        t.set(tags);
        t
    }

    /// Replaces the tags, reusing the buffer.
    pub fn set(&mut self, tags: &Tags<'_>) {
        let out = &mut self.escaped;
        out.clear();
        out.push_str(",device=");
        escape(out, tags.device, TAG);
        if let Some(d) = tags.district {
            out.push_str(",district=");
            escape(out, d, TAG);
        }
        out.push_str(",format=");
        escape(out, tags.format, TAG);
        if let Some(k) = tags.kind {
            out.push_str(",kind=");
            escape(out, k, TAG);
        }
    }

    /// Whether [`set`](Self::set) has been called (the tags name a device).
    pub fn is_set(&self) -> bool {
        !self.escaped.is_empty()
    }

    /// Appends one line (with its trailing newline) to `out`.
    pub fn write_line(&self, out: &mut String, metric: &str, value: f64, ts_ns: i64) {
        escape(out, metric, MEASUREMENT);
        out.push_str(&self.escaped);
        out.push_str(" value=");
        write_value(out, value);
        out.push(' ');
        out.push_str(itoa::Buffer::new().format(ts_ns));
        out.push('\n');
    }

    /// Appends one line of `measurement` with these tags, `extra` tags (key, value; keys
    /// sorted after the device's) and float `fields` (at least one), with its newline.
    pub fn write_fields(
        &self,
        out: &mut String,
        measurement: &str,
        extra: &[(&str, &str)],
        fields: &[(&str, f64)],
        ts_ns: i64,
    ) {
        debug_assert!(!fields.is_empty(), "a line needs a field");
        escape(out, measurement, MEASUREMENT);
        out.push_str(&self.escaped);
        for (k, v) in extra {
            out.push(',');
            escape(out, k, TAG);
            out.push('=');
            escape(out, v, TAG);
        }
        for (i, (k, v)) in fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape(out, k, TAG);
            out.push('=');
            write_value(out, *v);
        }
        out.push(' ');
        out.push_str(itoa::Buffer::new().format(ts_ns));
        out.push('\n');
    }
}

/// Writes `value` exactly as `{}` on f64 does: no exponent, shortest round-trip digits, an
/// integral value without a decimal point (line protocol reads it as a float: only `i`/`u`
/// make integers). `itoa`/`ryu` do the common cases without the formatting machinery.
fn write_value(out: &mut String, value: f64) {
    // Below 2^53 every integral f64 is an exact i64; -0.0 keeps its sign through `{}`.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        if value.to_bits() == (-0.0f64).to_bits() {
            out.push_str("-0");
        } else {
            out.push_str(itoa::Buffer::new().format(value as i64));
        }
        return;
    }
    if value.is_finite() {
        let mut b = ryu::Buffer::new();
        let s = b.format_finite(value);
        // ryu switches to an exponent for very small or large magnitudes; `{}` never does.
        if !s.contains('e') {
            out.push_str(s);
            return;
        }
    }
    let _ = write!(out, "{value}");
}

const TAG: &[char] = &[',', '=', ' '];
const MEASUREMENT: &[char] = &[',', ' '];

fn escape(out: &mut String, s: &str, special: &[char]) {
    // Names are almost always plain ASCII slugs: one pass over the bytes decides.
    if !s.bytes().any(|b| matches!(b, b',' | b'=' | b' ' | b'\\')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if special.contains(&c) || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_through_the_parser() {
        let mut s = String::new();
        let tags = Tags {
            device: "aq-0001",
            district: Some("hoan-kiem"),
            format: "senml",
            kind: Some("airquality"),
        };
        write_line(&mut s, "pm25", &tags, 54.0, 1_767_574_800_000_000_000);
        write_line(
            &mut s,
            "odd name,x",
            &Tags {
                device: "a=b c",
                district: None,
                format: "line-protocol",
                kind: None,
            },
            1e21,
            5,
        );
        assert_eq!(
            s.lines().next().unwrap(),
            "pm25,device=aq-0001,district=hoan-kiem,format=senml,kind=airquality value=54 1767574800000000000"
        );
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&s)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed[1].series.measurement.as_str(), "odd name,x");
        assert_eq!(parsed[1].tag_value("device").unwrap().as_str(), "a=b c");
        for v in [
            0.1,
            -0.0,
            1e-7,
            1e300,
            123.456,
            -42.0,
            2e16,
            f64::MIN_POSITIVE,
        ] {
            let mut one = String::new();
            write_value(&mut one, v);
            assert_eq!(one, format!("{v}"), "value formatting must match Display");
        }
        assert_eq!(
            parsed[1].field_value("value"),
            Some(&influxdb_line_protocol::FieldValue::F64(1e21))
        );
    }
}

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
    escape(out, metric, &[',', ' ']);
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
    // `{}` on f64 never uses an exponent and round-trips; an integral value prints without
    // a decimal point, which line protocol reads as a float (only `i`/`u` make integers).
    let _ = write!(out, " value={value} {ts_ns}");
    out.push('\n');
}

const TAG: &[char] = &[',', '=', ' '];

fn escape(out: &mut String, s: &str, special: &[char]) {
    if !s.contains(special) && !s.contains('\\') {
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
        assert_eq!(
            parsed[1].field_value("value"),
            Some(&influxdb_line_protocol::FieldValue::F64(1e21))
        );
    }
}

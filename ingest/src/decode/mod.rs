//! Decoders: payload bytes of one routed message to readings with catalog names.
//!
//! Each format has its own module; Tasmota, ESPHome and UltraLight map their field names
//! to catalog names through the tables of [`schemas::formats`] (listed in
//! `ingest/README.md`), which the simulators' encoders write from as well. Fields that are
//! numeric but not in a table pass through under a snake-cased name (see each module) and
//! are not checked against catalog ranges; non-numeric fields (strings, booleans) are
//! skipped.
//!
//! Decoders are sans-IO: they see the payload, the topic's captures and the time of receipt.

pub mod esphome;
pub mod lineproto;
pub mod senml;
pub mod tasmota;
pub mod ultralight;

use std::borrow::Cow;

use schemas::catalog::{self, Metric};
use schemas::topic::{DeviceKind, check_slug};

use crate::route::{Captures, Format};
use crate::validate::{Reason, Rejection};

/// A metric's name: a catalog entry (validated against its range) or a pass-through name,
/// borrowed from the payload unless it had to be rewritten (snake-cased, unescaped).
#[derive(Debug, Clone, PartialEq)]
pub enum MetricName<'a> {
    /// Known to the catalog.
    Catalog(&'static Metric),
    /// Not in the catalog: stored as is, not range-checked.
    Other(Cow<'a, str>),
}

impl<'a> MetricName<'a> {
    /// The catalog entry named `name`, else a pass-through name.
    pub fn of(name: &'a str) -> Self {
        match catalog::lookup(name) {
            Some(m) => Self::Catalog(m),
            None => Self::Other(Cow::Borrowed(name)),
        }
    }

    /// The stored name.
    pub fn name(&self) -> &str {
        match self {
            Self::Catalog(m) => m.name,
            Self::Other(s) => s,
        }
    }

    /// The catalog entry, if any.
    pub fn catalog(&self) -> Option<&'static Metric> {
        match self {
            Self::Catalog(m) => Some(m),
            Self::Other(_) => None,
        }
    }
}

/// One decoded measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading<'a> {
    /// Metric name.
    pub metric: MetricName<'a>,
    /// Value, in the catalog's unit for catalog metrics.
    pub value: f64,
    /// Time in nanoseconds since the Unix epoch.
    pub ts_ns: i64,
}

/// The readings of one device from one message. Names are borrowed from the topic and the
/// payload: decoding allocates no `String` per device, group or field unless a name has
/// to be rewritten (a foreign device id normalised to a slug, an escaped or snake-cased
/// name).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded<'a> {
    /// Device id (a slug).
    pub device: Cow<'a, str>,
    /// District slug, when the topic or payload says.
    pub district: Option<Cow<'a, str>>,
    /// Device kind, when the topic or payload says.
    pub kind: Option<Cow<'a, str>>,
    /// The device's message sequence number (SenML `seq`).
    pub seq: Option<u32>,
    /// Good readings (not yet validated against ranges and time).
    pub readings: Vec<Reading<'a>>,
    /// Readings or lines refused during decoding; the rest of the message stands.
    pub rejected: Vec<Rejection>,
}

/// What a decoder knows besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct Context<'t> {
    /// The topic's captures.
    pub captures: Captures<'t>,
    /// Time of receipt, ns since the epoch.
    pub received_at_ns: i64,
    /// Tasmota's `Time` is local time: this offset (seconds east of UTC) converts it.
    pub tasmota_utc_offset_s: i32,
    /// Device kinds accepted besides the four built in (`ingest.device_kinds`).
    pub device_kinds: &'t [String],
}

/// Decodes a payload in `format`. `Err` refuses the whole message.
pub fn decode<'a>(
    format: Format,
    payload: &'a [u8],
    ctx: &Context<'a>,
) -> Result<Vec<Decoded<'a>>, Rejection> {
    let mut out = Vec::new();
    decode_into(format, payload, ctx, &mut out)?;
    Ok(out)
}

/// [`decode`] appending the message's groups (one per device) to `out`, a buffer the
/// caller reuses across messages. On `Err` nothing is appended.
pub fn decode_into<'a>(
    format: Format,
    payload: &'a [u8],
    ctx: &Context<'a>,
    out: &mut Vec<Decoded<'a>>,
) -> Result<(), Rejection> {
    match format {
        Format::Senml => out.push(senml::decode(payload, ctx)?),
        Format::Tasmota => out.push(tasmota::decode(payload, ctx)?),
        Format::Esphome => out.push(esphome::decode(payload, ctx)?),
        Format::Ultralight => out.push(ultralight::decode(payload, ctx)?),
        Format::LineProtocol => out.append(&mut lineproto::decode(payload, ctx)?),
        // A format `schemas` lists before its decoder is written here.
        f => return Err(malformed(format!("this build has no decoder for {f}"))),
    }
    Ok(())
}

/// Readings a message usually carries: decoders reserve this much at once instead of
/// growing their vector reading by reading.
pub(crate) const TYPICAL_READINGS: usize = 8;

pub(crate) fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(Reason::MalformedPayload, detail)
}

/// The device from the topic's `{device}` (or `{node}`), normalised to a slug for foreign
/// formats: ASCII lowercased, characters outside `a-z0-9-_` replaced by `-`.
pub(crate) fn foreign_device(captured: Option<&str>) -> Result<Cow<'_, str>, Rejection> {
    let raw = captured.ok_or_else(|| {
        Rejection::new(
            Reason::BadTopic,
            "route has no {device} (or {node}) capture",
        )
    })?;
    normalise_device(raw)
}

/// Normalises a foreign device name to a slug, borrowing it when it is one already.
pub(crate) fn normalise_device(raw: &str) -> Result<Cow<'_, str>, Rejection> {
    if check_slug(raw).is_ok() {
        return Ok(Cow::Borrowed(raw));
    }
    let slug: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    check_slug(&slug)
        .map_err(|e| Rejection::new(Reason::BadTopic, format!("device id `{raw}`: {e}")))?;
    Ok(Cow::Owned(slug))
}

/// An optional name borrowed from the topic or the payload.
type Name<'a> = Option<Cow<'a, str>>;

/// Whether `kind` is one of the four built-in kinds or a configured one.
pub fn known_kind(kind: &str, configured: &[String]) -> bool {
    DeviceKind::parse(kind).is_some() || configured.iter().any(|k| k == kind)
}

/// The dead letter of an unknown kind: it names the key that would accept it.
pub(crate) fn unknown_kind(kind: &str) -> Rejection {
    Rejection::new(
        Reason::BadTopic,
        format!(
            "kind `{kind}`: expected airquality, weather, noise, wifi or a kind listed in \
             ingest.device_kinds (gateway.toml), e.g. device_kinds = [\"{kind}\"]"
        ),
    )
}

/// District and kind captures, which must be slugs (and a known kind).
pub(crate) fn district_and_kind<'a>(
    c: &Captures<'a>,
    device_kinds: &[String],
) -> Result<(Name<'a>, Name<'a>), Rejection> {
    let district = match c.district {
        Some(d) => {
            check_slug(d)
                .map_err(|e| Rejection::new(Reason::BadTopic, format!("district `{d}`: {e}")))?;
            Some(Cow::Borrowed(d))
        }
        None => None,
    };
    let kind = match c.kind {
        Some(k) => {
            if !known_kind(k, device_kinds) {
                return Err(unknown_kind(k));
            }
            Some(Cow::Borrowed(k))
        }
        None => None,
    };
    Ok((district, kind))
}

/// [`snake_case`] of one name, borrowed when the name is snake case already (`cpu`,
/// `soil_moisture`): most pass-through names are.
pub fn snake_case_one(name: &str) -> Cow<'_, str> {
    let b = name.as_bytes();
    let plain = !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && b[0] != b'_'
        && b[b.len() - 1] != b'_'
        && !name.contains("__");
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(snake_case(&[name]))
    }
}

/// Snake-cases parts of a name and joins them with `_`: `PM2.5` -> `pm2_5`,
/// `BME280`,`DewPoint` -> `bme280_dew_point`. Used for pass-through names.
pub fn snake_case(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        let chars: Vec<char> = part.chars().collect();
        if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        for (i, &c) in chars.iter().enumerate() {
            if c.is_ascii_uppercase() {
                let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
                let next = chars.get(i + 1).copied();
                let boundary = match prev {
                    Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => {
                        // `DewPoint` splits before `P`; `BME280` stays whole.
                        p.is_ascii_lowercase()
                    }
                    Some(p) if p.is_ascii_uppercase() => {
                        next.is_some_and(|n| n.is_ascii_lowercase())
                    }
                    _ => false,
                };
                if boundary && !out.ends_with('_') && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("unnamed");
    }
    out
}

/// Seconds (possibly fractional) to ns, rounded to the microsecond so that the same device
/// time always gives the same key, whatever the float's last bits.
pub(crate) fn secs_to_ns(t: f64) -> i64 {
    ((t * 1e6).round() as i64).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_examples() {
        assert_eq!(snake_case(&["PM2.5"]), "pm2_5");
        assert_eq!(snake_case(&["BME280", "DewPoint"]), "bme280_dew_point");
        assert_eq!(
            snake_case(&["SHT3X-0x44", "Temperature"]),
            "sht3x_0x44_temperature"
        );
        assert_eq!(snake_case(&["CarbonDioxide"]), "carbon_dioxide");
        assert_eq!(
            snake_case(&["ENERGY", "TotalStartTime"]),
            "energy_total_start_time"
        );
        assert_eq!(snake_case(&["cpu", "usage_idle"]), "cpu_usage_idle");
        assert_eq!(snake_case(&["eCO2"]), "e_co2");
        assert_eq!(snake_case(&["!!"]), "unnamed");
        for name in [
            "cpu",
            "soil_moisture",
            "PM2.5",
            "_x",
            "x_",
            "a__b",
            "",
            "eCO2",
            "a-b",
        ] {
            let one = snake_case_one(name);
            assert_eq!(one, snake_case(&[name]), "{name:?}");
            assert_eq!(
                matches!(one, Cow::Borrowed(_)),
                matches!(name, "cpu" | "soil_moisture"),
                "{name:?} borrowed only when already snake case"
            );
        }
    }

    #[test]
    fn device_normalisation() {
        assert_eq!(
            normalise_device("tasmota_A1B2C3").unwrap(),
            "tasmota_a1b2c3"
        );
        assert_eq!(normalise_device("My.Host").unwrap(), "my-host");
        assert_eq!(normalise_device("").unwrap_err().reason, Reason::BadTopic);
        assert_eq!(
            normalise_device(&"x".repeat(65)).unwrap_err().reason,
            Reason::BadTopic
        );
    }

    #[test]
    fn seconds_round_to_microseconds() {
        assert_eq!(
            secs_to_ns(1_767_600_000.123_456_7),
            1_767_600_000_123_457_000
        );
        assert_eq!(secs_to_ns(0.0), 0);
    }
}

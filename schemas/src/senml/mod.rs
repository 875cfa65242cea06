//! The SenML data model (RFC 8428): records as they travel, base-value resolution, and
//! the codecs in [`cbor`] and [`json`].
//!
//! A pack is a list of records. Base fields (`bn`, `bt`, `bu`, `bv`, `bs`, `bver`) apply to
//! the record that carries them and every later one until overridden; [`Resolver`] applies
//! them and yields [`Resolved`] records with full names, absolute or relative times and
//! final values.
//!
//! **Sequence numbers.** The device's per-message sequence number travels as the extension
//! label [`SEQ_LABEL`] (`"seq"`, an unsigned integer) in the first record of the pack. RFC
//! 8428 section 6 reserves integer keys for registered labels, so in CBOR the extension
//! uses the text key `"seq"` too. The label does not end in `_`, so SenML tools that do not
//! know it ignore it, as RFC 8428 section 4.4 requires.
//!
//! **Time.** Times are seconds since the Unix epoch. A resolved time below 2^28 is
//! relative to the time of receipt (RFC 8428 section 4.5.3): a device that has no wall
//! clock yet omits `bt`, and the gateway stamps such readings when they arrive.

pub mod cbor;
pub mod json;
#[cfg(feature = "alloc")]
mod owned;

#[cfg(feature = "alloc")]
pub use owned::{OwnedPack, OwnedRecord, OwnedValue};

use core::fmt;

/// Content type of SenML-CBOR (RFC 8428 section 12.3).
pub const CONTENT_TYPE_CBOR: &str = "application/senml+cbor";
/// Content type of SenML-JSON.
pub const CONTENT_TYPE_JSON: &str = "application/senml+json";
/// Extension label of the device's message sequence number.
pub const SEQ_LABEL: &str = "seq";
/// The SenML version this crate implements (RFC 8428).
pub const VERSION: u64 = 10;
/// Resolved times below this are relative to "now" (RFC 8428 section 4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0; // 2^28

/// A record's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// `v`: a number.
    Float(f64),
    /// `vs`: a string.
    Str(&'a str),
    /// `vb`: a boolean.
    Bool(bool),
    /// `vd`: opaque data (bytes in CBOR, base64url in JSON).
    Data(&'a [u8]),
}

/// One SenML record exactly as on the wire: every field optional, base fields included.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Record<'a> {
    /// `bn`: prefix of the names of this and later records.
    pub base_name: Option<&'a str>,
    /// `bt`: added to the times of this and later records.
    pub base_time: Option<f64>,
    /// `bu`: unit of this and later records that carry none.
    pub base_unit: Option<&'a str>,
    /// `bv`: added to the values of this and later records.
    pub base_value: Option<f64>,
    /// `bs`: added to the sums of this and later records.
    pub base_sum: Option<f64>,
    /// `bver`: SenML version of the pack (10 when absent).
    pub base_version: Option<u64>,
    /// `n`: the name, appended to the base name.
    pub name: Option<&'a str>,
    /// `u`: the unit.
    pub unit: Option<&'a str>,
    /// `v`, `vs`, `vb` or `vd`.
    pub value: Option<Value<'a>>,
    /// `s`: an integrated sum.
    pub sum: Option<f64>,
    /// `t`: time, added to the base time.
    pub time: Option<f64>,
    /// `ut`: seconds until the sensor is expected to report again.
    pub update_time: Option<f64>,
    /// Extension `seq`: the device's message sequence number.
    pub seq: Option<u32>,
}

impl<'a> Record<'a> {
    /// A numeric measurement with name and unit.
    pub const fn measurement(name: &'a str, unit: &'a str, v: f64) -> Self {
        Self {
            base_name: None,
            base_time: None,
            base_unit: None,
            base_value: None,
            base_sum: None,
            base_version: None,
            name: Some(name),
            unit: Some(unit),
            value: Some(Value::Float(v)),
            sum: None,
            time: None,
            update_time: None,
            seq: None,
        }
    }
}

/// A resolved time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Time {
    /// Seconds since the Unix epoch.
    Absolute(f64),
    /// Seconds relative to the time the pack was received (usually zero or negative).
    Relative(f64),
}

impl Time {
    fn from_resolved(t: f64) -> Self {
        if t < RELATIVE_TIME_LIMIT {
            Self::Relative(t)
        } else {
            Self::Absolute(t)
        }
    }

    /// Seconds since the Unix epoch, given the time of receipt.
    pub fn to_unix(self, now_unix: f64) -> f64 {
        match self {
            Self::Absolute(t) => t,
            Self::Relative(dt) => now_unix + dt,
        }
    }
}

/// A record with the base fields applied (RFC 8428 section 4.6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved<'a> {
    /// The base name in force (may be empty).
    pub base_name: &'a str,
    /// The record's own name (may be empty when the base name is the full name).
    pub name: &'a str,
    /// `u`, else `bu`.
    pub unit: Option<&'a str>,
    /// The value with `bv` added to numbers.
    pub value: Option<Value<'a>>,
    /// The sum with `bs` added.
    pub sum: Option<f64>,
    /// `bt + t`.
    pub time: Time,
    /// `ut`.
    pub update_time: Option<f64>,
}

impl<'a> Resolved<'a> {
    /// The full name, `bn` followed by `n`, without allocating.
    pub fn full_name(&self) -> FullName<'a> {
        FullName(self.base_name, self.name)
    }

    /// The numeric value, if the record has one.
    pub fn number(&self) -> Option<f64> {
        match self.value {
            Some(Value::Float(v)) => Some(v),
            _ => None,
        }
    }
}

/// `bn` + `n`, displayed or compared without allocating.
#[derive(Debug, Clone, Copy)]
pub struct FullName<'a>(pub &'a str, pub &'a str);

impl FullName<'_> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len() + self.1.len()
    }

    /// True when both parts are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Compares with a string.
    pub fn eq_str(&self, s: &str) -> bool {
        s.len() == self.len() && s.starts_with(self.0) && s.ends_with(self.1)
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.bytes().chain(self.1.bytes())
    }
}

impl fmt::Display for FullName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

/// Why a pack cannot be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// `bver` greater than this implementation's version.
    #[error("unsupported SenML version {0} (this implementation understands 10)")]
    UnsupportedVersion(u64),
    /// The resolved name is empty or uses characters RFC 8428 section 4.5.1 forbids.
    #[error(
        "invalid resolved name (RFC 8428 4.5.1: start with a letter or digit, then A-Z a-z 0-9 - : . / _)"
    )]
    InvalidName,
    /// Neither a value nor a sum.
    #[error("record has neither a value nor a sum")]
    MissingValue,
    /// A time, value or sum is NaN or infinite.
    #[error("non-finite number in record")]
    NonFinite,
}

/// Applies base fields across the records of one pack.
#[derive(Debug, Clone, Default)]
pub struct Resolver<'a> {
    base_name: &'a str,
    base_time: f64,
    base_unit: Option<&'a str>,
    base_value: f64,
    base_sum: f64,
    has_base_value: bool,
    seq: Option<u32>,
    first: bool,
}

impl<'a> Resolver<'a> {
    /// A resolver for a new pack.
    pub fn new() -> Self {
        Self {
            first: true,
            ..Self::default()
        }
    }

    /// The pack's sequence number, once the first record has been resolved.
    pub fn seq(&self) -> Option<u32> {
        self.seq
    }

    /// Resolves the next record of the pack.
    pub fn resolve(&mut self, r: &Record<'a>) -> Result<Resolved<'a>, ResolveError> {
        if let Some(v) = r.base_version
            && v > VERSION
        {
            return Err(ResolveError::UnsupportedVersion(v));
        }
        if self.first {
            self.seq = r.seq;
            self.first = false;
        }
        if let Some(bn) = r.base_name {
            self.base_name = bn;
        }
        if let Some(bt) = r.base_time {
            self.base_time = finite(bt)?;
        }
        if let Some(bu) = r.base_unit {
            self.base_unit = Some(bu);
        }
        if let Some(bv) = r.base_value {
            self.base_value = finite(bv)?;
            self.has_base_value = true;
        }
        if let Some(bs) = r.base_sum {
            self.base_sum = finite(bs)?;
        }
        let name = r.name.unwrap_or("");
        let full = FullName(self.base_name, name);
        if !valid_name(&full) {
            return Err(ResolveError::InvalidName);
        }
        let value = match r.value {
            Some(Value::Float(v)) => Some(Value::Float(finite(self.base_value + finite(v)?)?)),
            // A record without a value under a base value in force reports the base value.
            None if self.has_base_value && r.sum.is_none() => Some(Value::Float(self.base_value)),
            other => other,
        };
        let sum = match r.sum {
            Some(s) => Some(finite(self.base_sum + finite(s)?)?),
            None => None,
        };
        if value.is_none() && sum.is_none() {
            return Err(ResolveError::MissingValue);
        }
        let t = self.base_time + finite(r.time.unwrap_or(0.0))?;
        Ok(Resolved {
            base_name: self.base_name,
            name,
            unit: r.unit.or(self.base_unit),
            value,
            sum,
            time: Time::from_resolved(finite(t)?),
            update_time: r.update_time,
        })
    }
}

fn finite(v: f64) -> Result<f64, ResolveError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ResolveError::NonFinite)
    }
}

fn valid_name(n: &FullName<'_>) -> bool {
    let mut bytes = n.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_'))
}

/// Why a pack cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A number is NaN or infinite (neither CBOR nor JSON SenML can carry it meaningfully).
    #[error("non-finite number")]
    NonFinite,
}

/// Why bytes are not a valid pack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not well-formed CBOR or JSON, or truncated.
    #[error("malformed {format}: {detail}")]
    Malformed {
        /// "CBOR" or "JSON".
        format: &'static str,
        /// What the parser reported.
        #[cfg(feature = "alloc")]
        detail: alloc::string::String,
        /// What the parser reported.
        #[cfg(not(feature = "alloc"))]
        detail: &'static str,
    },
    /// Well-formed, but not a SenML pack (not an array of maps, or a field of the wrong type).
    #[error("not a SenML pack: {0}")]
    NotSenml(&'static str),
    /// A label ending in `_` that this implementation does not understand (RFC 8428 4.4).
    #[error("unknown must-understand label")]
    MustUnderstand,
    /// A pack with no records.
    #[error("empty pack")]
    Empty,
}

impl DecodeError {
    #[cfg(feature = "alloc")]
    pub(crate) fn malformed(format: &'static str, detail: impl fmt::Display) -> Self {
        use alloc::string::ToString;
        Self::Malformed {
            format,
            detail: detail.to_string(),
        }
    }

    #[cfg(not(feature = "alloc"))]
    pub(crate) fn malformed(format: &'static str, _detail: impl fmt::Display) -> Self {
        Self::Malformed {
            format,
            detail: "syntax error",
        }
    }
}

/// Decodes SenML-CBOR or SenML-JSON, telling them apart by the first byte: a JSON pack
/// starts with `[` (after optional white space); a CBOR array starts with a major-type-4
/// byte (0x80..=0x9f), which is never printable ASCII.
#[cfg(feature = "std")]
pub fn decode_any(bytes: &[u8]) -> Result<OwnedPack, DecodeError> {
    if looks_like_json(bytes) {
        json::decode_owned(bytes)
    } else {
        OwnedPack::from_records(cbor::decode(bytes)?)
    }
}

/// True when the payload starts like a JSON document.
pub fn looks_like_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[' || *b == b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_fields_apply_and_persist() {
        let recs = [
            Record {
                base_name: Some("urn:dev:ow:10e2073a01080063:"),
                base_time: Some(1.276020076001e9),
                base_unit: Some("A"),
                base_version: Some(5),
                name: Some("voltage"),
                unit: Some("V"),
                value: Some(Value::Float(120.1)),
                ..Default::default()
            },
            Record {
                name: Some("current"),
                time: Some(-5.0),
                value: Some(Value::Float(1.2)),
                ..Default::default()
            },
        ];
        let mut r = Resolver::new();
        let a = r.resolve(&recs[0]).unwrap();
        let b = r.resolve(&recs[1]).unwrap();
        assert!(a.full_name().eq_str("urn:dev:ow:10e2073a01080063:voltage"));
        assert_eq!(a.unit, Some("V"));
        assert_eq!(b.unit, Some("A"));
        assert_eq!(b.time, Time::Absolute(1.276020076001e9 - 5.0));
        assert_eq!(b.number(), Some(1.2));
    }

    #[test]
    fn base_value_and_relative_time() {
        let recs = [
            Record {
                base_name: Some("dev:"),
                base_value: Some(20.0),
                name: Some("t"),
                value: Some(Value::Float(0.5)),
                seq: Some(7),
                ..Default::default()
            },
            Record {
                name: Some("t"),
                time: Some(-10.0),
                ..Default::default()
            },
        ];
        let mut r = Resolver::new();
        let a = r.resolve(&recs[0]).unwrap();
        let b = r.resolve(&recs[1]).unwrap();
        assert_eq!(r.seq(), Some(7));
        assert_eq!(a.number(), Some(20.5));
        assert_eq!(b.number(), Some(20.0));
        assert_eq!(b.time, Time::Relative(-10.0));
        assert_eq!(b.time.to_unix(1_700_000_000.0), 1_699_999_990.0);
    }

    #[test]
    fn resolution_errors() {
        let mut r = Resolver::new();
        let bad_name = Record {
            name: Some("-x"),
            value: Some(Value::Float(1.0)),
            ..Default::default()
        };
        assert_eq!(r.resolve(&bad_name), Err(ResolveError::InvalidName));
        let no_value = Record {
            name: Some("x"),
            ..Default::default()
        };
        assert_eq!(
            Resolver::new().resolve(&no_value),
            Err(ResolveError::MissingValue)
        );
        let nan = Record {
            name: Some("x"),
            value: Some(Value::Float(f64::NAN)),
            ..Default::default()
        };
        assert_eq!(Resolver::new().resolve(&nan), Err(ResolveError::NonFinite));
        let ver = Record {
            base_version: Some(11),
            name: Some("x"),
            value: Some(Value::Float(1.0)),
            ..Default::default()
        };
        assert_eq!(
            Resolver::new().resolve(&ver),
            Err(ResolveError::UnsupportedVersion(11))
        );
    }
}

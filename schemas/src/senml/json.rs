//! SenML-JSON (RFC 8428 section 5): a JSON array of objects keyed by the label names.
//!
//! Encoding writes into a caller's buffer without allocating (the device side); decoding
//! (feature `std`) produces an [`OwnedPack`](super::OwnedPack), because JSON strings may
//! carry escapes that cannot be borrowed from the input.

use super::{EncodeError, Record, SEQ_LABEL, Value};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use core::fmt::{self, Write};

/// Encodes a pack as SenML-JSON into `buf` and returns the number of bytes written.
pub fn encode(records: &[Record<'_>], buf: &mut [u8]) -> Result<usize, EncodeError> {
    super::cbor::for_each_checked(records)?;
    let mut w = SliceWriter { buf, len: 0 };
    encode_into(records, &mut w).map_err(|_| EncodeError::BufferTooSmall)?;
    Ok(w.len)
}

struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl SliceWriter<'_> {
    fn push(&mut self, bytes: &[u8]) -> fmt::Result {
        let end = self.len.checked_add(bytes.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes())
    }
}

fn encode_into(records: &[Record<'_>], w: &mut SliceWriter<'_>) -> fmt::Result {
    w.push(b"[")?;
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            w.push(b",")?;
        }
        let mut obj = Obj { w, first: true };
        if let Some(s) = r.base_name {
            obj.key("bn")?;
            string(obj.w, s)?;
        }
        if let Some(v) = r.base_time {
            obj.key("bt")?;
            number(obj.w, v)?;
        }
        if let Some(s) = r.base_unit {
            obj.key("bu")?;
            string(obj.w, s)?;
        }
        if let Some(v) = r.base_value {
            obj.key("bv")?;
            number(obj.w, v)?;
        }
        if let Some(v) = r.base_sum {
            obj.key("bs")?;
            number(obj.w, v)?;
        }
        if let Some(v) = r.base_version {
            obj.key("bver")?;
            write!(obj.w, "{v}")?;
        }
        if let Some(v) = r.seq {
            obj.key(SEQ_LABEL)?;
            write!(obj.w, "{v}")?;
        }
        if let Some(s) = r.name {
            obj.key("n")?;
            string(obj.w, s)?;
        }
        if let Some(s) = r.unit {
            obj.key("u")?;
            string(obj.w, s)?;
        }
        match r.value {
            Some(Value::Float(v)) => {
                obj.key("v")?;
                number(obj.w, v)?;
            }
            Some(Value::Str(s)) => {
                obj.key("vs")?;
                string(obj.w, s)?;
            }
            Some(Value::Bool(b)) => {
                obj.key("vb")?;
                obj.w.push(if b { b"true" } else { b"false" })?;
            }
            Some(Value::Data(d)) => {
                obj.key("vd")?;
                obj.w.push(b"\"")?;
                let start = obj.w.len;
                let room = obj.w.buf.get_mut(start..).ok_or(fmt::Error)?;
                let n = URL_SAFE_NO_PAD
                    .encode_slice(d, room)
                    .map_err(|_| fmt::Error)?;
                obj.w.len += n;
                obj.w.push(b"\"")?;
            }
            None => {}
        }
        if let Some(v) = r.sum {
            obj.key("s")?;
            number(obj.w, v)?;
        }
        if let Some(v) = r.time {
            obj.key("t")?;
            number(obj.w, v)?;
        }
        if let Some(v) = r.update_time {
            obj.key("ut")?;
            number(obj.w, v)?;
        }
        if obj.first {
            obj.w.push(b"{")?;
        }
        obj.w.push(b"}")?;
    }
    w.push(b"]")
}

struct Obj<'w, 'b> {
    w: &'w mut SliceWriter<'b>,
    first: bool,
}

impl Obj<'_, '_> {
    fn key(&mut self, k: &str) -> fmt::Result {
        self.w.push(if self.first { b"{\"" } else { b",\"" })?;
        self.first = false;
        self.w.push(k.as_bytes())?;
        self.w.push(b"\":")
    }
}

/// Writes a finite number; `Display` for `f64` gives the shortest representation that
/// reads back to the same value, which is valid JSON (it never uses exponents or `NaN`).
fn number(w: &mut SliceWriter<'_>, v: f64) -> fmt::Result {
    write!(w, "{v}")
}

fn string(w: &mut SliceWriter<'_>, s: &str) -> fmt::Result {
    w.push(b"\"")?;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        w.write_str(&s[start..i])?;
        match esc {
            Some(e) => w.write_str(e)?,
            None => write!(w, "\\u{:04x}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    w.write_str(&s[start..])?;
    w.push(b"\"")
}

#[cfg(feature = "std")]
pub use decode::decode_owned;

#[cfg(feature = "std")]
mod decode {
    use super::super::{DecodeError, OwnedPack, OwnedRecord, OwnedValue, SEQ_LABEL};
    use super::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// Decodes a SenML-JSON pack.
    pub fn decode_owned(bytes: &[u8]) -> Result<OwnedPack, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let records = de.deserialize_seq(PackVisitor).map_err(classify)?;
        de.end().map_err(|e| DecodeError::malformed("JSON", e))?;
        if records.is_empty() {
            return Err(DecodeError::Empty);
        }
        Ok(OwnedPack { records })
    }

    const MUST_UNDERSTAND: &str = "unknown must-understand label";

    fn classify(e: serde_json::Error) -> DecodeError {
        if e.is_data() {
            if e.to_string().starts_with(MUST_UNDERSTAND) {
                return DecodeError::MustUnderstand;
            }
            DecodeError::malformed("JSON", format_args!("not a SenML pack: {e}"))
        } else {
            DecodeError::malformed("JSON", e)
        }
    }

    struct PackVisitor;

    impl<'de> Visitor<'de> for PackVisitor {
        type Value = Vec<OwnedRecord>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a SenML pack (an array of records)")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(256));
            while let Some(r) = seq.next_element::<RecordDe>()? {
                out.push(r.0);
            }
            Ok(out)
        }
    }

    struct RecordDe(OwnedRecord);

    impl<'de> de::Deserialize<'de> for RecordDe {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(RecordVisitor).map(RecordDe)
        }
    }

    struct RecordVisitor;

    impl<'de> Visitor<'de> for RecordVisitor {
        type Value = OwnedRecord;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a SenML record (an object)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut r = OwnedRecord::default();
            while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "bn" => r.base_name = Some(m.next_value()?),
                    "bt" => r.base_time = Some(m.next_value()?),
                    "bu" => r.base_unit = Some(m.next_value()?),
                    "bv" => r.base_value = Some(m.next_value()?),
                    "bs" => r.base_sum = Some(m.next_value()?),
                    "bver" => r.base_version = Some(m.next_value()?),
                    "n" => r.name = Some(m.next_value()?),
                    "u" => r.unit = Some(m.next_value()?),
                    "v" => r.value = Some(OwnedValue::Float(m.next_value()?)),
                    "vs" => r.value = Some(OwnedValue::Str(m.next_value::<String>()?)),
                    "vb" => r.value = Some(OwnedValue::Bool(m.next_value()?)),
                    "vd" => {
                        let s: String = m.next_value()?;
                        let bytes = URL_SAFE_NO_PAD
                            .decode(s.trim_end_matches('='))
                            .map_err(|_| de::Error::custom("vd is not base64url"))?;
                        r.value = Some(OwnedValue::Data(bytes));
                    }
                    "s" => r.sum = Some(m.next_value()?),
                    "t" => r.time = Some(m.next_value()?),
                    "ut" => r.update_time = Some(m.next_value()?),
                    k if k == SEQ_LABEL => r.seq = Some(m.next_value()?),
                    k if k.ends_with('_') => return Err(de::Error::custom(MUST_UNDERSTAND)),
                    _ => {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        let r = [Record {
            name: Some("a\"b\\c\n"),
            value: Some(Value::Str("\u{1}")),
            ..Default::default()
        }];
        let mut buf = [0u8; 64];
        let n = encode(&r, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"[{"n":"a\"b\\c\n","vs":"\u0001"}]"#
        );
    }

    #[test]
    fn small_buffer_is_an_error() {
        let r = [Record::measurement("temperature", "Cel", 17.25)];
        let mut buf = [0u8; 10];
        assert_eq!(encode(&r, &mut buf), Err(EncodeError::BufferTooSmall));
    }
}

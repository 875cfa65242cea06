//! SenML-CBOR (RFC 8428 section 6): a CBOR array of maps keyed by the registered integer
//! labels; extensions such as [`SEQ_LABEL`](super::SEQ_LABEL) use text keys.
//!
//! Encoding writes into a caller's buffer and decoding iterates records borrowing from
//! the input, so neither allocates. Numbers are written in the smallest exact form
//! (integer, then half, single and double precision), which keeps a typical six-metric pack
//! well under a hundred bytes.

use super::{DecodeError, EncodeError, Record, SEQ_LABEL, Value};
use minicbor::data::Type;
use minicbor::encode::write::{Cursor, EndOfSlice};
use minicbor::{Decoder, Encoder};

/// Integer labels of RFC 8428 Table 4.
mod label {
    pub const BVER: i64 = -1;
    pub const BN: i64 = -2;
    pub const BT: i64 = -3;
    pub const BU: i64 = -4;
    pub const BV: i64 = -5;
    pub const BS: i64 = -6;
    pub const N: i64 = 0;
    pub const U: i64 = 1;
    pub const V: i64 = 2;
    pub const VS: i64 = 3;
    pub const VB: i64 = 4;
    pub const S: i64 = 5;
    pub const T: i64 = 6;
    pub const UT: i64 = 7;
    pub const VD: i64 = 8;
}

type EncResult = Result<(), minicbor::encode::Error<EndOfSlice>>;

/// Encodes a pack into `buf` and returns the number of bytes written.
pub fn encode(records: &[Record<'_>], buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut e = Encoder::new(Cursor::new(buf));
    for_each_checked(records)?;
    (|| -> EncResult {
        e.array(records.len() as u64)?;
        for r in records {
            encode_record(&mut e, r)?;
        }
        Ok(())
    })()
    .map_err(|_| EncodeError::BufferTooSmall)?;
    Ok(e.writer().position())
}

/// Rejects NaN and infinities before anything is written.
pub(crate) fn for_each_checked(records: &[Record<'_>]) -> Result<(), EncodeError> {
    let ok = |v: Option<f64>| v.is_none_or(f64::is_finite);
    for r in records {
        let value_ok = match r.value {
            Some(Value::Float(v)) => v.is_finite(),
            _ => true,
        };
        if !(value_ok
            && ok(r.base_time)
            && ok(r.base_value)
            && ok(r.base_sum)
            && ok(r.sum)
            && ok(r.time)
            && ok(r.update_time))
        {
            return Err(EncodeError::NonFinite);
        }
    }
    Ok(())
}

fn encode_record(e: &mut Encoder<Cursor<&mut [u8]>>, r: &Record<'_>) -> EncResult {
    let fields = [
        r.base_version.is_some(),
        r.base_name.is_some(),
        r.base_time.is_some(),
        r.base_unit.is_some(),
        r.base_value.is_some(),
        r.base_sum.is_some(),
        r.seq.is_some(),
        r.name.is_some(),
        r.unit.is_some(),
        r.value.is_some(),
        r.sum.is_some(),
        r.time.is_some(),
        r.update_time.is_some(),
    ];
    e.map(fields.iter().filter(|f| **f).count() as u64)?;
    if let Some(v) = r.base_version {
        e.i64(label::BVER)?.u64(v)?;
    }
    if let Some(s) = r.base_name {
        e.i64(label::BN)?.str(s)?;
    }
    if let Some(t) = r.base_time {
        e.i64(label::BT)?;
        number(e, t)?;
    }
    if let Some(s) = r.base_unit {
        e.i64(label::BU)?.str(s)?;
    }
    if let Some(v) = r.base_value {
        e.i64(label::BV)?;
        number(e, v)?;
    }
    if let Some(v) = r.base_sum {
        e.i64(label::BS)?;
        number(e, v)?;
    }
    if let Some(seq) = r.seq {
        e.str(SEQ_LABEL)?.u32(seq)?;
    }
    if let Some(s) = r.name {
        e.i64(label::N)?.str(s)?;
    }
    if let Some(s) = r.unit {
        e.i64(label::U)?.str(s)?;
    }
    match r.value {
        Some(Value::Float(v)) => {
            e.i64(label::V)?;
            number(e, v)?;
        }
        Some(Value::Str(s)) => {
            e.i64(label::VS)?.str(s)?;
        }
        Some(Value::Bool(b)) => {
            e.i64(label::VB)?.bool(b)?;
        }
        Some(Value::Data(d)) => {
            e.i64(label::VD)?.bytes(d)?;
        }
        None => {}
    }
    if let Some(v) = r.sum {
        e.i64(label::S)?;
        number(e, v)?;
    }
    if let Some(v) = r.time {
        e.i64(label::T)?;
        number(e, v)?;
    }
    if let Some(v) = r.update_time {
        e.i64(label::UT)?;
        number(e, v)?;
    }
    Ok(())
}

/// 2^53: integers up to this size are exact in an f64.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Writes a number in its smallest exact CBOR form.
fn number(e: &mut Encoder<Cursor<&mut [u8]>>, v: f64) -> EncResult {
    if v == (v as i64) as f64 && v.abs() <= MAX_EXACT_INT {
        e.i64(v as i64)?;
    } else if half::f16::from_f64(v).to_f64() == v {
        e.f16(v as f32)?;
    } else if ((v as f32) as f64) == v {
        e.f32(v as f32)?;
    } else {
        e.f64(v)?;
    }
    Ok(())
}

/// Starts decoding a pack. The iterator yields records borrowing from `bytes`; it
/// checks that nothing but white space... nothing at all follows the pack.
pub fn decode(bytes: &[u8]) -> Result<RecordIter<'_>, DecodeError> {
    let mut d = Decoder::new(bytes);
    match d.datatype().map_err(malformed)? {
        Type::Array | Type::ArrayIndef => {}
        _ => return Err(DecodeError::NotSenml("top level is not an array")),
    }
    let remaining = d.array().map_err(malformed)?;
    if remaining == Some(0) {
        return Err(DecodeError::Empty);
    }
    Ok(RecordIter {
        d,
        remaining,
        done: false,
        count: 0,
    })
}

/// Iterator over the records of a SenML-CBOR pack.
#[derive(Debug)]
pub struct RecordIter<'a> {
    d: Decoder<'a>,
    /// `None` for an indefinite-length array.
    remaining: Option<u64>,
    done: bool,
    count: u64,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let at_end = match self.remaining {
            Some(0) => true,
            Some(_) => false,
            None => match self.d.datatype() {
                Ok(Type::Break) => {
                    self.d.set_position(self.d.position() + 1);
                    true
                }
                Ok(_) => false,
                Err(e) => return self.fail(malformed(e)),
            },
        };
        if at_end {
            self.done = true;
            if self.count == 0 {
                return Some(Err(DecodeError::Empty));
            }
            if self.d.position() != self.d.input().len() {
                return Some(Err(DecodeError::NotSenml("trailing bytes after the pack")));
            }
            return None;
        }
        if let Some(n) = self.remaining.as_mut() {
            *n -= 1;
        }
        self.count += 1;
        match decode_record(&mut self.d) {
            Ok(r) => Some(Ok(r)),
            Err(e) => self.fail(e),
        }
    }
}

impl<'a> RecordIter<'a> {
    fn fail(&mut self, e: DecodeError) -> Option<Result<Record<'a>, DecodeError>> {
        self.done = true;
        Some(Err(e))
    }
}

/// Decodes a whole pack into a vector of borrowed records.
#[cfg(feature = "alloc")]
pub fn decode_vec(bytes: &[u8]) -> Result<alloc::vec::Vec<Record<'_>>, DecodeError> {
    decode(bytes)?.collect()
}

fn malformed(e: minicbor::decode::Error) -> DecodeError {
    DecodeError::malformed("CBOR", e)
}

fn decode_record<'a>(d: &mut Decoder<'a>) -> Result<Record<'a>, DecodeError> {
    if !matches!(d.datatype().map_err(malformed)?, Type::Map | Type::MapIndef) {
        return Err(DecodeError::NotSenml("record is not a map"));
    }
    let len = d.map().map_err(malformed)?;
    let mut r = Record::default();
    let mut i = 0u64;
    loop {
        match len {
            Some(n) if i == n => break,
            None if d.datatype().map_err(malformed)? == Type::Break => {
                d.set_position(d.position() + 1);
                break;
            }
            _ => {}
        }
        i += 1;
        match d.datatype().map_err(malformed)? {
            Type::String => {
                let key = d.str().map_err(malformed)?;
                if key == SEQ_LABEL {
                    let seq = d.u32().map_err(|_| {
                        DecodeError::NotSenml("`seq` is not an unsigned 32-bit integer")
                    })?;
                    r.seq = Some(seq);
                } else if key.ends_with('_') {
                    return Err(DecodeError::MustUnderstand);
                } else {
                    d.skip().map_err(malformed)?;
                }
            }
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64 => {
                let key = d
                    .i64()
                    .map_err(|_| DecodeError::NotSenml("label out of range"))?;
                decode_field(d, key, &mut r)?;
            }
            _ => {
                return Err(DecodeError::NotSenml(
                    "label is neither an integer nor a text string",
                ));
            }
        }
    }
    Ok(r)
}

fn decode_field<'a>(d: &mut Decoder<'a>, key: i64, r: &mut Record<'a>) -> Result<(), DecodeError> {
    let text = |d: &mut Decoder<'a>| {
        d.str()
            .map_err(|_| DecodeError::NotSenml("expected a text string"))
    };
    match key {
        label::BVER => {
            r.base_version = Some(
                d.u64()
                    .map_err(|_| DecodeError::NotSenml("bver is not an unsigned integer"))?,
            )
        }
        label::BN => r.base_name = Some(text(d)?),
        label::BT => r.base_time = Some(read_number(d)?),
        label::BU => r.base_unit = Some(text(d)?),
        label::BV => r.base_value = Some(read_number(d)?),
        label::BS => r.base_sum = Some(read_number(d)?),
        label::N => r.name = Some(text(d)?),
        label::U => r.unit = Some(text(d)?),
        label::V => r.value = Some(Value::Float(read_number(d)?)),
        label::VS => r.value = Some(Value::Str(text(d)?)),
        label::VB => {
            r.value = Some(Value::Bool(
                d.bool()
                    .map_err(|_| DecodeError::NotSenml("vb is not a boolean"))?,
            ))
        }
        label::VD => {
            r.value =
                Some(Value::Data(d.bytes().map_err(|_| {
                    DecodeError::NotSenml("vd is not a byte string")
                })?))
        }
        label::S => r.sum = Some(read_number(d)?),
        label::T => r.time = Some(read_number(d)?),
        label::UT => r.update_time = Some(read_number(d)?),
        // RFC 8428 section 6: the integer table is conclusive; an unknown integer label is
        // from a future version we cannot interpret safely.
        _ => return Err(DecodeError::NotSenml("unknown integer label")),
    }
    Ok(())
}

fn read_number(d: &mut Decoder<'_>) -> Result<f64, DecodeError> {
    let not_number = || DecodeError::NotSenml("expected a number");
    match d.datatype().map_err(malformed)? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            d.u64().map(|v| v as f64).map_err(|_| not_number())
        }
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => {
            d.i64().map(|v| v as f64).map_err(|_| not_number())
        }
        Type::Int => d
            .int()
            .map(|v| i128::from(v) as f64)
            .map_err(|_| not_number()),
        Type::F16 | Type::F32 | Type::F64 => d.f64().map_err(|_| not_number()),
        _ => Err(not_number()),
    }
}

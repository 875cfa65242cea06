//! Fuzz target `senml_roundtrip`: structured packs (any strings, any numbers, any field
//! combination) encoded as CBOR and as JSON must decode back to the same records, and
//! non-finite numbers must be refused by both encoders.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use schemas::senml::{Record, Value};

#[derive(Debug, Arbitrary)]
enum AnyValue {
    Float(f64),
    Str(String),
    Bool(bool),
    Data(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct AnyRecord {
    base_name: Option<String>,
    base_time: Option<f64>,
    base_unit: Option<String>,
    base_value: Option<f64>,
    base_sum: Option<f64>,
    base_version: Option<u64>,
    name: Option<String>,
    unit: Option<String>,
    value: Option<AnyValue>,
    sum: Option<f64>,
    time: Option<f64>,
    update_time: Option<f64>,
    seq: Option<u32>,
}

impl AnyRecord {
    fn as_record(&self) -> Record<'_> {
        Record {
            base_name: self.base_name.as_deref(),
            base_time: self.base_time,
            base_unit: self.base_unit.as_deref(),
            base_value: self.base_value,
            base_sum: self.base_sum,
            base_version: self.base_version,
            name: self.name.as_deref(),
            unit: self.unit.as_deref(),
            value: self.value.as_ref().map(|v| match v {
                AnyValue::Float(f) => Value::Float(*f),
                AnyValue::Str(s) => Value::Str(s),
                AnyValue::Bool(b) => Value::Bool(*b),
                AnyValue::Data(d) => Value::Data(d),
            }),
            sum: self.sum,
            time: self.time,
            update_time: self.update_time,
            seq: self.seq,
        }
    }

    /// Bytes of text and data, a floor for the encoded size.
    fn payload_len(&self) -> usize {
        let s = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        let v = match &self.value {
            Some(AnyValue::Str(x)) => x.len(),
            Some(AnyValue::Data(d)) => d.len(),
            _ => 0,
        };
        s(&self.base_name) + s(&self.base_unit) + s(&self.name) + s(&self.unit) + v + 128
    }
}

fuzz_target!(|pack: Vec<AnyRecord>| {
    let records: Vec<Record<'_>> = pack.iter().map(AnyRecord::as_record).collect();
    let size = pack.iter().map(AnyRecord::payload_len).sum();
    city_fuzz::oracle::roundtrip_records(&records, size);
});

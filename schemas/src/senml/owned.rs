//! Owned packs for the gateway side, where decoded JSON strings may need unescaping and
//! packs outlive the buffer they arrived in.

use super::{DecodeError, Record, Value};
use alloc::string::String;
use alloc::vec::Vec;

/// An owned record value.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    /// `v`.
    Float(f64),
    /// `vs`.
    Str(String),
    /// `vb`.
    Bool(bool),
    /// `vd`.
    Data(Vec<u8>),
}

/// An owned [`Record`].
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct OwnedRecord {
    pub base_name: Option<String>,
    pub base_time: Option<f64>,
    pub base_unit: Option<String>,
    pub base_value: Option<f64>,
    pub base_sum: Option<f64>,
    pub base_version: Option<u64>,
    pub name: Option<String>,
    pub unit: Option<String>,
    pub value: Option<OwnedValue>,
    pub sum: Option<f64>,
    pub time: Option<f64>,
    pub update_time: Option<f64>,
    pub seq: Option<u32>,
}

impl OwnedRecord {
    /// Borrows as a wire record.
    pub fn as_record(&self) -> Record<'_> {
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
                OwnedValue::Float(f) => Value::Float(*f),
                OwnedValue::Str(s) => Value::Str(s),
                OwnedValue::Bool(b) => Value::Bool(*b),
                OwnedValue::Data(d) => Value::Data(d),
            }),
            sum: self.sum,
            time: self.time,
            update_time: self.update_time,
            seq: self.seq,
        }
    }

    /// Copies a wire record.
    pub fn from_record(r: &Record<'_>) -> Self {
        Self {
            base_name: r.base_name.map(String::from),
            base_time: r.base_time,
            base_unit: r.base_unit.map(String::from),
            base_value: r.base_value,
            base_sum: r.base_sum,
            base_version: r.base_version,
            name: r.name.map(String::from),
            unit: r.unit.map(String::from),
            value: r.value.map(|v| match v {
                Value::Float(f) => OwnedValue::Float(f),
                Value::Str(s) => OwnedValue::Str(s.into()),
                Value::Bool(b) => OwnedValue::Bool(b),
                Value::Data(d) => OwnedValue::Data(d.into()),
            }),
            sum: r.sum,
            time: r.time,
            update_time: r.update_time,
            seq: r.seq,
        }
    }
}

/// An owned pack.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OwnedPack {
    /// The records in order.
    pub records: Vec<OwnedRecord>,
}

impl OwnedPack {
    /// Collects decoded records, failing on the first error.
    pub fn from_records<'a>(
        it: impl IntoIterator<Item = Result<Record<'a>, DecodeError>>,
    ) -> Result<Self, DecodeError> {
        let records = it
            .into_iter()
            .map(|r| r.map(|r| OwnedRecord::from_record(&r)))
            .collect::<Result<Vec<_>, _>>()?;
        if records.is_empty() {
            return Err(DecodeError::Empty);
        }
        Ok(Self { records })
    }

    /// The records as wire records.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        self.records.iter().map(OwnedRecord::as_record)
    }
}

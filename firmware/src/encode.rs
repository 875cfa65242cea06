//! What the node puts on the wire: SenML-CBOR packs of readings. (The retained `meta`
//! document is `schemas::meta`.)
//!
//! **Pack layout.** One pack per reporting period, one record per metric:
//!
//! ```text
//! [ {bn: "aq-0001:", bt: 1763848800, "seq": 41, n: "pm25", u: "ug/m3", v: 12.5},
//!   {n: "pm10", u: "ug/m3", v: 20},  ... ]
//! ```
//!
//! - The base name is `"{device}:"` and record names are bare catalog names, so a full
//!   SenML name reads `aq-0001:pm25`. The gateway checks that the base name matches the
//!   device level of the topic the pack arrived on.
//! - `bt` is the end of the window the values summarise, in whole Unix seconds (periods
//!   are at least a second, and an integer encodes in 5 bytes where a fractional time
//!   takes 9). A node that does not know the time yet leaves `bt` out: every record's time
//!   is then 0, which SenML reads as relative to the time of receipt (RFC 8428 section
//!   4.5.3), and the gateway stamps the readings when they arrive.
//! - A pack encoded before the time was known is stamped again before it leaves the
//!   backlog ([`restamp`]): with the absolute `bt` once SNTP answered, otherwise with a
//!   negative relative `bt` (its age in seconds when first published), so that a backlog
//!   sent in one burst after an outage does not collapse onto the time of receipt.
//! - The first record carries the extension label `seq`: packs since boot, from 0.
//! - Units are always present: they make a pack self-describing to any SenML tool, for
//!   about 6 bytes per record.
//! - Values are the window aggregates (see [`crate::sampler`]); the encoder writes each
//!   number in its shortest exact CBOR form.

use schemas::senml::{self, Record};

use crate::drivers::Reading;

/// Most records in one pack: one per catalog metric.
pub const MAX_RECORDS: usize = schemas::catalog::COUNT;

/// Longest base name: a 64-byte device slug and `:`.
pub const MAX_BASE_NAME: usize = schemas::topic::MAX_SLUG_LEN + 1;

/// Why a pack or document could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// More readings than [`MAX_RECORDS`].
    #[error("more readings than a pack holds")]
    TooManyReadings,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A value is NaN or infinite.
    #[error("non-finite value")]
    NonFinite,
    /// The bytes to re-stamp are not a pack this encoder wrote.
    #[error("not a SenML-CBOR pack")]
    NotAPack,
}

impl From<senml::EncodeError> for PackError {
    fn from(e: senml::EncodeError) -> Self {
        match e {
            senml::EncodeError::NonFinite => PackError::NonFinite,
            _ => PackError::BufferTooSmall,
        }
    }
}

/// The header fields of a pack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackHeader<'a> {
    /// Base name, `"{device}:"` (see [`base_name`]).
    pub base_name: &'a str,
    /// Unix ms the values refer to, `None` when the node does not know the time.
    pub unix_ms: Option<u64>,
    /// Packs since boot.
    pub seq: u32,
}

/// The base name of a device's packs: `"{device}:"`.
pub fn base_name(device: &str) -> heapless::String<MAX_BASE_NAME> {
    let mut s = heapless::String::new();
    // Device ids are checked slugs of at most 64 bytes: this cannot overflow.
    let _ = s.push_str(device);
    let _ = s.push(':');
    s
}

/// Encodes a pack of `readings` into `buf`; returns its length.
pub fn encode_pack(
    header: &PackHeader<'_>,
    readings: &[Reading],
    buf: &mut [u8],
) -> Result<usize, PackError> {
    let mut records: heapless::Vec<Record<'_>, MAX_RECORDS> = heapless::Vec::new();
    for r in readings {
        let rec = Record::measurement(r.metric.name, r.metric.unit, r.value);
        records.push(rec).map_err(|_| PackError::TooManyReadings)?;
    }
    if let Some(first) = records.first_mut() {
        first.base_name = Some(header.base_name);
        first.base_time = header.unix_ms.map(unix_seconds);
        first.seq = Some(header.seq);
    }
    Ok(senml::cbor::encode(&records, buf)?)
}

/// Unix ms as the whole seconds a pack's `bt` carries (see the module comment).
pub fn unix_seconds(unix_ms: u64) -> f64 {
    (unix_ms / 1000) as f64
}

/// Re-encodes `pack` with `base_time` as the first record's `bt` (`None` removes it),
/// everything else unchanged; returns the new length in `out`.
pub fn restamp(pack: &[u8], base_time: Option<f64>, out: &mut [u8]) -> Result<usize, PackError> {
    let mut records: heapless::Vec<Record<'_>, MAX_RECORDS> = heapless::Vec::new();
    let iter = senml::cbor::decode(pack).map_err(|_| PackError::NotAPack)?;
    for r in iter {
        let r = r.map_err(|_| PackError::NotAPack)?;
        records.push(r).map_err(|_| PackError::TooManyReadings)?;
    }
    let first = records.first_mut().ok_or(PackError::NotAPack)?;
    first.base_time = base_time;
    Ok(senml::cbor::encode(&records, out)?)
}

//! The retained `meta` message a device publishes at connect: what it is, what it runs,
//! where it stands. JSON, so that operators can read it with any MQTT client:
//!
//! ```json
//! {"fw":"0.1.0","kind":"airquality","district":"hoan-kiem","sensors":["bme280","pms5003"],
//!  "lat":21.0285,"lon":105.8542,"periodS":60}
//! ```
//!
//! Encoding writes into a caller's buffer (devices); decoding needs the `std` feature.

use crate::topic::DeviceKind;

/// Keys a meta field goes by, first the name [`Meta::encode`] writes, then the names other
/// publishers (simulators, third-party devices) use. Read by the gateway's API and by the
/// device-state series ingest writes to the store.
pub mod keys {
    /// Firmware version.
    pub const FIRMWARE: &[&str] = &["fw", "firmware"];
    /// Reporting period, seconds.
    pub const PERIOD: &[&str] = &["periodS", "period_s", "period"];
    /// Latitude.
    pub const LAT: &[&str] = &["lat", "latitude"];
    /// Longitude.
    pub const LON: &[&str] = &["lon", "lng", "longitude"];
}

/// A device's self-description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta<'a> {
    /// Firmware version.
    pub firmware: &'a str,
    /// Device kind.
    pub kind: DeviceKind,
    /// District slug.
    pub district: &'a str,
    /// Sensor part names, e.g. `bme280`, `pms5003`, `scd41`.
    pub sensors: &'a [&'a str],
    /// Latitude in degrees, if known.
    pub lat: Option<f64>,
    /// Longitude in degrees, if known.
    pub lon: Option<f64>,
    /// Reporting period in seconds.
    pub period_s: u32,
}

/// Why a meta message cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A name contains characters that would need JSON escaping (not allowed in names).
    #[error("names must be printable ASCII without quotes or backslashes")]
    BadName,
    /// The JSON is malformed or misses a required field.
    #[cfg(feature = "std")]
    #[error("invalid meta JSON: {0}")]
    Invalid(std::string::String),
}

fn plain(s: &str) -> Result<&str, MetaError> {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        Ok(s)
    } else {
        Err(MetaError::BadName)
    }
}

/// The JSON object as written (field names are the wire's).
#[derive(serde::Serialize)]
struct Wire<'a> {
    fw: &'a str,
    kind: &'a str,
    district: &'a str,
    sensors: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lon: Option<f64>,
    #[serde(rename = "periodS")]
    period_s: u32,
}

impl Meta<'_> {
    /// Encodes as JSON into `buf` (with `serde-json-core`, no allocation), returning the
    /// length. Names must be plain printable ASCII (operators read them as they are); a
    /// position is written only when both coordinates are finite.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, MetaError> {
        plain(self.firmware)?;
        plain(self.district)?;
        for s in self.sensors {
            plain(s)?;
        }
        let position = match (self.lat, self.lon) {
            (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
            _ => None,
        };
        let wire = Wire {
            fw: self.firmware,
            kind: self.kind.as_str(),
            district: self.district,
            sensors: self.sensors,
            lat: position.map(|p| p.0),
            lon: position.map(|p| p.1),
            period_s: self.period_s,
        };
        serde_json_core::to_slice(&wire, buf).map_err(|_| MetaError::BufferTooSmall)
    }
}

/// A decoded meta message (gateway side).
#[cfg(feature = "std")]
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedMeta {
    /// Firmware version.
    #[serde(rename = "fw")]
    pub firmware: std::string::String,
    /// Device kind slug.
    pub kind: Option<std::string::String>,
    /// District slug.
    pub district: Option<std::string::String>,
    /// Sensor part names.
    #[serde(default)]
    pub sensors: std::vec::Vec<std::string::String>,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// Reporting period in seconds.
    pub period_s: Option<u32>,
}

#[cfg(feature = "std")]
impl OwnedMeta {
    /// Parses a meta payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaError> {
        use std::string::ToString;
        serde_json::from_slice(bytes).map_err(|e| MetaError::Invalid(e.to_string()))
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn encode_decode() {
        let m = Meta {
            firmware: "0.1.0",
            kind: DeviceKind::AirQuality,
            district: "hoan-kiem",
            sensors: &["bme280", "pms5003"],
            lat: Some(21.0285),
            lon: Some(105.8542),
            period_s: 60,
        };
        let mut buf = [0u8; 256];
        let n = m.encode(&mut buf).unwrap();
        let o = OwnedMeta::decode(&buf[..n]).unwrap();
        assert_eq!(o.firmware, "0.1.0");
        assert_eq!(o.kind.as_deref(), Some("airquality"));
        assert_eq!(o.sensors, ["bme280", "pms5003"]);
        assert_eq!(
            (o.lat, o.lon, o.period_s),
            (Some(21.0285), Some(105.8542), Some(60))
        );
        assert_eq!(m.encode(&mut [0u8; 20]), Err(MetaError::BufferTooSmall));
        let bad = Meta {
            firmware: "a\"b",
            ..m
        };
        assert_eq!(bad.encode(&mut buf), Err(MetaError::BadName));
        assert!(OwnedMeta::decode(b"{\"kind\":1}").is_err());
    }
}

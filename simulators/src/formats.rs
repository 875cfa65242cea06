//! Wire formats a simulated device can speak, and the `--mix` share of each.
//!
//! | format       | topic                                   | payload |
//! |--------------|-----------------------------------------|---------|
//! | `native`     | `city/{district}/{kind}/{device}/up`    | SenML-CBOR pack, `bn` = `"{device}:"`, `bt` whole seconds, `seq` in the first record |
//! | `tasmota`    | `tele/{device}/SENSOR`                  | Tasmota JSON: `{"Time":"2026-01-05T01:00:00","PMS5003":{"PM2.5":..},"BME280":{..}}` (UTC) |
//! | `esphome`    | `{device}/sensor/{metric}/state`        | the number as text, one message per metric |
//! | `ultralight` | `/{apikey}/{device}/attrs`              | FIWARE UltraLight 2.0 `metric|value|metric|value` |
//! | `line`       | `telegraf/{device}/{metric}`            | InfluxDB line protocol `metric,device=..,district=..,kind=.. value=.. <ns>` |
//!
//! ESPHome and UltraLight messages carry no time: the gateway stamps them on receipt.
//! Names outside Tasmota's own sensor vocabulary are the catalog names.

use std::fmt::Write as _;
use std::str::FromStr;

use schemas::senml::{self, Record};
use schemas::topic::{Channel, DeviceKind, Topic};

use crate::model::Reading;

/// The UltraLight API key used when none is configured.
pub const DEFAULT_UL_APIKEY: &str = "city";

/// A device's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// SenML-CBOR on the native topic scheme.
    Native,
    /// Tasmota `tele/<dev>/SENSOR` JSON.
    Tasmota,
    /// ESPHome `<node>/sensor/<name>/state`.
    Esphome,
    /// FIWARE UltraLight 2.0.
    Ultralight,
    /// InfluxDB line protocol over MQTT (Telegraf style).
    Line,
}

impl Format {
    /// All formats.
    pub const ALL: [Format; 5] = [
        Format::Native,
        Format::Tasmota,
        Format::Esphome,
        Format::Ultralight,
        Format::Line,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Tasmota => "tasmota",
            Format::Esphome => "esphome",
            Format::Ultralight => "ultralight",
            Format::Line => "line",
        }
    }

    /// Whether the message carries its own timestamp (else the gateway stamps it).
    pub fn carries_time(self) -> bool {
        !matches!(self, Format::Esphome | Format::Ultralight)
    }
}

/// A bad `--mix`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// Not `name=share`.
    #[error("mix entry {0:?} is not format=share")]
    Syntax(String),
    /// Unknown format name.
    #[error("unknown format {0:?} (known: tasmota, esphome, ultralight, line)")]
    Unknown(String),
    /// Shares must be in [0, 1] and sum to at most 1.
    #[error("shares must be between 0 and 1 and sum to at most 1")]
    Share,
}

/// Shares of non-native formats; the rest of the fleet is native.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FormatMix {
    shares: Vec<(Format, f64)>,
}

impl FormatMix {
    /// The format of a device whose uniform draw is `u` in [0, 1).
    pub fn pick(&self, u: f64) -> Format {
        let mut acc = 0.0;
        for &(f, share) in &self.shares {
            acc += share;
            if u < acc {
                return f;
            }
        }
        Format::Native
    }
}

impl FromStr for FormatMix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut shares = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, share) = entry
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(entry.into()))?;
            let format = Format::ALL
                .into_iter()
                .find(|f| f.as_str() == name.trim() && *f != Format::Native)
                .ok_or_else(|| MixError::Unknown(name.into()))?;
            let share: f64 = share.trim().parse().map_err(|_| MixError::Share)?;
            if !(0.0..=1.0).contains(&share) {
                return Err(MixError::Share);
            }
            shares.push((format, share));
        }
        if shares.iter().map(|s| s.1).sum::<f64>() > 1.0 + 1e-9 {
            return Err(MixError::Share);
        }
        Ok(Self { shares })
    }
}

/// Who a message is from.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// Device id slug.
    pub device: &'a str,
    /// District slug.
    pub district: &'a str,
    /// Kind.
    pub kind: DeviceKind,
    /// UltraLight API key.
    pub apikey: &'a str,
}

/// One MQTT message of a pack, with the pack readings it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Indices into the pack's readings.
    pub readings: std::ops::Range<usize>,
}

/// Why a pack could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// SenML encoding failed.
    #[error("SenML encoding: {0}")]
    Senml(#[from] senml::EncodeError),
    /// The topic did not fit the scheme.
    #[error("topic: {0}")]
    Topic(#[from] schemas::topic::TopicError),
}

/// The native `up` topic of a device.
pub fn up_topic(s: &Sender<'_>) -> Result<String, FormatError> {
    Ok(Topic::new(s.district, s.kind, s.device, Channel::Up)?.to_string())
}

/// Encodes one pack (the readings of one period, time in Unix seconds, `seq` since boot).
pub fn encode(
    format: Format,
    s: &Sender<'_>,
    unix_s: i64,
    seq: u32,
    readings: &[Reading],
) -> Result<Vec<Wire>, FormatError> {
    let all = 0..readings.len();
    Ok(match format {
        Format::Native => {
            vec![Wire {
                topic: up_topic(s)?,
                payload: native_pack(s.device, unix_s, seq, readings)?,
                readings: all,
            }]
        }
        Format::Tasmota => {
            vec![Wire {
                topic: format!("tele/{}/SENSOR", s.device),
                payload: tasmota_json(unix_s, readings).into_bytes(),
                readings: all,
            }]
        }
        Format::Esphome => readings
            .iter()
            .enumerate()
            .map(|(i, r)| Wire {
                topic: format!("{}/sensor/{}/state", s.device, r.metric.name),
                payload: r.value.to_string().into_bytes(),
                readings: i..i + 1,
            })
            .collect(),
        Format::Ultralight => {
            let mut p = String::new();
            for (i, r) in readings.iter().enumerate() {
                if i > 0 {
                    p.push('|');
                }
                let _ = write!(p, "{}|{}", r.metric.name, r.value);
            }
            vec![Wire {
                topic: format!("/{}/{}/attrs", s.apikey, s.device),
                payload: p.into_bytes(),
                readings: all,
            }]
        }
        Format::Line => readings
            .iter()
            .enumerate()
            .map(|(i, r)| Wire {
                topic: format!("telegraf/{}/{}", s.device, r.metric.name),
                payload: format!(
                    "{},device={},district={},kind={} value={} {}",
                    r.metric.name,
                    s.device,
                    s.district,
                    s.kind.as_str(),
                    r.value,
                    unix_s as i128 * 1_000_000_000
                )
                .into_bytes(),
                readings: i..i + 1,
            })
            .collect(),
    })
}

/// The SenML-CBOR pack, laid out as the firmware core lays it out (`firmware::encode`):
/// base name `"{device}:"`, `bt` in whole seconds and `seq` on the first record, bare
/// catalog names and units on every record.
pub fn native_pack(
    device: &str,
    unix_s: i64,
    seq: u32,
    readings: &[Reading],
) -> Result<Vec<u8>, FormatError> {
    let bn = format!("{device}:");
    let mut records: Vec<Record<'_>> = readings
        .iter()
        .map(|r| Record::measurement(r.metric.name, r.metric.unit, r.value))
        .collect();
    if let Some(first) = records.first_mut() {
        first.base_name = Some(&bn);
        first.base_time = Some(unix_s as f64);
        first.seq = Some(seq);
    }
    let mut buf = vec![0u8; 96 + 48 * readings.len()];
    let n = senml::cbor::encode(&records, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Tasmota's sensor object and field for a catalog metric.
fn tasmota_field(metric: &str) -> (&'static str, &'static str) {
    match metric {
        "pm1" => ("PMS5003", "PM1"),
        "pm25" => ("PMS5003", "PM2.5"),
        "pm10" => ("PMS5003", "PM10"),
        "temperature" => ("BME280", "Temperature"),
        "relativeHumidity" => ("BME280", "Humidity"),
        "pressure" => ("BME280", "Pressure"),
        _ => ("SENSOR", ""),
    }
}

fn tasmota_json(unix_s: i64, readings: &[Reading]) -> String {
    let time = chrono::DateTime::from_timestamp(unix_s, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S");
    let mut root = serde_json::Map::new();
    root.insert("Time".into(), time.to_string().into());
    for r in readings {
        let (sensor, field) = tasmota_field(r.metric.name);
        let field = if field.is_empty() {
            r.metric.name
        } else {
            field
        };
        let obj = root
            .entry(sensor)
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(o) = obj {
            o.insert(field.into(), serde_json::json!(r.value));
        }
    }
    if readings.iter().any(|r| r.metric.name == "temperature") {
        root.insert("TempUnit".into(), "C".into());
    }
    serde_json::Value::Object(root).to_string()
}

/// The retained `meta` document of a native device (same fields as the firmware's).
pub fn meta_json(s: &Sender<'_>, period_s: u32, metrics: &[&str]) -> Vec<u8> {
    let metrics: Vec<_> = metrics
        .iter()
        .filter_map(|n| schemas::catalog::lookup(n))
        .map(|m| serde_json::json!({"n": m.name, "u": m.unit}))
        .collect();
    serde_json::json!({
        "device": s.device,
        "district": s.district,
        "kind": s.kind.as_str(),
        "firmware": concat!("simulators/", env!("CARGO_PKG_VERSION")),
        "format": senml::CONTENT_TYPE_CBOR,
        "period_s": period_s,
        "metrics": metrics,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> Sender<'static> {
        Sender {
            device: "aq-0001",
            district: "ba-dinh",
            kind: DeviceKind::AirQuality,
            apikey: "city",
        }
    }

    fn readings() -> Vec<Reading> {
        vec![Reading::of("pm25", 41.5), Reading::of("temperature", 17.25)]
    }

    #[test]
    fn native_pack_decodes_with_schemas() {
        let w = encode(Format::Native, &sender(), 1_767_574_800, 7, &readings()).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].topic, "city/ba-dinh/airquality/aq-0001/up");
        let pack = senml::decode_any(&w[0].payload).unwrap();
        let recs: Vec<_> = pack.records().collect();
        assert_eq!(recs[0].base_name, Some("aq-0001:"));
        assert_eq!(recs[0].base_time, Some(1_767_574_800.0));
        assert_eq!(recs[0].seq, Some(7));
        assert_eq!(recs[1].name, Some("temperature"));
        assert_eq!(recs[1].value, Some(senml::Value::Float(17.25)));
    }

    #[test]
    fn foreign_formats() {
        let s = sender();
        let t = encode(Format::Tasmota, &s, 1_767_574_800, 0, &readings()).unwrap();
        assert_eq!(t[0].topic, "tele/aq-0001/SENSOR");
        let v: serde_json::Value = serde_json::from_slice(&t[0].payload).unwrap();
        assert_eq!(v["PMS5003"]["PM2.5"], 41.5);
        assert_eq!(v["Time"], "2026-01-05T01:00:00");
        let e = encode(Format::Esphome, &s, 0, 0, &readings()).unwrap();
        assert_eq!(e[1].topic, "aq-0001/sensor/temperature/state");
        assert_eq!(e[1].payload, b"17.25");
        assert_eq!(e[1].readings, 1..2);
        let u = encode(Format::Ultralight, &s, 0, 0, &readings()).unwrap();
        assert_eq!(u[0].topic, "/city/aq-0001/attrs");
        assert_eq!(u[0].payload, b"pm25|41.5|temperature|17.25");
        let l = encode(Format::Line, &s, 1_767_574_800, 0, &readings()).unwrap();
        assert_eq!(l[0].topic, "telegraf/aq-0001/pm25");
        assert_eq!(
            std::str::from_utf8(&l[0].payload).unwrap(),
            "pm25,device=aq-0001,district=ba-dinh,kind=airquality value=41.5 1767574800000000000"
        );
    }

    #[test]
    fn mix_parses_and_picks() {
        let m: FormatMix = "tasmota=0.1,esphome=0.05,ultralight=0.05,line=0.05"
            .parse()
            .unwrap();
        assert_eq!(m.pick(0.05), Format::Tasmota);
        assert_eq!(m.pick(0.12), Format::Esphome);
        assert_eq!(m.pick(0.22), Format::Line);
        assert_eq!(m.pick(0.5), Format::Native);
        assert!("tasmota=0.8,line=0.5".parse::<FormatMix>().is_err());
        assert!("zigbee=0.1".parse::<FormatMix>().is_err());
    }
}

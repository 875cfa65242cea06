//! Wire formats a simulated device can speak, and the `--mix` share of each.
//!
//! | format (`--mix` name)    | topic                                | payload |
//! |--------------------------|--------------------------------------|---------|
//! | `senml` (native)         | `city/{district}/{kind}/{device}/up` | SenML-CBOR pack, `bn` = `"{device}:"`, `bt` whole seconds, `seq` in the first record |
//! | `tasmota`                | `tele/{device}/SENSOR`               | Tasmota JSON: `{"Time":"2026-01-05T08:00:00","PMS5003":{"PM2.5":..},"BME280":{..}}` (Hanoi local time) |
//! | `esphome`                | `{device}/sensor/{metric}/state`     | the number as text, one message per metric |
//! | `ultralight`             | `/{apikey}/{device}/attrs`           | FIWARE UltraLight 2.0 `time|metric|value|metric|value` |
//! | `line-protocol` (`line`) | `telegraf/{device}/{metric}`         | InfluxDB line protocol `metric,device=..,district=..,kind=.. value=.. <ns>` |
//!
//! ESPHome messages carry no time: the gateway stamps them on receipt. The formats and the
//! foreign field names are the wire facts of [`schemas::formats`], which the gateway's
//! decoders read too: a metric is written under the name its format's table marks
//! `written` (SenML and line protocol: the catalog name), and a metric without one is
//! left out of that format's messages.

use std::fmt::Write as _;
use std::str::FromStr;

use schemas::senml::{self, Record};
use schemas::topic::{Channel, DeviceKind, Topic};

use crate::model::Reading;

/// The UltraLight API key used when none is configured.
pub const DEFAULT_UL_APIKEY: &str = "city";

/// A device's wire format: the gateway's formats ([`Format::Senml`] is the native one).
pub use schemas::formats::Format;

/// Whether a message in `format` carries its own timestamp (else the gateway stamps it on
/// receipt): every format as encoded here but ESPHome's.
pub fn carries_time(format: Format) -> bool {
    !matches!(format, Format::Esphome)
}

/// The name of a non-native format in `--mix`: [`Format::as_str`], `line` for line
/// protocol.
pub fn mix_name(format: Format) -> &'static str {
    match format {
        Format::LineProtocol => "line",
        f => f.as_str(),
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
        Format::Senml
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
            let name = name.trim();
            let format = Format::ALL
                .into_iter()
                .find(|f| *f != Format::Senml && (mix_name(*f) == name || f.as_str() == name))
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
    /// Indices of the pack's readings the message carries.
    pub readings: Vec<usize>,
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
/// Foreign formats carry only the metrics their vocabulary names ([`foreign_name`]); the
/// others are left out, as such a device would not have them.
pub fn encode(
    format: Format,
    s: &Sender<'_>,
    unix_s: i64,
    seq: u32,
    readings: &[Reading],
) -> Result<Vec<Wire>, FormatError> {
    let carried: Vec<usize> = (0..readings.len())
        .filter(|&i| foreign_name(format, readings[i].metric.name).is_some())
        .collect();
    let name = |i: usize| foreign_name(format, readings[i].metric.name).unwrap_or_default();
    Ok(match format {
        Format::Senml => {
            vec![Wire {
                topic: up_topic(s)?,
                payload: native_pack(s.device, unix_s, seq, readings)?,
                readings: carried,
            }]
        }
        _ if carried.is_empty() => Vec::new(),
        Format::Tasmota => {
            let mut root = serde_json::Map::new();
            root.insert("Time".into(), local_time(unix_s).into());
            for &i in &carried {
                let sensor = tasmota_sensor(readings[i].metric.name);
                let obj = root
                    .entry(sensor)
                    .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
                if let serde_json::Value::Object(o) = obj {
                    o.insert(name(i).into(), serde_json::json!(readings[i].value));
                }
            }
            root.insert("TempUnit".into(), "C".into());
            vec![Wire {
                topic: format!("tele/{}/SENSOR", s.device),
                payload: serde_json::Value::Object(root).to_string().into_bytes(),
                readings: carried,
            }]
        }
        Format::Esphome => carried
            .iter()
            .map(|&i| Wire {
                topic: format!("{}/sensor/{}/state", s.device, name(i)),
                payload: readings[i].value.to_string().into_bytes(),
                readings: vec![i],
            })
            .collect(),
        Format::Ultralight => {
            // A leading timestamp makes the group's field count odd: the IoT Agent then
            // takes it as the time of the measures.
            let mut p = utc_time(unix_s);
            for &i in &carried {
                let _ = write!(p, "|{}|{}", name(i), readings[i].value);
            }
            vec![Wire {
                topic: format!("/{}/{}/attrs", s.apikey, s.device),
                payload: p.into_bytes(),
                readings: carried,
            }]
        }
        Format::LineProtocol => carried
            .iter()
            .map(|&i| Wire {
                topic: format!("telegraf/{}/{}", s.device, name(i)),
                payload: format!(
                    "{},device={},district={},kind={} value={} {}",
                    name(i),
                    s.device,
                    s.district,
                    s.kind.as_str(),
                    readings[i].value,
                    unix_s as i128 * 1_000_000_000
                )
                .into_bytes(),
                readings: vec![i],
            })
            .collect(),
        // A format the fleet does not speak (yet): nothing to send.
        _ => Vec::new(),
    })
}

/// The name of catalog metric `metric` in `format`, or `None` when the format's devices
/// do not report it: [`Format::field_name`], the name the gateway's decoders map back to
/// the catalog.
pub fn foreign_name(format: Format, metric: &str) -> Option<&'static str> {
    format.field_name(metric)
}

/// The catalog metric of a foreign name, as the gateway decodes it ([`Format::metric`]).
pub fn catalog_name(format: Format, foreign: &str) -> Option<&'static str> {
    format.metric(foreign).map(|m| m.name)
}

/// Whether a device of `kind` can speak `format` at all.
pub fn kind_speaks(kind: DeviceKind, format: Format) -> bool {
    crate::model::metrics_of(kind)
        .iter()
        .any(|m| foreign_name(format, m).is_some())
}

/// Tasmota's sensor object for a catalog metric (its written row's sensor).
fn tasmota_sensor(metric: &str) -> &'static str {
    schemas::formats::TASMOTA
        .written(metric)
        .and_then(|r| r.sensor)
        .unwrap_or("BME280")
}

/// Tasmota's `Time`: local time without a zone; the gateway's `tasmota_utc_offset`
/// (Hanoi's +07:00 by default) converts it back.
pub fn local_time(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s + crate::model::calendar::HANOI_UTC_OFFSET_S, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn utc_time(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The SenML-CBOR pack of a native device.
///
/// The firmware core encodes it ([`firmware::encode::encode_pack`]) whenever every
/// metric is one the firmware knows, so simulated packs are byte for byte what a board
/// sends. Metrics the boards do not measure yet (wind, rain, LAmax) fall back to the same
/// layout written here: base name `"{device}:"`, `bt` in whole seconds and `seq` on the
/// first record, bare catalog names and units on every record.
pub fn native_pack(
    device: &str,
    unix_s: i64,
    seq: u32,
    readings: &[Reading],
) -> Result<Vec<u8>, FormatError> {
    let mut buf = vec![0u8; 96 + 48 * readings.len()];
    let fw: Option<Vec<firmware::Reading>> = readings
        .iter()
        .map(|r| {
            schemas::catalog::lookup(r.metric.name).map(|metric| firmware::Reading {
                metric,
                value: r.value,
            })
        })
        .collect();
    if let Some(fw) = fw {
        let bn = firmware::encode::base_name(device);
        let header = firmware::encode::PackHeader {
            base_name: &bn,
            unix_ms: u64::try_from(unix_s).ok().map(|s| s * 1000),
            seq,
        };
        match firmware::encode::encode_pack(&header, &fw, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Non-finite values are refused by both encoders alike; other errors
            // (pack longer than a board's) fall through to the host encoder.
            Err(firmware::encode::PackError::NonFinite) => {
                return Err(senml::EncodeError::NonFinite.into());
            }
            Err(_) => {}
        }
    }
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
    let n = senml::cbor::encode(&records, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Approximate centres of Hanoi's urban districts (latitude, longitude), for placing
/// simulated stations on the operators' map.
const DISTRICT_CENTRES: &[(&str, f64, f64)] = &[
    ("ba-dinh", 21.0340, 105.8140),
    ("hoan-kiem", 21.0285, 105.8542),
    ("tay-ho", 21.0700, 105.8190),
    ("long-bien", 21.0470, 105.8890),
    ("cau-giay", 21.0330, 105.7900),
    ("dong-da", 21.0140, 105.8270),
    ("hai-ba-trung", 21.0060, 105.8580),
    ("hoang-mai", 20.9740, 105.8630),
    ("thanh-xuan", 20.9950, 105.8100),
    ("nam-tu-liem", 21.0130, 105.7650),
    ("bac-tu-liem", 21.0700, 105.7600),
    ("ha-dong", 20.9630, 105.7700),
];

/// A stable position for a device: its district's centre, moved up to about 1.5 km by a
/// hash of its id, so the same device always stands in the same place.
pub fn position(district: &str, device: &str) -> Option<(f64, f64)> {
    let &(_, lat, lon) = DISTRICT_CENTRES.iter().find(|(d, _, _)| *d == district)?;
    // FNV-1a, then the splitmix64 finaliser so that ids differing in one character land
    // far apart in both coordinates; stable across runs and platforms.
    let mut h = device.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let unit = |bits: u64| (bits & 0xffff) as f64 / 65_535.0 - 0.5;
    let round = |v: f64| (v * 1e5).round() / 1e5;
    Some((
        round(lat + 0.028 * unit(h)),
        round(lon + 0.028 * unit(h >> 32)),
    ))
}

/// Sensor parts a simulated device of this kind stands for.
fn sensors_of(kind: DeviceKind) -> &'static [&'static str] {
    match kind {
        DeviceKind::AirQuality => &["pms5003", "bme280", "scd41"],
        DeviceKind::Weather => &["bme280"],
        DeviceKind::Noise => &["mems-mic"],
        DeviceKind::Wifi => &["ap-stats"],
    }
}

/// The retained `meta` message of a native device, in the documented format of
/// [`schemas::meta`] (firmware version, kind, district, sensors, position, period).
pub fn meta_json(s: &Sender<'_>, period_s: u32) -> Vec<u8> {
    let (lat, lon) = position(s.district, s.device).unzip();
    let meta = schemas::meta::Meta {
        firmware: concat!("simulators/", env!("CARGO_PKG_VERSION")),
        kind: s.kind,
        district: s.district,
        sensors: sensors_of(s.kind),
        lat,
        lon,
        period_s,
    };
    let mut buf = [0u8; 512];
    match meta.encode(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        // Slugs and the fixed strings above always fit and never need escaping.
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_the_documented_document_with_a_stable_position() {
        let s = sender();
        let meta = schemas::meta::OwnedMeta::decode(&meta_json(&s, 60)).unwrap();
        assert_eq!(meta.kind.as_deref(), Some("airquality"));
        assert_eq!(meta.district.as_deref(), Some("ba-dinh"));
        assert_eq!(meta.period_s, Some(60));
        let (lat, lon) = (meta.lat.unwrap(), meta.lon.unwrap());
        assert!(
            (21.0..21.05).contains(&lat) && (105.79..105.84).contains(&lon),
            "{lat},{lon}"
        );
        assert_eq!(
            position("ba-dinh", "aq-0001"),
            Some((lat, lon)),
            "stable per device"
        );
        assert_ne!(position("ba-dinh", "aq-0002"), Some((lat, lon)));
        assert_eq!(position("atlantis", "aq-0001"), None);
    }

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
        let w = encode(Format::Senml, &sender(), 1_767_574_800, 7, &readings()).unwrap();
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
    fn firmware_and_host_encoders_agree() {
        // Air-quality metrics are all known to the firmware; LAmax is not.
        let fw = native_pack("aq-0001", 1_767_574_800, 3, &readings()).unwrap();
        let bn = "aq-0001:";
        let mut host: Vec<Record<'_>> = readings()
            .iter()
            .map(|r| Record::measurement(r.metric.name, r.metric.unit, r.value))
            .collect();
        host[0].base_name = Some(bn);
        host[0].base_time = Some(1_767_574_800.0);
        host[0].seq = Some(3);
        let mut buf = [0u8; 256];
        let n = senml::cbor::encode(&host, &mut buf).unwrap();
        assert_eq!(fw, &buf[..n]);
        let mixed = native_pack(
            "nz-0001",
            1_767_574_800,
            0,
            &[Reading::of("LAeq", 70.5), Reading::of("LAmax", 80.0)],
        )
        .unwrap();
        assert_eq!(senml::decode_any(&mixed).unwrap().records.len(), 2);
    }

    #[test]
    fn foreign_formats() {
        let s = sender();
        let t = encode(Format::Tasmota, &s, 1_767_574_800, 0, &readings()).unwrap();
        assert_eq!(t[0].topic, "tele/aq-0001/SENSOR");
        let v: serde_json::Value = serde_json::from_slice(&t[0].payload).unwrap();
        assert_eq!(v["PMS5003"]["PM2.5"], 41.5);
        assert_eq!(v["BME280"]["Temperature"], 17.25);
        assert_eq!(v["Time"], "2026-01-05T08:00:00", "Hanoi local time");
        let e = encode(Format::Esphome, &s, 0, 0, &readings()).unwrap();
        assert_eq!(e[1].topic, "aq-0001/sensor/temperature/state");
        assert_eq!(e[1].payload, b"17.25");
        assert_eq!(e[1].readings, vec![1]);
        let u = encode(Format::Ultralight, &s, 1_767_574_800, 0, &readings()).unwrap();
        assert_eq!(u[0].topic, "/city/aq-0001/attrs");
        assert_eq!(u[0].payload, b"2026-01-05T01:00:00Z|pm25|41.5|t|17.25");
        // Metrics outside a format's vocabulary are left out.
        let wifi = [
            Reading::of("clientsConnected", 3.0),
            Reading::of("LAeq", 70.0),
        ];
        let e = encode(Format::Esphome, &s, 0, 0, &wifi).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].topic, "aq-0001/sensor/noise_level/state");
        assert_eq!(e[0].readings, vec![1]);
        assert!(!kind_speaks(DeviceKind::Wifi, Format::Tasmota));
        assert!(kind_speaks(DeviceKind::Wifi, Format::LineProtocol));
        assert_eq!(
            catalog_name(Format::Ultralight, "h"),
            Some("relativeHumidity")
        );
        let l = encode(Format::LineProtocol, &s, 1_767_574_800, 0, &readings()).unwrap();
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
        assert_eq!(m.pick(0.22), Format::LineProtocol);
        assert_eq!(m.pick(0.5), Format::Senml);
        assert!("tasmota=0.8,line=0.5".parse::<FormatMix>().is_err());
        assert!("zigbee=0.1".parse::<FormatMix>().is_err());
    }
}

//! Wire facts: the payload formats the gateway decodes (and the simulators encode), and
//! each foreign format's field names for catalog metrics, in both directions.
//!
//! SenML and line protocol name metrics by their catalog names. Tasmota, ESPHome and
//! UltraLight have their own vocabularies: [`TASMOTA`], [`ESPHOME`] and [`ULTRALIGHT`]
//! map them. Every row decodes (foreign name -> catalog name); the rows marked
//! [`written`](FieldName::written) are also the names an encoder writes for their metric
//! (catalog name -> foreign name), at most one per metric. A metric without a written row
//! is one the format's devices are not simulated with, though decoders accept it.
//!
//! The tables are `static` data (no allocation, `no_std`): the firmware can read them too.

use core::fmt;

use crate::catalog::{self, Metric};

/// A payload format, i.e. a decoder in the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "std",
    derive(serde::Deserialize, serde::Serialize),
    serde(rename_all = "kebab-case")
)]
// Non-exhaustive outside this crate: a new format added here compiles everywhere at once,
// each other crate's `match` having an arm for formats it does not handle; the compiler then
// lists only the places that must learn it (a decoder in `ingest::decode`).
#[non_exhaustive]
pub enum Format {
    /// SenML (RFC 8428), CBOR or JSON told apart by the first byte: the native format.
    Senml,
    /// Tasmota `tele/<device>/SENSOR` JSON.
    Tasmota,
    /// ESPHome `<node>/sensor/<name>/state`: one plain number.
    Esphome,
    /// FIWARE IoT Agent UltraLight 2.0: `t|28.1|h|70`, groups separated by `#`.
    Ultralight,
    /// InfluxDB line protocol, as Telegraf's MQTT output publishes it.
    LineProtocol,
}

impl Format {
    /// Every format, in a stable order.
    pub const ALL: [Format; 5] = [
        Self::Senml,
        Self::Tasmota,
        Self::Esphome,
        Self::Ultralight,
        Self::LineProtocol,
    ];

    /// The name used in configuration, in the store's `format` tag and in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Senml => "senml",
            Self::Tasmota => "tasmota",
            Self::Esphome => "esphome",
            Self::Ultralight => "ultralight",
            Self::LineProtocol => "line-protocol",
        }
    }

    /// Parses [`Format::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The format's field-name table; `None` for SenML and line protocol, whose names are
    /// catalog names.
    pub const fn fields(self) -> Option<&'static FieldTable> {
        match self {
            Self::Senml | Self::LineProtocol => None,
            Self::Tasmota => Some(&TASMOTA),
            Self::Esphome => Some(&ESPHOME),
            Self::Ultralight => Some(&ULTRALIGHT),
        }
    }

    /// Decoding: the catalog metric a name of this format stands for (a table row, or the
    /// catalog entry of that name for SenML and line protocol). The name is matched
    /// exactly; decoders normalise it first where the format allows variants.
    pub fn metric(self, name: &str) -> Option<&'static Metric> {
        match self.fields() {
            Some(table) => table.metric(name),
            None => catalog::lookup(name),
        }
    }

    /// Encoding: the name an encoder writes for catalog metric `metric`, or `None` when the
    /// format's devices do not report it (not in the catalog, or no written row).
    pub fn field_name(self, metric: &str) -> Option<&'static str> {
        match self.fields() {
            Some(table) => table.written(metric).map(|r| r.field),
            None => catalog::lookup(metric).map(|m| m.name),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a field-name table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldName {
    /// The name as the format spells it.
    pub field: &'static str,
    /// The catalog name it stands for.
    pub metric: &'static str,
    /// Whether encoders write `metric` under this name (at most one row per metric);
    /// other rows are spellings that decoders accept as well.
    pub written: bool,
    /// The object an encoder puts the field in (Tasmota's sensor, `PMS5003`); `None` for
    /// flat formats and for rows only decoded (Tasmota decodes a field in any sensor).
    pub sensor: Option<&'static str>,
}

/// A row decoders accept and encoders do not write.
const fn read(field: &'static str, metric: &'static str) -> FieldName {
    FieldName {
        field,
        metric,
        written: false,
        sensor: None,
    }
}

/// The row encoders write for `metric` (and decoders accept).
const fn written(field: &'static str, metric: &'static str) -> FieldName {
    FieldName {
        field,
        metric,
        written: true,
        sensor: None,
    }
}

/// The row encoders write for `metric` inside the object `sensor`.
const fn written_in(sensor: &'static str, field: &'static str, metric: &'static str) -> FieldName {
    FieldName {
        field,
        metric,
        written: true,
        sensor: Some(sensor),
    }
}

/// A format's field names for catalog metrics.
#[derive(Debug)]
pub struct FieldTable {
    /// The format the table belongs to.
    pub format: Format,
    /// The rows, foreign names unique.
    pub rows: &'static [FieldName],
}

impl FieldTable {
    /// Decoding: the catalog metric of foreign name `field` (exact match).
    pub fn metric(&self, field: &str) -> Option<&'static Metric> {
        self.rows
            .iter()
            .find(|r| r.field == field)
            .and_then(|r| catalog::lookup(r.metric))
    }

    /// Encoding: the row an encoder writes for catalog name `metric`.
    pub fn written(&self, metric: &str) -> Option<&'static FieldName> {
        self.rows.iter().find(|r| r.written && r.metric == metric)
    }
}

/// Tasmota: a sensor object's field -> catalog name, e.g.
/// `{"PMS5003":{"PM2.5":92},"BME280":{"Humidity":86.0}}` holds `pm25` and
/// `relativeHumidity`. Decoders look fields up in any sensor object; encoders write
/// particulates in `PMS5003`, climate in `BME280` and noise in `ANALOG`.
pub static TASMOTA: FieldTable = FieldTable {
    format: Format::Tasmota,
    rows: &[
        written_in("BME280", "Temperature", "temperature"),
        written_in("BME280", "Humidity", "relativeHumidity"),
        written_in("BME280", "Pressure", "pressure"),
        written_in("PMS5003", "PM2.5", "pm25"),
        written_in("PMS5003", "PM10", "pm10"),
        written_in("PMS5003", "PM1", "pm1"),
        read("CarbonDioxide", "co2"),
        read("CO2", "co2"),
        written_in("ANALOG", "Noise", "LAeq"),
    ],
};

/// ESPHome: a sensor's object id (the `{name}` of `<node>/sensor/<name>/state`, lowercase
/// with `-` read as `_`) -> catalog name. Encoders write the `pm_2_5` style of ESPHome's
/// PMSX003 component and `noise_level` for the sound level.
pub static ESPHOME: FieldTable = FieldTable {
    format: Format::Esphome,
    rows: &[
        written("temperature", "temperature"),
        written("humidity", "relativeHumidity"),
        read("relative_humidity", "relativeHumidity"),
        written("pressure", "pressure"),
        read("pm1", "pm1"),
        read("pm1_0", "pm1"),
        written("pm_1_0", "pm1"),
        read("pm25", "pm25"),
        read("pm2_5", "pm25"),
        written("pm_2_5", "pm25"),
        read("pm10", "pm10"),
        read("pm10_0", "pm10"),
        written("pm_10_0", "pm10"),
        read("co2", "co2"),
        read("carbon_dioxide", "co2"),
        read("noise", "LAeq"),
        written("noise_level", "LAeq"),
        read("sound_level", "LAeq"),
        read("laeq", "LAeq"),
        read("wifi_signal", "wifiSignal"),
        read("uptime", "uptime"),
    ],
};

/// UltraLight 2.0: a measure key (`t|28.1|h|70`) -> catalog name. Encoders write the
/// one-letter keys for climate and noise (`t`, `h`, `p`, `n`) and catalog names for
/// particulates.
pub static ULTRALIGHT: FieldTable = FieldTable {
    format: Format::Ultralight,
    rows: &[
        written("t", "temperature"),
        read("temperature", "temperature"),
        written("h", "relativeHumidity"),
        read("humidity", "relativeHumidity"),
        written("p", "pressure"),
        read("pressure", "pressure"),
        written("pm1", "pm1"),
        written("pm25", "pm25"),
        written("pm10", "pm10"),
        read("co2", "co2"),
        read("no2", "no2"),
        read("o3", "o3"),
        read("co", "co"),
        written("n", "LAeq"),
        read("noise", "LAeq"),
        read("LAeq", "LAeq"),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::LineProtocol.as_str(), "line-protocol");
        assert_eq!(Format::parse("line"), None);
    }

    #[test]
    fn tables_are_consistent() {
        for f in Format::ALL {
            let Some(t) = f.fields() else { continue };
            assert_eq!(t.format, f);
            for (i, r) in t.rows.iter().enumerate() {
                assert!(catalog::lookup(r.metric).is_some(), "{f}: {}", r.metric);
                assert!(
                    t.rows[..i].iter().all(|o| o.field != r.field),
                    "{f}: `{}` twice",
                    r.field
                );
                if r.written {
                    assert_eq!(
                        t.written(r.metric).map(|w| w.field),
                        Some(r.field),
                        "{f}: two written rows for {}",
                        r.metric
                    );
                    // What an encoder writes decodes back to the same metric.
                    assert_eq!(f.metric(r.field).map(|m| m.name), Some(r.metric));
                }
                assert_eq!(r.sensor.is_some(), f == Format::Tasmota && r.written);
            }
        }
    }

    #[test]
    fn both_directions() {
        assert_eq!(TASMOTA.metric("PM2.5").map(|m| m.name), Some("pm25"));
        let pm25 = TASMOTA.written("pm25").unwrap();
        assert_eq!((pm25.sensor, pm25.field), (Some("PMS5003"), "PM2.5"));
        assert_eq!(TASMOTA.written("co2"), None);
        assert_eq!(Format::Tasmota.metric("CO2").map(|m| m.name), Some("co2"));
        assert_eq!(Format::Esphome.field_name("pm25"), Some("pm_2_5"));
        assert_eq!(Format::Ultralight.field_name("relativeHumidity"), Some("h"));
        assert_eq!(Format::Ultralight.field_name("windSpeed"), None);
        assert_eq!(
            Format::LineProtocol.field_name("windSpeed"),
            Some("windSpeed")
        );
        assert_eq!(Format::Senml.field_name("nonsense"), None);
        assert_eq!(Format::Senml.metric("pm25").map(|m| m.name), Some("pm25"));
    }
}

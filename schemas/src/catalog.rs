//! The metric catalog: every metric the system knows, with its canonical name, SenML
//! unit, physical valid range and a one-line description.
//!
//! Names follow the FIWARE Smart Data Models attributes where one exists
//! (`AirQualityObserved`: `pm1`, `pm25`, `pm10`, `co2`, `temperature`, `relativeHumidity`;
//! `WeatherObserved`: `atmosphericPressure` is FIWARE's name, but the catalog keeps the
//! shorter `pressure` used by every sensor library; `NoiseLevelObserved`: `LAeq`).
//! Units are SenML unit symbols from the IANA registry of RFC 8428 and RFC 8798
//! (`ug/m3`, `Cel`, `%RH`, `hPa`, `ppm`, `dBm`, `B`, `count`).
//!
//! Validation in the gateway rejects values outside `[min, max]`: the bounds are
//! physical limits of the quantity or of the sensors deployed, not alarm thresholds.

/// How a metric evolves over time; counters may wrap or reset on reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value sampled at a point in time.
    Gauge,
    /// A monotonically increasing count (may reset on reboot or wrap).
    Counter,
}

/// One catalog entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// Canonical name, used as the SenML record name and the store's measurement.
    pub name: &'static str,
    /// SenML unit symbol.
    pub unit: &'static str,
    /// Smallest physically valid value (inclusive).
    pub min: f64,
    /// Largest physically valid value (inclusive).
    pub max: f64,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// One line for humans.
    pub description: &'static str,
}

impl Metric {
    /// True when `v` is finite and inside the valid range.
    pub fn in_range(&self, v: f64) -> bool {
        v.is_finite() && v >= self.min && v <= self.max
    }
}

const fn gauge(
    name: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
    description: &'static str,
) -> Metric {
    Metric {
        name,
        unit,
        min,
        max,
        kind: MetricKind::Gauge,
        description,
    }
}

const fn counter(
    name: &'static str,
    unit: &'static str,
    max: f64,
    description: &'static str,
) -> Metric {
    Metric {
        name,
        unit,
        min: 0.0,
        max,
        kind: MetricKind::Counter,
        description,
    }
}

/// 2^64 - 1 as f64: the largest counter value a device can report.
const U64_MAX: f64 = 18_446_744_073_709_551_615.0;

/// Every metric the system knows.
pub static METRICS: &[Metric] = &[
    // Air quality (FIWARE AirQualityObserved).
    gauge(
        "pm1",
        "ug/m3",
        0.0,
        1000.0,
        "Particulate matter up to 1 micrometre, mass concentration",
    ),
    gauge(
        "pm25",
        "ug/m3",
        0.0,
        1000.0,
        "Particulate matter up to 2.5 micrometres (PM2.5), mass concentration",
    ),
    gauge(
        "pm10",
        "ug/m3",
        0.0,
        2000.0,
        "Particulate matter up to 10 micrometres (PM10), mass concentration",
    ),
    gauge(
        "co2",
        "ppm",
        0.0,
        40_000.0,
        "Carbon dioxide concentration (SCD4x range)",
    ),
    gauge(
        "no2",
        "ug/m3",
        0.0,
        2000.0,
        "Nitrogen dioxide concentration",
    ),
    gauge("o3", "ug/m3", 0.0, 2000.0, "Ozone concentration"),
    gauge(
        "co",
        "ug/m3",
        0.0,
        200_000.0,
        "Carbon monoxide concentration",
    ),
    // Weather (FIWARE WeatherObserved).
    gauge(
        "temperature",
        "Cel",
        -40.0,
        85.0,
        "Air temperature (BME280 operating range)",
    ),
    gauge(
        "relativeHumidity",
        "%RH",
        0.0,
        100.0,
        "Relative humidity of the air",
    ),
    gauge(
        "pressure",
        "hPa",
        300.0,
        1100.0,
        "Atmospheric pressure at the station (BME280 range)",
    ),
    gauge("windSpeed", "m/s", 0.0, 100.0, "Wind speed"),
    gauge(
        "precipitation",
        "mm",
        0.0,
        500.0,
        "Rain fallen during the reporting period",
    ),
    // Noise (FIWARE NoiseLevelObserved).
    gauge(
        "LAeq",
        "dB",
        0.0,
        140.0,
        "A-weighted equivalent continuous sound level over the reporting window",
    ),
    gauge(
        "LAmax",
        "dB",
        0.0,
        140.0,
        "Maximum A-weighted sound level in the reporting window",
    ),
    // Power.
    gauge("batteryVoltage", "V", 0.0, 60.0, "Battery voltage"),
    gauge(
        "supplyVoltage",
        "V",
        0.0,
        60.0,
        "Supply voltage of the board",
    ),
    // Public Wi-Fi access points.
    gauge(
        "clientsConnected",
        "count",
        0.0,
        10_000.0,
        "Wi-Fi clients associated with the access point",
    ),
    gauge(
        "rssi",
        "dBm",
        -120.0,
        0.0,
        "Mean received signal strength of the associated clients",
    ),
    gauge(
        "channelUtilization",
        "%",
        0.0,
        100.0,
        "Share of airtime the radio channel was busy",
    ),
    counter(
        "rxBytes",
        "B",
        U64_MAX,
        "Bytes received by the access point since its counter started (wraps)",
    ),
    counter(
        "txBytes",
        "B",
        U64_MAX,
        "Bytes sent by the access point since its counter started (wraps)",
    ),
    counter(
        "authFailures",
        "count",
        U64_MAX,
        "Failed client authentications since boot",
    ),
    // Device health.
    counter("uptime", "s", U64_MAX, "Seconds since the device booted"),
    counter(
        "droppedReadings",
        "count",
        U64_MAX,
        "Readings the device dropped from its full offline backlog since the last report",
    ),
    gauge(
        "wifiSignal",
        "dBm",
        -120.0,
        0.0,
        "Signal strength of the device's own uplink",
    ),
];

/// Number of metrics in the catalog.
pub const COUNT: usize = METRICS.len();

/// Finds a metric by canonical name.
pub fn lookup(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The catalog entry named `name`, for constants: `const PM25: &Metric = metric("pm25");`
/// (or the [`metric!`](crate::metric) macro) is that entry, and a name that is not in the
/// catalog fails to compile. Called at run time it panics on an unknown name; use
/// [`lookup`] there. (The constant is equal to the entry, but need not share its address:
/// compare entries by name or value, not with `ptr::eq`.)
pub const fn metric(name: &str) -> &'static Metric {
    let mut i = 0;
    while i < METRICS.len() {
        if str_eq(METRICS[i].name, name) {
            return &METRICS[i];
        }
        i += 1;
    }
    panic!("metric not in schemas::catalog::METRICS")
}

/// The catalog entry with this name, checked at compile time:
/// `schemas::metric!("pm25")` is a `&'static Metric` equal to the entry in [`METRICS`],
/// and a name that is not in the catalog is a compile error.
#[macro_export]
macro_rules! metric {
    ($name:expr) => {
        const { $crate::catalog::metric($name) }
    };
}

/// Position of `m` in [`METRICS`], found by name (by address first, which is free for
/// the references [`lookup`] returns). `None` for a metric not in the catalog.
pub fn index_of(m: &Metric) -> Option<usize> {
    METRICS
        .iter()
        .position(|c| core::ptr::eq(c, m))
        .or_else(|| METRICS.iter().position(|c| c.name == m.name))
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ranges_sane() {
        for (i, a) in METRICS.iter().enumerate() {
            assert!(a.min < a.max, "{}: empty range", a.name);
            assert!(!a.description.is_empty(), "{}", a.name);
            for b in &METRICS[i + 1..] {
                assert_ne!(a.name, b.name, "duplicate metric");
            }
        }
    }

    #[test]
    fn required_metrics_present_with_units() {
        for (name, unit) in [
            ("pm1", "ug/m3"),
            ("pm25", "ug/m3"),
            ("pm10", "ug/m3"),
            ("temperature", "Cel"),
            ("relativeHumidity", "%RH"),
            ("pressure", "hPa"),
            ("co2", "ppm"),
            ("LAeq", "dB"),
            ("batteryVoltage", "V"),
            ("supplyVoltage", "V"),
            ("clientsConnected", "count"),
            ("rssi", "dBm"),
            ("channelUtilization", "%"),
            ("rxBytes", "B"),
            ("txBytes", "B"),
            ("authFailures", "count"),
            ("uptime", "s"),
        ] {
            let m = lookup(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(m.unit, unit, "{name}");
        }
    }

    #[test]
    fn compile_time_lookup_gives_the_catalog_entry() {
        const PM25: &Metric = metric("pm25");
        assert_eq!(PM25, lookup("pm25").unwrap());
        assert_eq!(crate::metric!("LAeq"), lookup("LAeq").unwrap());
        assert_eq!(index_of(PM25), Some(1));
        for (i, m) in METRICS.iter().enumerate() {
            assert_eq!(index_of(m), Some(i));
            let copy = *m;
            assert_eq!(index_of(&copy), Some(i), "by name");
        }
        let unknown = Metric {
            name: "nope",
            ..*PM25
        };
        assert_eq!(index_of(&unknown), None);
        assert_eq!(COUNT, METRICS.len());
    }

    #[test]
    fn range_check() {
        let t = lookup("temperature").unwrap();
        assert!(t.in_range(17.3));
        assert!(!t.in_range(120.0));
        assert!(!t.in_range(f64::NAN));
        assert!(!lookup("rssi").unwrap().in_range(5.0));
    }
}

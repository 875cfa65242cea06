//! Sensor models of Hanoi: what each kind of device would measure at a given time and
//! place. Models are deterministic: a model is built from a seed and a device id, and the
//! same sequence of [`Model::sample`] calls yields the same values.
//!
//! City-wide processes (pollution episodes, weather fronts) depend only on the fleet
//! seed and the day, so every station of one fleet sees the same episode; each device
//! adds its own noise and calibration offsets from its own random stream.

pub mod air;
pub mod calendar;
pub mod noise;
pub mod weather;
pub mod wifi;

use rand::SeedableRng;
use schemas::catalog::{self, Metric};
use schemas::topic::DeviceKind;

pub use calendar::LocalTime;

/// The random stream of one device: PCG, seeded from (fleet seed, device id).
pub type DeviceRng = rand_pcg::Pcg64Mcg;

/// One value of one catalog metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The catalog entry (name, unit, valid range).
    pub metric: &'static Metric,
    /// The value.
    pub value: f64,
}

impl Reading {
    /// A reading of the catalog metric `name`; panics only on a name missing from the
    /// catalog, which is a programming error caught by the model tests.
    pub(crate) fn of(name: &'static str, value: f64) -> Self {
        let metric =
            catalog::lookup(name).unwrap_or_else(|| panic!("metric {name} not in catalog"));
        Self { metric, value }
    }

    /// The same reading with its value clamped into the catalog range.
    pub(crate) fn clamped(mut self) -> Self {
        self.value = self.value.clamp(self.metric.min, self.metric.max);
        self
    }
}

/// What kind of place a device stands at; it shapes traffic, noise and crowds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A residential side street.
    Residential,
    /// Beside a main road (rush-hour traffic).
    MainRoad,
    /// A lake-side promenade (Hoan Kiem, West Lake): busy in evenings and at weekends.
    LakeSide,
    /// A market: busy mornings and late afternoons, more at weekends.
    Market,
    /// An office or university area: busy on weekday working hours.
    Office,
}

impl Place {
    /// Whether traffic from a main road reaches the sensor.
    pub fn near_main_road(self) -> bool {
        matches!(self, Place::MainRoad | Place::Market)
    }
}

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// District slug from [`schemas::topic::HANOI_DISTRICTS`].
    pub district: &'static str,
    /// The kind of place.
    pub place: Place,
}

/// A device's model, by kind.
#[derive(Debug, Clone)]
pub enum Model {
    /// Air-quality station.
    Air(air::AirModel),
    /// Weather station.
    Weather(weather::WeatherModel),
    /// Street noise meter.
    Noise(noise::NoiseModel),
    /// Wi-Fi access point.
    Wifi(wifi::WifiModel),
}

impl Model {
    /// The model of a device of `kind` at `site`.
    pub fn new(kind: DeviceKind, site: Site, fleet_seed: u64, rng: &mut DeviceRng) -> Self {
        match kind {
            DeviceKind::AirQuality => Model::Air(air::AirModel::new(site, fleet_seed, rng)),
            DeviceKind::Weather => {
                Model::Weather(weather::WeatherModel::new(site, fleet_seed, rng))
            }
            DeviceKind::Noise => Model::Noise(noise::NoiseModel::new(site, rng)),
            DeviceKind::Wifi => Model::Wifi(wifi::WifiModel::new(site, rng)),
        }
    }

    /// The readings at `unix_s`, `period_s` after the previous call. Values are inside
    /// the catalog ranges.
    pub fn sample(
        &mut self,
        unix_s: i64,
        period_s: u32,
        rng: &mut DeviceRng,
        out: &mut Vec<Reading>,
    ) {
        let t = LocalTime::hanoi(unix_s);
        match self {
            Model::Air(m) => m.sample(unix_s, &t, rng, out),
            Model::Weather(m) => m.sample(unix_s, &t, rng, out),
            Model::Noise(m) => m.sample(&t, rng, out),
            Model::Wifi(m) => m.sample(&t, period_s, rng, out),
        }
    }

    /// A reboot: counters restart from zero.
    pub fn reboot(&mut self) {
        if let Model::Wifi(m) = self {
            m.reboot();
        }
    }
}

/// A 64-bit mix (SplitMix64's finaliser): spreads nearby inputs over the whole range.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable hash of a string (FNV-1a, then mixed): unlike `std`'s hasher it never
/// changes between releases, so a seed gives the same fleet forever.
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The random stream of device `id` in the fleet seeded with `seed`.
pub fn device_rng(seed: u64, id: &str) -> DeviceRng {
    DeviceRng::seed_from_u64(mix64(seed) ^ stable_hash(id))
}

/// A uniform number in [0, 1) that depends only on (seed, stream, index): the source
/// of city-wide processes that every device must agree on.
pub fn city_uniform(seed: u64, stream: u64, index: i64) -> f64 {
    let h = mix64(mix64(seed ^ stream.wrapping_mul(0x9E37_79B9)) ^ index as u64);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal deviate (Box-Muller), from the device's stream.
pub fn normal(rng: &mut DeviceRng) -> f64 {
    use rand::Rng;
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// An AR(1) process: noise that wanders slowly instead of jumping every sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ar1 {
    /// Current value.
    pub x: f64,
    /// Memory, 0..1: closer to 1 means slower wandering.
    pub phi: f64,
    /// Stationary standard deviation.
    pub sigma: f64,
}

impl Ar1 {
    /// A process starting at a random stationary value.
    pub fn new(phi: f64, sigma: f64, rng: &mut DeviceRng) -> Self {
        Self {
            x: sigma * normal(rng),
            phi,
            sigma,
        }
    }

    /// Advances one step and returns the new value.
    pub fn step(&mut self, rng: &mut DeviceRng) -> f64 {
        let innov = self.sigma * (1.0 - self.phi * self.phi).sqrt();
        self.x = self.phi * self.x + innov * normal(rng);
        self.x
    }
}

/// The metrics a device of `kind` reports, in pack order.
pub fn metrics_of(kind: DeviceKind) -> &'static [&'static str] {
    match kind {
        DeviceKind::AirQuality => &["pm1", "pm25", "pm10", "temperature", "relativeHumidity"],
        DeviceKind::Weather => &[
            "temperature",
            "relativeHumidity",
            "pressure",
            "windSpeed",
            "precipitation",
        ],
        DeviceKind::Noise => &["LAeq", "LAmax"],
        DeviceKind::Wifi => &[
            "clientsConnected",
            "rssi",
            "channelUtilization",
            "rxBytes",
            "txBytes",
            "authFailures",
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::topic::HANOI_DISTRICTS;

    const PLACES: [Place; 5] = [
        Place::Residential,
        Place::MainRoad,
        Place::LakeSide,
        Place::Market,
        Place::Office,
    ];

    /// Every model, every place, many seeds, a year at a coarse step: all values in range
    /// and every metric the kind promises is present.
    #[test]
    fn models_stay_inside_catalog_ranges() {
        let start = 1_767_225_600; // 2026-01-01T00:00:00Z
        let mut out = Vec::new();
        for seed in 0..6u64 {
            for kind in DeviceKind::ALL {
                for (i, place) in PLACES.iter().enumerate() {
                    let id = format!("{}-{seed}-{i}", kind.as_str());
                    let mut rng = device_rng(seed, &id);
                    let site = Site {
                        district: HANOI_DISTRICTS[i % HANOI_DISTRICTS.len()],
                        place: *place,
                    };
                    let mut model = Model::new(kind, site, seed, &mut rng);
                    let step = 3 * 3600 + 17 * 60; // walks through every hour over the year
                    let mut t = start;
                    while t < start + 365 * 86_400 {
                        out.clear();
                        model.sample(t, step as u32, &mut rng, &mut out);
                        let names: Vec<_> = out.iter().map(|r| r.metric.name).collect();
                        assert_eq!(names, metrics_of(kind), "{id}");
                        for r in &out {
                            assert!(
                                r.metric.in_range(r.value),
                                "{id} t={t} {} = {}",
                                r.metric.name,
                                r.value
                            );
                        }
                        t += step;
                    }
                }
            }
        }
    }

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let run = |seed: u64| {
            let mut rng = device_rng(seed, "aq-0001");
            let site = Site {
                district: "ba-dinh",
                place: Place::MainRoad,
            };
            let mut m = Model::new(DeviceKind::AirQuality, site, seed, &mut rng);
            let mut out = Vec::new();
            for k in 0..50 {
                m.sample(1_767_225_600 + k * 60, 60, &mut rng, &mut out);
            }
            out.iter().map(|r| r.value).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}

//! Simulated sensors for the host runner: plausible, deterministic readings in place of
//! a BME280 and a PMS5003, so that simulators and tests drive the real sampler, encoder,
//! backlog and link.
//!
//! Each channel follows a slow daily cycle plus seeded noise, clamped to the metric's
//! physical range; two boards with different seeds report different streets.

use std::f64::consts::TAU;

use std::vec::Vec;

use schemas::topic::DeviceKind;

use crate::drivers::{Metric, Readings, Sensor, SensorStatus, Sensors, metric};

/// One simulated metric: `base + amplitude * sin(2 pi (t + phase) / period) + noise`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waveform {
    /// The metric reported.
    pub metric: &'static Metric,
    /// Mean value.
    pub base: f64,
    /// Half the peak-to-peak swing of the cycle.
    pub amplitude: f64,
    /// Length of the cycle in device ms (a day: 86 400 000).
    pub period_ms: u64,
    /// Half-width of the uniform noise added to each sample.
    pub noise: f64,
    /// Readings are clamped to `[min, max]`.
    pub min: f64,
    /// See `min`.
    pub max: f64,
}

const DAY_MS: u64 = 86_400_000;

/// A simulated sensor with up to eight channels sampled together.
#[derive(Debug, Clone)]
pub struct Synthetic {
    interval_ms: u32,
    warmup_ms: u32,
    channels: heapless::Vec<Waveform, 8>,
    phase_ms: u64,
    rng: u64,
}

impl Synthetic {
    /// A sensor sampling every `interval_ms` that reports nothing (warming up) for its
    /// first `warmup_ms`; channels beyond eight are ignored.
    pub fn new(interval_ms: u32, warmup_ms: u32, channels: &[Waveform], seed: u64) -> Self {
        let mut rng = seed ^ 0x9E37_79B9_7F4A_7C15;
        let phase_ms = splitmix(&mut rng) % DAY_MS;
        Self {
            interval_ms,
            warmup_ms,
            channels: channels.iter().copied().take(8).collect(),
            phase_ms,
            rng,
        }
    }

    /// A BME280 stand-in: temperature, humidity and pressure of a Hanoi street,
    /// sampled every 10 s.
    pub fn weather(seed: u64) -> Self {
        Self::new(
            10_000,
            0,
            &[
                wave(metric!("temperature"), 28.0, 4.0, 0.3, -40.0, 85.0),
                wave(metric!("relativeHumidity"), 75.0, 12.0, 1.0, 0.0, 100.0),
                wave(metric!("pressure"), 1008.0, 2.5, 0.2, 300.0, 1100.0),
            ],
            seed,
        )
    }

    /// A PMS5003 stand-in: PM1, PM2.5 and PM10 every 5 s after a 30 s fan warm-up.
    pub fn particulates(seed: u64) -> Self {
        Self::new(
            5_000,
            30_000,
            &[
                wave(metric!("pm1"), 28.0, 14.0, 4.0, 0.0, 1000.0),
                wave(metric!("pm25"), 42.0, 20.0, 6.0, 0.0, 1000.0),
                wave(metric!("pm10"), 65.0, 30.0, 9.0, 0.0, 1000.0),
            ],
            seed,
        )
    }

    /// A noise meter stand-in: LAeq of a busy street every second.
    pub fn noise(seed: u64) -> Self {
        Self::new(
            1_000,
            0,
            &[wave(metric!("LAeq"), 68.0, 7.0, 3.0, 30.0, 130.0)],
            seed,
        )
    }

    /// A public Wi-Fi access point's health gauges every 10 s.
    pub fn wifi_ap(seed: u64) -> Self {
        Self::new(
            10_000,
            0,
            &[
                wave(metric!("clientsConnected"), 18.0, 14.0, 3.0, 0.0, 250.0),
                wave(metric!("rssi"), -64.0, 6.0, 3.0, -100.0, 0.0),
                wave(metric!("channelUtilization"), 35.0, 20.0, 5.0, 0.0, 100.0),
            ],
            seed,
        )
    }

    /// The channels.
    pub fn channels(&self) -> &[Waveform] {
        &self.channels
    }

    fn value(&mut self, w: &Waveform, now_ms: u64) -> f64 {
        let period = w.period_ms.max(1);
        let t = ((now_ms + self.phase_ms) % period) as f64 / period as f64;
        let unit = (splitmix(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let v = w.base + w.amplitude * (TAU * t).sin() + w.noise * (2.0 * unit - 1.0);
        v.clamp(w.min, w.max)
    }
}

fn wave(
    metric: &'static Metric,
    base: f64,
    amplitude: f64,
    noise: f64,
    min: f64,
    max: f64,
) -> Waveform {
    Waveform {
        metric,
        base,
        amplitude,
        period_ms: DAY_MS,
        noise,
        min,
        max,
    }
}

impl Sensor for Synthetic {
    fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus {
        if now_ms < u64::from(self.warmup_ms) {
            let remaining_ms = u32::try_from(u64::from(self.warmup_ms) - now_ms).unwrap_or(0);
            return SensorStatus::WarmingUp { remaining_ms };
        }
        for i in 0..self.channels.len() {
            let w = self.channels[i];
            let v = self.value(&w, now_ms);
            out.push(w.metric, v);
        }
        SensorStatus::Ok
    }
}

/// The simulated sensors of one device, as the node's sensor set.
#[derive(Debug, Clone, Default)]
pub struct SyntheticSet {
    sensors: Vec<Synthetic>,
}

impl SyntheticSet {
    /// A set of the given sensors.
    pub fn new(sensors: Vec<Synthetic>) -> Self {
        Self { sensors }
    }

    /// What a device of `kind` carries: weather and particulates for an air-quality
    /// station, weather for a weather station, a noise meter, an access point's gauges.
    pub fn for_kind(kind: DeviceKind, seed: u64) -> Self {
        let sensors = match kind {
            DeviceKind::AirQuality => {
                std::vec![Synthetic::weather(seed), Synthetic::particulates(seed ^ 1)]
            }
            DeviceKind::Weather => std::vec![Synthetic::weather(seed)],
            DeviceKind::Noise => std::vec![Synthetic::noise(seed)],
            DeviceKind::Wifi => std::vec![Synthetic::wifi_ap(seed)],
        };
        Self { sensors }
    }

    /// The sensors, e.g. to adjust one.
    pub fn sensors_mut(&mut self) -> &mut [Synthetic] {
        &mut self.sensors
    }
}

impl Sensors for SyntheticSet {
    fn len(&self) -> usize {
        self.sensors.len()
    }

    fn interval_ms(&self, index: usize) -> u32 {
        self.sensors
            .get(index)
            .map_or(u32::MAX, Sensor::interval_ms)
    }

    fn sample(&mut self, index: usize, now_ms: u64, out: &mut Readings) -> SensorStatus {
        match self.sensors.get_mut(index) {
            Some(s) => s.sample(now_ms, out),
            None => SensorStatus::Fault(crate::drivers::Fault::Init),
        }
    }
}

/// SplitMix64: a tiny, well-distributed generator; reproducible across platforms.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;

    #[test]
    fn readings_stay_in_range_and_follow_the_metric() {
        let mut s = Synthetic::particulates(1);
        let mut out = Readings::new();
        assert!(matches!(
            s.sample(0, &mut out),
            SensorStatus::WarmingUp {
                remaining_ms: 30_000
            }
        ));
        assert!(out.is_empty());
        for k in 0..2_000u64 {
            out.clear();
            assert_eq!(s.sample(30_000 + k * 60_000, &mut out), SensorStatus::Ok);
            let got: Vec<_> = out.as_slice().iter().map(|r| r.metric).collect();
            assert_eq!(got, [metric!("pm1"), metric!("pm25"), metric!("pm10")]);
            for r in out.as_slice() {
                assert!((0.0..=1000.0).contains(&r.value), "{r:?}");
            }
        }
    }

    #[test]
    fn seeds_make_streets_differ_and_runs_repeat() {
        let sample = |seed| {
            let mut s = Synthetic::weather(seed);
            let mut out = Readings::new();
            s.sample(3_600_000, &mut out);
            out.as_slice()[0].value
        };
        assert_eq!(sample(7), sample(7));
        assert_ne!(sample(7), sample(8));
    }

    #[test]
    fn every_kind_has_sensors_that_report() {
        for kind in DeviceKind::ALL {
            let mut set = SyntheticSet::for_kind(kind, 5);
            assert!(!set.is_empty(), "{kind:?}");
            let mut total = 0;
            for i in 0..set.len() {
                let mut out = Readings::new();
                assert_eq!(
                    set.sample(i, 60_000, &mut out),
                    SensorStatus::Ok,
                    "{kind:?}"
                );
                total += out.len();
            }
            assert!(total > 0, "{kind:?} reports nothing");
        }
    }

    #[test]
    fn temperature_swings_over_the_day() {
        let mut s = Synthetic::weather(3);
        let mut temps = Vec::new();
        for h in 0..24u64 {
            let mut out = Readings::new();
            s.sample(h * 3_600_000, &mut out);
            temps.push(out.as_slice()[0].value);
        }
        let (lo, hi) = temps
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        assert!(hi - lo > 5.0, "daily swing too small: {lo}..{hi}");
        assert!(
            lo > 20.0 && hi < 36.0,
            "implausible Hanoi temperatures {lo}..{hi}"
        );
    }
}

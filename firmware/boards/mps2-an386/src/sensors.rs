//! Simulated sensors, because QEMU's board has none: a weather station (BME280
//! stand-in) and a particulate counter (PMS5003 stand-in) with deterministic values, so
//! that a test can tell a reading that arrived from one that was made up on the way.
//!
//! They implement the core's [`Sensor`] trait like the real drivers do; the node, the
//! sampler, the encoder, the backlog and the link above them are the unchanged core.
//! Values follow a slow sawtooth on the monotonic clock, inside each metric's
//! physical range; each device gets its own offset from its id.

use firmware::drivers::{metric, Readings, Sensor, SensorStatus};

/// Temperature, humidity and pressure.
#[derive(Debug, Clone, Copy)]
pub struct SimWeather {
    interval_ms: u32,
    offset: f64,
}

/// PM1, PM2.5 and PM10.
#[derive(Debug, Clone, Copy)]
pub struct SimParticulates {
    interval_ms: u32,
    offset: f64,
}

/// Position in a 10-minute sawtooth, in [0, 1).
fn phase(now_ms: u64) -> f64 {
    (now_ms % 600_000) as f64 / 600_000.0
}

impl SimWeather {
    /// Sampled every `interval_ms`; `seed` (from the device id) shifts the values.
    pub fn new(interval_ms: u32, seed: u32) -> Self {
        Self {
            interval_ms,
            offset: f64::from(seed % 50) / 10.0,
        }
    }
}

impl SimParticulates {
    /// Sampled every `interval_ms`; `seed` (from the device id) shifts the values.
    pub fn new(interval_ms: u32, seed: u32) -> Self {
        Self {
            interval_ms,
            offset: f64::from(seed % 20),
        }
    }
}

impl Sensor for SimWeather {
    fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus {
        let p = phase(now_ms);
        out.push(metric!("temperature"), 26.0 + self.offset + 4.0 * p);
        out.push(metric!("relativeHumidity"), 70.0 + 10.0 * p);
        out.push(metric!("pressure"), 1005.0 + self.offset + 5.0 * p);
        SensorStatus::Ok
    }
}

impl Sensor for SimParticulates {
    fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus {
        let p = phase(now_ms);
        out.push(metric!("pm1"), 20.0 + self.offset + 10.0 * p);
        out.push(metric!("pm25"), 35.0 + self.offset + 20.0 * p);
        out.push(metric!("pm10"), 50.0 + self.offset + 30.0 * p);
        SensorStatus::Ok
    }
}

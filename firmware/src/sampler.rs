//! Sampling schedule and windowed aggregation.
//!
//! Each sensor is sampled on its own interval; every reading lands in the current window
//! of its metric. Windows are one reporting period long and aligned to the first poll;
//! when one ends, the node turns its aggregates into one SenML pack.
//!
//! Per metric the window keeps count, mean, min, max and the last value. The pack carries
//! one value per metric, chosen by [`Aggregation::of`] from the catalog entry: the mean for
//! gauges, the energy mean for sound levels (LAeq), the last value for counters. Min and max stay on the device
//! (available through [`Sampler::aggregates`]) rather than travelling as extra records
//! such as `pm25_min`: those names are not in the catalog, so the gateway would reject
//! them, and they would double the bytes per pack on a metered link.
//!
//! Time is whatever the caller says it is (monotonic ms): the schedule never reads a clock,
//! which is what lets host tests run days of sampling in microseconds.

use schemas::catalog::{self, Metric};

use crate::drivers::{Aggregation, MAX_SENSORS, Reading, Readings, SensorStatus, Sensors};

/// One metric's accumulator.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    count: u32,
    /// Sum of values, or of `10^(v/10)` for an energy mean.
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
}

impl Window {
    const EMPTY: Window = Window {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        last: 0.0,
    };
}

/// A metric's window, folded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// The metric.
    pub metric: &'static Metric,
    /// The value reported in the pack (see [`Aggregation::of`]).
    pub value: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub count: u32,
}

/// Sampling schedule plus per-metric windows.
#[derive(Debug, Clone)]
pub struct Sampler {
    period_ms: u32,
    /// Start of the current window; `None` before the first poll.
    window_start: Option<u64>,
    next_due: [u64; MAX_SENSORS],
    status: [Option<SensorStatus>; MAX_SENSORS],
    sensors: usize,
    /// One window per catalog metric, indexed like `schemas::catalog::METRICS`.
    windows: [Window; catalog::COUNT],
}

impl Sampler {
    /// A sampler closing a window every `period_ms` (at least 1).
    pub const fn new(period_ms: u32) -> Self {
        Self {
            period_ms: if period_ms == 0 { 1 } else { period_ms },
            window_start: None,
            next_due: [0; MAX_SENSORS],
            status: [None; MAX_SENSORS],
            sensors: 0,
            windows: [Window::EMPTY; catalog::COUNT],
        }
    }

    /// The reporting period in ms.
    pub fn period_ms(&self) -> u32 {
        self.period_ms
    }

    /// Starts the schedule at `now_ms` if it has not started: the first window begins and
    /// every sensor is due at once.
    pub fn start<S: Sensors + ?Sized>(&mut self, sensors: &S, now_ms: u64) {
        if self.window_start.is_none() {
            self.window_start = Some(now_ms);
            self.sensors = sensors.len().min(MAX_SENSORS);
            self.next_due = [now_ms; MAX_SENSORS];
        }
    }

    /// End of the current window (`None` before [`Sampler::start`]).
    pub fn window_end(&self) -> Option<u64> {
        self.window_start.map(|s| s + u64::from(self.period_ms))
    }

    /// The end of the current window if it is over at `now_ms`.
    pub fn window_due(&self, now_ms: u64) -> Option<u64> {
        self.window_end().filter(|&end| end <= now_ms)
    }

    /// Clears the windows and starts the one holding `now_ms`. Periods that passed with no
    /// poll at all are skipped: nothing was sampled in them, so there is nothing to send.
    pub fn finish_window(&mut self, now_ms: u64) {
        self.windows = [Window::EMPTY; catalog::COUNT];
        if let Some(start) = self.window_start {
            let period = u64::from(self.period_ms);
            let periods = (now_ms.saturating_sub(start) / period).max(1);
            self.window_start = Some(start + periods * period);
        }
    }

    /// Samples every sensor that is due at `now_ms`; returns how many were sampled.
    pub fn sample_due<S: Sensors + ?Sized>(&mut self, sensors: &mut S, now_ms: u64) -> usize {
        let mut sampled = 0;
        let mut readings = Readings::new();
        for i in 0..self.sensors {
            if self.next_due[i] > now_ms {
                continue;
            }
            readings.clear();
            let status = sensors.sample(i, now_ms, &mut readings);
            if status.is_ok() {
                self.record_all(readings.as_slice());
            }
            self.status[i] = Some(status);
            sampled += 1;
            let interval = u64::from(sensors.interval_ms(i).max(1));
            // Keep the grid, but never queue a burst of catch-up samples after a stall.
            let next = self.next_due[i] + interval;
            self.next_due[i] = if next > now_ms {
                next
            } else {
                now_ms + interval
            };
        }
        sampled
    }

    /// Adds a reading to its metric's window (non-finite values, and metrics that are not
    /// in the catalog, are ignored).
    pub fn record(&mut self, reading: Reading) {
        if !reading.value.is_finite() {
            return;
        }
        let Some(w) = catalog::index_of(reading.metric).and_then(|i| self.windows.get_mut(i))
        else {
            return;
        };
        let v = reading.value;
        w.count = w.count.saturating_add(1);
        w.sum += match Aggregation::of(reading.metric) {
            // exp rather than exp10: same result, without exp10's 4 KiB table in flash.
            Aggregation::EnergyMean => libm::exp(v * (core::f64::consts::LN_10 / 10.0)),
            Aggregation::Mean | Aggregation::Last => v,
        };
        w.min = w.min.min(v);
        w.max = w.max.max(v);
        w.last = v;
    }

    /// Adds readings.
    pub fn record_all(&mut self, readings: &[Reading]) {
        for r in readings {
            self.record(*r);
        }
    }

    /// The last status of sensor `index`, `None` before its first sample.
    pub fn status(&self, index: usize) -> Option<SensorStatus> {
        self.status.get(index).copied().flatten()
    }

    /// Number of sensors scheduled.
    pub fn sensor_count(&self) -> usize {
        self.sensors
    }

    /// Next instant at which a sensor is due or the window ends (`u64::MAX` before start).
    pub fn next_deadline(&self) -> u64 {
        let sensors = self.next_due[..self.sensors].iter().copied();
        sensors.chain(self.window_end()).min().unwrap_or(u64::MAX)
    }

    /// True when no metric has a sample in the current window.
    pub fn is_empty(&self) -> bool {
        self.windows.iter().all(|w| w.count == 0)
    }

    /// The current window's aggregates, for metrics with at least one sample, in catalog
    /// order.
    pub fn aggregates(&self) -> impl Iterator<Item = Aggregate> + '_ {
        catalog::METRICS
            .iter()
            .zip(self.windows.iter())
            .filter(|(_, w)| w.count > 0)
            .map(|(metric, w)| {
                let n = f64::from(w.count);
                let value = match Aggregation::of(metric) {
                    // Rounded to f32: sensors are far less precise, and a value that is
                    // exactly an f32 fits in 5 CBOR bytes instead of 9.
                    Aggregation::Mean => f64::from((w.sum / n) as f32),
                    Aggregation::EnergyMean => f64::from((10.0 * libm::log10(w.sum / n)) as f32),
                    Aggregation::Last => w.last,
                };
                Aggregate {
                    metric,
                    value,
                    min: w.min,
                    max: w.max,
                    count: w.count,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::metric;

    #[test]
    fn energy_mean_of_levels() {
        let mut s = Sampler::new(1000);
        s.record(Reading {
            metric: metric!("LAeq"),
            value: 60.0,
        });
        s.record(Reading {
            metric: metric!("LAeq"),
            value: 70.0,
        });
        let a = s.aggregates().next().unwrap();
        // 10 log10((10^6 + 10^7) / 2) = 67.40 dB, not the arithmetic 65.
        assert!((a.value - 67.4036).abs() < 1e-3, "{}", a.value);
        assert_eq!((a.min, a.max, a.count), (60.0, 70.0, 2));
    }
}

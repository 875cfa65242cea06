//! The sensor interface every driver implements, and the drivers themselves.
//!
//! A [`Sensor`] is sampled by the node on its own interval. One sample yields a few
//! [`Readings`] (a metric of `schemas::catalog`, named with [`metric!`], and a value in
//! the catalog's unit) or a [`SensorStatus`] that says
//! why there is nothing to report: warming up, no new data, or a fault. Drivers never make
//! up a value to fill a gap: a reading that is absent is absent from the pack.
//!
//! [`Sensors`] is the set of sensors a board wires into a [`crate::node::Node`]: tuples of
//! up to six sensors, arrays and slices of trait objects implement it.

pub mod bme280;
pub mod noise;
pub mod pms5003;
pub mod scd41;
pub mod wifi;

pub use schemas::catalog::Metric;
use schemas::catalog::MetricKind;
/// `metric!("pm25")`: the catalog entry, checked at compile time (re-exported from
/// `schemas`).
pub use schemas::metric;

/// How a window of samples of one metric becomes the value a pack carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Arithmetic mean of the samples (gauges).
    Mean,
    /// Energy mean of levels in decibels: `10 log10(mean(10^(L/10)))`. An arithmetic mean
    /// of dB values would underestimate loud events, which is what a noise meter is for.
    EnergyMean,
    /// The last sample (counters: a mean of a counter means nothing).
    Last,
}

impl Aggregation {
    /// How the sampler folds a window of `metric`, from its catalog kind and unit:
    /// counters keep the last value, sound levels (unit `dB`) take the energy mean, other
    /// gauges the arithmetic mean.
    pub fn of(metric: &Metric) -> Aggregation {
        match metric.kind {
            MetricKind::Counter => Aggregation::Last,
            MetricKind::Gauge if metric.unit == "dB" => Aggregation::EnergyMean,
            MetricKind::Gauge => Aggregation::Mean,
        }
    }
}

/// One value of one metric, in the metric's catalog unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// What was measured: an entry of `schemas::catalog::METRICS` (see [`metric!`]).
    pub metric: &'static Metric,
    /// The value; f64 so that byte counters stay exact past 2^24.
    pub value: f64,
}

/// Most readings one sample of one sensor can yield (the Wi-Fi access point has seven).
pub const MAX_READINGS_PER_SAMPLE: usize = 8;

/// The readings of one sample, filled by a driver.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    items: heapless::Vec<Reading, MAX_READINGS_PER_SAMPLE>,
}

impl Readings {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            items: heapless::Vec::new(),
        }
    }

    /// Adds a reading. Non-finite values are refused (returns false): a NaN must never
    /// reach a pack. Also false when the set is full.
    pub fn push(&mut self, metric: &'static Metric, value: f64) -> bool {
        value.is_finite() && self.items.push(Reading { metric, value }).is_ok()
    }

    /// The readings, in the order pushed.
    pub fn as_slice(&self) -> &[Reading] {
        &self.items
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Number of readings.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Why a sensor fault happened, as far as the driver can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The bus (I2C, UART) reported an error.
    Bus,
    /// The device did not answer as the part it should be (wrong chip id, self-test).
    WrongDevice,
    /// A frame or word failed its checksum or CRC.
    Checksum,
    /// The device answered with data that cannot be a measurement.
    InvalidData,
    /// No data arrived for longer than the device's own period.
    NoData,
    /// The driver could not be initialised.
    Init,
}

/// The state of a sensor after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorStatus {
    /// The readings are valid.
    Ok,
    /// The sensor is starting (PMS fan spin-up, SCD4x first measurement); no readings yet.
    WarmingUp {
        /// Roughly how long until the first reading, in ms (0 when unknown).
        remaining_ms: u32,
    },
    /// Healthy, but nothing new since the last sample.
    NoNewData,
    /// Something is wrong; no readings.
    Fault(Fault),
}

impl SensorStatus {
    /// True for [`SensorStatus::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, SensorStatus::Ok)
    }
}

/// A sensor the node samples on an interval.
pub trait Sensor {
    /// Milliseconds between two samples.
    fn interval_ms(&self) -> u32;

    /// Takes one sample at `now_ms` (monotonic ms since boot), pushing readings into `out`
    /// (which is empty on entry). Readings pushed alongside a non-`Ok` status are ignored.
    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus;
}

impl<T: Sensor + ?Sized> Sensor for &mut T {
    fn interval_ms(&self) -> u32 {
        (**self).interval_ms()
    }
    fn sample(&mut self, now_ms: u64, out: &mut Readings) -> SensorStatus {
        (**self).sample(now_ms, out)
    }
}

/// Most sensors one node drives.
pub const MAX_SENSORS: usize = 8;

/// The set of sensors a node drives, addressed by index `0..len()`.
pub trait Sensors {
    /// Number of sensors (at most [`MAX_SENSORS`]; the node ignores any beyond).
    fn len(&self) -> usize;
    /// True when there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sampling interval of sensor `index`, in ms.
    fn interval_ms(&self, index: usize) -> u32;
    /// Samples sensor `index`; see [`Sensor::sample`].
    fn sample(&mut self, index: usize, now_ms: u64, out: &mut Readings) -> SensorStatus;
}

/// Status for an index no sensor answers to; never returned for a valid index.
const NO_SUCH_SENSOR: SensorStatus = SensorStatus::Fault(Fault::Init);

macro_rules! tuple_sensors {
    ($len:expr; $($idx:tt $t:ident),+) => {
        impl<$($t: Sensor),+> Sensors for ($($t,)+) {
            fn len(&self) -> usize {
                $len
            }
            fn interval_ms(&self, index: usize) -> u32 {
                match index {
                    $($idx => self.$idx.interval_ms(),)+
                    _ => u32::MAX,
                }
            }
            fn sample(&mut self, index: usize, now_ms: u64, out: &mut Readings) -> SensorStatus {
                match index {
                    $($idx => self.$idx.sample(now_ms, out),)+
                    _ => NO_SUCH_SENSOR,
                }
            }
        }
    };
}

/// No sensors: a node whose board feeds every reading through `Node::record`.
impl Sensors for () {
    fn len(&self) -> usize {
        0
    }
    fn interval_ms(&self, _index: usize) -> u32 {
        u32::MAX
    }
    fn sample(&mut self, _index: usize, _now_ms: u64, _out: &mut Readings) -> SensorStatus {
        NO_SUCH_SENSOR
    }
}

tuple_sensors!(1; 0 A);
tuple_sensors!(2; 0 A, 1 B);
tuple_sensors!(3; 0 A, 1 B, 2 C);
tuple_sensors!(4; 0 A, 1 B, 2 C, 3 D);
tuple_sensors!(5; 0 A, 1 B, 2 C, 3 D, 4 E);
tuple_sensors!(6; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F);

impl<T: Sensor, const N: usize> Sensors for [T; N] {
    fn len(&self) -> usize {
        N
    }
    fn interval_ms(&self, index: usize) -> u32 {
        self.get(index).map_or(u32::MAX, Sensor::interval_ms)
    }
    fn sample(&mut self, index: usize, now_ms: u64, out: &mut Readings) -> SensorStatus {
        match self.get_mut(index) {
            Some(s) => s.sample(now_ms, out),
            None => NO_SUCH_SENSOR,
        }
    }
}

impl Sensors for [&mut dyn Sensor] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }
    fn interval_ms(&self, index: usize) -> u32 {
        self.get(index).map_or(u32::MAX, |s| s.interval_ms())
    }
    fn sample(&mut self, index: usize, now_ms: u64, out: &mut Readings) -> SensorStatus {
        match self.get_mut(index) {
            Some(s) => s.sample(now_ms, out),
            None => NO_SUCH_SENSOR,
        }
    }
}

impl<T: Sensors + ?Sized> Sensors for &mut T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn interval_ms(&self, index: usize) -> u32 {
        (**self).interval_ms(index)
    }
    fn sample(&mut self, index: usize, now_ms: u64, out: &mut Readings) -> SensorStatus {
        (**self).sample(index, now_ms, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_follows_kind_and_unit() {
        assert_eq!(Aggregation::of(metric!("pm25")), Aggregation::Mean);
        assert_eq!(Aggregation::of(metric!("LAeq")), Aggregation::EnergyMean);
        assert_eq!(Aggregation::of(metric!("rxBytes")), Aggregation::Last);
        assert_eq!(Aggregation::of(metric!("uptime")), Aggregation::Last);
    }

    #[test]
    fn readings_refuse_non_finite_values() {
        let mut r = Readings::new();
        assert!(!r.push(metric!("pm25"), f64::NAN));
        assert!(!r.push(metric!("pm25"), f64::INFINITY));
        assert!(r.push(metric!("pm25"), 12.0));
        assert_eq!(r.len(), 1);
    }
}

//! Noise level: sound-pressure samples in, LAeq out.
//!
//! `LAeq = 10 log10(mean(p^2) / p0^2)` with `p0 = 20 uPa`, over the samples of a window.
//! A-weighting is a filter on the audio signal before this point (an analog weighting
//! network, a MEMS microphone module that outputs A-weighted audio, or a DSP stage): this
//! module takes samples that are already A-weighted, as raw ADC counts that a
//! [`Calibration`] turns into pascals, or directly in pascals through [`Laeq`].
//!
//! [`NoiseMeter`] is the [`Sensor`]: on each sample it drains the board's
//! [`AudioSource`] and reports the LAeq of what it read (typically every second); the
//! sampler then energy-averages those into the reporting period's LAeq.

use super::{Fault, Readings, Sensor, SensorStatus, metric};

/// Reference sound pressure, 20 uPa.
pub const P0_PA: f64 = 20e-6;

/// Running mean-square accumulator of calibrated, A-weighted pressure samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Laeq {
    sum_sq: f64,
    count: u64,
}

impl Laeq {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            sum_sq: 0.0,
            count: 0,
        }
    }

    /// Adds one sample, in pascals.
    pub fn push(&mut self, pa: f32) {
        let p = f64::from(pa);
        self.sum_sq += p * p;
        self.count += 1;
    }

    /// Adds samples, in pascals.
    pub fn extend(&mut self, pa: &[f32]) {
        for &p in pa {
            self.push(p);
        }
    }

    /// Samples in the window.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The window's LAeq in dB, or `None` for an empty window or pure silence (a level of
    /// minus infinity, which in practice means a dead microphone).
    pub fn level_db(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let mean_sq = self.sum_sq / self.count as f64;
        if mean_sq.is_nan() || mean_sq <= 0.0 || mean_sq.is_infinite() {
            return None;
        }
        Some(10.0 * libm::log10(mean_sq / (P0_PA * P0_PA)))
    }

    /// Starts a new window.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

/// Turns ADC counts into pascals: `pa = (counts - zero) * pa_per_count`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// ADC reading for zero sound pressure (the bias point; mid-scale for a single-ended
    /// ADC, 0 for an I2S microphone).
    pub zero: i32,
    /// Pascals per ADC count, from the microphone's sensitivity, the preamp gain and the
    /// ADC reference; measured with a 94 dB (1 Pa RMS) calibrator in practice.
    pub pa_per_count: f32,
}

impl Calibration {
    /// From the microphone chain's data: sensitivity in mV/Pa (after the preamp), the ADC's
    /// full-scale span in mV and its resolution in bits, biased at mid-scale.
    pub fn from_chain(mv_per_pa: f32, full_scale_mv: f32, bits: u8) -> Self {
        let counts = (1u32 << bits.min(31)) as f32;
        Self {
            zero: (counts / 2.0) as i32,
            pa_per_count: full_scale_mv / counts / mv_per_pa,
        }
    }

    /// One count in pascals.
    pub fn to_pa(&self, counts: i32) -> f32 {
        (counts - self.zero) as f32 * self.pa_per_count
    }
}

/// Where the board's A-weighted audio samples come from (an ADC DMA ring, an I2S FIFO).
pub trait AudioSource {
    /// Error of the underlying peripheral.
    type Error;
    /// Copies samples captured since the last call into `buf` (raw counts), returning how
    /// many; 0 when none are waiting. Must not block.
    fn read(&mut self, buf: &mut [i32]) -> Result<usize, Self::Error>;
}

/// Settings of the noise meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseConfig {
    /// Sampling interval (one LAeq per interval, energy-averaged over the period by the
    /// sampler). Default 1 000 ms, the usual "LAeq,1s" of noise monitoring.
    pub interval_ms: u32,
    /// ADC calibration.
    pub calibration: Calibration,
    /// Fewest audio samples for a level worth reporting. Default 1 000 (an eighth of a
    /// second at 8 kHz): fewer means the audio path stalled.
    pub min_samples: u32,
    /// Most audio samples drained per sample, to bound the time spent. Default 65 536.
    pub max_samples: u32,
}

impl NoiseConfig {
    /// Defaults around a calibration.
    pub fn new(calibration: Calibration) -> Self {
        Self {
            interval_ms: 1_000,
            calibration,
            min_samples: 1_000,
            max_samples: 65_536,
        }
    }
}

/// Noise meter over an [`AudioSource`].
#[derive(Debug)]
pub struct NoiseMeter<A> {
    source: A,
    cfg: NoiseConfig,
}

impl<A: AudioSource> NoiseMeter<A> {
    /// A meter reading from `source`.
    pub fn new(source: A, cfg: NoiseConfig) -> Self {
        Self { source, cfg }
    }

    /// The audio source, e.g. to feed a simulated one.
    pub fn source_mut(&mut self) -> &mut A {
        &mut self.source
    }
}

impl<A: AudioSource> Sensor for NoiseMeter<A> {
    fn interval_ms(&self) -> u32 {
        self.cfg.interval_ms
    }

    fn sample(&mut self, _now_ms: u64, out: &mut Readings) -> SensorStatus {
        let mut window = Laeq::new();
        let mut buf = [0i32; 64];
        while window.count() < u64::from(self.cfg.max_samples) {
            let n = match self.source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n.min(buf.len()),
                Err(_) => return SensorStatus::Fault(Fault::Bus),
            };
            for &c in &buf[..n] {
                window.push(self.cfg.calibration.to_pa(c));
            }
        }
        if window.count() < u64::from(self.cfg.min_samples) {
            return if window.count() == 0 {
                SensorStatus::NoNewData
            } else {
                SensorStatus::Fault(Fault::NoData)
            };
        }
        match window.level_db() {
            Some(db) if db >= 0.0 => {
                out.push(metric!("LAeq"), db);
                SensorStatus::Ok
            }
            // Below the threshold of hearing: a stuck ADC or dead microphone.
            _ => SensorStatus::Fault(Fault::InvalidData),
        }
    }
}

//! LAeq from calibrated samples and from ADC counts.

use firmware::drivers::noise::{AudioSource, Calibration, Laeq, NoiseConfig, NoiseMeter};
use firmware::drivers::{Fault, Readings, Sensor, SensorStatus, metric};

fn sine(amplitude_pa: f64, n: usize) -> Vec<f32> {
    // 1 kHz at 48 kHz: a whole number of periods in 48 000 samples.
    (0..n)
        .map(|i| {
            (amplitude_pa * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin())
                as f32
        })
        .collect()
}

#[test]
fn one_pascal_rms_is_94_db() {
    let mut l = Laeq::new();
    l.extend(&sine(std::f64::consts::SQRT_2, 48_000));
    let db = l.level_db().unwrap();
    // 20 log10(1 / 20e-6) = 93.98 dB: the level of a standard acoustic calibrator.
    assert!((db - 93.979).abs() < 0.01, "{db}");
}

#[test]
fn tenfold_pressure_is_plus_20_db_and_silence_has_no_level() {
    let mut a = Laeq::new();
    a.extend(&sine(0.02, 4_800));
    let mut b = Laeq::new();
    b.extend(&sine(0.2, 4_800));
    let (a, b) = (a.level_db().unwrap(), b.level_db().unwrap());
    assert!((b - a - 20.0).abs() < 1e-3, "{a} {b}");
    let mut silent = Laeq::new();
    silent.extend(&[0.0; 100]);
    assert_eq!(silent.level_db(), None);
    assert_eq!(Laeq::new().level_db(), None);
}

#[test]
fn calibration_from_the_chain() {
    // 12-bit ADC over 3300 mV, microphone + preamp 100 mV/Pa: 4096 counts, zero at 2048.
    let c = Calibration::from_chain(100.0, 3300.0, 12);
    assert_eq!(c.zero, 2048);
    assert!(
        (c.to_pa(2048 + 124) - 1.0).abs() < 0.01,
        "{}",
        c.to_pa(2048 + 124)
    );
    assert!((c.to_pa(2048 - 124) + 1.0).abs() < 0.01);
}

/// ADC samples of a tone, handed out in DMA-sized chunks.
struct Tone {
    counts: Vec<i32>,
    pos: usize,
    fail: bool,
}

impl AudioSource for Tone {
    type Error = ();
    fn read(&mut self, buf: &mut [i32]) -> Result<usize, ()> {
        if self.fail {
            return Err(());
        }
        let n = buf.len().min(self.counts.len() - self.pos).min(50);
        buf[..n].copy_from_slice(&self.counts[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn tone(cal: Calibration, pa: f64, n: usize) -> Tone {
    let counts = sine(pa, n)
        .iter()
        .map(|&p| cal.zero + (f64::from(p) / f64::from(cal.pa_per_count)).round() as i32)
        .collect();
    Tone {
        counts,
        pos: 0,
        fail: false,
    }
}

#[test]
fn meter_reports_laeq_of_what_the_adc_captured() {
    let cal = Calibration {
        zero: 0,
        pa_per_count: 1e-4,
    };
    let mut m = NoiseMeter::new(
        tone(cal, 0.2 * std::f64::consts::SQRT_2, 48_000),
        NoiseConfig::new(cal),
    );
    let mut r = Readings::new();
    assert_eq!(m.sample(1_000, &mut r), SensorStatus::Ok);
    let db = r.as_slice()[0];
    assert_eq!(db.metric, metric!("LAeq"));
    // 0.2 Pa RMS = 80.0 dB.
    assert!((db.value - 80.0).abs() < 0.05, "{}", db.value);
    // Everything was drained: the next sample has nothing new.
    r.clear();
    assert_eq!(m.sample(2_000, &mut r), SensorStatus::NoNewData);
}

#[test]
fn meter_faults() {
    let cal = Calibration {
        zero: 0,
        pa_per_count: 1e-4,
    };
    // A stalled audio path: a handful of samples only.
    let mut m = NoiseMeter::new(tone(cal, 1.0, 10), NoiseConfig::new(cal));
    let mut r = Readings::new();
    assert_eq!(m.sample(0, &mut r), SensorStatus::Fault(Fault::NoData));
    // A stuck ADC: constant counts at the zero point.
    let mut stuck = NoiseMeter::new(
        Tone {
            counts: vec![0; 5_000],
            pos: 0,
            fail: false,
        },
        NoiseConfig::new(cal),
    );
    assert_eq!(
        stuck.sample(0, &mut r),
        SensorStatus::Fault(Fault::InvalidData)
    );
    // The peripheral fails.
    let mut broken = NoiseMeter::new(
        Tone {
            counts: vec![],
            pos: 0,
            fail: true,
        },
        NoiseConfig::new(cal),
    );
    assert_eq!(broken.sample(0, &mut r), SensorStatus::Fault(Fault::Bus));
    assert!(r.is_empty());
}

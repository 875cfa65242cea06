//! Street noise: LAeq of 70-83 dB(A) by day beside Hanoi's main roads, quieter at night
//! and in side streets. QCVN 26:2010 sets 70 dB(A) (06-21h) and 55 dB(A) (21-06h) for
//! ordinary areas, and main roads exceed the day limit routinely: the model reproduces
//! that rather than the limit.

use super::calendar::{LocalTime, bump, hourly};
use super::weather::round_to;
use super::{Ar1, DeviceRng, Place, Reading, Site, normal};

/// QCVN 26:2010 day limit (06:00-21:00) for ordinary areas, dB(A).
pub const QCVN26_DAY_LIMIT: f64 = 70.0;
/// QCVN 26:2010 night limit (21:00-06:00) for ordinary areas, dB(A).
pub const QCVN26_NIGHT_LIMIT: f64 = 55.0;

/// LAeq by local hour beside a main road on a weekday.
const MAIN_ROAD: [f64; 24] = [
    64.0, 62.0, 60.5, 60.0, 61.5, 65.5, 71.5, 77.0, 78.5, 76.0, 75.0, 75.0, //
    74.5, 74.0, 74.5, 75.5, 76.5, 78.5, 79.0, 76.5, 74.5, 72.0, 69.5, 67.0,
];

/// A noise meter.
#[derive(Debug, Clone)]
pub struct NoiseModel {
    place: Place,
    /// Distance and facade effects of this installation, dB.
    offset: f64,
    noise: Ar1,
}

impl NoiseModel {
    /// A meter at `site`.
    pub fn new(site: Site, rng: &mut DeviceRng) -> Self {
        Self {
            place: site.place,
            offset: 1.5 * normal(rng).clamp(-2.0, 2.0),
            noise: Ar1::new(0.7, 1.5, rng),
        }
    }

    pub(super) fn sample(&mut self, t: &LocalTime, rng: &mut DeviceRng, out: &mut Vec<Reading>) {
        let road = hourly(&MAIN_ROAD, t.hour) - if t.is_weekend() { 1.5 } else { 0.0 };
        let evening = bump(t.hour, 20.0, 2.0);
        let laeq = match self.place {
            Place::MainRoad => road,
            Place::Market => road - 4.0 + 3.0 * bump(t.hour, 7.0, 1.5),
            // Promenades are quiet by day and lively in the evening, more so at weekends.
            Place::LakeSide => {
                road - 9.0 + (4.0 + if t.is_weekend() { 3.0 } else { 0.0 }) * evening
            }
            Place::Office => road - 10.0,
            Place::Residential => road - 13.0,
        } + self.offset
            + self.noise.step(rng);
        let lamax = laeq + 8.0 + 3.0 * normal(rng).abs();
        out.push(Reading::of("LAeq", round_to(laeq, 0.1)).clamped());
        out.push(Reading::of("LAmax", round_to(lamax, 0.1)).clamped());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::device_rng;

    #[test]
    fn main_road_day_band_and_quieter_nights() {
        let mut rng = device_rng(1, "nz");
        let mut m = NoiseModel::new(
            Site {
                district: "dong-da",
                place: Place::MainRoad,
            },
            &mut rng,
        );
        let (mut day, mut nd, mut night, mut nn) = (0.0, 0.0, 0.0, 0.0);
        let mut out = Vec::new();
        for k in 0..(14 * 24 * 4) {
            let unix = 1_767_225_600 + k * 900;
            let t = LocalTime::hanoi(unix);
            out.clear();
            m.sample(&t, &mut rng, &mut out);
            let v = out[0].value;
            if (7.0..20.0).contains(&t.hour) {
                assert!((64.0..=88.0).contains(&v), "day LAeq {v} at {}", t.hour);
                day += v;
                nd += 1.0;
            } else if t.hour < 5.0 {
                night += v;
                nn += 1.0;
            }
        }
        let (day, night) = (day / nd, night / nn);
        assert!((70.0..=83.0).contains(&day), "day mean {day}");
        assert!(night < day - 8.0, "night {night} day {day}");
    }
}

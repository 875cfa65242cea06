//! Hanoi's particulate pollution: PM2.5 around the annual mean of about 40 ug/m3, winter
//! about three times summer, highest 02:00-08:00 (shallow night-time boundary layer) and
//! lowest around 14:00-15:00, rush-hour peaks beside main roads, and multi-day pollution
//! episodes shared by the whole city. PM10 follows PM2.5 with a per-station ratio and
//! PM1 stays below PM2.5.

use super::calendar::{LocalTime, bump, hourly};
use super::weather::{city_humidity, city_temperature, round_to};
use super::{Ar1, DeviceRng, Reading, Site, city_uniform, normal};

/// Annual mean PM2.5 in ug/m3 (Hanoi monitoring network, recent years).
pub const ANNUAL_MEAN_PM25: f64 = 40.0;

/// Random stream index of pollution episodes.
const EPISODE_STREAM: u64 = 1;

/// Relative PM2.5 by local hour: night and early morning accumulate under the
/// inversion; the afternoon mixing layer dilutes.
const DIURNAL: [f64; 24] = [
    1.15, 1.20, 1.28, 1.33, 1.37, 1.40, 1.38, 1.34, 1.24, 1.08, 0.94, 0.84, //
    0.75, 0.68, 0.62, 0.62, 0.68, 0.80, 0.95, 1.04, 1.09, 1.11, 1.13, 1.14,
];

fn diurnal_mean() -> f64 {
    DIURNAL.iter().sum::<f64>() / 24.0
}

/// Multiplier of the city-wide pollution episode on this day (1.0 when none): stagnant
/// air lasting 2-5 days, more likely in winter, adding 50-150% to the background.
pub fn episode_factor(seed: u64, t: &LocalTime) -> f64 {
    let p = 0.03 + 0.07 * t.winterness().max(0.0);
    let mut factor: f64 = 1.0;
    for k in 0..5 {
        let d = t.day_index - k;
        if city_uniform(seed, EPISODE_STREAM, d) < p {
            let len = 2 + (city_uniform(seed, EPISODE_STREAM + 100, d) * 4.0) as i64;
            if k < len {
                factor = factor.max(1.5 + city_uniform(seed, EPISODE_STREAM + 200, d));
            }
        }
    }
    factor
}

/// Mean PM2.5 the city's background would show at this time (no station noise).
pub fn background_pm25(seed: u64, t: &LocalTime) -> f64 {
    // 1 + 0.5 cos: 60 in January, 20 in July, a 3:1 ratio with the annual mean kept.
    let seasonal = ANNUAL_MEAN_PM25 * (1.0 + 0.5 * t.winterness());
    seasonal * hourly(&DIURNAL, t.hour) / diurnal_mean() * episode_factor(seed, t)
}

/// An air-quality station (PM sensor plus a temperature/humidity sensor).
#[derive(Debug, Clone)]
pub struct AirModel {
    site: Site,
    seed: u64,
    /// PM10/PM2.5 ratio at this station (road dust raises it).
    ratio10: f64,
    /// PM1/PM2.5 ratio.
    ratio1: f64,
    /// Sensor calibration factor (low-cost optical sensors differ by +-10%).
    calibration: f64,
    noise: Ar1,
    temp_offset: f64,
    temp_noise: Ar1,
}

impl AirModel {
    /// A station at `site`.
    pub fn new(site: Site, seed: u64, rng: &mut DeviceRng) -> Self {
        let road = if site.place.near_main_road() {
            0.2
        } else {
            0.0
        };
        Self {
            site,
            seed,
            ratio10: 1.45 + road + 0.1 * normal(rng).clamp(-2.0, 2.0),
            ratio1: 0.72 + 0.04 * normal(rng).clamp(-2.0, 2.0),
            calibration: 1.0 + 0.05 * normal(rng).clamp(-2.0, 2.0),
            noise: Ar1::new(0.9, 0.18, rng),
            temp_offset: 0.8 * normal(rng).clamp(-2.5, 2.5),
            temp_noise: Ar1::new(0.95, 0.3, rng),
        }
    }

    pub(super) fn sample(
        &mut self,
        _unix_s: i64,
        t: &LocalTime,
        rng: &mut DeviceRng,
        out: &mut Vec<Reading>,
    ) {
        let mut pm25 = background_pm25(self.seed, t);
        if self.site.place.near_main_road() {
            // Motorbike rush hours; weaker at weekends.
            let weekday = if t.is_weekend() { 0.5 } else { 1.0 };
            pm25 *= 1.0 + 0.45 * weekday * (bump(t.hour, 7.75, 1.0) + bump(t.hour, 17.75, 1.2));
        }
        pm25 *= self.calibration * self.noise.step(rng).exp();
        let pm10 = pm25 * self.ratio10 * (0.05 * normal(rng)).exp();
        let pm1 = (pm25 * self.ratio1 * (0.03 * normal(rng)).exp()).min(pm25);
        out.push(Reading::of("pm1", round_to(pm1, 0.1)).clamped());
        out.push(Reading::of("pm25", round_to(pm25, 0.1)).clamped());
        out.push(Reading::of("pm10", round_to(pm10, 0.1)).clamped());
        let temp = city_temperature(self.seed, t) + self.temp_offset + self.temp_noise.step(rng);
        let hum = city_humidity(self.seed, t) + 2.0 * normal(rng);
        out.push(Reading::of("temperature", round_to(temp, 0.01)).clamped());
        out.push(Reading::of("relativeHumidity", round_to(hum.clamp(20.0, 100.0), 0.1)).clamped());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Place, device_rng};
    use schemas::topic::DeviceKind;

    fn pm25_series(place: Place, from_day: i64, days: i64, hours: &[i64]) -> Vec<f64> {
        let mut v = Vec::new();
        for seed in 0..8u64 {
            let mut rng = device_rng(seed, "aq");
            let mut m = Model::new(
                DeviceKind::AirQuality,
                Site {
                    district: "dong-da",
                    place,
                },
                seed,
                &mut rng,
            );
            let mut out = Vec::new();
            for d in from_day..from_day + days {
                for &h in hours {
                    out.clear();
                    // Local hour h is UTC h-7.
                    m.sample(
                        1_767_225_600 + d * 86_400 + (h - 7) * 3600,
                        3600,
                        &mut rng,
                        &mut out,
                    );
                    v.push(out[1].value);
                }
            }
        }
        v
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn annual_mean_seasons_and_diurnal_shape() {
        let all_hours: Vec<i64> = (0..24).collect();
        let year = mean(&pm25_series(Place::Residential, 0, 365, &all_hours));
        assert!((32.0..=52.0).contains(&year), "annual mean {year}");
        let winter = mean(&pm25_series(Place::Residential, 0, 45, &all_hours));
        let summer = mean(&pm25_series(Place::Residential, 166, 45, &all_hours));
        let ratio = winter / summer;
        assert!((2.2..=4.5).contains(&ratio), "winter/summer {ratio}");
        let night = mean(&pm25_series(Place::Residential, 0, 365, &[3, 4, 5, 6]));
        let afternoon = mean(&pm25_series(Place::Residential, 0, 365, &[14, 15]));
        assert!(
            night > 1.6 * afternoon,
            "night {night} afternoon {afternoon}"
        );
    }

    #[test]
    fn rush_hour_raises_pm_near_main_roads() {
        let road = mean(&pm25_series(Place::MainRoad, 0, 120, &[8, 18]));
        let side = mean(&pm25_series(Place::Residential, 0, 120, &[8, 18]));
        assert!(road > 1.15 * side, "road {road} side {side}");
    }

    #[test]
    fn episodes_last_days() {
        // Over ten winters some episodes must occur and each spans more than one day.
        let mut longest = 0;
        let mut run = 0;
        for d in 0..3650 {
            let t = LocalTime::hanoi(1_767_225_600 + d * 86_400);
            if episode_factor(3, &t) > 1.0 {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        assert!(longest >= 2, "longest episode {longest} days");
    }
}

//! Hanoi's weather: temperature and humidity by season and hour (winter mean about
//! 17 C, summer about 29 C, humidity above 80% in the February-April drizzle), pressure
//! with passing fronts, winter cold surges, wind and rain.
//!
//! The city-wide parts ([`city_temperature`], [`city_humidity`], [`city_pressure`]) are
//! functions of the fleet seed and time only, so air-quality stations, which also carry
//! a temperature/humidity sensor, agree with the weather stations.

use std::f64::consts::PI;

use super::calendar::{LocalTime, bump};
use super::{Ar1, DeviceRng, Reading, Site, city_uniform, normal};

/// Random stream index of cold surges.
const COLD_SURGE_STREAM: u64 = 2;
/// Random stream index of front phases.
const FRONT_STREAM: u64 = 3;
/// Random stream index of rainy days.
const RAIN_STREAM: u64 = 4;

/// Degrees (and hPa) of the winter cold surge ("gio mua dong bac") active on this day:
/// northeast monsoon pushes lasting 2-4 days, frequent from November to March.
pub fn cold_surge(seed: u64, t: &LocalTime) -> f64 {
    let p = 0.06 * t.winterness().max(0.0);
    let mut strength: f64 = 0.0;
    for k in 0..4 {
        let d = t.day_index - k;
        if city_uniform(seed, COLD_SURGE_STREAM, d) < p {
            let len = 2 + (city_uniform(seed, COLD_SURGE_STREAM + 100, d) * 3.0) as i64;
            if k < len {
                strength = strength.max(3.0 + 3.0 * city_uniform(seed, COLD_SURGE_STREAM + 200, d));
            }
        }
    }
    strength
}

/// City air temperature in Cel at `unix_s`.
pub fn city_temperature(seed: u64, t: &LocalTime) -> f64 {
    let seasonal = 23.0 - 6.0 * t.winterness();
    // Warmest at 14h, coolest before dawn; the swing is larger in the dry season.
    let swing = 3.0 + 0.8 * t.winterness().max(0.0);
    let diurnal = swing * (2.0 * PI * (t.hour - 14.0) / 24.0).cos();
    seasonal + diurnal - cold_surge(seed, t)
}

/// City relative humidity in %RH.
pub fn city_humidity(seed: u64, t: &LocalTime) -> f64 {
    // The "mua phun" drizzle season peaks in March (day ~75) and keeps the air
    // near saturation for weeks.
    let doy = f64::from(t.day_of_year);
    let drizzle = (-0.5 * ((doy - 75.0) / 25.0).powi(2)).exp();
    let base = 74.0 + 16.0 * drizzle + 3.0 * (-t.winterness()).max(0.0);
    // Humidity falls as the day warms.
    let diurnal = -7.0 * (2.0 * PI * (t.hour - 14.0) / 24.0).cos() * (1.0 - 0.6 * drizzle);
    base + diurnal - 4.0 * cold_surge(seed, t) / 3.0
}

/// City station pressure in hPa: higher in winter, fronts every few days.
pub fn city_pressure(seed: u64, unix_s: i64, t: &LocalTime) -> f64 {
    let days = unix_s as f64 / 86_400.0;
    let p1 = 2.0 * PI * city_uniform(seed, FRONT_STREAM, 0);
    let p2 = 2.0 * PI * city_uniform(seed, FRONT_STREAM, 1);
    let fronts =
        4.0 * (2.0 * PI * days / 4.3 + p1).sin() + 2.0 * (2.0 * PI * days / 6.7 + p2).sin();
    // Semi-diurnal atmospheric tide, peaks near 10h and 22h.
    let tide = 1.2 * (4.0 * PI * (t.hour - 10.0) / 24.0).cos();
    1010.0 + 7.0 * t.winterness() + fronts + tide + 1.5 * cold_surge(seed, t)
}

/// Rain rate in mm/h now, city-wide: showers in the May-September monsoon, drizzle in spring.
pub fn city_rain_rate(seed: u64, t: &LocalTime) -> f64 {
    let monsoon = (-t.winterness()).max(0.0);
    let rainy_day = city_uniform(seed, RAIN_STREAM, t.day_index) < 0.15 + 0.45 * monsoon;
    if !rainy_day {
        return 0.0;
    }
    // Afternoon thunderstorms in summer.
    let intensity = city_uniform(seed, RAIN_STREAM + 1, t.day_index);
    let storm = 25.0 * intensity * monsoon * bump(t.hour, 16.0, 1.5);
    let drizzle = 0.4 * (1.0 - monsoon);
    storm + drizzle
}

/// A weather station.
#[derive(Debug, Clone)]
pub struct WeatherModel {
    seed: u64,
    /// Urban heat island and siting offset of this station, Cel.
    temp_offset: f64,
    temp_noise: Ar1,
    hum_noise: Ar1,
    wind_noise: Ar1,
    /// Exposure of the anemometer: open lake sides are windier.
    wind_exposure: f64,
}

impl WeatherModel {
    /// A station at `site`.
    pub fn new(site: Site, seed: u64, rng: &mut DeviceRng) -> Self {
        let wind_exposure = match site.place {
            super::Place::LakeSide => 1.5,
            super::Place::Residential => 0.8,
            _ => 1.0,
        };
        Self {
            seed,
            temp_offset: 0.6 * normal(rng),
            temp_noise: Ar1::new(0.95, 0.4, rng),
            hum_noise: Ar1::new(0.95, 2.0, rng),
            wind_noise: Ar1::new(0.9, 0.8, rng),
            wind_exposure,
        }
    }

    pub(super) fn sample(
        &mut self,
        unix_s: i64,
        t: &LocalTime,
        rng: &mut DeviceRng,
        out: &mut Vec<Reading>,
    ) {
        let temp = city_temperature(self.seed, t) + self.temp_offset + self.temp_noise.step(rng);
        let hum = city_humidity(self.seed, t) + self.hum_noise.step(rng);
        let pressure = city_pressure(self.seed, unix_s, t) + 0.1 * normal(rng);
        let wind = self.wind_exposure
            * (1.5 + 1.5 * bump(t.hour, 14.0, 3.0) + 0.3 * cold_surge(self.seed, t))
            + self.wind_noise.step(rng);
        // Reported as the amount fallen over a one-minute window.
        let rain = city_rain_rate(self.seed, t) * (1.0 + 0.2 * normal(rng)) / 60.0;
        out.push(Reading::of("temperature", round_to(temp, 0.01)).clamped());
        out.push(Reading::of("relativeHumidity", round_to(hum.clamp(20.0, 100.0), 0.1)).clamped());
        out.push(Reading::of("pressure", round_to(pressure, 0.01)).clamped());
        out.push(Reading::of("windSpeed", round_to(wind.max(0.0), 0.1)).clamped());
        out.push(Reading::of("precipitation", round_to(rain.max(0.0), 0.01)).clamped());
    }
}

/// Rounds to a sensor's resolution (`step` is 1, 0.1, 0.01, ...), which also keeps
/// payloads short: dividing by the integer 1/step gives the f64 nearest the decimal, so
/// 75.1 prints as `75.1`, not `75.10000000000001`.
pub fn round_to(v: f64, step: f64) -> f64 {
    let inv = (1.0 / step).round();
    (v * inv).round() / inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_over(day_from: i64, days: i64, f: impl Fn(&LocalTime) -> f64) -> f64 {
        let start = 1_767_225_600; // 2026-01-01
        let mut sum = 0.0;
        let mut n = 0.0;
        for d in day_from..day_from + days {
            for h in 0..24 {
                let t = LocalTime::hanoi(start + d * 86_400 + h * 3600);
                sum += f(&t);
                n += 1.0;
            }
        }
        sum / n
    }

    #[test]
    fn rounding_prints_short_decimals() {
        assert_eq!(round_to(75.09999, 0.1).to_string(), "75.1");
        assert_eq!(round_to(1013.2749, 0.01).to_string(), "1013.27");
    }

    #[test]
    fn seasons_match_hanoi_climate() {
        let jan = mean_over(0, 31, |t| city_temperature(1, t));
        let jul = mean_over(181, 31, |t| city_temperature(1, t));
        assert!((14.0..=19.5).contains(&jan), "January mean {jan}");
        assert!((27.5..=31.0).contains(&jul), "July mean {jul}");
        let mar_h = mean_over(59, 31, |t| city_humidity(1, t));
        assert!(mar_h > 80.0, "March humidity {mar_h}");
    }
}

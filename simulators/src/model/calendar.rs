//! Calendar arithmetic for the models: Hanoi local time (UTC+7, no daylight saving),
//! day of year, hour of day and weekday from a Unix time in seconds.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Hanoi's offset from UTC in seconds (Indochina Time, no daylight saving).
pub const HANOI_UTC_OFFSET_S: i64 = 7 * 3600;

/// Local calendar facts the models depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalTime {
    /// Day of the year, 1..=366.
    pub day_of_year: u32,
    /// Fractional hour of the local day, 0.0..24.0.
    pub hour: f64,
    /// Days since Monday, 0..=6 (5 and 6 are the weekend).
    pub weekday: u32,
    /// Whole local days since the Unix epoch: the index of multi-day processes.
    pub day_index: i64,
}

impl LocalTime {
    /// Local time in Hanoi at `unix_s`.
    pub fn hanoi(unix_s: i64) -> Self {
        let local = unix_s + HANOI_UTC_OFFSET_S;
        let dt: DateTime<Utc> = DateTime::from_timestamp(local, 0).unwrap_or_default();
        Self {
            day_of_year: dt.ordinal(),
            hour: f64::from(dt.hour())
                + f64::from(dt.minute()) / 60.0
                + f64::from(dt.second()) / 3600.0,
            weekday: dt.weekday().num_days_from_monday(),
            day_index: local.div_euclid(86_400),
        }
    }

    /// Saturday or Sunday.
    pub fn is_weekend(&self) -> bool {
        self.weekday >= 5
    }

    /// Position in the seasonal cycle: 1.0 in mid-January (coldest, most polluted),
    /// -1.0 in mid-July.
    pub fn winterness(&self) -> f64 {
        let phase = 2.0 * std::f64::consts::PI * (f64::from(self.day_of_year) - 15.0) / 365.25;
        phase.cos()
    }
}

/// Linear interpolation in a 24-entry hourly profile, wrapping at midnight.
pub fn hourly(profile: &[f64; 24], hour: f64) -> f64 {
    let h = hour.rem_euclid(24.0);
    let i = h.floor() as usize % 24;
    let j = (i + 1) % 24;
    let f = h - h.floor();
    profile[i] * (1.0 - f) + profile[j] * f
}

/// A bump centred on `centre` hours with width `sigma` hours, wrapping at midnight.
pub fn bump(hour: f64, centre: f64, sigma: f64) -> f64 {
    let mut d = (hour - centre).abs();
    if d > 12.0 {
        d = 24.0 - d;
    }
    (-0.5 * (d / sigma).powi(2)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hanoi_offset_and_weekday() {
        // 2026-01-05T01:00:00Z is a Monday, 08:00 in Hanoi.
        let t = LocalTime::hanoi(1_767_574_800);
        assert_eq!(t.weekday, 0);
        assert!((t.hour - 8.0).abs() < 1e-9);
        assert_eq!(t.day_of_year, 5);
        assert!(t.winterness() > 0.95);
    }

    #[test]
    fn hourly_interpolates_and_wraps() {
        let mut p = [0.0; 24];
        p[23] = 1.0;
        assert!((hourly(&p, 23.5) - 0.5).abs() < 1e-12);
        assert!((bump(23.0, 1.0, 1.0) - bump(3.0, 1.0, 1.0)).abs() < 1e-12);
    }
}

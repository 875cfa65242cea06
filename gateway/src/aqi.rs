//! Air-quality indices from particulate concentrations: Vietnam's VN_AQI (Decision
//! 1459/QD-TCMT of the Vietnam Environment Administration, 2019) and the US EPA AQI (with
//! the PM2.5 breakpoints revised in 2024). Pure functions, no I/O: the query API feeds them
//! hourly means it read from the hot tier.
//!
//! Conventions shared by every function here:
//! - concentrations are in ug/m3;
//! - an hourly series is a slice of hourly means, **most recent hour first**
//!   (`hourly[0]` is the current hour, `hourly[1]` the hour before, ...), with `None` for an
//!   hour without data;
//! - an index is an integer, rounded half up as both methods specify, and capped at 500
//!   (both scales end there; a concentration above the last breakpoint reads 500).

use serde::Serialize;

/// The particulate pollutants the city's stations measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pollutant {
    /// Fine particulate matter, PM2.5.
    Pm25,
    /// Coarse particulate matter, PM10.
    Pm10,
}

impl Pollutant {
    /// The metric name in the catalog (`schemas::catalog`).
    pub const fn metric(self) -> &'static str {
        match self {
            Self::Pm25 => "pm25",
            Self::Pm10 => "pm10",
        }
    }
}

/// Hours a NowCast looks back over.
pub const NOWCAST_HOURS: usize = 12;
/// Hours averaged for a daily index.
pub const DAILY_HOURS: usize = 24;
/// Fewest hourly means a daily mean needs: 75 % of the day (18 of 24 hours), the
/// completeness rule the EPA applies and that we apply to both scales so that one bad
/// night of Wi-Fi does not produce a daily index from a handful of hours.
pub const DAILY_MIN_HOURS: usize = 18;

/// VN_AQI breakpoints (Decision 1459/QD-TCMT, table 2): concentration -> index, joined by
/// straight lines. The scale is continuous: each segment starts where the last one ended.
const VN_PM25: [(f64, f64); 8] = [
    (0.0, 0.0),
    (25.0, 50.0),
    (50.0, 100.0),
    (80.0, 150.0),
    (150.0, 200.0),
    (250.0, 300.0),
    (350.0, 400.0),
    (500.0, 500.0),
];
const VN_PM10: [(f64, f64); 8] = [
    (0.0, 0.0),
    (50.0, 50.0),
    (150.0, 100.0),
    (250.0, 150.0),
    (350.0, 200.0),
    (420.0, 300.0),
    (500.0, 400.0),
    (600.0, 500.0),
];

/// One segment of the EPA table: (C_lo, C_hi, I_lo, I_hi). The EPA's table has gaps
/// between segments (9.0 then 9.1) that truncation of the concentration closes.
type EpaSegment = (f64, f64, f64, f64);

/// US EPA PM2.5 breakpoints as revised in February 2024 (40 CFR 58 appendix G), for
/// concentrations truncated to 0.1 ug/m3.
const EPA_PM25: [EpaSegment; 6] = [
    (0.0, 9.0, 0.0, 50.0),
    (9.1, 35.4, 51.0, 100.0),
    (35.5, 55.4, 101.0, 150.0),
    (55.5, 125.4, 151.0, 200.0),
    (125.5, 225.4, 201.0, 300.0),
    (225.5, 325.4, 301.0, 500.0),
];
/// US EPA PM10 breakpoints (unchanged in 2024), for concentrations truncated to 1 ug/m3.
const EPA_PM10: [EpaSegment; 6] = [
    (0.0, 54.0, 0.0, 50.0),
    (55.0, 154.0, 51.0, 100.0),
    (155.0, 254.0, 101.0, 150.0),
    (255.0, 354.0, 151.0, 200.0),
    (355.0, 424.0, 201.0, 300.0),
    (425.0, 604.0, 301.0, 500.0),
];

/// Highest index either scale reports.
pub const MAX_INDEX: u16 = 500;

/// Rounds half up. The small nudge keeps values like 109.5, which floating point may
/// hold as 109.49999999999999, on the side the methods' worked examples expect.
fn round_half_up(x: f64) -> u16 {
    let r = (x + 1e-9).floor() + if (x + 1e-9).fract() >= 0.5 { 1.0 } else { 0.0 };
    // Clamped to the scale, so the cast cannot truncate.
    r.clamp(0.0, f64::from(MAX_INDEX)) as u16
}

fn usable(c: f64) -> bool {
    c.is_finite() && c >= 0.0
}

/// The 12-hour NowCast of hourly means (most recent first), as both Decision 1459 and the
/// EPA define it for particulates:
///
/// - w* = Cmin / Cmax over the available hours of the last 12; w = max(w*, 1/2);
/// - NowCast = sum(w^(i-1) c_i) / sum(w^(i-1)) over the available hours i = 1..12.
///
/// Missing hours drop out of both sums. At least two of the three most recent hours must
/// be present, otherwise there is no NowCast (`None`). The Decision writes the w = 1/2
/// case as sum((1/2)^i c_i), which with all 12 hours present equals the weighted mean
/// above times (1 - 2^-12) (0.02 % lower); the weighted mean is used in both cases because
/// it stays correct when hours are missing.
pub fn nowcast(hourly: &[Option<f64>]) -> Option<f64> {
    let window: Vec<(usize, f64)> = hourly
        .iter()
        .take(NOWCAST_HOURS)
        .enumerate()
        .filter_map(|(i, c)| c.filter(|c| usable(*c)).map(|c| (i, c)))
        .collect();
    let recent = window.iter().filter(|(i, _)| *i < 3).count();
    if recent < 2 {
        return None;
    }
    let (min, max) = window
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), (_, c)| {
            (lo.min(*c), hi.max(*c))
        });
    // All-zero air: every weight works, and the answer is 0.
    let w_star = if max > 0.0 { min / max } else { 1.0 };
    let w = w_star.max(0.5);
    let (num, den) = window.iter().fold((0.0, 0.0), |(num, den), (i, c)| {
        let weight = w.powi(*i as i32);
        (num + weight * c, den + weight)
    });
    Some(num / den)
}

/// Mean of the available hourly means of the last 24 hours, or `None` when fewer than
/// [`DAILY_MIN_HOURS`] hours have data.
pub fn daily_mean(hourly: &[Option<f64>]) -> Option<f64> {
    let hours: Vec<f64> = hourly
        .iter()
        .take(DAILY_HOURS)
        .filter_map(|c| c.filter(|c| usable(*c)))
        .collect();
    if hours.len() < DAILY_MIN_HOURS {
        return None;
    }
    Some(hours.iter().sum::<f64>() / hours.len() as f64)
}

/// VN_AQI sub-index of one pollutant for a concentration (a NowCast for the hourly index,
/// a 24-hour mean for the daily one): linear interpolation between the breakpoints,
/// AQI = (I_{i+1} - I_i) / (BP_{i+1} - BP_i) * (C - BP_i) + I_i, rounded to an integer.
/// `None` for a negative or non-finite concentration.
pub fn vn_aqi(pollutant: Pollutant, concentration: f64) -> Option<u16> {
    if !usable(concentration) {
        return None;
    }
    let table = match pollutant {
        Pollutant::Pm25 => &VN_PM25,
        Pollutant::Pm10 => &VN_PM10,
    };
    let index = table
        .windows(2)
        .find(|seg| concentration <= seg[1].0)
        .map_or(f64::from(MAX_INDEX), |seg| {
            let ((bp_lo, i_lo), (bp_hi, i_hi)) = (seg[0], seg[1]);
            (i_hi - i_lo) / (bp_hi - bp_lo) * (concentration - bp_lo) + i_lo
        });
    Some(round_half_up(index))
}

/// Truncates to `digits` decimals, as the EPA requires before looking up a segment.
fn truncate(c: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    // The nudge keeps 35.4 (held as 35.39999...) at 35.4.
    ((c * scale) + 1e-9).floor() / scale
}

/// US EPA AQI of one pollutant for a concentration (a NowCast for the current index, a
/// 24-hour mean for the daily one). The concentration is first truncated (PM2.5 to
/// 0.1 ug/m3, PM10 to 1 ug/m3), then I = (I_hi - I_lo) / (C_hi - C_lo) * (C - C_lo) + I_lo,
/// rounded to the nearest integer. `None` for a negative or non-finite concentration.
pub fn us_aqi(pollutant: Pollutant, concentration: f64) -> Option<u16> {
    if !usable(concentration) {
        return None;
    }
    let (table, c) = match pollutant {
        Pollutant::Pm25 => (&EPA_PM25, truncate(concentration, 1)),
        Pollutant::Pm10 => (&EPA_PM10, truncate(concentration, 0)),
    };
    let index = table
        .iter()
        .find(|(_, c_hi, _, _)| c <= *c_hi)
        .map_or(f64::from(MAX_INDEX), |(c_lo, c_hi, i_lo, i_hi)| {
            (i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + i_lo
        });
    Some(round_half_up(index))
}

/// One of the six bands both scales share, with the colour both publish for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Category {
    /// Stable machine name: `good`, `moderate`, `poor`, `bad`, `very_bad`, `hazardous`.
    pub key: &'static str,
    /// English name used by the EPA for the band.
    pub name_en: &'static str,
    /// Vietnamese name used by Decision 1459 for the band.
    pub name_vi: &'static str,
    /// Colour as (red, green, blue).
    pub rgb: (u8, u8, u8),
    /// Colour as `#rrggbb`, for the dashboard.
    pub hex: &'static str,
}

/// The six bands, by upper index bound.
const CATEGORIES: [(u16, Category); 6] = [
    (
        50,
        Category {
            key: "good",
            name_en: "Good",
            name_vi: "Tốt",
            rgb: (0, 228, 0),
            hex: "#00e400",
        },
    ),
    (
        100,
        Category {
            key: "moderate",
            name_en: "Moderate",
            name_vi: "Trung bình",
            rgb: (255, 255, 0),
            hex: "#ffff00",
        },
    ),
    (
        150,
        Category {
            key: "poor",
            name_en: "Unhealthy for Sensitive Groups",
            name_vi: "Kém",
            rgb: (255, 126, 0),
            hex: "#ff7e00",
        },
    ),
    (
        200,
        Category {
            key: "bad",
            name_en: "Unhealthy",
            name_vi: "Xấu",
            rgb: (255, 0, 0),
            hex: "#ff0000",
        },
    ),
    (
        300,
        Category {
            key: "very_bad",
            name_en: "Very Unhealthy",
            name_vi: "Rất xấu",
            rgb: (143, 63, 151),
            hex: "#8f3f97",
        },
    ),
    (
        u16::MAX,
        Category {
            key: "hazardous",
            name_en: "Hazardous",
            name_vi: "Nguy hại",
            rgb: (126, 0, 35),
            hex: "#7e0023",
        },
    ),
];

/// The band an index falls in: 0-50, 51-100, 101-150, 151-200, 201-300, 301-500 (and
/// above). Both scales use the same bands and colours.
pub fn category(index: u16) -> Category {
    CATEGORIES
        .iter()
        .find(|(upper, _)| index <= *upper)
        .map_or(CATEGORIES[5].1, |(_, c)| *c)
}

/// An index with the pollutant that set it (the highest sub-index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Index {
    /// The index value.
    pub value: u16,
    /// The pollutant whose sub-index is the highest.
    pub dominant: Pollutant,
    /// The band and its colour.
    pub category: Category,
}

/// Every index of one station, computed from its hourly means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StationAqi {
    /// PM2.5 NowCast, ug/m3.
    pub pm25_nowcast: Option<f64>,
    /// PM10 NowCast, ug/m3.
    pub pm10_nowcast: Option<f64>,
    /// PM2.5 24-hour mean, ug/m3.
    pub pm25_daily: Option<f64>,
    /// PM10 24-hour mean, ug/m3.
    pub pm10_daily: Option<f64>,
    /// Hourly VN_AQI (from the NowCasts).
    pub vn_hourly: Option<Index>,
    /// Daily VN_AQI (from the 24-hour means).
    pub vn_daily: Option<Index>,
    /// US EPA AQI from the NowCasts (what AirNow shows as the current AQI).
    pub us_nowcast: Option<Index>,
    /// US EPA AQI from the 24-hour means.
    pub us_daily: Option<Index>,
}

fn highest(
    scale: fn(Pollutant, f64) -> Option<u16>,
    pm25: Option<f64>,
    pm10: Option<f64>,
) -> Option<Index> {
    let sub = |p: Pollutant, c: Option<f64>| c.and_then(|c| scale(p, c)).map(|v| (v, p));
    // With equal sub-indices PM2.5 is named: it is the pollutant that drives Hanoi's index.
    let best = match (sub(Pollutant::Pm25, pm25), sub(Pollutant::Pm10, pm10)) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    };
    best.map(|(value, dominant)| Index {
        value,
        dominant,
        category: category(value),
    })
}

/// All indices of a station from its hourly means (most recent first, at least 24 slots
/// wanted; fewer simply count as missing hours). The station's index is the highest
/// sub-index; Decision 1459 requires at least one of PM2.5 and PM10, so with neither
/// there is no index.
pub fn station_aqi(pm25_hourly: &[Option<f64>], pm10_hourly: &[Option<f64>]) -> StationAqi {
    let pm25_nowcast = nowcast(pm25_hourly);
    let pm10_nowcast = nowcast(pm10_hourly);
    let pm25_daily = daily_mean(pm25_hourly);
    let pm10_daily = daily_mean(pm10_hourly);
    StationAqi {
        pm25_nowcast,
        pm10_nowcast,
        pm25_daily,
        pm10_daily,
        vn_hourly: highest(vn_aqi, pm25_nowcast, pm10_nowcast),
        vn_daily: highest(vn_aqi, pm25_daily, pm10_daily),
        us_nowcast: highest(us_aqi, pm25_nowcast, pm10_nowcast),
        us_daily: highest(us_aqi, pm25_daily, pm10_daily),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    // Decision 1459's worked examples.
    #[test]
    fn vn_worked_examples() {
        assert_eq!(vn_aqi(Pollutant::Pm25, 20.3), Some(41));
        assert_eq!(vn_aqi(Pollutant::Pm25, 55.7), Some(110));
    }

    #[test]
    fn vn_breakpoints_map_to_their_index() {
        for (c, i) in VN_PM25 {
            assert_eq!(vn_aqi(Pollutant::Pm25, c), Some(i as u16), "pm25 {c}");
        }
        for (c, i) in VN_PM10 {
            assert_eq!(vn_aqi(Pollutant::Pm10, c), Some(i as u16), "pm10 {c}");
        }
    }

    #[test]
    fn vn_interpolates_inside_each_segment() {
        // Midpoints of each PM2.5 segment land midway between the indices.
        assert_eq!(vn_aqi(Pollutant::Pm25, 12.5), Some(25));
        assert_eq!(vn_aqi(Pollutant::Pm25, 37.5), Some(75));
        assert_eq!(vn_aqi(Pollutant::Pm25, 65.0), Some(125));
        assert_eq!(vn_aqi(Pollutant::Pm25, 115.0), Some(175));
        assert_eq!(vn_aqi(Pollutant::Pm25, 200.0), Some(250));
        assert_eq!(vn_aqi(Pollutant::Pm25, 300.0), Some(350));
        assert_eq!(vn_aqi(Pollutant::Pm25, 425.0), Some(450));
        // PM10: 100 is midway 50..150 -> 75; 385 midway 350..420 -> 250.
        assert_eq!(vn_aqi(Pollutant::Pm10, 100.0), Some(75));
        assert_eq!(vn_aqi(Pollutant::Pm10, 385.0), Some(250));
        assert_eq!(vn_aqi(Pollutant::Pm10, 550.0), Some(450));
    }

    #[test]
    fn vn_caps_and_rejects() {
        assert_eq!(vn_aqi(Pollutant::Pm25, 900.0), Some(500));
        assert_eq!(vn_aqi(Pollutant::Pm10, 601.0), Some(500));
        assert_eq!(vn_aqi(Pollutant::Pm25, -0.1), None);
        assert_eq!(vn_aqi(Pollutant::Pm25, f64::NAN), None);
        assert_eq!(vn_aqi(Pollutant::Pm25, f64::INFINITY), None);
    }

    #[test]
    fn vn_rounds_half_up() {
        // 50/25 * 0.25 = 0.5 -> 1; 50/25 * 0.24 = 0.48 -> 0.
        assert_eq!(vn_aqi(Pollutant::Pm25, 0.25), Some(1));
        assert_eq!(vn_aqi(Pollutant::Pm25, 0.24), Some(0));
    }

    // Vectors worked by hand from the EPA's Technical Assistance Document for the
    // Reporting of Daily Air Quality (EPA-454/B-24-002, May 2024) tables and equation 1.
    #[test]
    fn epa_pm25_vectors() {
        assert_eq!(us_aqi(Pollutant::Pm25, 0.0), Some(0));
        assert_eq!(us_aqi(Pollutant::Pm25, 9.0), Some(50));
        assert_eq!(us_aqi(Pollutant::Pm25, 9.1), Some(51));
        // Truncation: 9.09 reads as 9.0.
        assert_eq!(us_aqi(Pollutant::Pm25, 9.09), Some(50));
        assert_eq!(us_aqi(Pollutant::Pm25, 35.4), Some(100));
        // (150-101)/(55.4-35.5) * (35.9-35.5) + 101 = 101.98 -> 102.
        assert_eq!(us_aqi(Pollutant::Pm25, 35.9), Some(102));
        assert_eq!(us_aqi(Pollutant::Pm25, 35.5), Some(101));
        assert_eq!(us_aqi(Pollutant::Pm25, 55.4), Some(150));
        assert_eq!(us_aqi(Pollutant::Pm25, 55.5), Some(151));
        // (200-151)/(125.4-55.5) * (90.0-55.5) + 151 = 175.18 -> 175.
        assert_eq!(us_aqi(Pollutant::Pm25, 90.0), Some(175));
        assert_eq!(us_aqi(Pollutant::Pm25, 125.4), Some(200));
        assert_eq!(us_aqi(Pollutant::Pm25, 225.4), Some(300));
        assert_eq!(us_aqi(Pollutant::Pm25, 225.5), Some(301));
        assert_eq!(us_aqi(Pollutant::Pm25, 325.4), Some(500));
        assert_eq!(us_aqi(Pollutant::Pm25, 600.0), Some(500));
        // (50-0)/(9.0-0) * 4.5 = 25.
        assert_eq!(us_aqi(Pollutant::Pm25, 4.5), Some(25));
        // (100-51)/(35.4-9.1) * (20.3-9.1) + 51 = 71.87 -> 72.
        assert_eq!(us_aqi(Pollutant::Pm25, 20.3), Some(72));
    }

    #[test]
    fn epa_pm10_vectors() {
        assert_eq!(us_aqi(Pollutant::Pm10, 54.0), Some(50));
        assert_eq!(us_aqi(Pollutant::Pm10, 54.9), Some(50));
        assert_eq!(us_aqi(Pollutant::Pm10, 55.0), Some(51));
        assert_eq!(us_aqi(Pollutant::Pm10, 154.0), Some(100));
        // (150-101)/(254-155) * (200-155) + 101 = 123.27 -> 123.
        assert_eq!(us_aqi(Pollutant::Pm10, 200.0), Some(123));
        assert_eq!(us_aqi(Pollutant::Pm10, 424.0), Some(300));
        assert_eq!(us_aqi(Pollutant::Pm10, 604.0), Some(500));
        assert_eq!(us_aqi(Pollutant::Pm10, -1.0), None);
    }

    #[test]
    fn categories_and_colours() {
        let cases = [
            (0, "good", (0, 228, 0)),
            (50, "good", (0, 228, 0)),
            (51, "moderate", (255, 255, 0)),
            (100, "moderate", (255, 255, 0)),
            (101, "poor", (255, 126, 0)),
            (150, "poor", (255, 126, 0)),
            (151, "bad", (255, 0, 0)),
            (200, "bad", (255, 0, 0)),
            (201, "very_bad", (143, 63, 151)),
            (300, "very_bad", (143, 63, 151)),
            (301, "hazardous", (126, 0, 35)),
            (500, "hazardous", (126, 0, 35)),
        ];
        for (index, key, rgb) in cases {
            let c = category(index);
            assert_eq!((c.key, c.rgb), (key, rgb), "index {index}");
            let (r, g, b) = rgb;
            assert_eq!(c.hex, format!("#{r:02x}{g:02x}{b:02x}"), "index {index}");
        }
    }

    #[test]
    fn nowcast_steady_air_is_the_level() {
        let h = vec![Some(20.3); 12];
        assert!(close(nowcast(&h).unwrap(), 20.3));
        assert_eq!(vn_aqi(Pollutant::Pm25, nowcast(&h).unwrap()), Some(41));
    }

    #[test]
    fn nowcast_uses_ratio_weight_above_half() {
        // Cmin/Cmax = 30/40 = 0.75: sum(0.75^(i-1) c_i) / sum(0.75^(i-1)).
        let h: Vec<Option<f64>> = (0..12)
            .map(|i| Some(if i < 6 { 40.0 } else { 30.0 }))
            .collect();
        let w: f64 = 0.75;
        let num: f64 = (0..12)
            .map(|i| w.powi(i) * if i < 6 { 40.0 } else { 30.0 })
            .sum();
        let den: f64 = (0..12).map(|i| w.powi(i)).sum();
        assert!(close(nowcast(&h).unwrap(), num / den));
    }

    #[test]
    fn nowcast_floors_weight_at_half() {
        // Cmin/Cmax = 10/100 = 0.1 -> w = 1/2; the Decision's sum((1/2)^i c_i) form agrees
        // with the weighted mean to within 0.03 %.
        let vals = [
            100.0, 10.0, 50.0, 40.0, 30.0, 20.0, 10.0, 60.0, 70.0, 80.0, 90.0, 10.0,
        ];
        let h: Vec<Option<f64>> = vals.iter().map(|v| Some(*v)).collect();
        let decision: f64 = vals
            .iter()
            .enumerate()
            .map(|(i, c)| 0.5f64.powi(i as i32 + 1) * c)
            .sum();
        let got = nowcast(&h).unwrap();
        assert!(
            (got - decision).abs() / decision < 3e-4,
            "{got} vs {decision}"
        );
        assert!(got > 50.0, "the most recent hour dominates: {got}");
    }

    #[test]
    fn nowcast_needs_two_of_three_recent_hours() {
        let mut h = vec![Some(10.0); 12];
        h[0] = None;
        assert!(nowcast(&h).is_some());
        h[1] = None;
        assert_eq!(nowcast(&h), None);
        let mut h = vec![Some(10.0); 12];
        h[1] = None;
        h[2] = None;
        assert_eq!(nowcast(&h), None);
        assert_eq!(nowcast(&[]), None);
        assert!(nowcast(&[Some(1.0), Some(2.0)]).is_some());
    }

    #[test]
    fn nowcast_skips_missing_hours_and_ignores_older_ones() {
        // Hours 4..12 missing: the NowCast of two equal hours is that value.
        let mut h = vec![None; 24];
        h[0] = Some(30.0);
        h[1] = Some(30.0);
        // Hour 13 is outside the window and must not count.
        h[12] = Some(500.0);
        assert!(close(nowcast(&h).unwrap(), 30.0));
    }

    #[test]
    fn nowcast_of_clean_air_is_zero() {
        assert_eq!(nowcast(&[Some(0.0); 12]), Some(0.0));
    }

    #[test]
    fn daily_mean_needs_eighteen_hours() {
        let mut h = vec![Some(55.7); 24];
        assert!(close(daily_mean(&h).unwrap(), 55.7));
        assert_eq!(vn_aqi(Pollutant::Pm25, daily_mean(&h).unwrap()), Some(110));
        for slot in h.iter_mut().take(6) {
            *slot = None;
        }
        assert!(daily_mean(&h).is_some());
        h[6] = None;
        assert_eq!(daily_mean(&h), None);
        // Hours beyond 24 do not count.
        let mut h = vec![Some(10.0); 24];
        h.push(Some(1000.0));
        assert!(close(daily_mean(&h).unwrap(), 10.0));
    }

    #[test]
    fn station_takes_the_highest_sub_index() {
        // PM2.5 at 20.3 -> 41; PM10 at 100 -> 75: PM10 dominates.
        let s = station_aqi(&[Some(20.3); 24], &[Some(100.0); 24]);
        let vn = s.vn_hourly.unwrap();
        assert_eq!((vn.value, vn.dominant), (75, Pollutant::Pm10));
        assert_eq!(vn.category.key, "moderate");
        let vn_daily = s.vn_daily.unwrap();
        assert_eq!(vn_daily.value, 75);
        // US: PM2.5 20.3 -> 72; PM10 100 -> (100-51)/(154-55)*(100-55)+51 = 73.27 -> 73.
        let us = s.us_nowcast.unwrap();
        assert_eq!((us.value, us.dominant), (73, Pollutant::Pm10));
    }

    #[test]
    fn station_with_one_pollutant_or_none() {
        let s = station_aqi(&[Some(55.7); 24], &[]);
        assert_eq!(s.vn_daily.unwrap().value, 110);
        assert_eq!(s.vn_daily.unwrap().dominant, Pollutant::Pm25);
        assert_eq!(s.vn_daily.unwrap().category.hex, "#ff7e00");
        let s = station_aqi(&[], &[]);
        assert_eq!(s.vn_hourly, None);
        assert_eq!(s.us_daily, None);
        // Recent hours present but a short day: hourly index yes, daily no.
        let s = station_aqi(&[Some(10.0); 12], &[]);
        assert!(s.vn_hourly.is_some());
        assert_eq!(s.vn_daily, None);
    }
}

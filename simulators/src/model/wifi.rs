//! Public Wi-Fi access points: associated clients by hour, weekday and place (lake-side
//! and market hotspots busy in the evening and at weekends, offices on weekday working
//! hours), mean client RSSI, channel utilisation, byte counters that wrap at 2^32 like
//! 32-bit interface counters, and authentication failures.

use rand::Rng;

use super::calendar::{LocalTime, bump};
use super::weather::round_to;
use super::{Ar1, DeviceRng, Place, Reading, Site, normal};

/// Where the 32-bit byte counters wrap.
pub const COUNTER_WRAP: u64 = 1 << 32;

/// A Wi-Fi access point.
#[derive(Debug, Clone)]
pub struct WifiModel {
    place: Place,
    /// Clients at the busiest time of a busy day.
    capacity: f64,
    crowd_noise: Ar1,
    rx: u64,
    tx: u64,
    auth_failures: u64,
}

impl WifiModel {
    /// An access point at `site`.
    pub fn new(site: Site, rng: &mut DeviceRng) -> Self {
        let capacity = match site.place {
            Place::LakeSide => 120.0,
            Place::Market => 90.0,
            Place::Office => 70.0,
            Place::MainRoad => 40.0,
            Place::Residential => 25.0,
        } * (1.0 + 0.2 * normal(rng).clamp(-2.0, 2.0));
        // Counters start at a random point, so wraps happen early in a run.
        let rx = rng.random_range(0..COUNTER_WRAP);
        let tx = rng.random_range(0..COUNTER_WRAP);
        Self {
            place: site.place,
            capacity,
            crowd_noise: Ar1::new(0.8, 0.15, rng),
            rx,
            tx,
            auth_failures: 0,
        }
    }

    /// Share of capacity in use at this time, 0..~1.
    fn occupancy(&self, t: &LocalTime) -> f64 {
        let h = t.hour;
        let weekend = t.is_weekend();
        let night = 0.03;
        let o = match self.place {
            Place::LakeSide => {
                0.15 * bump(h, 7.0, 1.5)
                    + 0.35 * bump(h, 12.0, 2.0)
                    + 1.0 * bump(h, 20.0, 2.0)
                    + if weekend {
                        0.6 * bump(h, 16.0, 4.0)
                    } else {
                        0.0
                    }
            }
            Place::Market => {
                0.8 * bump(h, 7.5, 1.8) + 0.7 * bump(h, 17.5, 1.8) + 0.3 * bump(h, 12.0, 2.0)
            }
            Place::Office => {
                if weekend {
                    0.1 * bump(h, 12.0, 3.0)
                } else {
                    0.9 * bump(h, 10.0, 2.0) + 0.9 * bump(h, 15.0, 2.0)
                }
            }
            Place::MainRoad => 0.6 * bump(h, 8.0, 2.0) + 0.7 * bump(h, 18.0, 2.5),
            Place::Residential => 0.5 * bump(h, 20.5, 2.5) + 0.2 * bump(h, 7.0, 1.5),
        };
        let weekend_boost = match self.place {
            Place::LakeSide | Place::Market => 1.4,
            _ => 1.0,
        };
        (night + o * if weekend { weekend_boost } else { 1.0 }).min(1.3)
    }

    pub(super) fn sample(
        &mut self,
        t: &LocalTime,
        period_s: u32,
        rng: &mut DeviceRng,
        out: &mut Vec<Reading>,
    ) {
        let expected = self.capacity * self.occupancy(t) * self.crowd_noise.step(rng).exp();
        let clients = (expected + expected.sqrt() * normal(rng)).round().max(0.0);
        // Crowded cells push clients further away and collide more.
        let rssi = -52.0 - 0.08 * clients + 3.0 * normal(rng);
        let util = 8.0 + 0.45 * clients + 4.0 * normal(rng);
        // Per-client traffic: ~40 kB/s down, ~8 kB/s up, heavy-tailed.
        let period = f64::from(period_s.max(1));
        let down = clients * period * 40_000.0 * (0.5 * normal(rng)).exp();
        let up = clients * period * 8_000.0 * (0.5 * normal(rng)).exp();
        self.tx = (self.tx + down as u64) % COUNTER_WRAP;
        self.rx = (self.rx + up as u64) % COUNTER_WRAP;
        // Wrong passwords and captive-portal timeouts grow with the crowd.
        let fail_rate = 0.0005 * clients * period / 60.0;
        if rng.random::<f64>() < fail_rate.min(1.0) {
            self.auth_failures += 1 + rng.random_range(0..3);
        }
        out.push(Reading::of("clientsConnected", clients).clamped());
        out.push(Reading::of("rssi", round_to(rssi.clamp(-95.0, -30.0), 0.1)).clamped());
        out.push(Reading::of("channelUtilization", round_to(util.clamp(1.0, 98.0), 0.1)).clamped());
        out.push(Reading::of("rxBytes", self.rx as f64).clamped());
        out.push(Reading::of("txBytes", self.tx as f64).clamped());
        out.push(Reading::of("authFailures", self.auth_failures as f64).clamped());
    }

    /// Counters restart at zero after a reboot.
    pub fn reboot(&mut self) {
        self.rx = 0;
        self.tx = 0;
        self.auth_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::device_rng;

    fn mean_clients(place: Place, hours: &[f64], weekend: bool) -> f64 {
        let mut rng = device_rng(5, "wf");
        let mut m = WifiModel::new(
            Site {
                district: "hoan-kiem",
                place,
            },
            &mut rng,
        );
        let mut sum = 0.0;
        let mut n = 0.0;
        let mut out = Vec::new();
        // 2026-01-05 is a Monday; Saturday is +5 days.
        let base = 1_767_574_800 - 8 * 3600 + if weekend { 5 * 86_400 } else { 0 };
        for week in 0..20 {
            for &h in hours {
                out.clear();
                let unix = base + week * 7 * 86_400 + (h * 3600.0) as i64;
                m.sample(&LocalTime::hanoi(unix), 300, &mut rng, &mut out);
                sum += out[0].value;
                n += 1.0;
            }
        }
        sum / n
    }

    #[test]
    fn hotspots_busier_evenings_and_weekends() {
        let evening = mean_clients(Place::LakeSide, &[19.5, 20.0, 20.5], false);
        let morning = mean_clients(Place::LakeSide, &[10.0, 10.5], false);
        assert!(
            evening > 2.0 * morning,
            "evening {evening} morning {morning}"
        );
        let sat = mean_clients(Place::LakeSide, &[16.0, 17.0, 20.0], true);
        let mon = mean_clients(Place::LakeSide, &[16.0, 17.0, 20.0], false);
        assert!(sat > 1.2 * mon, "saturday {sat} monday {mon}");
    }

    #[test]
    fn counters_wrap() {
        let mut rng = device_rng(1, "wf-wrap");
        let mut m = WifiModel::new(
            Site {
                district: "tay-ho",
                place: Place::LakeSide,
            },
            &mut rng,
        );
        let mut out = Vec::new();
        let mut prev = None;
        let mut wraps = 0;
        for k in 0..(7 * 24 * 12) {
            out.clear();
            m.sample(
                &LocalTime::hanoi(1_767_225_600 + k * 300),
                300,
                &mut rng,
                &mut out,
            );
            let tx = out[4].value;
            assert!(tx < COUNTER_WRAP as f64);
            if let Some(p) = prev
                && tx < p
            {
                wraps += 1;
            }
            prev = Some(tx);
        }
        assert!(wraps > 0, "tx counter never wrapped in a week");
    }
}

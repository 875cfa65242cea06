//! Exponential backoff with "equal jitter", for every retry loop of the gateway: the
//! forwarder's store writes, the MQTT reconnects and the commit retries.
//!
//! The step starts at `min` and doubles after each failure up to `max`. Each wait is
//! drawn uniformly from the upper half of the current step, `[step/2, step]`: half of it
//! is a floor that keeps the exponential spacing (a failing store or broker is not
//! hammered), the other half is random so that a fleet of gateways restarted together
//! does not retry in lock step. (Full jitter, `[0, step]`, spreads a little more but can
//! retry at once after many failures; the floor was chosen over that.)

use std::time::Duration;

/// The smallest first step: a zero `min` would never grow.
const MIN_STEP: Duration = Duration::from_millis(1);

/// Backoff state: call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min` (at least 1 ms) and never waiting longer than `max`
    /// (at least `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(MIN_STEP);
        let max = max.max(min);
        Self {
            min,
            max,
            current: min,
        }
    }

    /// The wait before the next attempt, in `[step/2, step]`; doubles the step (up to
    /// `max`) for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.advance();
        let half = step / 2;
        let jitter_ns = fastrand::u64(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
        half + Duration::from_nanos(jitter_ns)
    }

    /// Counts a failure whose wait the caller chooses itself (e.g. the longest one for an
    /// error no quick retry fixes): the step grows as after [`Backoff::next_delay`].
    /// Returns the step that failure would have drawn from.
    pub fn advance(&mut self) -> Duration {
        let step = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        step
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn within(d: Duration, step: Duration) -> bool {
        d >= step / 2 && d <= step
    }

    #[test]
    fn each_wait_lies_in_the_upper_half_of_its_step() {
        for _ in 0..200 {
            let mut b = Backoff::new(100 * MS, 1_000 * MS);
            for step in [100, 200, 400, 800, 1_000, 1_000] {
                let d = b.next_delay();
                assert!(
                    within(d, step * MS),
                    "{d:?} outside [{}, {step}] ms",
                    step / 2
                );
            }
        }
    }

    #[test]
    fn grows_by_doubling_up_to_the_cap_and_stays_there() {
        let mut b = Backoff::new(200 * MS, 30_000 * MS);
        let steps: Vec<u128> = (0..12).map(|_| b.advance().as_millis()).collect();
        assert_eq!(
            steps,
            [
                200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000, 30_000, 30_000
            ]
        );
        // Never above the cap, and near it once there (the floor is half of it).
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(within(d, 30_000 * MS), "{d:?}");
        }
    }

    #[test]
    fn reset_starts_over_at_the_first_step() {
        let mut b = Backoff::new(100 * MS, 1_000 * MS);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert!(within(b.next_delay(), 100 * MS));
        assert!(within(b.next_delay(), 200 * MS));
    }

    #[test]
    fn bounds_are_sane_whatever_is_configured() {
        // A zero minimum still grows; a maximum below the minimum is the minimum.
        let mut b = Backoff::new(Duration::ZERO, 10 * MS);
        assert_eq!(b.advance(), MS);
        assert_eq!(b.advance(), 2 * MS);
        let mut b = Backoff::new(500 * MS, 100 * MS);
        assert_eq!(b.max(), 500 * MS);
        assert!(within(b.next_delay(), 500 * MS));
        assert!(within(b.next_delay(), 500 * MS));
        // A huge cap does not overflow the doubling.
        let mut b = Backoff::new(MS, Duration::MAX);
        for _ in 0..200 {
            b.advance();
        }
        assert_eq!(b.advance(), Duration::MAX);
    }

    #[test]
    fn waits_are_jittered() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let waits: std::collections::BTreeSet<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(waits.len() > 1, "20 equal waits: {waits:?}");
    }
}

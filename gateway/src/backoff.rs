//! Exponential backoff with jitter for reconnects and commit retries: the
//! delay doubles after each failure up to a ceiling, and each wait is drawn at
//! random from the upper half of the current step so that a fleet of gateways
//! restarted together does not reconnect in lock step.

use std::time::Duration;

/// Backoff state: call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and never waiting longer than `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Self {
            min,
            max,
            current: min,
        }
    }

    /// The wait before the next attempt; doubles the step for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        // Upper half of the step: never shorter than half of it, so the
        // exponential growth still spaces attempts out.
        let half = step / 2;
        let jitter_ns = fastrand::u64(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
        half + Duration::from_nanos(jitter_ns)
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_ceiling_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(1), "{d:?} above the ceiling");
        }
        let late = b.next_delay();
        assert!(
            late >= Duration::from_millis(500),
            "{late:?} should be near the ceiling"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

//! The host's stand-in for a board timer: monotonic milliseconds since "boot", optionally
//! running faster than real time so that a simulator can play hours of sampling in minutes.

use std::time::Duration;

use tokio::time::Instant;

use crate::link::Clock;

/// Monotonic device time on tokio's clock, scaled by a speed-up factor.
#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    boot: Instant,
    speedup: u32,
}

impl HostClock {
    /// A clock whose device time starts at 0 now and runs `speedup` times faster than
    /// real time (1 = real time; 0 is taken as 1).
    pub fn new(speedup: u32) -> Self {
        Self {
            boot: Instant::now(),
            speedup: speedup.max(1),
        }
    }

    /// The speed-up factor.
    pub fn speedup(&self) -> u32 {
        self.speedup
    }

    /// The real instant at which device time reaches `at_ms`.
    fn instant_of(&self, at_ms: u64) -> Instant {
        let real_ms = at_ms.div_ceil(u64::from(self.speedup));
        self.boot + Duration::from_millis(real_ms)
    }
}

impl Clock for HostClock {
    fn now_ms(&self) -> u64 {
        let real = self.boot.elapsed().as_millis();
        u64::try_from(real.saturating_mul(u128::from(self.speedup))).unwrap_or(u64::MAX)
    }

    async fn sleep_until(&self, at_ms: u64) {
        if at_ms == u64::MAX {
            std::future::pending::<()>().await;
        }
        // Far deadlines (a disabled keep-alive) would overflow an Instant: cap at a day,
        // the caller loops and sleeps again.
        let cap = self
            .now_ms()
            .saturating_add(86_400_000 * u64::from(self.speedup));
        tokio::time::sleep_until(self.instant_of(at_ms.min(cap))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn speedup_scales_device_time() {
        let clock = HostClock::new(10);
        assert_eq!(clock.now_ms(), 0);
        clock.sleep_until(5_000).await;
        assert!(clock.now_ms() >= 5_000);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(clock.now_ms() >= 6_000);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_until_the_past_returns_at_once() {
        let clock = HostClock::new(1);
        tokio::time::advance(Duration::from_millis(50)).await;
        let before = Instant::now();
        clock.sleep_until(10).await;
        assert_eq!(Instant::now(), before);
    }
}

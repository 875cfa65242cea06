//! The link's [`Clock`] over embassy-time (feature `embassy-clock`), for boards that
//! run on embassy: whatever time driver the board registers (the ESP32-C3's timer
//! group, the MPS2's SysTick) is the clock.

use embassy_time::{Instant, Timer};

use super::Clock;

/// A far deadline (keep-alive disabled, `u64::MAX`) is cut to a day from now: the
/// caller loops, and embassy's timer never sees an instant it cannot represent.
const FAR_MS: u64 = 86_400_000;

/// Monotonic time from embassy-time's driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbassyClock;

impl Clock for EmbassyClock {
    fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }

    async fn sleep_until(&self, at_ms: u64) {
        let at_ms = at_ms.min(self.now_ms().saturating_add(FAR_MS));
        Timer::at(Instant::from_millis(at_ms)).await;
    }
}

//! Monotonic milliseconds from SysTick, and a busy-wait delay for drivers.
//!
//! SysTick interrupts once per millisecond and bumps a 32-bit counter; [`now_ms`] widens
//! it to 64 bits by counting wrap-arounds, which it observes at least every 49 days
//! because the main loop wakes on every tick.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::{SYST, syst::SystClkSource};
use cortex_m_rt::exception;

static TICKS: AtomicU32 = AtomicU32::new(0);

/// Starts the 1 kHz tick from a core clock of `core_hz`.
pub fn start(mut syst: SYST, core_hz: u32) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(core_hz / 1_000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Widens the tick counter; only the main loop calls it.
#[derive(Debug, Default)]
pub struct Monotonic {
    last: u32,
    high: u64,
}

impl Monotonic {
    /// Milliseconds since [`start`].
    pub fn now_ms(&mut self) -> u64 {
        let t = TICKS.load(Ordering::Relaxed);
        if t < self.last {
            self.high += 1 << 32;
        }
        self.last = t;
        self.high | u64::from(t)
    }
}

/// Busy-wait delay for drivers (the BME280 waits a few ms for a conversion).
#[derive(Debug, Clone, Copy)]
pub struct BusyDelay {
    /// Core cycles per microsecond.
    pub cycles_per_us: u32,
}

impl embedded_hal::delay::DelayNs for BusyDelay {
    fn delay_ns(&mut self, ns: u32) {
        let cycles = u64::from(ns) * u64::from(self.cycles_per_us) / 1_000;
        cortex_m::asm::delay(u32::try_from(cycles).unwrap_or(u32::MAX).max(1));
    }
}

//! Time for embassy on SysTick: a 1 kHz tick counts milliseconds, expires embassy-time's
//! timers, and wakes the NIC poller.
//!
//! The board has no interrupt-driven network path: the LAN9118 is polled, and the tick
//! is what schedules the poll (see `nic`). At 1 kHz the chip's ~10 KB RX FIFO cannot
//! fill between two polls at the rates an MQTT session runs.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use cortex_m::peripheral::{SYST, syst::SystClkSource};
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_sync::waitqueue::AtomicWaker;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// Woken on every tick: the NIC poller registers here when the chip has nothing for it.
pub static NIC_WAKER: AtomicWaker = AtomicWaker::new();

struct SysTickDriver {
    /// Milliseconds since `start` (embassy ticks at 1 kHz).
    now: Mutex<Cell<u64>>,
    /// Timers of embassy-time, expired from the tick.
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    now: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.now.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow_ref_mut(cs);
            if queue.schedule_wake(at, waker) {
                // A deadline already past fires now rather than a tick late.
                queue.next_expiration(self.now.borrow(cs).get());
            }
        });
    }
}

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
    critical_section::with(|cs| {
        let now = DRIVER.now.borrow(cs).get() + 1;
        DRIVER.now.borrow(cs).set(now);
        DRIVER.queue.borrow_ref_mut(cs).next_expiration(now);
    });
    NIC_WAKER.wake();
}

//! Time for embassy: the FPGA's prescaled counter says what time it is, a 1 kHz SysTick
//! says when to look (expiring embassy-time's timers) and wakes the NIC poller.
//!
//! Counting SysTick interrupts is not a clock under QEMU: on a loaded host the emulator
//! delivers a late tick and restarts the period from then, so a tick-counting clock ran
//! at half speed in tests. The FPGAIO `COUNTER` (prescaled from the 25 MHz reference to
//! 1 kHz here) is computed from QEMU's virtual clock, and on the real board from its
//! oscillator, so it keeps time however late the ticks come.
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

/// FPGA system control block of the MPS2 boards.
const FPGAIO: usize = 0x4002_8000;
/// Counts once per PRESCALE+1 reference clock cycles.
const FPGAIO_COUNTER: usize = FPGAIO + 0x18;
/// Reload of the prescaler.
const FPGAIO_PRESCALE: usize = FPGAIO + 0x1c;
/// The prescaler's reference clock.
const FPGAIO_CLK_HZ: u32 = 25_000_000;

struct SysTickDriver {
    /// Widening of the 32-bit counter: (last value read, wraps so far << 32).
    now: Mutex<Cell<(u32, u64)>>,
    /// Timers of embassy-time, expired from the tick.
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    now: Mutex::new(Cell::new((0, 0))),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl SysTickDriver {
    /// Milliseconds since `start`. The tick reads it at least every few ms, so a wrap
    /// of the 32-bit counter (every 49 days) is never missed.
    fn now_in(&self, cs: critical_section::CriticalSection<'_>) -> u64 {
        // SAFETY: FPGAIO_COUNTER is the MPS2 FPGA's counter register, read-only here.
        let count = unsafe { core::ptr::read_volatile(FPGAIO_COUNTER as *const u32) };
        let cell = self.now.borrow(cs);
        let (last, mut high) = cell.get();
        if count < last {
            high += 1 << 32;
        }
        cell.set((count, high));
        high | u64::from(count)
    }
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.now_in(cs))
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow_ref_mut(cs);
            if queue.schedule_wake(at, waker) {
                // A deadline already past fires now rather than a tick late.
                queue.next_expiration(self.now_in(cs));
            }
        });
    }
}

/// Starts the millisecond counter and the 1 kHz tick from a core clock of `core_hz`.
pub fn start(mut syst: SYST, core_hz: u32) {
    // SAFETY: the MPS2 FPGA's prescaler and counter; nothing else in the image uses them.
    unsafe {
        core::ptr::write_volatile(FPGAIO_PRESCALE as *mut u32, FPGAIO_CLK_HZ / 1_000 - 1);
        core::ptr::write_volatile(FPGAIO_COUNTER as *mut u32, 0);
    }
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(core_hz / 1_000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let now = DRIVER.now_in(cs);
        DRIVER.queue.borrow_ref_mut(cs).next_expiration(now);
    });
    NIC_WAKER.wake();
}

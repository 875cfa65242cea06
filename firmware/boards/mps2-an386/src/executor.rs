//! The thread-mode executor: embassy's raw executor, idling on WFI.
//!
//! embassy's own Cortex-M executor idles on WFE, which QEMU emulates as a mere yield:
//! the emulator then spins a host core at full speed while the board has nothing to do.
//! WFI halts the emulated core until the next interrupt (the 1 kHz tick at the latest),
//! on QEMU and on silicon alike, so an idle image costs the host almost nothing and
//! several images can run side by side in a test.

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{Spawner, raw};
use static_cell::StaticCell;

/// Set when a task was woken; cleared before each poll of the executor.
static PENDED: AtomicBool = AtomicBool::new(false);

/// Called by the executor (also from interrupt handlers) when a task was woken.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDED.store(true, Ordering::SeqCst);
}

/// Runs the executor forever after `init` has spawned the first tasks.
pub fn run(init: impl FnOnce(Spawner)) -> ! {
    static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
    let executor: &'static raw::Executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    init(executor.spawner());
    loop {
        PENDED.store(false, Ordering::SeqCst);
        // SAFETY: `poll` is only ever called from this loop, in thread mode.
        unsafe { executor.poll() };
        // With interrupts masked, a wake between the check and WFI still ends the WFI
        // (a pending interrupt wakes it), and its handler runs right after.
        cortex_m::interrupt::free(|_| {
            if !PENDED.load(Ordering::SeqCst) {
                cortex_m::asm::wfi();
            }
        });
    }
}

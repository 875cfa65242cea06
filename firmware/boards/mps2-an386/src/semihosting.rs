//! Semihosting, the board's channel to the host running QEMU
//! (`-semihosting-config enable=on,target=native,arg=...`): the command line in, log
//! lines out on QEMU's stdout, and the exit code out when the image stops.
//!
//! Every call traps into QEMU; they are only made from thread mode, never from an
//! interrupt handler, and only for a handful of lines per connection.

use cortex_m_semihosting::{debug, nr, syscall1};

/// Writes one line to the host's stdout, prefixed with the board's name and its uptime
/// in ms.
macro_rules! log {
    ($($arg:tt)*) => {
        cortex_m_semihosting::hprintln!(
            "mps2-an386 {:>8}: {}",
            embassy_time::Instant::now().as_millis(),
            format_args!($($arg)*)
        )
    };
}
pub(crate) use log;

/// The command line QEMU was given (`arg=` values joined by spaces), read into `buf`;
/// `None` when the host passes none or it is not UTF-8.
pub fn cmdline(buf: &mut [u8]) -> Option<&str> {
    // SYS_GET_CMDLINE takes {buffer, size} and writes the length back into `size`.
    let mut block: [usize; 2] = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: the block and the buffer it points at live across the call, and the host
    // writes at most `buf.len()` bytes into the buffer and one word into the block.
    let rc = unsafe { syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) };
    if rc != 0 {
        return None;
    }
    let len = block[1].min(buf.len());
    core::str::from_utf8(&buf[..len]).ok()
}

/// Ends the emulation: QEMU exits with 0 when `ok`, 1 otherwise.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached without a semihosting host (real hardware, no debugger): stay put.
    loop {
        cortex_m::asm::wfi();
    }
}

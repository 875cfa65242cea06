//! How the driver reaches the chip: a register bus trait, and its memory-mapped
//! implementation for a board.
//!
//! The driver only ever reads and writes whole 32-bit registers named by [`Reg`], so a
//! host test can put a register-level model of the chip behind the same trait.

use crate::regs::Reg;

/// 32-bit access to the chip's direct-address registers.
///
/// Reads of the FIFO ports have side effects (they pop), hence `&mut self`.
pub trait RegisterBus {
    /// Reads a register.
    fn read(&mut self, reg: Reg) -> u32;
    /// Writes a register.
    fn write(&mut self, reg: Reg, value: u32);
}

impl<B: RegisterBus + ?Sized> RegisterBus for &mut B {
    fn read(&mut self, reg: Reg) -> u32 {
        (**self).read(reg)
    }

    fn write(&mut self, reg: Reg, value: u32) {
        (**self).write(reg, value);
    }
}

/// The chip mapped into memory at a fixed base address (32-bit bus mode).
#[derive(Debug)]
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// The chip at `base` (0x4020_0000 on QEMU's mps2-an385/an386/an500/an505 boards).
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118 in 32-bit mode, and nothing else may
    /// access it while this value lives (the FIFO ports pop on read).
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    /// The base address.
    pub const fn base(&self) -> usize {
        self.base
    }
}

impl RegisterBus for Mmio {
    fn read(&mut self, reg: Reg) -> u32 {
        // SAFETY: `new`'s contract: a LAN9118 is mapped at base, each `Reg` is one of its
        // aligned 32-bit registers, and this value has exclusive access.
        unsafe { core::ptr::read_volatile((self.base + reg.offset()) as *const u32) }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + reg.offset()) as *mut u32, value) }
    }
}

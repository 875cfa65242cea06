//! The ARM CMSDK APB UART (UART0 of the MPS2 boards at 0x4000_4000), receive side, as a
//! non-blocking `embedded-io` reader for the PMS5003 driver.
//!
//! Registers: DATA +0x00, STATE +0x04 (bit 1: RX buffer full), CTRL +0x08 (bit 1: RX
//! enable, bit 0: TX enable), BAUDDIV +0x10 (core clock / baud, at least 16).

use core::ptr::{read_volatile, write_volatile};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;

/// A CMSDK UART at a fixed address.
#[derive(Debug)]
pub struct CmsdkUart {
    base: usize,
}

/// The UART does not report receive errors; this type only satisfies the trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UartError;

impl core::fmt::Display for UartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("UART error")
    }
}

impl core::error::Error for UartError {}

impl embedded_io::Error for UartError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl CmsdkUart {
    /// Takes over the UART at `base` and enables it at `baud` from `core_hz`.
    ///
    /// # Safety
    /// `base` must be a CMSDK UART that nothing else uses.
    pub unsafe fn new(base: usize, core_hz: u32, baud: u32) -> Self {
        let uart = Self { base };
        uart.set_reg(BAUDDIV, (core_hz / baud).max(16));
        uart.set_reg(CTRL, CTRL_RX_EN | CTRL_TX_EN);
        uart
    }

    fn reg(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base` is this UART's register block.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn set_reg(&self, offset: usize, value: u32) {
        // SAFETY: as in `reg`.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn rx_ready(&self) -> bool {
        self.reg(STATE) & STATE_RX_FULL != 0
    }
}

impl embedded_io::ErrorType for CmsdkUart {
    type Error = UartError;
}

impl embedded_io::ReadReady for CmsdkUart {
    fn read_ready(&mut self) -> Result<bool, UartError> {
        Ok(self.rx_ready())
    }
}

impl embedded_io::Read for CmsdkUart {
    /// Reads what has arrived, at least one byte (waiting for it, as the trait requires).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, UartError> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.rx_ready() {
            core::hint::spin_loop();
        }
        let mut n = 0;
        while n < buf.len() && self.rx_ready() {
            buf[n] = (self.reg(DATA) & 0xff) as u8;
            n += 1;
        }
        Ok(n)
    }
}

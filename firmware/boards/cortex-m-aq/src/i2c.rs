//! An I2C controller bit-banged over the ARM SBCon two-wire interface (the MPS2 boards'
//! shield I2C at 0x4002_9000), as an `embedded-hal` 1.0 bus for the BME280 driver.
//!
//! SBCon registers: +0x00 read: bit 0 SCL, bit 1 SDA as seen on the wire; +0x00 write
//! sets (releases high), +0x04 write clears (drives low) the given bits. Standard mode,
//! ~100 kHz; every wait for a slow target stretching SCL is bounded.

use core::ptr::{read_volatile, write_volatile};

use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

use crate::clock::BusyDelay;

const CONTROL: usize = 0x00;
const CONTROL_CLEAR: usize = 0x04;
const SCL: u32 = 1 << 0;
const SDA: u32 = 1 << 1;
/// Half a bit time at 100 kHz.
const HALF_BIT_NS: u32 = 5_000;
/// Longest clock stretch accepted, in half-bit waits (~10 ms).
const STRETCH_LIMIT: u32 = 2_000;

/// Bus errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// The target did not acknowledge.
    Nack(NoAcknowledgeSource),
    /// SCL stayed low (stuck bus or endless stretch).
    Stuck,
}

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        match *self {
            BusError::Nack(src) => ErrorKind::NoAcknowledge(src),
            BusError::Stuck => ErrorKind::Bus,
        }
    }
}

/// The bit-banged controller.
#[derive(Debug)]
pub struct SbconI2c {
    base: usize,
    delay: BusyDelay,
}

impl SbconI2c {
    /// Takes over the SBCon at `base`, releasing both lines.
    ///
    /// # Safety
    /// `base` must be an SBCon block that nothing else uses.
    pub unsafe fn new(base: usize, delay: BusyDelay) -> Self {
        let bus = Self { base, delay };
        bus.set(SCL | SDA);
        bus
    }

    fn set(&self, bits: u32) {
        // SAFETY: `new`'s contract: `base` is this SBCon's register block.
        unsafe { write_volatile((self.base + CONTROL) as *mut u32, bits) }
    }

    fn clear(&self, bits: u32) {
        // SAFETY: as in `set`.
        unsafe { write_volatile((self.base + CONTROL_CLEAR) as *mut u32, bits) }
    }

    fn lines(&self) -> u32 {
        // SAFETY: as in `set`.
        unsafe { read_volatile((self.base + CONTROL) as *const u32) }
    }

    fn half_bit(&mut self) {
        embedded_hal::delay::DelayNs::delay_ns(&mut self.delay, HALF_BIT_NS);
    }

    /// Releases SCL and waits (bounded) for a stretching target to let it go.
    fn scl_high(&mut self) -> Result<(), BusError> {
        self.set(SCL);
        for _ in 0..STRETCH_LIMIT {
            if self.lines() & SCL != 0 {
                return Ok(());
            }
            self.half_bit();
        }
        Err(BusError::Stuck)
    }

    fn start(&mut self) -> Result<(), BusError> {
        self.set(SDA);
        self.scl_high()?;
        self.half_bit();
        self.clear(SDA);
        self.half_bit();
        self.clear(SCL);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), BusError> {
        self.clear(SDA);
        self.half_bit();
        self.scl_high()?;
        self.half_bit();
        self.set(SDA);
        self.half_bit();
        Ok(())
    }

    fn write_bit(&mut self, bit: bool) -> Result<(), BusError> {
        if bit {
            self.set(SDA);
        } else {
            self.clear(SDA);
        }
        self.half_bit();
        self.scl_high()?;
        self.half_bit();
        self.clear(SCL);
        Ok(())
    }

    fn read_bit(&mut self) -> Result<bool, BusError> {
        self.set(SDA);
        self.half_bit();
        self.scl_high()?;
        let bit = self.lines() & SDA != 0;
        self.half_bit();
        self.clear(SCL);
        Ok(bit)
    }

    /// Sends a byte; true when the target acknowledged.
    fn write_byte(&mut self, byte: u8) -> Result<bool, BusError> {
        for i in (0..8).rev() {
            self.write_bit(byte & (1 << i) != 0)?;
        }
        Ok(!self.read_bit()?)
    }

    fn read_byte(&mut self, ack: bool) -> Result<u8, BusError> {
        let mut byte = 0u8;
        for _ in 0..8 {
            byte = (byte << 1) | u8::from(self.read_bit()?);
        }
        self.write_bit(!ack)?;
        Ok(byte)
    }

    fn run(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), BusError> {
        let mut last_was_read = None;
        for i in 0..operations.len() {
            let is_read = matches!(operations[i], Operation::Read(_));
            let next_is_read = matches!(operations.get(i + 1), Some(Operation::Read(_)));
            // Same-direction operations continue the transfer (embedded-hal's contract);
            // a change of direction takes a repeated start and the address again.
            if last_was_read != Some(is_read) {
                self.start()?;
                if !self.write_byte((address << 1) | u8::from(is_read))? {
                    return Err(BusError::Nack(NoAcknowledgeSource::Address));
                }
            }
            last_was_read = Some(is_read);
            match &mut operations[i] {
                Operation::Write(bytes) => {
                    for &b in bytes.iter() {
                        if !self.write_byte(b)? {
                            return Err(BusError::Nack(NoAcknowledgeSource::Data));
                        }
                    }
                }
                Operation::Read(buf) => {
                    let n = buf.len();
                    for (k, slot) in buf.iter_mut().enumerate() {
                        // NACK the byte that ends the read phase.
                        let last = k + 1 == n && !next_is_read;
                        *slot = self.read_byte(!last)?;
                    }
                }
            }
        }
        self.stop()
    }
}

impl ErrorType for SbconI2c {
    type Error = BusError;
}

impl I2c<SevenBitAddress> for SbconI2c {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let result = self.run(address, operations);
        if result.is_err() {
            // Leave the bus idle for the next attempt.
            let _ = self.stop();
        }
        result
    }
}

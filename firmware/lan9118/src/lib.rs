//! A `no_std` polling driver for the SMSC LAN9118 Ethernet controller, the NIC of Arm's
//! MPS2 boards as QEMU models them (`-M mps2-an386`, registers at `0x4020_0000`).
//!
//! - [`regs`]: typed registers and bit fields; registers that QEMU does not model, or
//!   models wrongly (the status peek ports, MAC CSRs 10-12), cannot be named.
//! - [`bus`]: the [`RegisterBus`] the driver talks through, and [`Mmio`] for a board.
//! - [`driver`]: [`Lan9118`]: reset and bring-up, receive and transmit of whole frames,
//!   PHY link state, counters.
//!
//! Design rules, because the chip and its emulation punish anything less:
//! - every wait is bounded ([`Config::spin_limit`]) and ends in [`Error::Timeout`];
//! - every received frame is read out of the FIFO whole, even a bad one or one too big for
//!   the caller's buffer (QEMU's RX fast-forward does not advance the FIFO), so the data
//!   FIFO never loses its frame alignment;
//! - no frame is dropped silently by the driver: a frame it cannot deliver is returned
//!   as an error *and* counted in [`Stats`]. (A full RX FIFO in the chip, about 10 KB,
//!   drops frames before the driver sees them; QEMU does not count those, so callers
//!   poll often.)
//!
//! The driver polls; it neither uses nor needs the interrupt line.
#![no_std]

pub mod bus;
pub mod driver;
pub mod regs;

pub use bus::{Mmio, RegisterBus};
pub use driver::{Config, Error, Lan9118, MAX_FRAME, MIN_FRAME, Stats, Wait};

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod model;

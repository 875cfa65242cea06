//! The LAN9118 as an embassy-net device: whole frames through the `lan9118` driver,
//! polled on the 1 kHz tick.
//!
//! A received frame is read out of the chip into `rx` when embassy-net asks for one and
//! stays there until it is consumed, so a token dropped unconsumed loses nothing. Frames
//! the driver refuses (bad, oversized) and sends it cannot complete are counted in the
//! driver's [`Stats`](lan9118::Stats) and in `tx_failed` here: smoltcp's tokens cannot
//! carry an error, TCP retransmits, and the counters say what happened.

use core::cell::Cell;
use core::task::Context;

use critical_section::Mutex;
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use lan9118::{Lan9118, MAX_FRAME, Mmio, Stats};

use crate::time::NIC_WAKER;

/// The NIC's counters as of its last poll: the NIC itself belongs to the IP stack's
/// runner, the board reports these.
#[derive(Debug, Clone, Copy, Default)]
pub struct NicStats {
    /// The driver's frame counters.
    pub driver: Stats,
    /// Frames the IP stack produced that the chip did not take.
    pub tx_failed: u32,
}

static STATS: Mutex<Cell<NicStats>> = Mutex::new(Cell::new(NicStats {
    driver: Stats {
        rx_frames: 0,
        rx_errors: 0,
        rx_too_large: 0,
        rx_dumped: 0,
        rx_chip_dropped: 0,
        tx_frames: 0,
        tx_errors: 0,
    },
    tx_failed: 0,
}));

/// The NIC's counters as of its last poll.
pub fn stats() -> NicStats {
    critical_section::with(|cs| STATS.borrow(cs).get())
}

/// The NIC and its frame buffers.
pub struct Nic {
    dev: Lan9118<Mmio>,
    rx: [u8; MAX_FRAME],
    rx_len: Option<usize>,
    tx: [u8; MAX_FRAME],
    /// Frames smoltcp produced that the chip did not take.
    pub tx_failed: u32,
    /// Last PHY link state read, and when (ms); the stack asks on every poll.
    link: (bool, u64),
}

/// How often the PHY is asked for the link state.
const LINK_CHECK_MS: u64 = 250;

impl Nic {
    /// Wraps a brought-up chip.
    pub fn new(dev: Lan9118<Mmio>) -> Self {
        Self {
            dev,
            rx: [0; MAX_FRAME],
            rx_len: None,
            tx: [0; MAX_FRAME],
            tx_failed: 0,
            link: (false, 0),
        }
    }

    /// Publishes the counters for [`stats`].
    fn publish_stats(&self) {
        let now = NicStats {
            driver: self.dev.stats(),
            tx_failed: self.tx_failed,
        };
        critical_section::with(|cs| STATS.borrow(cs).set(now));
    }

    /// Reads the next deliverable frame into `rx`, skipping (counted) bad ones.
    fn fill_rx(&mut self) -> bool {
        if self.rx_len.is_some() {
            return true;
        }
        // Bounded: each round consumes a frame the chip holds, and it holds few.
        for _ in 0..64 {
            match self.dev.receive(&mut self.rx) {
                Ok(Some(n)) => {
                    self.rx_len = Some(n);
                    return true;
                }
                Ok(None) => return false,
                // Counted in the driver's stats; the next frame is intact.
                Err(_) => continue,
            }
        }
        false
    }
}

/// A frame waiting in `Nic::rx`.
pub struct Rx<'a> {
    buf: &'a mut [u8],
    len: &'a mut Option<usize>,
}

/// Room to build one frame, sent on consume.
pub struct Tx<'a> {
    dev: &'a mut Lan9118<Mmio>,
    buf: &'a mut [u8; MAX_FRAME],
    failed: &'a mut u32,
}

impl embassy_net_driver::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        let n = self.len.take().unwrap_or(0);
        f(&mut self.buf[..n])
    }
}

impl embassy_net_driver::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let r = f(&mut self.buf[..len]);
        if self.dev.transmit(&self.buf[..len]).is_err() {
            *self.failed = self.failed.wrapping_add(1);
        }
        r
    }
}

impl embassy_net_driver::Driver for Nic {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(Rx<'_>, Tx<'_>)> {
        // The counters of what the previous tokens did (a transmit, a frame consumed).
        self.publish_stats();
        if !self.fill_rx() || !self.dev.tx_ready(MAX_FRAME) {
            NIC_WAKER.register(cx.waker());
            return None;
        }
        Some((
            Rx {
                buf: &mut self.rx,
                len: &mut self.rx_len,
            },
            Tx {
                dev: &mut self.dev,
                buf: &mut self.tx,
                failed: &mut self.tx_failed,
            },
        ))
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<Tx<'_>> {
        if !self.dev.tx_ready(MAX_FRAME) {
            NIC_WAKER.register(cx.waker());
            return None;
        }
        Some(Tx {
            dev: &mut self.dev,
            buf: &mut self.tx,
            failed: &mut self.tx_failed,
        })
    }

    fn link_state(&mut self, cx: &mut Context<'_>) -> LinkState {
        let now = embassy_time::Instant::now().as_millis();
        let (up, checked) = self.link;
        if !up || now.saturating_sub(checked) >= LINK_CHECK_MS {
            // A PHY read is a handful of MAC CSR round trips: not on every poll.
            self.link = (self.dev.link_up().unwrap_or(false), now);
        }
        if self.link.0 {
            LinkState::Up
        } else {
            NIC_WAKER.register(cx.waker());
            LinkState::Down
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(1);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.dev.mac_address())
    }
}

//! The LAN9118's registers as types: the direct-address registers the driver may touch,
//! the MAC control and status registers (reached through `MAC_CSR_CMD`/`MAC_CSR_DATA`),
//! the PHY registers (reached through the MAC's MII port), and the bit fields the
//! driver uses.
//!
//! Only registers that QEMU's model implements are representable. QEMU aborts the whole
//! emulator on an access to a register it does not model (MAC CSRs 10-12, the reserved
//! direct addresses), and its RX/TX status *peek* registers return a wrong entry, so
//! they are left out on purpose: code that does not compile cannot take a board down.

/// A direct-address (memory-mapped) register, by byte offset from the chip's base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reg {
    /// RX data FIFO port: one read pops one 32-bit word of the current frame.
    RxData = 0x00,
    /// TX data FIFO port: command A, command B, then the frame's words.
    TxData = 0x20,
    /// RX status FIFO port: one read pops the status of the next frame.
    RxStatus = 0x40,
    /// TX status FIFO port: one read pops the status of a transmitted frame.
    TxStatus = 0x48,
    /// Chip id (high half) and revision (low half).
    IdRev = 0x50,
    /// Interrupt pin configuration.
    IrqCfg = 0x54,
    /// Interrupt status (write 1 to clear).
    IntSts = 0x58,
    /// Interrupt enables.
    IntEn = 0x5c,
    /// Reads `0x8765_4321` on a chip that answers in the right byte order.
    ByteTest = 0x64,
    /// RX configuration (end alignment, data offset, RX dump).
    RxCfg = 0x6c,
    /// TX configuration (TX on, status overrun allowed).
    TxCfg = 0x70,
    /// Hardware configuration (soft reset, TX FIFO size).
    HwCfg = 0x74,
    /// RX FIFO fill levels.
    RxFifoInf = 0x7c,
    /// TX FIFO fill levels.
    TxFifoInf = 0x80,
    /// Power management control (device ready).
    PmtCtrl = 0x84,
    /// Frames the chip dropped for want of RX FIFO space (clears on read; QEMU reads 0).
    RxDrop = 0xa0,
    /// MAC CSR command: index, read/write, busy.
    MacCsrCmd = 0xa4,
    /// MAC CSR data.
    MacCsrData = 0xa8,
}

impl Reg {
    /// Byte offset from the chip's base address.
    pub const fn offset(self) -> usize {
        self as usize
    }
}

/// A MAC control and status register, by CSR index. CSRs 9-12 (VLAN, wake-up) are
/// absent: this driver needs none of them and QEMU aborts on 10-12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MacCsr {
    /// MAC control: RX/TX enable, duplex, filtering mode.
    MacCr = 1,
    /// MAC address, bytes 4-5.
    AddrH = 2,
    /// MAC address, bytes 0-3.
    AddrL = 3,
    /// Multicast hash table, high half.
    HashH = 4,
    /// Multicast hash table, low half.
    HashL = 5,
    /// MII access: PHY address, register index, write, busy.
    MiiAcc = 6,
    /// MII data.
    MiiData = 7,
    /// Flow control.
    Flow = 8,
}

/// A register of the internal PHY (at MII address 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PhyReg {
    /// Basic control: reset, auto-negotiation.
    BasicControl = 0,
    /// Basic status: link up, auto-negotiation complete.
    BasicStatus = 1,
    /// Auto-negotiation advertisement.
    Advertise = 4,
}

/// MII address of the LAN9118's internal PHY.
pub const PHY_ADDR: u32 = 1;

/// Value of [`Reg::ByteTest`] on a present chip in the right byte order.
pub const BYTE_TEST_VALUE: u32 = 0x8765_4321;

/// [`Reg::HwCfg`] bits.
pub mod hw_cfg {
    /// Soft reset; self-clearing.
    pub const SRST: u32 = 1 << 0;
    /// TX FIFO size field (KiB), bits 19:16.
    pub const TX_FIF_SZ_SHIFT: u32 = 16;
    /// Must be written as one (datasheet).
    pub const MBO: u32 = 1 << 20;
}

/// [`Reg::PmtCtrl`] bits.
pub mod pmt_ctrl {
    /// The chip finished its reset and answers.
    pub const READY: u32 = 1 << 0;
}

/// [`Reg::MacCsrCmd`] bits.
pub mod mac_csr_cmd {
    /// Starts the access; clears when it is done.
    pub const BUSY: u32 = 1 << 31;
    /// Read (set) or write (clear).
    pub const READ: u32 = 1 << 30;
}

/// [`MacCsr::MacCr`] bits.
pub mod mac_cr {
    /// Full duplex.
    pub const FDPX: u32 = 1 << 20;
    /// Promiscuous: every frame passes the filter.
    pub const PRMS: u32 = 1 << 18;
    /// Transmitter enable.
    pub const TXEN: u32 = 1 << 3;
    /// Receiver enable.
    pub const RXEN: u32 = 1 << 2;
}

/// [`MacCsr::MiiAcc`] bits.
pub mod mii_acc {
    /// PHY address field, bits 15:11.
    pub const PHY_SHIFT: u32 = 11;
    /// Register index field, bits 10:6.
    pub const REG_SHIFT: u32 = 6;
    /// Write (set) or read (clear).
    pub const WRITE: u32 = 1 << 1;
    /// Access in progress.
    pub const BUSY: u32 = 1 << 0;
}

/// PHY register bits.
pub mod phy {
    /// Basic control: auto-negotiation enable.
    pub const BCR_ANENABLE: u16 = 1 << 12;
    /// Basic control: restart auto-negotiation.
    pub const BCR_ANRESTART: u16 = 1 << 9;
    /// Basic status: link up.
    pub const BSR_LINK: u16 = 1 << 2;
    /// Advertisement: 10/100, half and full duplex, IEEE 802.3.
    pub const ADV_ALL_10_100: u16 = 0x01e1;
}

/// [`Reg::TxCfg`] bits.
pub mod tx_cfg {
    /// Transmitter on.
    pub const TX_ON: u32 = 1 << 1;
    /// Allow the TX status FIFO to overrun instead of stalling the transmitter: the
    /// driver reads statuses only to count errors.
    pub const TXSAO: u32 = 1 << 2;
}

/// [`Reg::RxCfg`] bits.
pub mod rx_cfg {
    /// Discards everything in the RX data and status FIFOs.
    pub const RX_DUMP: u32 = 1 << 15;
}

/// [`Reg::IntSts`]: every bit, for clearing.
pub const INT_STS_ALL: u32 = 0xffff_ffff;

/// [`Reg::RxFifoInf`] decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFifoInf(pub u32);

impl RxFifoInf {
    /// Frame statuses waiting in the RX status FIFO: one per received frame.
    pub const fn statuses(self) -> u32 {
        (self.0 >> 16) & 0xff
    }

    /// Bytes waiting in the RX data FIFO.
    pub const fn data_bytes(self) -> u32 {
        self.0 & 0xffff
    }
}

/// [`Reg::TxFifoInf`] decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFifoInf(pub u32);

impl TxFifoInf {
    /// Statuses waiting in the TX status FIFO.
    pub const fn statuses(self) -> u32 {
        (self.0 >> 16) & 0xff
    }

    /// Free space in the TX data FIFO, in bytes.
    pub const fn free_bytes(self) -> u32 {
        self.0 & 0xffff
    }
}

/// One entry of the RX status FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxStatus(pub u32);

impl RxStatus {
    /// Frame length in bytes, the 4-byte FCS included.
    pub const fn length(self) -> usize {
        ((self.0 >> 16) & 0x3fff) as usize
    }

    /// Error summary: CRC error, runt, too long, collision, MII error.
    pub const fn error(self) -> bool {
        self.0 & (1 << 15) != 0
    }

    /// The frame did not pass the address filter (only delivered in receive-all mode).
    pub const fn filter_fail(self) -> bool {
        self.0 & (1 << 30) != 0
    }
}

/// One entry of the TX status FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxStatus(pub u32);

impl TxStatus {
    /// The tag the driver put into command B.
    pub const fn tag(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// Error summary: carrier loss, excessive collisions, late collision, underrun.
    pub const fn error(self) -> bool {
        self.0 & (1 << 15) != 0
    }
}

/// TX command A and B for a frame sent as a single buffer.
pub mod tx_cmd {
    /// Command A: first segment of the frame.
    pub const A_FIRST_SEGMENT: u32 = 1 << 13;
    /// Command A: last segment of the frame.
    pub const A_LAST_SEGMENT: u32 = 1 << 12;
    /// Command A/B: length field mask (11 bits).
    pub const LEN_MASK: u32 = 0x7ff;
    /// Command B: tag field shift.
    pub const B_TAG_SHIFT: u32 = 16;

    /// Command A for a whole frame of `len` bytes in one buffer, no offset, 4-byte
    /// end alignment.
    pub const fn a(len: usize) -> u32 {
        A_FIRST_SEGMENT | A_LAST_SEGMENT | (len as u32 & LEN_MASK)
    }

    /// Command B: the frame's tag and total length.
    pub const fn b(tag: u16, len: usize) -> u32 {
        ((tag as u32) << B_TAG_SHIFT) | (len as u32 & LEN_MASK)
    }
}
